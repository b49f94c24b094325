"""On-disk plumbing shared by the dedup operators' fits.

* Partitioned record files: a worker writes its records sorted by partition plus an offsets file,
  so the task for partition p reads one slice of every file (memory-mapped): one partition in
  memory at a time, no P x S small files.
* Layout: the global order of documents (index parts first, then shards in order, rows in order);
  a document's global number is its rank in that order, so "smallest number" = "first in corpus".
* Connected components (vectorised union-find), reduced per partition then merged.
* Per-shard results: fit writes ``results/<shard>.parquet`` (only documents that are duplicates or
  in clusters), keyed by ``row_id``; apply reads the files whose row_id range holds its rows and joins
  on row_id. Nothing is keyed by the user's id, which may repeat.
* Identity: a fit's first pass saves each segment's user ids and row_ids; they are sealed into three
  files indexed by global number, so a results task finds the kept rows it names by memory-mapping.

Everything is .npy (``allow_pickle=False``), Parquet or JSON: nothing is unpickled from disk.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from corpus import frames
from corpus.operators import PoolMap
from corpus.schema import ID, ROW_ID
from corpus.stages.dedup_text import ranges, utf8_buffers
from corpus.writers import atomic_path, naming, write_bytes_atomic, write_parquet


def save_npy(path: Path, arr: np.ndarray, durable: bool = False) -> None:
    """Write an .npy atomically (temp file + rename). Intermediate files of a fit skip the fsync: a
    fit that dies is redone from scratch (its marker comes last), so only its outputs need it."""
    if durable:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(arr), allow_pickle=False)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        with naming(path), open(tmp, "wb") as fh:  # a full disk names the file, as every writer's error does
            np.save(fh, np.ascontiguousarray(arr), allow_pickle=False)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def write_json(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, json.dumps(obj, indent=1, sort_keys=False, default=str).encode())


def check_partitions(n: int) -> None:
    """A dedup stage's ``partitions``: 0 (sized for it) or more; -1 was an OverflowError in the fit."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"partitions must be 0 (sized to the corpus) or more, got {n!r}")


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


def partition_of(keys: np.ndarray, n_parts: int) -> np.ndarray:
    """The partition of well-mixed 64-bit keys (digests, band keys): taken from their high bits."""
    return ((keys.astype(np.uint64) >> np.uint64(40)) % np.uint64(n_parts)).astype(np.int64)


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

    def file_for(self, column: str) -> Path | None:
        """The file holding a column of this segment's documents (an index part keeps ids only)."""
        if self.kind == "shard":
            return self.path
        return self.ids_path if column == ID else None


@dataclass
class Layout:
    segments: list[Segment]
    identity: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)  # see identity()

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

    def save(self, path: Path) -> tuple[Path, str]:
        """Write the layout for the pool's workers; returns (path, token) to pass in their jobs (a
        worker reads each layout once, however many jobs name it)."""
        token = uuid.uuid4().hex
        write_json(path, {"token": token, "segments": [
            {"kind": s.kind, "path": str(s.path), "rows": s.rows, "shard": s.shard} for s in self.segments]})
        return path, token


_LAYOUTS: dict[str, Layout] = {}


def load_layout(path: Path, token: str) -> Layout:
    if token not in _LAYOUTS:
        data = json.loads(Path(path).read_bytes())
        if data["token"] != token:
            raise RuntimeError(f"{path} was rewritten while a fit was using it")
        _LAYOUTS.clear()  # one fit at a time
        _LAYOUTS[token] = Layout([Segment(s["kind"], Path(s["path"]), s["rows"], shard=s["shard"])
                                  for s in data["segments"]])
    return _LAYOUTS[token]


@dataclass(frozen=True)
class TakeJob:
    """Some rows of one Parquet file (a pool task: ``take_rows``)."""

    path: Path
    columns: tuple[str, ...]
    rows: np.ndarray


def take_rows(job: TakeJob) -> list[dict]:
    return frames.take(job.path, job.columns, job.rows).to_dicts()


def take_by_global(layout: Layout, g: np.ndarray, columns: Sequence[str], pool_map: PoolMap) -> dict[int, dict]:
    """{global number: {column: value}} for documents g (one task per segment involved); a column a
    segment lacks (an index part keeps ids only) is left out of its documents' dicts."""
    g = np.unique(g)
    if len(g) == 0:
        return {}
    seg, row = layout.locate(g)
    jobs, keys = [], []
    for s in np.unique(seg):
        sel = seg == s
        segment = layout.segments[int(s)]
        have = [c for c in columns if segment.file_for(c) is not None]
        file = segment.file_for(have[0]) if have else None
        if file is not None:
            jobs.append(TakeJob(file, tuple(have), row[sel]))
            keys.append(g[sel])
    out: dict[int, dict] = {}
    for k, vals in zip(keys, pool_map(take_rows, jobs), strict=True):
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

