"""Lines: the most repeated lines across documents, counted per chunk and merged in bounded memory.

textscan.py's kernel gives every non-blank line of a chunk (stripped, inner whitespace runs
collapsed to one space) as a hash and a span of the raw text. Each chunk counts, per source, the
docs holding each line of >= MIN_LINE_CHARS characters (once per doc); a Misra-Gries table per
source keeps the frequent ones in bounded memory, and the per-chunk counts are spilled so the
final counts of the candidates are exact. Only candidates get their text: the raw span, normalised.
Counting is sorting hashes (numpy); a table is arrays plus texts by hash, like sample.py's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

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


def _runs(*keys: np.ndarray) -> np.ndarray:
    """Starts of the runs of equal rows in sorted keys (as many arrays, compared together)."""
    n = len(keys[0])
    new = np.zeros(n, bool)
    new[:1] = True
    for k in keys:
        new[1:] |= k[1:] != k[:-1]
    return np.flatnonzero(new)


@dataclass
class Lines:
    """A chunk's counted lines: per (source code, hash), sorted, the docs holding it and where its
    first occurrence is (a span of data)."""

    names: list[str]
    src: np.ndarray
    h: np.ndarray
    n: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    data: np.ndarray

    def text(self, rows: np.ndarray) -> list[str]:
        """The normal form of the given counted lines."""
        raw = [bytes(self.data[a:b]).decode("utf-8") for a, b in zip(self.lo[rows], self.hi[rows], strict=True)]
        return normalise(pl.Series(raw, dtype=pl.String)).to_list()


def count_lines(scan: TextScan, codes: np.ndarray, names: list[str]) -> Lines:
    """Per source, the docs holding each line of >= MIN_LINE_CHARS characters in this chunk."""
    keep = np.flatnonzero(scan.line_chars >= MIN_LINE_CHARS)
    doc, h = scan.line_doc[keep], scan.line_hash[keep]
    rep = scan.counts["distinct_lines"] < scan.counts["nb_lines"]
    if rep.any():  # a line counts once per doc: drop the repeats of the few docs that have some
        r = np.flatnonzero(rep[doc])
        o = r[np.lexsort((r, h[r], doc[r]))]  # by doc, hash, position
        again = np.flatnonzero((doc[o][1:] == doc[o][:-1]) & (h[o][1:] == h[o][:-1])) + 1
        mask = np.ones(len(keep), bool)
        mask[o[again]] = False
        keep, doc, h = keep[mask], doc[mask], h[mask]
    # By source, then hash (an unstable sort: several times faster than a stable one on 64-bit keys;
    # each run's first occurrence is its smallest position).
    order = np.argsort(h)
    src = np.zeros(len(order), np.int16)
    if len(names) > 1:
        src = codes[doc].astype(np.int16)
        order = order[np.argsort(src[order], kind="stable")]  # small ints: a radix sort
    s_src, s_h = src[order], h[order]
    starts = _runs(s_src, s_h)
    n = np.diff(np.append(starts, len(order))).astype(np.int64)
    at = keep[np.minimum.reduceat(order, starts)] if len(order) else keep
    return Lines(names, s_src[starts].astype(np.int64), s_h[starts], n, scan.line_lo[at], scan.line_hi[at],
                 scan.data)


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
    if len(n) <= LINE_TABLE:
        return h, n
    big = np.flatnonzero(n > 1)
    if len(big) <= LINE_TABLE:  # then the (k+1)-th largest count is 1 (most chunks: no partition)
        return h[big], n[big] - 1
    cut = np.partition(n, len(n) - LINE_TABLE - 1)[len(n) - LINE_TABLE - 1]
    n = n - cut
    keep = n > 0
    return h[keep], n[keep]


def chunk_candidates(lines: Lines) -> dict[str, LineTable]:
    """Per source: this chunk's counts pruned (the same Misra-Gries step), survivors named."""
    out = {}
    for s in _runs(lines.src).tolist():
        e = s + int(np.searchsorted(lines.src[s:], lines.src[s], side="right"))
        h, n = _prune(lines.h[s:e], lines.n[s:e])
        if len(h) == 0:
            continue
        rows = s + np.searchsorted(lines.h[s:e], h)
        out[lines.names[int(lines.src[s])]] = LineTable(h, n, dict(zip(h.tolist(), lines.text(rows), strict=True)))
    return out


def top_lines(counts: pl.DataFrame) -> list[dict]:
    top = (counts.filter(pl.col("docs") >= 2).sort(["docs", "line", "h"], descending=[True, False, False])
           .head(TOP_LINES))
    return [{"line": line, "docs": int(n)} for line, n in top.select("line", "docs").rows()]
