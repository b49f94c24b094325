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

from corpus.operators import GlobalFilterOperator, StageContext, Verdict
from corpus.schema import ID, ROW_ID
from corpus.stages.dedup_index import (
    KEPT_COLUMNS,
    Layout,
    ResultLookup,
    n_partitions,
    read_partition,
    save_identity,
    shard_frames,
    write_all_results,
    write_json,
    write_partitioned,
)
from corpus.stages.dedup_text import digests128
from corpus.stages.normalise import Level, Normalisation


def _hash_shard(args: tuple[int, Path, int, Normalisation | None, Path, int, str]) -> int:
    """Pass 1: digests of one shard's values of ``column`` (normalised unless norm is None),
    partitioned by digest prefix."""
    shard, path, start, norm, workdir, n_parts, column = args
    out, ids, rows = [], [], []
    g = start
    for df in shard_frames(path, tuple(dict.fromkeys((column, ID, ROW_ID)))):
        values = df[column].cast(pl.String).fill_null("")
        d = digests128(values if norm is None else norm.apply(values))
        out.append(np.column_stack([d, np.arange(g, g + df.height, dtype=np.uint64)]))
        ids.append(df[ID])
        rows.append(df[ROW_ID].to_numpy())
        g += df.height
    save_identity(workdir, shard, ids, rows)
    recs = np.concatenate(out) if out else np.zeros((0, 3), np.uint64)
    part = (recs[:, 0] >> np.uint64(40)) % np.uint64(n_parts)  # the digest prefix picks the partition
    write_partitioned(workdir / "hashes" / f"{shard:05d}", recs, part.astype(np.int64), n_parts)
    return g - start


def _group_partition(args: tuple[list[Path], int, Path, np.ndarray]) -> dict:
    """Pass 2: within one partition, every document whose digest was seen earlier (in corpus order)
    -> (document, first document with that digest, occurrence: 1 for the second), partitioned by the
    document's segment for the results pass."""
    stems, p, workdir, seg_starts = args
    recs = read_partition(stems, p, 3, np.uint64)
    dups = np.zeros((0, 3), np.int64)
    if len(recs):
        recs = recs[np.lexsort((recs[:, 2], recs[:, 1], recs[:, 0]))]
        same = np.zeros(len(recs), bool)
        same[1:] = (recs[1:, 0] == recs[:-1, 0]) & (recs[1:, 1] == recs[:-1, 1])
        head = np.maximum.accumulate(np.where(same, 0, np.arange(len(recs))))  # index of each group's first
        rank = np.arange(len(recs)) - head
        dups = np.stack([recs[same, 2], recs[head[same], 2], rank[same]], axis=1).astype(np.int64)
    seg = np.searchsorted(seg_starts, dups[:, 0], side="right") - 1
    write_partitioned(workdir / "dups" / f"{p:05d}", dups, seg, len(seg_starts) - 1)
    return {"duplicates": len(dups), "groups": int((dups[:, 2] == 1).sum())}


def find_copies(ctx: StageContext, column: str, norm: Normalisation | None, partitions: int = 0,
                same_id: bool = False) -> dict:
    """Later copies of equal (normalised) values of ``column`` over ctx.shards, first in corpus order
    kept: writes ``results/`` (row_id, kept_id, kept_row, kept_index, occurrence) and results.json into
    ctx.artifacts; returns counts. ``same_id``: keep only results whose ids are equal (checks the digests
    exactly when the column is the id)."""
    work = ctx.artifacts
    layout = Layout.of([], ctx.shards)
    n_parts = n_partitions(layout.total, 24, ctx.workers, fixed=partitions)
    ctx.pool_map(_hash_shard, [(i, s.path, s.start, norm, work, n_parts, column)
                               for i, s in enumerate(layout.segments)])
    stems = [work / "hashes" / f"{i:05d}" for i in range(len(ctx.shards))]
    found = ctx.pool_map(_group_partition, [(stems, p, work, layout.starts) for p in range(n_parts)])
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
