"""The one progress display of the toolkit (rich): the data executor's units and the trainer's steps.

A bar per task: description, bar, done/total, a free text (docs and MB/s, or loss and tokens/s),
elapsed time and an ETA. On a terminal the bars redraw in place and ``log`` prints above them. Off a
terminal (a pipe, a log file, CI) nothing redraws, so ``update`` also writes one line per call with
its ETA (a long job still says where it is), ``log`` goes to the given logger (else stderr), and each
bar's final state is printed once at the end. Silent with ``quiet=True``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress


def duration(seconds: float) -> str:
    """1h02m, 3m05s, 42s."""
    s = int(round(max(seconds, 0)))
    h, m = s // 3600, s % 3600 // 60
    return f"{h}h{m:02d}m" if h else f"{m}m{s % 60:02d}s" if m else f"{s}s"


@dataclass
class _Task:
    description: str
    total: int | None
    start: int  # done when added (a resumed job): the ETA counts only what this process did
    started: float = field(default_factory=time.perf_counter)
    docs: int = 0
    nbytes: int = 0
    unit: str = "MB/s"  # what the rate counts: input files as stored, or document text

    def eta(self, completed: int) -> float | None:
        done = completed - self.start
        if self.total is None or done <= 0:
            return None
        return (time.perf_counter() - self.started) / done * (self.total - completed)


class Progress:
    """``bars=False``: no bars at all, only the lines of ``update`` and ``log``."""

    def __init__(self, quiet: bool = False, *, bars: bool = True, logger: logging.Logger | None = None):
        self.quiet = quiet
        self.logger = logger
        self._tasks: dict[int, _Task] = {}
        self._bar: RichProgress | None = None
        console = Console(file=sys.stderr)
        if not console.is_terminal:  # a log's final bars: 80 columns cut their counts, times and ETA
            console = Console(file=sys.stderr, width=160)
        self._live = not quiet and bars and console.is_terminal  # bars redraw in place
        if not quiet and bars:
            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=console, transient=False)

    def __enter__(self) -> Progress:
        return self.start()

    def start(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()

    def add(self, description: str, total: int | None, completed: int = 0, unit: str = "MB/s") -> int:
        """A bar; ``unit`` names what ``advance``'s rate counts (input files as stored, or document text)."""
        tid = len(self._tasks)
        if self._bar is not None:
            tid = self._bar.add_task(description, total=total, completed=completed, info="")
        self._tasks[tid] = _Task(description, total, completed, unit=unit)
        return tid

    def advance(self, tid: int, docs: int = 0, nbytes: int = 0) -> None:
        """One unit done (the executor): documents and input bytes it read, shown as a count and MB/s."""
        if self._bar is None:
            return
        t = self._tasks[tid]
        t.docs += docs
        t.nbytes += nbytes
        rate = t.nbytes / 1e6 / max(time.perf_counter() - t.started, 1e-9)
        self._bar.update(tid, advance=1, info=f"{t.docs:>10,} docs {rate:>8.1f} {t.unit}")

    def update(self, tid: int, completed: int, info: str = "") -> None:
        """Set the position and the text (the trainer, every few steps); off a terminal, a line with the ETA."""
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.update(tid, completed=completed, info=info)
        if self._live:
            return
        t = self._tasks[tid]
        eta = t.eta(completed)
        where = f"{completed}/{t.total}" if t.total is not None else str(completed)
        self.log(f"{t.description} {where} {info}" + (f" ETA {duration(eta)}" if eta is not None else ""))

    def log(self, message: str) -> None:
        """A line above the bars; off a terminal, to the logger (or stderr). Nothing when quiet."""
        if self.quiet:
            return
        if self._bar is not None and (self._live or self.logger is None):
            self._bar.console.print(message, highlight=False)
        elif self.logger is not None:
            self.logger.info("%s", message)
        else:
            print(message, file=sys.stderr)

    def finish(self, tid: int) -> None:
        if self._bar is not None:
            self._bar.update(tid, total=1, completed=1)


@contextmanager
def entries_bar(progress: Progress | None, label: str, entries: list[dict],
                unit: str = "MB/s") -> Iterator[Callable[[dict], None]]:
    """``done(entry)``: one file of a manifest list done (its ``docs`` or ``rows`` and ``bytes``), on a bar
    of them that ``progress`` shows and closes; nothing without progress (`corpus export`, `corpus verify`)."""
    if progress is None:
        yield lambda entry: None
        return
    with progress:
        bar = progress.add(label, total=len(entries), unit=unit)
        yield lambda e: progress.advance(bar, docs=e.get("docs", e.get("rows")) or 0, nbytes=e.get("bytes", 0))
