"""Every per-document text figure in one compiled pass over the UTF-8 bytes of a chunk.

numpy and polars need a pass per figure (each class, words, line splitting, whitespace-normalised
line hashes, mojibake), and those passes, not the arithmetic, were the profiler's cost. This numba
kernel walks each document once and keeps its state in registers:

* blocks of 225 bytes go through a branch-free loop LLVM vectorises: ASCII character classes by
  ranges, word starts (a non-space after a space), newlines, continuation bytes (so characters are
  counted without visiting them) and "events" (whitespace but " " and "\n", doubled whitespace),
  in uint8 counters that cannot overflow;
* a block with newlines is searched for them 8 bytes at a time; a block with events is walked
  byte by byte until its line is known to need normalising. The walks only record line spans:
  every bit of extra work in them made LLVM spill their loop's state (2-4x slower);
* non-ASCII characters get a pass of their own per document (_wide_pass): classes from the
  code-point table (each class a lane of a u64, so one addition counts them all), scripts,
  mojibake (U+FFFD, UTF-8 read as cp1252, flagged MOJI_END in the table);
* lines: split at "\n", stripped, inner whitespace runs collapsed to one space, blank ones
  dropped. A line already in that form (most) is hashed straight from the data, 8 bytes at a
  time; only the others are normalised, byte by byte, into the same hash. A document holding
  non-ASCII whitespace goes through the character-at-a-time reference path (_doc_slow), which the
  tests hold equal to the fast one.

The tables come from chars.py (built by polars' regex engine, so "alpha" means what ``\\p{L}``
means). The kernel releases the GIL, so worker threads run it side by side; its arrays reach the
helpers borrowed (nbutil.py), without per-call reference counting. Hashes are our own
(64-bit multiply-rotate words, a murmur finaliser): every path (raw JSONL, shards, frames) goes
through this kernel, so every path agrees on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import polars as pl
import pyarrow as pa
from numba import njit, uint8

from corpus.stages.dedup_text import utf8_buffers

from .chars import ALPHA, SPACE, code_point_table
from .constants import EMPTY_KEY, MOJIBAKE_AFTER_A, TERMINAL_PUNCT
from .nbutil import HIGH, borrowed, ctz, load8, popcount

# Rows of the per-document output, in kernel order.
OUT = ("n_chars", "words", "newlines", "alpha", "digit", "upper", "punct", "space", "nonprint",
       "nb_lines", "distinct_lines", "terminal_lines", "replacements")
_N_CLASSES = 6  # alpha digit upper punct space nonprint: lanes 0-5; lane 4 (space) is "whitespace"
_K1 = np.uint64(0x9E3779B97F4A7C15)
_K3 = np.uint64(0xFF51AFD7ED558CCD)
_K4 = np.uint64(0xC4CEB9FE1A85EC53)
_SEED = np.uint64(0x243F6A8885A308D3)
_SEED_B = np.uint64(0x13198A2E03707344)
_EMPTY = np.uint64(EMPTY_KEY)
# A document's blocks: the first byte, then 7 x 32 bytes for _block's loop (LLVM vectorises it 32 bytes at a
# time: a remainder would run byte by byte, and 255 bytes left one of 30). Under 256: uint8 counters.
_BLOCK = 225
_BYTE = np.uint64(0xFF)
_TERMINAL = np.array(sorted(ord(c) for c in TERMINAL_PUNCT), np.int64)
MOJI_END = 64  # a class-bits flag beyond chars.py's six: U+FFFD and MOJIBAKE_AFTER_A (tables())


@njit(inline="always")
def _mix(h, w):  # noqa: ANN001, ANN202 (numba infers the types)
    h = (h ^ w) * _K1
    return (h << np.uint64(29)) | (h >> np.uint64(35))


@njit(inline="always")
def _fmix(h):  # noqa: ANN001, ANN202
    h ^= h >> np.uint64(33)
    h *= _K3
    h ^= h >> np.uint64(33)
    h *= _K4
    return h ^ (h >> np.uint64(33))


@njit(nogil=True, cache=True)
def count_newlines(a):  # noqa: ANN001, ANN202
    """Count of "\\n" in a uint8 array (uint8 counts per 224 bytes let the loop vectorise; no GIL,
    unlike bytes.count, so threads count side by side)."""
    n = 0
    for blk in range(0, len(a), 224):
        s = a[blk:blk + 224]
        c = uint8(0)
        for i in range(len(s)):
            c = uint8(c + uint8(s[i] == uint8(10)))
        n += c
    return n


@njit(inline="always")
def _newlines(w):  # noqa: ANN001, ANN202
    """High bit set in each byte of w that is "\n" (exact: no carries between bytes)."""
    low = np.uint64(0x7F7F7F7F7F7F7F7F)
    x = w ^ np.uint64(0x0A0A0A0A0A0A0A0A)
    return ~(((x & low) + low) | x | low)


@njit(inline="always")
def _decode(data, i):  # noqa: ANN001, ANN202
    """(code point, size) of the multi-byte character whose lead byte is at i (valid UTF-8)."""
    b = np.int64(data[i])
    if b < 0xE0:
        return ((b & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F), 2
    if b < 0xF0:
        return ((b & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F), 3
    return (((b & 0x07) << 18) | ((np.int64(data[i + 1]) & 0x3F) << 12) | ((np.int64(data[i + 2]) & 0x3F) << 6)
            | (np.int64(data[i + 3]) & 0x3F)), 4


@njit(inline="always")
def _last_char(data, lo, hi):  # noqa: ANN001, ANN202
    """Code point of the character ending at hi (> lo)."""
    j = hi - 1
    while j > lo and (data[j] & 0xC0) == 0x80:
        j -= 1
    if data[j] < 128:
        return np.int64(data[j])
    return _decode(data, j)[0]


@njit(inline="always")
def _span_hash(data, lo, hi):  # noqa: ANN001, ANN202
    """Hash of data[lo:hi] (a line already in normal form): its 8-byte words, even ones into one
    lane and odd ones into another (two multiply chains run side by side), the last word padded
    with zero bytes, then the length."""
    a = _SEED
    b = _SEED_B
    p = lo
    while p + 16 <= hi:
        a = _mix(a, load8(data, p))
        b = _mix(b, load8(data, p + 8))
        p += 16
    if p + 8 <= hi:
        a = _mix(a, load8(data, p))
        p += 8
        if p < hi:
            b = _mix(b, load8(data, p) & ((np.uint64(1) << np.uint64(8 * (hi - p))) - np.uint64(1)))
    elif p < hi:
        a = _mix(a, load8(data, p) & ((np.uint64(1) << np.uint64(8 * (hi - p))) - np.uint64(1)))
    return _fmix(_mix(_mix(a, b), np.uint64(hi - lo)))


@njit(cache=True)
def _normal_hash(data, lo, hi, lane_of_byte, lane_of_flags, cp_flags):  # noqa: ANN001, ANN202
    """(hash, chars, last code point) of data[lo:hi] stripped with whitespace runs made one space:
    the same hash _span_hash gives the normal form."""
    h = _SEED
    h2 = _SEED_B
    full = 0  # words hashed so far: word k goes to lane k % 2
    acc = np.uint64(0)
    n_acc = 0
    size_out = 0
    chars = 0
    last = 0
    pending = False
    i = lo
    while i < hi:
        b = data[i]
        if b < 128:
            cp = np.int64(b)
            size = 1
            ws = (lane_of_byte[b] >> np.uint64(32)) & np.uint64(1)
        else:
            cp, size = _decode(data, i)
            ws = (lane_of_flags[cp_flags[cp]] >> np.uint64(32)) & np.uint64(1)
        if ws:
            pending = chars > 0
        else:
            for j in range(-1 if pending else 0, size):  # a pending space (j = -1), then the char
                acc |= np.uint64(32 if j < 0 else data[i + j]) << np.uint64(8 * n_acc)
                n_acc += 1
                if n_acc == 8:
                    if full & 1:
                        h2 = _mix(h2, acc)
                    else:
                        h = _mix(h, acc)
                    full += 1
                    acc = np.uint64(0)
                    n_acc = 0
            size_out += size + pending
            chars += 1 + pending
            pending = False
            last = cp
        i += size
    if n_acc:
        if full & 1:
            h2 = _mix(h2, acc)
        else:
            h = _mix(h, acc)
    return _fmix(_mix(_mix(h, h2), np.uint64(size_out))), chars, last


@njit(inline="always")
def _prev_char(data, lo, i):  # noqa: ANN001, ANN202
    """(code point, start) of the character ending at i (-1 at the document's start lo)."""
    if i <= lo:
        return -1, i
    j = i - 1
    while j > lo and (data[j] & 0xC0) == 0x80:
        j -= 1
    return (np.int64(data[j]) if data[j] < 128 else _decode(data, j)[0]), j


@njit(cache=True)
def _wide_pass(data, lo, hi, cp_flags, lane_of_flags, cp_script, sc):  # noqa: ANN001, ANN202
    """The non-ASCII characters of a document, in a loop of their own (done in the main walks, their
    work made LLVM spill that loop's many live values: 3x slower on Cyrillic): (ok, their counts per
    class, mojibake ends); letters counted per script in sc. ok False: one is whitespace (the
    document takes _doc_slow). ASCII is skipped 8 bytes at a time."""
    c0 = c1 = c2 = c3 = c4 = c5 = repl = 0
    lanes = np.uint64(0)
    held = 0  # characters in lanes (8-bit lanes: flushed before 256)
    i = lo
    while i < hi:
        if i + 8 <= hi:
            m = load8(data, i) & HIGH
            if m == 0:
                i += 8
                continue
            i += ctz(m) >> 3
        b = data[i]
        if b < 0xC0:  # ASCII, or a continuation byte (of the character before)
            i += 1
            continue
        cp, size = _decode(data, i)
        f = cp_flags[cp]
        if f & SPACE:
            return False, 0, 0, 0, 0, 0, 0, 0
        lanes += lane_of_flags[f]
        held += 1
        if held == 255:
            c0, c1, c2, c3, c4, c5 = _add_lanes(lanes, c0, c1, c2, c3, c4, c5)
            lanes = np.uint64(0)
            held = 0
        if f & ALPHA:
            sc[cp_script[cp]] += 1
        repl += _moji(data, lo, i, cp, f)
        i += size
    c0, c1, c2, c3, c4, c5 = _add_lanes(lanes, c0, c1, c2, c3, c4, c5)
    return True, c0, c1, c2, c3, c4, c5, repl


@njit(inline="always")
def _add_lanes(lanes, c0, c1, c2, c3, c4, c5):  # noqa: ANN001, ANN202
    return (c0 + np.int64(lanes & _BYTE), c1 + np.int64((lanes >> np.uint64(8)) & _BYTE),
            c2 + np.int64((lanes >> np.uint64(16)) & _BYTE), c3 + np.int64((lanes >> np.uint64(24)) & _BYTE),
            c4 + np.int64((lanes >> np.uint64(32)) & _BYTE), c5 + np.int64((lanes >> np.uint64(40)) & _BYTE))


@njit(inline="always")
def _moji(data, lo, i, cp, f):  # noqa: ANN001, ANN202
    """1 where the non-ASCII character cp (class bits f) at data[i] of a document starting at lo ends
    a mojibake sequence (constants.MOJIBAKE_AFTER_A), else 0. Only characters flagged MOJI_END can
    (U+FFFD and those after an Ã or Â)."""
    if not f & MOJI_END:
        return 0
    return _moji_end(data, lo, i, cp)


@njit(cache=True)
def _moji_end(data, lo, i, cp):  # noqa: ANN001, ANN202
    """_moji for a flagged character: the characters before it are decoded. Not inlined: the rare
    path's code inlined into the walks made LLVM compile their hot loops three times slower."""
    if cp == 0xFFFD:
        return 1
    p1, s1 = _prev_char(data, lo, i)
    if p1 == 0xC3 or p1 == 0xC2 or (cp == 0x20AC and p1 == 0xE2):
        return 1
    return int(cp == 0xBF and p1 == 0xBB and _prev_char(data, lo, s1)[0] == 0xEF)


@njit(inline="always")
def _add_line(d, lo, hi, h, chars, last, line_doc, line_hash, line_lo, line_hi, line_chars, n_lines,  # noqa: ANN001, ANN202
              terminal):
    """Record one non-blank line; returns 1 if it ends in terminal punctuation."""
    line_doc[n_lines] = d
    line_hash[n_lines] = h
    line_lo[n_lines] = lo
    line_hi[n_lines] = hi
    line_chars[n_lines] = chars
    for k in range(len(terminal)):
        if last == terminal[k]:
            return 1
    return 0


@njit(cache=True)
def _doc_slow(data, lo, hi, d, lane_of_byte, lane_of_flags, cp_flags, cp_script, terminal, sc,  # noqa: ANN001, ANN202, C901
              line_doc, line_hash, line_lo, line_hi, line_chars, n_lines):
    """One document, a character at a time: any text (the fast path's reference, and its fallback
    for documents holding non-ASCII whitespace). Returns the counts and the new line count."""
    c = np.zeros(6, np.int64)
    words = newlines = cont = repl = nb = term = 0
    prev = True
    dk = _SEED
    line_start = lo
    i = lo
    while i <= hi:
        if i == hi or data[i] == 10:
            h, lc, last = _normal_hash(data, line_start, i, lane_of_byte, lane_of_flags, cp_flags)
            if lc > 0:
                term += _add_line(d, line_start, i, h, lc, last, line_doc, line_hash, line_lo, line_hi, line_chars,
                                  n_lines, terminal)
                n_lines += 1
                nb += 1
                dk = _mix(dk, h)
            if i == hi:
                break
            newlines += 1
            c[4] += 1
            prev = True
            i += 1
            line_start = i
            continue
        b = data[i]
        if b < 128:
            cp = np.int64(b)
            size = 1
            f = cp_flags[cp]
        else:
            cp, size = _decode(data, i)
            f = cp_flags[cp]
            repl += _moji(data, lo, i, cp, f)
            if f & ALPHA:
                sc[cp_script[cp]] += 1
        for k in range(6):
            c[k] += (f >> k) & 1
        ws = (f & SPACE) != 0
        if prev and not ws:
            words += 1
        prev = ws
        cont += size - 1
        i += size
    return (hi - lo - cont, words, newlines, c, nb, term, repl, dk, n_lines)


@njit(inline="always")
def _clean_line(data, lo, hi, wide):  # noqa: ANN001, ANN202
    """(hash, chars, last code point) of a non-empty line already in normal form; wide: it may hold
    non-ASCII characters."""
    return _span_hash(data, lo, hi), hi - lo - (_conts(data, lo, hi) if wide else 0), _last_char(data, lo, hi)


@njit(inline="always")
def _ascii(x):  # noqa: ANN001, ANN202
    """Class bits of an ASCII byte by ranges (vectorisable, unlike a table lookup); a test checks
    them against the regex-built table. Bytes >= 0x80 get no class."""
    u = uint8
    alpha = u(u(u(x | u(32)) - u(97)) < u(26))
    upper = u(u(x - u(65)) < u(26))
    digit = u(u(x - u(48)) < u(10))
    punct = u(((u(x - u(33)) < u(15)) & (x != u(36)) & (x != u(43))) | (x == u(58)) | (x == u(59)) | (x == u(63))
              | (x == u(64)) | (u(x - u(91)) < u(3)) | (x == u(95)) | (x == u(123)) | (x == u(125)))
    nonprint = u(((x < u(32)) & (x != u(9)) & (x != u(10)) & (x != u(13))) | (x == u(127)))
    return alpha, digit, upper, punct, _ws(x), nonprint


@njit(inline="always")
def _ws(x):  # noqa: ANN001, ANN202
    return uint8((x == uint8(32)) | (uint8(x - uint8(9)) < uint8(5)))


@njit(inline="always")
def _block(data, lo, hi):  # noqa: ANN001, ANN202
    """The branch-free, vectorised part of a block: over data[lo + 1:hi] (at most 254 bytes, so uint8
    lanes cannot overflow), ASCII class counts, word starts, newlines, continuation bytes (a
    character's bytes after its first) and "events": whitespace but " " and "\n", whitespace after
    whitespace (but "\n" after "\n", a blank line). The caller adds the block's first byte."""
    u = uint8
    s = data[lo + 1:hi]
    p = data[lo:hi - 1]  # each byte's predecessor
    a0 = a1 = a2 = a3 = a4 = a5 = words = nls = conts = events = u(0)
    for i in range(len(s)):
        x = s[i]
        al, dg, up, pu, sp, npr = _ascii(x)
        wy = _ws(p[i])
        a0 = u(a0 + al)
        a1 = u(a1 + dg)
        a2 = u(a2 + up)
        a3 = u(a3 + pu)
        a4 = u(a4 + sp)
        a5 = u(a5 + npr)
        # Every intermediate is cast back to uint8: numba computes integer operations in 64 bits, and
        # LLVM then left part of this loop in 64-bit lanes (four times the work).
        words = u(words + u(wy & u(sp ^ u(1))))
        nl = u(x == u(10))
        nls = u(nls + nl)
        conts = u(conts + u(u(x & u(0xC0)) == u(0x80)))
        other_ws = u(u(u(x - u(9)) < u(5)) & u(nl ^ u(1)))
        doubled = u(u(sp & wy) & u(u(nl & u(p[i] == u(10))) ^ u(1)))
        events = u(events + u(other_ws | doubled))
    return a0, a1, a2, a3, a4, a5, words, nls, conts, events


@njit(inline="always")
def _conts(data, lo, hi):  # noqa: ANN001, ANN202
    """Continuation bytes (10xxxxxx) in data[lo:hi], 8 bytes at a time."""
    n = 0
    i = lo
    while i + 8 <= hi:
        w = load8(data, i)
        n += popcount(w & ~(w << np.uint64(1)) & HIGH)
        i += 8
    for j in range(i, hi):
        n += (data[j] & 0xC0) == 0x80
    return n


@njit(cache=True)
def _doc_fast(data, lo, hi, d, lane_of_byte, lane_of_flags, cp_flags, cp_script, terminal, sc,  # noqa: ANN001, ANN202, C901
              line_doc, line_hash, line_lo, line_hi, line_chars, n_lines):
    """One document in blocks of _BLOCK bytes. _block sums the ASCII classes and word starts and counts
    stops (newlines and lead bytes) and "events" (whitespace that is not a lone " " inside a line). A block
    with newlines or non-ASCII characters is searched for them; one with events is walked byte by
    byte. Returns ok=False (nothing recorded) for a document holding non-ASCII whitespace:
    _doc_slow takes it."""
    c0 = c1 = c2 = c3 = c4 = c5 = 0
    words = newlines = cont = repl = nb = term = 0
    prev = 1
    dk = _SEED
    line_start = lo
    line_odd = 0
    first_line = n_lines
    k = 0  # lines recorded (spans) so far, from line_lo[n_lines]
    wide = False  # the document has non-ASCII characters (_wide_pass)
    for blk in range(lo, hi, _BLOCK):
        end = min(blk + _BLOCK, hi)
        prev_in = prev
        x = data[blk]  # the block's first byte follows the previous block's last
        f0, f1, f2, f3, f4, f5 = _ascii(x)
        b0, b1, b2, b3, b4, b5, w, nls, cb, ev = _block(data, blk, end)
        c0 += np.int64(b0) + np.int64(f0)
        c1 += np.int64(b1) + np.int64(f1)
        c2 += np.int64(b2) + np.int64(f2)
        c3 += np.int64(b3) + np.int64(f3)
        c4 += np.int64(b4) + np.int64(f4)
        c5 += np.int64(b5) + np.int64(f5)
        words += np.int64(w) + prev * (1 - np.int64(f4))
        cb = np.int64(cb) + ((x & 0xC0) == 0x80)
        cont += cb
        wide |= cb > 0  # (continuation bytes are counted where they are, here: no walk visits them)
        blank = x == 10 and blk > lo and data[blk - 1] == 10
        events = ev > 0 or (x != 10 and 9 <= x <= 13) or (f4 and prev and not blank)
        prev = np.int64(_ws(data[end - 1]))
        if not events and (nls or x == 10):
            # Plain whitespace: only line ends need a look, and 8 bytes without one are skipped at once.
            i = blk
            while i < end:
                if i + 8 <= end:
                    m = _newlines(load8(data, i))
                    if m == 0:
                        i += 8
                        continue
                    i += ctz(m) >> 3
                elif data[i] != 10:
                    i += 1
                    continue
                newlines += 1
                if i > line_start:
                    line_lo[n_lines + k], line_hi[n_lines + k], line_chars[n_lines + k] = line_start, i, line_odd
                    k += 1
                line_start = i + 1
                line_odd = 0
                i += 1
        elif events:
            # Line ends and every whitespace byte (which lines need normalising). pws: the previous
            # character was whitespace (a non-ASCII one is not: a document with non-ASCII whitespace
            # is left to _doc_slow).
            pws = prev_in
            i = blk
            while i < end:
                if line_odd and i + 8 <= end:  # the line needs normalising already: on to its end
                    m = _newlines(load8(data, i))
                    if m == 0:
                        i += 8
                        continue
                    i += ctz(m) >> 3
                b = data[i]
                if b >= 0x80:
                    pws = 0
                elif b == 10:
                    newlines += 1
                    if i > line_start:
                        line_lo[n_lines + k], line_hi[n_lines + k] = line_start, i
                        line_chars[n_lines + k] = line_odd | pws
                        k += 1
                    line_start = i + 1
                    line_odd = 0
                    pws = 1
                else:
                    ws = np.int64(_ws(b))
                    line_odd |= ws & (pws | np.int64(b != 32))  # leading, doubled or non-" " whitespace
                    pws = ws
                i += 1
    if hi > line_start:  # the last line
        line_lo[n_lines + k], line_hi[n_lines + k], line_chars[n_lines + k] = line_start, hi, line_odd | prev
        k += 1
    # The lines, from their spans (line_chars held "may need normalising"): hashed, counted, blank
    # ones dropped. Apart from the walks, which stay small loops.
    kept = 0
    for j in range(n_lines, n_lines + k):
        a, z, odd = line_lo[j], line_hi[j], line_chars[j]
        if odd:
            h, lc, last = _normal_hash(data, a, z, lane_of_byte, lane_of_flags, cp_flags)
        else:
            h, lc, last = _clean_line(data, a, z, wide)
        if lc > 0:
            term += _add_line(d, a, z, h, lc, last, line_doc, line_hash, line_lo, line_hi, line_chars,
                              n_lines + kept, terminal)
            kept += 1
            dk = _mix(dk, h)
    n_lines += kept
    nb = kept
    if wide:
        ok, w0, w1, w2, w3, w4, w5, repl = _wide_pass(data, lo, hi, cp_flags, lane_of_flags, cp_script, sc)
        if not ok:
            return False, 0, 0, 0, np.zeros(6, np.int64), 0, 0, 0, dk, first_line
        c0, c1, c2, c3, c4, c5 = c0 + w0, c1 + w1, c2 + w2, c3 + w3, c4 + w4, c5 + w5
    c = np.empty(6, np.int64)
    c[0], c[1], c[2], c[3], c[4], c[5] = c0, c1, c2, c3, c4, c5
    return True, hi - lo - cont, words, newlines, c, nb, term, repl, dk, n_lines


_SMALL = 64  # documents with up to this many lines sort their line hashes in place


@njit(inline="always")
def _distinct(hashes, lo, hi, scratch):  # noqa: ANN001, ANN202
    """Distinct values in hashes[lo:hi]: a few are insertion-sorted in scratch (np.sort would
    allocate for every document, which cost more than the sort), many by np.sort."""
    n = hi - lo
    if n > len(scratch):
        hs = np.sort(hashes[lo:hi])
    else:
        hs = scratch
        for i in range(n):
            v = hashes[lo + i]
            j = i
            while j > 0 and hs[j - 1] > v:
                hs[j] = hs[j - 1]
                j -= 1
            hs[j] = v
    distinct = n
    for k in range(1, n):
        if hs[k] == hs[k - 1]:
            distinct -= 1
    return distinct


@njit(nogil=True, cache=True)
def _scan(data, offs, codes, n_sources, lane_of_byte, lane_of_flags, cp_flags, cp_script,  # noqa: ANN001, ANN202
          n_scripts, terminal, fast):
    n = len(offs) - 1
    out_ = np.zeros((13, n), np.int64)
    key_ = np.empty(n, np.uint64)
    # Room for the lines, from the newlines of the first MiB (a count of all of them would be a pass
    # of its own over the chunk; growing from a small guess copied web chunks' lines twice), grown
    # when a document might not fit.
    size = offs[n] - offs[0]
    head = min(size, 1 << 20)
    cap = n + 64 + (count_newlines(data[offs[0]:offs[0] + head]) * size // max(head, 1)) * 5 // 4
    lines_ = np.empty((5, cap), np.int64)  # per line: doc, hash (as int64), lo, hi, chars
    scripts_ = np.zeros((n_sources, n_scripts), np.int64)
    # Every array below is borrowed (nbutil): the helpers take them per line and per block.
    out, key, scripts = borrowed(out_), borrowed(key_), borrowed(scripts_)
    line_doc, line_lo, line_hi, line_chars = (borrowed(lines_[0]), borrowed(lines_[2]), borrowed(lines_[3]),
                                              borrowed(lines_[4]))
    line_hash = borrowed(lines_[1].view(np.uint64))
    data, offs, codes = borrowed(data), borrowed(offs), borrowed(codes)
    lane_of_byte, lane_of_flags, cp_flags = borrowed(lane_of_byte), borrowed(lane_of_flags), borrowed(cp_flags)
    cp_script, terminal = borrowed(cp_script), borrowed(terminal)
    sc_ = np.zeros(n_scripts, np.int64)
    sc = borrowed(sc_)
    scratch_ = np.empty(_SMALL, np.uint64)
    scratch = borrowed(scratch_)
    n_lines = 0
    for d in range(n):
        lo = offs[d]
        hi = offs[d + 1]
        if n_lines + (hi - lo) + 1 > cap:  # a document has at most newlines + 1 lines
            need = n_lines + count_newlines(data[lo:hi]) + 1
            if need > cap:
                cap = max(2 * cap, need)
                grown = np.empty((5, cap), np.int64)
                grown[:, :n_lines] = lines_[:, :n_lines]
                lines_ = grown
                line_doc, line_lo, line_hi, line_chars = (borrowed(lines_[0]), borrowed(lines_[2]),
                                                          borrowed(lines_[3]), borrowed(lines_[4]))
                line_hash = borrowed(lines_[1].view(np.uint64))
        first_line = n_lines
        sc[:] = 0
        ok = False
        if fast:
            ok, chars, words, newlines, c, nb, term, repl, dk, n_lines = _doc_fast(
                data, lo, hi, d, lane_of_byte, lane_of_flags, cp_flags, cp_script, terminal, sc,
                line_doc, line_hash, line_lo, line_hi, line_chars, n_lines)
        if not ok:
            sc[:] = 0
            chars, words, newlines, c, nb, term, repl, dk, n_lines = _doc_slow(
                data, lo, hi, d, lane_of_byte, lane_of_flags, cp_flags, cp_script, terminal, sc,
                line_doc, line_hash, line_lo, line_hi, line_chars, n_lines)
        scripts[codes[d]] += sc
        distinct = nb
        if nb > 1:
            distinct = _distinct(line_hash, first_line, n_lines, scratch)
        key[d] = _fmix(_mix(dk, np.uint64(nb))) if nb > 0 else _EMPTY
        out[0, d] = chars
        out[1, d] = words
        out[2, d] = newlines
        for k in range(6):
            out[3 + k, d] = c[k]
        out[9, d] = nb
        out[10, d] = distinct
        out[11, d] = term
        out[12, d] = repl
    return (out_, key_, scripts_, lines_[0, :n_lines], lines_[1, :n_lines].view(np.uint64), lines_[2, :n_lines],
            lines_[3, :n_lines], lines_[4, :n_lines])


@dataclass(frozen=True)
class Tables:
    lane_of_byte: np.ndarray  # u64 per byte: its class lanes (none for bytes >= 0x80)
    lane_of_flags: np.ndarray  # u64 per class-bits value (chars.py's bits): its class lanes
    cp_flags: np.ndarray  # class bits per code point
    cp_script: np.ndarray  # script per code point (0 other, 1 + index in SCRIPTS)


def _lanes(flags: np.ndarray) -> np.ndarray:
    out = np.zeros(len(flags), np.uint64)
    for k in range(_N_CLASSES):
        out |= ((flags.astype(np.uint64) >> np.uint64(k)) & np.uint64(1)) << np.uint64(8 * k)
    return out


@cache
def tables() -> Tables:
    cpt = code_point_table()
    by_byte = _lanes(np.concatenate([cpt.flags[:128], np.zeros(128, np.uint8)]))
    flags = cpt.flags.copy()
    flags[[0xFFFD, *MOJIBAKE_AFTER_A]] |= MOJI_END  # the characters that can end a mojibake sequence
    return Tables(by_byte, _lanes(np.arange(256, dtype=np.uint8)), flags, cpt.script)


@dataclass
class TextScan:
    counts: dict[str, np.ndarray]  # per doc: the OUT figures
    key: np.ndarray  # uint64 text key per doc (EMPTY_KEY without a non-blank line)
    scripts: np.ndarray  # non-ASCII letters per (source, script): 0 other, 1 + index in SCRIPTS
    line_doc: np.ndarray  # per non-blank line, in doc order: its doc,
    line_hash: np.ndarray  # the hash of its normal form,
    line_lo: np.ndarray  # its raw span in `data`,
    line_hi: np.ndarray
    line_chars: np.ndarray  # and the length of its normal form in characters
    data: np.ndarray  # the texts' bytes (line spans point into them)


@dataclass
class Texts:
    """Documents' texts as the kernel reads them: UTF-8 bytes back to back (8-aligned, a spare word
    after the end), n+1 offsets, and which documents are null (empty spans)."""

    data: np.ndarray
    offs: np.ndarray
    null: np.ndarray

    def __len__(self) -> int:
        return len(self.offs) - 1

    @classmethod
    def from_series(cls, texts: pl.Series) -> Texts:
        """Copied into an aligned buffer with the spare word (a copy costs less than proving an Arrow
        buffer has the room)."""
        offs, data = utf8_buffers(texts.cast(pl.String))
        end = int(offs[-1])
        padded = np.zeros((end + 7) // 8 * 8 + 8, np.uint8)
        padded[:end] = data
        return cls(padded, np.ascontiguousarray(offs), texts.is_null().to_numpy())

    @classmethod
    def concat(cls, parts: list[Texts]) -> Texts:
        if len(parts) == 1:
            return parts[0]
        total = sum(int(t.offs[-1] - t.offs[0]) for t in parts)
        data = np.empty((total + 7) // 8 * 8 + 8, np.uint8)
        data[total:] = 0
        offs = [np.zeros(1, np.int64)]
        at = 0
        for t in parts:
            lo, hi = int(t.offs[0]), int(t.offs[-1])
            data[at:at + hi - lo] = t.data[lo:hi]
            offs.append(t.offs[1:] - lo + at)
            at += hi - lo
        return cls(data, np.concatenate(offs), np.concatenate([t.null for t in parts]))

    def prefixes(self, max_chars: int, rows: np.ndarray | None = None) -> pa.LargeStringArray:
        """The first max_chars characters of each document (of `rows`), null where the text is."""
        rows = np.arange(len(self), dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
        data, offs = _prefixes(self.data, self.offs, rows, max_chars)
        valid = ~self.null[rows]
        bitmap = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
        return pa.LargeStringArray.from_buffers(len(rows), pa.py_buffer(offs), pa.py_buffer(data), bitmap,
                                                int(len(rows) - valid.sum()))


@njit(nogil=True, cache=True)
def _prefixes(data, offs, rows, max_chars):  # noqa: ANN001, ANN202
    data, offs, rows = borrowed(data), borrowed(offs), borrowed(rows)  # slices below skip refcounting
    ends = np.empty(len(rows), np.int64)
    total = 0
    for j in range(len(rows)):
        lo = offs[rows[j]]
        hi = offs[rows[j] + 1]
        end = hi
        if hi - lo > max_chars:  # more bytes than max_chars: find the cut
            head = data[lo:lo + max_chars]
            seen = np.uint8(0)
            for i in range(len(head)):  # over a slice, from 0: the loop vectorises
                seen |= head[i]
            if seen < 128:  # ASCII: a byte is a character
                end = lo + max_chars
            else:
                k = 0
                for i in range(lo, hi):
                    if (data[i] & 0xC0) != 0x80:
                        k += 1
                        if k > max_chars:
                            end = i
                            break
        ends[j] = end
        total += end - lo
    out_ = np.empty(total, np.uint8)
    new = np.empty(len(rows) + 1, np.int64)
    new[0] = 0
    out = borrowed(out_)
    p = 0
    for j in range(len(rows)):
        lo = offs[rows[j]]
        size = ends[j] - lo
        src = data[lo:ends[j]]
        dst = out[p:p + size]
        for k in range(size):  # from 0 over slices: LLVM makes this a memcpy
            dst[k] = src[k]
        p += size
        new[j + 1] = p
    return out_, new


def scan_texts(texts: Texts, codes: np.ndarray, n_sources: int, n_scripts: int, fast: bool = True) -> TextScan:
    """Every figure of every document. codes: each doc's source in 0..n_sources-1. fast=False runs
    the character-at-a-time reference path on every document (for tests)."""
    data, offs = texts.data, texts.offs
    t = tables()
    out, key, scripts, *lines = _scan(data, np.ascontiguousarray(offs, np.int64),
                                      np.ascontiguousarray(codes, np.int64), n_sources, t.lane_of_byte,
                                      t.lane_of_flags, t.cp_flags, t.cp_script, n_scripts, _TERMINAL, fast)
    return TextScan(dict(zip(OUT, out, strict=True)), key, scripts, *lines, data)
