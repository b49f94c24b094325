"""Semantic dedup (SemDeDup on a CPU): k-means over document embeddings, then, within each cluster, every
document at or above a cosine ``threshold`` to a kept document of higher priority is dropped.

The vectors come from an earlier ``embed`` stage, through the contract: this operator ``uses`` the side
output ``embeddings`` and the executor hands it that stage's folder (``StageContext.side_inputs``); the
wiring check refuses a pipeline without an ``embed`` before it, or with a stage in between that rewrites
the text. Rows are matched by ``row_id``, so filters in between are fine.

Fit (pool passes, files under the fit folder, one shard or one partition of clusters in memory at a time):

1. **load** (per shard): the shard's vectors (checked against the store's listing as read), made unit
   length; its priorities (the keep rule); its ids; a sample (by row_id hash) for k-means.
2. **k-means** (main process, faiss, spherical): ``clusters`` centroids (0: about sqrt(documents)).
3. **assign** (per shard): each document to its nearest centroid; records partitioned by cluster.
4. **dedup** (per partition of clusters): in each cluster, documents in priority order (the keep rule,
   then corpus order); a document is dropped when its most similar *kept* document so far has cosine
   >= threshold, and names that document. So every dropped document is within the threshold of the
   one it names, and the kept documents of a cluster are all below it of each other (no chains). The
   similarities are computed once, in blocks of rows, for every threshold of ``sweep`` as well: the
   report (and ``corpus dedup explain --semantic``) shows how many each would remove, from one index.
5. **results** (per shard): ``results/<shard>.parquet`` keyed by row_id (``dedup_index``).

Keep rules: ``first`` (corpus order), ``longest`` (most characters), ``score`` (highest ``score_column``,
nulls last); ties go to the first in corpus order. Pairs split across two clusters are not compared
(the k-means trade-off SemDeDup makes); more clusters are faster, fewer miss fewer pairs.

Columns added: ``semantic_cluster`` (the k-means cluster), ``semantic_similarity`` (a dropped document's
cosine to the kept one it names; a kept one's highest cosine to a kept document before it in its
cluster, null when none), ``semantic_duplicate_of`` / ``semantic_duplicate_of_row`` (the kept document's
user id and row_id). Dropped rows get reason ``semantic_duplicate``.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from numba import njit

from corpus.manifest import require_intact
from corpus.operators import Columns, GlobalFilterOperator, PoolMap, StageContext, StageView, Verdict
from corpus.schema import ID, ROW_ID, SOURCE, TEXT
from corpus.stages.dedup_index import (
    KEPT_COLUMNS,
    Layout,
    ResultLookup,
    load_npy,
    mix64,
    n_partitions,
    read_partition,
    save_identity,
    save_npy,
    suffixed,
    take_by_global,
    write_all_results,
    write_json,
    write_partitioned,
)
from corpus.stages.embed import Embeddings, kmeans, nearest, unit_rows

EMBEDDINGS = "embeddings"  # the side output it uses (what `embed` publishes)
REASON = "semantic_duplicate"
SWEEP = (0.75, 0.8, 0.85, 0.9, 0.95)
SAMPLE_PER_CLUSTER = 256  # k-means trains on at most this many documents per centroid (faiss's default)
MAX_SAMPLE = 400_000  # and on at most this many in all (~600 MB of 384-d vectors in the main process)
EXAMPLES = 3  # example pairs per threshold band
SNIPPET = 300


# ---------------------------------------------------------------- the greedy pass (compiled)


@njit(nogil=True, cache=True)
def _greedy_block(sims, start, threshold, kept, kept_of, best, kept_list, n_kept):  # type: ignore[no-untyped-def]
    """Rows [start, start + len(sims)) of a cluster in priority order, given their similarities to every
    document up to the block's end: each is dropped when its most similar kept document (the first one,
    among equals) is at or above the threshold, else kept."""
    for r in range(sims.shape[0]):
        i = start + r
        b = -1
        bs = -np.inf
        for q in range(n_kept[0]):
            j = kept_list[q]
            s = sims[r, j]
            if s > bs:
                bs = s
                b = j
        best[i] = bs if b >= 0 else np.nan
        if b >= 0 and bs >= threshold:
            kept[i] = False
            kept_of[i] = b
        else:
            kept[i] = True
            kept_of[i] = i
            kept_list[n_kept[0]] = i
            n_kept[0] += 1


def greedy(vectors: np.ndarray, thresholds: list[float], block_bytes: int = 64 << 20
           ) -> list[tuple[np.ndarray, np.ndarray]]:
    """For unit vectors in priority order and each threshold: (kept_of: the kept document each one is
    assigned to, itself when kept; best: its highest similarity to an earlier kept one, NaN when none).
    The similarities are computed once, a block of rows at a time (memory ~ block_bytes)."""
    n = len(vectors)
    state = [(np.zeros(n, np.bool_), np.zeros(n, np.int64), np.zeros(n, np.float32), np.zeros(n, np.int64),
              np.zeros(1, np.int64)) for _ in thresholds]
    rows = max(1, min(n, block_bytes // (4 * max(n, 1))))
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        sims = vectors[start:stop] @ vectors[:stop].T
        for t, (kept, kept_of, best, kept_list, n_kept) in zip(thresholds, state, strict=True):
            _greedy_block(sims, start, np.float32(t), kept, kept_of, best, kept_list, n_kept)
    return [(kept_of, best) for _, kept_of, best, _, _ in state]


# ---------------------------------------------------------------- pool tasks


@dataclass(frozen=True)
class LoadJob:
    seg: int
    shard: Path
    start: int  # global number of the shard's first row
    store: Path
    work: Path
    keep: str
    score_column: str
    cut: int  # sample the rows whose row_id hash is below this


def _load_shard(job: LoadJob) -> dict:
    """A shard's unit vectors, priorities (smaller first) and identity to files; its k-means sample."""
    cols = [ROW_ID, ID] + ([TEXT] if job.keep == "longest" else []) + ([job.score_column] if job.keep == "score"
                                                                      else [])
    df = pl.read_parquet(job.shard, columns=cols)
    row_ids = df[ROW_ID].to_numpy()
    vectors = unit_rows(Embeddings.open(job.store).gather(row_ids, what=str(job.shard)))
    if job.keep == "longest":
        prio = -df[TEXT].str.len_chars().cast(pl.Float64).to_numpy()
    elif job.keep == "score":
        if not df.schema[job.score_column].is_numeric():
            raise ValueError(f"semantic_dedup keep: score needs a numeric score_column; {job.score_column!r} is "
                             f"{df.schema[job.score_column]} in {job.shard}")
        prio = -df[job.score_column].cast(pl.Float64).fill_nan(None).fill_null(-math.inf).to_numpy()
    else:
        prio = np.zeros(df.height)
    save_npy(job.work / "vec" / f"{job.seg:05d}.npy", vectors)
    save_npy(job.work / "prio" / f"{job.seg:05d}.npy", prio.astype(np.float64))
    save_identity(job.work, job.seg, [df[ID]], [row_ids])
    h = mix64(row_ids.astype(np.uint64))
    pick = np.flatnonzero(h < np.uint64(job.cut))
    return {"rows": df.height, "docs": df.height, "hash": h[pick], "row_id": row_ids[pick], "sample": vectors[pick]}


