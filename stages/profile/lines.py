"""Lines: the most repeated lines across documents, counted per chunk and merged in bounded memory.

textscan.py's kernel gives every non-blank line of a chunk (stripped, inner whitespace runs
collapsed to one space) as a hash and a span of the raw text. Each chunk counts, per source, the
docs holding each line of >= MIN_LINE_CHARS characters (once per doc); a Misra-Gries table per
source keeps the frequent ones in bounded memory, and the per-chunk counts are spilled so the
final counts of the candidates are exact. Only candidates get their text: the raw span, normalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from .constants import LINE_TABLE, MIN_LINE_CHARS, TOP_LINES
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
    counts: pl.DataFrame  # source, h, n: docs holding each line >= MIN_LINE_CHARS in this chunk
    h: np.ndarray  # those lines (once per doc), in doc order: hash,
    lo: np.ndarray  # and raw span in data
    hi: np.ndarray
    data: np.ndarray

    def named(self, hashes: pl.Series) -> pl.DataFrame:
        """(h, line) for the given hashes: the first occurrence's text, normalised."""
        first = (pl.DataFrame({"h": self.h, "i": np.arange(len(self.h))})
                 .filter(pl.col("h").is_in(hashes.implode())).unique("h", keep="first"))
        idx = first["i"].to_numpy()
        raw = [bytes(self.data[a:b]).decode("utf-8") for a, b in zip(self.lo[idx], self.hi[idx], strict=True)]
        return pl.DataFrame({"h": first["h"], "line": normalise(pl.Series(raw, dtype=pl.String))})


def count_lines(scan: TextScan, codes: np.ndarray, names: list[str]) -> Lines:
    """Per source, the docs holding each line of >= MIN_LINE_CHARS characters in this chunk."""
    keep = scan.line_chars >= MIN_LINE_CHARS
    doc, h = scan.line_doc[keep], scan.line_hash[keep]
    lo, hi = scan.line_lo[keep], scan.line_hi[keep]
    rep = scan.counts["distinct_lines"] < scan.counts["nb_lines"]
    if rep.any():  # a line counts once per doc: drop the repeats (the first stays, spans in order)
        frame = pl.DataFrame({"doc": doc, "h": h, "i": np.arange(len(doc))})
        once = frame.filter(pl.Series(rep[doc])).unique(["doc", "h"], keep="first")["i"].to_numpy()
        sel = np.sort(np.concatenate([np.flatnonzero(~rep[doc]), once]))
        doc, h, lo, hi = doc[sel], h[sel], lo[sel], hi[sel]
    if len(names) == 1:
        counts = pl.DataFrame({"h": h}).group_by("h").agg(pl.len().cast(pl.Int64).alias("n")).select(
            pl.lit(names[0], pl.String).alias("source"), "h", "n")
    else:
        counts = pl.DataFrame({"src": codes[doc], "h": h}).group_by("src", "h").agg(
            pl.len().cast(pl.Int64).alias("n")).select(
            pl.col("src").replace_strict(dict(enumerate(names)), return_dtype=pl.String).alias("source"), "h", "n")
    return Lines(counts, h, lo, hi, scan.data)


# ---------------------------------------------------------------- Misra-Gries tables of frequent lines

LINES_SCHEMA = {"h": pl.UInt64, "n": pl.Int64, "line": pl.String}


def compact(df: pl.DataFrame) -> pl.DataFrame:
    """A copy owning only its own bytes: polars string slices are views that would otherwise keep
    every chunk's whole text buffer alive (memory growing with the corpus)."""
    return pl.from_arrow(df.to_arrow())  # type: ignore[return-value]


def prune(t: pl.DataFrame) -> pl.DataFrame:
    """Misra-Gries step: take the (k+1)-th largest count off every count, keep the positive ones."""
    if t.height <= LINE_TABLE:
        return t
    cut = t["n"].top_k(LINE_TABLE + 1).min()
    return t.with_columns(pl.col("n") - cut).filter(pl.col("n") > 0)


def merge_lines(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    """Misra-Gries merge: add counts, then prune. Bounded at LINE_TABLE entries; any line in more
    than 1/LINE_TABLE of all counted line occurrences is kept (its exact count comes later from
    the spilled hashes)."""
    both = pl.concat([a, b]).group_by("h").agg(pl.col("n").sum(), pl.col("line").first())
    return compact(prune(both).sort("h"))


def chunk_candidates(lines: Lines) -> dict[str, pl.DataFrame]:
    """Per source: this chunk's counts pruned (the same Misra-Gries step), survivors named."""
    out = {}
    for (src,), part in lines.counts.partition_by("source", as_dict=True, maintain_order=True).items():
        part = prune(part.select("h", "n"))
        out[str(src)] = part.join(lines.named(part["h"]), on="h", how="left")
    return out


def top_lines(counts: pl.DataFrame) -> list[dict]:
    top = (counts.filter(pl.col("docs") >= 2).sort(["docs", "line", "h"], descending=[True, False, False])
           .head(TOP_LINES))
    return [{"line": line, "docs": int(n)} for line, n in top.select("line", "docs").rows()]
