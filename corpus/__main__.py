"""The `corpus` command's entry point, also `python -m corpus`.

The command line is imported only when called: a run's spawned workers import the main module of
the process that started them (multiprocessing's spawn), and the `corpus` script's own module would
otherwise bring the whole CLI (argparse tables, rich, YAML, the executor) into every worker.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from corpus.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