@dataclass(frozen=True)
class AssignJob:
    seg: int
    start: int
    work: Path
    n_parts: int


def _assign_shard(job: AssignJob) -> np.ndarray:
    """Each document's nearest centroid; the shard's records partitioned by cluster (cluster % n_parts)."""
    vectors = load_npy(job.work / "vec" / f"{job.seg:05d}.npy")
    label, _ = nearest(vectors, load_npy(job.work / "centroids.npy"))
    part = label % job.n_parts
    glob = np.arange(job.start, job.start + len(vectors), dtype=np.int64)
    stem = job.work / "parts" / f"{job.seg:05d}"
    write_partitioned(suffixed(stem, ".vec"), vectors, part, job.n_parts)
    write_partitioned(suffixed(stem, ".ids"), np.stack([glob, label], axis=1), part, job.n_parts)
    write_partitioned(suffixed(stem, ".prio"), load_npy(job.work / "prio" / f"{job.seg:05d}.npy")[:, None], part,
                      job.n_parts)
    (job.work / "vec" / f"{job.seg:05d}.npy").unlink()
    return np.bincount(label, minlength=len(load_npy(job.work / "centroids.npy")))


@dataclass(frozen=True)
class DedupJob:
    part: int
    work: Path
    segments: int
    starts: tuple[int, ...]  # global start of each segment (+ total)
    dim: int
    thresholds: tuple[float, ...]
    threshold: int  # the index in thresholds of the one whose results are written (-1: none)


