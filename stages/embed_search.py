"""Nearest-neighbour search over a corpus's embeddings (``corpus search CORPUS "query" -k 10``): spot
checks, and the evaluation sets of decontamination (many queries at once, ``--queries FILE``).

The store is the ``embed`` stage's published folder: every vectors file is read once per search, checked
against the listing (size, sha256) as it is read, and scored against all queries together (an exact
search: a matrix product per file, the best ``k`` kept). Queries are embedded by the store's own model
(its files must not have changed since). Hits are ordered by cosine, then by row_id, so equal scores
come out the same way every time. ``describe`` finds each hit in the corpus: kept (``data/``), or dropped
by which stage and why (``rejected/``), with its text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from corpus.manifest import require_intact
from corpus.operators import PoolMap
from corpus.schema import ID, REJECT_REASON, REJECT_STAGE, ROW_ID, SOURCE, TEXT
from corpus.stages.embed import Embeddings, unit_rows


@dataclass(frozen=True)
class ScanJob:
    folder: Path
    file: int
    queries: np.ndarray  # unit vectors, one row per query
    k: int


def _scan(job: ScanJob) -> dict:
    """The best k documents of one vectors file for each query: (scores, row_ids, ids), each q x <=k."""
    store = Embeddings.open(job.folder)
    row_ids, vectors, ids = store.read(job.file, ids=True)
    scores = job.queries @ unit_rows(vectors).T
    k = min(job.k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if 0 < k < scores.shape[1] else np.argsort(-scores, axis=1)
    assert ids is not None
    return {"scores": np.take_along_axis(scores, top, axis=1), "row_id": row_ids[top],
            "id": np.asarray(ids.to_list(), dtype=object)[top] if len(ids) else np.zeros(top.shape, object)}


def _in_process(fn, items):  # type: ignore[no-untyped-def]
    return [fn(x) for x in items]


def search(folder: Path, queries: Sequence[str], k: int = 10, pool_map: PoolMap = _in_process) -> list[list[dict]]:
    """For each query, its k nearest documents: [{rank, score, row_id, id}], best first."""
    if k < 1:
        raise ValueError(f"-k must be at least 1, got {k}")
    store = Embeddings.open(folder)
    if not queries:
        return []
    q = unit_rows(store.encode(list(queries)))
    parts = pool_map(_scan, [ScanJob(store.folder, i, q, k) for i in range(len(store.files))])
    out = []
    for j in range(len(queries)):
        scores = np.concatenate([p["scores"][j] for p in parts]) if parts else np.zeros(0)
        rows = np.concatenate([p["row_id"][j] for p in parts]) if parts else np.zeros(0, np.int64)
        ids = np.concatenate([p["id"][j] for p in parts]) if parts else np.zeros(0, object)
        best = np.lexsort((rows, -scores))[:k]
        out.append([{"rank": r + 1, "score": round(float(scores[i]), 4), "row_id": int(rows[i]), "id": ids[i]}
                    for r, i in enumerate(best)])
    return out


def describe(corpus: Path, results: list[list[dict]]) -> list[list[dict]]:
    """The hits with what the corpus folder says of them: source, text, and ``status`` ("kept", or
    "dropped by <stage>: <reason>"); "not in this corpus" when neither data/ nor rejected/ has the row
    (a store read without its run folder). ``corpus``: the run's folder, or its ``embeddings/``."""
    wanted = sorted({h["row_id"] for hits in results for h in hits})
    found: dict[int, dict] = {}
    corpus = Path(corpus)
    if not (corpus / "manifest.json").is_file() and (corpus.parent / "manifest.json").is_file():
        corpus = corpus.parent  # the run's embeddings/ folder was named
    if wanted and (corpus / "manifest.json").is_file():
        manifest = require_intact(corpus)  # sizes: a cut or missing shard is named before it is read
        for key, kind in (("shards", "kept"), ("rejected", "dropped")):
            files = [str(corpus / f["path"]) for f in manifest.get(key, [])]
            if not files:
                continue
            extra = [REJECT_STAGE, REJECT_REASON] if kind == "dropped" else []
            frames = [pl.scan_parquet(f).filter(pl.col(ROW_ID).is_in(wanted))
                      .select(ROW_ID, ID, SOURCE, TEXT, *extra) for f in files]
            for r in pl.concat(frames, how="diagonal_relaxed").collect().iter_rows(named=True):
                status = "kept" if kind == "kept" else f"dropped by {r[REJECT_STAGE]}: {r[REJECT_REASON]}"
                found.setdefault(r[ROW_ID], {"source": r[SOURCE], "text": r[TEXT], "status": status})
    missing = {"source": None, "text": None, "status": "not in this corpus"}
    return [[h | found.get(h["row_id"], missing) for h in hits] for hits in results]


__all__ = ["describe", "search"]
