"""Exact deduplication of normalised text across all shards and sources.

The first copy in corpus order (inputs in config order, files sorted, rows in file order) is kept,
so the choice is deterministic; later copies are dropped with reason ``exact_duplicate``, the id of the
kept copy in ``duplicate_of`` and its row identity (``row_id``) in ``duplicate_of_row`` (ids may repeat:
the row identity tells the copies apart).

Fit, in three pool passes (``find_copies`` also serves the repeated-id check, on the id column):
1. per shard: normalise (polars), digest each document (blake2b-128 of the normalised bytes), write
   (digest, document number) records partitioned by digest prefix;
2. per partition (one in memory at a time): sort, and for every group of equal digests record
   (member, first member, occurrence), partitioned by the member's shard;
3. per shard with duplicates: ``results/<shard>.parquet`` keyed by row_id (``dedup_index.write_results``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from corpus import frames
from corpus.operators import GlobalFilterOperator, StageContext, Verdict
from corpus.schema import ID, ROW_ID
from corpus.stages.dedup_index import (
    KEPT_COLUMNS,
    Layout,
    ResultLookup,
    check_partitions,
    n_partitions,
    partition_of,
    read_partition,
    save_identity,
    write_all_results,
    write_json,
    write_partitioned,
)
from corpus.stages.dedup_text import digests128
from corpus.stages.normalise import Level, Normalisation


@dataclass(frozen=True)
class HashJob:
    """Pass 1 over one shard."""

    shard: int  # its position in ctx.shards (and its segment number)
    path: Path
    start: int  # the global number of its first document
    norm: Normalisation
    workdir: Path
    n_parts: int
    column: str


def _hash_shard(job: HashJob) -> int:
    """Digests of one shard's normalised values of ``column``, partitioned by digest prefix."""
    out, ids, rows = [], [], []
    g = job.start
    for df in frames.frames(job.path, list(dict.fromkeys((job.column, ID, ROW_ID)))):
        d = digests128(job.norm.apply(df[job.column]))
        out.append(np.column_stack([d, np.arange(g, g + df.height, dtype=np.uint64)]))
        ids.append(df[ID])
        rows.append(df[ROW_ID].to_numpy())
        g += df.height
    save_identity(job.workdir, job.shard, ids, rows)
    recs = np.concatenate(out) if out else np.zeros((0, 3), np.uint64)
    part = partition_of(recs[:, 0], job.n_parts)
    write_partitioned(job.workdir / "hashes" / f"{job.shard:05d}", recs, part, job.n_parts)
    return g - job.start


@dataclass(frozen=True)
class GroupJob:
    """Pass 2 over one digest partition."""

    stems: tuple[Path, ...]  # every shard's partitioned digest file
    part: int
    workdir: Path
    seg_starts: np.ndarray  # the global number of each shard's first document (+ the total)


def _group_partition(job: GroupJob) -> dict:
    """Within one partition, every document whose digest was seen earlier (in corpus order) ->
    (document, first document with that digest, occurrence: 1 for the second), partitioned by the
    document's segment for the results pass."""
    recs = read_partition(job.stems, job.part, 3, np.uint64)
    dups = np.zeros((0, 3), np.int64)
    if len(recs):
        recs = recs[np.lexsort((recs[:, 2], recs[:, 1], recs[:, 0]))]
        same = np.zeros(len(recs), bool)
        same[1:] = (recs[1:, 0] == recs[:-1, 0]) & (recs[1:, 1] == recs[:-1, 1])
        head = np.maximum.accumulate(np.where(same, 0, np.arange(len(recs))))  # index of each group's first
        rank = np.arange(len(recs)) - head
        dups = np.stack([recs[same, 2], recs[head[same], 2], rank[same]], axis=1).astype(np.int64)
    seg = np.searchsorted(job.seg_starts, dups[:, 0], side="right") - 1
    write_partitioned(job.workdir / "dups" / f"{job.part:05d}", dups, seg, len(job.seg_starts) - 1)
    return {"duplicates": len(dups), "groups": int((dups[:, 2] == 1).sum())}


def find_copies(ctx: StageContext, column: str, norm: Normalisation | None, partitions: int = 0,
                same_id: bool = False) -> dict:
    """Later copies of equal values of ``column`` (at level ``norm``; None: as they are) over
    ctx.shards, first in corpus order kept: writes ``results/`` (row_id, kept_id, kept_row, kept_index,
    occurrence) and results.json into ctx.artifacts; returns counts. ``same_id``: keep only results
    whose ids are equal (checks the digests exactly when the column is the id)."""
    work = ctx.artifacts
    norm = norm or Normalisation("none")
    layout = Layout.of([], ctx.shards)
    n_parts = n_partitions(layout.total, 24, ctx.workers, fixed=partitions)
    ctx.pool_map(_hash_shard, [HashJob(i, s.path, s.start, norm, work, n_parts, column)
                               for i, s in enumerate(layout.segments)])
    stems = tuple(work / "hashes" / f"{i:05d}" for i in range(len(ctx.shards)))
    found = ctx.pool_map(_group_partition, [GroupJob(stems, p, work, layout.starts) for p in range(n_parts)])
    dup_stems = [work / "dups" / f"{p:05d}" for p in range(n_parts)]
    entries = write_all_results(ctx.pool_map, work, layout, dup_stems, 3, ("occurrence",), same_id=same_id)
    for sub in ("hashes", "dups"):
        for f in (work / sub).glob("*.npy"):
            f.unlink()
    return {"docs": layout.total, "duplicates": sum(e["rows"] for e in entries),
            "groups": sum(f["groups"] for f in found), "partitions": n_parts}


@dataclass
class ExactDedup(GlobalFilterOperator):
    """Drop later copies of a document whose normalised text equals an earlier one's."""

    name = "exact_dedup"
    needs = {"id": pl.String, "text": pl.String, "row_id": pl.Int64}
    adds = {"duplicate_of": pl.String, "duplicate_of_row": pl.Int64}
    version = "4"  # 4: normalisation levels (exact adds NFC)

    normalise: Level = "exact"  # texts equal at this level are copies (stages/normalise.py)
    partitions: int = 0  # digest partitions (0: sized so each holds ~64 MB of records)

    def __post_init__(self) -> None:
        Normalisation(self.normalise)
        check_partitions(self.partitions)

    def fit(self, ctx: StageContext) -> None:
        t0 = time.perf_counter()
        counts = find_copies(ctx, "text", Normalisation(self.normalise), self.partitions)
        write_json(ctx.artifacts / "params.json", {"operator": self.name, "params": self.params(), **counts,
                                                 "seconds": time.perf_counter() - t0})

    def load(self, artifacts: Path) -> None:
        self._lookup = ResultLookup(artifacts, KEPT_COLUMNS)

    def filter(self, df: pl.DataFrame) -> Verdict:
        res = self._lookup.join(df)
        kept_row = res["kept_row"]
        return Verdict(keep=kept_row.is_null(), reason="exact_duplicate",
                       scores={"duplicate_of": res["kept_id"].alias("duplicate_of"),
                               "duplicate_of_row": kept_row.alias("duplicate_of_row")})
