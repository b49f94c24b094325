"""Units of work: an input file (read by the corpus readers, quarantine and all) or a corpus shard,
each read as chunks of documents and profiled.

A unit is profiled into its own accumulator and spill files, so units run anywhere (a thread of
profile_input, a process of the executor's pool) and merge in unit order afterwards. A document's
``order`` (its place in the corpus) is its row_id for an input file (input file number << 40 | row)
and shard number << 40 | row for a shard: the corpus order minhash_dedup keeps first.
"""

from __future__ import annotations

import ctypes
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from corpus.readers import ReadTask, read_task
from corpus.schema import ROW_BITS

from .aggregate import Acc
from .constants import CHUNK_BYTES, NEAR_DUP_SAMPLE
from .features import chunk_features
from .spill import Spill

_READ_COLUMNS = ("id", "text", "source", "meta", "lang")


@dataclass(frozen=True)
class Unit:
    index: int
    shard: str | None = None  # a Parquet file of the document schema
    task: ReadTask | None = None  # a raw input file

    def chunks(self, chunk_bytes: int) -> Iterator[tuple[pl.DataFrame, pl.DataFrame | None, np.ndarray]]:
        """(documents, quarantined records or None, each document's order)."""
        if self.task is not None:
            for chunk in read_task(self.task, chunk_bytes):
                yield chunk.docs, chunk.bad, chunk.docs["row_id"].to_numpy()
            return
        row = 0
        for df in shard_frames(str(self.shard), chunk_bytes):
            yield df, None, (self.index << ROW_BITS) + np.arange(row, row + df.height, dtype=np.int64)
            row += df.height


def shard_frames(path: str, chunk_bytes: int) -> Iterator[pl.DataFrame]:
    pf = pq.ParquetFile(path)
    cols = [c for c in _READ_COLUMNS if c in pf.schema_arrow.names]
    md = pf.metadata
    rows, size = max(md.num_rows, 1), sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
    batch = max(64, int(chunk_bytes * rows / max(size, 1)))  # about chunk_bytes of data per batch
    for rb in pf.iter_batches(batch_size=batch, columns=cols):
        yield pl.from_arrow(rb)  # type: ignore[misc]


def slices(df: pl.DataFrame, chunk_bytes: int) -> Iterator[pl.DataFrame]:
    """A caller's frame in pieces of about chunk_bytes of text, so memory stays bounded."""
    if "text" in df.columns and df.schema["text"] != pl.String:
        df = df.with_columns(pl.col("text").cast(pl.String))
    if df.height == 0 or "text" not in df.columns:
        yield df
        return
    size = int(df["text"].str.len_bytes().sum() or 0)
    rows = df.height if size <= chunk_bytes else max(1, df.height * chunk_bytes // size)
    for start in range(0, df.height, rows):
        yield df.slice(start, rows)


def profile_unit(unit: Unit, spill_dir: Path, sample_size: int, chunk_bytes: int = CHUNK_BYTES) -> Acc:
    """One unit's accumulator (its spill files written on the way)."""
    acc = Acc(sample_size=sample_size)
    spill = Spill(spill_dir, unit.index)
    try:
        for docs, bad, order in unit.chunks(chunk_bytes):
            if bad is not None:
                acc.add_quarantine(bad)
            if docs.height:
                ch = chunk_features(docs, order)
                acc.add_chunk(ch)
                spill.write(ch)
    finally:
        _trim()
    return acc


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc
    except (OSError, AttributeError):
        return None


def _trim() -> None:
    """Hand the heap's free memory back to the system after each unit: glibc keeps it, the threads'
    arenas fragment, and peak RSS crept up with the corpus."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def unit_bytes(unit: Unit) -> int:
    """The input bytes a unit reads (a part's share of its file), for progress."""
    try:
        if unit.task is not None:
            size = os.path.getsize(unit.task.path)
            return (size if unit.task.end is None else unit.task.end) - (unit.task.start or 0)
        return os.path.getsize(str(unit.shard))
    except (OSError, TypeError):
        return 0


@dataclass(frozen=True)
class Job:
    units: tuple[Unit, ...]
    spill: str
    sample_size: int = NEAR_DUP_SAMPLE


def run_job(job: Job) -> Acc:
    """A job's units, merged in order (a picklable entry point for process pools)."""
    acc = Acc(sample_size=job.sample_size)
    for unit in job.units:
        acc.merge(profile_unit(unit, Path(job.spill), job.sample_size))
    return acc


def run_units(units: Iterable[Unit], spill: Path, workers: int, sample_size: int,
              each: Callable[[Unit, Acc], None] | None = None) -> Acc:
    """Units on threads of this process (``workers`` cores' worth), merged in unit order. Threads, not
    processes: polars, numpy and the kernel release the GIL in everything heavy here, and a spawned
    worker would cost a second of start-up before doing anything. One thread more than ``workers``:
    each thread also waits (on the GIL between polars calls, on numba's lock for the kernels' first
    load), and a spare keeps the cores busy meanwhile (docs/benchmarks.md)."""
    acc = Acc(sample_size=sample_size)
    units = list(units)

    def merge(u: Unit, a: Acc) -> None:
        acc.merge(a)
        if each is not None:
            each(u, a)  # in this thread, as units merge (in order)

    if workers <= 1 or len(units) <= 1:
        for u in units:
            merge(u, profile_unit(u, spill, sample_size))
        return acc
    threads = workers + 1
    with ThreadPoolExecutor(threads, thread_name_prefix="profile") as pool:
        # At most 2 units per thread in flight: finished ones wait for their turn to merge, bounded.
        pending: deque[tuple[Unit, Future[Acc]]] = deque()
        for u in units:
            pending.append((u, pool.submit(profile_unit, u, spill, sample_size)))
            if len(pending) >= 2 * threads:
                v, fut = pending.popleft()
                merge(v, fut.result())
        while pending:
            v, fut = pending.popleft()
            merge(v, fut.result())
    return acc
