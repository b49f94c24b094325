"""The profiler's one compiled pass: character classes, words, letters per script and the
near-duplicate sketch of every document, read from the Arrow buffers of the text column.

Why compiled: polars counts a character class with a regex pass whose cost grows with the matches,
and the six classes, words and eleven scripts took several times what reading the JSONL took
(docs/benchmarks.md); the sketch needs every byte of every document too. Everything else the
profiler computes is polars expressions.

The pass reads each document's UTF-8 bytes once with numba's bounds checking on (an index past a
buffer raises instead of reading on); ``scan_ref`` is its plain-Python definition, which the tests
hold it equal to.

The sketch (``SKETCH`` values per document, for neardup.py) only picks which documents get
compared: the smallest hashes of the document's windows of ``WINDOW`` bytes once whitespace and
punctuation are left out, ASCII letters lowercased and digits made one (a rolling "gear" hash; the
choices follow what minhash_dedup's normalisation ignores). Near duplicates share most windows, so
they share sketch values; the comparison itself is minhash_dedup's (neardup.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import pyarrow as pa
from corpus.stages.dedup_text import utf8_buffers
from numba import njit

from .chars import ALPHA, DIGIT, NONPRINT, PUNCT, SPACE, UPPER, code_point_table
from .constants import SCRIPTS

CLASSES = ("alpha", "digit", "upper", "punct", "space", "nonprint")
_BITS = (ALPHA, DIGIT, UPPER, PUNCT, SPACE, NONPRINT)
SKETCH = 8
WINDOW = 32  # bytes per window: the gear hash shifts 2 bits a byte, so 32 bytes fill its 64 bits
NONE = np.uint64(0xFFFFFFFFFFFFFFFF)  # an empty sketch slot
_MIX = 0xFF51AFD7ED558CCD
_M64 = (1 << 64) - 1


@dataclass
class Scan:
    counts: dict[str, np.ndarray]  # per doc int64: the CLASSES and "words"
    scripts: np.ndarray  # int64 [doc, 1 + len(SCRIPTS)]: letters per script, column 0 other scripts
    sketch: np.ndarray  # uint64 [doc, SKETCH]: smallest window hashes ascending, NONE where fewer


@dataclass(frozen=True)
class Tables:
    lanes: np.ndarray  # u64 per class-bits value: bit k of the class bits in byte lane k (one add counts all)
    flags: np.ndarray  # class bits per code point (chars.py)
    script: np.ndarray  # script per code point (0 other, 1 + index in SCRIPTS)
    gear: np.ndarray  # u64 per byte: the rolling hash's value of a byte (A-Z as a-z, digits as "0")


def _gear_of(byte: int) -> int:
    if 65 <= byte <= 90:
        byte += 32
    elif 48 <= byte <= 57:
        byte = 48
    return _mix_int((byte + 1) * 0x9E3779B97F4A7C15 & _M64)


@cache
def tables() -> Tables:
    cpt = code_point_table()
    flags = np.arange(256, dtype=np.uint64)
    lanes = np.zeros(256, np.uint64)
    for k in range(len(_BITS)):
        lanes |= ((flags >> np.uint64(k)) & np.uint64(1)) << np.uint64(8 * k)
    gear = np.array([_gear_of(b) for b in range(256)], np.uint64)
    return Tables(lanes, cpt.flags, cpt.script, gear)


@njit(nogil=True, boundscheck=True, cache=True)
def _keep(sk, d, v):  # noqa: ANN001, ANN202 (numba infers the types)
    """Insert v into document d's ascending sketch row unless held; returns the row's largest value."""
    m = sk.shape[1]
    for j in range(m):
        if sk[d, j] == v:
            return sk[d, m - 1]
    j = m - 1
    while j > 0 and sk[d, j - 1] > v:
        sk[d, j] = sk[d, j - 1]
        j -= 1
    sk[d, j] = v
    return sk[d, m - 1]


@njit(nogil=True, boundscheck=True, cache=True)
def _scan(data, offs, lanes, flags, script, gear, n_scripts, m, window):  # noqa: ANN001, ANN202, C901
    n = len(offs) - 1
    counts = np.zeros((n, 7), np.int64)
    scripts = np.zeros((n, n_scripts), np.int64)
    sk = np.full((n, m), np.uint64(0xFFFFFFFFFFFFFFFF), np.uint64)
    byte = np.uint64(255)
    mix = np.uint64(_MIX)
    for d in range(n):
        c = np.zeros(6, np.int64)
        acc = np.uint64(0)  # class counts in byte lanes, flushed every 255 characters
        held = 0
        words = 0
        prev_ws = np.uint64(1)
        keep = np.uint64(0)  # the current character goes into the windows
        g = np.uint64(0)
        filled = 0
        top = np.uint64(0xFFFFFFFFFFFFFFFF)
        for i in range(offs[d], offs[d + 1]):
            b = np.int64(data[i])
            if b < 0x80 or b >= 0xC0:  # a character starts here (continuation bytes follow their lead)
                f = b
                if b >= 0x80:
                    if b < 0xE0:
                        cp = ((b & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F)
                    elif b < 0xF0:
                        cp = ((b & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F)
                    else:
                        cp = (((b & 0x07) << 18) | ((np.int64(data[i + 1]) & 0x3F) << 12)
                              | ((np.int64(data[i + 2]) & 0x3F) << 6) | (np.int64(data[i + 3]) & 0x3F))
                    f = np.int64(flags[cp])
                    if f & ALPHA:
                        scripts[d, script[cp]] += 1
                else:
                    f = np.int64(flags[b])
                ln = lanes[f]
                acc += ln
                ws = (ln >> np.uint64(32)) & np.uint64(1)
                words += np.int64(prev_ws & (ws ^ np.uint64(1)))
                prev_ws = ws
                keep = (ws | ((ln >> np.uint64(24)) & np.uint64(1))) ^ np.uint64(1)
                held += 1
                if held == 255:
                    for k in range(6):
                        c[k] += np.int64((acc >> np.uint64(8 * k)) & byte)
                    acc = np.uint64(0)
                    held = 0
            # Branch-free: a byte left out shifts nothing in and adds nothing.
            g = (g << (keep + keep)) + gear[b] * keep
            filled += np.int64(keep)
            v = g * mix
            v ^= v >> np.uint64(29)
            if v < top and filled >= window:
                top = _keep(sk, d, v)
        if 0 < filled < window:  # shorter than a window: the whole text is one
            v = g * mix
            _keep(sk, d, v ^ (v >> np.uint64(29)))
        for k in range(6):
            counts[d, k] = c[k] + np.int64((acc >> np.uint64(8 * k)) & byte)
        counts[d, 6] = words
    return counts, scripts, sk


def scan(texts: pa.Array | pa.ChunkedArray) -> Scan:
    """Every document's class counts, words, letters per script and sketch (null texts: zeros)."""
    offs, data = utf8_buffers(texts)
    t = tables()
    counts, scripts, sketch = _scan(data, np.ascontiguousarray(offs, np.int64), t.lanes, t.flags, t.script,
                                    t.gear, len(SCRIPTS) + 1, SKETCH, WINDOW)
    # ASCII letters were not looked up per script in the loop: they are Latin.
    scripts[:, 1 + SCRIPTS.index("Latin")] += counts[:, 0] - scripts.sum(axis=1)
    return Scan({c: counts[:, i] for i, c in enumerate((*CLASSES, "words"))}, scripts, sketch)


