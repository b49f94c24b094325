"""Every per-document feature of one chunk of documents, as one polars frame.

Lengths, line ends and mojibake are polars expressions over the text column; character classes,
words, scripts, lines and the near-duplicate sketch come from kernel.py, the one compiled pass; the
line figures and the exact-duplicate key (the lines' normal form joined) from lines.py. A feature
that does not apply (null text, no words, no lines) is null.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from corpus.stages.dedup import ExactDedup
from corpus.stages.dedup_text import fmix64
from corpus.stages.normalise import Normalisation

from . import kernel
from .constants import FEATURES, MOJIBAKE_AFTER_A
from .lines import LINE_NORM, ChunkLines, chunk_lines
from .meta import meta_column

# The exact-duplicate key is a hash of the lines' normal form joined (lines.py): exact_dedup's normal form
# while its normalisation is the lines' (its defaults), so the rate is what it would drop.
assert Normalisation(ExactDedup().normalise) == LINE_NORM, "exact_dedup's normal form is no longer its lines' joined"
MOJIBAKE = "\ufffd|[\u00c3\u00c2][{}]|\u00e2\u20ac|\u00ef\u00bb\u00bf".format(
    "".join(f"\\x{{{c:x}}}" for c in MOJIBAKE_AFTER_A))
SKETCH_COLS = tuple(f"s{i}" for i in range(kernel.SKETCH))
_PICK_SEED = np.uint64(0x5851F42D4C957F2D)


@dataclass
class Chunk:
    docs: pl.DataFrame  # one row per document (the columns of doc_features)
    text: pl.Series  # the documents' texts (for outlier example snippets)
    arrow: pa.Array  # the same as Arrow large strings, as the kernel read them (spilled without a second copy)
    scripts: dict[str, np.ndarray]  # letters per script (kernel.Scan.scripts columns), per source
    lines: ChunkLines  # per-document line figures, and the documents holding each line
    has_lang: bool  # the frame had a lang column


def check_frame(df: pl.DataFrame) -> None:
    missing = [c for c in ("id", "text", "source") if c not in df.columns]
    if missing:
        raise ValueError(f"profile: frame lacks column(s) {missing} (has {df.columns})")


def pick_keys(order: np.ndarray) -> np.ndarray:
    """Each document's sampling key (a hash of its place in the corpus): the near-duplicate sample is
    the documents with the smallest keys, a uniform sample whatever the order of the input."""
    return fmix64(order.astype(np.uint64) ^ _PICK_SEED)


def chunk_features(df: pl.DataFrame, order: np.ndarray | None = None) -> Chunk:
    """The features of one frame of documents (columns id, text, source; optional meta, lang).
    order: each document's place in the corpus (int64, increasing), default its row."""
    check_frame(df)
    n = df.height
    order = np.arange(n, dtype=np.int64) if order is None else np.asarray(order, np.int64)
    text = df["text"].cast(pl.String)
    has_lang = "lang" in df.columns
    t = pl.col("text")
    base = df.select(
        pl.col("id").cast(pl.String),
        pl.col("source").cast(pl.String).fill_null(""),
        (pl.col("lang").cast(pl.String) if has_lang else pl.lit(None, pl.String)).alias("lang"),
        t.is_null().alias("null"),
        t.str.len_bytes().fill_null(0).cast(pl.Int64).alias("bytes"),
        t.str.len_chars().fill_null(0).cast(pl.Int64).alias("chars"),
        t.str.count_matches("\n", literal=True).fill_null(0).cast(pl.Int64).alias("newlines"),
        t.str.ends_with("\n").fill_null(False).alias("ends_nl"),
        t.str.count_matches(MOJIBAKE).fill_null(0).cast(pl.Int64).alias("replacements"),
    )
    arrow = text.to_arrow()
    scan = kernel.scan(arrow, int(base["newlines"].sum()))
    lines = chunk_lines(scan, base["source"], order)
    docs = _frame(base, scan, lines, order)
    docs = docs.with_columns(pl.when(~pl.col("null")).then(pl.Series(lines.key)).alias("h"))
    scripts = _by_source(scan.scripts, base["source"])
    return Chunk(docs.with_columns(meta_column(df)), text, arrow, scripts, lines, has_lang)


def doc_features(df: pl.DataFrame) -> pl.DataFrame:
    """The per-document features of a frame, one row per document: id, source, lang, null, empty,
    bytes, replacements (mojibake), the FEATURES, h (the exact-duplicate key), order, pick and the
    sketch columns (near-duplicate sampling), meta (as given)."""
    return chunk_features(df).docs


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den where den > 0, else NaN (the feature does not apply)."""
    out = np.full(len(den), np.nan)
    ok = den > 0
    out[ok] = num[ok] / den[ok]
    return out


def _frame(base: pl.DataFrame, scan: kernel.Scan, lines: ChunkLines, order: np.ndarray) -> pl.DataFrame:
    c = scan.counts
    nb, distinct, term = lines.nb, lines.distinct, lines.term
    null = base["null"].to_numpy()
    nbytes, chars, words = base["bytes"].to_numpy(), base["chars"].to_numpy(), c["words"]
    n_lines = base["newlines"].to_numpy() + ((nbytes > 0) & ~base["ends_nl"].to_numpy())
    est_tokens = (nbytes + 3) // 4  # corpus.units.est_tokens, per document
    values = {
        "n_chars": chars, "n_words": words, "n_lines": n_lines, "est_tokens": est_tokens,
        "mean_word_len": _ratio(chars - c["space"], words),
        **{f"frac_{k}": _ratio(c[k], chars) for k in kernel.CLASSES},
        "frac_lines_terminal_punct": _ratio(term, nb),
        # Non-blank lines that repeat an earlier line of the same doc, over its non-blank lines.
        "dup_line_ratio": _ratio(nb - distinct, nb),
        "frac_replacement": _ratio(base["replacements"].to_numpy(), chars),
    }
    feats = {f: pl.Series(f, np.where(null, np.nan, values[f]).astype(np.float64), nan_to_null=True)
             for f in FEATURES}
    live = ~null
    sketch = {name: pl.Series(name, scan.sketch[:, i]).scatter(np.flatnonzero(scan.sketch[:, i] == kernel.NONE), None)
              for i, name in enumerate(SKETCH_COLS)}
    return pl.DataFrame([
        pl.Series("order", order), base["id"], base["source"], base["lang"],
        pl.Series("pick", pick_keys(order)), *sketch.values(),
        base["null"], pl.Series("empty", live & (words == 0)), pl.Series("bytes", nbytes), base["replacements"],
        *feats.values(),
    ])


def _by_source(per_doc: np.ndarray, source: pl.Series) -> dict[str, np.ndarray]:
    if source.n_unique() == 1:
        return {source[0]: per_doc.sum(axis=0)}
    cols = [f"c{i}" for i in range(per_doc.shape[1])]
    sums = pl.DataFrame(per_doc, schema=cols).with_columns(source).group_by("source").agg(pl.col(cols).sum())
    return {row[0]: np.array(row[1:], np.int64) for row in sums.iter_rows()}
