"""The spill: per-document features and per-chunk line counts on disk, read back by polars.

Exact figures that need every document (distinct text keys, the exact doc counts of the frequent
line candidates, outliers against the final bounds, the near-duplicate clusters) cannot come from
bounded in-memory aggregates. Each chunk writes its documents' features to Parquet (uncompressed:
read once; kept for the user with keep_features), its line counts to Arrow IPC, and its texts to
Arrow IPC (uncompressed, by order: the near-duplicate check and the top lines read a few thousand
back from memory maps, each text alone, far cheaper than reading the input again; Parquet row groups
made each one read its neighbours too), in a scratch folder; streaming polars scans answer those
questions at the end: memory does not grow with the corpus.
"""

from __future__ import annotations

import mmap
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from corpus.writers import naming

from .features import Chunk

SPILL = "_spill"


class Spill:
    """Writes one unit's (input file, shard, or a caller's frames) chunks, one file per chunk and kind."""

    def __init__(self, folder: Path, unit: int):
        self.folder = folder
        self.unit = unit
        self.chunks = 0

    def name(self, kind: str, ext: str) -> Path:
        return self.folder / f"{kind}-{self.unit:06d}-{self.chunks:05d}.{ext}"

    def write(self, ch: Chunk) -> None:
        if ch.docs.height == 0:
            return
        with naming(self.folder):  # polars and pyarrow say "Error writing bytes to file" and no more
            self._write(ch)

    def _write(self, ch: Chunk) -> None:
        # No dictionary pages, no statistics: they cost more than they save for a file read once.
        ch.docs.write_parquet(self.name("feat", "parquet"), compression="uncompressed", statistics=False,
                              use_pyarrow=False)
        if ch.lines.counts.height:
            # Arrow IPC, not Parquet: a web chunk has hundreds of thousands of lines, read once, by us.
            _ipc(ch.lines.counts.select("source", "h", "n").to_arrow(), self.name("lines", "arrow"))
        # The texts from the Arrow copy the kernel read (polars' write_ipc would convert its string
        # views again: 6x the cost, docs/benchmarks.md).
        _ipc(pa.table({"order": ch.docs["order"].to_arrow(), "text": ch.arrow}), self.name("text", "arrow"))
        self.chunks += 1


def _ipc(table: pa.Table, path: Path) -> None:
    with pa.ipc.new_file(path, table.schema) as w:
        w.write_table(table)


def fresh_spill(workdir: Path) -> Path:
    spill = workdir / SPILL
    shutil.rmtree(spill, ignore_errors=True)
    spill.mkdir(parents=True)
    return spill


def done(spill: Path, keep_features: bool) -> None:
    if not keep_features:
        shutil.rmtree(spill, ignore_errors=True)
        return
    for p in spill.glob("text-*.arrow"):  # copies of the input, not features
        p.unlink()


def _texts(path: Path) -> pa.Table:
    """A spilled texts file, memory-mapped: nothing is read until a text is taken, and then only its
    own pages (no readahead around it: a fetch touches a few texts per file). The map lives as long
    as the table."""
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    if hasattr(mm, "madvise"):
        mm.madvise(mmap.MADV_RANDOM)
    return pa.ipc.open_file(pa.BufferReader(pa.py_buffer(mm))).read_all()


def _orders(t: pa.Table) -> np.ndarray:
    """A spilled texts file's orders (never null), read from the Arrow buffers: pyarrow's to_numpy
    imports pandas, 0.24 s the first time in a process."""
    parts = [np.frombuffer(c.buffers()[1], np.int64, len(c), c.offset * 8) for c in t.column("order").chunks]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def text_fetch(spill: Path) -> Callable[[np.ndarray], dict[int, str]]:
    """Texts by order, from the spilled texts: each file's order range (learnt on the first call); a call
    maps the files whose range holds an order asked for, one at a time (a corpus may spill thousands of
    files: none is held open between calls), and takes the rows found by their orders."""
    ranges: list[tuple[int, int, Path]] = []

    def fetch(orders: np.ndarray) -> dict[int, str]:
        if not ranges:
            for p in sorted(spill.glob("text-*.arrow")):
                order = _orders(_texts(p))
                if len(order):
                    ranges.append((int(order.min()), int(order.max()), p))
        want = np.unique(np.asarray(orders, np.int64))
        out: dict[int, str] = {}
        for lo, hi, p in ranges:
            mine = want[(want >= lo) & (want <= hi)]
            if len(mine):
                out.update(_take(p, mine))
        return out

    return fetch


def _take(path: Path, orders: np.ndarray) -> dict[int, str]:
    """The texts of these orders that the file holds. One value at a time: take() would join the file's
    batches, reading all of it. The map goes when this returns (nothing else refers to it)."""
    t = _texts(path)
    order = _orders(t)
    by = None if bool(np.all(order[1:] >= order[:-1])) else np.argsort(order, kind="stable")
    at = np.minimum(np.searchsorted(order, orders, sorter=by), len(order) - 1)
    if by is not None:
        at = by[at]
    found = order[at] == orders
    col = t.column("text")
    return {o: col[r].as_py() for o, r in zip(orders[found].tolist(), at[found].tolist(), strict=True)}


def features(spill: Path) -> list[Path]:
    return sorted(spill.glob("feat-*.parquet"))


PART_KEYS = 1 << 20  # text keys per in-memory distinct count: more are counted by key range, in passes


def distinct_texts(files: list[Path], sources: list[str], n_docs: int,
                   part_keys: int = PART_KEYS) -> tuple[dict[str, int], int]:
    """Distinct text keys per source and overall (the exact duplicate rate); sources: those spilled.
    Up to part_keys documents in one pass; more in passes over disjoint key ranges (h mod parts), so
    memory stays flat however large the corpus."""
    per_src = dict.fromkeys(sources, 0)
    total = 0
    if not files:
        return per_src, total
    parts = max(1, -(-n_docs // part_keys))
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
    """(source, h, docs, order, lo, hi): exact doc counts of the candidate lines (h, order, lo, hi: where
    one occurrence is), a streaming scan of the spilled per-chunk counts keeping only the candidates' rows."""
    if not files or candidates.height == 0:
        return pl.DataFrame(schema={"source": pl.String, "h": pl.UInt64, "docs": pl.Int64, "order": pl.Int64,
                                    "lo": pl.Int64, "hi": pl.Int64})
    counts = (pl.scan_ipc(files).filter(pl.col("h").is_in(candidates["h"].implode()))
              .group_by("source", "h").agg(pl.col("n").sum().cast(pl.Int64).alias("docs"))
              .collect(engine="streaming"))
    return counts.join(candidates, on="h")
