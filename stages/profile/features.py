"""Every per-document feature of one chunk: numpy arrays, one value per document.

The text figures come from textscan.py's kernel (one pass over the UTF-8 bytes); this module turns
them into the features of docs/profile-format.md. A feature that does not apply (null text, no
words, no lines) is NaN (in the spill too: a NaN costs nothing to write, a null a pass).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from .chars import COUNTED
from .constants import FEATURES, SCRIPTS, SNIPPET_CHARS
from .lines import Lines, count_lines
from .meta import json_meta_types
from .textscan import Texts, scan_texts


@dataclass
class Chunk:
    names: list[str]  # the sources, sorted
    codes: np.ndarray  # each doc's source as an index into names
    stacked: np.ndarray  # float64 [feature (FEATURES order), doc], NaN where a feature does not apply
    values: dict[str, np.ndarray]  # the rows of stacked, by feature name
    sums: dict[str, np.ndarray]  # per doc int64: bytes, n_chars, words, lines, est_tokens, replacements
    is_null: np.ndarray
    is_empty: np.ndarray
    key: np.ndarray  # uint64 text key per doc (meaningless where is_null)
    ids: pa.Array
    texts: Texts
    lang: pl.Series  # null without a lang column
    lines: Lines
    scripts: np.ndarray  # letters per (source, script)
    meta: pl.DataFrame  # (source, key, type, n)
    has_lang: bool  # the frame had a lang column

    @property
    def docs(self) -> pl.DataFrame:
        """The features as a frame (id, source, features, h, snippet...): for tests."""
        cols = {
            "id": pl.Series(self.ids),
            "source": pl.Series(self.names, dtype=pl.String).gather(self.codes),
            "lang": self.lang,
            "is_null": pl.Series(self.is_null),
            "bytes": pl.Series(self.sums["bytes"]),
            "n_chars": _nullable(self.sums["n_chars"], self.is_null),
            "replacements": pl.Series(self.sums["replacements"]),
            **{f: (_nullable(np.nan_to_num(self.values[f]).astype(np.int64), self.is_null) if f in _INT_COLUMNS
                   else pl.Series(self.values[f], nan_to_null=True)) for f in FEATURES if f != "n_chars"},
            "is_empty": pl.Series(self.is_empty),
            "h": _nullable(self.key, self.is_null),
            "snippet": pl.Series(self.texts.prefixes(SNIPPET_CHARS)),
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


def source_codes(source: pl.Series) -> tuple[list[str], np.ndarray]:
    """(sorted distinct sources, each doc's index into them)."""
    source = source.cast(pl.String).fill_null("")
    names = sorted(source.unique().to_list())
    if len(names) == 1:
        return names, np.zeros(len(source), np.int64)
    return names, source.replace_strict({s: i for i, s in enumerate(names)}, return_dtype=pl.Int64).to_numpy()


def doc_features(df: pl.DataFrame, meta: pl.DataFrame | None = None) -> Chunk:
    """Every per-document feature of one frame (columns id, text, source; optional meta, lang).
    meta: the chunk's (source, key, type, n) rows when the caller has them (else read from `meta`)."""
    names, codes = source_codes(df["source"])
    lang = df["lang"].cast(pl.String) if "lang" in df.columns else None
    return features(Texts.from_series(df["text"]), df["id"].cast(pl.String).to_arrow(), names, codes, lang,
                    json_meta_types(df) if meta is None else meta)


def features(texts: Texts, ids: pa.Array, names: list[str], codes: np.ndarray, lang: pl.Series | None,
             meta: pl.DataFrame) -> Chunk:
    """The features of documents given as raw texts (the fast JSONL path builds no frame)."""
    n = len(texts)
    scan = scan_texts(texts, codes, len(names), len(SCRIPTS) + 1)
    c = scan.counts
    nbytes = np.diff(texts.offs)
    n_chars = c["n_chars"]
    ends_nl = (nbytes > 0) & (texts.data[np.maximum(texts.offs[1:] - 1, 0)] == 10)
    live = ~texts.null
    words = c["words"]
    n_lines = c["newlines"] + (nbytes > 0) - ends_nl
    est_tokens = (nbytes + 3) // 4
    values = {
        "n_chars": n_chars, "n_words": words, "n_lines": n_lines, "est_tokens": est_tokens,
        "mean_word_len": _ratio(n_chars - c["space"], words),
        **{f"frac_{k}": _ratio(c[k], n_chars) for k in COUNTED},
        "frac_lines_terminal_punct": _ratio(c["terminal_lines"], c["nb_lines"]),
        # Non-blank lines that repeat an earlier line of the same doc, over its non-blank lines.
        "dup_line_ratio": _ratio(c["nb_lines"] - c["distinct_lines"], c["nb_lines"]),
        "frac_replacement": _ratio(c["replacements"], n_chars),
    }
    for f in ("n_chars", "n_words", "n_lines", "est_tokens"):
        values[f] = np.where(live, values[f], np.nan)
    # One array for the compiled passes over every feature (histograms, outlier candidates).
    stacked = np.stack([values[f] for f in FEATURES]).astype(np.float64, copy=False)
    sums = {"bytes": nbytes, "n_chars": n_chars, "words": words * live, "lines": n_lines * live,
            "est_tokens": est_tokens * live, "replacements": c["replacements"]}
    # ASCII letters are Latin: the kernel counted only the non-ASCII ones per script.
    scripts = scan.scripts.copy()
    letters = np.bincount(codes, weights=c["alpha"], minlength=len(names)).astype(np.int64)
    scripts[:, 1] += letters - scripts.sum(axis=1)
    return Chunk(
        names=names, codes=codes, stacked=stacked, values=dict(zip(FEATURES, stacked, strict=True)), sums=sums,
        is_null=texts.null, is_empty=live & (words == 0),
        key=scan.key, ids=ids, texts=texts,
        lang=lang if lang is not None else pl.Series("lang", [None] * n, dtype=pl.String),
        lines=count_lines(scan, codes, names), scripts=scripts, meta=meta, has_lang=lang is not None,
    )
