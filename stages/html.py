"""HTML to text: trafilatura in a child process, with a time limit per document.

One pathological page must not stall a worker, and a pure-Python extractor cannot be interrupted from
a thread, so extraction runs in a child process (one per worker, started on first use and reused): the
worker sends one page at a time and waits for the answer; once the child has spent ``timeout_s`` of
CPU time on the page (read from /proc, so a busy machine does not fail pages a quiet one extracts), or
ten times that in wall-clock time, the child is killed (the page gets status ``timeout``) and a fresh
one is started for the next page. A child that crashes costs only its page (status ``error``). Pages
travel as UTF-8 frames over pipes, never pickled.

Two registered operators, used together (a map cannot drop rows)::

    - op: html_to_text     # map: text becomes the extracted text; adds html_status and counters
      timeout_s: 1.0
    - op: html_filter      # filter: drops pages that timed out, failed or had no text, with that reason

A page that is not extracted keeps its HTML as its text, so the rejected row shows what went wrong.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from corpus.operators import FilterOperator, MapOperator, StageView, Verdict
from corpus.stages.html_child import LENGTH, frame

_TAG = r"<(?:[A-Za-z][A-Za-z0-9-]*|/[A-Za-z]|!--|!DOCTYPE)[\s>/]?"  # an HTML tag, comment or doctype opening

CHILD = Path(__file__).with_name("html_child.py")

OK, EMPTY, TIMEOUT, ERROR, SKIPPED = "ok", "empty", "timeout", "error", "skipped"
STATUSES = (OK, EMPTY, TIMEOUT, ERROR, SKIPPED)
REASONS = {EMPTY: "html_no_text", TIMEOUT: "html_timeout", ERROR: "html_error"}
START_TIMEOUT_S = 120.0  # importing the extractor and a first page; not part of any page's limit


WALL_FACTOR = 10  # a page waiting (not computing) is stopped after this many times its CPU limit in wall time


class _Died(Exception):
    pass


class _Late(Exception):
    pass


def _cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used so far, from /proc; None where that is unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Budget:
    """A page's time: up when the child has spent ``cpu_s`` of CPU on it (measured, so that a busy
    machine does not fail pages a quiet one extracts), or ``wall_s`` have passed; wall time alone
    where CPU time cannot be read."""

    def __init__(self, pid: int, cpu_s: float, wall_s: float):
        self.pid, self.cpu_s, self.wall_s = pid, cpu_s, wall_s
        self.cpu0 = _cpu_seconds(pid)
        self.wall_end = time.monotonic() + wall_s
        self.why = ""

    def wait(self) -> float | None:
        """How long to wait for the child before looking again; None when the time is up."""
        left = self.wall_end - time.monotonic()
        if left <= 0:
            self.why = "wall-clock"
            return None
        if self.cpu0 is None:
            return left
        used = _cpu_seconds(self.pid)
        if used is not None and used - self.cpu0 > self.cpu_s:
            self.why = "CPU"
            return None
        return min(left, 0.05)


class Extractor:
    """The worker's side of one extraction child: ``extract(html) -> (status, text or error)``."""

    def __init__(self, extractor: str, options: dict[str, Any], timeout_s: float):
        self.config = json.dumps({"extractor": extractor, "options": options}).encode()
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self._finalizer: weakref.finalize | None = None

    def _start(self) -> None:
        env = dict(os.environ)
        # What this process can import, the child can (an extractor defined next to the pipeline's script).
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in sys.path if p)
        # Run by path, not as corpus.stages.html_child: the child imports only the standard library and
        # the extractor, not this package. -P: its folder (stages/, with an html.py) is not put on sys.path.
        self.proc = subprocess.Popen([sys.executable, "-P", str(CHILD)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)
        self.starts += 1
        self._finalizer = weakref.finalize(self, _kill, self.proc)
        try:
            self._send(self.config)
            status, payload = self._receive(_Budget(self.proc.pid, START_TIMEOUT_S, START_TIMEOUT_S))
        except (_Died, _Late):
            status, payload = b"e", f"the extraction process did not start (exit code {self._stop()})"
        if status != b"r":
            self._stop()
            raise RuntimeError(f"html_to_text: cannot start the extractor: {payload}")

    def _stop(self) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        proc.kill()
        code = proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
        if self._finalizer is not None:
            self._finalizer.detach()
        return code

    close = _stop

    def _send(self, data: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(frame(data))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise _Died from exc

    def _read(self, n: int, budget: _Budget) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buf = bytearray()
        while len(buf) < n:
            wait = budget.wait()
            if wait is None:
                raise _Late
            if not select.select([fd], [], [], wait)[0]:
                continue
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                raise _Died
            buf += chunk
        return bytes(buf)

    def _receive(self, budget: _Budget) -> tuple[bytes, str]:
        status = self._read(1, budget)
        (n,) = LENGTH.unpack(self._read(4, budget))
        return status, self._read(n, budget).decode()

    def extract(self, html: str) -> tuple[str, str]:
        """(status, text) with status ok, empty, timeout or error (text: the error's line)."""
        for attempt in (0, 1):
            if self.proc is None:
                self._start()
            assert self.proc is not None
            budget = _Budget(self.proc.pid, self.timeout_s, max(WALL_FACTOR * self.timeout_s, 5.0))
            try:
                self._send(html.encode())
                status, payload = self._receive(budget)
            except _Died:
                code = self._stop()
                if attempt == 0 and code == 0:  # the child had left on its own (idle); not this page's doing
                    continue
                return ERROR, f"the extraction process died (exit code {code})"
            except _Late:
                self._stop()
                if budget.why == "CPU":
                    return TIMEOUT, f"over {self.timeout_s:g} s of CPU"
                return TIMEOUT, f"no result within {budget.wall_s:g} s (wall clock)"
            return {b"o": OK, b"n": EMPTY}.get(status, ERROR), payload
        raise AssertionError("unreachable")


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------- operators

COUNTERS = {OK: "html_extracted", EMPTY: "html_empty", TIMEOUT: "html_timeout", ERROR: "html_error"}


@dataclass
class HtmlToText(MapOperator):
    """Extract the main text of HTML pages with trafilatura, within a CPU-time limit per page.

    Adds ``html_status`` (ok, empty, timeout, error, skipped) and a counter per status; pair with
    ``html_filter`` to drop the pages that gave no text."""

    name = "html_to_text"
    needs = {"text": pl.String, "source": pl.String}
    modifies = ("text",)
    adds = {"html_status": pl.String, **{c: pl.Int64 for c in COUNTERS.values()}}
    counters = tuple(COUNTERS.values())
    source_params = ("sources",)

    timeout_s: float = 1.0  # CPU seconds per page (datatrove's sandboxed extractor allows 1 s as well)
    favor_precision: bool = True  # as FineWeb: less boilerplate, at some cost in recall
    include_tables: bool = True
    include_comments: bool = False
    fast: bool = False  # trafilatura's fast mode: no fallback extractors
    extractor: str = "trafilatura"  # or "module:function" (HTML string -> text or None) for another
    sources: list[str] = field(default_factory=list)  # only these sources' documents (empty: all)

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError("timeout_s must be > 0")
        if self.extractor == "trafilatura":
            try:
                import trafilatura  # noqa: F401
            except ImportError:
                raise ValueError("html_to_text needs trafilatura: pip install 'corpusforge[clean]'") from None
        else:  # loaded here too, so a wrong name is a config error, not a failed run (the child loads its own)
            from corpus.registry import load_object

            try:
                fn = load_object(self.extractor)
            except (ImportError, AttributeError, ValueError) as exc:
                raise ValueError(f"extractor must be 'trafilatura' or 'module:function' (an importable function "
                                 f"of one HTML string), got {self.extractor!r}: {exc}") from None
            if not callable(fn):
                raise ValueError(f"extractor {self.extractor!r} is not a function")

    def sample_problem(self, source: str, text: pl.Series) -> str | None:
        if (self.sources and source not in self.sources) or text.len() == 0 or text.str.contains(_TAG).any():
            return None
        return (f"none of the first {text.len():,} documents holds an HTML tag: html_to_text keeps the main text "
                "of HTML pages and finds none in plain text, so html_filter would drop them all (`sources:` "
                "limits it to the inputs that hold HTML)")
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_child"}  # a worker starts its own child

    def _options(self) -> dict[str, Any]:
        if self.extractor != "trafilatura":
            return {}
        return {"favor_precision": self.favor_precision, "include_tables": self.include_tables,
                "include_comments": self.include_comments, "fast": self.fast}

    def map(self, df: pl.DataFrame) -> pl.DataFrame:
        child = self.__dict__.get("_child")
        if child is None:
            child = self.__dict__["_child"] = Extractor(self.extractor, self._options(), self.timeout_s)
        todo = df["source"].is_in(self.sources) if self.sources else pl.Series([True] * df.height)
        texts, statuses = [], []
        for html, go in zip(df["text"], todo, strict=True):
            if not go:
                texts.append(html)
                statuses.append(SKIPPED)
                continue
            status, text = child.extract(html or "")
            texts.append(text if status == OK else html)
            statuses.append(status)
        status = pl.Series("html_status", statuses, pl.String)
        return df.with_columns(pl.Series("text", texts, pl.String), status,
                               *((status == s).cast(pl.Int64).alias(c) for s, c in COUNTERS.items()))

    report_title = "HTML extraction"
    report_order = 61

    @classmethod
    def report(cls, stages: list[StageView]) -> object:
        from corpus.stages.clean_report import counters_section

        return counters_section(stages, {"html_extracted": "text extracted", "html_empty": "no text found",
                                         "html_timeout": "timed out", "html_error": "extractor failed"}, "pages")


@dataclass
class HtmlFilter(FilterOperator):
    """Drop pages html_to_text could not turn into text, with the reason (timeout, error, no text).

    Reasons html_timeout, html_error and (with ``drop_empty``) html_no_text."""

    name = "html_filter"
    needs = {"html_status": pl.String}

    drop_empty: bool = True

    def filter(self, df: pl.DataFrame) -> Verdict:
        bad = [TIMEOUT, ERROR] + ([EMPTY] if self.drop_empty else [])
        status = df["html_status"]
        reason = status.replace_strict(REASONS, default=None, return_dtype=pl.String)
        return Verdict(keep=~status.is_in(bad), reason=reason)

