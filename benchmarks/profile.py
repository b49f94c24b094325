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

--cli also times the two commands the goal names, end to end as a user runs them (interpreter start,
imports, the run's worker processes, the report): `corpus run` on a config with no operators and
`corpus profile` on the same folder, both with 2 workers, back to back in each round.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

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


def _corpus(mb: int, style: str) -> Path:
    """The benchmark's corpus of ``mb`` MB in this style (made the first time)."""
    folder = WORK / (f"jsonl-{mb}mb" if style == "para" else f"jsonl-{mb}mb-{style}")
    make_jsonl(folder, mb, style=style)
    return folder


def run(sizes: list[int], style: str, repeat: int = 3) -> list[dict]:
    rows = []
    paths = (("corpus run, no operators (2 workers)", INGEST), ("profile_input (2 workers)", OURS))
    for mb in sizes:
        folder = _corpus(mb, style)
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


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - start


def cli(mb: int, style: str, repeat: int = 3) -> list[dict]:
    """`corpus run` (no operators) and `corpus profile` on one corpus, as commands, in rounds."""
    folder = _corpus(mb, style)
    size = sum(f.stat().st_size for f in folder.glob("*.jsonl")) / 1e6
    exe = Path(sys.executable).with_name("corpus")
    corpus = str(exe) if exe.exists() else shutil.which("corpus") or "corpus"
    config, out = WORK / "profile-cli.yaml", WORK / "profile-cli"
    config.write_text(f"inputs:\n  - source: bench\n    path: {json.dumps(str(folder))}\npipeline: []\nworkers: 2\n")
    cmds = {"corpus run CONFIG (no operators, 2 workers)": [corpus, "run", str(config), "--output", str(out)],
            "corpus profile INPUT -w 2": [corpus, "profile", str(folder), "--out", str(out), "-w", "2"]}
    times: dict[str, list[float]] = {name: [] for name in cmds}
    loads = []
    for _ in range(repeat):
        loads.append(os.getloadavg()[0])
        for name, cmd in cmds.items():
            shutil.rmtree(out, ignore_errors=True)
            times[name].append(_timed(cmd))
    shutil.rmtree(out, ignore_errors=True)
    config.unlink()
    rows = [{"corpus": f"{size:.0f} MB {style}", "path": name, "seconds": f"{min(t):.2f}",
             "MB/s": f"{size / min(t):.1f}", "load": f"{min(loads):.1f}-{max(loads):.1f}"} for name, t in times.items()]
    run_s, prof_s = times.values()
    ratios = sorted(a / b for a, b in zip(run_s, prof_s, strict=True))
    rows[-1]["vs ingest"] = f"{statistics.median(ratios):.2f}x (best {ratios[-1]:.2f}x)"
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="50,500", help="corpus sizes in MB, comma separated")
    ap.add_argument("--style", default="para", choices=["para", "web"], help="kind of documents (see above)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of both paths: the fastest run is shown")
    ap.add_argument("--cli", action="store_true", help="also time the two commands end to end (see above)")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = run(sizes, args.style, args.repeat)
    if args.cli:
        rows += [r for mb in sizes for r in cli(mb, args.style, args.repeat)]
    print(table(rows, ["corpus", "path", "seconds", "MB/s", "peak RSS MB", "load", "vs ingest"]))
    print("goal: profile_input no slower than ingest (vs ingest >= 1.00x), peak RSS flat across sizes")


if __name__ == "__main__":
    main()
