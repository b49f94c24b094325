"""Text to numbers for deduplication, vectorised over a batch of documents.

Normalisation is ``corpus.stages.normalise``'s; document digests hash the Arrow buffer of the
normalised text; shingle hashes and MinHash signatures are numpy kernels over one flat array per
batch (with per-document offsets), never a Python loop per shingle (except the opt-in ``sha1``
shingle hash, kept for strict compatibility with datasketch's default hash function).

Definitions (stable across versions and platforms; a saved index depends on them):

* word hash: see ``split_words`` (8-byte chunks of the word's UTF-8 bytes, multiply-xorshift mixed);
* shingle hash: ``fmix64(sum_i W_i * R**i mod 2**64) mod 2**32`` over the shingle's k word hashes (or,
  for character shingles, its k code points + 1). A document with fewer than k units has one shingle,
  all of them. ``shingle_hash32_ref`` is the same definition for one shingle, in plain Python.
* signature (datasketch's schemes): ``affine32`` (datasketch >= 2.0 default): ``min(a * fmix32(h) + b
  mod 2**32)``; ``legacy`` (datasketch < 2.0): ``min(((a * h + b) mod 2**64) mod (2**61 - 1)) & (2**32 - 1)``,
  with a, b drawn from ``numpy.random.RandomState(seed)`` exactly as datasketch draws them.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
import pyarrow as pa

from corpus.stages.normalise import Normalisation

Scheme = Literal["affine32", "legacy"]
Unit = Literal["word", "char"]
ShingleHash = Literal["fast", "sha1"]

MASK32 = (1 << 32) - 1
MASK64 = (1 << 64) - 1
_P = 0x100000001B3  # FNV-64 prime: the per-byte base of the word hash
_R = 0x9E3779B97F4A7C15  # golden-ratio constant (odd): the per-unit base of the shingle hash
_F1, _F2 = 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53  # MurmurHash3 fmix64
_MERSENNE = (1 << 61) - 1

u64 = np.uint64


TextColumn = pl.Series | pa.Array | pa.ChunkedArray


def as_series(text: TextColumn) -> pl.Series:
    if isinstance(text, pl.Series):
        return text
    s = pl.from_arrow(text)
    assert isinstance(s, pl.Series)
    return s


def utf8_buffers(s: TextColumn) -> tuple[np.ndarray, np.ndarray]:
    """(offsets int64 [n + 1] starting at 0, data uint8) of a string column, without copying text
    (an Arrow column straight from Parquet skips polars' string-view conversion both ways)."""
    arr = s.to_arrow() if isinstance(s, pl.Series) else s
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    n = len(arr)
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64)[arr.offset : arr.offset + n + 1] if n else np.zeros(1, np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    start, end = int(offsets[0]), int(offsets[-1])
    return offsets - start, data[start:end]


def digests128(s: pl.Series) -> np.ndarray:
    """A stable 128-bit digest (blake2b) of every string, as an (n, 2) uint64 array.

    One C call per document over a slice of the Arrow buffer: no str objects are made. polars' own
    hash is not stable across versions, and a digest written by fit must mean the same next year."""
    offsets, data = utf8_buffers(s)
    view = memoryview(data)
    out = bytearray(16 * (len(offsets) - 1))
    for i in range(len(offsets) - 1):
        out[16 * i : 16 * i + 16] = hashlib.blake2b(view[offsets[i] : offsets[i + 1]], digest_size=16).digest()
    return np.frombuffer(bytes(out), dtype="<u8").reshape(-1, 2).astype(np.uint64)


# ---------------------------------------------------------------- hashing kernels


def fmix64(h: np.ndarray, inplace: bool = False) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, elementwise (uint64 arithmetic wraps, as intended)."""
    h = h if inplace else h.copy()
    t = np.empty_like(h)
    for mult in (_F1, _F2):
        np.right_shift(h, u64(33), out=t)
        h ^= t
        h *= u64(mult)
    np.right_shift(h, u64(33), out=t)
    h ^= t
    return h


def _mix_word(h: np.ndarray) -> np.ndarray:
    """A cheap bijective mix (odd multiply, xorshift) for word hashes, in place: the shingle hash
    applies the full fmix64 afterwards."""
    h *= u64(_F1)
    h ^= h >> u64(29)
    return h


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser (datasketch's affine32 pre-mix)."""
    u = np.uint32
    h = h ^ (h >> u(16))
    h = h * u(0x85EBCA6B)
    h = h ^ (h >> u(13))
    h = h * u(0xC2B2AE35)
    return h ^ (h >> u(16))


_pow_cache: dict[int, np.ndarray] = {}


def _powers(base: int, n: int) -> np.ndarray:
    """base**i mod 2**64 for i < n (cached, grown by doubling)."""
    have = _pow_cache.get(base)
    if have is None or len(have) < n:
        size = max(n, 2 * len(have) if have is not None else 1024)
        p = np.full(size, base, dtype=np.uint64)
        p[0] = 1
        have = np.cumprod(p, dtype=np.uint64)  # wraps mod 2**64
        _pow_cache[base] = have
    return have[:n]


@dataclass
class Words:
    """The words of a batch: hashes, byte spans into ``buf``, and per-document offsets."""

    hashes: np.ndarray  # uint64 [M]
    starts: np.ndarray  # int64 [M], byte offset of each word in buf
    ends: np.ndarray  # int64 [M]
    doc_offsets: np.ndarray  # int64 [D + 1] into the word arrays
    buf: np.ndarray  # the batch's bytes, documents separated by a space


# Words up to this many bytes are hashed by 8-byte chunks in numpy; longer ones (URLs, base64 blobs:
# rare) by blake2b one at a time.
_LONG_WORD = 64
_LEN_MASK = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [MASK64], dtype=np.uint64)


