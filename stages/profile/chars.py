"""Character classes and scripts per document, counted on the UTF-8 bytes of a whole chunk.

Each byte gets a byte of class bits: ASCII bytes by a 256-entry table (an Arrow ``take``, which is
faster than ``bytes.translate`` and releases the GIL, so worker threads overlap); multi-byte
characters are decoded only where they occur and looked up in a code-point table. Both tables are
built by running the class regexes (``\\p{L}``, ``\\p{Nd}``...) through polars' own engine, so
"alpha" means exactly what polars means by it. A class is one bit per byte, so
``popcount(word & mask)`` counts it in 8 bytes and ``reduceat`` sums the words of each document,
in blocks of documents that stay in cache; no per-document Python. A class absent from a whole
block (digits, controls, odd spaces, often) costs one OR over the block instead of a count, and
word starts come from the same bytes viewed one byte back (each byte's predecessor in its lane).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from .constants import SCRIPTS

ALPHA, DIGIT, UPPER, PUNCT, SPACE, NONPRINT, WS, ODD = (1 << i for i in range(8))
# WS marks every byte of a whitespace character (words split there); ODD a whitespace character
# other than " " and "\n" (tab, CR, NBSP...): a doc holding one may need its lines collapsing.
CLASS_RE = {ALPHA: r"\p{L}", DIGIT: r"\p{Nd}", UPPER: r"\p{Lu}", PUNCT: r"\p{P}", SPACE: r"\s",
            NONPRINT: r"[\p{C}--[\t\n\r]]"}
COUNTED = {"alpha": ALPHA, "digit": DIGIT, "upper": UPPER, "punct": PUNCT, "space": SPACE, "nonprint": NONPRINT}
# Planes counted per doc, then word starts.
PLANES = ("alpha", "digit", "upper", "punct", "space", "nonprint", "odd_space")
_ONES = np.uint64(0x0101010101010101)
_MASKS = [_ONES * np.uint64(flag) for flag in (ALPHA, DIGIT, UPPER, PUNCT, SPACE, NONPRINT, ODD)]
_M_WS = _ONES * np.uint64(WS)
_LOW = np.array([(1 << (8 * r)) - 1 for r in range(8)], dtype=np.uint64)
_BLOCK_BYTES = 1 << 18  # documents are counted in blocks of ~256 KiB: the arrays stay in L2 cache


def _class_bits(cps: np.ndarray) -> tuple[np.ndarray, pl.DataFrame]:
    """Class bits of the given code points, and the one-column frame of their characters."""
    chars = pl.Series("c", list(cps.astype("<u4").tobytes().decode("utf-32-le")), dtype=pl.String).to_frame()
    cls = chars.select(*(pl.col("c").str.contains(f"^{rx}$").alias(str(bit)) for bit, rx in CLASS_RE.items()))
    bits = np.zeros(len(cps), np.uint8)
    for bit in CLASS_RE:
        bits |= cls[str(bit)].to_numpy().astype(np.uint8) * np.uint8(bit)
    space = (bits & SPACE) != 0
    bits[space] |= WS
    bits[space & (cps != 0x20) & (cps != 0x0A)] |= ODD
    return bits, chars


def arrow_view(a: np.ndarray) -> pa.Array:
    """A contiguous numpy array as an Arrow array, zero-copy (``pa.array`` would import pandas: 0.4 s)."""
    return pa.Array.from_buffers(pa.from_numpy_dtype(a.dtype), len(a), [None, pa.py_buffer(a)])


def numpy_view(a: pa.Array, dtype: type) -> np.ndarray:
    """A primitive Arrow array without nulls as numpy, zero-copy (``to_numpy`` would import pandas)."""
    return np.frombuffer(a.buffers()[1], dtype, count=len(a), offset=a.offset * np.dtype(dtype).itemsize)


@cache
def ascii_table() -> pa.Array:
    """Class bits of each byte value; 0 for bytes >= 0x80 (multi-byte characters are decoded apart)."""
    bits, _ = _class_bits(np.arange(128))
    return arrow_view(np.concatenate([bits, np.zeros(128, np.uint8)]))


@dataclass(frozen=True)
class CodePoints:
    flags: np.ndarray  # uint8 class bits per code point
    script: np.ndarray  # uint8 per code point: 1 + index in SCRIPTS, 0 for other (letters only)


@cache
def code_point_table() -> CodePoints:
    """Class bits and script of every code point (~0.2 s; built only once a non-ASCII byte shows up).
    Planes 4-13 and 15-16 hold only unassigned and private-use code points (all \\p{C})."""
    cps = np.concatenate([np.arange(0xD800), np.arange(0xE000, 0x40000), np.arange(0xE0000, 0xE1000)])
    bits, chars = _class_bits(cps)
    flags = np.full(0x110000, NONPRINT, np.uint8)
    flags[cps] = bits
    letters = cps[(bits & ALPHA) != 0]
    scr = chars.filter(pl.Series((bits & ALPHA) != 0)).select(
        *(pl.col("c").str.contains(rf"^\p{{{s}}}$").alias(s) for s in SCRIPTS))
    script = np.zeros(0x110000, np.uint8)
    for i, s in enumerate(SCRIPTS, 1):
        script[letters[scr[s].to_numpy()]] = i
    return CodePoints(flags, script)


def byte_view(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(UTF-8 bytes of all texts, n+1 offsets into them), zero-copy from Arrow."""
    arr = texts.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    n = len(arr)
    bufs = arr.buffers()
    offs = np.frombuffer(bufs[1], dtype=np.int64, count=n + 1, offset=arr.offset * 8)
    lo, hi = int(offs[0]), int(offs[-1])
    data = np.frombuffer(bufs[2], dtype=np.uint8, count=hi - lo, offset=lo) if hi > lo else np.zeros(0, np.uint8)
    return data, offs - lo


