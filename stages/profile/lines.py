"""Lines: per-document line figures, and the most repeated lines across documents in bounded memory.

A document's lines are its "\\n"-separated parts in the whitespace normal form of
``dedup_text.Normalisation`` (exact_dedup's default: stripped, whitespace runs made one space, case
kept); blank ones are dropped. Joined by " ", they are the document's own normal form. Per chunk,
polars counts for each source the documents holding each line of >= MIN_LINE_CHARS characters (once
per document); a Misra-Gries table per source keeps the frequent ones in bounded memory, and the
per-chunk counts are spilled, so the final counts of the candidates are exact (spill.line_counts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl
from corpus.stages.dedup_text import Normalisation

from .constants import LINE_TABLE, MIN_LINE_CHARS, TERMINAL_PUNCT, TOP_LINES

LINE_NORM = Normalisation(lowercase=False)
COUNTS_SCHEMA = {"source": pl.String, "h": pl.UInt64, "n": pl.Int64, "line": pl.String}


# A line without leading, trailing, doubled or non-" " whitespace is in normal form already: only the
# others go through LINE_NORM (a regex replace per line cost more than the rest of the line figures).
_NOT_NORMAL = r"^\s|\s$|\s\s|[^\S ]"


@dataclass
class ChunkLines:
    per_doc: pl.DataFrame  # doc (row in the chunk), nb (non-blank lines), distinct, term (ending in
    #                        TERMINAL_PUNCT), key (hash of the document's normal form: its lines joined by " ")
    counts: pl.DataFrame  # COUNTS_SCHEMA: documents holding each line of >= MIN_LINE_CHARS chars, per source


def chunk_lines(text: pl.Series, source: pl.Series) -> ChunkLines:
    lines = pl.DataFrame({"doc": pl.int_range(len(text), dtype=pl.UInt32, eager=True), "source": source,
                          "line": text.str.split("\n")}).explode("line")
    line = lines["line"]
    odd = line.str.contains(_NOT_NORMAL).fill_null(False).arg_true()
    if len(odd):
        line = line.scatter(odd, pl.select(LINE_NORM.expr(pl.lit(line.gather(odd)))).to_series())
    lines = lines.with_columns(line).filter(pl.col("line") != "").with_columns(pl.col("line").hash().alias("h"))
    per_doc = lines.group_by("doc").agg(
        pl.len().cast(pl.Int64).alias("nb"), pl.col("h").n_unique().cast(pl.Int64).alias("distinct"),
        pl.col("line").str.slice(-1).is_in(TERMINAL_PUNCT).sum().cast(pl.Int64).alias("term"),
        pl.col("line").str.join(" ").hash().alias("key"))
    counts = (lines.filter(pl.col("line").str.len_chars() >= MIN_LINE_CHARS)
              .group_by("source", "h")
              .agg(pl.col("doc").n_unique().cast(pl.Int64).alias("n"), pl.col("line").first()))
    return ChunkLines(per_doc, counts)


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
    def of(cls, counts: pl.DataFrame, capacity: int = LINE_TABLE) -> LineTable:
        """One chunk's counts of one source (h, n, line), pruned by the same Misra-Gries step."""
        rows, n = _survivors(counts["n"].to_numpy(), capacity)
        part = counts[rows].with_columns(pl.Series("n", n)).sort("h")
        return cls(part["h"].to_numpy(), part["n"].to_numpy(), dict(zip(part["h"], part["line"], strict=True)),
                   capacity)

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