# A fit's results are keyed by row_id, the row's identity unique by construction, never by the user's id
# (which may repeat across files, shards and sources): ``results/<shard>.parquet`` holds one row per
# (document, result) with row_id, and ``results.json`` the row_id range of each file, so apply reads
# the files whose range holds its rows and joins on row_id, whatever frame it is given.

RESULTS = "results"
RESULTS_JSON = "results.json"
LAYOUT_JSON = "layout.json"
IDENTITY = "identity"
# Columns a result gets when it names another document (the kept copy, the cluster's first document).
KEPT_COLUMNS: dict[str, pl.DataType] = {
    "kept_id": pl.String(),  # its user id (for people; may repeat)
    "kept_row": pl.Int64(),  # its row_id; null when it is a document of a saved index
    "kept_index": pl.Int64(),  # its position in the saved index; null when it is in this corpus
}


def results_path(workdir: Path, shard: int) -> Path:
    return workdir / RESULTS / f"{shard:05d}.parquet"


def save_identity(workdir: Path, seg: int, ids: Sequence[pl.Series], row_ids: Sequence[np.ndarray] | None) -> None:
    """A segment's user ids (UTF-8 bytes + offsets) and row_ids (-1: an index document) as .npy, written
    by a fit's first pass, which reads the segment anyway: any task can then look up a few documents of
    any segment by memory-mapping, instead of decoding Parquet row groups of every shard it points to."""
    whole = pl.concat(ids).cast(pl.String).fill_null("") if ids else pl.Series([], dtype=pl.String)
    offsets, data = utf8_buffers(whole)
    stem = workdir / IDENTITY / f"{seg:05d}"
    save_npy(suffixed(stem, ".off.npy"), offsets)
    save_npy(suffixed(stem, ".ids.npy"), data)
    rows = np.concatenate(row_ids) if row_ids else np.full(len(whole), -1, np.int64)
    save_npy(suffixed(stem, ".row.npy"), rows.astype(np.int64))


def seal_identity(workdir: Path, layout: Layout) -> None:
    """Concatenate the segments' identity files into three indexed by global number (offsets, UTF-8
    bytes, row_ids), one segment in memory at a time: a task then maps three files, however many
    segments its documents point to."""
    folder = workdir / IDENTITY
    folder.mkdir(parents=True, exist_ok=True)  # no segments, no files yet
    offsets = np.lib.format.open_memmap(folder / "all.off.npy", mode="w+", dtype=np.int64, shape=(layout.total + 1,))
    rows = np.lib.format.open_memmap(folder / "all.row.npy", mode="w+", dtype=np.int64, shape=(layout.total,))
    base = 0
    with open(folder / "all.ids", "wb") as blob:
        for k, seg in enumerate(layout.segments):
            stem = folder / f"{k:05d}"
            offsets[seg.start : seg.start + seg.rows + 1] = load_npy(suffixed(stem, ".off.npy")) + base
            rows[seg.start : seg.start + seg.rows] = load_npy(suffixed(stem, ".row.npy"))
            data = load_npy(suffixed(stem, ".ids.npy"))
            blob.write(data.tobytes())
            base += len(data)
            for suffix in (".off.npy", ".row.npy", ".ids.npy"):
                suffixed(stem, suffix).unlink()
    offsets.flush()
    rows.flush()
    del offsets, rows