# ---------------------------------------------------------------- the plain-Python definition


def _mix_int(h: int) -> int:
    h = (h * _MIX) & _M64
    return h ^ (h >> 29)


def scan_ref(text: str) -> tuple[dict[str, int], list[int], list[int]]:
    """One document, a character at a time: (counts by CLASSES and "words", letters per script as in
    Scan.scripts, sketch ascending)."""
    t = tables()
    counts = dict.fromkeys((*CLASSES, "words"), 0)
    scripts = [0] * (len(SCRIPTS) + 1)
    kept = bytearray()  # the bytes that go into the windows
    prev_ws = True
    for ch in text:
        f = int(t.flags[ord(ch)])
        for name, bit in zip(CLASSES, _BITS, strict=True):
            counts[name] += bool(f & bit)
        if f & ALPHA:
            scripts[int(t.script[ord(ch)])] += 1
        ws = bool(f & SPACE)
        counts["words"] += prev_ws and not ws
        prev_ws = ws
        if not (ws or f & PUNCT):
            kept += ch.encode()
    hashes = set()
    for end in range(min(WINDOW, len(kept)), len(kept) + 1) if kept else ():
        g = 0
        for byte in kept[max(0, end - WINDOW):end]:
            g = ((g << 2) + _gear_of(byte)) & _M64
        hashes.add(_mix_int(g))
    return counts, scripts, sorted(hashes)[:SKETCH]
