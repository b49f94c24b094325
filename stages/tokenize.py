"""Tokenize a corpus into Megatron `.bin/.idx` shard sets, one per split (train / validation / test).

The unit of work is a *piece*: a row range of one Parquet shard holding about ``piece_bytes`` of text
(planned from the Parquet metadata, so one big shard still feeds every worker). In a spawn process
pool each worker reads its piece in record batches, assigns every document to a split, encodes with
the tokenizer's own ``encode_batch_fast``, appends the end-of-document id and streams the tokens into
its own shard set per split; the parts are then merged, in corpus order, into
``<out>/<split>.bin/.idx/.json``, so the result does not depend on the piece size or the number of
workers. A rerun skips pieces whose marker matches (keyed by the tokenizer hash, the parameters, the
shard's sha256 and the row range) and whose part sets still match their sidecars' hashes, and a
finished run with the same key and intact outputs does nothing. The output folder is locked
(``corpus/lock.py``) for the whole run, as ``corpus run`` locks its own.

**Splits** are decided per *group*, not per document, so exact and near duplicates never straddle
splits: a document's group is its ``group_column`` value (near-dup ``cluster_id``: the row_id of its
cluster's kept document, unique by construction, so documents that merely share a user id never
share a group) when present, else the digest of its text at normalisation level ``fuzzy`` (the
coarsest level, so a document and any copy exact dedup would find, at whatever level, hash
together). The group key, salted with the seed, hashes to a point in [0, 1) that falls into one
split's fraction. This relies on exact duplicates sharing a near-dup
cluster when clusters are present (identical texts have identical MinHash signatures, so they do),
which keeps the assignment a per-document decision: no global pass, any number of workers.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from corpus import frames
from corpus.integrity import CorruptFileError
from corpus.lock import RunLock
from corpus.manifest import file_sha256, read_manifest, require_intact
from corpus.operators import PoolMap, SinkOperator, StageContext
from corpus.owner import PUBLISHED, read_listing, require_folder
from corpus.shards import IndexedWriter, check_content, dtype_for_vocab, merge
from corpus.stages.dedup_text import digests128
from corpus.stages.normalise import Normalisation
from corpus.stages.tokenizer import (
    ROLE_TOKENS,
    eod_id,
    load_tokenizer,
    special_token_ids,
    tokenizer_file,
    tokenizer_hash,
)
from corpus.work import read_marker, resolve_workers, write_marker
from corpus.writers import write_bytes_atomic

SPLITS = ("train", "validation", "test")
VERSION = "3"  # 3: split groups by text at normalisation level fuzzy; older sets are rewritten, not resumed
LOSS_MASKS = (None, "assistant")


# ---------------------------------------------------------------- splits


# Coarser than every level exact dedup can use, so copies it would find never straddle splits.
GROUPING = Normalisation("fuzzy")


def group_keys(texts: pl.Series | Sequence[str | None], groups: Sequence[Any] | None = None) -> list[bytes]:
    """The split-grouping key of each document: ``g:<group value>`` when non-null (a cluster_id is a row
    identity, never a user id, which may repeat), else ``t:<digest of the text at level fuzzy>``."""
    s = texts if isinstance(texts, pl.Series) else pl.Series(texts, dtype=pl.String)
    raw = digests128(GROUPING.apply(s)).tobytes()
    keys = [b"t:" + raw[16 * i : 16 * i + 16] for i in range(len(s))]
    if groups is not None:
        keys = [k if g is None else b"g:" + str(g).encode() for k, g in zip(keys, groups, strict=True)]
    return keys


def assign_splits(keys: Sequence[bytes], fractions: Sequence[float], seed: int) -> np.ndarray:
    """Split index (0..len(fractions)-1) of each key: a seeded hash of the key mapped into the cumulative
    fractions. Depends only on (key, seed, fractions): not on order, shard or worker count."""
    salt = struct.pack("<Q", seed % (1 << 64)).ljust(16, b"\0")
    u = np.fromiter((int.from_bytes(hashlib.blake2b(k, digest_size=8, salt=salt).digest(), "little")
                     for k in keys), dtype=np.uint64, count=len(keys))
    points = u.astype(np.float64) / 2.0**64
    bounds = np.cumsum(np.asarray(fractions, dtype=np.float64) / float(sum(fractions)))
    return np.minimum(np.searchsorted(bounds, points, side="right"), len(fractions) - 1).astype(np.int8)


def _check_split(split: Sequence[float]) -> tuple[float, ...]:
    fr = tuple(float(x) for x in split)
    if len(fr) != len(SPLITS) or any(x < 0 for x in fr) or sum(fr) <= 0:
        raise ValueError(f"split must be {len(SPLITS)} non-negative fractions ({'/'.join(SPLITS)}), got {split}")
    return fr


# ---------------------------------------------------------------- one shard (worker side)


@dataclass(frozen=True)
class PieceJob:
    """One unit of work: rows [start, stop) of one Parquet shard."""

    shard: str
    name: str
    start: int
    stop: int
    parts: str
    tokenizer: str  # path to tokenizer.json
    key: str
    text_column: str
    group_column: str | None
    split: tuple[float, ...]
    seed: int
    append_eod: bool
    loss_mask: str | None
    batch_rows: int
    meta: dict = field(default_factory=dict)  # sidecar fields shared by every part
    threads: int = 0  # tokenizer threads in a worker process (0: leave the default)


_TOKENIZERS: dict[tuple[str, str], Any] = {}


def _tokenizer(path: str, thash: str, threads: int) -> Any:
    """The tokenizer at ``path`` with sha256 ``thash``, loaded once per process (by content: a tokenizer
    retrained at the same path is another one)."""
    if (path, thash) not in _TOKENIZERS:
        if threads:
            # Rayon sizes its pool on first use: give each worker process its share of the cores.
            os.environ.setdefault("RAYON_NUM_THREADS", str(threads))
        _TOKENIZERS[(path, thash)] = load_tokenizer(Path(path))
    return _TOKENIZERS[(path, thash)]


def assistant_mask(flat: np.ndarray, lengths: np.ndarray, assistant: int, end: int) -> np.ndarray:
    """1 for tokens after an assistant marker up to and including the next end marker, per document:
    the assistant's replies (and their end marker) are the targets, prompts and markers are not."""
    idx = np.arange(flat.size)

    def last_before(marker: int) -> np.ndarray:  # position of the latest `marker` strictly before each token
        last = np.maximum.accumulate(np.where(flat == marker, idx, -1)) if flat.size else idx
        return np.concatenate([[-1], last[:-1]]) if flat.size else idx

    doc_start = np.repeat(np.cumsum(lengths) - lengths, lengths)
    la, le = last_before(assistant), last_before(end)
    return ((la >= doc_start) & (la > le)).astype(np.uint8)


