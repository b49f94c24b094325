"""Exact deduplication of normalised text across all shards and sources.

The first copy in corpus order (inputs in config order, files sorted, rows in file order) is kept,
so the choice is deterministic; later copies are dropped with reason ``exact_duplicate`` and the id
of the kept copy in ``duplicate_of``.

Fit, in three pool passes:
1. per shard: normalise (polars), digest each document (blake2b-128 of the normalised bytes), write
   (digest, document number) records partitioned by digest prefix;
2. per partition (one in memory at a time): sort, and for every group of equal digests record
   (member, first member);
3. per shard with duplicates: ``results/<shard>.parquet`` (id, duplicate_of) for its dropped rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from corpus.stages.dedup_index import (
    Layout,
    ResultLookup,
    load_npy,
    n_partitions,
    read_partition,
    save_npy,
    shard_frames,
    take_by_global,
    write_json,
    write_partitioned,
    write_shard_results,
    write_shards_json,
)
from corpus.stages.dedup_text import Normalisation, digests128

from corpus.operators import GlobalFilterOperator, StageContext, Verdict


def normalise(text: pl.Expr, lowercase: bool, collapse_whitespace: bool) -> pl.Expr:
    """Kept for callers of the first version: lowercase and whitespace only."""
    return Normalisation(lowercase=lowercase, whitespace=collapse_whitespace).expr(text)


def _hash_shard(args: tuple[int, Path, int, Normalisation, Path, int]) -> dict:
    """Pass 1: digests of one shard's normalised documents, partitioned by digest prefix."""
    shard, path, start, norm, workdir, n_parts = args
    out, first = [], None
    g = start
    for df in shard_frames(path):
        if first is None:
            first = df["id"][0]
        d = digests128(norm.apply(df["text"]))
        out.append(np.column_stack([d, np.arange(g, g + df.height, dtype=np.uint64)]))
        g += df.height
    recs = np.concatenate(out) if out else np.zeros((0, 3), np.uint64)
    part = (recs[:, 0] >> np.uint64(40)) % np.uint64(n_parts)  # the digest prefix picks the partition
    write_partitioned(workdir / "hashes" / f"{shard:05d}", recs, part.astype(np.int64), n_parts)
    return {"first_id": first, "rows": g - start}


def _group_partition(args: tuple[list[Path], int, Path]) -> int:
    """Pass 2: within one partition, every document whose digest was seen earlier (in corpus order)
    -> (document, first document with that digest)."""
    stems, p, workdir = args
    recs = read_partition(stems, p, 3, np.uint64)
    if len(recs) == 0:
        save_npy(workdir / "dups" / f"{p:05d}.npy", np.zeros((0, 2), np.int64))
        return 0
    order = np.lexsort((recs[:, 2], recs[:, 1], recs[:, 0]))
    recs = recs[order]
    same = np.zeros(len(recs), bool)
    same[1:] = (recs[1:, 0] == recs[:-1, 0]) & (recs[1:, 1] == recs[:-1, 1])
    head = np.maximum.accumulate(np.where(same, 0, np.arange(len(recs))))  # index of each group's first
    dups = np.stack([recs[same, 2], recs[head[same], 2]], axis=1).astype(np.int64)
    save_npy(workdir / "dups" / f"{p:05d}.npy", dups)
    return len(dups)


@dataclass
class ExactDedup(GlobalFilterOperator):
    """Drop later copies of a document whose normalised text equals an earlier one's."""

    name = "exact_dedup"
    needs = {"id": pl.String, "text": pl.String}
    adds = {"duplicate_of": pl.String}
    version = "2"

    lowercase: bool = False
    collapse_whitespace: bool = True
    punctuation: bool = False  # punctuation and symbols count as spaces
    digits: bool = False  # every number counts as "0"
    nfkc: bool = False  # Unicode compatibility forms count as their plain equivalents
    partitions: int = 0  # digest partitions (0: sized so each holds ~64 MB of records)

    def _norm(self) -> Normalisation:
        return Normalisation(self.lowercase, self.collapse_whitespace, self.punctuation, self.digits, self.nfkc)

    def fit(self, ctx: StageContext) -> None:
        t0 = time.perf_counter()
        work = ctx.artifacts
        layout = Layout.of([], ctx.shards)
        n_parts = n_partitions(layout.total, 24, ctx.workers, fixed=self.partitions)
        infos = ctx.pool_map(_hash_shard, [(i, s.path, s.start, self._norm(), work, n_parts)
                                           for i, s in enumerate(layout.segments)])
        write_shards_json(work, [i["first_id"] for i in infos], [i["rows"] for i in infos])
        stems = [work / "hashes" / f"{i:05d}" for i in range(len(ctx.shards))]
        ctx.pool_map(_group_partition, [(stems, p, work) for p in range(n_parts)])
        dups = [load_npy(work / "dups" / f"{p:05d}.npy") for p in range(n_parts)]
        pairs = np.concatenate(dups) if dups else np.zeros((0, 2), np.int64)
        pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
        kept_ids = take_by_global(layout, pairs[:, 1], "id", ctx.pool_map)
        seg, row = layout.locate(pairs[:, 0])
        jobs = []
        for s in np.unique(seg):
            sel = seg == s
            segment = layout.segments[int(s)]
            kept = [kept_ids[int(k)] for k in pairs[sel, 1]]
            jobs.append((work, segment.path, segment.shard, row[sel], {"duplicate_of": kept}))
        ctx.pool_map(write_shard_results, jobs)
        for sub in ("hashes", "dups"):
            for f in (work / sub).glob("*.npy"):
                f.unlink()
        write_json(work / "params.json", {
            "operator": self.name, "params": self.params(), "docs": layout.total, "duplicates": len(pairs),
            "groups": len(np.unique(pairs[:, 1])), "partitions": n_parts, "seconds": time.perf_counter() - t0,
        })

    def load(self, artifacts: Path) -> None:
        self._lookup = ResultLookup(artifacts, {"duplicate_of": pl.String()})

    def filter(self, df: pl.DataFrame) -> Verdict:
        kept_id = self._lookup.join(df)["duplicate_of"]
        return Verdict(keep=kept_id.is_null(), reason="exact_duplicate", scores={"duplicate_of": kept_id})