def _dedup_partition(job: DedupJob) -> dict:
    stems = [job.work / "parts" / f"{s:05d}" for s in range(job.segments)]
    vectors = read_partition([suffixed(s, ".vec") for s in stems], job.part, job.dim, np.float32)
    ids = read_partition([suffixed(s, ".ids") for s in stems], job.part, 2, np.int64)
    prio = read_partition([suffixed(s, ".prio") for s in stems], job.part, 1, np.float64)[:, 0]
    order = np.lexsort((ids[:, 0], prio, ids[:, 1]))  # cluster, then priority, then corpus order
    vectors, glob, label = vectors[order], ids[order, 0], ids[order, 1]
    bounds = np.flatnonzero(np.diff(label)) + 1
    removed = np.zeros(len(job.thresholds), np.int64)
    examples: list[list[tuple[int, int, float]]] = [[] for _ in job.thresholds]
    members = []
    for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(label)], strict=True):
        if b <= a:
            continue
        results = greedy(vectors[a:b], list(job.thresholds))
        for t, (kept_of, best) in enumerate(results):
            dropped = np.flatnonzero(kept_of != np.arange(b - a))
            removed[t] += len(dropped)
            upper = job.thresholds[t + 1] if t + 1 < len(job.thresholds) else math.inf
            band = dropped[best[dropped] < upper]  # dropped here, kept at the next threshold up
            examples[t] += [(int(glob[a + i]), int(glob[a + kept_of[i]]), float(best[i])) for i in band[:EXAMPLES]]
        if job.threshold >= 0:
            kept_of, best = results[job.threshold]
            sim_bits = best.astype(np.float64).view(np.int64)  # results files hold int64: the similarity's bits
            members.append(np.stack([glob[a:b], glob[a + kept_of], label[a:b], sim_bits], axis=1))
    if job.threshold >= 0:
        recs = np.concatenate(members) if members else np.zeros((0, 4), np.int64)
        seg = np.searchsorted(np.asarray(job.starts), recs[:, 0], side="right") - 1
        write_partitioned(job.work / "members" / f"{job.part:05d}", recs, seg, job.segments)
    return {"removed": removed.tolist(), "examples": [sorted(e)[:EXAMPLES] for e in examples]}


# ---------------------------------------------------------------- the operator


