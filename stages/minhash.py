"""MinHash-LSH near-duplicate removal, bounded in memory and parallel at every step.

Fit (each step a pool pass; files under the fit folder; nothing holds the corpus in memory):

1. **sign** (per shard): normalise, shingle (word 5-grams by default), hash and MinHash whole batches
   in numpy (``corpus.stages.dedup_text``); write the shard's signatures, its shingle sets (for exact
   verification) and its band keys, partitioned by band-key hash.
2. **bucket** (per band partition): sort the partition's (band key, document) records; documents
   sharing a key are candidate pairs (every pair in buckets up to ``bucket_all_pairs`` members, else
   each member to the first and to its predecessor); pairs are written partitioned by pair hash.
3. **verify** (per pair partition): exact Jaccard of the shingle sets (vectorised over pairs); pairs
   at or above ``threshold`` are edges; connected components of the partition's edges are reduced
   to (document, smallest document) links.
4. **merge** (main process): components of all links, so a cluster's representative is its first
   document in corpus order; memory ~24 bytes per document that has a near-duplicate.
5. **results** (per shard): ``results/<shard>.parquet`` keyed by row_id, naming each clustered
   document's kept one (``dedup_index.write_results``); ``clusters.json`` (largest clusters, with
   examples) and ``params.json`` (parameters, S-curve, counts) for the report.

Columns added: ``cluster_id`` (Int64) identifies the cluster by its kept document's ``row_id`` (the row
identity, unique in the run; a document alone is its own cluster), or by ``-1 - position`` when the
kept document is in a saved index; ``cluster_size``; ``duplicate_of`` (the kept document's user id,
for people: ids may repeat) and ``duplicate_of_row`` (its row_id; null when it is in the index).

With ``index``, the documents of a saved index come first in the order, so a new document that
matches one is dropped as its near-duplicate; ``index_out`` saves this run's kept documents (plus the
given index's parts) as an index for the next batch.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from corpus import frames
from corpus.operators import GlobalFilterOperator, StageContext, StageView, Verdict
from corpus.schema import ID, ROW_ID
from corpus.stages.dedup_index import (
    KEPT_COLUMNS,
    Layout,
    ResultLookup,
    check_partitions,
    components,
    load_npy,
    mix64,
    n_partitions,
    partition_of,
    read_partition,
    reduce_edges,
    save_identity,
    save_npy,
    suffixed,
    take_by_global,
    write_all_results,
    write_json,
    write_partitioned,
)
from corpus.stages.dedup_text import (
    MASK32,
    Permutations,
    Shingles,
    TextColumn,
    band_keys,
    doc_shingles,
    ranges,
    signatures,
)
from corpus.stages.lsh_params import (
    DEFAULT_FN_WEIGHT,
    DEFAULT_FP_WEIGHT,
    check_params,
    explain,
    optimal_bands_rows,
    s_curve,
)
from corpus.stages.normalise import Level, Normalisation
from corpus.writers import link_or_copy, write_parquet

__all__ = ["MinHashDedup", "explain", "s_curve"]

INDEX_FORMAT = "corpusforge-minhash-index"
_BATCH_BYTES = 8 << 20  # text per numpy batch: temporaries are ~10x this
_PAIR_BATCH = 20_000  # pairs verified at once (their shingle sets are in memory together)


@dataclass(frozen=True)
class _Spec:
    """What the workers need to sign and bucket documents (picklable)."""

    num_perm: int
    seed: int
    scheme: str
    ngram: int
    unit: str
    shingle_hash: str
    norm: Normalisation
    bands: int
    rows: int
    verify: bool

    def compat(self) -> dict:
        """The parameters a saved index must share with a run that uses it."""
        return {"num_perm": self.num_perm, "seed": self.seed, "scheme": self.scheme, "ngram": self.ngram,
                "unit": self.unit, "shingle_hash": self.shingle_hash, "normalise": self.norm.level}


# ---------------------------------------------------------------- 1. sign


def _sign_batch(spec: _Spec, perms: Permutations, text: TextColumn) -> tuple[np.ndarray, Shingles]:
    sh = doc_shingles(text, spec.norm, spec.ngram, spec.unit, spec.shingle_hash)  # type: ignore[arg-type]
    return signatures(sh, perms), sh  # repeats in a document do not change its minimum


def _band_records(sig: np.ndarray, nonempty: np.ndarray, start: int, spec: _Spec) -> np.ndarray:
    """(band key, global document) records of the documents that have shingles."""
    rows = np.flatnonzero(nonempty)
    keys = band_keys(sig[rows], spec.bands, spec.rows)
    docs = np.repeat((rows + start).astype(np.uint64), spec.bands)
    return np.stack([keys.ravel(), docs], axis=1)


def _write_bands(workdir: Path, seg: int, recs: np.ndarray, n_parts: int) -> None:
    part = partition_of(recs[:, 0], n_parts)
    write_partitioned(workdir / "bands" / f"{seg:05d}", recs, part, n_parts)


@dataclass(frozen=True)
class SignJob:
    """Step 1 for one shard (or, with ``index_part``, the band keys of one part of a saved index)."""

    seg: int  # its segment number in the layout
    path: Path  # the shard, or the index part's stem
    start: int  # the global number of its first document
    spec: _Spec
    workdir: Path
    n_parts: int


def _sign_shard(job: SignJob) -> dict:
    spec, workdir, seg = job.spec, job.workdir, job.seg
    perms = Permutations.make(spec.num_perm, spec.seed, spec.scheme)  # type: ignore[arg-type]
    sigs, sets, lens, ids, row_ids = [], [], [], [], []
    # batches of about _BATCH_BYTES of text: the numpy temporaries are a multiple of the batch
    for table in frames.batches(job.path, ["text", ID, ROW_ID], batch_bytes=_BATCH_BYTES):
        ids.append(pl.Series(table.column(ID), dtype=pl.String))
        row_ids.append(table.column(ROW_ID).to_numpy())
        sig, sh = _sign_batch(spec, perms, table.column("text").combine_chunks())
        sigs.append(sig)
        lens.append(np.diff(sh.offsets))
        if spec.verify:
            sets.append(sh.hashes)
    sig = np.concatenate(sigs) if sigs else np.zeros((0, spec.num_perm), np.uint32)
    n_sh = np.concatenate(lens) if lens else np.zeros(0, np.int64)
    save_npy(workdir / "sig" / f"{seg:05d}.npy", sig)
    if spec.verify:
        off = np.zeros(len(n_sh) + 1, np.int64)
        np.cumsum(n_sh, out=off[1:])
        save_npy(workdir / "sh" / f"{seg:05d}.npy", np.concatenate(sets) if sets else np.zeros(0, np.uint32))
        save_npy(workdir / "sh" / f"{seg:05d}.off.npy", off)
    _write_bands(workdir, seg, _band_records(sig, n_sh > 0, job.start, spec), job.n_parts)
    save_identity(workdir, seg, ids, row_ids)
    return {"rows": len(sig), "shingles": int(n_sh.sum()), "empty": int((n_sh == 0).sum())}


def _band_index_part(job: SignJob) -> dict:
    """Band keys of a saved index part, from its stored signatures (nothing is re-read or re-hashed)."""
    sig = load_npy(suffixed(job.path, ".sig.npy"), mmap=True)
    recs = []
    for a in range(0, len(sig), 100_000):
        chunk = np.asarray(sig[a : a + 100_000])
        recs.append(_band_records(chunk, ~(chunk == MASK32).all(axis=1), job.start + a, job.spec))
    _write_bands(job.workdir, job.seg, np.concatenate(recs) if recs else np.zeros((0, 2), np.uint64), job.n_parts)
    save_identity(job.workdir, job.seg, [frames.column(suffixed(job.path, ".ids.parquet"), ID)], None)
    return {"rows": len(sig)}


# ---------------------------------------------------------------- 2. bucket


def bucket_pairs(key: np.ndarray, doc: np.ndarray, all_pairs_max: int) -> np.ndarray:
    """Candidate pairs (u < v) from (key, doc) records sorted by key then doc."""
    n = len(key)
    if n < 2:
        return np.zeros((0, 2), np.int64)
    new = np.ones(n, bool)
    new[1:] = key[1:] != key[:-1]
    starts = np.flatnonzero(new)
    sizes = np.diff(np.append(starts, n))
    small = (sizes >= 2) & (sizes <= all_pairs_max)
    large = sizes > all_pairs_max
    left, right = [], []
    # small buckets: every pair
    pos = ranges(starts[small], sizes[small])
    after = np.repeat(starts[small] + sizes[small], sizes[small]) - pos - 1
    left.append(np.repeat(pos, after))
    right.append(ranges(pos + 1, after))
    # large buckets (mostly copies of one text): each member to the first and to its predecessor
    st, sz = starts[large], sizes[large]
    members = ranges(st + 1, sz - 1)
    left += [np.repeat(st, sz - 1), members - 1]
    right += [members, members]
    lv, rv = doc[np.concatenate(left)], doc[np.concatenate(right)]
    keep = lv != rv
    return np.stack([lv[keep], rv[keep]], axis=1).astype(np.int64)


def _unique_pairs(pairs: np.ndarray) -> np.ndarray:
    if len(pairs) == 0:
        return pairs.reshape(0, 2).astype(np.int64)
    code = np.unique((pairs[:, 0].astype(np.uint64) << np.uint64(32)) | pairs[:, 1].astype(np.uint64))
    return np.stack([(code >> np.uint64(32)).astype(np.int64), (code & np.uint64(MASK32)).astype(np.int64)], axis=1)


@dataclass(frozen=True)
class BucketJob:
    """Step 2 for one band partition."""

    stems: tuple[Path, ...]  # every segment's partitioned band file
    part: int
    workdir: Path
    n_pair_parts: int
    index_docs: int  # documents of the saved index (numbered first)
    all_pairs_max: int


def _bucket_partition(job: BucketJob) -> dict:
    recs = read_partition(job.stems, job.part, 2, np.uint64)
    order = np.lexsort((recs[:, 1], recs[:, 0]))
    pairs = bucket_pairs(recs[order, 0], recs[order, 1].astype(np.int64), job.all_pairs_max)
    pairs = _unique_pairs(pairs[pairs[:, 1] >= job.index_docs])  # index-index pairs were settled before
    n_q = job.n_pair_parts
    q = partition_of(mix64((pairs[:, 0] << 32) | pairs[:, 1]), n_q)
    write_partitioned(job.workdir / "pairs" / f"{job.part:05d}", pairs, q, n_q)
    return {"records": len(recs), "pairs": len(pairs)}


# ---------------------------------------------------------------- 3. verify


@dataclass(frozen=True)
class _Store:
    """Shingle sets and signatures of every segment, memory-mapped, by global document number."""

    starts: np.ndarray  # global start of each segment (+ total)
    sh_stems: list[Path | None]  # per segment: stem of sets (.npy + .off.npy), None when not stored
    sig_paths: list[Path]

    def locate(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seg = np.searchsorted(self.starts, g, side="right") - 1
        return seg, g - self.starts[seg]

    def sets(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(flat sorted sets, offsets, has_set) of sorted unique documents."""
        seg, row = self.locate(docs)
        flats, lens = [], []
        has = np.zeros(len(docs), bool)
        for s in np.unique(seg):
            sel = np.flatnonzero(seg == s)
            stem = self.sh_stems[int(s)]
            if stem is None:
                lens.append(np.zeros(len(sel), np.int64))
                continue
            off = load_npy(suffixed(stem, ".off.npy"), mmap=True)
            flat = load_npy(suffixed(stem, ".npy"), mmap=True)
            r = row[sel]
            a, n = np.asarray(off[r]), np.asarray(off[r + 1] - off[r])
            flats.append(np.asarray(flat[ranges(a, n)]))
            lens.append(n)
            has[sel] = True
        n_all = np.concatenate(lens) if lens else np.zeros(0, np.int64)
        offsets = np.zeros(len(docs) + 1, np.int64)
        np.cumsum(n_all, out=offsets[1:])
        raw = Shingles(np.concatenate(flats) if flats else np.zeros(0, np.uint32), offsets)
        sets = raw.unique_sorted()  # stored as shingled; sorted only for the documents compared
        return sets.hashes, sets.offsets, has

    def sigs(self, docs: np.ndarray) -> np.ndarray:
        """Signatures of documents, in the given order."""
        seg, row = self.locate(docs)
        out = None
        for s in np.unique(seg):
            sel = np.flatnonzero(seg == s)
            part = np.asarray(load_npy(self.sig_paths[int(s)], mmap=True)[row[sel]])
            if out is None:
                out = np.empty((len(docs), part.shape[1]), part.dtype)
            out[sel] = part
        return out if out is not None else np.zeros((0, 0), np.uint32)


