"""Tokenized shards in Megatron-LM's MMapIndexedDataset format (`.bin/.idx`), byte for byte.

A shard set is ``<prefix>.bin`` (the token ids of every document, concatenated, no header),
``<prefix>.idx`` (layout below, as Megatron's ``indexed_dataset.py`` writes it), ``<prefix>.json``
(our sidecar: tokenizer hash, vocab size, special ids, dtype, counts, corpus hash, split, and ``files``:
the size and sha256 of ``.bin``, ``.idx`` and ``.mask``, recorded as they are written) and, for SFT,
an optional ``<prefix>.mask`` (one uint8 per token: 1 where the token is a training target).

``.idx``, little-endian::

    b"MMIDIDX\\x00\\x00"  9 B magic
    <Q  version = 1
    <B  dtype code (Megatron DType: 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64, 7 float32, 8 uint16)
    <Q  sequence count N
    <Q  document count N + 1
    int32[N]   sequence lengths (tokens)
    int64[N]   sequence pointers (byte offsets into .bin)
    int64[N+1] document indices 0..N

so an index is exactly 34 + 20 N + 8 bytes. Tokens are uint16 when the vocab is below 65500, else
int32 (Megatron's own rule). Everything is streamed: the writer keeps no per-document state in
memory, and merge copies files and index arrays chunk by chunk.

Readers check what they read: ``check_content`` (the training data loader) and ``verify`` (``corpus shards
verify``) compare every file's size and sha256 with the sidecar's ``files`` and find the token id range
in the same single pass over the ``.bin``.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from corpus.manifest import file_sha256
from corpus.writers import atomic_path, naming, write_bytes_atomic

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
HEADER = struct.Struct("<9sQBQQ")  # magic, version, dtype code, sequence count, document count: 34 bytes
DTYPES: dict[int, type] = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64,
                           7: np.float32, 8: np.uint16}
CODES: dict[np.dtype, int] = {np.dtype(t): c for c, t in DTYPES.items()}
UINT16_VOCAB_LIMIT = 65500
SIDECAR_FORMAT = "corpusforge.tokens/2"  # /2: the sidecar records the files' sizes and sha256
_CHUNK = 1 << 20  # index entries / tokens handled at a time when streaming
_READ = 16 << 20  # bytes read at a time when hashing


class ShardError(ValueError):
    """A shard set whose files do not match its sidecar (or hold ids the model cannot embed)."""


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """Megatron's rule: uint16 when the vocab is below 65500, else int32."""
    return np.dtype(np.uint16) if vocab_size < UINT16_VOCAB_LIMIT else np.dtype(np.int32)


def idx_size(n_docs: int) -> int:
    return HEADER.size + 20 * n_docs + 8


def paths(prefix: str | Path) -> dict[str, Path]:
    """The files of a shard set (names may contain dots, so suffixes are appended, never replaced)."""
    p = Path(prefix)
    return {ext: p.with_name(p.name + "." + ext) for ext in ("bin", "idx", "json", "mask")}


# ---------------------------------------------------------------- writing


class _Hashed:
    """A binary file being written, with the sha256 and size of what went into it."""

    def __init__(self, path: Path, shown: Path | None = None):
        self.fh = open(path, "wb")  # noqa: SIM115 - closed by close() or the with block
        self.shown = shown or path  # the name an error gives (the final one, not the temp file's)
        self.sha, self.bytes = hashlib.sha256(), 0

    def write(self, data: bytes) -> None:
        with naming(self.shown):
            self.fh.write(data)
        self.sha.update(data)
        self.bytes += len(data)

    def close(self) -> None:
        with naming(self.shown):  # buffered bytes are written now
            self.fh.close()

    def record(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "sha256": self.sha.hexdigest()}

    def __enter__(self) -> _Hashed:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _write_index(final: Path, dtype: np.dtype, n: int,
                 length_chunks: Callable[[], Iterable[np.ndarray]]) -> dict[str, Any]:
    """Write a .idx atomically from lengths given in chunks (called twice: lengths, then pointers);
    returns its size and sha256."""
    itemsize = dtype.itemsize
    with atomic_path(final) as tmp, _Hashed(tmp) as fh:
        fh.write(HEADER.pack(MAGIC, VERSION, CODES[dtype], n, n + 1))
        for c in length_chunks():
            fh.write(np.asarray(c, dtype="<i4").tobytes())
        offset = 0
        for c in length_chunks():
            ends = np.cumsum(c, dtype=np.int64) * itemsize + offset
            starts = np.empty_like(ends)
            if len(ends):
                starts[0], starts[1:] = offset, ends[:-1]
                offset = int(ends[-1])
            fh.write(starts.astype("<i8").tobytes())
        for start in range(0, n + 1, _CHUNK):
            fh.write(np.arange(start, min(n + 1, start + _CHUNK), dtype="<i8").tobytes())
    return fh.record()


