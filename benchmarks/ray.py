"""The pipeline on local Ray (2 CPUs) beside the local executor (2 workers), and one big JSONL file read in parts.

(1) The quickstart pipeline (examples/quickstart.yaml) and (2) the dedup benchmark's MinHash pipeline
(benchmarks/dedup.py's generated corpus, threshold 0.8), each run with ``LocalExecutor(workers=2)`` and
with ``RayExecutor`` on a local Ray cluster of 2 CPUs started before the clock (a cluster is long-lived;
one small warm-up run starts its workers). Goal: Ray at most 1.3x the local time. Both print the wall
time of every phase (``RunResult.seconds``): the per-stage overhead.
(3) Ingest of one JSONL file (500 MB by default) with an empty pipeline on 2 workers, local and on Ray,
beside bare polars ``read_ndjson`` + ``write_parquet`` (zstd) of the same file in one process (polars
using every core). The file is read in parts (``split_bytes``, 64 MB by default). Goal: >= 0.7x
polars' MB/s, local and on Ray: the median over ``--repeat`` rounds of the three run back to back.
Every contender runs in a fresh subprocess; the outputs of local and Ray are checked to be identical.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
from pathlib import Path

from benchmarks.common import PEAK_RSS, ROOT, WORK, make_jsonl, measure, table
from benchmarks.dedup import make_corpus

RUN = PEAK_RSS + """
import sys, time
sys.path.insert(0, {root!r})
from corpus import InputSpec
from corpus.config import load_config
from corpus.executor import LocalExecutor
from corpus.stages.minhash import MinHashDedup
kind, what = {kind!r}, {what!r}
common = dict(workers=2, quiet=True, report=False, split_bytes={split})
if kind == "ray":
    import ray
    from corpus.ray_executor import RayExecutor
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={{"env_vars": {{"POLARS_MAX_THREADS": "1"}}}})
    make = lambda: RayExecutor(**common)
else:
    make = lambda: LocalExecutor(**common)
if what == "quickstart":
    cfg = load_config({root!r} + "/examples/quickstart.yaml", output={out!r})
    ops, inputs, shard, base = cfg.pipeline, cfg.inputs, cfg.shard_max_bytes, cfg.base_dir
elif what == "dedup":
    ops, inputs, shard, base = [MinHashDedup(threshold=0.8)], [InputSpec(source="bench", path={data!r})], 64 << 20, None
else:
    ops, inputs, shard, base = [], [InputSpec(source="bench", path={data!r})], 64 << 20, None
cold = None
if kind == "ray":  # start the workers (and their imports) before the clock, as a long-lived cluster has them
    t = time.perf_counter()
    make().run(ops, inputs, {out!r} + "-warm", shard, base)
    cold = time.perf_counter() - t
t = time.perf_counter()
res = make().run(ops, inputs, {out!r}, shard, base)
dt = time.perf_counter() - t
assert all(b["ok"] for b in res.balance)
print(json.dumps({{"seconds": dt, "cold_s": cold, "phases": res.seconds, "peak_rss_mb": peak_mb(),
                  "content_hash": res.manifest["content_hash"]}}))