def _classify(data: np.ndarray, lo: int, hi: int, wide: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class bits of the block data[lo:hi] laid out for word views: byte 0 is the class of the byte
    before the block (a space at the start of the data), byte 1 + i that of data[lo + i], and at
    least 8 bytes follow the block (whatever they are: counting masks them off). With `wide`, also
    the positions (in data[lo:hi]) and code points of the multi-byte characters' lead bytes.
    Continuation bytes carry no class (a character counts once), except WS so a multi-byte space
    still separates words."""
    n = len(data)
    a, b = max(lo - 1, 0), min(hi + 8, n)
    k = numpy_view(pc.take(ascii_table(), arrow_view(data[a:b])), np.uint8)
    if lo == 0 or b - a < hi - lo + 9:  # the data's first or last block: add the missing ends
        k = np.concatenate([np.full(int(lo == 0), WS, np.uint8), k, np.zeros(hi + 9 - lo - (b - a), np.uint8)])
    if not wide:
        return k, np.zeros(0, np.int64), np.zeros(0, np.uint32)
    lead, cp, b0 = _decode(data, lo, hi)
    fl = code_point_table().flags[cp]
    if not k.flags.writeable:
        k = k.copy()
    k[lead + 1] = fl
    spaces = (fl & WS) != 0
    if spaces.any():
        size = 2 + (b0[spaces] >= 0xE0) + (b0[spaces] >= 0xF0)
        for i in (1, 2, 3):
            k[lead[spaces][size > i] + 1 + i] = WS
    return k, lead, cp


def _decode(data: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions in data[lo:hi], code points, lead bytes) of the multi-byte characters there. The
    common 2-byte characters decode in a few operations; longer ones extend that on their subset."""
    end = min(hi + 3, len(data))
    buf = data[lo:end] if end == hi + 3 else np.concatenate([data[lo:end], np.zeros(hi + 3 - end, np.uint8)])
    lead = np.flatnonzero(buf[:hi - lo] >= 0xC0)
    b0 = buf[lead]
    cp = ((b0.astype(np.uint32) & 0x1F) << 6) | (buf[lead + 1] & 0x3F)
    longer = np.flatnonzero(b0 >= 0xE0)
    if len(longer):  # 3 bytes: 4 bits from the lead (the 2-byte formula took 5), 6 more
        at = lead[longer]
        cp3 = ((cp[longer] & 0x3FF) << 6) | (buf[at + 2] & 0x3F)
        four = np.flatnonzero(b0[longer] >= 0xF0)
        if len(four):  # 4 bytes: 3 bits from the lead, 6 more
            cp3[four] = np.minimum(((cp3[four] & 0x7FFF) << 6) | (buf[at[four] + 3] & 0x3F), 0x10FFFF)
        cp[longer] = cp3
    return lead, cp, b0


class _Block:
    """Per-document sums over one block of documents, 8 bytes (one u64 word) at a time: a class is
    one bit per byte, so popcount(word & mask) counts it in 8 bytes, and the words a document only
    partly covers are masked at its ends."""

    def __init__(self, offs: np.ndarray):
        self.at = offs >> 3
        self.low = _LOW[offs & 7]
        self.nonempty = self.at[1:] > self.at[:-1]

    def counts(self, bits: np.ndarray) -> np.ndarray:
        full = np.add.reduceat(np.bitwise_count(bits), self.at, dtype=np.int64)[:-1]
        part = np.bitwise_count(bits[self.at] & self.low).astype(np.int64)
        return np.where(self.nonempty, full, 0) - part[:-1] + part[1:]


def _block_counts(k: np.ndarray, offs: np.ndarray, out: np.ndarray) -> None:
    """Fill out[:, docs] (the planes, then word starts) for one block of docs: k as _classify lays
    it out, offs the docs' offsets from the block's start; out starts at zero."""
    n_words = int(offs[-1] >> 3) + 1
    w = k[1:1 + 8 * n_words].view(np.uint64)  # the block's bytes, 8 at a time
    prev = k[:8 * n_words].view(np.uint64)  # each byte's previous byte, in the same lane
    b = _Block(offs)
    present = int(np.bitwise_or.reduce(w))
    for i, mask in enumerate(_MASKS):
        if present & int(mask):  # a class absent from the whole block (nonprint, odd spaces...) stays 0
            out[i] = b.counts(w & mask)
    # A word starts at a non-space byte after a space byte. A doc's first byte starts one unless it
    # is a space, whatever precedes it: the caller adds the starts this missed.
    out[len(_MASKS)] = b.counts(~w & prev & _M_WS)


def _blocks(offs: np.ndarray, size: int) -> Iterator[tuple[int, int]]:
    """Consecutive doc ranges of about `size` bytes (a longer doc is a block of its own)."""
    n = len(offs) - 1
    cuts = np.unique(np.concatenate(([0], np.searchsorted(offs[:-1], np.arange(size, int(offs[-1]), size)), [n])))
    return zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True)