def jaccard(pairs: np.ndarray, store: _Store) -> np.ndarray:
    """Exact Jaccard of the pairs' shingle sets, vectorised: the sets of all pairs are laid out as
    sorted (pair, shingle) keys and intersected with one searchsorted. Pairs with a side whose sets
    were not kept (an index saved without them) get the signature estimate instead."""
    docs = np.unique(pairs.ravel())
    flat, off, has = store.sets(docs)
    iu, iv = np.searchsorted(docs, pairs[:, 0]), np.searchsorted(docs, pairs[:, 1])
    j = Shingles(flat, off).jaccard(iu, iv)
    estimated = ~(has[iu] & has[iv])
    if estimated.any():
        e = pairs[estimated]
        j[estimated] = (store.sigs(e[:, 0]) == store.sigs(e[:, 1])).mean(axis=1)
    return j


@dataclass(frozen=True)
class VerifyJob:
    """Step 3 for one pair partition."""

    stems: tuple[Path, ...]  # every band partition's pair file
    part: int
    workdir: Path
    store: _Store | None  # None: no verification, every candidate is an edge
    threshold: float


def _verify_partition(job: VerifyJob) -> dict:
    store, threshold = job.store, job.threshold
    pairs = _unique_pairs(read_partition(job.stems, job.part, 2, np.int64))
    hist = np.zeros(20, np.int64)
    if store is not None and len(pairs):
        ok = np.zeros(len(pairs), bool)
        for a in range(0, len(pairs), _PAIR_BATCH):
            j = jaccard(pairs[a : a + _PAIR_BATCH], store)
            ok[a : a + _PAIR_BATCH] = j >= threshold - 1e-12
            hist += np.histogram(j, bins=20, range=(0.0, 1.0))[0]
        edges = pairs[ok]
    else:
        edges = pairs
    save_npy(job.workdir / "edges" / f"{job.part:05d}.npy", reduce_edges(edges[:, 0], edges[:, 1]))
    return {"candidates": len(pairs), "edges": len(edges), "jaccard_hist": hist.tolist()}