"""

POLARS = PEAK_RSS + """
import os, time, polars as pl
t = time.perf_counter()
pl.read_ndjson({data!r}).write_parquet({out!r}, compression="zstd")
print(json.dumps({{"seconds": time.perf_counter() - t, "peak_rss_mb": peak_mb()}}))
"""


def _run(kind: str, what: str, data: Path | None, split: int) -> dict:
    out = WORK / f"ray-{what}-{kind}"
    for p in (out, Path(f"{out}-warm")):
        shutil.rmtree(p, ignore_errors=True)
    r = measure(RUN.format(root=str(ROOT), kind=kind, what=what, data=str(data), out=str(out), split=split))
    for p in (out, Path(f"{out}-warm")):
        shutil.rmtree(p, ignore_errors=True)
    return r


def _pipelines(dedup_docs: int, split: int) -> tuple[list[dict], list[str]]:
    rows, phases = [], []
    data = {"quickstart": None, "dedup": WORK / f"dedup-{dedup_docs}"}
    make_corpus(data["dedup"], dedup_docs)
    for what, folder in data.items():
        local, ray = _run("local", what, folder, split), _run("ray", what, folder, split)
        same = "yes" if local["content_hash"] == ray["content_hash"] else "NO"
        rows.append({"pipeline": what, "local s": f"{local['seconds']:.2f}", "ray s": f"{ray['seconds']:.2f}",
                     "ray s, first run": f"{ray['cold_s']:.2f}",
                     "ray / local": f"{ray['seconds'] / local['seconds']:.2f}x (goal <= 1.30x)",
                     "same output": same})
        phases.append(f"{what}: per phase, local -> ray (seconds)")
        for name, sec in local["phases"].items():
            other = ray["phases"].get(name, 0.0)
            phases.append(f"  {name:<40} {sec:7.2f} -> {other:7.2f}  ({other - sec:+.2f})")
    return rows, phases


def _ingest(mb: int, split: int, repeat: int) -> list[dict]:
    """Rounds of polars, local and Ray back to back (this VM's speed drifts: each ratio compares runs of one
    round); the fastest run of each path, and per path the median ratio over rounds (and the best)."""
    folder = WORK / f"ray-ingest-{mb}mb"
    make_jsonl(folder, mb, file_mb=mb)  # one file
    data = next(folder.glob("*.jsonl"))
    size = data.stat().st_size / 1e6
    out = WORK / "ray-ingest-polars.parquet"
    runs: dict[str, list[dict]] = {"polars": [], "local": [], "ray": []}
    for _ in range(repeat):
        runs["polars"].append(measure(POLARS.format(data=str(data), out=str(out))))
        out.unlink(missing_ok=True)
        for kind in ("local", "ray"):
            runs[kind].append(_run(kind, "ingest", folder, split))
    base = min(r["seconds"] for r in runs["polars"])
    rows = [{"ingest": f"{size:.0f} MB, one file", "path": "polars read_ndjson+write_parquet",
             "seconds": f"{base:.2f}", "MB/s": f"{size / base:.1f}"}]
    hashes = {r["content_hash"] for kind in ("local", "ray") for r in runs[kind]}
    for kind in ("local", "ray"):
        best = min(r["seconds"] for r in runs[kind])
        ratios = sorted(p["seconds"] / r["seconds"] for p, r in zip(runs["polars"], runs[kind], strict=True))
        rows.append({"ingest": f"{size:.0f} MB, one file", "path": f"corpus run, {kind}, 2 workers",
                     "seconds": f"{best:.2f}", "MB/s": f"{size / best:.1f}",
                     "vs polars": f"{statistics.median(ratios):.2f}x (best {ratios[-1]:.2f}x; goal >= 0.70x)",
                     "split_bytes": f"{split >> 20} MB" if split else "whole"})
    rows[-1]["same output"] = "yes" if len(hashes) == 1 else "NO"
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dedup-docs", type=int, default=20000, help="documents of the dedup corpus")
    ap.add_argument("--ingest-mb", type=int, default=500, help="size of the one JSONL file to ingest (0: skip)")
    ap.add_argument("--split-mb", type=int, default=64, help="split_bytes in MB (0: read files whole)")
    ap.add_argument("--skip-pipelines", action="store_true", help="only the ingest figure")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of the ingest figure (polars, local, Ray)")
    args = ap.parse_args(argv)
    split = args.split_mb << 20
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    if not args.skip_pipelines:
        rows, phases = _pipelines(args.dedup_docs, split)
        print(table(rows, ["pipeline", "local s", "ray s", "ray / local", "ray s, first run", "same output"]))
        print("(local s includes starting its process pool, as every local run does; ray s runs on a cluster "
              "whose workers are up, the first run's time includes starting them)")
        print("\n".join(phases))
    if args.ingest_mb:
        rows = _ingest(args.ingest_mb, split, args.repeat)
        print(table(rows, ["ingest", "path", "seconds", "MB/s", "vs polars", "split_bytes", "same output"]))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
