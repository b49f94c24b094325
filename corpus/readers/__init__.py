"""Input readers: expand configured inputs into tasks (``plan_tasks``) and stream each task as
chunks of documents plus quarantined records (``read_task``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from corpus.readers.base import FORMATS, InputError, Inputs, InputSpec, ReadChunk, ReadTask, as_specs
from corpus.readers.csv import csv_problem, read_csv
from corpus.readers.duckdb import read_duckdb
from corpus.readers.jsonl import read_jsonl
from corpus.readers.parquet import parquet_problem, read_parquet
from corpus.readers.plan import plan_tasks
from corpus.readers.text import read_text

if TYPE_CHECKING:
    from corpus.quarantine import RawStore

__all__ = ["FORMATS", "InputError", "InputSpec", "Inputs", "ReadChunk", "ReadTask", "as_specs", "plan_tasks",
           "read_task", "whole_file_problem"]

_READERS: dict[str, Callable[[ReadTask, int, RawStore | None], Iterator[ReadChunk]]] = {
    "jsonl": read_jsonl,
    "parquet": read_parquet,
    "csv": read_csv,
    "text": read_text,
    "duckdb": read_duckdb,
}


def read_task(task: ReadTask, chunk_bytes: int = 32 << 20, sink: RawStore | None = None) -> Iterator[ReadChunk]:
    """Stream one task as ReadChunks of about ``chunk_bytes`` of input each.

    Every record ends up in ``docs`` or ``bad``; only whole-input problems raise InputError.
    ``sink`` stores the bytes of quarantined records over max_doc_bytes (else they stay in ``bad``).
    """
    reader = _READERS.get(task.format)
    if reader is None:
        raise InputError(f"input {task.spec.source!r}: unknown format {task.format!r}")
    return reader(task, max(1, chunk_bytes), sink)


def whole_file_problem(task: ReadTask) -> str | None:
    """Why a run would quarantine this whole file (a Parquet file without the text column or with a
    broken footer, a CSV file whose header lacks it): cheap, from the footer or the first lines."""
    check = {"parquet": parquet_problem, "csv": csv_problem}.get(task.format)
    return check(task) if check is not None else None
