"""Input readers: expand configured inputs into tasks (``plan_tasks``) and stream each task as
chunks of documents plus quarantined records (``read_task``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from corpus.readers.base import FORMATS, InputError, InputSpec, ReadChunk, ReadTask
from corpus.readers.csv import read_csv
from corpus.readers.duckdb import read_duckdb
from corpus.readers.jsonl import read_jsonl
from corpus.readers.parquet import read_parquet
from corpus.readers.plan import plan_tasks
from corpus.readers.text import read_text

__all__ = ["FORMATS", "InputError", "InputSpec", "ReadChunk", "ReadTask", "plan_tasks", "read_task"]

_READERS: dict[str, Callable[[ReadTask, int], Iterator[ReadChunk]]] = {
    "jsonl": read_jsonl,
    "parquet": read_parquet,
    "csv": read_csv,
    "text": read_text,
    "duckdb": read_duckdb,
}


def read_task(task: ReadTask, chunk_bytes: int = 32 << 20) -> Iterator[ReadChunk]:
    """Stream one task as ReadChunks of about ``chunk_bytes`` of input each.

    Every record ends up in ``docs`` or ``bad``; only whole-input problems raise InputError.
    """
    reader = _READERS.get(task.format)
    if reader is None:
        raise InputError(f"input {task.spec.source!r}: unknown format {task.format!r}")
    return reader(task, max(1, chunk_bytes))
