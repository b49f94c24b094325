"""The profiler's one compiled pass over the Arrow buffers of the text column: character classes,
words, letters per script, the lines, and the near-duplicate sketch of every document.

Why compiled (measured in docs/benchmarks.md): in polars, a character class is a regex pass whose cost
grows with the matches, and the lines family (split, normalise, hash, distinct per document, the
documents' joined normal form) is a pass each; these two families dominated the profile. Everything
else the profiler computes is polars expressions.

The pass reads each document's UTF-8 bytes once with numba's bounds checking on (an index past a
buffer raises instead of reading on); ``scan_ref`` is its plain-Python definition, which the tests
hold it equal to.

Lines: the pass splits at "\\n" and hashes each line in the whitespace normal form of the ``exact``
level of ``stages/normalise.py`` (its words joined by one space: a polynomial hash of those bytes, so a
document's hash composes from its lines', see ``join_hashes``). A line that holds a character NFC might
change or compose (``chars.UNSTABLE``) is marked ``odd`` and not hashed: lines.py normalises those
with Normalisation and hashes them (``hash_strings``). Blank lines are left out.

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
from numba import njit

from corpus.stages.dedup_text import utf8_buffers

from .chars import ALPHA, DIGIT, NONPRINT, PUNCT, SPACE, UNSTABLE, UPPER, code_point_table
from .constants import SCRIPTS, TERMINAL_PUNCT

CLASSES = ("alpha", "digit", "upper", "punct", "space", "nonprint")
_BITS = (ALPHA, DIGIT, UPPER, PUNCT, SPACE, NONPRINT)
TERMINAL = 64  # a class bit of our own: the character is in TERMINAL_PUNCT
SKETCH = 8
WINDOW = 32  # bytes per window: the gear hash shifts 2 bits a byte, so 32 bytes fill its 64 bits
NONE = np.uint64(0xFFFFFFFFFFFFFFFF)  # an empty sketch slot
BASE = 0x100000001B3  # the line hash's base (odd: its powers are too)
_MIX = 0xFF51AFD7ED558CCD
_M64 = (1 << 64) - 1


@dataclass
class Lines:
    """The non-blank lines of a chunk, in document order."""

    doc: np.ndarray  # int64: the line's document
    lo: np.ndarray  # int64: its bytes in the chunk's buffer (without "\n" or a "\r" before it)
    hi: np.ndarray
    hash: np.ndarray  # uint64: hash_strings of the line's normal form (0 where odd)
    chars: np.ndarray  # int64: characters of its normal form (of the raw line where odd)
    size: np.ndarray  # int64: bytes of its normal form (of the raw line where odd)
    odd: np.ndarray  # bool: holds a character NFC might change (left to Normalisation)
    terminal: np.ndarray  # bool: its last non-whitespace character is in TERMINAL_PUNCT


@dataclass
class Scan:
    counts: dict[str, np.ndarray]  # per doc int64: the CLASSES and "words"
    scripts: np.ndarray  # int64 [doc, 1 + len(SCRIPTS)]: letters per script, column 0 other scripts
    sketch: np.ndarray  # uint64 [doc, SKETCH]: smallest window hashes ascending, NONE where fewer
    lines: Lines
    data: np.ndarray  # the chunk's UTF-8 bytes (the lines' spans point into them)
    offs: np.ndarray  # int64: where each document's bytes start in data (and the last one ends)


@dataclass(frozen=True)
class Tables:
    lanes: np.ndarray  # u64 per class-bits value: bit k of the class bits in byte lane k (one add counts
    #                    all), and 1 in lane 7 (characters)
    ascii_lanes: np.ndarray  # u64 per ASCII byte: its lanes, and 1 in lane 6 for " "
    flags: np.ndarray  # class bits per code point (chars.py), plus TERMINAL
    script: np.ndarray  # script per code point (0 other, 1 + index in SCRIPTS)
    gear: np.ndarray  # u64 per byte: the rolling hash's value of a byte (A-Z as a-z, digits as "0")
    ascii_shift: np.ndarray  # u64 per ASCII byte: 2 if it goes into the windows (not space or punctuation), else 0
    ascii_gear: np.ndarray  # u64 per ASCII byte: its gear value if it goes into the windows, else 0


def _gear_of(byte: int) -> int:
    if 65 <= byte <= 90:
        byte += 32
    elif 48 <= byte <= 57:
        byte = 48
    return _mix_int((byte + 1) * 0x9E3779B97F4A7C15 & _M64)


@cache
def tables() -> Tables:
    cpt = code_point_table()
    bits = np.arange(256, dtype=np.uint64)
    lanes = np.full(256, np.uint64(1) << np.uint64(56), np.uint64)
    for k in range(len(_BITS)):
        lanes |= ((bits >> np.uint64(k)) & np.uint64(1)) << np.uint64(8 * k)
    flags = cpt.flags.copy()
    flags[[ord(c) for c in TERMINAL_PUNCT]] |= TERMINAL
    ascii_lanes = lanes[flags[:256] & 63].copy()
    ascii_lanes[128:] = 0
    ascii_lanes[32] |= np.uint64(1) << np.uint64(48)
    gear = np.array([_gear_of(b) for b in range(256)], np.uint64)
    keep = ((ascii_lanes >> np.uint64(24)) | (ascii_lanes >> np.uint64(32))) & np.uint64(1) ^ np.uint64(1)
    keep[128:] = 0
    return Tables(lanes, ascii_lanes, flags, cpt.script, gear, keep * np.uint64(2), gear * keep)


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


@njit(inline="always")
def _span_hash(data, lo, hi, base):  # noqa: ANN001, ANN202
    """hash_strings of data[lo:hi], four bytes a step (h * BASE**4 + their own polynomial: the four
    multiplications do not wait on each other)."""
    b2 = base * base
    b3 = b2 * base
    b4 = b2 * b2
    h = np.uint64(0)
    i = lo
    while i + 4 <= hi:
        h = (h * b4 + np.uint64(data[i]) * b3 + np.uint64(data[i + 1]) * b2 + np.uint64(data[i + 2]) * base
             + np.uint64(data[i + 3]))
        i += 4
    while i < hi:
        h = h * base + np.uint64(data[i])
        i += 1
    return h


@njit(inline="always")
def _decode(data, i):  # noqa: ANN001, ANN202
    """The code point of the character whose first byte is data[i] (not ASCII)."""
    b = np.int64(data[i])
    if b < 0xE0:
        return ((b & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F)
    if b < 0xF0:
        return ((b & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F)
    return (((b & 0x07) << 18) | ((np.int64(data[i + 1]) & 0x3F) << 12) | ((np.int64(data[i + 2]) & 0x3F) << 6)
            | (np.int64(data[i + 3]) & 0x3F))


@njit(inline="always")
def _terminal(data, lo, hi, flags):  # noqa: ANN001, ANN202
    """1 if the last non-whitespace character of data[lo:hi] (there is one) is terminal punctuation."""
    j = hi - 1
    while j >= lo:
        while j > lo and (data[j] & 0xC0) == 0x80:
            j -= 1
        cp = np.int64(data[j]) if data[j] < 0x80 else _decode(data, j)
        f = flags[cp]
        if not f & SPACE:
            return np.int64((f >> 6) & 1)
        j -= 1
    return np.int64(0)


@njit(nogil=True, boundscheck=True, cache=True)
def _scan(data, offs, cap, lanes, ascii_lanes, flags, script, gear, ascii_shift, ascii_gear, n_scripts, m,
          window):  # noqa: ANN001, ANN202, C901
    n = len(offs) - 1
    for d in range(n):  # a slice would stop short of a document that passes the buffer: refuse it
        if offs[d] > offs[d + 1] or offs[d + 1] > len(data):
            raise IndexError("a document's bytes pass the end of the text buffer")
    counts = np.zeros((n, 7), np.int64)
    scripts = np.zeros((n, n_scripts), np.int64)
    sk = np.full((n, m), np.uint64(0xFFFFFFFFFFFFFFFF), np.uint64)
    # Per line (cap: at least the lines of the chunk): doc, start, end, and its words, whitespace
    # characters, spaces (" "), characters and UNSTABLE ones; the lines are judged after the walk (_lines).
    raw = np.zeros((8, cap), np.int64)
    n_lines = 0
    byte = np.uint64(255)
    mix = np.uint64(_MIX)
    for d in range(n):
        # Byte lanes of acc (flushed into c every 255 bytes and at each line end): the six classes,
        # spaces (" "), and characters.
        c = np.zeros(8, np.int64)
        acc = np.uint64(0)
        words = 0
        unstable = 0
        prev_ws = np.uint64(1)
        keep = np.uint64(0)  # the current character goes into the windows
        g = np.uint64(0)
        filled = 0
        top = np.uint64(0xFFFFFFFFFFFFFFFF)
        lo = offs[d]
        hi = offs[d + 1]
        start = lo  # the current line: where it starts, and the counts before it
        words0 = ws0 = sp0 = ch0 = un0 = 0
        # In blocks of at most 255 bytes (so of characters): no lane of acc can pass 255 before the
        # flush at each block's end (and at each line end).
        blk = lo
        while blk < hi:
            stop = min(hi, blk + 255)
            i = blk - 1
            for b in data[blk:stop]:  # a slice's bytes: no check per byte (5% on ASCII text)
                i += 1
                if b == 10:  # a line ends: its counts so far
                    for k in range(8):
                        c[k] += np.int64((acc >> np.uint64(8 * k)) & byte)
                    acc = np.uint64(0)
                    if words > words0:  # not blank
                        raw[0, n_lines], raw[1, n_lines], raw[2, n_lines], raw[3, n_lines] = d, start, i, words - words0
                        raw[4, n_lines], raw[5, n_lines], raw[6, n_lines] = c[4] - ws0, c[6] - sp0, c[7] - ch0
                        raw[7, n_lines] = unstable - un0
                        n_lines += 1
                    start = i + 1  # "\n" is not the next line's
                    words0, ws0, sp0, ch0, un0 = words, c[4] + 1, c[6], c[7] + 1, unstable
                if b < 0x80:  # ASCII: whether it goes into the windows is in its byte's tables
                    ln = ascii_lanes[b]
                    acc += ln
                    ws = (ln >> np.uint64(32)) & np.uint64(1)
                    words += np.int64(prev_ws & (ws ^ np.uint64(1)))
                    prev_ws = ws
                    shift = ascii_shift[b]
                    g = (g << shift) + ascii_gear[b]
                    filled += np.int64(shift)
                else:
                    if b >= 0xC0:  # a character starts (continuation bytes follow their lead)
                        cp = _decode(data, i)
                        f = flags[cp]
                        if f & ALPHA:
                            scripts[d, script[cp]] += 1
                        unstable += np.int64(f >> 7)
                        ln = lanes[f & 63]
                        acc += ln
                        ws = (ln >> np.uint64(32)) & np.uint64(1)
                        words += np.int64(prev_ws & (ws ^ np.uint64(1)))
                        prev_ws = ws
                        keep = (ws | ((ln >> np.uint64(24)) & np.uint64(1))) ^ np.uint64(1)
                    # Branch-free: a byte left out shifts nothing in and adds nothing.
                    g = (g << (keep + keep)) + gear[b] * keep
                    filled += np.int64(keep + keep)
                v = g * mix
                v ^= v >> np.uint64(29)
                if v < top and filled >= 2 * window:  # filled: twice the bytes in the windows
                    top = _keep(sk, d, v)
            for k in range(8):
                c[k] += np.int64((acc >> np.uint64(8 * k)) & byte)
            acc = np.uint64(0)
            blk = stop
        if words > words0:  # the last line
            raw[0, n_lines], raw[1, n_lines], raw[2, n_lines], raw[3, n_lines] = d, start, hi, words - words0
            raw[4, n_lines], raw[5, n_lines], raw[6, n_lines] = c[4] - ws0, c[6] - sp0, c[7] - ch0
            raw[7, n_lines] = unstable - un0
            n_lines += 1
        if 0 < filled < 2 * window:  # shorter than a window: the whole text is one
            v = g * mix
            _keep(sk, d, v ^ (v >> np.uint64(29)))
        for k in range(6):
            counts[d, k] = c[k]
        counts[d, 6] = words
    li, lh = _lines(data, raw[:, :n_lines], flags)
    return counts, scripts, sk, li, lh


@njit(inline="always")
def _words_hash(data, lo, hi, flags, base):  # noqa: ANN001, ANN202
    """hash_strings, characters and bytes of data[lo:hi] in the whitespace normal form: its words (runs
    of characters not SPACE) joined by one " "."""
    h = np.uint64(0)
    chars = size = 0
    gap = False  # whitespace since the last word
    i = lo
    while i < hi:
        b = data[i]
        n = 1 if b < 0x80 else (2 if b < 0xE0 else (3 if b < 0xF0 else 4))
        cp = np.int64(b) if b < 0x80 else _decode(data, i)
        if flags[cp] & SPACE:
            gap = True
        else:
            if gap and size:
                h = h * base + np.uint64(32)
                chars += 1
                size += 1
            gap = False
            for k in range(i, i + n):
                h = h * base + np.uint64(data[k])
            chars += 1
            size += n
        i += n
    return h, chars, size


@njit(nogil=True, boundscheck=True, cache=True)
def _lines(data, raw, flags):  # noqa: ANN001, ANN202
    """The lines' (doc, lo, hi, chars, odd, terminal, size) and hashes, from the walk's raw counts."""
    n = raw.shape[1]
    li = np.zeros((7, n), np.int64)
    lh = np.zeros(n, np.uint64)
    base = np.uint64(BASE)
    for j in range(n):
        start, end = raw[1, j], raw[2, j]
        cr = np.int64(data[end - 1] == 13)  # a "\r" before the line end is not part of the line
        end -= cr
        n_ws = raw[4, j] - cr
        chars = raw[6, j] - cr
        odd = np.int64(raw[7, j] > 0)  # an UNSTABLE character: NFC might change it (lines.py)
        li[0, j], li[1, j], li[2, j], li[3, j] = raw[0, j], start, end, chars
        li[4, j], li[5, j], li[6, j] = odd, _terminal(data, start, end, flags), end - start
        if odd:
            continue
        if n_ws == raw[5, j] and n_ws == raw[3, j] - 1:  # its whitespace all " ", one between words
            lh[j] = _span_hash(data, start, end, base)
        else:  # stray whitespace (most such lines are ASCII): the normal form's hash, in place
            lh[j], li[3, j], li[6, j] = _words_hash(data, start, end, flags, base)
    return li, lh


@njit(nogil=True, boundscheck=True, cache=True)
def _hash_strings(data, offs):  # noqa: ANN001, ANN202
    n = len(offs) - 1
    out = np.zeros(n, np.uint64)
    base = np.uint64(BASE)
    for d in range(n):
        h = np.uint64(0)
        for i in range(offs[d], offs[d + 1]):
            h = h * base + np.uint64(data[i])
        out[d] = h
    return out


def hash_strings(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The line hash of each string: sum of its bytes b_i * BASE**(n - 1 - i), mod 2**64."""
    offs, data = utf8_buffers(texts)
    return _hash_strings(data, np.ascontiguousarray(offs, np.int64))


