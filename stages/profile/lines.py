"""Lines: the most repeated lines across documents, counted per chunk and merged in bounded memory.

textscan.py's kernel gives every non-blank line of a chunk (stripped, inner whitespace runs
collapsed to one space) as a hash and a span of the raw text. Each chunk counts, per source, the
docs holding each line of >= MIN_LINE_CHARS characters (once per doc); a Misra-Gries table per
source keeps the frequent ones in bounded memory, and the per-chunk counts are spilled so the
final counts of the candidates are exact. Only candidates get their text: the raw span, normalised.
Counting is one compiled pass over a hash table; a table is arrays plus texts by hash, like sample.py's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl
from numba import njit

from .constants import LINE_TABLE, MIN_LINE_CHARS, TOP_LINES
from .sample import sum_by_key
from .textscan import TextScan

# The whitespace that strip_chars() and the kernel know besides " " and "\n" (Unicode White_Space).
_OTHER_WS = ["\t", "\r", "\x0b", "\x0c", "\x85", "\xa0", "\u1680", *map(chr, range(0x2000, 0x200B)), "\u2028",
             "\u2029", "\u202f", "\u205f", "\u3000"]


def normalise(s: pl.Series) -> pl.Series:
    """Stripped, inner whitespace runs made one space (the kernel's normal form, as text)."""
    s = s.str.strip_chars().str.replace_many(_OTHER_WS, [" "] * len(_OTHER_WS))
    while True:
        idx = s.str.contains("  ", literal=True).fill_null(False).arg_true()
        if len(idx) == 0:
            return s
        s = s.scatter(idx, s.gather(idx).str.replace_all("  ", " ", literal=True))


@dataclass
class Lines:
    """A chunk's counted lines: per (source code, hash), in first-occurrence order, the docs holding
    it and where its first occurrence is (a span of data)."""

    names: list[str]
    src: np.ndarray
    h: np.ndarray
    n: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    data: np.ndarray
    chars: np.ndarray  # characters of each one's normal form

    def text(self, rows: np.ndarray) -> list[str]:
        """The normal form of the given counted lines. A raw span as long as its normal form is in
        normal form already (normalising only removes characters): only the others go to polars."""
        raw = [bytes(self.data[a:b]).decode("utf-8") for a, b in zip(self.lo[rows], self.hi[rows], strict=True)]
        odd = [i for i, (t, c) in enumerate(zip(raw, self.chars[rows].tolist(), strict=True)) if len(t) != c]
        if odd:
            fixed = normalise(pl.Series([raw[i] for i in odd], dtype=pl.String)).to_list()
            for i, t in zip(odd, fixed, strict=True):
                raw[i] = t
        return raw


def count_lines(scan: TextScan, codes: np.ndarray, names: list[str]) -> Lines:
    """Per source, the docs holding each line of >= MIN_LINE_CHARS characters in this chunk."""
    keep = np.flatnonzero(scan.line_chars >= MIN_LINE_CHARS)
    doc = scan.line_doc[keep]
    src = codes[doc] if len(names) > 1 else np.zeros(len(doc), np.int64)
    k_src, k_h, k_n, k_first = _count(doc, scan.line_hash[keep], src)
    at = keep[k_first]
    return Lines(names, k_src, k_h, k_n, scan.line_lo[at], scan.line_hi[at], scan.data, scan.line_chars[at])


@njit(nogil=True, cache=True)
def _count(doc, h, src):  # noqa: ANN001, ANN202
    """Distinct (source, hash) pairs in first-occurrence order: (source, hash, docs holding it, its
    first row). One pass over a hash table of row numbers (lines come in doc order, so a repeat in
    the same doc is the entry's last doc); a sort of every line cost several times as much."""
    n = len(h)
    size = 16
    while size < 2 * n:
        size *= 2
    mask = np.uint64(size - 1)
    table = np.full(size, -1, np.int32)  # entry of each slot
    k_src = np.empty(n, np.int64)
    k_h = np.empty(n, np.uint64)
    k_n = np.empty(n, np.int64)
    k_first = np.empty(n, np.int64)
    last_doc = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        key, s = h[i], src[i]
        slot = (key ^ (np.uint64(s) * np.uint64(0x9E3779B97F4A7C15))) & mask  # the hashes are mixed already
        while True:
            e = table[slot]
            if e < 0:
                table[slot] = m
                k_src[m], k_h[m], k_n[m], k_first[m], last_doc[m] = s, key, 1, i, doc[i]
                m += 1
                break
            if k_h[e] == key and k_src[e] == s:
                if last_doc[e] != doc[i]:
                    k_n[e] += 1
                    last_doc[e] = doc[i]
                break
            slot = (slot + np.uint64(1)) & mask
    return k_src[:m], k_h[:m], k_n[:m], k_first[:m]


# ---------------------------------------------------------------- Misra-Gries tables of frequent lines


@dataclass
class LineTable:
    """A source's Misra-Gries table: hashes (sorted), counts, and each one's line."""

    h: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    n: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    line: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.h)

    def merge(self, o: LineTable) -> LineTable:
        """Misra-Gries merge: add counts, then prune. Bounded at LINE_TABLE entries; any line in more
        than 1/LINE_TABLE of all counted line occurrences is kept (its exact count comes later from
        the spilled hashes)."""
        if len(o) == 0:
            return self
        if len(self) == 0:
            return o
        h, n = _prune(*sum_by_key(self.h, self.n, o.h, o.n))
        return LineTable(h, n, {k: self.line[k] if k in self.line else o.line[k] for k in h.tolist()})

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame({"h": self.h, "line": [self.line[k] for k in self.h.tolist()]},
                            schema={"h": pl.UInt64, "line": pl.String})


def _prune(h: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Misra-Gries step: take the (k+1)-th largest count off every count, keep the positive ones."""
    rows, n = _survivors(n)
    return h[rows], n


def _survivors(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Misra-Gries step on counts n: (rows kept, their counts less the (k+1)-th largest)."""
    if len(n) <= LINE_TABLE:
        return np.arange(len(n)), n
    big = np.flatnonzero(n > 1)
    if len(big) <= LINE_TABLE:  # then the (k+1)-th largest count is 1 (most chunks: no partition)
        return big, n[big] - 1
    cut = np.partition(n, len(n) - LINE_TABLE - 1)[len(n) - LINE_TABLE - 1]
    rows = np.flatnonzero(n > cut)
    return rows, n[rows] - cut


def chunk_candidates(lines: Lines) -> dict[str, LineTable]:
    """Per source: this chunk's counts pruned (the same Misra-Gries step), survivors named."""
    out = {}
    codes = [0] if len(lines.names) == 1 else np.unique(lines.src).tolist()
    for c in codes:
        mine = np.arange(len(lines.src)) if len(lines.names) == 1 else np.flatnonzero(lines.src == c)
        rows, n = _survivors(lines.n[mine])
        if len(rows) == 0:
            continue
        rows = mine[rows]
        order = np.argsort(lines.h[rows])  # a table's hashes are sorted
        rows, n = rows[order], n[order]
        h = lines.h[rows]
        out[lines.names[c]] = LineTable(h, n, dict(zip(h.tolist(), lines.text(rows), strict=True)))
    return out


def top_lines(counts: pl.DataFrame) -> list[dict]:
    top = (counts.filter(pl.col("docs") >= 2).sort(["docs", "line", "h"], descending=[True, False, False])
           .head(TOP_LINES))
    return [{"line": line, "docs": int(n)} for line, n in top.select("line", "docs").rows()]
