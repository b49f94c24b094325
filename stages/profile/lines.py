"""Lines: per-document line figures, and the most repeated lines across documents in bounded memory.

A document's lines are its "\\n"-separated parts in the whitespace normal form of
the ``exact`` level of ``stages/normalise.py`` (exact_dedup's default: NFC, stripped, whitespace runs
made one space); blank ones are dropped. Joined by " ", they are the document's own normal form, whose hash is
the exact-duplicate key. The kernel splits and hashes the lines; those it cannot vouch are in normal
form already are normalised here by Normalisation. Per chunk, polars counts for each source the
documents holding each line of >= MIN_LINE_CHARS characters (once per document); a Misra-Gries
table per source keeps the frequent ones in bounded memory, and the per-chunk counts are spilled, so
the final counts of the candidates are exact (spill.line_counts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from corpus.stages.dedup_text import fmix64
from corpus.stages.normalise import Normalisation

from . import kernel
from .constants import LINE_TABLE, MIN_LINE_CHARS, TOP_LINES

LINE_NORM = Normalisation("exact")


@dataclass
class ChunkLines:
    nb: np.ndarray  # per doc: non-blank lines,
    distinct: np.ndarray  # distinct ones among them,
    term: np.ndarray  # those ending in TERMINAL_PUNCT,
    key: np.ndarray  # and the hash of the document's normal form (its lines joined by " ")
    counts: pl.DataFrame  # (source, h, n, row): documents holding each line of >= MIN_LINE_CHARS chars,
    #                       per source, and the row (in this chunk's lines) of its first occurrence
    texts: Callable[[np.ndarray], list[str]]  # the normal form of lines, by row


def chunk_lines(scan: kernel.Scan, source: pl.Series) -> ChunkLines:
    """The lines the kernel split (odd ones normalised by LINE_NORM here), per document and counted."""
    lines, n = scan.lines, len(scan.sketch)
    h, chars, size = lines.hash.copy(), lines.chars.copy(), lines.hi - lines.lo
    odd = np.flatnonzero(lines.odd)
    fixed = pl.Series(dtype=pl.String)
    if len(odd):
        raw = pl.Series(kernel.spans(scan.data, lines.lo[odd], lines.hi[odd]))
        fixed = LINE_NORM.apply(raw)
        h[odd] = kernel.hash_strings(fixed.to_arrow())
        chars[odd] = fixed.str.len_chars().to_numpy()
        size[odd] = fixed.str.len_bytes().to_numpy()
    nb = np.bincount(lines.doc, minlength=n)
    term = np.bincount(lines.doc, weights=lines.terminal, minlength=n).astype(np.int64)
    first = kernel.first_lines(lines.doc, h)  # a line repeated in its document counts once
    distinct = np.bincount(lines.doc, weights=first, minlength=n).astype(np.int64)
    key = fmix64(kernel.join_hashes(lines.doc, h, size, n))
    long = np.flatnonzero(first & (chars >= MIN_LINE_CHARS))
    frame = pl.DataFrame({"h": h[long], "row": long})
    if source.n_unique() == 1:
        counts = frame.group_by("h").agg(pl.len().cast(pl.Int64).alias("n"), pl.col("row").first())
        counts = counts.select(pl.lit(source[0] if len(source) else "", pl.String).alias("source"), "h", "n", "row")
    else:
        counts = (frame.with_columns(source.gather(lines.doc[long]).alias("source")).group_by("source", "h")
                  .agg(pl.len().cast(pl.Int64).alias("n"), pl.col("row").first()))

    def texts(rows: np.ndarray) -> list[str]:
        at = np.minimum(np.searchsorted(odd, rows), max(len(odd) - 1, 0))
        return [fixed[int(a)] if len(odd) and odd[a] == r else bytes(scan.data[lines.lo[r]:lines.hi[r]]).decode()
                for r, a in zip(rows.tolist(), at.tolist(), strict=True)]

    return ChunkLines(nb, distinct, term, key, counts, texts)


# ---------------------------------------------------------------- Misra-Gries tables of frequent lines


@dataclass
class LineTable:
    """A source's Misra-Gries table: line hashes (sorted), counts, and each one's line."""

    h: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    n: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    line: dict[int, str] = field(default_factory=dict)
    capacity: int = LINE_TABLE

    def __len__(self) -> int:
        return len(self.h)

    @classmethod
    def of(cls, counts: pl.DataFrame, texts: Callable[[np.ndarray], list[str]],
           capacity: int = LINE_TABLE) -> LineTable:
        """One chunk's counts of one source (h, n, row), pruned by the same Misra-Gries step; texts:
        the lines' normal forms by row (only the survivors' are made)."""
        rows, n = _survivors(counts["n"].to_numpy(), capacity)
        part = counts[rows].with_columns(pl.Series("n", n)).sort("h")
        lines = texts(part["row"].to_numpy())
        return cls(part["h"].to_numpy(), part["n"].to_numpy(), dict(zip(part["h"], lines, strict=True)), capacity)

    def merge(self, o: LineTable) -> LineTable:
        """Misra-Gries merge: add counts, then prune. Bounded at `capacity` entries; any line in more
        than 1/capacity of all counted line occurrences is kept (its exact count comes later from the
        spilled counts)."""
        if len(o) == 0:
            return self
        if len(self) == 0:
            return o
        h, n = sum_by_key(self.h, self.n, o.h, o.n)
        rows, n = _survivors(n, self.capacity)
        h = h[rows]
        return LineTable(h, n, {k: self.line[k] if k in self.line else o.line[k] for k in h.tolist()}, self.capacity)

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame({"h": self.h, "line": [self.line[k] for k in self.h.tolist()]},
                            schema={"h": pl.UInt64, "line": pl.String})


def sum_by_key(h1: np.ndarray, n1: np.ndarray, h2: np.ndarray, n2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct keys sorted, summed counts) of two keyed count arrays."""
    h = np.concatenate([h1, h2])
    n = np.concatenate([n1, n2])
    order = np.argsort(h, kind="stable")
    h, n = h[order], n[order]
    starts = np.flatnonzero(np.concatenate([[True], h[1:] != h[:-1]])) if len(h) else np.zeros(0, np.int64)
    return h[starts], np.add.reduceat(n, starts) if len(h) else n


def _survivors(n: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The Misra-Gries step on counts n: (rows kept, their counts less the (k+1)-th largest)."""
    if len(n) <= k:
        return np.arange(len(n)), n
    big = np.flatnonzero(n > 1)
    if len(big) <= k:  # then the (k+1)-th largest count is 1 (most chunks: no partition)
        return big, n[big] - 1
    cut = np.partition(n, len(n) - k - 1)[len(n) - k - 1]
    rows = np.flatnonzero(n > cut)
    return rows, n[rows] - cut


def top_lines(counts: pl.DataFrame) -> list[dict]:
    top = (counts.filter(pl.col("docs") >= 2).sort(["docs", "line", "h"], descending=[True, False, False])
           .head(TOP_LINES))
    return [{"line": line, "docs": int(n)} for line, n in top.select("line", "docs").rows()]
