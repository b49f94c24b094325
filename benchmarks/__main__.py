"""Benchmark runner: `python -m benchmarks [NAME ...] [OPTIONS]` prints each figure beside its baseline.

Options after one benchmark's name are that benchmark's (`python -m benchmarks ingest --sizes 50`,
`python -m benchmarks ingest --help`). Names and options are checked before anything runs.
"""

from __future__ import annotations

import sys

from benchmarks import (
    annotate_load,
    clean,
    dedup,
    embed,
    enrich,
    ingest,
    pii,
    profile,
    quality,
    quality_tokens,
    ray,
    rlhf,
    tokenize,
    train,
    validate,
)

BENCHMARKS = {"ingest": ingest.main, "tokenize": tokenize.main, "profile": profile.main, "train": train.main,
              "dedup": dedup.main, "clean": clean.main, "pii": pii.main, "enrich": enrich.main,
              "validate": validate.main, "embed": embed.main, "ray": ray.main, "quality": quality.main,
              "quality_tokens": quality_tokens.main,
              "rlhf": rlhf.main, "annotate": annotate_load.main}
USAGE = f"usage: python -m benchmarks [NAME ...] [OPTIONS]   (NAME: {', '.join(BENCHMARKS)}; all by default)"


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    names = []
    while args and not args[0].startswith("-"):
        names.append(args.pop(0))
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        sys.exit(f"unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHMARKS)}")
    if args and not names:
        if args[0] in ("-h", "--help"):
            print(USAGE + "\n\n" + "\n".join(f"  {n}: {sys.modules[f.__module__].__doc__.splitlines()[0]}"
                                              for n, f in BENCHMARKS.items()))
            return
        sys.exit(f"options {' '.join(args)} need one benchmark name before them\n{USAGE}")
    if args and len(names) > 1:
        sys.exit(f"options {' '.join(args)} apply to one benchmark, not {len(names)}\n{USAGE}")
    for name in names or list(BENCHMARKS):
        print(f"== {name}")
        BENCHMARKS[name](args)


if __name__ == "__main__":
    main()