@dataclass
class CharCounts:
    counts: dict[str, np.ndarray]  # per doc: alpha, digit, upper, punct, space, nonprint, odd_space, words
    wide_scripts: np.ndarray  # non-ASCII letters per (source, script: 0 other, 1 + index in SCRIPTS)
    edge_ws: np.ndarray  # per doc: starts or ends with whitespace


def char_counts(texts: pl.Series, n_chars: np.ndarray | None = None, codes: np.ndarray | None = None,
                n_sources: int = 1) -> CharCounts:
    """Class counts per doc, a block of ~256 KiB of documents at a time (classified and counted
    while in cache). n_chars: the docs' lengths in characters, when the caller has them; codes:
    each doc's source (0..n_sources-1; all 0 when None), for the letters per script."""
    data, offs = byte_view(texts)
    n = len(offs) - 1
    if n_chars is None:
        n_chars = texts.str.len_chars().fill_null(0).to_numpy()
    if codes is None:
        codes = np.zeros(n, np.int64)
    wide = np.diff(offs) != np.asarray(n_chars, np.int64)  # docs holding multi-byte characters
    width = len(SCRIPTS) + 1
    planes = np.zeros((len(PLANES) + 1, n), np.int64)
    scripts = np.zeros(n_sources * width, np.int64)
    edge = np.zeros(n, bool)
    for d0, d1 in _blocks(offs, _BLOCK_BYTES):
        lo, hi = int(offs[d0]), int(offs[d1])
        local = offs[d0:d1 + 1] - lo
        k, lead, cp = _classify(data, lo, hi, bool(wide[d0:d1].any()))
        _block_counts(k, local, planes[:, d0:d1])
        first, last = local[:-1], local[1:]
        nonempty = last > first
        head = k[first + 1]
        planes[len(PLANES), d0:d1] += nonempty & ((head & WS) == 0) & ((k[first] & WS) == 0)
        edge[d0:d1] = nonempty & (((head | k[np.maximum(last, 1)]) & WS) != 0)
        if len(lead):
            letters = (k[lead + 1] & ALPHA) != 0
            sid = code_point_table().script[cp[letters]].astype(np.int64)
            src = codes[d0:d1]
            if (src == src[0]).all():  # one source in the block (the usual case): no doc lookups
                scripts[src[0] * width:(src[0] + 1) * width] += np.bincount(sid, minlength=width)
            else:
                doc = np.searchsorted(local, lead[letters], side="right") - 1
                scripts += np.bincount(src[doc] * width + sid, minlength=n_sources * width)
    counts = dict(zip(PLANES, planes, strict=False))
    counts["words"] = planes[len(PLANES)]
    return CharCounts(counts, scripts.reshape(n_sources, width), edge)


def script_counts(codes: np.ndarray, n_sources: int, cc: CharCounts) -> np.ndarray:
    """Letters per (source, script): the non-ASCII ones as looked up, the ASCII ones are Latin."""
    out = cc.wide_scripts.copy()
    letters = np.bincount(codes, weights=cc.counts["alpha"], minlength=n_sources).astype(np.int64)
    out[:, 1] += letters - out.sum(axis=1)
    return out
