"""Lines: per-document line figures, and the most repeated lines across documents in bounded memory.

A document's lines are its "\\n"-separated parts in the whitespace normal form of
the ``exact`` level of ``stages/normalise.py`` (exact_dedup's default: NFC, stripped, whitespace runs
made one space); blank ones are dropped. Joined by " ", they are the document's own normal form, whose hash is
the exact-duplicate key. The kernel splits the lines and hashes their whitespace normal form; those
holding a character NFC might change are normalised here by Normalisation. Per chunk, polars counts for each source the
documents holding each line of >= MIN_LINE_CHARS characters (once per document); a Misra-Gries
table per source keeps the frequent ones in bounded memory, and the per-chunk counts are spilled, so
the final counts of the candidates are exact (spill.line_counts). The tables hold hashes and where
one occurrence of each line is (its document's order, its bytes in that text), not texts: only the
lines that can be shown get their text, from the spilled texts, at the end (top_lines).
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
    where: Callable[[np.ndarray], np.ndarray]  # lines by row -> int64 [row, (order, lo, hi)]: the
    #                                            document's order and the line's bytes in its text


def chunk_lines(scan: kernel.Scan, source: pl.Series, order: np.ndarray) -> ChunkLines:
    """The lines the kernel split (odd ones, which NFC might change, normalised by LINE_NORM here), per
    document and counted;
    order: the documents' places in the corpus."""
    lines, n = scan.lines, len(scan.sketch)
    h, chars, size = lines.hash.copy(), lines.chars.copy(), lines.size.copy()
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

    def where(rows: np.ndarray) -> np.ndarray:
        doc = lines.doc[rows]
        start = scan.offs[doc]
        return np.stack([order[doc], lines.lo[rows] - start, lines.hi[rows] - start], axis=1).astype(np.int64)

    return ChunkLines(nb, distinct, term, key, counts, where)


# ---------------------------------------------------------------- Misra-Gries tables of frequent lines


def _no_where() -> np.ndarray:
    return np.zeros((0, 3), np.int64)


@dataclass
class LineTable:
    """A source's Misra-Gries table: line hashes (sorted), counts, and where one occurrence of each is
    (ChunkLines.where)."""

    h: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    n: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    where: np.ndarray = field(default_factory=_no_where)
    capacity: int = LINE_TABLE

    def __len__(self) -> int:
        return len(self.h)

    @classmethod
    def of(cls, counts: pl.DataFrame, where: Callable[[np.ndarray], np.ndarray],
           capacity: int = LINE_TABLE) -> LineTable:
        """One chunk's counts of one source (h, n, row), pruned by the same Misra-Gries step; where: the
        lines' places by row (ChunkLines.where)."""
        rows, n = _survivors(counts["n"].to_numpy(), capacity)
        part = counts[rows].with_columns(pl.Series("n", n)).sort("h")
        return cls(part["h"].to_numpy(), part["n"].to_numpy(), where(part["row"].to_numpy()), capacity)

    def merge(self, o: LineTable) -> LineTable:
        """Misra-Gries merge: add counts, then prune. Bounded at `capacity` entries; any line in more
        than 1/capacity of all counted line occurrences is kept (its exact count comes later from the
        spilled counts)."""
        if len(o) == 0:
            return self
        if len(self) == 0:
            return o
        h = np.concatenate([self.h, o.h])
        by = np.argsort(h, kind="stable")  # a line in both keeps self's place (the earlier)
        h, n, where = h[by], np.concatenate([self.n, o.n])[by], np.concatenate([self.where, o.where])[by]
        starts = np.flatnonzero(np.concatenate([[True], h[1:] != h[:-1]]))
        rows, n = _survivors(np.add.reduceat(n, starts), self.capacity)
        return LineTable(h[starts][rows], n, where[starts][rows], self.capacity)

    def frame(self) -> pl.DataFrame:
        """(h, order, lo, hi): the lines and where one occurrence of each is."""
        w = self.where
        return pl.DataFrame({"h": self.h, "order": w[:, 0], "lo": w[:, 1], "hi": w[:, 2]},
                            schema={"h": pl.UInt64, "order": pl.Int64, "lo": pl.Int64, "hi": pl.Int64})


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


def top_candidates(counts: pl.DataFrame) -> pl.DataFrame:
    """The counted lines (h, docs, order, lo, hi) that can be among the TOP_LINES shown (most documents
    first, ties by their text): those in at least 2 documents and in at least as many as the
    TOP_LINES-th. Only these get their text (top_lines)."""
    live = counts.filter(pl.col("docs") >= 2)
    if live.height > TOP_LINES:
        live = live.filter(pl.col("docs") >= live["docs"].top_k(TOP_LINES).min())
    return live


FETCH_DOCS = 256  # documents' texts in memory at once while their lines are cut out (documents can be large)


def line_texts(candidates: pl.DataFrame, fetch: Callable[[np.ndarray], dict[int, str]],
               batch: int = FETCH_DOCS) -> pl.DataFrame:
    """(order, lo, hi, line): the normal form of each candidate's line, cut from its document's text
    (fetch: texts by order), `batch` documents at a time."""
    at = candidates.select("order", "lo", "hi").unique().sort("order", "lo", "hi")
    order = at["order"].to_numpy()
    starts = np.flatnonzero(np.diff(order, prepend=-1))  # each document's first row (orders are >= 0)
    ends = np.append(starts[batch::batch], len(order))
    raw: list[str] = []
    for k, first in enumerate(starts[::batch]):
        utf8 = {o: t.encode() for o, t in fetch(order[starts[k * batch:(k + 1) * batch]]).items()}
        raw += [utf8[o][lo:hi].decode() for o, lo, hi in at.slice(first, ends[k] - first).iter_rows()]
    return at.with_columns(LINE_NORM.apply(pl.Series(raw, dtype=pl.String)).alias("line"))


def top_lines(candidates: pl.DataFrame, lines: pl.DataFrame) -> list[dict]:
    """The TOP_LINES of top_candidates, in normal form; lines: their texts (line_texts)."""
    top = (candidates.join(lines, on=["order", "lo", "hi"], how="left")
           .sort(["docs", "line", "h"], descending=[True, False, False]).head(TOP_LINES))
    return [{"line": line, "docs": int(n)} for line, n in top.select("line", "docs").rows()]