def split_words(offsets: np.ndarray, data: np.ndarray) -> Words:
    """Words (runs of non-space bytes) of every document in a whitespace-normalised batch, hashed.

    Word hash: ``h = mix(c0 ^ len * P)``, then ``h = mix(h ^ ci)`` for each further 8-byte little-endian
    chunk ci (zero padded), mix(x) = y ^ (y >> 29) with y = x * F1; a word over 64 bytes:
    ``mix(blake2b64(word) ^ len * P)``."""
    n_docs = len(offsets) - 1
    # A space before, between and after documents turns word detection into finding the edges of
    # runs of non-space bytes; 8 bytes of padding let every word start be read as one uint64.
    buf = np.empty(len(data) + n_docs + 8, np.uint8)
    pos = np.arange(n_docs, dtype=np.int64)
    buf[offsets[:-1] + pos] = 32
    mask = np.ones(len(data) + n_docs, bool)
    mask[offsets[:-1] + pos] = False
    buf[: len(mask)][mask] = data
    buf[len(mask) :] = 32
    edges = np.flatnonzero(np.diff(buf[: len(mask) + 1] != 32)) + 1
    starts, ends = edges[0::2].astype(np.int64), edges[1::2].astype(np.int64)
    doc_offsets = np.searchsorted(starts, np.append(offsets[:-1] + pos, len(mask))).astype(np.int64)
    lens = ends - starts
    if len(starts) == 0:
        return Words(np.zeros(0, np.uint64), starts, ends, doc_offsets, buf)
    buf[len(mask) :] = 0
    as_u64 = np.ndarray(shape=(len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))  # unaligned loads
    h = as_u64[starts]
    h &= _LEN_MASK[np.minimum(lens, 8)]
    h ^= lens.astype(np.uint64) * u64(_P)
    _mix_word(h)
    longer = np.flatnonzero(lens > 8)
    longer = longer[lens[longer] <= _LONG_WORD]
    for i in range(1, _LONG_WORD // 8):
        if len(longer) == 0:
            break
        rest = np.minimum(lens[longer] - 8 * i, 8)
        h[longer] = _mix_word(h[longer] ^ (as_u64[starts[longer] + 8 * i] & _LEN_MASK[rest]))
        longer = longer[lens[longer] > 8 * (i + 1)]
    view = memoryview(buf)
    for w in np.flatnonzero(lens > _LONG_WORD):
        digest = int.from_bytes(hashlib.blake2b(view[starts[w] : ends[w]], digest_size=8).digest(), "little")
        h[w] = u64(_mix_word_int(digest ^ ((int(lens[w]) * _P) & MASK64)))
    return Words(h, starts, ends, doc_offsets, buf)


def ngram_hashes(units: np.ndarray, doc_offsets: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes (uint32) of every k-gram of units within each document, and per-document offsets.

    ``units`` are uint64 values (word hashes, or code points + 1). A document with 0 < n < k units gets
    one shingle of all n; an empty one gets none."""
    n_docs = len(doc_offsets) - 1
    n = np.diff(doc_offsets)
    counts = np.where(n >= k, n - k + 1, np.minimum(n, 1))
    sh_off = np.zeros(n_docs + 1, np.int64)
    np.cumsum(counts, out=sh_off[1:])
    out = np.empty(int(sh_off[-1]), np.uint64)
    m = len(units)
    pw = _powers(_R, max(k, 1))
    short = (n > 0) & (n < k)
    if m >= k:
        acc = units[: m - k + 1] * pw[0]
        tmp = np.empty_like(acc)
        for i in range(1, k):
            np.multiply(units[i : m - k + 1 + i], pw[i], out=tmp)
            acc += tmp
        if (n >= k).all():  # the common case: drop the k - 1 windows that straddle documents
            valid = np.ones(m - k + 1, bool)
            ends = doc_offsets[1:-1]
            for i in range(1, k):
                valid[ends[ends - i >= 0] - i] = False
            out[:] = acc[valid]
        else:
            j = np.arange(m - k + 1, dtype=np.int64)
            doc_of = np.repeat(np.arange(n_docs, dtype=np.int64), n)[: m - k + 1]
            valid = (j - doc_offsets[doc_of]) <= (n[doc_of] - k)
            long_pos = np.ones(len(out), bool)
            long_pos[sh_off[:-1][short]] = False
            out[long_pos] = acc[valid]
    if short.any():
        # One shingle of all n < k units: prefix sums of the weighted units, differenced per document.
        pos = np.arange(m, dtype=np.int64) - np.repeat(doc_offsets[:-1], n)
        csum = np.zeros(m + 1, np.uint64)
        np.cumsum(units * pw[np.minimum(pos, k - 1)], dtype=np.uint64, out=csum[1:])
        out[sh_off[:-1][short]] = csum[doc_offsets[1:][short]] - csum[doc_offsets[:-1][short]]
    return fmix64(out, inplace=True).astype(np.uint32), sh_off


def char_units(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Code points + 1 (uint64) of a batch of strings, and per-document offsets."""
    lens = texts.str.len_chars().fill_null(0).to_numpy().astype(np.int64)
    offsets = np.zeros(len(lens) + 1, np.int64)
    np.cumsum(lens, out=offsets[1:])
    joined = "".join(texts.fill_null("").to_list()).encode("utf-32-le")
    return np.frombuffer(joined, dtype=np.uint32).astype(np.uint64) + u64(1), offsets


@dataclass
class Shingles:
    """The shingle hashes of a batch: one flat uint32 array and per-document offsets."""

    hashes: np.ndarray
    offsets: np.ndarray

    def unique_sorted(self) -> Shingles:
        """Each document's shingle set: sorted, without repeats (what exact Jaccard compares)."""
        n_docs = len(self.offsets) - 1
        doc = np.repeat(np.arange(n_docs, dtype=np.uint64), np.diff(self.offsets))
        key = np.sort((doc << u64(32)) | self.hashes.astype(np.uint64))
        keep = np.ones(len(key), bool)
        keep[1:] = key[1:] != key[:-1]
        key = key[keep]
        counts = np.bincount((key >> u64(32)).astype(np.int64), minlength=n_docs)
        offsets = np.zeros(n_docs + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        return Shingles((key & u64(MASK32)).astype(np.uint32), offsets)

    def jaccard(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Exact Jaccard of the sets of documents a[i] and b[i] (self: unique_sorted sets), vectorised:
        the sets of all pairs laid out as sorted (pair, shingle) keys, intersected with one searchsorted.
        Two empty sets count as equal (1.0)."""
        off, flat = self.offsets, self.hashes
        la, lb = off[a + 1] - off[a], off[b + 1] - off[b]
        idx = np.arange(len(a), dtype=np.uint64)
        ka = (np.repeat(idx, la) << u64(32)) | flat[ranges(off[a], la)].astype(np.uint64)
        kb = (np.repeat(idx, lb) << u64(32)) | flat[ranges(off[b], lb)].astype(np.uint64)
        inter = np.zeros(len(a), np.int64)
        if len(kb):
            at = np.minimum(np.searchsorted(kb, ka), len(kb) - 1)
            hit = kb[at] == ka
            inter = np.bincount((ka[hit] >> u64(32)).astype(np.int64), minlength=len(a))
        union = la + lb - inter
        return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def shingle_batch(norm: pl.Series, k: int, unit: Unit = "word", hash_fn: ShingleHash = "fast") -> Shingles:
    """Shingle hashes of a batch of normalised texts (whitespace already collapsed)."""
    if unit == "char":
        units, offsets = char_units(norm)
        if hash_fn == "sha1":
            return _sha1_char_shingles(norm, offsets, k)
        return Shingles(*ngram_hashes(units, offsets, k))
    offsets, data = utf8_buffers(norm)
    words = split_words(offsets, data)
    if hash_fn == "sha1":
        return _sha1_word_shingles(words, k)
    return Shingles(*ngram_hashes(words.hashes, words.doc_offsets, k))


_lut16_cache: dict[str, np.ndarray] = {}


def _ascii_normalise(offsets: np.ndarray, data: np.ndarray, norm: Normalisation) -> tuple[np.ndarray, np.ndarray]:
    """``norm`` on pure-ASCII documents with numpy: one table lookup (two bytes at a time), plus one
    compaction when digit runs collapse to "0". Runs of spaces stay (split_words does not mind)."""
    key = norm.level
    if key not in _lut16_cache:
        lut = norm.ascii_table().astype(np.uint16)
        i = np.arange(1 << 16)
        _lut16_cache[key] = lut[i & 255] | (lut[i >> 8] << np.uint16(8))
    n = len(data)
    padded = np.empty(n + (n & 1), np.uint8)
    padded[:n] = data
    if n & 1:
        padded[n] = 32
    out = _lut16_cache[key][padded.view("<u2")].view(np.uint8)[:n]
    if not norm.fuzzy or n == 0:  # only fuzzy maps digits to "0", whose runs collapse
        return offsets, out
    zero = out == 48
    drop = np.flatnonzero(zero[1:] & zero[:-1]) + 1
    drop = drop[~np.isin(drop, offsets[:-1])] if len(drop) else drop  # runs stop at document starts
    if len(drop) == 0:
        return offsets, out
    keep = np.ones(n, bool)
    keep[drop] = False
    return offsets - np.searchsorted(drop, offsets), out[keep]


def doc_shingles(text: TextColumn, norm: Normalisation, k: int, unit: Unit = "word",
                 hash_fn: ShingleHash = "fast") -> Shingles:
    """Shingle hashes of raw texts under ``norm``. Word shingles of pure-ASCII documents take a numpy
    fast path (polars' Unicode regexes cost ~5 ns a byte each); the others go through polars. Both give
    the same words, so the shingles are those of ``shingle_batch(norm.apply(text))``."""
    if unit != "word" or hash_fn != "fast" or norm.level == "none":
        return shingle_batch(norm.apply(as_series(text)), k, unit, hash_fn)
    if isinstance(text, pl.Series) or text.null_count:
        text = as_series(text).fill_null("")
    offsets, data = utf8_buffers(text)
    n = len(offsets) - 1
    wide = np.zeros(n, bool)
    nonempty = np.flatnonzero(offsets[:-1] < offsets[1:])
    if len(nonempty):
        wide[nonempty] = np.maximum.reduceat(data, offsets[:-1][nonempty]) >= 128
    if not wide.any():
        a_off, a_data = _ascii_normalise(offsets, data, norm)
        words = split_words(a_off, a_data)
        return Shingles(*ngram_hashes(words.hashes, words.doc_offsets, k))
    series = as_series(text)
    if wide.all():
        return shingle_batch(norm.apply(series), k)
    idx_a, idx_w = np.flatnonzero(~wide), np.flatnonzero(wide)
    parts = [doc_shingles(series.gather(idx_a), norm, k), shingle_batch(norm.apply(series.gather(idx_w)), k)]
    return _merge_shingles(parts, [idx_a, idx_w], n)


def _merge_shingles(parts: list[Shingles], rows: list[np.ndarray], n: int) -> Shingles:
    """Interleave the shingles of disjoint row subsets back into row order."""
    counts = np.zeros(n, np.int64)
    for sh, r in zip(parts, rows, strict=True):
        counts[r] = np.diff(sh.offsets)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    out = np.empty(int(offsets[-1]), np.uint32)
    for sh, r in zip(parts, rows, strict=True):
        lens = np.diff(sh.offsets)
        out[ranges(offsets[r], lens)] = sh.hashes
    return Shingles(out, offsets)


def ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenated ranges [starts[i], starts[i] + lens[i])."""
    first = np.zeros(len(lens), np.int64)
    if len(lens) > 1:
        np.cumsum(lens[:-1], out=first[1:])
    return np.repeat(starts - first, lens) + np.arange(int(lens.sum()), dtype=np.int64)


def _sha1_word_shingles(words: Words, k: int) -> Shingles:
    # datasketch's default hash (sha1_hash32) over the shingle's bytes: one hashlib call per shingle.
    # Slow (Python loop); for strict compatibility with sketches made by datasketch's defaults.
    _, sh_off = ngram_hashes(np.zeros(len(words.hashes), np.uint64), words.doc_offsets, k)
    view = memoryview(words.buf)
    out = np.empty(int(sh_off[-1]), np.uint32)
    w0 = words.doc_offsets
    t = 0
    for d in range(len(w0) - 1):
        a, b = int(w0[d]), int(w0[d + 1])
        if b - a >= k:
            for j in range(a, b - k + 1):
                out[t] = _sha1_32(view[words.starts[j] : words.ends[j + k - 1]])
                t += 1
        elif b > a:
            out[t] = _sha1_32(view[words.starts[a] : words.ends[b - 1]])
            t += 1
    return Shingles(out, sh_off)


def _sha1_char_shingles(norm: pl.Series, offsets: np.ndarray, k: int) -> Shingles:
    _, sh_off = ngram_hashes(np.zeros(int(offsets[-1]), np.uint64), offsets, k)
    out = [_sha1_32(s.encode()) for text in norm.fill_null("").to_list() for s in char_shingles_ref(text, k)]
    return Shingles(np.array(out, dtype=np.uint32), sh_off)


def _sha1_32(b: bytes | memoryview) -> int:
    return struct.unpack("<I", hashlib.sha1(b, usedforsecurity=False).digest()[:4])[0]


# ---------------------------------------------------------------- plain-Python reference (tests, datasketch)


def _fmix64_int(h: int) -> int:
    h ^= h >> 33
    h = (h * _F1) & MASK64
    h ^= h >> 33
    h = (h * _F2) & MASK64
    return h ^ (h >> 33)


def word_shingles_ref(norm_text: str, k: int) -> list[bytes]:
    """The word shingles of one normalised text, as datasketch would be fed them."""
    words = [w for w in norm_text.split(" ") if w]
    if not words:
        return []
    if len(words) < k:
        return [" ".join(words).encode()]
    return [" ".join(words[i : i + k]).encode() for i in range(len(words) - k + 1)]


def char_shingles_ref(norm_text: str, k: int) -> list[str]:
    if not norm_text:
        return []
    if len(norm_text) < k:
        return [norm_text]
    return [norm_text[i : i + k] for i in range(len(norm_text) - k + 1)]


def _mix_word_int(h: int) -> int:
    h = (h * _F1) & MASK64
    return h ^ (h >> 29)


def word_hash_ref(word: bytes) -> int:
    seed = (len(word) * _P) & MASK64
    if len(word) > _LONG_WORD:
        return _mix_word_int(int.from_bytes(hashlib.blake2b(word, digest_size=8).digest(), "little") ^ seed)
    padded = word + bytes(-len(word) % 8)
    chunks = [int.from_bytes(padded[i : i + 8], "little") for i in range(0, max(len(padded), 8), 8)] or [0]
    h = _mix_word_int(chunks[0] ^ seed)
    for c in chunks[1:]:
        h = _mix_word_int(h ^ c)
    return h


def shingle_hash32_ref(shingle: bytes | str, unit: Unit = "word") -> int:
    """Our shingle hash of one shingle (word shingles: its bytes; char shingles: its string)."""
    if unit == "char":
        units = [ord(c) + 1 for c in (shingle if isinstance(shingle, str) else shingle.decode())]
    else:
        units = [word_hash_ref(w) for w in bytes(shingle).split(b" ")]
    acc = 0
    for i, x in enumerate(units):
        acc = (acc + x * pow(_R, i, 1 << 64)) & MASK64
    return _fmix64_int(acc) & MASK32


# ---------------------------------------------------------------- signatures


@dataclass(frozen=True)
class Permutations:
    scheme: str
    a: np.ndarray
    b: np.ndarray

    @classmethod
    def make(cls, num_perm: int, seed: int, scheme: Scheme = "affine32") -> Permutations:
        """Drawn exactly as datasketch.MinHash draws them, so signatures equal datasketch's."""
        gen = np.random.RandomState(seed)
        if scheme == "legacy":
            ab = np.array([(gen.randint(1, _MERSENNE, dtype=np.uint64), gen.randint(0, _MERSENNE, dtype=np.uint64))
                           for _ in range(num_perm)], dtype=np.uint64).T
            return cls(scheme, ab[0].copy(), ab[1].copy())
        if scheme != "affine32":
            raise ValueError(f"unknown MinHash scheme {scheme!r} (affine32 or legacy)")
        a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
        return cls(scheme, a, b)


# Shingles per block and permutations per chunk: the working buffer (chunk x block x 4 bytes) stays
# within L2 cache, which is what makes the kernel run at about a nanosecond per (shingle, permutation).
_BLOCK = 1 << 14
_CHUNK = 8


def signatures(sh: Shingles, perms: Permutations) -> np.ndarray:
    """MinHash signatures, (docs, num_perm) uint32. Documents without shingles get the all-max
    signature (as datasketch's empty MinHash); callers must not band them."""
    n_docs = len(sh.offsets) - 1
    num_perm = len(perms.a)
    out = np.full((num_perm, n_docs), MASK32, dtype=np.uint32)
    nonempty = np.flatnonzero(sh.offsets[:-1] < sh.offsets[1:])
    if len(nonempty) == 0:
        return np.ascontiguousarray(out.T)
    starts = sh.offsets[:-1][nonempty]
    if perms.scheme == "affine32":
        hv = fmix32(sh.hashes.astype(np.uint32))
        a, b = perms.a[:, None], perms.b[:, None]
    else:
        hv = sh.hashes.astype(np.uint64)
        a, b = perms.a[:, None], perms.b[:, None]
    # Blocks of whole documents of about _BLOCK shingles each.
    cuts = np.searchsorted(starts, np.arange(0, int(sh.offsets[-1]), _BLOCK))
    cuts = np.unique(np.concatenate([cuts, [len(starts)]]))
    for g0, g1 in zip(cuts[:-1], cuts[1:], strict=True):
        s0 = int(starts[g0])
        s1 = int(sh.offsets[nonempty[g1 - 1] + 1])
        seg = hv[s0:s1][None, :]
        local = starts[g0:g1] - s0
        cols = nonempty[g0:g1]
        for c in range(0, num_perm, _CHUNK):
            if perms.scheme == "affine32":
                buf = a[c : c + _CHUNK] * seg
                buf += b[c : c + _CHUNK]
            else:
                buf = (a[c : c + _CHUNK] * seg + b[c : c + _CHUNK]) % u64(_MERSENNE)
                buf &= u64(MASK32)
            out[c : c + _CHUNK, cols] = np.minimum.reduceat(buf, local, axis=1)
    return np.ascontiguousarray(out.T)


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(docs, bands) uint64: one key per band of r signature values (band index mixed in, so equal
    values in different bands never collide)."""
    n_docs = sig.shape[0]
    keys = np.empty((n_docs, bands), np.uint64)
    pw = _powers(_R, rows + 1)
    for band in range(bands):
        acc = np.full(n_docs, ((band + 1) * int(pw[rows])) & MASK64, dtype=np.uint64)
        for i in range(rows):
            acc += sig[:, band * rows + i].astype(np.uint64) * pw[i]
        keys[:, band] = fmix64(acc)
    return keys