@njit(nogil=True, boundscheck=True, cache=True)
def _join(doc, h, size, n_docs):  # noqa: ANN001, ANN202
    out = np.zeros(n_docs, np.uint64)
    base = np.uint64(BASE)
    last = -1
    for j in range(len(doc)):
        d = doc[j]
        if d == last:  # H(x + " " + y) = (H(x) * BASE + 32) * BASE ** len(y) + H(y)
            p = np.uint64(1)
            x = base
            e = size[j]
            while e:
                if e & 1:
                    p *= x
                x *= x
                e >>= 1
            out[d] = (out[d] * base + np.uint64(32)) * p + h[j]
        else:
            out[d] = h[j]
            last = d
    return out


def join_hashes(doc: np.ndarray, h: np.ndarray, size: np.ndarray, n_docs: int) -> np.ndarray:
    """Per document, hash_strings of its lines joined by " " (doc: each line's document, in order;
    h, size: each line's hash and length in bytes); 0 for a document without lines."""
    return _join(np.ascontiguousarray(doc, np.int64), np.ascontiguousarray(h, np.uint64),
                 np.ascontiguousarray(size, np.int64), n_docs)


@njit(nogil=True, boundscheck=True, cache=True)
def _firsts(doc, h):  # noqa: ANN001, ANN202
    """Whether each line is the first with its hash in its document (documents' lines are contiguous)."""
    first = np.ones(len(doc), np.bool_)
    j = 0
    while j < len(doc):
        k = j
        while k < len(doc) and doc[k] == doc[j]:
            k += 1
        if k - j > 1:
            order = np.argsort(h[j:k], kind="mergesort")  # stable: the earliest of equal hashes first
            for t in range(1, len(order)):
                if h[j + order[t]] == h[j + order[t - 1]]:
                    first[j + order[t]] = False
        j = k
    return first


