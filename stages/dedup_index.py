"""On-disk plumbing shared by the dedup operators' fits.

* Partitioned record files: a worker writes its records sorted by partition plus an offsets file,
  so the task for partition p reads one slice of every file (memory-mapped): one partition in
  memory at a time, no P x S small files.
* Layout: the global order of documents (index parts first, then shards in order, rows in order);
  a document's global number is its rank in that order, so "smallest number" = "first in corpus".
* Connected components (vectorised union-find), reduced per partition then merged.
* Per-shard results: fit writes ``results/<shard>.parquet`` (only documents that are duplicates or
  in clusters); apply finds its shard by the first id and joins on id.

Everything is .npy (``allow_pickle=False``), Parquet or JSON: nothing is unpickled from disk.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from corpus.writers import atomic_path, write_bytes_atomic, write_parquet


def shard_frames(path: Path, columns: Sequence[str] = ("id", "text")) -> Iterator[pl.DataFrame]:
    """The non-empty row groups of one shard, in order: a fit reads a shard one row group at a time."""
    pf = pq.ParquetFile(path)
    for rg in range(pf.num_row_groups):
        df = pl.from_arrow(pf.read_row_group(rg, columns=list(columns)))
        assert isinstance(df, pl.DataFrame)
        if df.height:
            yield df


def save_npy(path: Path, arr: np.ndarray, durable: bool = False) -> None:
    """Write an .npy atomically (temp file + rename). Intermediate files of a fit skip the fsync: a
    fit that dies is redone from scratch (its marker comes last), so only its outputs need it."""
    if durable:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(arr), allow_pickle=False)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    with open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(arr), allow_pickle=False)
    os.replace(tmp, path)


def load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def write_json(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, json.dumps(obj, indent=1, sort_keys=False, default=str).encode())


def n_partitions(records: int, bytes_per_record: int, workers: int, target_bytes: int = 64 << 20,
                 fixed: int = 0) -> int:
    """Enough partitions that one fits in ``target_bytes``, and at least one per worker."""
    if fixed:
        return fixed
    need = -(-records * bytes_per_record // target_bytes)
    return int(min(max(need, workers, 1), 4096))


def suffixed(stem: Path, suffix: str) -> Path:
    """stem + suffix (Path.with_suffix would eat a dot inside the name, e.g. a source called "c4.en")."""
    return stem.parent / f"{stem.name}{suffix}"


def write_partitioned(stem: Path, records: np.ndarray, part: np.ndarray, n_parts: int) -> None:
    """``stem.npy``: records sorted (stably) by partition; ``stem.off.npy``: n_parts + 1 offsets."""
    order = np.argsort(part, kind="stable")
    save_npy(suffixed(stem, ".npy"), records[order])
    save_npy(suffixed(stem, ".off.npy"), np.searchsorted(part[order], np.arange(n_parts + 1)).astype(np.int64))


def read_partition(stems: Sequence[Path], p: int, width: int, dtype: Any) -> np.ndarray:
    """Partition p's slice of every partitioned file, concatenated (in file order)."""
    parts = []
    for stem in stems:
        off_path = suffixed(stem, ".off.npy")
        if not off_path.exists():
            continue
        off = load_npy(off_path)
        if off[p + 1] > off[p]:
            parts.append(np.array(load_npy(suffixed(stem, ".npy"), mmap=True)[off[p] : off[p + 1]]))
    if not parts:
        return np.zeros((0, width), dtype)
    return np.concatenate(parts)


def mix64(x: np.ndarray) -> np.ndarray:
    """fmix64 (to spread structured numbers, e.g. document numbers, over partitions)."""
    u = np.uint64
    x = x.astype(np.uint64)
    x = x ^ (x >> u(33))
    x = x * u(0xFF51AFD7ED558CCD)
    x = x ^ (x >> u(33))
    x = x * u(0xC4CEB9FE1A85EC53)
    return x ^ (x >> u(33))


# ---------------------------------------------------------------- layout


