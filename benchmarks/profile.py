"""Profiling raw JSONL, side by side with ingesting the same input (the goal: no slower).

Ingest: `corpus run` with no operators, `Pipeline([]).run(..., workers=2)`: the corpus readers, then
Parquet shards, markers, catalog, report. Ours: `corpus.stages.profile.profile_input(..., workers=2)`:
the same readers, then every per-document feature, the spill and the polars scans over it, the
near-duplicate check, outliers, profile.json. Both read through `corpus/readers`, so the comparison is
what each does with the documents.

The two paths run in --repeat rounds (3), back to back in each round: this VM's speed drifts (other
work shares its two cores), so "vs ingest" compares the runs of one round (the median over rounds,
and the best). The table shows each path's fastest run and its largest peak RSS, and the load average
the rounds ran under. --sizes 500,5000 shows RSS over 10x. History of the figures: docs/benchmarks.md.

Corpora: "para" (one ASCII paragraph per record) and, with --style web, lines and paragraphs with
non-ASCII words and stray spaces (more per-line work): the figures for both are worth reading.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics

from benchmarks.common import PEAK_RSS, WORK, make_jsonl, measure, table

INGEST = PEAK_RSS + """
import glob, os, time
from corpus import InputSpec, Pipeline

def main():
    files = sorted(glob.glob({folder!r} + "/*.jsonl"))
    t = time.perf_counter()
    res = Pipeline([]).run(inputs=[InputSpec(source="bench", path={folder!r})], output={out!r}, workers=2, quiet=True)
    dt = time.perf_counter() - t
    size = sum(os.path.getsize(f) for f in files)
    print(json.dumps({{"seconds": dt, "mb": size / 1e6, "peak_rss_mb": peak_mb(), "docs": res.manifest["docs"]}}))

if __name__ == "__main__":
    main()
"""

OURS = PEAK_RSS + """
import glob, os, time
from pathlib import Path
from corpus import InputSpec
from corpus.stages.profile import profile_input

files = sorted(glob.glob({folder!r} + "/*.jsonl"))
t = time.perf_counter()
prof = profile_input([InputSpec(source="bench", path={folder!r})], Path({out!r}), workers=2)
dt = time.perf_counter() - t
size = sum(os.path.getsize(f) for f in files)
print(json.dumps({{"seconds": dt, "mb": size / 1e6, "peak_rss_mb": peak_mb(), "docs": prof["overall"]["docs"]}}))
"""


def run(sizes: list[int], style: str, repeat: int = 3) -> list[dict]:
    rows = []
    paths = (("corpus run, no operators (2 workers)", INGEST), ("profile_input (2 workers)", OURS))
    for mb in sizes:
        folder = WORK / (f"jsonl-{mb}mb" if style == "para" else f"jsonl-{mb}mb-{style}")
        make_jsonl(folder, mb, style=style)
        out = WORK / f"profile-{mb}"
        runs: list[list[dict]] = [[] for _ in paths]
        loads = []
        for _ in range(repeat):
            loads.append(os.getloadavg()[0])
            # Both paths back to back: the machine's speed drifts over minutes, so each ratio compares
            # runs made within seconds of each other.
            for i, (_, code) in enumerate(paths):
                shutil.rmtree(out, ignore_errors=True)
                runs[i].append(measure(code.format(folder=str(folder), out=str(out))))
        shutil.rmtree(out, ignore_errors=True)
        for (name, _), got in zip(paths, runs, strict=True):
            r = min(got, key=lambda x: x["seconds"])
            rows.append({"corpus": f"{r['mb']:.0f} MB {style}", "path": name, "seconds": f"{r['seconds']:.2f}",
                         "MB/s": f"{r['mb'] / r['seconds']:.1f}",
                         "peak RSS MB": f"{max(x['peak_rss_mb'] for x in got):.0f}",
                         "load": f"{min(loads):.1f}-{max(loads):.1f}"})
        # Per round: ingest's seconds over the profile's (> 1: the profile is faster).
        ratios = sorted(a["seconds"] / b["seconds"] for a, b in zip(runs[0], runs[1], strict=True))
        rows[-1]["vs ingest"] = f"{statistics.median(ratios):.2f}x (best {ratios[-1]:.2f}x)"
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="50,500", help="corpus sizes in MB, comma separated")
    ap.add_argument("--style", default="para", choices=["para", "web"], help="kind of documents (see above)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of both paths: the fastest run is shown")
    args = ap.parse_args(argv)
    rows = run([int(s) for s in args.sizes.split(",")], args.style, args.repeat)
    print(table(rows, ["corpus", "path", "seconds", "MB/s", "peak RSS MB", "load", "vs ingest"]))
    print("goal: profile_input no slower than ingest (vs ingest >= 1.00x), peak RSS flat across sizes")


if __name__ == "__main__":
    main()
