"""Parquet reader, and the Arrow-batch path it shares with the DuckDB reader.

Columns are typed, so no value was converted behind our back: the vectorised checks only flag
null, empty, NUL-bearing or oversized texts and non-scalar ids; those rows get the per-record
rules (with the row serialized as JSON for ``raw``). JSON has no NaN or infinity: a float column's
are null in meta and in a ``text_json`` text, on both paths (``raw`` keeps them as Python writes them).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from corpus.readers.base import InputError, ReadChunk, ReadTask
from corpus.readers.jsonl import DocBuilder, json_default
from corpus.schema import RAW_FILE

if TYPE_CHECKING:
    from corpus.quarantine import RawStore


def missing_column(task: ReadTask, names: list[str], what: str, schema: pa.Schema | None = None) -> str | None:
    """Why `what` cannot give documents, when it lacks the text column (else None). A file without
    it is quarantined whole, not thousands of bad rows; a query without it is a config error. With
    ``schema``, a dotted text_key may name a field of its struct columns (``doc.body``)."""
    key = task.spec.text_key
    if key in names or (schema is not None and key in schema_paths(schema)):
        return None
    shown = ", ".join(names[:30]) + (", ..." if len(names) > 30 else "")
    return f"{what} has no column {key!r} (columns: {shown or 'none'})"


def schema_paths(schema: pa.Schema) -> list[str]:
    """Every field of a schema, nested ones as dotted paths into their struct columns."""
    out: list[str] = []

    def walk(fields: Iterable[pa.Field], prefix: str) -> None:
        for f in fields:
            out.append(prefix + f.name)
            if pa.types.is_struct(f.type):
                walk(f.type, prefix + f.name + ".")

    walk(schema, "")
    return out


def check_columns(task: ReadTask, names: list[str], what: str) -> None:
    """Raise InputError when `what` lacks the text column."""
    if (problem := missing_column(task, names, what)) is not None:
        raise InputError(f"input {task.spec.source!r}: {problem}")


def repeated_columns(names: list[str]) -> str:
    """The column names given more than once, with their places ('' when none): a file's header or
    schema, whose repeated name leaves unknown which value is the field's (CSV and Parquet alike)."""
    counts = Counter(names)
    parts = [f"{name!r} {len(cols)} times (columns {', '.join(map(str, cols))})"
             for name in dict.fromkeys(n for n in names if counts[n] > 1)
             for cols in [[i for i, n in enumerate(names, 1) if n == name]]]
    return "; ".join(parts)


class UnreadableColumns(InputError):
    """Arrow data polars cannot take as a frame (a column name given twice, a type it cannot import): a
    Parquet file is quarantined whole from there, a DuckDB query is a config error."""


def _repeated_names(task: ReadTask, names: list[str]) -> str | None:
    """What to say when ``names`` (a Parquet file's or a query result's columns) repeats one, else None."""
    repeated = repeated_columns(names)
    if not repeated:
        return None
    if task.format == "duckdb":
        name = next(n for n in names if names.count(n) > 1)
        return (f"input {task.spec.source!r}: the DuckDB query result names {repeated}: give each its own "
                f"name in the query (… AS {name}_2)")
    return (f"Parquet file {task.rel_path!r} names {repeated}: which value is the field's is unknown, so the "
            "file is not read (a record would keep one and lose the other) — rename one")


def _unreadable_column(task: ReadTask, batch: pa.RecordBatch, exc: BaseException) -> str:
    """Which column of a batch polars cannot import, and what to do (``exc``: the batch's own error)."""
    name, where = "", "a column"
    for i, field in enumerate(batch.schema):
        try:
            pl.from_arrow(batch.column(i))
        except (Exception, pl.exceptions.PanicException) as col_exc:
            name, where, exc = field.name, f"column {field.name!r} (type {field.type})", col_exc
            break
    # polars' first sentence (its hints name unstable settings)
    why = (str(exc).splitlines() or [type(exc).__name__])[0].split(". Hint:")[0]
    if task.format == "duckdb":
        return (f"input {task.spec.source!r}: the DuckDB query result's {where} cannot be read ({why}): cast it "
                f"in the query ({name or 'the column'}::VARCHAR) or leave it out")
    return f"Parquet file {task.rel_path!r}: {where} cannot be read ({why}), so the file is not read"


def _raw_json(rec: dict) -> bytes:
    return json.dumps(rec, ensure_ascii=False, default=json_default).encode("utf-8", "surrogatepass")