def identity(workdir: Path, layout: Layout, g: np.ndarray) -> tuple[pl.Series, np.ndarray]:
    """(user ids, row_ids) of documents g (global numbers), from the sealed identity files (mapped once
    per layout, i.e. once per fit in each process)."""
    if layout.identity is None:
        folder = workdir / IDENTITY
        size = (folder / "all.ids").stat().st_size
        blob = np.memmap(folder / "all.ids", dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
        layout.identity = (load_npy(folder / "all.off.npy", mmap=True), blob,
                           load_npy(folder / "all.row.npy", mmap=True))
    offsets, blob, rows = layout.identity
    a = np.asarray(offsets[g])
    n = np.asarray(offsets[g + 1]) - a
    new_off = np.zeros(len(g) + 1, np.int64)
    np.cumsum(n, out=new_off[1:])
    data = np.asarray(blob[ranges(a, n)])
    arr = pa.LargeStringArray.from_buffers(len(g), pa.py_buffer(new_off), pa.py_buffer(data))
    return pl.Series(arr, dtype=pl.String), np.asarray(rows[g])


@dataclass(frozen=True)
class ResultsJob:
    """One shard's results, from its slice of records partitioned by segment (global document number
    first; then, when ``kept``, the global number of the document it points to; then ``names``)."""

    workdir: Path
    layout: tuple[Path, str]  # Layout.save()
    seg: int  # the shard's segment number (its partition in the record files)
    stems: tuple[Path, ...]
    width: int
    names: tuple[str, ...] = ()
    kept: bool = True
    same_id: bool = False  # keep only rows whose user id equals the kept document's (exact check of digests)


def write_results(job: ResultsJob) -> dict | None:
    """A pool task: ``results/<shard>.parquet``; returns its entry of results.json (None: no results)."""
    layout = load_layout(*job.layout)
    recs = read_partition(job.stems, job.seg, job.width, np.int64)
    if len(recs) == 0:
        return None
    recs = recs[np.lexsort(recs.T[::-1])]
    own_ids, own_rows = identity(job.workdir, layout, recs[:, 0])
    data: dict[str, Any] = {ROW_ID: own_rows}
    first = 1
    if job.kept:
        kept_ids, kept_rows = identity(job.workdir, layout, recs[:, 1])
        in_index = recs[:, 1] < layout.index_docs
        data["kept_id"] = kept_ids
        data["kept_row"] = pl.Series(kept_rows, dtype=pl.Int64).scatter(np.flatnonzero(in_index), None)
        data["kept_index"] = pl.Series(recs[:, 1], dtype=pl.Int64).scatter(np.flatnonzero(~in_index), None)
        first = 2
    data.update({name: recs[:, first + i] for i, name in enumerate(job.names)})
    frame = pl.DataFrame(data)
    if job.same_id:
        frame = frame.filter(own_ids == frame["kept_id"])
        if frame.height == 0:
            return None
    path = results_path(job.workdir, layout.segments[job.seg].shard)
    write_parquet(frame, path)
    return {"file": path.name, "rows": frame.height, "lo": int(frame[ROW_ID].min()),  # type: ignore[arg-type]
            "hi": int(frame[ROW_ID].max())}  # type: ignore[arg-type]


def write_all_results(pool_map: PoolMap, workdir: Path,
                      layout: Layout, stems: Sequence[Path], width: int, names: tuple[str, ...] = (),
                      kept: bool = True, same_id: bool = False) -> list[dict]:
    """Write every shard's results (one pool task per shard) and results.json; returns its entries. Needs
    every segment's identity files (save_identity); removes them when done."""
    seal_identity(workdir, layout)
    saved = layout.save(workdir / LAYOUT_JSON)
    jobs = [ResultsJob(workdir, saved, k, tuple(stems), width, names, kept, same_id)
            for k, s in enumerate(layout.segments) if s.kind == "shard"]
    entries = [e for e in pool_map(write_results, jobs) if e is not None]
    write_json(workdir / RESULTS_JSON, entries)
    _LAYOUTS.clear()  # this process's maps of the identity files
    shutil.rmtree(workdir / IDENTITY, ignore_errors=True)
    return entries


class ResultLookup:
    """apply()'s side: the results of the rows of a frame, found by row_id (the files whose row_id range
    holds some of the frame's rows are read, then joined on row_id): any frame gets exactly its rows'
    results, whichever shard, order or mix it comes in."""

    def __init__(self, workdir: Path, schema: dict[str, pl.DataType]):
        self.workdir = Path(workdir)
        self.schema = {ROW_ID: pl.Int64(), **schema}
        entries = json.loads((self.workdir / RESULTS_JSON).read_text())
        self.files = [self.workdir / RESULTS / e["file"] for e in entries]
        self.lo = np.array([e["lo"] for e in entries], dtype=np.int64)
        self.hi = np.array([e["hi"] for e in entries], dtype=np.int64)

    def rows_for(self, df: pl.DataFrame) -> pl.DataFrame:
        """The results rows of df's rows (any order)."""
        if ROW_ID not in df.columns:
            raise ValueError(f"this frame has no {ROW_ID} column (a corpus read before row ids existed): "
                             "rerun from the inputs")
        ids = np.sort(df[ROW_ID].to_numpy())
        hit = np.searchsorted(ids, self.hi, side="right") > np.searchsorted(ids, self.lo, side="left")
        frames = [pl.read_parquet(f) for f, h in zip(self.files, hit, strict=True) if h]
        if not frames:
            return pl.DataFrame(schema=self.schema)
        res = pl.concat(frames, how="diagonal_relaxed").filter(pl.col(ROW_ID).is_in(df[ROW_ID].implode()))
        return res.select([pl.col(c).cast(t) for c, t in self.schema.items()])

    def join(self, df: pl.DataFrame) -> pl.DataFrame:
        """The results columns aligned with df's rows (nulls where a row has no result)."""
        res = self.rows_for(df)
        out = df.select(pl.col(ROW_ID)).join(res, on=ROW_ID, how="left", maintain_order="left")
        if out.height != df.height:
            raise RuntimeError(f"{self.workdir}: a row_id has more than one result (row ids must be unique)")
        return out
