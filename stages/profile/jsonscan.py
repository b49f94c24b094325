"""A compiled scan of raw JSONL bytes: each line's fate, the documents' texts and ids, meta key types.

The profiler's fast path used to hand every piece to ``pl.read_ndjson``, and polars' parse of every
field (then its schema work) was the profiler's main cost. The profiler only needs each record's text,
id, and which other top-level keys it has with which JSON types, so this numba kernel validates each
line fully but materialises only the text and the id.

Correctness rests on one rule: a line gets status 0 (a document) only when the reader's per-record
path (``corpus.readers.jsonl.DocBuilder.add_line``) would certainly make it a document with exactly
this text and id. Anything unusual (escapes in top-level keys, deep nesting, huge numbers, a lone
surrogate escape, a float or boolean id, ...) gets status 2 and the caller runs the reader's rules on
that line; status 2 costs speed, never correctness.

Speed (measured; numba's code generation is touchy here):
* a string is copied and checked 32 bytes at a time for the bytes that end a plain run (a quote, a
  backslash, a control byte); LLVM vectorises that loop as long as it does nothing else;
* UTF-8 is validated afterwards over the raw string: ASCII blocks by words, other blocks by a
  branch-free test of each byte against the three before it (branches mispredict on mixed text);
* arrays reach the helpers without reference counts (nbutil.borrowed): the atomic increments and
  decrements numba does around every call that takes an array cost more than parsing a short value;
  the value parser is inlined into the record's (a call per meta value cost a fifth of the scan);
* indices are made unsigned (np.uintp) in hot loops to drop numba's negative-index wraparound, and
  loops step by a constant: an index that advances by a loaded value chains each step to a load.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

import numpy as np
from numba import njit

from .nbutil import HIGH, borrowed, ctz, load8

TYPES = ("string", "integer", "number", "boolean", "object", "array")
_STRING, _INTEGER, _NUMBER, _BOOLEAN, _OBJECT, _ARRAY = range(6)
_NULL = -1

MAX_KEYS = 64  # distinct top-level keys per piece (other than text and id): one bit each in a line's mask
MAX_DEPTH = 64  # nesting; deeper values are left to the reader
_MAX_ID_DIGITS = 18  # an integer id the reader writes as these very digits (fits int64)
_MAX_INT_DIGITS = 4000  # Python's int() refuses more than 4300 digits
_MAX_FLOAT_DIGITS = 200  # with a 2-digit exponent at most 1e299: float() stays finite

_OK, _FAIL, _OVERFLOW = 0, 2, 3

# Bytes that end a plain run inside a string (non-ASCII bytes are copied along, then validated).
_STOP = np.zeros(256, np.uint8)
_STOP[:0x20] = 1
_STOP[0x22] = 1
_STOP[0x5C] = 1
# Byte written for a one-letter escape (0: not an escape; "u" is handled apart).
_ESCAPE = np.zeros(256, np.uint8)
_ESCAPE[list(b'"\\/bfnrt')] = list(b'"\\/\b\f\n\r\t')
_HEX = np.full(256, -1, np.int64)
_HEX[list(b"0123456789abcdefABCDEF")] = [*range(16), *range(10, 16)]

_BLOCK = 32  # bytes of a string checked at once
_ONES = np.uint64(0x0101010101010101)
_SPACES = np.uint64(0x2020202020202020)
_QUOTES = np.uint64(0x2222222222222222)
_BACKSLASHES = np.uint64(0x5C5C5C5C5C5C5C5C)


@njit(inline="always")
def _skip_ws(buf, p, n):
    # JSON whitespace within a line ("\n" ends the line).
    for i in range(p, n):
        c = buf[i]
        if c != 32 and c != 9 and c != 13:
            return i
    return n


@njit(inline="always")
def _stop(x):
    # Bytes that end a plain run in a string; arithmetic rather than a table so that LLVM vectorises.
    return (x < 0x20) | (x == 0x22) | (x == 0x5C)


@njit(inline="always")
def _swar_stop(w):
    # In the 8 bytes of w, the high bit of each _STOP byte (and maybe of later bytes, never of earlier
    # ones: the classic "has a byte < n / == 0" tricks, exact up to the first hit).
    x = w ^ _QUOTES
    y = w ^ _BACKSLASHES
    return ((w - _SPACES) & ~w | (x - _ONES) & ~x | (y - _ONES) & ~y) & HIGH


@njit(inline="always")
def _first_stop(buf, p):
    """Offset of the first _STOP byte in the block at p (which holds one)."""
    for k in range(0, _BLOCK, 8):
        m = _swar_stop(load8(buf, p + k))
        if m:
            return k + (ctz(m) >> 3)
    return _BLOCK


@njit(inline="always")
def _copy_run(buf, p, n, out, o):
    """Copy a string's plain bytes (all but _STOP ones) from buf[p] to out[o]: (index of the first
    _STOP byte or n, new o). Whole blocks are copied before they are checked, so out must have room:
    o <= p holds for our cursors."""
    while p + _BLOCK <= n:
        hit = False
        for i in range(_BLOCK):
            x = buf[np.uintp(p + i)]  # unsigned indices spare numba's negative-index wraparound
            out[np.uintp(o + i)] = x
            hit |= _stop(x)
        if hit:  # the whole block is copied: find the stop by words, not byte by byte
            k = _first_stop(buf, p)
            return p + k, o + k
        p += _BLOCK
        o += _BLOCK
    for i in range(p, n):
        x = buf[np.uintp(i)]
        if _STOP[x]:
            return i, o
        out[np.uintp(o)] = x
        o += 1
    return n, o


@njit(inline="always")
def _skip_run(buf, p, n):
    """The index of the first _STOP byte from p on (or n), and whether a non-ASCII byte may come
    before it. Words rather than a vectorised byte loop: LLVM does not vectorise this one reliably."""
    bits = np.uint64(0)
    while p + _BLOCK <= n:
        w0 = load8(buf, p)
        w1 = load8(buf, p + 8)
        w2 = load8(buf, p + 16)
        w3 = load8(buf, p + 24)
        bits |= w0 | w1 | w2 | w3
        if _swar_stop(w0) | _swar_stop(w1) | _swar_stop(w2) | _swar_stop(w3):
            return p + _first_stop(buf, p), (bits & HIGH) != 0
        p += _BLOCK
    high = (bits & HIGH) != 0
    for i in range(p, n):
        x = buf[np.uintp(i)]
        if _STOP[x]:
            return i, high
        high |= x >= 0x80
    return n, high


@njit(inline="always")
def _utf8_bad(b3, b2, b1, c):
    """Byte c, after b1, b2, b3 (in that order backwards), breaks UTF-8 (Python's strict rules): a
    continuation byte exactly where a lead byte wants one, no C0/C1/F5-FF, no overlong form, no
    surrogate, nothing past U+10FFFF. No branches: mixed text would mispredict every character."""
    cont = (c & 0xC0) == 0x80
    want = (b1 >= 0xC0) | (b2 >= 0xE0) | (b3 >= 0xF0)
    bad_lead = (c == 0xC0) | (c == 0xC1) | (c >= 0xF5)
    bad_second = (((b1 == 0xE0) & (c < 0xA0)) | ((b1 == 0xED) & (c > 0x9F))
                  | ((b1 == 0xF0) & (c < 0x90)) | ((b1 == 0xF4) & (c > 0x8F)))
    return (cont != want) | bad_lead | bad_second


@njit
def _valid_utf8(buf, p, e):
    """buf[p:e] (preceded by ASCII) is valid UTF-8; ASCII blocks are passed by words."""
    while p + _BLOCK <= e:  # the ASCII prefix (all of most texts)
        if (load8(buf, p) | load8(buf, p + 8) | load8(buf, p + 16) | load8(buf, p + 24)) & HIGH:
            break
        p += _BLOCK
    bits = 0
    for i in range(p, min(p + _BLOCK, e)):
        bits |= buf[np.uintp(i)]
    if bits < 0x80 and p + _BLOCK >= e:
        return True
    s = min(p + 3, e)  # the first bytes look back only as far as p
    for i in range(p, s):
        b1 = buf[i - 1] if i - 1 >= p else 0
        b2 = buf[i - 2] if i - 2 >= p else 0
        if _utf8_bad(0, b2, b1, buf[i]):
            return False
    i = s
    while i + _BLOCK <= e:
        ascii_ = ((load8(buf, i) | load8(buf, i + 8) | load8(buf, i + 16) | load8(buf, i + 24)) & HIGH) == 0
        if not (ascii_ and buf[i - 1] < 0xC0 and buf[i - 2] < 0xE0 and buf[i - 3] < 0xF0):
            bad = False
            for j in range(i, i + _BLOCK):
                bad |= _utf8_bad(buf[np.uintp(j - 3)], buf[np.uintp(j - 2)], buf[np.uintp(j - 1)], buf[np.uintp(j)])
            if bad:
                return False
        i += _BLOCK
    for j in range(i, e):
        if _utf8_bad(buf[j - 3], buf[j - 2], buf[j - 1], buf[j]):
            return False
    # A character may not run past e.
    return not (e - 1 >= p and buf[e - 1] >= 0xC0 or e - 2 >= p and buf[e - 2] >= 0xE0
                or e - 3 >= p and buf[e - 3] >= 0xF0)


@njit(inline="always")
def _hex4(buf, p, n):
    """The code unit of the 4 hex digits at p, or -1."""
    if p + 4 > n:
        return -1
    h0 = _HEX[buf[np.uintp(p)]]
    h1 = _HEX[buf[np.uintp(p + 1)]]
    h2 = _HEX[buf[np.uintp(p + 2)]]
    h3 = _HEX[buf[np.uintp(p + 3)]]
    if (h0 | h1 | h2 | h3) < 0:
        return -1
    return (h0 << 12) | (h1 << 8) | (h2 << 4) | h3


@njit(inline="always")
def _put_utf8(out, o, cp):
    if cp < 0x80:
        out[o] = cp
        return o + 1
    if cp < 0x800:
        out[o] = 0xC0 | (cp >> 6)
        out[o + 1] = 0x80 | (cp & 0x3F)
        return o + 2
    if cp < 0x10000:
        out[o] = 0xE0 | (cp >> 12)
        out[o + 1] = 0x80 | ((cp >> 6) & 0x3F)
        out[o + 2] = 0x80 | (cp & 0x3F)
        return o + 3
    out[o] = 0xF0 | (cp >> 18)
    out[o + 1] = 0x80 | ((cp >> 12) & 0x3F)
    out[o + 2] = 0x80 | ((cp >> 6) & 0x3F)
    out[o + 3] = 0x80 | (cp & 0x3F)
    return o + 4


@njit
def _string(buf, p, n, out, o, store):
    """The string whose body starts at p: (index after the closing quote or -1, new o, holds a NUL).
    With store, its unescaped UTF-8 is written to out from o."""
    nul = False
    start = p
    high = store  # the copy does not look for non-ASCII bytes: that would slow it down more
    while True:
        if store:
            q, o = _copy_run(buf, p, n, out, o)
        else:
            q, h = _skip_run(buf, p, n)
            high |= h
        if q >= n:
            return -1, o, nul
        c = buf[q]
        if c == 0x22:
            # UTF-8 is checked once over the raw string: escapes are ASCII, so they break no
            # character that is valid without them.
            if high and not _valid_utf8(buf, start, q):
                return -1, o, nul
            return q + 1, o, nul
        if c != 0x5C:  # raw control bytes are not JSON
            return -1, o, nul
        while True:  # escapes, one after the other (ensure_ascii text is mostly such runs)
            if q + 1 >= n:
                return -1, o, nul
            e = buf[q + 1]
            if e == 0x75:  # \uXXXX
                cp = _hex4(buf, q + 2, n)
                q += 6
                if cp < 0 or 0xDC00 <= cp <= 0xDFFF:
                    return -1, o, nul
                if 0xD800 <= cp <= 0xDBFF:  # only as the first half of a pair
                    if q + 1 >= n or buf[q] != 0x5C or buf[q + 1] != 0x75:
                        return -1, o, nul
                    lo = _hex4(buf, q + 2, n)
                    if lo < 0xDC00 or lo > 0xDFFF:
                        return -1, o, nul
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                    q += 6
                if cp == 0:
                    nul = True
                if store:
                    o = _put_utf8(out, o, cp)
            else:
                b = _ESCAPE[e]
                if b == 0:
                    return -1, o, nul
                if store:
                    out[o] = b
                    o += 1
                q += 2
            if q >= n or buf[q] != 0x5C:
                break
        p = q


@njit(inline="always")
def _digits_end(buf, p, n):
    for i in range(p, n):
        c = buf[i]
        if c < 48 or c > 57:
            return i
    return n


@njit
def _number(buf, p, n):
    """(index after the number at p or -1, _INTEGER or _NUMBER). The caller checks what follows."""
    q = p + 1 if buf[p] == 45 else p
    if q >= n:
        return -1, 0
    c = buf[q]
    if c == 48:
        q += 1
        nd = 1
    elif 49 <= c <= 57:
        e = _digits_end(buf, q, n)
        nd = e - q
        q = e
    else:
        return -1, 0
    kind = _INTEGER
    if q < n and buf[q] == 46:  # fraction
        e = _digits_end(buf, q + 1, n)
        if e == q + 1:
            return -1, 0
        q = e
        kind = _NUMBER
    if q < n and (buf[q] == 101 or buf[q] == 69):  # exponent
        q += 1
        if q < n and (buf[q] == 43 or buf[q] == 45):
            q += 1
        e = _digits_end(buf, q, n)
        if e == q or e - q > 2:
            return -1, 0
        q = e
        kind = _NUMBER
    if nd > (_MAX_INT_DIGITS if kind == _INTEGER else _MAX_FLOAT_DIGITS):
        return -1, 0
    return q, kind


@njit(inline="always")
def _literal(buf, p, n, word):
    m = word.shape[0]
    if p + m > n:
        return -1
    for i in range(m):
        if buf[p + i] != word[i]:
            return -1
    return p + m


_TRUE = np.frombuffer(b"true", np.uint8).copy()
_FALSE = np.frombuffer(b"false", np.uint8).copy()
_NULL_WORD = np.frombuffer(b"null", np.uint8).copy()


@njit(inline="always")
def _scalar(buf, p, n, scratch):
    """A value other than an object or array at p: (index after it or -1, its type or _NULL)."""
    c = buf[p]
    if c == 0x22:
        q, _, _ = _string(buf, p + 1, n, scratch, 0, False)
        return q, _STRING
    if c == 45 or 48 <= c <= 57:
        return _number(buf, p, n)
    if c == 116:
        return _literal(buf, p, n, _TRUE), _BOOLEAN
    if c == 102:
        return _literal(buf, p, n, _FALSE), _BOOLEAN
    if c == 110:
        return _literal(buf, p, n, _NULL_WORD), _NULL
    return -1, 0


@njit(inline="always")
def _value(buf, p, n, stack, scratch):
    """Any JSON value at p, validated in full: (index after it or -1, its type or _NULL)."""
    c = buf[p]
    if c != 123 and c != 91:
        return _scalar(buf, p, n, scratch)
    kind = _OBJECT if c == 123 else _ARRAY
    stack[0] = c
    d = 1
    p = _skip_ws(buf, p + 1, n)
    opened = True  # just after "{" or "[": the container may close at once
    while True:
        if p >= n:
            return -1, 0
        top = stack[d - 1]
        c = buf[p]
        if opened and c == top + 2:  # "}" is "{" + 2, "]" is "[" + 2
            p += 1
            d -= 1
            if d == 0:
                return p, kind
        else:
            if top == 123:  # a member: key, colon
                if c != 0x22:
                    return -1, 0
                p, _, _ = _string(buf, p + 1, n, scratch, 0, False)
                if p < 0:
                    return -1, 0
                p = _skip_ws(buf, p, n)
                if p >= n or buf[p] != 58:
                    return -1, 0
                p = _skip_ws(buf, p + 1, n)
                if p >= n:
                    return -1, 0
                c = buf[p]
            if c == 123 or c == 91:
                if d >= MAX_DEPTH:
                    return -1, 0
                stack[d] = c
                d += 1
                p = _skip_ws(buf, p + 1, n)
                opened = True
                continue
            p, _ = _scalar(buf, p, n, scratch)
            if p < 0:
                return -1, 0
        # After a value: "," or closing brackets.
        while True:
            p = _skip_ws(buf, p, n)
            if p >= n:
                return -1, 0
            c = buf[p]
            if c == 44:
                p = _skip_ws(buf, p + 1, n)
                opened = False
                break
            if c != stack[d - 1] + 2:
                return -1, 0
            p += 1
            d -= 1
            if d == 0:
                return p, kind


@njit(inline="always")
def _same(buf, s, m, ref, r0, r1):
    if r1 - r0 != m:
        return False
    for i in range(m):
        if buf[s + i] != ref[r0 + i]:
            return False
    return True


@njit
def _blank_text(t, s, e):
    """True when t[s:e] (valid UTF-8) is empty or only Python whitespace (str.isspace)."""
    i = s
    while i < e:
        c = t[i]
        if c < 0x80:
            if c == 32 or 9 <= c <= 13 or 28 <= c <= 31:
                i += 1
                continue
            return False
        if c == 0xC2:  # U+0085, U+00A0
            if t[i + 1] == 0x85 or t[i + 1] == 0xA0:
                i += 2
                continue
            return False
        if c < 0xE1 or c > 0xE3:
            return False
        c1 = t[i + 1]
        c2 = t[i + 2]
        if c == 0xE1:
            ws = c1 == 0x9A and c2 == 0x80  # U+1680
        elif c == 0xE2:  # U+2000-200A, 2028, 2029, 202F, 205F
            ws = (c1 == 0x80 and (c2 <= 0x8A or c2 == 0xA8 or c2 == 0xA9 or c2 == 0xAF)) or (c1 == 0x81 and c2 == 0x9F)
        else:
            ws = c1 == 0x80 and c2 == 0x80  # U+3000
        if not ws:
            return False
        i += 3
    return True


@njit(inline="always")
def _record(buf, p, n, tk, ik, has_id, max_bytes, text, ids, kbuf, koffs, line_k, line_t, pred, stack,
            st):
    """The record starting at p (its first non-blank byte). _OK: a certain document, its figures in st
    (text end, id end, id given, meta keys, -, end of line); _FAIL: leave it to the reader;
    _OVERFLOW: a 65th distinct key."""
    if buf[p] != 123:
        return _FAIL
    t0 = st[0]
    i0 = st[1]
    t1 = t0
    i1 = i0
    id_given = False
    seen_text = False
    seen_id = False
    mask = 0
    nk = 0
    n_tab = st[4]
    p = _skip_ws(buf, p + 1, n)
    while True:
        if p >= n or buf[p] != 0x22:
            return _FAIL
        # Top-level key: plain UTF-8, no escapes (escaped keys go to the reader).
        ks = p + 1
        q, high = _skip_run(buf, ks, n)
        if q >= n or buf[q] != 0x22 or (high and not _valid_utf8(buf, ks, q)):
            return _FAIL
        m = q - ks
        p = _skip_ws(buf, q + 1, n)
        if p >= n or buf[p] != 58:
            return _FAIL
        p = _skip_ws(buf, p + 1, n)
        if p >= n:
            return _FAIL
        c = buf[p]
        if _same(buf, ks, m, tk, 0, tk.shape[0]):
            if seen_text or c != 0x22:
                return _FAIL
            seen_text = True
            p, t1, nul = _string(buf, p + 1, n, text, t0, True)
            if p < 0 or nul:
                return _FAIL
        elif has_id and _same(buf, ks, m, ik, 0, ik.shape[0]):
            if seen_id:
                return _FAIL
            seen_id = True
            if c == 0x22:
                p, i1, _ = _string(buf, p + 1, n, ids, i0, True)
                if p < 0:
                    return _FAIL
                id_given = True
            elif c == 110:
                p = _literal(buf, p, n, _NULL_WORD)
                if p < 0:
                    return _FAIL
            else:  # an integer, written back as its own digits
                q, kind = _number(buf, p, n)
                if q < 0 or kind != _INTEGER:
                    return _FAIL
                neg = 1 if c == 45 else 0
                if q - p - neg > _MAX_ID_DIGITS or (neg and q - p == 2 and buf[p + 1] == 48):  # "-0" is 0
                    return _FAIL
                for i in range(q - p):
                    ids[i0 + i] = buf[p + i]
                i1 = i0 + q - p
                p = q
                id_given = True
        else:
            if nk >= MAX_KEYS:
                return _FAIL
            # Records of a file mostly repeat their key order: try last line's key at this position.
            idx = pred[nk]
            if idx < 0 or not _same(buf, ks, m, kbuf, koffs[idx], koffs[idx + 1]):
                idx = -1
                for j in range(n_tab):
                    if _same(buf, ks, m, kbuf, koffs[j], koffs[j + 1]):
                        idx = j
                        break
                if idx < 0:
                    if n_tab >= MAX_KEYS:
                        return _OVERFLOW
                    e = koffs[n_tab]
                    for i in range(m):
                        kbuf[e + i] = buf[ks + i]
                    koffs[n_tab + 1] = e + m
                    idx = n_tab
                    n_tab += 1
                    st[4] = n_tab
                pred[nk] = idx
            bit = np.int64(1) << idx
            if mask & bit:
                return _FAIL
            mask |= bit
            p, kind = _value(buf, p, n, stack, text)
            if p < 0:
                return _FAIL
            line_k[nk] = idx
            line_t[nk] = kind
            nk += 1
        p = _skip_ws(buf, p, n)
        if p >= n:
            return _FAIL
        c = buf[p]
        if c == 44:
            p = _skip_ws(buf, p + 1, n)
            continue
        if c != 125:
            return _FAIL
        break
    p = _skip_ws(buf, p + 1, n)
    if p < n and buf[p] != 10:
        return _FAIL
    if not seen_text or t1 - t0 > max_bytes or _blank_text(text, t0, t1):
        return _FAIL
    st[0] = t1
    st[1] = i1 if id_given else i0
    st[2] = 1 if id_given else 0
    st[3] = nk
    st[5] = p
    return _OK


@njit(inline="always")
def _grown(a, size):  # noqa: ANN001, ANN202
    b = np.empty(size, a.dtype)
    b[:len(a)] = a
    return b


@njit(nogil=True, cache=True)
def _scan(buf, tk, ik, has_id, max_bytes, text, ids, kbuf, koffs, counts, order, st, work, stack):
    """Every line of buf: (documents, or -1 on a 65th distinct key; lines; status, doc_line, text_offs,
    id_given, id_offs, each with room to spare). The per-line arrays grow as lines come (a count of
    the lines first was a pass of its own over the buffer, from memory).
    st: text end, ids end, -, -, keys in the table, -, keys in order (see _record)."""
    buf = borrowed(buf)
    tk = borrowed(tk)
    ik = borrowed(ik)
    text = borrowed(text)
    ids = borrowed(ids)
    kbuf = borrowed(kbuf)
    koffs = borrowed(koffs)
    st = borrowed(st)
    stack = borrowed(stack)
    line_k = borrowed(work[0])  # per line: its meta keys, their types
    line_t = borrowed(work[1])
    pred = borrowed(work[2])  # previous line's meta keys
    present = borrowed(work[3])  # keys seen in a document
    n = buf.shape[0]
    cap = n // 1024 + 64  # lines; doubled when full
    status = np.empty(cap, np.int8)
    doc_line = np.empty(cap, np.int64)
    text_offs = np.empty(cap + 1, np.int64)
    id_given = np.empty(cap, np.bool_)
    id_offs = np.empty(cap + 1, np.int64)
    n_doc = 0
    n_order = 0
    text_offs[0] = 0
    id_offs[0] = 0
    pos = 0
    line = -1
    while pos < n:
        line += 1
        if line == cap:
            cap *= 2
            status, doc_line, id_given = _grown(status, cap), _grown(doc_line, cap), _grown(id_given, cap)
            text_offs, id_offs = _grown(text_offs, cap + 1), _grown(id_offs, cap + 1)
        p = _skip_ws(buf, pos, n)
        if p >= n or buf[p] == 10:
            status[line] = 1
            pos = p + 1
            continue
        r = _record(buf, p, n, tk, ik, has_id, max_bytes, text, ids, kbuf, koffs, line_k, line_t, pred,
                    stack, st)
        if r == _OVERFLOW:
            return -1, 0, status, doc_line, text_offs, id_given, id_offs
        if r == _OK:
            status[line] = 0
            doc_line[n_doc] = line
            id_given[n_doc] = st[2] == 1
            n_doc += 1
            text_offs[n_doc] = st[0]
            id_offs[n_doc] = st[1]
            # Meta types count only now that the line is a document.
            for j in range(st[3]):
                k = line_k[j]
                if not present[k]:
                    present[k] = 1
                    order[n_order] = k
                    n_order += 1
                if line_t[j] >= 0:
                    counts[k, line_t[j]] += 1
            pos = st[5] + 1
        else:
            status[line] = 2
            st[0] = text_offs[n_doc]
            st[1] = id_offs[n_doc]
            # No rule accepts a raw "\n", so the parse stopped on this line: its end is the next one.
            pos = n
            for i in range(p, n):
                if buf[i] == 10:
                    pos = i + 1
                    break
    st[6] = n_order
    return n_doc, line + 1, status, doc_line, text_offs, id_given, id_offs


@dataclass
class ScannedPiece:
    status: np.ndarray  # int8 per line (its length: the lines; a last one may lack its newline): 0 a
    # document, 1 blank, 2 needs the reader's per-record rules
    doc_line: np.ndarray  # int64 per document: its 0-based line index within the piece
    text: np.ndarray  # uint8: texts, unescaped UTF-8, back to back; 8-aligned, 8 zero bytes after the last
    text_offs: np.ndarray  # int64, n_docs + 1
    id_given: np.ndarray  # bool per document: id_key set and a non-null id
    ids: np.ndarray  # uint8: given ids as the reader writes them, back to back ('' where not given)
    id_offs: np.ndarray  # int64, n_docs + 1
    keys: list[str]  # distinct other top-level keys of the documents, first seen first (null-only ones too)
    key_types: np.ndarray  # int64 [len(keys), len(TYPES)]: documents with a non-null value of each type


_SPARE = threading.local()  # per thread: the output buffers of its last scan


def _buffer(name: str, size: int) -> np.ndarray:
    """An output buffer of at least `size` bytes: the thread's last one when nothing holds it any
    more (its pages are mapped already: a fresh 24 MB buffer cost a tenth of the scan in page faults),
    else a new one."""
    buf = getattr(_SPARE, name, None)
    # References when free: _SPARE's, buf's and getrefcount's own; a piece or text still in use
    # holds a view, and a view holds its buffer.
    if buf is None or len(buf) < size or sys.getrefcount(buf) > 3:
        buf = np.empty((max(size, 0) + (1 << 20) - 1) >> 20 << 20, np.uint8)  # whole MiB: pieces vary a little
        setattr(_SPARE, name, buf)
    return buf


def _wildcard(key: str) -> bool:
    # pl.col() reads these as wildcards (the reader's DocBuilder.flags rule).
    return key == "*" or (key.startswith("^") and key.endswith("$"))


def scan_piece(buf: bytes, text_key: str, id_key: str | None, max_doc_bytes: int) -> ScannedPiece | None:
    """Scan a piece of whole lines (the last may lack its newline).

    None: the piece should take the polars path (more than 64 distinct top-level keys, or a key
    polars reads as a wildcard; keys of status-2 lines count too, as polars would see them)."""
    if _wildcard(text_key) or (id_key is not None and _wildcard(id_key)):
        return None
    data = np.frombuffer(buf, np.uint8)
    data.setflags(write=False)  # one compiled signature for bytes, bytearray and memoryview
    n = data.shape[0]
    same_key = id_key == text_key  # the id is then the text itself
    has_id = id_key is not None and not same_key
    tk = np.frombuffer(text_key.encode(), np.uint8).copy()
    ik = np.frombuffer((id_key or "").encode(), np.uint8).copy()

    text, ids, kbuf = _buffer("text", n + 16), _buffer("ids", n + 16), _buffer("kbuf", n + 16)
    koffs = np.zeros(MAX_KEYS + 1, np.int64)
    counts = np.zeros((MAX_KEYS, len(TYPES)), np.int64)
    order = np.empty(MAX_KEYS, np.int64)
    st = np.zeros(8, np.int64)
    work = np.zeros((4, MAX_KEYS), np.int64)
    work[2] = -1
    stack = np.empty(MAX_DEPTH + 1, np.uint8)
    n_doc, n_lines, status, doc_line, text_offs, id_given, id_offs = _scan(
        data, tk, ik, has_id, max_doc_bytes, text, ids, kbuf, koffs, counts, order, st, work, stack)
    if n_doc < 0:
        return None
    names = [bytes(kbuf[koffs[i] : koffs[i + 1]]).decode() for i in range(st[4])]
    if any(_wildcard(k) for k in names):
        return None
    seen = order[: st[6]]
    end = text_offs[n_doc]
    text[end : end + 8] = 0
    text_offs = text_offs[: n_doc + 1]
    id_given = id_given[:n_doc]
    ids = ids[: id_offs[n_doc]]
    id_offs = id_offs[: n_doc + 1]
    if same_key:
        id_given = np.ones(n_doc, np.bool_)
        ids = text[:end]
        id_offs = text_offs
    return ScannedPiece(
        status=status[:n_lines],
        doc_line=doc_line[:n_doc],
        text=text[: end + 8],
        text_offs=text_offs,
        id_given=id_given,
        ids=ids,
        id_offs=id_offs,
        keys=[names[k] for k in seen],
        key_types=counts[seen].copy(),
    )
