"""Progress bars (rich) for long work: units done, documents, MB/s. Silent with quiet=True."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress


class Progress:
    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self._stats: dict[int, list[float]] = {}  # task id -> [docs, bytes, start time]
        self._bar: RichProgress | None = None
        if not quiet:
            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[docs]:>10,} docs"),
                TextColumn("{task.fields[rate]:>8.1f} {task.fields[unit]}"),
                TimeElapsedColumn(),
                console=Console(file=sys.stderr),
                transient=False,
            )

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def add(self, description: str, total: int | None, completed: int = 0, unit: str = "MB/s") -> int:
        """A bar; ``unit`` names what its rate counts (input files as stored, or document text)."""
        if self._bar is None:
            return 0
        tid = self._bar.add_task(description, total=total, completed=completed, docs=0, rate=0.0, unit=unit)
        self._stats[tid] = [0, 0, time.perf_counter()]
        return tid

    def advance(self, tid: int, docs: int = 0, nbytes: int = 0) -> None:
        if self._bar is None:
            return
        st = self._stats[tid]
        st[0] += docs
        st[1] += nbytes
        rate = st[1] / 1e6 / max(time.perf_counter() - st[2], 1e-9)
        self._bar.update(tid, advance=1, docs=int(st[0]), rate=rate)

    def log(self, message: str) -> None:
        """A line above the bars (or nothing when quiet)."""
        if self._bar is not None:
            self._bar.console.print(message, highlight=False)

    def finish(self, tid: int) -> None:
        if self._bar is not None:
            self._bar.update(tid, total=1, completed=1)