# ---------------------------------------------------------------- 5. outputs


@dataclass(frozen=True)
class IndexPartJob:
    """One part of index_out: a shard's kept documents."""

    workdir: Path
    shard: Path
    seg: int
    removed_rows: np.ndarray  # rows of the shard removed as near-duplicates
    out_stem: Path
    with_sets: bool


def _write_index_part(job: IndexPartJob) -> int:
    """One index part: the signatures, ids and shingle sets of a shard's kept documents."""
    workdir, seg, out_stem = job.workdir, job.seg, job.out_stem
    sig = load_npy(workdir / "sig" / f"{seg:05d}.npy", mmap=True)
    keep = np.ones(len(sig), bool)
    keep[job.removed_rows] = False
    rows = np.flatnonzero(keep)
    save_npy(suffixed(out_stem, ".sig.npy"), np.asarray(sig[rows]))
    ids = frames.column(job.shard, ID).gather(rows).cast(pl.String)
    write_parquet(pl.DataFrame({ID: ids}), suffixed(out_stem, ".ids.parquet"))
    if job.with_sets:
        off = load_npy(workdir / "sh" / f"{seg:05d}.off.npy")
        flat = load_npy(workdir / "sh" / f"{seg:05d}.npy", mmap=True)
        n = off[rows + 1] - off[rows]
        new_off = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(n, out=new_off[1:])
        save_npy(suffixed(out_stem, ".sh.npy"), np.asarray(flat[ranges(off[rows], n)]))
        save_npy(suffixed(out_stem, ".sh.off.npy"), new_off)
    return len(rows)


