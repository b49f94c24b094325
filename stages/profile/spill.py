"""The spill: per-document features and per-chunk line counts on disk, read back by polars.

Exact figures that need every document (distinct text keys, the exact doc counts of the frequent
line candidates, outliers against the final median and scale) cannot come from bounded in-memory
aggregates. Each chunk writes its documents' rows (id, source, text key, features: no text) to
Parquet (uncompressed: read once; kept for the user with keep_features) and its line counts to
Arrow IPC in a scratch folder instead, and streaming polars scans answer those questions at the end
(distinct keys by key range when there are many): memory does not grow with the corpus. (DuckDB
did this before; its connection alone cost more than these scans.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from .constants import FEATURES
from .features import Chunk

SPILL = "_spill"


class Spill:
    """Writes one unit's (input file or shard) chunks, one Parquet file per chunk and kind."""

    def __init__(self, folder: Path, unit: int):
        self.folder = folder
        self.unit = unit
        self.chunks = 0

    def write(self, ch: Chunk) -> None:
        n = len(ch.codes)
        if n == 0:
            return
        source = pl.Series(ch.names, dtype=pl.String).gather(ch.codes).to_arrow()
        key = _arrow(ch.key, ch.is_null)
        # Features stay NaN where they do not apply (a null costs a pass; the readers know NaN).
        feats = pa.Table.from_arrays([ch.ids, source, key, *(_arrow(ch.values[f]) for f in FEATURES)],
                                     names=["id", "source", "h", *FEATURES])
        name = f"{self.unit:06d}-{self.chunks:05d}.parquet"
        # No dictionary pages: they cost more than they save here.
        pq.write_table(feats, self.folder / f"feat-{name}", compression="none", write_statistics=False,
                       use_dictionary=False)
        lines = ch.lines
        if len(lines.h):
            # Arrow IPC, not Parquet: a web chunk has hundreds of thousands of lines, and Parquet's
            # writer cost six times as much for a file read once, by us.
            src = pa.DictionaryArray.from_arrays(_arrow(lines.src.astype(np.int32)), pl.Series(lines.names).to_arrow())
            table = pa.Table.from_arrays([src, _arrow(lines.h), _arrow(lines.n)], names=["source", "h", "n"])
            with pa.ipc.new_file(self.folder / f"lines-{self.unit:06d}-{self.chunks:05d}.arrow", table.schema) as out:
                out.write_table(table)
        self.chunks += 1

    def discard(self) -> None:
        """Forget what this unit wrote (its input is being read again another way)."""
        for p in list(self.folder.glob(f"feat-{self.unit:06d}-*.parquet")) + list(
                self.folder.glob(f"lines-{self.unit:06d}-*.arrow")):
            p.unlink()
        self.chunks = 0


def _arrow(x: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """A numeric numpy array as Arrow, null where `null`. Not pa.array: it imports pandas (a quarter
    of a second, once per process) to check what it was given."""
    x = np.ascontiguousarray(x)
    valid = None if null is None or not null.any() else pa.py_buffer(np.packbits(~null, bitorder="little"))
    return pa.Array.from_buffers(pa.from_numpy_dtype(x.dtype), len(x), [valid, pa.py_buffer(x)])


def fresh_spill(workdir: Path) -> Path:
    spill = workdir / SPILL
    shutil.rmtree(spill, ignore_errors=True)
    spill.mkdir(parents=True)
    return spill


def done(spill: Path, keep_features: bool) -> None:
    if not keep_features:
        shutil.rmtree(spill, ignore_errors=True)


PART_KEYS = 1 << 20  # text keys per in-memory distinct count: more are counted by key range, in passes


def distinct_texts(files: list[Path], sources: list[str], n_docs: int) -> tuple[dict[str, int], int]:
    """Distinct text keys per source and overall (the exact duplicate rate); sources: those spilled.
    Up to PART_KEYS documents in one pass; more in passes over disjoint key ranges (h mod parts), so
    memory stays flat however large the corpus."""
    per_src = dict.fromkeys(sources, 0)
    total = 0
    if not files:
        return per_src, total
    parts = max(1, -(-n_docs // PART_KEYS))
    for p in range(parts):
        lf = pl.scan_parquet(files).select("source", "h").filter(pl.col("h").is_not_null())
        if parts > 1:
            lf = lf.filter(pl.col("h") % parts == p)
        if len(sources) == 1:
            n = int(lf.select(pl.col("h").n_unique()).collect().item())
            per_src[sources[0]] += n
            total += n
            continue
        # Both queries in one call: polars runs them side by side (and may share their scan).
        got, everything = pl.collect_all([lf.group_by("source").agg(pl.col("h").n_unique().alias("n")),
                                          lf.select(pl.col("h").n_unique())])
        for src, n in got.iter_rows():
            per_src[src] += int(n)
        total += int(everything.item())
    return per_src, total


def line_counts(files: list[Path], candidates: pl.DataFrame) -> pl.DataFrame:
    """(source, h, docs, line): exact doc counts of the candidate lines (a streaming scan of the
    spilled per-chunk counts, keeping only the candidates' rows)."""
    if not files or candidates.height == 0:
        return pl.DataFrame(schema={"source": pl.String, "h": pl.UInt64, "docs": pl.Int64, "line": pl.String})
    counts = (pl.scan_ipc(files).filter(pl.col("h").is_in(candidates["h"].implode()))
              .group_by(pl.col("source").cast(pl.String), "h").agg(pl.col("n").sum().cast(pl.Int64).alias("docs"))
              .collect(engine="streaming"))
    return counts.join(candidates, on="h")