def first_lines(doc: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Whether each line (doc: its document, lines of a document together, in order) is the first of
    its document with its hash."""
    return _firsts(np.ascontiguousarray(doc, np.int64), np.ascontiguousarray(h, np.uint64))


@njit(nogil=True, boundscheck=True, cache=True)
def _copy_spans(data, lo, hi):  # noqa: ANN001, ANN202
    offs = np.zeros(len(lo) + 1, np.int64)
    for j in range(len(lo)):
        offs[j + 1] = offs[j] + hi[j] - lo[j]
    out = np.empty(offs[-1], np.uint8)
    for j in range(len(lo)):
        out[offs[j]:offs[j + 1]] = data[lo[j]:hi[j]]
    return offs, out


def spans(data: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> pa.LargeStringArray:
    """The byte spans [lo, hi) of data (whole characters) as strings."""
    offs, out = _copy_spans(data, np.ascontiguousarray(lo, np.int64), np.ascontiguousarray(hi, np.int64))
    return pa.LargeStringArray.from_buffers(len(lo), pa.py_buffer(offs), pa.py_buffer(out))


def scan(texts: pa.Array | pa.ChunkedArray, newlines: int) -> Scan:
    """Every document's class counts, words, letters per script, lines and sketch (null texts:
    nothing). newlines: the "\\n" in the texts (bounds the lines)."""
    offs, data = utf8_buffers(texts)
    t = tables()
    n = len(offs) - 1
    counts, scripts, sketch, li, lh = _scan(data, np.ascontiguousarray(offs, np.int64), newlines + n, t.lanes,
                                            t.ascii_lanes, t.flags, t.script, t.gear, t.ascii_shift, t.ascii_gear,
                                            len(SCRIPTS) + 1, SKETCH, WINDOW)
    # ASCII letters were not looked up per script in the loop: they are Latin.
    scripts[:, 1 + SCRIPTS.index("Latin")] += counts[:, 0] - scripts.sum(axis=1)
    lines = Lines(li[0], li[1], li[2], lh, li[3], li[6], li[4].astype(bool), li[5].astype(bool))
    return Scan({c: counts[:, i] for i, c in enumerate((*CLASSES, "words"))}, scripts, sketch, lines, data,
                np.asarray(offs, np.int64))


# ---------------------------------------------------------------- the plain-Python definition


def _mix_int(h: int) -> int:
    h = (h * _MIX) & _M64
    return h ^ (h >> 29)


def hash_ref(s: str) -> int:
    h = 0
    for b in s.encode():
        h = (h * BASE + b) & _M64
    return h


def scan_ref(text: str) -> tuple[dict[str, int], list[int], list[int], list[tuple[str, int, bool, bool]]]:
    """One document, a character at a time: (counts by CLASSES and "words", letters per script as in
    Scan.scripts, sketch ascending, non-blank lines as (line, its words joined by " " or None where odd,
    odd, terminal))."""
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
    lines = []
    for line in text.split("\n"):
        line = line[:-1] if line.endswith("\r") else line
        space = [bool(t.flags[ord(ch)] & SPACE) for ch in line]
        if all(space):
            continue
        odd = any(t.flags[ord(ch)] & UNSTABLE for ch in line)
        words = "".join(" " if s else ch for s, ch in zip(space, line, strict=True)).split()
        last = next(ch for ch, s in zip(reversed(line), reversed(space), strict=True) if not s)
        lines.append((line, None if odd else " ".join(words), odd, last in TERMINAL_PUNCT))
    return counts, scripts, sorted(hashes)[:SKETCH], lines