def read_index(path: Path) -> dict:
    meta_path = Path(path) / "index.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"minhash index {path}: no index.json (was it written with index_out?)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != INDEX_FORMAT:
        raise ValueError(f"{meta_path} is not a {INDEX_FORMAT} file")
    return meta


@dataclass
class MinHashDedup(GlobalFilterOperator):
    """Drop documents whose shingle set has Jaccard >= threshold with an earlier document's
    (transitively: clusters are connected components); every document gets cluster_id/size."""

    name = "minhash_dedup"
    needs = {"id": pl.String, "text": pl.String, "row_id": pl.Int64}
    adds = {"cluster_id": pl.Int64, "cluster_size": pl.Int64, "duplicate_of": pl.String, "duplicate_of_row": pl.Int64}
    version = "3"  # 3: normalisation levels (fuzzy adds NFKC)

    threshold: float = 0.8  # target Jaccard similarity of shingle sets
    num_perm: int = 128  # >= 2; at most 1024 (lsh_params.MAX_OPTIMISED_NUM_PERM) unless bands and rows are given
    ngram: int = 5  # shingle length, in words (unit: word) or characters (unit: char)
    unit: Literal["word", "char"] = "word"
    fp_weight: float = DEFAULT_FP_WEIGHT  # datasketch optimiser weights for bands x rows
    fn_weight: float = DEFAULT_FN_WEIGHT
    bands: int = 0  # 0: derived from threshold, num_perm and the weights
    rows: int = 0
    verify: bool = True  # exact Jaccard of candidates (drops LSH false positives)
    seed: int = 1
    scheme: Literal["affine32", "legacy"] = "affine32"  # datasketch's permutation scheme (>= 2.0 / < 2.0)
    shingle_hash: Literal["fast", "sha1"] = "fast"  # sha1: datasketch's default hash, far slower
    normalise: Level = "fuzzy"  # texts are shingled at this level (stages/normalise.py)
    bucket_all_pairs: int = 32  # buckets up to this size are paired exhaustively
    partitions: int = 0  # band / pair partitions (0: sized to ~64 MB each, at least one per worker)
    index: str | None = None  # a saved index to deduplicate against (its documents win)
    index_out: str | None = None  # save this run's kept documents (+ the given index) as an index

    def __post_init__(self) -> None:
        if self.ngram < 1 or self.bucket_all_pairs < 2:
            raise ValueError("ngram must be >= 1 and bucket_all_pairs >= 2")
        check_params(self.threshold, self.num_perm, self.bands, self.rows, self.fp_weight, self.fn_weight)
        if not 0 <= self.seed < 2**32:  # numpy's seed range: -1 failed in the fit
            raise ValueError(f"seed must lie in [0, 2**32), got {self.seed}")
        check_partitions(self.partitions)
        Normalisation(self.normalise)

    # ------------------------------------------------------------ parameters

    def band_rows(self) -> tuple[int, int]:
        if self.bands and self.rows:
            return self.bands, self.rows
        return optimal_bands_rows(self.threshold, self.num_perm, self.fp_weight, self.fn_weight)

    def _spec(self) -> _Spec:
        b, r = self.band_rows()
        return _Spec(self.num_perm, self.seed, self.scheme, self.ngram, self.unit, self.shingle_hash,
                     Normalisation(self.normalise), b, r, self.verify)

    def config_key(self) -> str:
        # A run against an index must redo its fit when the index grows, though the path is the same.
        key = super().config_key()
        if self.index:
            meta = Path(self.index) / "index.json"
            fingerprint = hashlib.sha256(meta.read_bytes()).hexdigest() if meta.exists() else "missing"
            key = hashlib.sha256(f"{key}|{fingerprint}".encode()).hexdigest()
        return key

    def sign(self, text: TextColumn) -> tuple[np.ndarray, Shingles]:
        """Signatures and shingles of a batch of texts, as fit signs a shard's (for estimates of what
        this operator would do, such as the profiler's near-duplicate rate)."""
        spec = self._spec()
        return _sign_batch(spec, Permutations.make(spec.num_perm, spec.seed, spec.scheme), text)  # type: ignore[arg-type]

    def explain(self) -> str:
        b, r = self.band_rows()
        return explain(self.threshold, self.num_perm, self.fp_weight, self.fn_weight, b, r)

    # ------------------------------------------------------------ fit

    def _index_parts(self, spec: _Spec) -> list[tuple[Path, int, bool]]:
        if not self.index:
            return []
        meta = read_index(Path(self.index))
        diff = {k: (v, meta["params"].get(k)) for k, v in spec.compat().items() if meta["params"].get(k) != v}
        if diff:
            detail = ", ".join(f"{k}: run {a!r} vs index {b!r}" for k, (a, b) in diff.items())
            raise ValueError(f"minhash index {self.index} was built with other parameters ({detail})")
        return [(Path(self.index) / p["name"], int(p["docs"]), bool(p["sets"])) for p in meta["parts"]]

    def fit(self, ctx: StageContext) -> None:
        work, spec = ctx.artifacts, self._spec()
        timings: dict[str, float] = {}
        t = time.perf_counter()
        parts = self._index_parts(spec)
        layout = Layout.of([(p, n) for p, n, _ in parts], ctx.shards)
        n_idx = len(parts)
        if layout.total >= 1 << 32:
            raise ValueError(f"{layout.total} documents: more than 2**32 per run is not supported")
        n_parts = n_partitions(layout.total * spec.bands, 16, ctx.workers, fixed=self.partitions)

        # 1. sign
        jobs = [SignJob(k, s.path, s.start, spec, work, n_parts) for k, s in enumerate(layout.segments)]
        infos = ctx.pool_map(_sign_shard, [j for j, s in zip(jobs, layout.segments, strict=True) if s.kind == "shard"])
        ctx.pool_map(_band_index_part, [j for j, s in zip(jobs, layout.segments, strict=True) if s.kind == "index"])
        timings["sign"] = time.perf_counter() - t

        # 2. bucket
        t = time.perf_counter()
        band_stems = tuple(work / "bands" / f"{k:05d}" for k in range(len(layout.segments)))
        bucket = ctx.pool_map(_bucket_partition, [BucketJob(band_stems, p, work, n_parts, layout.index_docs,
                                                            self.bucket_all_pairs) for p in range(n_parts)])
        shutil.rmtree(work / "bands", ignore_errors=True)
        timings["bucket"] = time.perf_counter() - t

        # 3. verify
        t = time.perf_counter()
        store = None
        if self.verify:
            sh_stems: list[Path | None] = [suffixed(p, ".sh") if sets else None for p, _, sets in parts]
            sh_stems += [work / "sh" / f"{k:05d}" for k in range(n_idx, len(layout.segments))]
            sig_paths = [suffixed(p, ".sig.npy") for p, _, _ in parts]
            sig_paths += [work / "sig" / f"{k:05d}.npy" for k in range(n_idx, len(layout.segments))]
            store = _Store(layout.starts, sh_stems, sig_paths)
        pair_stems = tuple(work / "pairs" / f"{p:05d}" for p in range(n_parts))
        checks = ctx.pool_map(_verify_partition, [VerifyJob(pair_stems, q, work, store, self.threshold)
                                                  for q in range(n_parts)])
        shutil.rmtree(work / "pairs", ignore_errors=True)
        timings["verify"] = time.perf_counter() - t

        # 4. merge
        t = time.perf_counter()
        links = [load_npy(work / "edges" / f"{q:05d}.npy") for q in range(n_parts)]
        link = np.concatenate(links) if links else np.zeros((0, 2), np.int64)
        nodes, root = components(link[:, 0], link[:, 1])
        shutil.rmtree(work / "edges", ignore_errors=True)
        roots, sizes = np.unique(root, return_counts=True)
        size = sizes[np.searchsorted(roots, root)]
        timings["merge"] = time.perf_counter() - t

        # 5. results
        t = time.perf_counter()
        corpus = nodes >= layout.index_docs
        nodes, root, size = nodes[corpus], root[corpus], size[corpus]
        members = np.stack([nodes, root, size.astype(np.int64)], axis=1)
        seg, _ = layout.locate(nodes)
        write_partitioned(work / "members" / "all", members, seg, len(layout.segments))
        write_all_results(ctx.pool_map, work, layout, [work / "members" / "all"], 3, ("cluster_size",))
        shutil.rmtree(work / "members", ignore_errors=True)
        removed = nodes != root
        self._write_clusters(work, layout, nodes, root, size, store, ctx)
        index_docs = self._write_index(ctx, layout, parts, nodes[removed], spec) if self.index_out else None
        timings["results"] = time.perf_counter() - t

        b, r, curve = s_curve(self.threshold, self.num_perm, self.fp_weight, self.fn_weight, spec.bands, spec.rows)
        write_json(work / "params.json", {
            "operator": self.name, "params": self.params(), "bands": b, "rows": r, "s_curve": curve,
            "docs": layout.total - layout.index_docs, "index_docs": layout.index_docs,
            "shingles": sum(i["shingles"] for i in infos), "docs_without_shingles": sum(i["empty"] for i in infos),
            "partitions": n_parts, "band_records": sum(x["records"] for x in bucket),
            "candidate_pairs": sum(c["candidates"] for c in checks),
            "verified_pairs": sum(c["edges"] for c in checks),
            "candidate_jaccard_hist": np.sum([c["jaccard_hist"] for c in checks], axis=0).tolist() if checks else [],
            "clusters": int(len(np.unique(root))), "docs_in_clusters": int(len(nodes)),
            "removed": int(removed.sum()), "index_out_docs": index_docs, "seconds": timings,
        })
        for sub in ("sig", "sh"):
            shutil.rmtree(work / sub, ignore_errors=True)

    def _write_clusters(self, work: Path, layout: Layout, nodes: np.ndarray, root: np.ndarray, size: np.ndarray,
                        store: _Store | None, ctx: StageContext, top: int = 20, examples: int = 5) -> None:
        """clusters.json: the largest clusters, with the kept document and a few removed ones (each with
        its user id, row_id and where it was read)."""
        roots, first = np.unique(root, return_index=True)
        order = np.lexsort((roots, -size[first]))[:top]
        picked = []
        for k in order:
            members = nodes[root == roots[k]][: examples + 1]
            picked.append((int(roots[k]), int(size[first[k]]), np.union1d(members, [roots[k]])[: examples + 1]))
        want = np.concatenate([m for _, _, m in picked]) if picked else np.zeros(0, np.int64)
        docs = take_by_global(layout, want, ["id", "row_id", "source", "src_file", "src_row", "text"], ctx.pool_map)
        sig_paths = [suffixed(s.path, ".sig.npy") if s.kind == "index" else work / "sig" / f"{k:05d}.npy"
                     for k, s in enumerate(layout.segments)]
        sigs = _Store(layout.starts, [], sig_paths)
        out = []
        for r, n, members in picked:
            est = (sigs.sigs(members) == sigs.sigs(np.array([r]))).mean(axis=1) if len(members) else []
            kept = docs.get(r, {})
            out.append({
                "cluster_id": kept.get("row_id") if r >= layout.index_docs else -1 - r, "size": n,
                "kept_id": kept.get("id"), "kept_in_index": r < layout.index_docs,
                "examples": [{"id": d.get("id"), "row_id": d.get("row_id"), "source": d.get("source"),
                              "file": d.get("src_file"), "row": d.get("src_row"), "kept": int(m) == r,
                              "jaccard_estimate": round(float(e), 3),
                              "snippet": (d.get("text") or "")[:300] or None}
                             for m, e in zip(members, est, strict=True) for d in [docs.get(int(m), {})]],
            })
        write_json(work / "clusters.json", {"threshold": self.threshold, "top": out})

    def _write_index(self, ctx: StageContext, layout: Layout, parts: list[tuple[Path, int, bool]],
                     removed: np.ndarray, spec: _Spec) -> int:
        """index_out: the given index's parts (linked) plus this run's kept documents, one part per shard."""
        out = Path(self.index_out)  # type: ignore[arg-type]
        same = self.index is not None and out.resolve() == Path(self.index).resolve()
        meta = read_index(out) if same else {"format": INDEX_FORMAT, "version": 1, "params": spec.compat(),
                                             "parts": []}
        stage = out if same else out.with_name(f".{out.name}.tmp")
        if not same:
            shutil.rmtree(stage, ignore_errors=True)
            stage.mkdir(parents=True)
            for p, n, sets in parts:
                for f in p.parent.glob(f"{p.name}.*"):
                    link_or_copy(f, stage / f.name)
                meta["parts"].append({"name": p.name, "docs": n, "sets": sets})
        seg, row = layout.locate(removed)
        base = len(meta["parts"])
        jobs, names = [], []
        for k, s in enumerate(layout.segments):
            if s.kind != "shard":
                continue
            name = f"part-{base + len(names):05d}"
            names.append(name)
            jobs.append(IndexPartJob(ctx.artifacts, s.path, k, row[seg == k], stage / name, spec.verify))
        counts = ctx.pool_map(_write_index_part, jobs)
        meta["parts"] += [{"name": n, "docs": c, "sets": spec.verify} for n, c in zip(names, counts, strict=True)]
        write_json(stage / "index.json", meta)
        if not same:
            shutil.rmtree(out, ignore_errors=True)
            stage.rename(out)
        return sum(p["docs"] for p in meta["parts"])

    # ------------------------------------------------------------ apply

    @classmethod
    def figures(cls, artifacts: Path) -> dict[str, float]:
        try:
            params = json.loads((artifacts / "params.json").read_text())
        except (OSError, ValueError):
            return {}
        return {k: params[k] for k in ("docs", "clusters", "removed", "candidate_pairs", "verified_pairs")
                if isinstance(params.get(k), int | float)}

    report_title = "Near-duplicate clusters"

    @classmethod
    def report(cls, stages: list[StageView]) -> object:
        from corpus.stages.minhash_report import render

        return render(stages)

    def load(self, artifacts: Path) -> None:
        self._lookup = ResultLookup(artifacts, {**KEPT_COLUMNS, "cluster_size": pl.Int64()})

    def filter(self, df: pl.DataFrame) -> Verdict:
        res = self._lookup.join(df)
        row_id, kept_row = df["row_id"], res["kept_row"]
        clustered = res["cluster_size"].is_not_null()
        copy = clustered & (kept_row != row_id).fill_null(True)  # kept_row null: the kept one is in the index
        cols = pl.select(
            pl.coalesce(kept_row, -1 - res["kept_index"], row_id).alias("cluster_id"),
            res["cluster_size"].fill_null(1).alias("cluster_size"),
            pl.when(copy).then(res["kept_id"]).alias("duplicate_of"),
            pl.when(copy).then(kept_row).alias("duplicate_of_row"),
        )
        return Verdict(keep=~copy, reason="near_duplicate", scores={c: cols[c] for c in cols.columns})
