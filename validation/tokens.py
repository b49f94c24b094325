"""Token shard sets (Megatron ``.bin/.idx`` + sidecar, corpus/shards.py) as two tables a token suite runs on.

``files``, one row per shard set (whatever state its files are in; figures that cannot be read are null):

    prefix, dtype, documents (the index's N), sidecar_documents, tokens (the index's lengths summed),
    sidecar_tokens, bin_bytes, index_bin_bytes (tokens x item size: what the index describes),
    idx_bytes, index_idx_bytes (34 + 20 N + 8), pointers_consistent, bin_sha256, sidecar_bin_sha256,
    idx_sha256, sidecar_idx_sha256, vocab_size, eod_id (the sidecar's)

``documents``, one row per document (read through the index; a document beyond the end of a truncated
``.bin`` has null token figures):

    prefix, document (0-based), length, min_token, max_token, last_token, vocab_size, eod_id

An expectation runs on the table that has every column it names (``meta.table`` says which otherwise);
``prefix`` is in both, and expectations naming no column (row counts) run on ``documents``.
``default_entries`` is the suite ``corpus validate suggest`` writes for a token set.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from corpus.manifest import file_sha256
from corpus.schema import ROW_BITS, ROW_ID
from corpus.shards import IndexedDataset, idx_size, paths, read_header
from corpus.validation.engine import Part, Table

DOC_BATCH = 1 << 20  # documents per part (a part's frame is ~40 bytes a document)
FILES_SCHEMA = {"prefix": pl.String(), "dtype": pl.String(), "documents": pl.Int64(), "sidecar_documents": pl.Int64(),
                "tokens": pl.Int64(), "sidecar_tokens": pl.Int64(), "bin_bytes": pl.Int64(),
                "index_bin_bytes": pl.Int64(), "idx_bytes": pl.Int64(), "index_idx_bytes": pl.Int64(),
                "pointers_consistent": pl.Boolean(), "bin_sha256": pl.String(), "sidecar_bin_sha256": pl.String(),
                "idx_sha256": pl.String(), "sidecar_idx_sha256": pl.String(), "vocab_size": pl.Int64(),
                "eod_id": pl.Int64()}
DOCS_SCHEMA = {"prefix": pl.String(), "document": pl.Int64(), "length": pl.Int64(), "min_token": pl.Int64(),
               "max_token": pl.Int64(), "last_token": pl.Int64(), "vocab_size": pl.Int64(), "eod_id": pl.Int64()}


def prefixes(target: str | Path) -> list[Path]:
    """The shard sets of a folder (every ``*.idx``, sorted) or the one set a prefix names."""
    p = Path(target)
    if p.is_dir():
        found = sorted(x.with_suffix("") for x in p.glob("*.idx"))
        if not found:
            raise ValueError(f"{p}: no token shard sets (*.idx) in this folder")
        return found
    files = paths(p)
    if not (files["idx"].exists() or files["bin"].exists()):
        raise FileNotFoundError(f"{p}: no shard set there ({files['idx'].name} / {files['bin'].name} missing)")
    return [p]


def is_token_input(target: str | Path) -> bool:
    p = Path(target)
    if p.is_dir():
        return any(p.glob("*.idx")) and not (p / "manifest.json").exists()
    files = paths(p)
    return files["idx"].exists() or files["bin"].exists()


def tables(target: str | Path) -> list[Table]:
    sets = prefixes(target)
    doc_parts: list[Part] = []
    sizes = [paths(prefix)["bin"].stat().st_size + paths(prefix)["idx"].stat().st_size for prefix in sets]
    for k, prefix in enumerate(sets):
        n = _document_count(prefix)
        for lo in range(0, n, DOC_BATCH):
            hi = min(lo + DOC_BATCH, n)
            doc_parts.append(Part(len(doc_parts), f"{prefix.name} documents {lo:,}-{hi - 1:,}", document_frames,
                                  (str(prefix), k, lo, hi), max(1, sizes[k] * (hi - lo) // n)))  # its share
    file_parts = [Part(k, prefix.name, file_frames, (str(prefix), k), sizes[k]) for k, prefix in enumerate(sets)]
    where = f"the token shard sets of {target}"
    return [Table("documents", dict(DOCS_SCHEMA), tuple(doc_parts), where=f"{where} (documents table)"),
            Table("files", dict(FILES_SCHEMA), tuple(file_parts), where=f"{where} (files table)")]


def _sidecar(prefix: Path) -> dict:
    try:
        meta = json.loads(paths(prefix)["json"].read_text())
        return meta if isinstance(meta, dict) else {}
    except (OSError, ValueError):
        return {}


def _index_ok(prefix: Path) -> tuple[np.dtype, int] | None:
    """(dtype, documents) when the index is whole (its size matches its header), else None."""
    idx = paths(prefix)["idx"]
    try:
        dtype, n, n_docs = read_header(idx)
    except (OSError, ValueError):
        return None
    return (dtype, n) if idx.stat().st_size == idx_size(n) and n_docs == n + 1 else None


def _document_count(prefix: Path) -> int:
    ok = _index_ok(prefix)
    return ok[1] if ok else 0


def file_frames(prefix: str, k: int) -> Iterator[pl.DataFrame]:
    """The files row of one shard set."""
    p = Path(prefix)
    files = paths(p)
    meta = _sidecar(p)
    rec = meta.get("files") if isinstance(meta.get("files"), dict) else {}
    row: dict = dict.fromkeys(FILES_SCHEMA)
    row.update(prefix=p.name, sidecar_documents=meta.get("documents"), sidecar_tokens=meta.get("tokens"),
               vocab_size=meta.get("vocab_size"), eod_id=meta.get("eod_id"),
               sidecar_bin_sha256=(rec.get("bin") or {}).get("sha256"),
               sidecar_idx_sha256=(rec.get("idx") or {}).get("sha256"))
    for ext in ("bin", "idx"):
        if files[ext].exists():
            row[f"{ext}_bytes"] = files[ext].stat().st_size
            row[f"{ext}_sha256"] = file_sha256(files[ext])
    try:
        dtype, n, _ = read_header(files["idx"])
        row.update(dtype=dtype.name, documents=n, index_idx_bytes=idx_size(n))
    except (OSError, ValueError):
        dtype = None
    whole = _index_ok(p)
    if whole is not None and dtype is not None:
        ds = IndexedDataset(p)
        lens = ds.lengths.astype(np.int64)
        expect = np.zeros(len(lens), np.int64)
        if len(lens):
            expect[1:] = np.cumsum(lens[:-1]) * dtype.itemsize
        row.update(tokens=int(lens.sum()), index_bin_bytes=int(lens.sum()) * dtype.itemsize,
                   pointers_consistent=bool(np.array_equal(ds.pointers, expect)))
    yield pl.DataFrame([row], schema=FILES_SCHEMA).with_columns(pl.lit(k << ROW_BITS, pl.Int64).alias(ROW_ID))


def document_frames(prefix: str, k: int, lo: int, hi: int) -> Iterator[pl.DataFrame]:
    """Documents lo..hi-1 of one shard set: lengths from the index, token figures from the .bin."""
    p = Path(prefix)
    meta = _sidecar(p)
    ds = IndexedDataset(p)
    lens = ds.lengths[lo:hi].astype(np.int64)
    starts = ds.pointers[lo:hi] // ds.dtype.itemsize
    ends = starts + lens
    tokens = ds.tokens
    readable = (ends <= len(tokens)) & (lens > 0)
    lo_tok = np.zeros(len(lens), np.int64)
    hi_tok = np.zeros(len(lens), np.int64)
    last = np.zeros(len(lens), np.int64)
    rows = np.flatnonzero(readable)
    if rows.size:
        contiguous = rows.size == 1 or bool(np.all(starts[rows[1:]] == ends[rows[:-1]]))
        if contiguous:  # the usual layout: one reduceat over the span
            s0 = int(starts[rows[0]])
            span = np.asarray(tokens[s0:int(ends[rows[-1]])], dtype=np.int64)
            offs = starts[rows] - s0
            lo_tok[rows] = np.minimum.reduceat(span, offs)
            hi_tok[rows] = np.maximum.reduceat(span, offs)
            last[rows] = span[ends[rows] - s0 - 1]
        else:
            for r in rows:
                t = np.asarray(tokens[int(starts[r]):int(ends[r])], dtype=np.int64)
                lo_tok[r], hi_tok[r], last[r] = t.min(), t.max(), t[-1]
    mask = pl.Series(~readable)
    n = len(lens)
    df = pl.DataFrame({
        "prefix": [p.name] * n, "document": np.arange(lo, hi, dtype=np.int64), "length": lens,
        "min_token": lo_tok, "max_token": hi_tok, "last_token": last,
        "vocab_size": pl.Series([meta.get("vocab_size")] * n, dtype=pl.Int64),
        "eod_id": pl.Series([meta.get("eod_id")] * n, dtype=pl.Int64),
    }, schema=DOCS_SCHEMA)
    df = df.with_columns([pl.when(mask).then(None).otherwise(pl.col(c)).alias(c)
                          for c in ("min_token", "max_token", "last_token")])
    yield df.with_columns(((pl.col("document") + 1) | (k << ROW_BITS)).alias(ROW_ID))


def default_entries() -> list[dict]:
    """The token contract: ids below the vocab, an EOD ending every document, no empty documents, the
    index consistent with the .bin and the sidecar, the files as the sidecar recorded them."""
    def pair(a: str, b: str, notes: str) -> dict:
        return {"type": "expect_column_pair_values_to_be_equal", "kwargs": {"column_A": a, "column_B": b},
                "notes": notes}

    return [
        pair("bin_bytes", "index_bin_bytes", "the .bin holds exactly the tokens the index describes"),
        pair("idx_bytes", "index_idx_bytes", "the .idx is 34 + 20 N + 8 bytes for its N documents"),
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "pointers_consistent",
                                                                  "value_set": [True]},
         "notes": "each document starts where the one before it ends"},
        pair("tokens", "sidecar_tokens", "the token count equals the sidecar's"),
        pair("documents", "sidecar_documents", "the document count equals the sidecar's"),
        pair("bin_sha256", "sidecar_bin_sha256", "the .bin is the one the writer hashed"),
        pair("idx_sha256", "sidecar_idx_sha256", "the .idx is the one the writer hashed"),
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "length", "min_value": 1},
         "notes": "no empty documents"},
        {"type": "expect_column_pair_values_a_to_be_greater_than_b",
         "kwargs": {"column_A": "vocab_size", "column_B": "max_token", "ignore_row_if": "either_value_is_missing"},
         "notes": "every token id is below the vocab size"},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "min_token", "min_value": 0},
         "notes": "no negative token ids"},
        pair("last_token", "eod_id", "an end-of-document token ends every document (so one lies between documents)"),
    ]

