"""JSONL -> Parquet corpus throughput, side by side with bare polars (the limit for this work).

Baseline: for each file, `polars.read_ndjson` + `write_parquet` (zstd), in one process (polars uses
all cores itself). Ours: `corpus` reading the same files into a corpus (ids, provenance, meta,
quarantine checks, bounded shards, markers, catalog) with 2 workers and an empty pipeline.
Goal: >= 0.7x the baseline's MB/s, peak RSS bounded by shard size (flat across sizes 10x apart).
"""

from __future__ import annotations

import argparse
import shutil

from benchmarks.common import PEAK_RSS, WORK, make_jsonl, measure, table

BASELINE = PEAK_RSS + """
import glob, os, time, polars as pl
files = sorted(glob.glob({folder!r} + "/*.jsonl"))
os.makedirs({out!r}, exist_ok=True)
t = time.perf_counter()
for f in files:
    pl.read_ndjson(f).write_parquet(os.path.join({out!r}, os.path.basename(f) + ".parquet"), compression="zstd")
dt = time.perf_counter() - t
size = sum(os.path.getsize(f) for f in files)
print(json.dumps({{"seconds": dt, "mb": size / 1e6, "peak_rss_mb": peak_mb()}}))
"""

OURS = PEAK_RSS + """
import glob, os, time
from corpus import InputSpec, Pipeline
files = sorted(glob.glob({folder!r} + "/*.jsonl"))
t = time.perf_counter()
res = Pipeline([]).run(inputs=[InputSpec(source="bench", path={folder!r})], output={out!r}, workers=2,
                       quiet=True, shard_max_bytes={shard})
dt = time.perf_counter() - t
size = sum(os.path.getsize(f) for f in files)
assert res.balance[0]["ok"]
print(json.dumps({{"seconds": dt, "mb": size / 1e6, "peak_rss_mb": peak_mb(), "docs": res.manifest["docs"]}}))
"""


def run(sizes: list[int], shard_mb: int = 64) -> list[dict]:
    rows = []
    for mb in sizes:
        folder = WORK / f"jsonl-{mb}mb"
        make_jsonl(folder, mb)
        for name, code in (("polars read_ndjson+write_parquet", BASELINE), ("corpus run (2 workers)", OURS)):
            out = WORK / f"out-{mb}-{'base' if code is BASELINE else 'ours'}"
            shutil.rmtree(out, ignore_errors=True)
            r = measure(code.format(folder=str(folder), out=str(out), shard=shard_mb << 20))
            shutil.rmtree(out, ignore_errors=True)
            rows.append({"corpus": f"{r['mb']:.0f} MB", "path": name, "seconds": f"{r['seconds']:.2f}",
                         "MB/s": f"{r['mb'] / r['seconds']:.1f}", "peak RSS MB": f"{r['peak_rss_mb']:.0f}",
                         "_rate": r["mb"] / r["seconds"]})
        base, ours = rows[-2]["_rate"], rows[-1]["_rate"]
        rows[-1]["vs baseline"] = f"{ours / base:.2f}x (goal >= 0.70x)"
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="50,500", help="corpus sizes in MB, comma separated")
    args = ap.parse_args(argv)
    rows = run([int(s) for s in args.sizes.split(",")])
    print(table(rows, ["corpus", "path", "seconds", "MB/s", "peak RSS MB", "vs baseline"]))


if __name__ == "__main__":
    main()
