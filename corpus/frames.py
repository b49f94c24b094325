"""Reading a shard (one Parquet file) in pieces: the one way every reader of shards takes (the dedup
fits, tokenize, the tokenizer trainer, the profiler), so a row range, a column subset or a batch size
means the same thing everywhere.

* ``batches(path, columns, ...)``: Arrow tables in row order: one per row group by default, or of
  ``batch_rows`` rows, or of about ``batch_bytes`` of the first column's values (cut at their exact
  sizes: a batch holds less than ``batch_bytes`` besides its first value); ``rows=(start, stop)``
  reads only that range, and row groups outside it are not read at all; ``optional`` columns are
  read when the file has them.
* ``frames(...)``: the same as polars DataFrames, empty ones skipped.
* ``take(path, columns, rows)``: given rows, in the given order, reading only their row groups.
* ``column(path, name)``: one whole column as a polars Series.

A column the file lacks is a ValueError naming the file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def _columns(pf: pq.ParquetFile, path: Path | str, columns: Sequence[str], optional: Sequence[str]) -> list[str]:
    have = set(pf.schema_arrow.names)
    missing = [c for c in columns if c not in have]
    if missing:
        raise ValueError(f"{path} has no column {', '.join(map(repr, missing))} (it has {sorted(have)})")
    return list(dict.fromkeys([*columns, *(c for c in optional if c in have)]))


def _row_groups(pf: pq.ParquetFile, start: int, stop: int) -> Iterator[tuple[int, int, int]]:
    """(row group, first row, end row within it) of the groups that overlap rows [start, stop)."""
    first = 0
    for g in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        lo, hi = max(start - first, 0), min(stop - first, n)
        if lo < hi:
            yield g, lo, hi
        first += n


def _by_bytes(table: pa.Table, column: str, batch_bytes: int) -> Iterator[pa.Table]:
    """Consecutive slices of ``table``: those whose values of ``column`` end within the same multiple
    of ``batch_bytes`` (so less than that besides each slice's first value)."""
    sizes = pc.fill_null(pc.binary_length(table.column(column)), 0).to_numpy()
    batch = np.cumsum(sizes, dtype=np.int64) // max(batch_bytes, 1)  # the batch a value ends in
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(batch)) + 1, [table.num_rows]])
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if b > a:
            yield table.slice(int(a), int(b - a))


def parquet_file(path: Path | str, source: pa.BufferReader | None = None) -> pq.ParquetFile:
    """A Parquet file opened for reading (from ``source`` when given: its bytes, already checked); one that
    is not Parquet (or is cut short) is named in the error."""
    try:
        return pq.ParquetFile(path if source is None else source)
    except pa.ArrowException as exc:
        raise ValueError(f"{path}: not a readable Parquet file ({exc})") from None


def batches(path: Path | str, columns: Sequence[str], *, optional: Sequence[str] = (),
            rows: tuple[int, int] | None = None, batch_rows: int = 0, batch_bytes: int = 0) -> Iterator[pa.Table]:
    """Arrow tables covering ``rows`` (default: all) of ``columns`` (+ ``optional`` ones the file has),
    in order: one per row group, or of ``batch_rows`` rows, or of about ``batch_bytes`` of the first
    column's values (give at most one of the two)."""
    if batch_rows and batch_bytes:
        raise ValueError("give batch_rows or batch_bytes, not both")
    pf = parquet_file(path)
    cols = _columns(pf, path, columns, optional)
    start, stop = rows if rows is not None else (0, pf.metadata.num_rows)
    for g, lo, hi in _row_groups(pf, start, stop):
        if batch_rows:
            pos = 0
            for rb in pf.iter_batches(batch_size=batch_rows, row_groups=[g], columns=cols):
                a, b = max(lo - pos, 0), min(hi - pos, rb.num_rows)
                if a < b:
                    yield pa.Table.from_batches([rb.slice(a, b - a)])
                pos += rb.num_rows
                if pos >= hi:
                    break
            continue
        table = pf.read_row_group(g, columns=cols)
        if (lo, hi) != (0, table.num_rows):
            table = table.slice(lo, hi - lo)
        if batch_bytes:
            yield from _by_bytes(table, cols[0], batch_bytes)
        else:
            yield table


def frames(path: Path | str, columns: Sequence[str], **kwargs: object) -> Iterator[pl.DataFrame]:
    """``batches`` as polars DataFrames, empty ones skipped."""
    for table in batches(path, columns, **kwargs):  # type: ignore[arg-type]
        if table.num_rows:
            df = pl.from_arrow(table)
            assert isinstance(df, pl.DataFrame)
            yield df


def take(path: Path | str, columns: Sequence[str], rows: np.ndarray | Sequence[int]) -> pl.DataFrame:
    """Values of ``columns`` at the given rows, in the order of ``rows``. Reads only the row groups
    holding those rows: a few snippets must not cost a whole text column."""
    rows = np.asarray(rows, dtype=np.int64)
    pf = parquet_file(path)
    cols = _columns(pf, path, columns, ())
    sizes = [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    group = np.searchsorted(bounds, rows, side="right") - 1
    parts, where = [], []
    for g in np.unique(group):
        sel = np.flatnonzero(group == g)
        df = pl.from_arrow(pf.read_row_group(int(g), columns=cols))
        assert isinstance(df, pl.DataFrame)
        parts.append(df.select(pl.all().gather(rows[sel] - bounds[g])))
        where.append(sel)
    if not parts:
        return pl.from_arrow(pf.schema_arrow.empty_table().select(cols))  # type: ignore[return-value]
    out = pl.concat(parts)
    return out.select(pl.all().gather(np.argsort(np.concatenate(where), kind="stable")))


def column(path: Path | str, name: str) -> pl.Series:
    """One whole column as a polars Series (pyarrow's own take() on it would import pandas: over a
    second in every worker)."""
    pf = parquet_file(path)
    s = pl.from_arrow(pf.read(columns=_columns(pf, path, [name], ())).column(name))
    assert isinstance(s, pl.Series)
    return s
