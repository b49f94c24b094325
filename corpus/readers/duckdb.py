"""DuckDB reader: one SQL query (over a database file, or in memory over files it names)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from corpus.readers.base import InputError, ReadChunk, ReadTask
from corpus.readers.parquet import check_columns, read_batches

if TYPE_CHECKING:
    from corpus.quarantine import RawStore

PREFIX = "duckdb:"
MEMORY = ":memory:"


def query_label(query: str) -> str:
    """Stable short name of a query, used as the task's rel_path (and so in derived ids)."""
    return PREFIX + hashlib.sha256(query.encode("utf-8")).hexdigest()[:12]


def one_line(exc: BaseException) -> str:
    # DuckDB messages carry a caret diagram over several lines; keep the words.
    lines = [ln.strip() for ln in str(exc).splitlines()]
    return " ".join(ln for ln in lines if ln and not ln.startswith("LINE ") and set(ln) != {"^"})


def read_duckdb(task: ReadTask, chunk_bytes: int, sink: RawStore | None = None) -> Iterator[ReadChunk]:
    import duckdb  # here: a worker reading files never needs it

    spec = task.spec
    database = task.path[len(PREFIX) :] if task.path.startswith(PREFIX) else task.path
    where = f"input {spec.source!r}"
    if not spec.query:
        raise InputError(f"{where}: format duckdb needs a query")
    try:
        con = duckdb.connect(database, read_only=database != MEMORY)
    except duckdb.Error as exc:
        raise InputError(f"{where}: cannot open DuckDB database {database}: {one_line(exc)}") from None
    try:
        try:
            rel = con.sql(spec.query)
        except duckdb.Error as exc:
            raise InputError(f"{where}: DuckDB query failed: {one_line(exc)}") from None
        if rel is None:
            raise InputError(f"{where}: DuckDB query returns no result set (is it a SELECT?)")
        check_columns(task, list(rel.columns), "the DuckDB query result")
        # Row width is unknown before the first batch; ~2 KB per row is a typical document.
        batch_rows = max(1, min(chunk_bytes // 2048, 1 << 20))
        try:
            yield from read_batches(task, rel.to_arrow_reader(batch_rows), None, 0, sink)
        except duckdb.Error as exc:
            raise InputError(f"{where}: DuckDB query failed while reading: {one_line(exc)}") from None
    finally:
        con.close()
