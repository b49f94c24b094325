"""Lines: per-document line figures, the exact-duplicate text key, and the most repeated lines.

Lines are compared stripped, inner whitespace runs collapsed to one space, blank ones dropped. A
doc's text key (exact duplicates) is the hash of its list of line hashes, so texts differing only
in whitespace (CRLF, trailing spaces, blank lines, runs of spaces) are copies.

Normalising costs string copies, so it is done only where it can change something: the caller
flags the docs holding whitespace at an edge, whitespace other than " " and "\n", or a space next
to a space or a newline, and only their lines are looked at; the others' lines are already in
normal form. Documents without an inner newline (common: one paragraph per record) are their own
single line and are not exploded at all.

Most repeated lines: each chunk counts, per source, the docs holding each line (>= MIN_LINE_CHARS);
a Misra-Gries table per source keeps the frequent ones (with their text) in bounded memory, and
the per-chunk counts are spilled so the final counts of the candidates are exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from .chars import arrow_view
from .constants import EMPTY_KEY, LINE_TABLE, MIN_LINE_CHARS, SEED, TERMINAL_PUNCT, TOP_LINES

# The whitespace that regex \s and strip_chars() know besides " " and "\n" (Unicode White_Space).
_OTHER_WS = ["\t", "\r", "\x0b", "\x0c", "\x85", "\xa0", "\u1680", *map(chr, range(0x2000, 0x200B)), "\u2028",
             "\u2029", "\u202f", "\u205f", "\u3000"]
_ODD_LINE_RE = r"[^\S ]|  "  # whitespace other than a single space inside a stripped line


def collapse(s: pl.Series) -> pl.Series:
    """Inner whitespace runs to one space (exactly ``replace_all(r"\\s+", " ")`` on stripped lines,
    without a regex: other whitespace becomes a space, then double spaces halve until none is left)."""
    s = s.str.replace_many(_OTHER_WS, [" "] * len(_OTHER_WS))
    while True:
        idx = s.str.contains("  ", literal=True).fill_null(False).arg_true()
        if len(idx) == 0:
            return s
        s = s.scatter(idx, s.gather(idx).str.replace_all("  ", " ", literal=True))


def normalise(s: pl.Series) -> pl.Series:
    """Stripped, collapsed; every line of the odd docs goes through this (few)."""
    s = s.str.strip_chars()
    odd = s.str.contains(_ODD_LINE_RE).fill_null(False)
    if not odd.any():
        return s
    idx = odd.arg_true()
    return s.scatter(idx, collapse(s.gather(idx)))


def list_hash(h: np.ndarray, per_doc: np.ndarray) -> np.ndarray:
    """polars' hash of each doc's list of line hashes (h: all lines in doc order; per_doc: counts)."""
    offs = np.concatenate(([0], np.cumsum(per_doc)))
    values = arrow_view(np.ascontiguousarray(h, np.uint64))
    lists = pa.LargeListArray.from_arrays(arrow_view(offs.astype(np.int64)), values)
    return pl.Series(pl.from_arrow(lists)).hash(SEED).to_numpy()


@dataclass
class Lines:
    nb_lines: np.ndarray  # per doc: non-blank lines
    distinct_lines: np.ndarray  # distinct among them
    terminal_lines: np.ndarray  # ending in terminal punctuation
    key: np.ndarray  # uint64 text key (EMPTY_KEY without a non-blank line)
    counts: pl.DataFrame  # source, h, n: docs holding each line >= MIN_LINE_CHARS in this chunk
    text: pl.DataFrame  # h, line: those lines' text (raw: normalised when named)


def line_stats(text: pl.Series, codes: np.ndarray, names: list[str], odd_docs: np.ndarray,
               single_line: bool) -> Lines:
    """odd_docs: docs that may hold whitespace to strip or collapse (others are used as they are)."""
    n = len(text)
    if single_line:
        doc = np.arange(n)
        line = text
    else:
        parts = text.str.split("\n")
        doc = np.repeat(np.arange(n), parts.list.len().fill_null(1).to_numpy())  # a null explodes to one null
        line = parts.explode()
        odd_docs = odd_docs[doc]
    # Raw lines of the odd docs are normalised; the others are already stripped and collapsed
    # (no whitespace but single spaces between words), or empty. The odd docs' lines move after
    # the others (a scatter back would copy every line): each doc's lines stay together, in order.
    if odd_docs.any():
        odd, ok = np.flatnonzero(odd_docs), np.flatnonzero(~odd_docs)
        line = pl.concat([line.gather(ok), normalise(line.gather(odd))], rechunk=False)
        doc = np.concatenate([doc[ok], doc[odd]])
    nonblank = (line.str.len_bytes().fill_null(0) > 0).to_numpy()
    if not nonblank.all():
        keep = np.flatnonzero(nonblank)
        line, doc = line.gather(keep), doc[keep]
    h = line.hash(SEED).to_numpy()
    term = line.str.slice(-1).is_in(TERMINAL_PUNCT).to_numpy()
    nb = np.bincount(doc, minlength=n)
    terminal = np.bincount(doc, weights=term, minlength=n).astype(np.int64)
    key = np.full(n, EMPTY_KEY, np.uint64)
    if len(doc):
        starts = np.flatnonzero(np.diff(doc, prepend=-1))  # each doc's run of lines
        key[doc[starts]] = list_hash(h, np.diff(starts, append=len(doc)))
    frame = pl.DataFrame({"doc": doc, "h": h, "line": line})
    distinct = nb.copy()
    multi = np.flatnonzero(nb > 1)
    if len(multi):  # docs of several lines: count their distinct lines
        part = frame.filter(pl.Series(nb[doc] > 1)).group_by("doc").agg(pl.col("h").n_unique().alias("d"))
        distinct[part["doc"].to_numpy()] = part["d"].to_numpy()
    # Lines of >= MIN_LINE_CHARS (bytes bound chars: under 10 bytes is short, 40 or more is long).
    nbytes = line.str.len_bytes().to_numpy()
    long = nbytes >= 4 * MIN_LINE_CHARS
    mid = np.flatnonzero((nbytes >= MIN_LINE_CHARS) & ~long)
    if len(mid):
        long[mid] = line.gather(mid).str.len_chars().to_numpy() >= MIN_LINE_CHARS
    frame = frame.filter(pl.Series(long))
    rep = distinct < nb  # a line counts once per doc: dedupe the docs that repeat lines
    if rep.any():
        inner = pl.Series(rep[frame["doc"].to_numpy()])
        frame = pl.concat([frame.filter(~inner), frame.filter(inner).unique(["doc", "h"], keep="first")])
    if len(names) == 1:
        counts = frame.group_by("h").agg(pl.len().cast(pl.Int64).alias("n")).select(
            pl.lit(names[0], pl.String).alias("source"), "h", "n")
    else:
        src = pl.Series("src", codes[frame["doc"].to_numpy()])
        counts = frame.with_columns(src).group_by("src", "h").agg(pl.len().cast(pl.Int64).alias("n")).select(
            pl.col("src").replace_strict(dict(enumerate(names)), return_dtype=pl.String).alias("source"), "h", "n")
    return Lines(nb, distinct, terminal, key, counts, frame.select("h", "line"))


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


def chunk_candidates(counts: pl.DataFrame, text: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Per source: this chunk's counts pruned (the same Misra-Gries step), survivors named."""
    out = {}
    for (src,), part in counts.partition_by("source", as_dict=True, maintain_order=True).items():
        part = prune(part.select("h", "n"))
        named = text.filter(pl.col("h").is_in(part["h"].implode())).unique("h", keep="first")
        out[str(src)] = part.join(named, on="h", how="left")
    return out


def top_lines(counts: pl.DataFrame) -> list[dict]:
    top = (counts.filter(pl.col("docs") >= 2).sort(["docs", "line", "h"], descending=[True, False, False])
           .head(TOP_LINES))
    return [{"line": line, "docs": int(n)} for line, n in top.select("line", "docs").rows()]
