"""Units of work (an input file or a corpus shard), read as chunks of documents and profiled.

A unit is profiled into its own accumulator and spill files, so units run anywhere (a thread of
profile_input, a process of the executor's pool) and merge in unit order afterwards. Raw JSONL takes
the fast path of rawjsonl.py, other inputs the corpus readers; shards are read as Parquet batches.
"""

from __future__ import annotations

import ctypes
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from corpus.readers import ReadTask, read_task
from corpus.readers.streams import prefetch

from .aggregate import Acc
from .constants import CHUNK_BYTES, NEAR_DUP_SAMPLE
from .features import doc_features, features
from .rawjsonl import Fallback, read_pieces, usable
from .spill import Spill
from .textscan import Texts

_READ_COLUMNS = ("id", "text", "source", "meta", "lang")


@dataclass(frozen=True)
class Unit:
    index: int
    shard: str | None = None  # a Parquet file of the document schema
    task: ReadTask | None = None  # a raw input file


@dataclass(frozen=True)
class Job:
    units: tuple[Unit, ...]
    spill: str
    sample_size: int = NEAR_DUP_SAMPLE
    chunk_bytes: int = CHUNK_BYTES


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


def check_frame(df: pl.DataFrame) -> None:
    missing = [c for c in ("id", "text", "source") if c not in df.columns]
    if missing:
        raise ValueError(f"profile: frame lacks column(s) {missing} (has {df.columns})")


def add_frame(acc: Acc, spill: Spill, df: pl.DataFrame) -> None:
    """One frame of documents (columns id, text, source; optional meta, lang)."""
    check_frame(df)
    if df.height == 0:
        return
    ch = doc_features(df)
    acc.add_chunk(ch)
    spill.write(ch)


def profile_unit(unit: Unit, spill_dir: Path, sample_size: int, chunk_bytes: int, ahead: bool = False,
                 bounds: dict[str, int] | None = None) -> Acc:
    """One unit's accumulator (its spill files written on the way). ahead: parse the next pieces in a
    thread of their own while this one computes features (for a file that has the cores to itself)."""
    try:
        return _profile_unit(unit, spill_dir, sample_size, chunk_bytes, ahead, bounds)
    finally:
        _trim()


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc
    except (OSError, AttributeError):
        return None


def _trim() -> None:
    """Hand the heap's free memory back to the system after each unit: glibc keeps it, the threads'
    arenas fragment, and peak RSS crept up with the corpus (+15% from 500 MB to 5 GB)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _profile_unit(unit: Unit, spill_dir: Path, sample_size: int, chunk_bytes: int, ahead: bool,
                  bounds: dict[str, int] | None) -> Acc:
    spill = Spill(spill_dir, unit.index)
    if unit.task is not None and usable(unit.task):
        try:
            return _fast_unit(unit.task, spill, sample_size, chunk_bytes, ahead, bounds)
        except Fallback:
            spill.discard()
    acc = Acc(sample_size=sample_size, bounds=bounds)
    if unit.shard is not None:
        for df in shard_frames(unit.shard, chunk_bytes):
            add_frame(acc, spill, df)
    elif unit.task is not None:
        for chunk in read_task(unit.task, chunk_bytes):
            acc.add_quarantine(chunk.bad)
            add_frame(acc, spill, chunk.docs)
    return acc


def _fast_unit(task: ReadTask, spill: Spill, sample_size: int, chunk_bytes: int, ahead: bool,
               bounds: dict[str, int] | None) -> Acc:
    acc = Acc(sample_size=sample_size, bounds=bounds)
    texts: list[Texts] = []
    ids: list[pa.Array] = []
    meta: list[pl.DataFrame] = []

    def flush() -> None:
        # The reader's chunk is profiled as one (a file's unterminated last line joins the last
        # chunk): the line counts enter the Misra-Gries tables in the same groups as from read_task.
        if texts:
            n = sum(len(t) for t in texts)
            ch = features(Texts.concat(texts), ids[0] if len(ids) == 1 else pa.concat_arrays(ids), [task.spec.source],
                          np.zeros(n, np.int64), None, meta[0] if len(meta) == 1 else pl.concat(meta))
            acc.add_chunk(ch)
            spill.write(ch)
        texts.clear()
        ids.clear()
        meta.clear()

    pieces = read_pieces(task, chunk_bytes)
    for piece in prefetch(pieces, depth=4) if ahead else pieces:
        acc.add_quarantine(piece.bad)
        if len(piece.texts):
            texts.append(piece.texts)
            ids.append(piece.ids)
            meta.append(piece.meta)
        if piece.end_of_chunk:
            flush()
    flush()
    return acc


def run_job(job: Job) -> Acc:
    """A job's units, merged in order (a picklable entry point for process pools)."""
    acc = Acc(sample_size=job.sample_size)
    bounds: dict[str, int] = {}
    for unit in job.units:
        acc.merge(profile_unit(unit, Path(job.spill), job.sample_size, job.chunk_bytes, bounds=bounds))
    return acc


def run_units(units: Iterable[Unit], spill: Path, workers: int, sample_size: int) -> Acc:
    """Units on `workers` threads of this process, merged in unit order. Threads, not processes:
    polars, numpy and Arrow release the GIL in everything heavy here, and a spawned worker would cost
    a second of start-up (imports, tables) before doing anything."""
    acc = Acc(sample_size=sample_size)
    bounds: dict[str, int] = {}  # shared by the units' accumulators (Acc.bounds)
    units = list(units)

    def merge(done: Acc) -> None:
        acc.merge(done)
        # The merged sample's k-th key bounds every later unit's (tighter than any one unit's).
        for src, sa in acc.sources.items():
            top = sa.sample.bound(sample_size)
            if top is not None:
                bounds[src] = min(top, bounds.get(src, top))

    if workers <= 1 or len(units) <= 1:
        # A lone file still gets two threads: one parses ahead while the other computes features.
        ahead = workers > 1
        for u in units:
            merge(profile_unit(u, spill, sample_size, CHUNK_BYTES, ahead, bounds))
        return acc

    with ThreadPoolExecutor(workers, thread_name_prefix="profile") as pool:
        # At most 2 units per thread in flight: finished ones wait for their turn to merge, bounded.
        pending: deque[Future[Acc]] = deque()
        for u in units:
            pending.append(pool.submit(profile_unit, u, spill, sample_size, CHUNK_BYTES, False, bounds))
            if len(pending) >= 2 * workers:
                merge(pending.popleft().result())
        while pending:
            merge(pending.popleft().result())
    return acc