def arrow_batch_chunk(task: ReadTask, batch: pa.RecordBatch, first_row: int, bytes_read: int,
                      sink: RawStore | None = None) -> ReadChunk:
    """One Arrow batch (rows numbered from first_row) as a ReadChunk."""
    repeated = _repeated_names(task, batch.schema.names)
    if repeated is not None:
        raise UnreadableColumns(repeated)
    try:
        df = pl.from_arrow(batch)
    except (Exception, pl.exceptions.PanicException) as exc:
        raise UnreadableColumns(_unreadable_column(task, batch, exc)) from None
    assert isinstance(df, pl.DataFrame)
    b = DocBuilder(task, sink)
    key = task.spec.text_key
    if isinstance(df.schema.get(key), pl.Categorical | pl.Enum):  # dictionary-encoded strings
        df = df.with_columns(pl.col(key).cast(pl.String))
    b.seen = df.height
    rows = pl.int_range(first_row, first_row + df.height, dtype=pl.Int64, eager=True)
    lifted = b.lift(df)  # dotted keys as columns; the per-record path reads the rows as they are
    flags = b.flags(lifted, coerced=False)
    try:
        if flags is None:
            b.add_frame(lifted, rows)
        else:
            b.add_frame(lifted.filter(~flags), rows.filter(~flags))
    except (Exception, pl.exceptions.PanicException):
        # A column type polars cannot write as JSON (e.g. nested binary): per-record path.
        b.frames.clear()
        flags = pl.Series([True] * df.height, dtype=pl.Boolean)
    if flags is not None:
        for rec, row in zip(df.filter(flags).to_dicts(), rows.filter(flags).to_list(), strict=True):
            b.add_record(rec, row, _raw_json(rec))
    return b.finish(bytes_read)


def unreadable_chunk(task: ReadTask, row: int, error: str, bytes_read: int = 0) -> ReadChunk:
    """The file (or what is left of it from `row` on) as one quarantined record without bytes."""
    b = DocBuilder(task)
    b.seen = 1
    b.add_bad(row, "unreadable_file", error, b"", unit=RAW_FILE)
    return b.finish(bytes_read)


def read_batches(
    task: ReadTask, batches: Iterable[pa.RecordBatch], total_rows: int | None, size: int,
    sink: RawStore | None = None, first_row: int = 1,
) -> Iterator[ReadChunk]:
    """ReadChunks from Arrow batches (rows numbered from first_row); bytes_read is the file size spread
    over the rows."""
    row = first_row
    reported = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        done = row - first_row + batch.num_rows
        consumed = size * done // total_rows if total_rows else 0
        yield arrow_batch_chunk(task, batch, row, consumed - reported, sink)
        reported = consumed
        row += batch.num_rows


def parquet_problem(task: ReadTask) -> str | None:
    """Why this Parquet file would be quarantined whole (unreadable, no text column, a column name given
    twice), from its footer."""
    try:
        schema = pq.read_schema(task.path)
    except (OSError, pa.ArrowException) as exc:
        return f"not a readable Parquet file: {exc}"
    return _schema_problem(task, schema)


def _schema_problem(task: ReadTask, schema: pa.Schema) -> str | None:
    """What in a Parquet file's schema keeps it from being read: no text column, a column read named twice."""
    problem = missing_column(task, schema.names, f"Parquet file {task.rel_path!r}", schema)
    columns = _read_columns(task, schema.names)
    return problem or _repeated_names(task, schema.names if columns is None else columns)


def _read_columns(task: ReadTask, names: list[str]) -> list[str] | None:
    """The columns of a file to read (None: all): with meta_keys, only what ends up in the document."""
    spec = task.spec
    if spec.meta_keys is None:
        return None
    wanted = {spec.text_key, spec.id_key, *spec.meta_keys}
    wanted |= {k.split(".")[0] for k in (spec.text_key, spec.id_key) if k and "." in k}  # nested: its column
    return [n for n in names if n in wanted]


def read_parquet(task: ReadTask, chunk_bytes: int, sink: RawStore | None = None) -> Iterator[ReadChunk]:
    try:
        pf = pq.ParquetFile(task.path)
    except (OSError, pa.ArrowException) as exc:
        yield unreadable_chunk(task, 1, f"not a readable Parquet file: {exc}")
        return
    if (problem := _schema_problem(task, pf.schema_arrow)) is not None:
        pf.close()
        yield unreadable_chunk(task, 1, problem, os.path.getsize(task.path))
        return
    columns = _read_columns(task, pf.schema_arrow.names)
    md = pf.metadata
    # A part of a big file (corpus/readers/plan.py) reads its run of row groups, numbering from its first row.
    groups = range(task.start, md.num_row_groups if task.end is None else task.end)
    total = sum(md.row_group(i).num_rows for i in groups)
    data_bytes = sum(md.row_group(i).total_byte_size for i in groups)
    per_row = max(1, data_bytes // total) if total else 1
    batch_rows = max(1, min(chunk_bytes // per_row, 1 << 20))
    size = os.path.getsize(task.path) * total // max(1, md.num_rows)  # the part's share, for MB/s
    batches = pf.iter_batches(batch_size=batch_rows, row_groups=list(groups), columns=columns)
    it = read_batches(task, batches, total, size, sink, first_row=task.first_row)
    row = task.first_row
    try:
        for chunk in it:
            row += chunk.seen
            yield chunk
    except UnreadableColumns as exc:
        yield unreadable_chunk(task, row, str(exc) + (f" (from row {row} on)" if row > task.first_row else ""))
    except (OSError, pa.ArrowException) as exc:
        yield unreadable_chunk(task, row, f"Parquet read failed after {row - 1} rows: {exc}")
    finally:
        pf.close()
