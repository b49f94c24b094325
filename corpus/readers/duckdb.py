"""DuckDB reader: one SQL query (over a database file, or in memory over files it names)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

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


def open_query(task: ReadTask) -> tuple[Any, Any]:
    """The input's DuckDB connection and its query's relation (bound, not run): InputError saying what
    failed, without the input's name (a run and `corpus check` both word it so)."""
    import duckdb  # here: a worker reading files never needs it

    database = task.path[len(PREFIX) :] if task.path.startswith(PREFIX) else task.path
    if not task.spec.query:
        raise InputError("format duckdb needs a query")
    try:
        con = duckdb.connect(database, read_only=database != MEMORY)
    except duckdb.Error as exc:
        raise InputError(f"cannot open DuckDB database {database}: {one_line(exc)}") from None
    try:
        rel = con.sql(task.spec.query)
    except duckdb.Error as exc:
        con.close()
        raise InputError(f"DuckDB query failed: {one_line(exc)}") from None
    if rel is None:
        con.close()
        raise InputError("DuckDB query returns no result set (is it a SELECT?)")
    return con, rel


def read_duckdb(task: ReadTask, chunk_bytes: int, sink: RawStore | None = None) -> Iterator[ReadChunk]:
    import duckdb

    where = f"input {task.spec.source!r}"
    try:
        con, rel = open_query(task)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    try:
        check_columns(task, list(rel.columns), "the DuckDB query result")
        # Row width is unknown before the first batch; ~2 KB per row is a typical document.
        batch_rows = max(1, min(chunk_bytes // 2048, 1 << 20))
        try:
            yield from read_batches(task, rel.to_arrow_reader(batch_rows), None, 0, sink)
        except duckdb.Error as exc:
            raise InputError(f"{where}: DuckDB query failed while reading: {one_line(exc)}") from None
    finally:
        con.close()