@dataclass
class SemanticDedup(GlobalFilterOperator):
    """Drop documents within a cosine threshold of a kept one of higher priority in their k-means cluster.

    Vectors from an earlier `embed` stage; reason semantic_duplicate. See docs/embeddings.md."""

    name = "semantic_dedup"
    needs = {ID: pl.String, ROW_ID: pl.Int64, TEXT: pl.String, SOURCE: pl.String}
    adds = {"semantic_cluster": pl.Int64, "semantic_similarity": pl.Float64, "semantic_duplicate_of": pl.String,
            "semantic_duplicate_of_row": pl.Int64}
    uses = (EMBEDDINGS,)

    threshold: float = 0.9  # cosine similarity at or above which a document is a duplicate
    clusters: int = 0  # k-means clusters (0: about sqrt(documents), at least 40 documents each)
    keep: Literal["first", "longest", "score"] = "first"  # which stays: first in corpus order, longest, best score
    score_column: str = ""  # keep: score, the highest value of this column is kept
    sweep: list[float] = field(default_factory=lambda: list(SWEEP))  # thresholds counted for the report
    seed: int = 0  # k-means
    niter: int = 20  # k-means iterations

    def __post_init__(self) -> None:
        if not -1.0 < self.threshold <= 1.0 or any(not -1.0 < t <= 1.0 for t in self.sweep):
            raise ValueError(f"threshold and sweep values must be cosine similarities in (-1, 1], got "
                             f"{self.threshold} and {self.sweep}")
        if self.keep == "score" and not self.score_column:
            raise ValueError("keep: score needs score_column (the column whose highest value is kept)")
        if self.keep not in ("first", "longest", "score"):
            raise ValueError(f"keep must be first, longest or score, got {self.keep!r}")
        if self.clusters < 0 or self.niter < 1:
            raise ValueError("clusters must be >= 0 (0: automatic) and niter >= 1")

    def columns(self) -> tuple[Columns, Columns, tuple[str, ...]]:
        needs, adds, modifies = super().columns()
        return ({**needs, self.score_column: None} if self.keep == "score" else needs), adds, modifies

    def cluster_count(self, docs: int) -> int:
        if self.clusters:
            return max(1, min(self.clusters, docs))
        return max(1, min(round(math.sqrt(docs)), docs // 40))

    # ------------------------------------------------------------ fit

    def fit(self, ctx: StageContext) -> None:
        thresholds = sorted(set(self.sweep) | {self.threshold})
        summary = self.run(ctx, thresholds, thresholds.index(self.threshold))
        write_json(ctx.artifacts / "params.json", {"operator": self.name, "params": self.params(), **summary})

    def run(self, ctx: StageContext, thresholds: list[float], write: int = -1) -> dict:
        """Cluster and count what each threshold removes; with ``write`` (an index into thresholds), also
        the per-shard results of that threshold. Returns the summary (counts, example pairs, timings)."""
        if EMBEDDINGS not in ctx.side_inputs:
            raise ValueError(f"{self.name} needs the vectors of an earlier `embed` stage (side output {EMBEDDINGS})")
        store = Embeddings.open(ctx.side_inputs[EMBEDDINGS])
        work, timings = ctx.artifacts, {}
        layout = Layout.of([], list(ctx.shards))
        k = self.cluster_count(layout.total)
        cut = min(1.0, min(SAMPLE_PER_CLUSTER * k, MAX_SAMPLE) / max(layout.total, 1))
        cut_bits = (1 << 64) - 1 if cut >= 1.0 else int(cut * float(1 << 64))

        t = time.perf_counter()
        loads = ctx.pool_map(_load_shard, [LoadJob(i, s.path, s.start, store.folder, work, self.keep,
                                                   self.score_column, cut_bits)
                                           for i, s in enumerate(layout.segments)])
        timings["load"] = time.perf_counter() - t

        t = time.perf_counter()
        sample = [x for x in loads if len(x["row_id"])]
        if sample:
            h, rid = np.concatenate([x["hash"] for x in sample]), np.concatenate([x["row_id"] for x in sample])
            vecs = np.concatenate([x["sample"] for x in sample])[np.lexsort((rid, h))]
            centroids = kmeans(vecs, k, self.seed, self.niter)
        else:
            centroids = np.zeros((1, store.dim), np.float32)
        del loads, sample
        save_npy(work / "centroids.npy", centroids)
        timings["kmeans"] = time.perf_counter() - t

        t = time.perf_counter()
        n_parts = n_partitions(layout.total, 4 * store.dim + 24, ctx.workers)
        sizes = ctx.pool_map(_assign_shard, [AssignJob(i, s.start, work, n_parts)
                                             for i, s in enumerate(layout.segments)])
        cluster_sizes = np.sum(sizes, axis=0) if sizes else np.zeros(len(centroids), np.int64)
        timings["assign"] = time.perf_counter() - t

        t = time.perf_counter()
        jobs = [DedupJob(p, work, len(layout.segments), tuple(int(x) for x in layout.starts), store.dim,
                         tuple(thresholds), write) for p in range(n_parts)]
        parts = ctx.pool_map(_dedup_partition, jobs)
        removed = np.sum([p["removed"] for p in parts], axis=0) if parts else np.zeros(len(thresholds), np.int64)
        timings["dedup"] = time.perf_counter() - t

        t = time.perf_counter()
        if write >= 0:
            write_all_results(ctx.pool_map, work, layout, [work / "members" / f"{p:05d}" for p in range(n_parts)],
                              4, ("cluster", "sim_bits"))
        examples = self._examples(ctx, layout, thresholds, parts)
        timings["results"] = time.perf_counter() - t
        for sub in ("vec", "prio", "parts", "members", "identity"):
            shutil.rmtree(work / sub, ignore_errors=True)
        ordered = np.sort(cluster_sizes)[::-1]
        return {"docs": layout.total, "embedded_docs": store.meta["docs"], "model": store.meta["model"],
                "clusters": len(centroids), "partitions": n_parts, "threshold": self.threshold,
                "removed": int(removed[write]) if write >= 0 else None,
                "sweep": [{"threshold": th, "removed": int(r)} for th, r in zip(thresholds, removed, strict=True)],
                "cluster_sizes": {"largest": ordered[:20].tolist(), "median": float(np.median(ordered)),
                                  "empty": int((ordered == 0).sum())},
                "examples": examples, "seconds": timings}

    def _examples(self, ctx: StageContext, layout: Layout, thresholds: list[float], parts: list[dict]) -> list[dict]:
        """Per threshold band, a few dropped documents with the kept one each names (ids, texts)."""
        if not layout.total:
            return []
        picked = [sorted(e for p in parts for e in p["examples"][t])[:EXAMPLES] for t in range(len(thresholds))]
        want = np.array(sorted({g for band in picked for d, k, _ in band for g in (d, k)}), dtype=np.int64)
        if not len(want):
            return []
        docs = take_by_global(layout, want, [ID, ROW_ID, SOURCE, TEXT], ctx.pool_map)

        def doc(g: int) -> dict:
            d = docs.get(g, {})
            return {"id": d.get(ID), "row_id": d.get(ROW_ID), "source": d.get(SOURCE),
                    "snippet": (d.get(TEXT) or "")[:SNIPPET]}

        return [{"threshold": th, "pairs": [{"similarity": round(s, 4), "dropped": doc(d), "kept": doc(k)}
                                            for d, k, s in band]}
                for th, band in zip(thresholds, picked, strict=True)]

    # ------------------------------------------------------------ apply

    def load(self, artifacts: Path) -> None:
        self._lookup = ResultLookup(artifacts, {**KEPT_COLUMNS, "cluster": pl.Int64(), "sim_bits": pl.Int64()})

    def filter(self, df: pl.DataFrame) -> Verdict:
        res = self._lookup.join(df)
        if res["kept_row"].null_count():
            raise RuntimeError(f"{self.name}: {res['kept_row'].null_count()} rows have no result (the fit did not "
                               "see them)")
        copy = res["kept_row"] != df[ROW_ID]
        sim = pl.Series(res["sim_bits"].to_numpy().view(np.float64)).fill_nan(None)
        return Verdict(keep=~copy, reason=REASON, scores={
            "semantic_cluster": res["cluster"],
            "semantic_similarity": sim,
            "semantic_duplicate_of": pl.select(pl.when(copy).then(res["kept_id"])).to_series(),
            "semantic_duplicate_of_row": pl.select(pl.when(copy).then(res["kept_row"])).to_series(),
        })

    # ------------------------------------------------------------ report

    @classmethod
    def figures(cls, artifacts: Path) -> dict[str, float]:
        try:
            params = json.loads((artifacts / "params.json").read_text())
        except (OSError, ValueError):
            return {}
        return {k: params[k] for k in ("docs", "clusters", "removed") if isinstance(params.get(k), int | float)}

    report_title = "Semantic duplicates"
    report_order = 62

    @classmethod
    def report(cls, stages: list[StageView]) -> object:
        from corpus.stages.embed_report import render_semdedup

        return render_semdedup(stages)


def explain_corpus(corpus: Path, thresholds: list[float], *, clusters: int = 0, keep: str = "first",
                   score_column: str = "", seed: int = 0, workers: int = 1, pool_map: PoolMap | None = None,
                   workdir: Path | None = None) -> dict:
    """What ``semantic_dedup`` would remove at each threshold if it ran at the end of the pipeline that
    made ``corpus`` (its ``data/`` shards, checked against the manifest, with the vectors its ``embed``
    stage published), from one k-means fit; nothing is dropped or written into the corpus folder (the fit
    works in ``workdir``, a temporary folder by default)."""
    corpus = Path(corpus)
    store = Embeddings.open(corpus)
    manifest = require_intact(corpus)
    shards = tuple(corpus / s["path"] for s in manifest["shards"])
    ts = sorted(set(thresholds))
    op = SemanticDedup(threshold=ts[0], clusters=clusters, keep=keep, score_column=score_column,  # type: ignore[arg-type]
                       sweep=ts, seed=seed)
    with tempfile.TemporaryDirectory(prefix="corpusforge-explain-", dir=workdir) as tmp:
        ctx = StageContext("explain", Path(tmp), shards, workers, pool_map or (lambda fn, xs: [fn(x) for x in xs]),
                           {EMBEDDINGS: store.folder})
        ran = [s for s in manifest.get("pipeline", []) if str(s.get("stage", "")).endswith("-semantic_dedup")]
        return {"corpus": str(corpus), "keep": keep, "already": ran, **op.run(ctx, ts)}


__all__ = ["REASON", "SWEEP", "SemanticDedup", "explain_corpus", "greedy"]