@dataclass
class Segment:
    """A run of consecutive global document numbers: an input shard, or a part of a saved index."""

    kind: str  # "shard" | "index"
    path: Path  # the shard's Parquet file, or the index part's stem
    rows: int
    start: int = 0  # global number of its first document
    shard: int = -1  # the shard's position in ctx.shards (kind "shard")

    @property
    def ids_path(self) -> Path:
        return self.path if self.kind == "shard" else suffixed(self.path, ".ids.parquet")


@dataclass
class Layout:
    segments: list[Segment]

    def __post_init__(self) -> None:
        start = 0
        for s in self.segments:
            s.start = start
            start += s.rows
        self.total = start
        self.starts = np.array([s.start for s in self.segments] + [start], dtype=np.int64)

    @classmethod
    def of(cls, index_parts: list[tuple[Path, int]], shards: list[Path]) -> Layout:
        segs = [Segment("index", p, n) for p, n in index_parts]
        segs += [Segment("shard", p, pq.ParquetFile(p).metadata.num_rows, shard=i) for i, p in enumerate(shards)]
        return cls(segs)

    @property
    def index_docs(self) -> int:
        return sum(s.rows for s in self.segments if s.kind == "index")

    def locate(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(segment number, row within it) of global document numbers."""
        seg = np.searchsorted(self.starts, g, side="right") - 1
        return seg, g - self.starts[seg]


def read_column(pf: pq.ParquetFile, column: str, row_group: int | None = None) -> pl.Series:
    """One column as a polars Series (pyarrow's own take() imports pandas: over a second per worker)."""
    table = pf.read(columns=[column]) if row_group is None else pf.read_row_group(row_group, columns=[column])
    s = pl.from_arrow(table.column(column))
    assert isinstance(s, pl.Series)
    return s


def take_column(args: tuple[Path, str, np.ndarray]) -> list:
    """Values of one column at the given rows of one Parquet file (a pool task). Reads only the row
    groups holding those rows: a few snippets must not cost a whole text column."""
    path, column, rows = args
    rows = np.asarray(rows, dtype=np.int64)
    pf = pq.ParquetFile(path)
    sizes = [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    group = np.searchsorted(bounds, rows, side="right") - 1
    out: list = [None] * len(rows)
    for g in np.unique(group):
        sel = np.flatnonzero(group == g)
        col = read_column(pf, column, int(g))
        for i, v in zip(sel.tolist(), col.gather(rows[sel] - bounds[g]).to_list(), strict=True):
            out[i] = v
    return out


def take_by_global(layout: Layout, g: np.ndarray, column: str,
                   pool_map: Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]) -> dict[int, Any]:
    """{global number: value of column} for documents g (one task per segment involved)."""
    g = np.unique(g)
    if len(g) == 0:
        return {}
    seg, row = layout.locate(g)
    jobs, keys = [], []
    for s in np.unique(seg):
        sel = seg == s
        segment = layout.segments[int(s)]
        path = segment.ids_path if column == "id" else segment.path
        if column != "id" and segment.kind != "shard":
            continue  # index parts keep ids only
        jobs.append((path, column, row[sel]))
        keys.append(g[sel])
    out: dict[int, Any] = {}
    for k, vals in zip(keys, pool_map(take_column, jobs), strict=True):
        out.update(zip(k.tolist(), vals, strict=True))
    return out


# ---------------------------------------------------------------- components


def components(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the graph with edges (u, v): (nodes sorted, smallest node of each
    node's component). Isolated nodes do not appear.

    Vectorised union-find (hook the larger root under the smaller, then jump pointers until every
    node points at its root): O(log n) rounds of numpy passes over the edges, and no scipy import
    (0.3 s in every worker)."""
    if len(u) == 0:
        z = np.zeros(0, np.int64)
        return z, z
    nodes, inv = np.unique(np.concatenate([u, v]), return_inverse=True)
    a, b = inv[: len(u)], inv[len(u) :]
    parent = np.arange(len(nodes), dtype=np.int64)
    while True:
        pa, pb = parent[a], parent[b]
        differ = pa != pb
        if not differ.any():
            break
        a, b, pa, pb = a[differ], b[differ], pa[differ], pb[differ]  # settled edges never matter again
        np.minimum.at(parent, np.maximum(pa, pb), np.minimum(pa, pb))
        while True:
            up = parent[parent]
            if np.array_equal(up, parent):
                break
            parent = up
    # the smallest node is never hooked under another, so each component's root is its smallest node
    return nodes.astype(np.int64), nodes[parent].astype(np.int64)


def reduce_edges(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Edges (node, root) with the same components as (u, v), at most one per node: what a partition
    hands to the merge, so the merge's size is bounded by the nodes, not the edges."""
    nodes, root = components(u, v)
    keep = nodes != root
    return np.stack([nodes[keep], root[keep]], axis=1)


# ---------------------------------------------------------------- per-shard results


RESULTS = "results"
SHARDS_JSON = "shards.json"


def write_shards_json(workdir: Path, first_ids: list[str | None], rows: list[int]) -> None:
    write_json(workdir / SHARDS_JSON, [{"first_id": f, "rows": n} for f, n in zip(first_ids, rows, strict=True)])


def first_id(path: Path) -> str | None:
    pf = pq.ParquetFile(path)
    if pf.metadata.num_rows == 0:
        return None
    for rg in range(pf.num_row_groups):
        col = pf.read_row_group(rg, columns=["id"]).column("id")
        if len(col):
            return col[0].as_py()
    return None


def results_path(workdir: Path, shard: int) -> Path:
    return workdir / RESULTS / f"{shard:05d}.parquet"


def write_shard_results(args: tuple[Path, Path, int, np.ndarray, dict[str, list]]) -> int:
    """A pool task: results/<shard>.parquet with the shard's ids at ``rows`` and the given columns."""
    workdir, shard_path, shard, rows, columns = args
    if len(rows) == 0:
        return 0
    ids = read_column(pq.ParquetFile(shard_path), "id").gather(rows).cast(pl.String)
    frame = pl.DataFrame({"row": np.asarray(rows, dtype=np.int64), "id": ids, **columns})
    # an all-null column would be typed Null; ids are strings
    frame = frame.with_columns([pl.col(c).cast(pl.String) for c, t in frame.schema.items() if t == pl.Null])
    write_parquet(frame, results_path(workdir, shard))
    return frame.height


class ResultLookup:
    """apply()'s side: the results rows of the shard a frame came from.

    A global operator's apply sees exactly the shards its fit saw (it heads its segment), so the first
    id names the shard and results align by row position (ids need not even be unique). Any other
    frame falls back to matching every results file by id."""

    def __init__(self, workdir: Path, schema: dict[str, pl.DataType]):
        self.workdir = Path(workdir)
        self.schema = {"row": pl.Int64(), "id": pl.String(), **schema}
        shards = json.loads((self.workdir / SHARDS_JSON).read_text())
        self.rows = [s["rows"] for s in shards]
        self.by_first = {s["first_id"]: i for i, s in enumerate(shards) if s["first_id"] is not None}

    def rows_for(self, df: pl.DataFrame) -> tuple[pl.DataFrame, bool]:
        """(results rows, whether their ``row`` column indexes df)."""
        empty = pl.DataFrame(schema=self.schema)
        if df.height == 0:
            return empty, True
        shard = self.by_first.get(df["id"][0])
        if shard is not None and self.rows[shard] == df.height:
            path = results_path(self.workdir, shard)
            res = pl.read_parquet(path) if path.exists() else empty
            return res.select([pl.col(c).cast(t) for c, t in self.schema.items()]), True
        files = sorted((self.workdir / RESULTS).glob("*.parquet"))
        if not files:
            return empty, False
        res = pl.scan_parquet(files).filter(pl.col("id").is_in(df["id"].cast(pl.String).implode())).collect()
        return res.select([pl.col(c).cast(t) for c, t in self.schema.items()]), False

    def join(self, df: pl.DataFrame) -> pl.DataFrame:
        """The results columns aligned with df's rows (nulls where the document has no result)."""
        res, by_row = self.rows_for(df)
        if by_row:
            base = pl.DataFrame({"row": np.arange(df.height, dtype=np.int64)})
            return base.join(res.drop("id"), on="row", how="left", maintain_order="left")
        base = df.select(pl.col("id").cast(pl.String))
        return base.join(res.drop("row"), on="id", how="left", maintain_order="left")


