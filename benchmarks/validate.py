"""Validating a corpus against a data contract: time and peak RSS beside simply reading it.

Corpus: a corpus folder (`corpus run` output: Parquet shards of 64 MB of text + manifest.json) made
from the synthetic "web" JSONL of --sizes MB (lines, paragraphs, non-ASCII words). Each path runs in a
fresh subprocess; peak RSS covers it and its workers.

* read: every shard read whole with `polars.read_parquet`, one process: the floor for touching the data.
* read + hash: the same after hashing each shard against the manifest (what every consumer does first).
* validate (workers=2): `corpus.validation.validate_input` with the suite `corpus validate suggest`
  proposes for this corpus (schema and types, non-null, unique ids, text lengths, residual PII
  regexes, encoding damage, the duplicate rate over the whole corpus, the source mix), Great
  Expectations' pandas engine on each 64 MB batch plus one pass over the corpus-level columns.
  Its start-up (spawning the workers, which import GX, about 5 s of CPU each) is included. workers=2 is
  at most 2: one per 128 MB of shards on disk (`corpus.validation.pool_size`), so a smaller corpus is
  checked in the calling process; "validate (1 process)" beside it is workers=1, the choice for a
  small corpus.
* suggest (workers=2): profiling the corpus to propose that suite.

--engines also times one 64 MB batch through GX with the three ways pandas can hold the strings
(Arrow-backed `str`, what the validator uses; numpy objects; Arrow extension arrays): the choice of
engine. GX's SQL engine (DuckDB through SQLAlchemy) is not measured: SQLAlchemy is not installed here.
"""

from __future__ import annotations

import argparse
import shutil

from benchmarks.common import PEAK_RSS, WORK, make_jsonl, measure, table

CORPUS = """
import os
from corpus import InputSpec, Pipeline
res = Pipeline([]).run(inputs=[InputSpec(source="web", path={folder!r})], output={out!r}, workers=2, quiet=True,
                       shard_max_bytes=64 << 20)
assert res.balance[0]["ok"]
"""

READ = PEAK_RSS + """
import json, time, polars as pl
from pathlib import Path
from corpus.integrity import read_verified
manifest = json.loads(Path({out!r}, "manifest.json").read_text())
t = time.perf_counter()
rows = 0
for s in manifest["shards"]:
    path = Path({out!r}, s["path"])
    if {hashed}:
        import io
        rows += pl.read_parquet(io.BytesIO(read_verified(path, s))).height
    else:
        rows += pl.read_parquet(path).height
dt = time.perf_counter() - t
print(json.dumps({{"seconds": dt, "peak_rss_mb": peak_mb(), "rows": rows, "mb": manifest["bytes"] / 1e6}}))
"""

VALIDATE = PEAK_RSS + """
import json, time
from corpus.validation import suggest_suite, validate_input
t = time.perf_counter()
if {suggest}:
    suggest_suite({out!r}, {suite!r}, workers={workers})
    doc = {{"rows": None, "success": True, "expectations": json.load(open({suite!r}))["expectations"]}}
else:
    doc = validate_input({out!r}, {suite!r}, workers={workers})
dt = time.perf_counter() - t
print(json.dumps({{"seconds": dt, "peak_rss_mb": peak_mb(), "rows": doc["rows"], "success": doc["success"],
                  "expectations": len(doc["expectations"])}}))
"""

ENGINES = PEAK_RSS + """
import json, time, polars as pl
from corpus.validation import gx
from corpus.validation.documents import derive
from corpus.validation.suites import load_suite
suite = load_suite({suite!r})
rows = [(i, e) for i, e in enumerate(suite.entries) if suite.scope(i) == "row"]
df = pl.read_parquet({shard!r})
df = derive(df, ("frac_replacement", "text_key"))
fmt = {{"result_format": "SUMMARY", "unexpected_index_column_names": ["row_id"]}}
gx.run(gx.to_pandas(df.head(100)), rows, fmt)  # GX imported and warmed
out = {{}}
for name, convert in (("Arrow-backed str (used)", lambda d: d.to_pandas()),
                      ("numpy object strings", lambda d: d.to_pandas().astype({{c: object for c, t in d.schema.items()
                                                                              if t == pl.String}})),
                      ("Arrow extension arrays", lambda d: d.to_pandas(use_pyarrow_extension_array=True))):
    t = time.perf_counter()
    frame = convert(df)
    found = gx.run(frame, rows, fmt)
    out[name] = {{"seconds": time.perf_counter() - t, "ok": all(r["error"] is None for r in found.values())}}
print(json.dumps({{"engines": out, "mb": df["text"].str.len_bytes().sum() / 1e6, "expectations": len(rows),
                  "peak_rss_mb": peak_mb()}}))
"""


def run(sizes: list[int], engines: bool) -> tuple[list[dict], list[dict]]:
    rows, engine_rows = [], []
    for mb in sizes:
        folder = WORK / f"jsonl-{mb}mb-web"
        make_jsonl(folder, mb, style="web")
        out = WORK / f"validate-corpus-{mb}"
        if not (out / "manifest.json").exists():
            shutil.rmtree(out, ignore_errors=True)
            measure(CORPUS.format(folder=str(folder), out=str(out)) + "\nprint('{}')")
        suite = WORK / f"validate-suite-{mb}.json"
        paths = (("read (polars, 1 process)", READ.format(out=str(out), hashed=False)),
                 ("read + hash against manifest", READ.format(out=str(out), hashed=True)),
                 ("suggest (workers=2)", VALIDATE.format(out=str(out), suite=str(suite), suggest=True, workers=2)),
                 ("validate (1 process)", VALIDATE.format(out=str(out), suite=str(suite), suggest=False, workers=1)),
                 ("validate (workers=2)", VALIDATE.format(out=str(out), suite=str(suite), suggest=False, workers=2)))
        for name, code in paths:
            r = measure(code)
            rows.append({"corpus": f"{mb} MB", "path": name, "seconds": f"{r['seconds']:.1f}",
                         "wall s": f"{r['wall_s']:.1f}", "peak RSS MB": f"{r['peak_rss_mb']:.0f}",
                         "note": (f"{r['expectations']} expectations" + (
                             f", {r['rows']:,} rows, {'passed' if r['success'] else 'FAILED'}"
                             if r.get("rows") is not None else "")) if "expectations" in r else f"{r['rows']:,} rows"})
        read_s = float(rows[-5]["seconds"])
        for row in rows[-2:]:
            row["vs read"] = f"{float(row['seconds']) / read_s:.1f}x the time"
        if engines:
            shard = sorted((out / "data").glob("*.parquet"))[0]
            r = measure(ENGINES.format(suite=str(suite), shard=str(shard)))
            for name, e in r["engines"].items():
                engine_rows.append({"batch": f"{r['mb']:.0f} MB of text", "pandas strings": name,
                                    "seconds": f"{e['seconds']:.2f}", "evaluated": "yes" if e["ok"] else "errors",
                                    "row expectations": r["expectations"]})
    return rows, engine_rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="500", help="corpus sizes in MB, comma separated")
    ap.add_argument("--engines", action="store_true", help="also time one batch with each pandas string layout")
    args = ap.parse_args(argv)
    rows, engines = run([int(s) for s in args.sizes.split(",")], args.engines)
    print(table(rows, ["corpus", "path", "seconds", "wall s", "peak RSS MB", "vs read", "note"]))
    if engines:
        print(table(engines, ["batch", "pandas strings", "seconds", "evaluated", "row expectations"]))


if __name__ == "__main__":
    main()