def _tmp(final: Path) -> Path:
    return final.with_name(f".tmp-{os.getpid()}-{final.name}")


def _commit(tmp: Path, final: Path) -> None:
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)


class IndexedWriter:
    """Streams documents into one `.bin/.idx` pair (+ `.mask`, + sidecar `.json`).

    Tokens and lengths go straight to temp files; ``finalize`` writes the index and the sidecar and
    renames everything into place (sidecar last: its presence means the set is complete). Nothing
    appears under a final name if the writer is aborted or the process dies."""

    def __init__(self, prefix: str | Path, dtype: np.dtype | type, with_mask: bool = False):
        self.prefix, self.dtype, self.with_mask = Path(prefix), np.dtype(dtype), with_mask
        if self.dtype not in CODES:
            raise ValueError(f"unsupported token dtype {self.dtype}")
        self.files = paths(self.prefix)
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = {k: _tmp(self.files[k]) for k in ("bin", "mask")}
        self._len_tmp = _tmp(self.files["idx"]).with_name(_tmp(self.files["idx"]).name + ".len")
        self._bin = _Hashed(self._tmp["bin"], self.files["bin"])
        self._mask = _Hashed(self._tmp["mask"], self.files["mask"]) if with_mask else None
        self._lens = open(self._len_tmp, "wb")  # noqa: SIM115 - closed by finalize/abort
        self._hi = np.iinfo(self.dtype).max if self.dtype.kind in "iu" else None
        self.documents = self.tokens = 0
        self._closed = False

    def add(self, tokens: Sequence[int] | np.ndarray, mask: Sequence[int] | np.ndarray | None = None) -> None:
        """Append one document."""
        arr = np.asarray(tokens)
        self.add_batch(arr, np.array([arr.size], dtype=np.int64), None if mask is None else np.asarray(mask))

    def add_batch(self, flat: np.ndarray, lengths: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Append many documents at once: their tokens concatenated in ``flat``, sizes in ``lengths``."""
        flat, lengths = np.asarray(flat), np.asarray(lengths)
        if int(lengths.sum()) != flat.size:
            raise ValueError(f"lengths sum to {int(lengths.sum())} but {flat.size} tokens were given")
        if flat.size and self._hi is not None and (int(flat.min()) < 0 or int(flat.max()) > self._hi):
            raise ValueError(f"token ids [{int(flat.min())}, {int(flat.max())}] do not fit {self.dtype}")
        if (mask is None) == self.with_mask:
            raise ValueError("a loss mask must be given for every document iff the writer has with_mask=True")
        if mask is not None:
            if mask.size != flat.size:
                raise ValueError(f"loss mask has {mask.size} values for {flat.size} tokens")
            self._mask.write(np.asarray(mask, dtype=np.uint8).tobytes())  # type: ignore[union-attr]
        self._bin.write(flat.astype(self.dtype.newbyteorder("<"), copy=False).tobytes())
        with naming(self.files["idx"]):
            self._lens.write(lengths.astype("<i4").tobytes())
        self.documents += int(lengths.size)
        self.tokens += int(flat.size)

    def finalize(self, meta: dict[str, Any] | None = None) -> dict[str, Any]:
        """Close, write the index and the sidecar (``meta`` plus counts and each file's size and sha256,
        hashed as it was written), rename into place."""
        for fh in (self._bin, self._mask):
            if fh is not None:
                fh.close()
        with naming(self.files["idx"]):
            self._lens.close()
        self._closed = True
        n = self.documents

        def chunks() -> Iterator[np.ndarray]:
            if n == 0:
                return
            lens = np.memmap(self._len_tmp, dtype="<i4", mode="r", shape=(n,))
            for s in range(0, n, _CHUNK):
                yield np.array(lens[s:s + _CHUNK])

        files = {"bin": self._bin.record()}
        try:
            _commit(self._tmp["bin"], self.files["bin"])
            if self._mask is not None:
                _commit(self._tmp["mask"], self.files["mask"])
                files["mask"] = self._mask.record()
            else:
                self.files["mask"].unlink(missing_ok=True)
            files["idx"] = _write_index(self.files["idx"], self.dtype, n, chunks)
        finally:
            self._cleanup()
        sidecar = {"format": SIDECAR_FORMAT, **(meta or {}), "dtype": self.dtype.name, "documents": n,
                   "tokens": self.tokens, "mask": self.with_mask, "files": files}
        write_bytes_atomic(self.files["json"], json.dumps(sidecar, indent=2).encode())
        return sidecar

    def abort(self) -> None:
        if not self._closed:
            for fh in (self._bin, self._mask, self._lens):
                if fh is not None:
                    fh.close()
            self._closed = True
        self._cleanup()

    def _cleanup(self) -> None:
        for p in (*self._tmp.values(), self._len_tmp):
            if p.exists():  # unlink(missing_ok) raises EROFS on a read-only disk, hiding the first error
                p.unlink()

    def __enter__(self) -> IndexedWriter:
        return self

    def __exit__(self, typ: object, *_: object) -> None:
        if typ is not None or not self._closed:
            self.abort()


def write_documents(prefix: str | Path, docs: Iterable[Sequence[int]], vocab_size: int,
                    masks: Iterable[Sequence[int]] | None = None, meta: dict | None = None) -> dict:
    """Write token lists as one shard set (dtype chosen from the vocab size). Returns the sidecar."""
    with IndexedWriter(prefix, dtype_for_vocab(vocab_size), with_mask=masks is not None) as w:
        mask_iter = iter(masks) if masks is not None else None
        for doc in docs:
            w.add(doc, None if mask_iter is None else next(mask_iter))
        return w.finalize({"vocab_size": vocab_size, **(meta or {})})


# ---------------------------------------------------------------- reading


def read_header(idx: Path) -> tuple[np.dtype, int, int]:
    """(token dtype, sequence count, document count) from a .idx header; raises ValueError if invalid."""
    with open(idx, "rb") as fh:
        head = fh.read(HEADER.size)
    if len(head) < HEADER.size:
        raise ValueError(f"{idx}: {len(head)} bytes, shorter than the 34-byte header")
    magic, version, code, n, n_docs = HEADER.unpack(head)
    if magic != MAGIC:
        raise ValueError(f"{idx}: bad magic {magic!r}, not a Megatron MMIDIDX index")
    if version != VERSION:
        raise ValueError(f"{idx}: index version {version}, expected {VERSION}")
    if code not in DTYPES:
        raise ValueError(f"{idx}: unknown dtype code {code}")
    return np.dtype(DTYPES[code]), n, n_docs


def _map(path: Path, dtype: np.dtype) -> np.ndarray:
    size = path.stat().st_size
    if size % dtype.itemsize:
        raise ShardError(f"{path}: {size:,} bytes, not a whole number of {dtype.name} values ({dtype.itemsize} bytes "
                         f"each): the file is truncated or damaged ({STALE})")
    if size == 0:  # mmap cannot map an empty file
        return np.empty(0, dtype=dtype)
    return np.memmap(path, dtype=dtype.newbyteorder("<"), mode="r")


def read_sidecar(path: Path) -> dict[str, Any]:
    """A shard set's JSON sidecar; a file that is not a JSON object raises ShardError naming it."""
    try:
        meta = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ShardError(f"{path}: not a readable sidecar ({exc}); {STALE}") from None
    if not isinstance(meta, dict):
        raise ShardError(f"{path}: not a readable sidecar (a JSON {type(meta).__name__}, not an object); {STALE}")
    return meta


def _near(prefix: Path) -> str:
    """A hint for a prefix that names no shard set: the sets in the folder it names (or in its folder)."""
    where = prefix if prefix.is_dir() else prefix.parent
    found = sorted(p.with_name(p.name[:-4]) for p in where.glob("*.idx") if p.with_name(p.name[:-4] + ".bin").is_file())
    if found:
        return "; shard sets there: " + ", ".join(str(p) for p in found[:5]) + (" ..." if len(found) > 5 else "")
    return "; a shard set is PREFIX.bin + PREFIX.idx, as `corpus tokenize` writes them (OUT/train, OUT/validation)"


class IndexedDataset:
    """Memory-mapped reader: ``len(ds)`` documents, ``ds[i]`` the token ids of document i (a view).

    Reads exactly what Megatron's reader reads: lengths and byte pointers from the index."""

    def __init__(self, prefix: str | Path):
        self.prefix = Path(prefix)
        self.files = paths(self.prefix)
        missing = [self.files[k].name for k in ("bin", "idx") if not self.files[k].is_file()]
        if missing:
            raise ShardError(f"{self.prefix}: not a token shard set ({' and '.join(missing)} not found)"
                             + _near(self.prefix))
        self.dtype, n, self.document_count = read_header(self.files["idx"])
        size = self.files["idx"].stat().st_size
        # The layout's size for its header's counts (Megatron's own sets may hold more documents than
        # sequences + 1; `verify` holds ours to N + 1)
        want = HEADER.size + 12 * n + 8 * self.document_count
        if size < want:
            raise ShardError(f"{self.files['idx']}: {size:,} bytes for the {n:,} sequences its header counts "
                             f"(expected {want:,}): the file is truncated or damaged ({STALE})")
        idx = np.memmap(self.files["idx"], dtype=np.uint8, mode="r")
        off = HEADER.size
        self.lengths = np.frombuffer(idx, dtype="<i4", count=n, offset=off)
        off += 4 * n
        self.pointers = np.frombuffer(idx, dtype="<i8", count=n, offset=off)
        off += 8 * n
        self.doc_idx = np.frombuffer(idx, dtype="<i8", count=self.document_count, offset=off)
        self.tokens = _map(self.files["bin"], self.dtype)
        self.loss_mask = _map(self.files["mask"], np.dtype(np.uint8)) if self.files["mask"].exists() else None
        self.meta: dict[str, Any] = read_sidecar(self.files["json"]) if self.files["json"].exists() else {}

    def __len__(self) -> int:
        return int(self.lengths.size)

    @property
    def num_tokens(self) -> int:
        return int(self.tokens.size)

    def start(self, i: int) -> int:
        """Token offset of document i in the .bin."""
        return int(self.pointers[i]) // self.dtype.itemsize

    def __getitem__(self, i: int) -> np.ndarray:
        if not -len(self) <= i < len(self):
            raise IndexError(f"document {i} out of range ({len(self)} documents)")
        i %= len(self)
        s = self.start(i)
        return self.tokens[s:s + int(self.lengths[i])]

    def mask(self, i: int) -> np.ndarray | None:
        """The loss mask of document i, or None when the set has no mask."""
        if self.loss_mask is None:
            return None
        i %= len(self)
        s = self.start(i)
        return self.loss_mask[s:s + int(self.lengths[i])]

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def find_token(self, limit: int) -> tuple[int, int, int] | None:
        """The first token whose id is negative or >= ``limit``: (document, position in it, id), else None."""
        for s in range(0, self.num_tokens, _CHUNK * 16):
            chunk = np.asarray(self.tokens[s:s + _CHUNK * 16], dtype=np.int64)
            bad = np.flatnonzero((chunk < 0) | (chunk >= limit))
            if bad.size:
                pos = s + int(bad[0])
                doc = int(np.searchsorted(self.pointers // self.dtype.itemsize, pos, side="right")) - 1
                return doc, pos - self.start(doc), int(chunk[bad[0]])
        return None

    def describe_token(self, limit: int, what: str, hint: str = "") -> str:
        """'<bin>: document D (token T of it) has id X, outside <what> [0, limit)' for the first such token."""
        doc, pos, tid = self.find_token(limit) or (-1, -1, -1)
        return (f"{self.files['bin']}: document {doc} (token {pos} of it) has id {tid}, outside {what} [0, {limit})"
                + (f" {hint}" if hint else ""))


# ---------------------------------------------------------------- checking content against the sidecar


def _scan_bin(path: Path, dtype: np.dtype) -> tuple[str, int, int]:
    """(sha256, smallest id, largest id) of a .bin in one streaming pass; (sha, 0, -1) when empty."""
    sha, lo, hi = hashlib.sha256(), None, None
    buf = bytearray(_READ)
    view = memoryview(buf)
    le = dtype.newbyteorder("<")
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            sha.update(view[:n])
            ids = np.frombuffer(buf, dtype=le, count=n // dtype.itemsize)
            if ids.size:
                a, b = int(ids.min()), int(ids.max())
                lo, hi = a if lo is None else min(lo, a), b if hi is None else max(hi, b)
    return sha.hexdigest(), (0 if lo is None else lo), (-1 if hi is None else hi)


STALE = "re-run `corpus tokenize` to rewrite this shard set"


def _size_errors(files: dict[str, Path], meta: dict[str, Any]) -> list[str]:
    """The files against the sidecar's ``files`` record by size (a stat each); an error if there is no record."""
    rec = meta.get("files")
    if not isinstance(rec, dict) or not {"bin", "idx"} <= set(rec):
        return [f"{files['json']}: no content hashes (sidecar format {meta.get('format', 'unknown')}, from before "
                f"they were recorded): {STALE}"]
    if bool(meta.get("mask")) != ("mask" in rec):
        return [f"{files['json']}: sidecar mask={meta.get('mask')} but its files record "
                f"{'lacks' if meta.get('mask') else 'has'} a .mask"]
    errors = []
    for ext, r in rec.items():
        f = files[ext]
        if not f.exists():
            errors.append(f"{f}: missing (the sidecar records {r['bytes']} bytes)")
        elif f.stat().st_size != r["bytes"]:
            errors.append(f"{f}: {f.stat().st_size} bytes, the sidecar records {r['bytes']}: {STALE}")
    return errors


def _hash_errors(files: dict[str, Path], meta: dict[str, Any], bin_sha: str) -> list[str]:
    """sha256 of each file (the .bin's given, from its scan) against the sidecar's record."""
    errors = []
    for ext, r in meta["files"].items():
        digest = bin_sha if ext == "bin" else file_sha256(files[ext])
        if digest != r["sha256"]:
            errors.append(f"{files[ext]}: sha256 differs from the one recorded in {files['json'].name} when it was "
                          f"written: the file is corrupt; {STALE}")
    return errors


def check_content(prefix: str | Path) -> tuple[int, int]:
    """Check a shard set before reading it: every file's size (first, cheap) and sha256 against the
    sidecar, and every token id within the sidecar's vocab_size. The .bin is read once, its hash and id
    range in the same pass. Returns (smallest id, largest id); raises ShardError naming the file (and
    the document, for an id out of range)."""
    files = paths(prefix)
    if not files["json"].exists():
        raise ShardError(f"{files['json']}: missing, so the shard set cannot be checked: {STALE}")
    meta = read_sidecar(files["json"])
    errors = _size_errors(files, meta)
    if errors:
        raise ShardError("; ".join(errors))
    try:
        dtype = read_header(files["idx"])[0]
    except ValueError as exc:
        raise ShardError(str(exc)) from None
    bin_sha, lo, hi = _scan_bin(files["bin"], dtype)
    errors = _hash_errors(files, meta, bin_sha)
    if errors:
        raise ShardError("; ".join(errors))
    vocab = meta.get("vocab_size")
    if vocab is not None and (lo < 0 or hi >= vocab):
        raise ShardError(IndexedDataset(prefix).describe_token(int(vocab), "the sidecar's vocab_size"))
    return lo, hi


# ---------------------------------------------------------------- tools


def _as_tokenizer(tokenizer: Any) -> Any:
    if tokenizer is None or hasattr(tokenizer, "decode"):
        return tokenizer
    from tokenizers import Tokenizer

    path = _tokenizer_path(tokenizer)
    assert path is not None
    if not path.is_file():  # the tokenizers library's own words: "No such file or directory (os error 2)"
        raise ValueError(f"no tokenizer.json at {tokenizer} (train one with `corpus tokenizer train`)")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # the library raises a bare Exception for a file it cannot parse
        raise ValueError(f"{path}: not a tokenizer.json the tokenizers library reads ({exc})") from None


def _tokenizer_path(tokenizer: Any) -> Path | None:
    if tokenizer is None or hasattr(tokenizer, "decode"):
        return None
    p = Path(tokenizer)
    return p / "tokenizer.json" if p.is_dir() else p


def tokenizer_mismatch(meta: dict[str, Any], tokenizer: str | Path) -> str | None:
    """Why shards whose sidecar is ``meta`` were not made by ``tokenizer`` (a tokenizer folder or its
    tokenizer.json): the file's sha256 against the sidecar's ``tokenizer_hash``. None when it matches or
    the sidecar records no hash. A tokenizer retrained in place keeps its path and often its size."""
    if not meta.get("tokenizer_hash"):
        return None
    path = _tokenizer_path(tokenizer)
    if path is None or hashlib.sha256(path.read_bytes()).hexdigest() == meta["tokenizer_hash"]:
        return None
    return "tokenizer hash differs from the sidecar's: shards made by another tokenizer"


def inspect(prefix: str | Path, tokenizer: Any = None, samples: int = 1, max_tokens: int = 64) -> dict[str, Any]:
    """Counts, length statistics and the first ``samples`` documents (decoded when a tokenizer, a path
    to one, or the sidecar's recorded tokenizer path is available)."""
    ds = IndexedDataset(prefix)
    if tokenizer is None and ds.meta.get("tokenizer") and Path(ds.meta["tokenizer"]).exists():
        tokenizer = ds.meta["tokenizer"]
    tok = _as_tokenizer(tokenizer)
    lens = ds.lengths
    info: dict[str, Any] = {
        "prefix": str(ds.prefix), "documents": len(ds), "tokens": ds.num_tokens, "dtype": ds.dtype.name,
        "bin_bytes": ds.files["bin"].stat().st_size, "idx_bytes": ds.files["idx"].stat().st_size,
        "doc_tokens": {"min": int(lens.min()) if lens.size else 0, "mean": float(lens.mean()) if lens.size else 0.0,
                       "max": int(lens.max()) if lens.size else 0},
        "mask": ds.loss_mask is not None, "sidecar": ds.meta, "sample": [],
    }
    if ds.loss_mask is not None and ds.loss_mask.size:
        info["mask_fraction"] = float(np.count_nonzero(ds.loss_mask)) / ds.loss_mask.size
    for i in range(min(samples, len(ds))):
        ids = ds[i][:max_tokens].tolist()
        entry: dict[str, Any] = {"doc": i, "length": int(lens[i]), "ids": ids}
        if tok is not None:
            entry["text"] = tok.decode(ids, skip_special_tokens=False)
        info["sample"].append(entry)
    return info


def verify(prefix: str | Path, tokenizer: Any = None) -> list[str]:
    """Check a shard set; returns the errors found (empty when it is sound).

    Header and index size, pointers consistent with lengths, .bin size, document indices, token ids
    within the vocab, every file's size and sha256 against the sidecar's record (so a flipped bit that
    keeps ids in range is caught), the sidecar's counts/dtype/tokenizer, the mask's size and values, and
    that every document ends with the EOD id when the sidecar says it was appended."""
    files = paths(prefix)
    errors: list[str] = []
    for ext in ("bin", "idx"):
        if not files[ext].exists():
            errors.append(f"missing {files[ext]}")
    if errors:
        return errors
    try:
        dtype, n, n_docs = read_header(files["idx"])
    except ValueError as exc:
        return [str(exc)]
    size = files["idx"].stat().st_size
    if size != idx_size(n) or n_docs != n + 1:
        return [f"{files['idx']}: {size} bytes for {n} sequences / {n_docs} documents; "
                f"expected {idx_size(n)} bytes and {n + 1} documents (34 + 20N + 8)"]
    try:
        ds = IndexedDataset(prefix)
    except ShardError as exc:
        return [str(exc)]
    lens = ds.lengths.astype(np.int64)
    if lens.size and lens.min() < 0:
        errors.append(f"negative sequence lengths at {np.flatnonzero(lens < 0)[:5].tolist()}")
    expect = np.zeros(n, dtype=np.int64)
    if n:
        expect[1:] = np.cumsum(lens[:-1]) * dtype.itemsize
    bad = np.flatnonzero(ds.pointers != expect)
    if bad.size:
        errors.append(f"{bad.size} sequence pointers inconsistent with lengths (first at sequence {bad[0]})")
    if not np.array_equal(ds.doc_idx, np.arange(n + 1)):
        errors.append("document indices are not 0..N")
    total = int(lens.sum())
    bin_bytes = files["bin"].stat().st_size
    if bin_bytes != total * dtype.itemsize:
        errors.append(f"{files['bin']}: {bin_bytes} bytes, the index describes {total * dtype.itemsize}")
        return errors  # token checks below would read out of range
    meta = ds.meta
    tok = _as_tokenizer(tokenizer)
    vocab = tok.get_vocab_size() if tok is not None else meta.get("vocab_size")
    bin_sha, lo, hi = _scan_bin(files["bin"], dtype)  # one pass: the hash and the id range
    if vocab is not None and total and (lo < 0 or hi >= vocab):
        errors.append(f"token ids out of range [0, {vocab}): saw [{lo}, {hi}]; first: "
                      + ds.describe_token(int(vocab), "the vocab"))
    if not files["json"].exists():
        errors.append(f"missing sidecar {files['json']}")
    else:
        errors += _size_errors(files, meta) or _hash_errors(files, meta, bin_sha)
        for key, actual in (("documents", n), ("tokens", total), ("dtype", dtype.name)):
            if meta.get(key) != actual:
                errors.append(f"sidecar {key}={meta.get(key)!r}, the shards have {actual!r}")
        if meta.get("vocab_size") is not None and dtype != dtype_for_vocab(meta["vocab_size"]):
            errors.append(f"dtype {dtype.name} does not match vocab size {meta['vocab_size']}")
        if tok is not None:
            if meta.get("vocab_size") not in (None, tok.get_vocab_size()):
                errors.append(f"sidecar vocab_size {meta['vocab_size']} != tokenizer's {tok.get_vocab_size()}")
            tpath = _tokenizer_path(tokenizer)
            why = tokenizer_mismatch(meta, tpath) if tpath is not None else None
            if why:
                errors.append(why)
        if meta.get("eod_appended") and n:
            eod = meta.get("eod_id")
            ends = (ds.pointers // dtype.itemsize + lens - 1)[lens > 0]
            missing = int((lens == 0).sum()) + int(np.count_nonzero(ds.tokens[ends] != eod))
            if missing:
                errors.append(f"{missing} documents do not end with the EOD id {eod}")
        if bool(meta.get("mask")) != files["mask"].exists():
            errors.append(f"sidecar mask={meta.get('mask')} but {files['mask']} "
                          f"{'does not exist' if meta.get('mask') else 'exists'}")
    if files["mask"].exists():
        m_bytes = files["mask"].stat().st_size
        if m_bytes != total:
            errors.append(f"{files['mask']}: {m_bytes} mask values for {total} tokens")
        elif total and int(np.asarray(ds.loss_mask).max()) > 1:
            errors.append(f"{files['mask']}: values other than 0/1")
    return errors


def _merged_meta(metas: list[dict]) -> dict[str, Any]:
    """Keys whose value all parts agree on are kept; corpus hashes and splits are listed if they differ."""
    out: dict[str, Any] = {}
    keys = {k for m in metas for k in m} - {"documents", "tokens", "dtype", "mask", "format", "merged_from", "parts",
                                           "files"}
    for k in sorted(keys):
        vals = [m.get(k) for m in metas]
        if all(v == vals[0] for v in vals):
            out[k] = vals[0]
        elif k in ("corpus_hash", "split"):
            out[k] = [v for i, v in enumerate(vals) if v not in vals[:i]]  # distinct, in order
    return out


def merge(prefixes: Sequence[str | Path], out_prefix: str | Path, extra: dict | None = None) -> dict[str, Any]:
    """Concatenate shard sets, in order, into one (documents, tokens and masks exactly appended).

    All parts must share dtype and tokenizer hash, and all or none must have a mask. Each part is
    checked against its sidecar first (``check_content``: sizes, sha256, id range), so a corrupt part
    is named, never merged. Streams one part at a time (no file is held open across parts, so
    thousands of parts are fine). Returns the merged sidecar, with the merged files' hashes."""
    if not prefixes:
        raise ValueError("merge needs at least one shard set")
    into = [p for p in prefixes if Path(p).resolve() == Path(out_prefix).resolve()]
    if into:
        raise ValueError(f"merge: the output {out_prefix} is one of the shard sets to merge; "
                         "name a new prefix (merging into an input would overwrite it as it is read)")
    for p in prefixes:
        check_content(p)
    files = [paths(p) for p in prefixes]
    heads = [read_header(f["idx"]) for f in files]
    metas = [read_sidecar(f["json"]) for f in files]
    dtypes = {h[0] for h in heads}
    if len(dtypes) > 1:
        raise ValueError(f"cannot merge shard sets of different dtypes: {sorted(d.name for d in dtypes)}")
    if len({m.get("tokenizer_hash") for m in metas} - {None}) > 1:
        raise ValueError("cannot merge shard sets made by different tokenizers (tokenizer_hash differs)")
    masks = {f["mask"].exists() for f in files}
    if len(masks) > 1:
        raise ValueError("cannot merge shard sets where only some have a loss mask")
    with_mask, dtype = masks.pop(), dtypes.pop()
    out = paths(out_prefix)
    out["bin"].parent.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {}
    for kind in ["bin", "mask"] if with_mask else ["bin"]:
        with atomic_path(out[kind]) as tmp, _Hashed(tmp) as fh:
            for f in files:
                with open(f[kind], "rb") as src:
                    while block := src.read(_READ):
                        fh.write(block)
        record[kind] = fh.record()
    tokens = record["bin"]["bytes"] // dtype.itemsize
    if not with_mask:
        out["mask"].unlink(missing_ok=True)
    n = sum(h[1] for h in heads)

    def chunks() -> Iterator[np.ndarray]:
        for f, h in zip(files, heads, strict=True):
            for s in range(0, h[1], _CHUNK):
                yield np.fromfile(f["idx"], dtype="<i4", count=min(_CHUNK, h[1] - s), offset=HEADER.size + 4 * s)

    record["idx"] = _write_index(out["idx"], dtype, n, chunks)
    sidecar = {"format": SIDECAR_FORMAT, **_merged_meta(metas), **(extra or {}),
               "dtype": dtype.name, "documents": n, "tokens": tokens, "mask": with_mask,
               "parts": len(prefixes), "files": record}
    if len(prefixes) <= 100:  # provenance, kept short
        sidecar["merged_from"] = [f"{Path(p).parent.name}/{Path(p).name}" for p in prefixes]
    write_bytes_atomic(out["json"], json.dumps(sidecar, indent=2).encode())
    return sidecar


# ---------------------------------------------------------------- blending


def blend_indices(weights: Sequence[float], num_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Megatron's blending (``helpers.cpp::build_blending_indices``): sample k comes from the dataset
    furthest below its target share, ``argmax_d(w_d * max(k, 1) - taken_d)`` (first on ties).

    Returns (dataset_index int16, dataset_sample_index int64: the running count within that dataset)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0 or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {list(weights)}")
    w = (w / w.sum()).tolist()
    taken = [0] * len(w)
    ds_index = np.empty(num_samples, dtype=np.int16)
    sample_index = np.empty(num_samples, dtype=np.int64)
    rng_d = range(len(w))
    for k in range(num_samples):
        kk = max(k, 1.0)
        best, best_err = 0, w[0] * kk - taken[0]
        for d in rng_d:
            err = w[d] * kk - taken[d]
            if err > best_err:
                best, best_err = d, err
        ds_index[k] = best
        sample_index[k] = taken[best]
        taken[best] += 1
    return ds_index, sample_index


def epoch_permuted(counts: np.ndarray, size: int, seed: int, stream: int) -> np.ndarray:
    """Map running sample counts to item indices: epoch e = count // size visits all ``size`` items in
    a permutation seeded by (seed, stream, e), so repeats only come after a full pass."""
    out = np.empty_like(counts)
    epochs = counts // size
    for e in np.unique(epochs):
        sel = epochs == e
        perm = np.random.default_rng([seed, stream, int(e)]).permutation(size)
        out[sel] = perm[counts[sel] % size]
    return out


def blend(prefixes_with_weights: Sequence[tuple[str | Path, float]], num_samples: int,
          out_prefix: str | Path | None = None, seed: int = 0) -> dict[str, Any]:
    """A weighted mixture of shard sets, one document per sample, Megatron-style (see blend_indices).

    Each set's documents are visited in a seeded random order, epoch after epoch if it is sampled
    more often than it has documents. Deterministic for a given seed. With ``out_prefix``, writes
    ``<out>.blend.npz`` (arrays ``dataset_index``, ``sample_index``) and ``<out>.blend.json``.
    Returns those arrays plus the realised shares."""
    prefixes = [Path(p) for p, _ in prefixes_with_weights]
    weights = [float(w) for _, w in prefixes_with_weights]
    sizes = [len(IndexedDataset(p)) for p in prefixes]
    if any(s == 0 for s, w in zip(sizes, weights, strict=True) if w > 0):
        raise ValueError("a shard set with a positive weight has no documents")
    ds_index, counts = blend_indices(weights, num_samples)
    sample_index = np.empty_like(counts)
    for d, size in enumerate(sizes):
        sel = ds_index == d
        if sel.any():
            sample_index[sel] = epoch_permuted(counts[sel], size, seed, d)
    shares = (np.bincount(ds_index, minlength=len(prefixes)) / max(num_samples, 1)).tolist()
    info = {"prefixes": [str(p) for p in prefixes], "weights": weights, "seed": seed,
            "num_samples": num_samples, "shares": shares}
    if out_prefix is not None:
        out = Path(out_prefix)
        with atomic_path(out.with_name(out.name + ".blend.npz")) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, dataset_index=ds_index, sample_index=sample_index)
        write_bytes_atomic(out.with_name(out.name + ".blend.json"), json.dumps(info, indent=2).encode())
    return {**info, "dataset_index": ds_index, "sample_index": sample_index}


def load_blend(out_prefix: str | Path) -> dict[str, Any]:
    """Read what ``blend(..., out_prefix)`` wrote."""
    out = Path(out_prefix)
    info = json.loads(out.with_name(out.name + ".blend.json").read_text())
    with np.load(out.with_name(out.name + ".blend.npz"), allow_pickle=False) as z:
        info["dataset_index"], info["sample_index"] = z["dataset_index"], z["sample_index"]
    return info
