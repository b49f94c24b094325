"""Benchmark runner: `python -m benchmarks [NAME ...]` prints each figure beside its baseline."""

from __future__ import annotations

import sys

from benchmarks import dedup, ingest, profile, tokenize, train

BENCHMARKS = {"ingest": ingest.main, "tokenize": tokenize.main, "profile": profile.main, "train": train.main}
BENCHMARKS["dedup"] = dedup.main


def main() -> None:
    names = sys.argv[1:] or list(BENCHMARKS)
    for name in names:
        if name not in BENCHMARKS:
            sys.exit(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
        print(f"== {name}")
        BENCHMARKS[name]([])


if __name__ == "__main__":
    main()
