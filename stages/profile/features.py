"""Every per-document feature of one chunk, vectorised: numpy arrays, one value per document.

Character classes and word counts come from chars.py (one pass over the UTF-8 bytes), line figures
and the text key from lines.py; lengths from polars' string kernels; the mojibake regex runs only
on documents with non-ASCII bytes. A feature that does not apply (null text, no words, no lines) is
NaN (in the spill too: a NaN costs nothing to write, a null a pass).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from .chars import COUNTED, char_counts, script_counts
from .constants import FEATURES, MOJIBAKE_RE, SNIPPET_CHARS
from .lines import Lines, line_stats
from .meta import json_meta_types


@dataclass
class Chunk:
    names: list[str]  # the sources, sorted
    codes: np.ndarray  # each doc's source as an index into names
    values: dict[str, np.ndarray]  # per feature: float64 per doc, NaN where it does not apply
    sums: dict[str, np.ndarray]  # per doc int64: bytes, n_chars, words, lines, est_tokens, replacements
    is_null: np.ndarray
    is_empty: np.ndarray
    key: np.ndarray  # uint64 text key per doc (meaningless where is_null)
    ids: pl.Series
    text: pl.Series
    lang: pl.Series  # null without a lang column
    lines: Lines
    scripts: np.ndarray  # letters per (source, script)
    meta: pl.DataFrame  # (source, key, type, n)
    has_lang: bool  # the frame had a lang column

    @property
    def docs(self) -> pl.DataFrame:
        """The features as a frame (id, source, features, h, snippet...): for the spill and for tests."""
        null = pl.Series(self.is_null)
        cols = {
            "id": self.ids,
            "source": pl.Series(self.names, dtype=pl.String).gather(self.codes),
            "lang": self.lang,
            "is_null": null,
            "bytes": pl.Series(self.sums["bytes"]),
            "n_chars": _nullable(self.sums["n_chars"], self.is_null),
            "replacements": pl.Series(self.sums["replacements"]),
            **{f: (_nullable(np.nan_to_num(self.values[f]).astype(np.int64), self.is_null) if f in _INT_COLUMNS
                   else pl.Series(self.values[f], nan_to_null=True)) for f in FEATURES if f != "n_chars"},
            "is_empty": pl.Series(self.is_empty),
            "h": _nullable(self.key, self.is_null),
            "snippet": self.text.str.slice(0, SNIPPET_CHARS),
        }
        return pl.DataFrame(cols)


_INT_COLUMNS = ("n_words", "n_lines", "est_tokens")


def _nullable(values: np.ndarray, null: np.ndarray) -> pl.Series:
    s = pl.Series(values)
    return s.scatter(np.flatnonzero(null), None) if null.any() else s


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den where den > 0, else NaN (the feature does not apply)."""
    out = np.full(len(den), np.nan)
    ok = den > 0
    out[ok] = num[ok].astype(np.float64) / den[ok].astype(np.float64)
    return out


def doc_features(df: pl.DataFrame, meta: pl.DataFrame | None = None) -> Chunk:
    """Every per-document feature of one frame (columns id, text, source; optional meta, lang).
    meta: the chunk's (source, key, type, n) rows when the caller has them (else read from `meta`)."""
    n = df.height
    text = df["text"].cast(pl.String)
    source = df["source"].cast(pl.String).fill_null("")
    names = sorted(source.unique().to_list())
    if len(names) == 1:
        codes = np.zeros(n, np.int64)
    else:
        codes = source.replace_strict({s: i for i, s in enumerate(names)}, return_dtype=pl.Int64).to_numpy()
    has_lang = "lang" in df.columns
    lang = df["lang"].cast(pl.String) if has_lang else pl.Series("lang", [None] * n, dtype=pl.String)
    is_null = text.is_null().to_numpy()
    nbytes = text.str.len_bytes().fill_null(0).cast(pl.Int64).to_numpy()
    n_chars = text.str.len_chars().fill_null(0).cast(pl.Int64).to_numpy()
    newlines = text.str.count_matches("\n", literal=True).fill_null(0).cast(pl.Int64).to_numpy()
    ends_nl = text.str.ends_with("\n").fill_null(False).to_numpy()
    cc = char_counts(text, n_chars, codes, len(names))
    c = cc.counts
    # Docs whose lines may need stripping or collapsing: whitespace at an edge, any whitespace but
    # " " and "\n", or a space next to a space or a newline. The rest are used as they are.
    maybe = cc.edge_ws | (c["odd_space"] > 0)
    if (c["space"] > newlines).any():  # some doc has a space at all
        maybe |= text.str.contains(r"  | \n|\n ").fill_null(False).to_numpy()
    single_line = not (newlines - ends_nl).any()
    lines = line_stats(text, codes, names, maybe, single_line)
    # Mojibake needs non-ASCII bytes: the regex runs on those docs only.
    replacements = np.zeros(n, np.int64)
    wide = np.flatnonzero(nbytes != n_chars)
    if len(wide):
        replacements[wide] = text.gather(wide).str.count_matches(MOJIBAKE_RE).fill_null(0).to_numpy()
    live = ~is_null
    words = c["words"]
    n_lines = newlines + (nbytes > 0) - ends_nl
    est_tokens = (nbytes + 3) // 4
    values = {
        "n_chars": n_chars, "n_words": words, "n_lines": n_lines, "est_tokens": est_tokens,
        "mean_word_len": _ratio(n_chars - c["space"], words),
        **{f"frac_{k}": _ratio(c[k], n_chars) for k in COUNTED},
        "frac_lines_terminal_punct": _ratio(lines.terminal_lines, lines.nb_lines),
        # Non-blank lines that repeat an earlier line of the same doc, over its non-blank lines.
        "dup_line_ratio": _ratio(lines.nb_lines - lines.distinct_lines, lines.nb_lines),
        "frac_replacement": _ratio(replacements, n_chars),
    }
    for f in ("n_chars", "n_words", "n_lines", "est_tokens"):
        values[f] = np.where(live, values[f], np.nan)
    sums = {"bytes": nbytes, "n_chars": n_chars, "words": words * live, "lines": n_lines * live,
            "est_tokens": est_tokens * live, "replacements": replacements}
    if meta is None:
        meta = json_meta_types(df)
    return Chunk(
        names=names, codes=codes, values=values, sums=sums, is_null=is_null, is_empty=live & (words == 0),
        key=lines.key, ids=df["id"].cast(pl.String), text=text, lang=lang, lines=lines,
        scripts=script_counts(codes, len(names), cc), meta=meta, has_lang=has_lang,
    )