def encode(tok: Any, texts: list[str], eod: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(flat token ids, lengths) of a batch, with the EOD id appended to each document when given."""
    ids = [e.ids for e in tok.encode_batch_fast(texts, add_special_tokens=False)]
    if eod is not None:
        for x in ids:
            x.append(eod)
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
    return flat, lengths


def _text_bytes(md: pq.FileMetaData, text_column: str, shard: Path) -> int:
    col = next((j for j in range(md.num_columns) if md.schema.column(j).path == text_column), None)
    if col is None:
        raise ValueError(f"{shard} has no column {text_column!r}")
    return sum(md.row_group(g).column(col).total_uncompressed_size for g in range(md.num_row_groups))


def plan_pieces(shard: Path, text_column: str, piece_bytes: int) -> list[tuple[int, int]]:
    """Row ranges of about ``piece_bytes`` of (uncompressed) text each, from the Parquet metadata only:
    the unit of parallel work and of resume, so one big shard still keeps every worker busy."""
    md = pq.ParquetFile(shard).metadata
    n = max(1, min(md.num_rows, round(_text_bytes(md, text_column, shard) / max(piece_bytes, 1))))
    return [(md.num_rows * k // n, md.num_rows * (k + 1) // n) for k in range(n)]


def tokenize_piece(job: PieceJob) -> dict[str, Any]:
    """Tokenize rows [start, stop) of one Parquet shard into ``<parts>/<name>/<split>`` shard sets;
    write its marker last."""
    marker_path = Path(job.parts) / f"{job.name}.done.json"
    marker = read_marker(marker_path, job.key)
    if marker is not None and intact(marker["prefixes"].values()):
        return marker | {"resumed": True}
    tok = _tokenizer(job.tokenizer, job.meta["tokenizer_hash"], job.threads)
    eod = job.meta["eod_id"] if job.append_eod else None
    roles = job.meta.get("special_token_ids", {})
    if job.loss_mask == "assistant" and not all(t in roles for t in ROLE_TOKENS[2:]):
        raise ValueError("loss_mask='assistant' needs the <|assistant|> and <|end|> tokens in the tokenizer")
    group = job.group_column
    out_dir = Path(job.parts) / job.name
    dtype = np.dtype(job.meta["dtype"])
    writers = [IndexedWriter(out_dir / s, dtype, with_mask=job.loss_mask is not None) for s in SPLITS]
    try:
        for batch in frames.batches(job.shard, [job.text_column], optional=[group] if group else [],
                                    rows=(job.start, job.stop), batch_rows=job.batch_rows):
            texts = [t or "" for t in batch.column(0).to_pylist()]
            groups = batch.column(group).to_pylist() if group in batch.column_names else None
            split = assign_splits(group_keys(pl.Series(batch.column(0)), groups), job.split, job.seed)
            flat, lengths = encode(tok, texts, eod)
            mask = (assistant_mask(flat, lengths, roles["<|assistant|>"], roles["<|end|>"])
                    if job.loss_mask == "assistant" else None)
            token_split = np.repeat(split, lengths)
            for s, w in enumerate(writers):
                sel = token_split == s
                w.add_batch(flat[sel], lengths[split == s], None if mask is None else mask[sel])
        prefixes, counts = {}, {}
        for s, w in zip(SPLITS, writers, strict=True):
            side = w.finalize({**job.meta, "split": s, "source_shard": job.name})
            prefixes[s] = str(out_dir / s)
            counts[s] = {"documents": side["documents"], "tokens": side["tokens"]}
    except BaseException:
        for w in writers:
            w.abort()
        raise
    marker = {"key": job.key, "shard": job.name, "prefixes": prefixes, "splits": counts}
    write_marker(marker_path, marker)
    return marker


def intact(prefixes: Iterable[str | Path]) -> bool:
    """Whether every shard set matches its sidecar (sizes and sha256): only then is a marker trusted, so
    a rerun rewrites a damaged set instead of reusing it."""
    try:
        for p in prefixes:
            check_content(p)
    except (ValueError, OSError):
        return False
    return True


# ---------------------------------------------------------------- the whole corpus


GROUP_DEFAULT = "cluster_id"  # near-dup clusters: absent when the pipeline has no near-dup stage


def _group_problem(group_column: str | None, have: Iterable[str]) -> str | None:
    """The problem with a ``group_column`` the documents lack, unless it is the default (then documents are
    grouped by their text)."""
    if group_column is None or group_column == GROUP_DEFAULT or group_column in have:
        return None
    return (f"group_column {group_column!r} is not a column of the documents (they have: "
            f"{', '.join(sorted(have))}); name one, or leave it out to group copies by near-dup cluster_id or text")


def _in_process(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    return [fn(x) for x in items]


def tokenize_shards(shards: Sequence[Path], tokenizer: Path, out: Path, *, workers: int = 2,
                    split: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
                    group_column: str | None = "cluster_id", text_column: str = "text", append_eod: bool = True,
                    loss_mask: str | None = None, batch_rows: int = 1024, piece_bytes: int = 16 << 20,
                    corpus_hash: str | None = None,
                    shard_hashes: Sequence[str] | None = None, keep_parts: bool = False,
                    pool_map: PoolMap | None = _in_process) -> dict[str, Any]:
    """Tokenize Parquet ``shards`` into ``out/<split>.{bin,idx,json[,mask]}``; returns the summary that
    is also written to ``out/tokenize.json``. See tokenize_corpus for the parameters."""
    fractions = _check_split(split)
    if loss_mask not in LOSS_MASKS:
        raise ValueError(f"loss_mask must be one of {LOSS_MASKS}, got {loss_mask!r}")
    if not shards:  # said "merge needs at least one shard set"
        raise ValueError("no documents to tokenize: the corpus holds none (every record was dropped or quarantined)")
    out = Path(out)
    problem = _group_problem(group_column, set(pq.read_schema(shards[0]).names))
    if problem:
        raise ValueError(problem)
    tfile = tokenizer_file(Path(tokenizer)).resolve()
    tok = load_tokenizer(tfile)
    thash = tokenizer_hash(tfile)
    vocab = tok.get_vocab_size()
    specials = special_token_ids(tok)
    hashes = list(shard_hashes) if shard_hashes is not None else [file_sha256(Path(s)) for s in shards]
    if corpus_hash is None:  # the manifest's definition, so a corpus folder gets the same value
        corpus_hash = hashlib.sha256("".join(hashes).encode()).hexdigest()
    meta = {"tokenizer": str(tfile.parent if tfile.name == "tokenizer.json" else tfile), "tokenizer_hash": thash,
            "vocab_size": vocab, "special_token_ids": specials,
            "eod_id": eod_id(tok, tfile.parent), "eod_appended": append_eod,
            "dtype": dtype_for_vocab(vocab).name, "corpus_hash": corpus_hash,
            "split_fractions": list(fractions), "split_seed": seed, "group_column": group_column,
            "loss_mask": loss_mask}
    params = {"version": VERSION, "tokenizer_hash": thash, "split": fractions, "seed": seed,
              "group_column": group_column, "text_column": text_column, "append_eod": append_eod,
              "loss_mask": loss_mask}
    run_key = _key({**params, "corpus_hash": corpus_hash, "shards": hashes})
    summary_path = out / "tokenize.json"
    done = read_marker(summary_path, run_key)
    if done is not None and intact(out / s for s in SPLITS):
        return done | {"resumed": True}
    parts = out / "parts"
    plan = corpus_pieces(shards, text_column, piece_bytes)
    if pool_map is None:  # a pool of its own: no more workers than pieces, started once the inputs are known good
        workers = max(1, min(resolve_workers(workers), sum(map(len, plan))))
    # One tokenizer thread per worker process: oversubscribing the cores measured slower.
    threads = max(1, (os.cpu_count() or 1) // max(workers, 1)) if workers > 1 else 0
    jobs = [PieceJob(str(Path(s).resolve()), f"{i:05d}-{k:04d}-{Path(s).stem}", a, b, str(parts), str(tfile),
                     _key({**params, "shard": h, "rows": [a, b]}), text_column, group_column, fractions, seed,
                     append_eod, loss_mask, batch_rows, meta, threads)
            for i, (s, h, pieces) in enumerate(zip(shards, hashes, plan, strict=True))
            for k, (a, b) in enumerate(pieces)]
    if pool_map is None:
        from corpus.executor import worker_pool

        with worker_pool(workers) as own_map:
            markers = own_map(tokenize_piece, jobs)
    else:
        markers = pool_map(tokenize_piece, jobs)
    result: dict[str, Any] = {"key": run_key, "params": params, "corpus_hash": corpus_hash,
                              "tokenizer": meta["tokenizer"], "vocab_size": vocab, "dtype": meta["dtype"],
                              "shards": len(shards), "pieces": len(jobs),
                              "resumed_pieces": sum(1 for m in markers if m.get("resumed")),
                              "splits": {}}
    for s in SPLITS:
        side = merge([m["prefixes"][s] for m in markers], out / s, extra={**meta, "split": s})
        result["splits"][s] = {"prefix": str(out / s), "documents": side["documents"], "tokens": side["tokens"]}
    # The summary is the run's marker: written after every split is in place.
    write_bytes_atomic(summary_path, json.dumps(result, indent=2, sort_keys=True).encode())
    if not keep_parts:
        remove_parts(parts)
    return result


# A piece's name (``<shard no>-<piece no>-<shard stem>``) and what tokenize_piece writes under parts/: its
# marker, and its shard sets (with their writers' temp files, should a piece have died half way).
_PIECE = r"\d{5}-\d{4}-[^/]+"
_PART_FILE = re.compile(rf"(\.tmp-\d+-)?{_PIECE}\.done\.json|"
                        rf"{_PIECE}/(\.tmp-\d+-)?({'|'.join(SPLITS)})\.(bin|idx|json|mask|idx\.len)")


def remove_parts(parts: Path) -> None:
    """Delete the piece files tokenize wrote under ``parts`` (markers and part sets), then the folders they
    leave empty: anything else found there (a user's own files) stays, and so does its folder."""
    if not parts.is_dir() or parts.is_symlink():
        return
    for path in sorted(parts.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        rel = path.relative_to(parts).as_posix()
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            continue
        if path.is_file() and _PART_FILE.fullmatch(rel):
            path.unlink()
        elif path.is_dir() and re.fullmatch(_PIECE, rel) and not any(path.iterdir()):
            path.rmdir()
    if not any(parts.iterdir()):
        parts.rmdir()


def corpus_pieces(shards: Sequence[Path], text_column: str, piece_bytes: int) -> list[list[tuple[int, int]]]:
    """Pieces of every shard: ``piece_bytes`` of text, or smaller for small corpora (~16 pieces in all,
    of 1 MB or more) so the workers share them evenly; the plan depends on the data only, never on the worker count,
    so a rerun with other workers still resumes."""
    total = sum(_text_bytes(pq.ParquetFile(s).metadata, text_column, Path(s)) for s in shards)
    size = min(piece_bytes, max(1 << 20, total // 16))
    return [plan_pieces(Path(s), text_column, size) for s in shards]


def tokenize_corpus(corpus: Path, tokenizer: Path, out: Path, *, workers: int = 2,
                    split: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0,
                    group_column: str | None = "cluster_id", text_column: str = "text", append_eod: bool = True,
                    loss_mask: str | None = None, batch_rows: int = 1024, piece_bytes: int = 16 << 20,
                    keep_parts: bool = False, pool_map: PoolMap | None = _in_process) -> dict[str, Any]:
    """Tokenize a prepared corpus folder (``data/*.parquet`` + ``manifest.json``) into Megatron shards.

    corpus: the corpus folder; its manifest's ``content_hash`` is recorded in every sidecar.
    tokenizer: a tokenizer folder (HF format) or ``tokenizer.json``.
    out: gets ``train`` / ``validation`` / ``test`` ``.bin/.idx/.json`` (+ ``.mask`` with a loss mask)
      and ``tokenize.json`` (the summary, also the resume marker).
    workers: worker processes sharing the cores (sizes each one's tokenizer threads).
    pool_map: runs the pieces (default: here); None: a spawn pool of ``workers`` processes, at most one per
      piece, started once the inputs are checked (``corpus tokenize``).
    split: fractions for train / validation / test (normalised), decided per duplicate group.
    seed: salts the split hash: same seed, same assignment.
    group_column: column holding the duplicate-group id (near-dup ``cluster_id``, a row_id); documents where it
      is absent or null are grouped by normalised-text hash. None: text hash only.
    append_eod: append the end-of-document id to every document (Megatron/nanoGPT convention).
    loss_mask: None, or "assistant" to write a ``.mask`` sidecar marking assistant replies (SFT).
    piece_bytes: text per unit of work (a row range of a shard): the grain of parallelism and resume.
    keep_parts: keep the per-piece sets under ``out/parts`` (deleted after a successful merge otherwise).
    """
    corpus, out = Path(corpus), Path(out)
    require_folder(out)
    with RunLock(out):  # one writer per output folder, as for `corpus run`: a second fails at once
        # Every shard hashed against the manifest first: a damaged shard is named, never tokenized.
        manifest = require_intact(corpus, level="hash")
        shards = [corpus / s["path"] for s in manifest["shards"]]
        return tokenize_shards(shards, tokenizer, out, workers=workers, split=split, seed=seed,
                               group_column=group_column, text_column=text_column, append_eod=append_eod,
                               loss_mask=loss_mask, batch_rows=batch_rows, piece_bytes=piece_bytes,
                               corpus_hash=manifest["content_hash"],
                               shard_hashes=[s["sha256"] for s in manifest["shards"]], keep_parts=keep_parts,
                               pool_map=pool_map)


def _key(obj: dict) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# ---------------------------------------------------------------- as a pipeline operator


@dataclass
class Tokenize(SinkOperator):
    """Tokenize the corpus at this point into Megatron .bin/.idx shard sets per split (published as
    ``OUT/tokens/``); documents pass on unchanged. Same work as ``corpus tokenize`` on a corpus folder."""

    name = "tokenize"
    needs = {"text": pl.String}
    publish = "tokens"

    tokenizer: str = ""
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    seed: int = 0
    group_column: str | None = "cluster_id"
    append_eod: bool = True
    loss_mask: str | None = None

    def __post_init__(self) -> None:
        if not self.tokenizer:
            raise ValueError("tokenize needs 'tokenizer': a tokenizer folder or tokenizer.json")
        try:  # before the run reads anything, not when its last stage starts
            tok = load_tokenizer(Path(self.tokenizer))
        except FileNotFoundError as exc:
            raise ValueError(f"{exc} (train one with `corpus tokenizer train`)") from None
        # Every shard set records the end-of-document id: a tokenizer without one fails here (`corpus check`),
        # not once the run reaches this stage.
        tfile = tokenizer_file(Path(self.tokenizer))
        try:
            eod_id(tok, tfile.parent)
        except ValueError as exc:
            raise ValueError(f"{tfile}: {exc}") from None
        _check_split(self.split)
        if self.loss_mask not in LOSS_MASKS:
            raise ValueError(f"loss_mask must be one of {LOSS_MASKS}")

    def config_key(self) -> str:
        # The same path with another tokenizer.json (retrained) is another tokenizer: tokenize again.
        thash = tokenizer_hash(Path(self.tokenizer))
        return hashlib.sha256(f"{super().config_key()}|{thash}".encode()).hexdigest()

    def column_problems(self, have: dict, earlier: Sequence[Any] = ()) -> list[str]:
        """A group_column the documents lack: a typo would silently group by text instead. The default,
        cluster_id, may be absent (no near-dup stage): documents are then grouped by their text."""
        problem = _group_problem(self.group_column, have)
        return [problem] if problem else []

    def consume(self, ctx: StageContext) -> dict:
        summary = tokenize_shards(ctx.shards, Path(self.tokenizer), ctx.artifacts, workers=ctx.workers,
                                  split=self.split, seed=self.seed, group_column=self.group_column,
                                  append_eod=self.append_eod, loss_mask=self.loss_mask, pool_map=ctx.pool_map)
        return {s: v["tokens"] for s, v in summary["splits"].items()}

    @classmethod
    def published_problems(cls, folder: Path) -> list[tuple[str, str]]:
        """Each split's shard set against its sidecar; files the run did not publish (its listing); and the
        sidecars' split settings against the run's own tokenize stage (manifest.json), so a set written there
        by another command (`corpus tokenize -o OUT/tokens --seed 7`) is not taken for the run's."""
        out = []
        for idx in sorted(folder.glob("*.idx")):  # a shard set per split: PREFIX.bin, .idx and .json
            try:
                check_content(idx.with_suffix(""))
            except ValueError as exc:  # ShardError, naming the file
                out.append((idx.with_suffix(".bin").name, str(exc)))
        try:
            listed = read_listing(folder)
        except ValueError:
            return [*out, (PUBLISHED, "not the list of files the run published (unreadable)")]
        if listed is not None:
            out += [(rel, "not a file the run published here (another command wrote into this folder)")
                    for rel in sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                                      if (p.is_file() or p.is_symlink()) and p.name != PUBLISHED)
                    if rel not in listed]
            out += [(rel, "listed as published by the run, but missing") for rel in sorted(listed)
                    if not (folder / rel).is_file()]
        out += _settings_problems(folder)
        return out

    @classmethod
    def figures(cls, artifacts: Path) -> dict[str, float]:
        path = artifacts / "tokenize.json"
        if not path.exists():
            return {}
        summary = json.loads(path.read_text())
        return {f"{s}_tokens": v["tokens"] for s, v in summary.get("splits", {}).items()}


# A sidecar's record of a setting -> the tokenize stage's parameter it comes from.
_SETTINGS = (("split_seed", "seed"), ("group_column", "group_column"), ("eod_appended", "append_eod"),
             ("loss_mask", "loss_mask"))


def _settings_problems(folder: Path) -> list[tuple[str, str]]:
    """Sidecars whose split settings are not those of the run's tokenize stage (manifest.json's pipeline)."""
    try:
        stage = next(st for st in read_manifest(folder.parent).get("pipeline", [])
                     if str(st.get("stage", "")).partition("-")[2] == Tokenize.name)
    except (OSError, ValueError, CorruptFileError, StopIteration):  # verify names a bad manifest itself
        return []
    found = []
    for s in SPLITS:
        try:
            side = json.loads((folder / f"{s}.json").read_text())
        except (OSError, ValueError):
            continue  # a missing or broken sidecar: check_content named it
        want = {k: stage[p] for k, p in _SETTINGS if p in stage}
        if "split" in stage:
            want["split_fractions"] = list(_check_split(stage["split"]))
        diff = [f"{k} {side.get(k)!r} (the run's tokenize stage: {v!r})" for k, v in want.items() if side.get(k) != v]
        if diff:
            found.append((f"{s}.json", "written with " + ", ".join(diff) + ": not the shard set the run published"))
    return found


__all__ = ["SPLITS", "PieceJob", "Tokenize", "assign_splits", "group_keys", "tokenize_corpus", "tokenize_piece",
           "tokenize_shards"]
