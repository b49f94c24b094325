"""The map of the corpus for the ``embed`` stage's report: a sample of documents projected to 2-D (UMAP or
PCA), coloured by source, by a column such as a language, or by k-means cluster, with the largest
clusters' example titles. ``build_map`` writes ``map.json`` into the stage's artifacts; ``embed_report.py``
draws it.

The sample does not depend on the worker count or the pieces: a document is in it when the hash of its
row_id is among the ``sample`` smallest (each piece sends its documents under twice the expected cut).
A title is the document's ``meta.title`` when it has one, else the longest of its first five lines.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from corpus import frames
from corpus.operators import StageContext
from corpus.schema import META, ROW_ID, SOURCE, TEXT
from corpus.stages.dedup_index import mix64, write_json
from corpus.stages.embed import Embeddings, kmeans, nearest, unit_rows

MAP = "map.json"
TITLE_CHARS = 200  # kept in map.json; the report shows fewer
TITLES = 3  # example titles per cluster
TITLE_LINES = 5
OTHER = "(other)"


@dataclass(frozen=True)
class SampleJob:
    """The sampled documents of one vectors file (a piece: rows [start, ...) of ``shard``)."""

    folder: str
    file: int
    shard: str
    start: int
    cut: int  # keep rows whose row_id hash is below this (as uint64 bits in an int)
    columns: tuple[str, ...]


def titles(df: pl.DataFrame) -> pl.Series:
    """meta.title when present, else the longest of the first TITLE_LINES non-blank lines (a web page's
    first line is often its navigation); at most TITLE_CHARS characters."""
    lines = (pl.col(TEXT).str.split("\n").list.eval(pl.element().str.strip_chars())
             .list.eval(pl.element().filter(pl.element() != "")).list.head(TITLE_LINES))
    longest = lines.list.eval(pl.element().sort_by(pl.element().str.len_chars(), descending=True,
                                                   maintain_order=True).first()).list.first()
    title = pl.col(META).str.json_path_match("$.title") if META in df.columns else pl.lit(None, pl.String)
    return df.select(pl.coalesce(title, longest).str.slice(0, TITLE_CHARS).alias("title"))["title"]


def sample_file(job: SampleJob) -> dict:
    store = Embeddings.open(Path(job.folder))
    row_ids, vectors, _ = store.read(job.file)
    h = mix64(row_ids.astype(np.uint64))
    rows = np.flatnonzero(h < np.uint64(job.cut))
    cols = frames.take(Path(job.shard), list(job.columns), job.start + rows)
    if not (cols[ROW_ID].to_numpy() == row_ids[rows]).all():
        raise ValueError(f"{store.folder / store.files[job.file]['file']} does not match the rows of {job.shard}")
    return {"hash": h[rows], "row_id": row_ids[rows], "vectors": vectors[rows],
            "title": titles(cols).to_list(),
            **{c: cols[c].cast(pl.String).fill_null("(null)").to_list() for c in job.columns
               if c not in (ROW_ID, TEXT, META)}}


def project(vectors: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, str]:
    """2-D coordinates in [0, 1] of the rows, and the method used (a sample too small for UMAP gets PCA)."""
    n = len(vectors)
    if method == "umap" and n >= 16:
        try:
            import umap
        except ImportError:
            raise ValueError("map_method 'umap' needs umap-learn (the [embed] extra)") from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "n_jobs overridden by random_state": wanted, for a repeatable map
            xy = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), metric="cosine",
                           random_state=seed).fit_transform(vectors)
        used = "umap"
    else:
        centred = vectors - vectors.mean(axis=0)
        if n >= 2:
            _, _, vt = np.linalg.svd(centred, full_matrices=False)
            axes = vt[:2]
            axes = axes * np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])[:, None]  # one sign
            xy = centred @ axes.T
        else:
            xy = np.zeros((n, 2))
        if xy.shape[1] < 2:
            xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
        used = "pca"
    xy = np.asarray(xy, dtype=np.float64)
    span = xy.max(axis=0) - xy.min(axis=0) if n else np.ones(2)
    xy = (xy - (xy.min(axis=0) if n else 0)) / np.where(span > 0, span, 1)
    return np.round(xy, 4), used


def build_map(ctx: StageContext, listing: dict, *, sample: int, method: str, clusters: int, color: list[str],
              seed: int) -> dict:
    """Sample, project and cluster; writes ``map.json`` into the stage's artifacts and returns it."""
    columns = tuple(dict.fromkeys([ROW_ID, SOURCE, TEXT, META, *(c for c in color if c != "cluster")]))
    n = listing["docs"]
    rate = min(1.0, 2.0 * sample / n) if n else 1.0
    cut = (1 << 64) - 1 if rate >= 1.0 else int(rate * float(1 << 64))
    pieces = _pieces_of(ctx, listing)
    jobs = [SampleJob(str(ctx.artifacts), k, shard, start, cut, columns) for k, (shard, start) in enumerate(pieces)]
    parts = [p for p in ctx.pool_map(sample_file, jobs) if len(p["row_id"])]
    result: dict = {"method": method, "docs": n, "sample": 0, "color_by": list(color), "points": {}, "clusters": []}
    if parts:
        merged = {k: np.concatenate([p[k] for p in parts]) if k in ("hash", "row_id", "vectors")
                  else [v for p in parts for v in p[k]] for k in parts[0]}
        order = np.lexsort((merged["row_id"], merged["hash"]))[:sample]
        vectors = unit_rows(merged["vectors"][order])
        xy, used = project(vectors, method, seed)
        centroids = kmeans(vectors, max(1, min(clusters, len(vectors) // 5)), seed)
        label, _ = nearest(vectors, centroids)
        label, infos = _clusters(vectors, centroids, label, xy, [merged["title"][i] for i in order])
        points = {"x": xy[:, 0].tolist(), "y": xy[:, 1].tolist(), "cluster": [str(c) for c in label.tolist()]}
        for c in color:
            if c != "cluster":
                points[c] = [merged[c][i] for i in order]
        result.update(method=used, sample=len(order), points=points, clusters=infos)
    write_json(ctx.artifacts / MAP, result)
    return result


def _pieces_of(ctx: StageContext, listing: dict) -> list[tuple[str, int]]:
    """(shard, first row) of every vectors file."""
    return [(str(ctx.shards[f["shard"]]), int(f["start"])) for f in listing["files"]]


def _clusters(vectors: np.ndarray, centroids: np.ndarray, label: np.ndarray, xy: np.ndarray,
              names: list[str]) -> tuple[np.ndarray, list[dict]]:
    """Clusters numbered 1.. by size (largest first), each with its share, its most central document's
    place on the map and the titles of the documents nearest its centroid."""
    sizes = np.bincount(label, minlength=len(centroids))
    rank = np.argsort(-sizes, kind="stable")
    renumber = np.empty_like(rank)
    renumber[rank] = np.arange(1, len(rank) + 1)
    infos = []
    for c in rank:
        members = np.flatnonzero(label == c)
        if not len(members):
            continue
        closest = members[np.argsort(-(vectors[members] @ centroids[c]), kind="stable")[:TITLES]]
        # labelled where its most central document lies: the mean of a cluster in two islands is in neither
        infos.append({"cluster": int(renumber[c]), "size": int(len(members)),
                      "share": round(len(members) / len(label), 4),
                      "x": float(xy[closest[0], 0]), "y": float(xy[closest[0], 1]),
                      "titles": [names[i] for i in closest]})
    return renumber[label], infos


__all__ = ["MAP", "OTHER", "build_map", "project", "sample_file", "titles"]
