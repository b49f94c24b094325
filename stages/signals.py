"""Quality signals: typed columns computed once per document (Dolma's "tag, then mix"), so the quality
filters are cheap threshold checks that re-run without recomputing anything.

The statistics are those behind datatrove's Gopher quality and repetition, C4 and FineWeb filters
(``src/datatrove/pipeline/filters/*``), plus plain counts, an estimated token count, a content hash and
the URL's domain and TLD. Every column, its exact definition and its source are listed in
docs/operators.md ("Quality signals"); ``benchmarks/enrich_plain.py`` is the same work written per
document in plain Python, and the tests hold the two equal on hand-made documents.

Words are runs of non-whitespace characters (Python's ``str.split()``), as Dolma's taggers count them;
datatrove splits punctuation off with a language tokenizer, so its word counts and lengths differ a
little on punctuation-heavy text. Everything is polars list expressions over the batch, except the
n-gram repetition statistics: their word hashes come from polars and one compiled pass (numba) counts
the n-grams of every document (``ngram_stats``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa

from corpus.operators import Columns, MapOperator
from corpus.schema import ID, META, TEXT
from corpus.stages.dedup_text import digests128
from corpus.stages.words import split_words

# Python's whitespace (str.isspace), so "words" are exactly str.split()'s and strip() is str.strip()
# (tests/test_enrich_signals.py checks this against every code point).
PY_WS = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
         "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
WS_CLASS = "".join(f"\\x{{{ord(c):x}}}" for c in PY_WS)
WORD_RE = f"[^{WS_CLASS}]+"
# words: "datatrove" splits as datatrove's English word tokenizer (spaCy's) does: stages/words.py
WORD_MODES = ("whitespace", "datatrove")
# Punctuation and symbols (Unicode P* and S*): a word made only of these is a "symbol word".
PUNCT = r"\p{P}\p{S}"
# Line breaks of str.splitlines() other than "\n" ("\r\n" is replaced first).
_SPLITLINES_BREAKS = "[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]"
STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")  # Gopher's required English words
TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)
C4_END = (".", "?", "!", '"', "'")
C4_CITATION = r"\[\d*\]|\[edit\]|\[citation needed\]"
C4_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
# FineWeb's "ends in terminal punctuation": datatrove's TERMINAL_PUNCTUATION, which is Unicode's
# Sentence_Terminal (. ! ? and their kin in other scripts; not quotes) plus three Khmer signs
FINEWEB_END = r"[\p{Sentence_Terminal}\x{17D6}\x{17D9}\x{17DA}]$"
# A sentence ends at . ! or ? (then closing quotes or brackets) followed by whitespace and more text.
_SENTENCE_BREAK = r"[.!?]+[\"'\u201d\u2019)\]]*[" + WS_CLASS + r"]+[^" + WS_CLASS + r"]"
_URL_HOST = r"^[A-Za-z][A-Za-z0-9+.\-]*://(?:[^@/?#]*@)?(\[[^\]]*\]|[^:/?#\[\]]*)"

I64, F64 = pl.Int64, pl.Float64
GROUPS: dict[str, dict[str, type[pl.DataType]]] = {
    "counts": {"n_chars": I64, "n_bytes": I64, "n_words": I64, "n_lines": I64, "max_word_length": I64,
               "est_tokens": I64, "content_hash": pl.String},
    "gopher_quality": {"gopher_words": I64, "gopher_mean_word_length": F64, "gopher_hash_ratio": F64,
                       "gopher_ellipsis_ratio": F64, "gopher_bullet_lines": F64, "gopher_ellipsis_lines": F64,
                       "gopher_alpha_words": F64, "gopher_stop_words": I64},
    "gopher_repetition": {"gopher_dup_para_frac": F64, "gopher_dup_para_char_frac": F64,
                          "gopher_dup_line_frac": F64, "gopher_dup_line_char_frac": F64,
                          **{f"gopher_top_{n}gram_frac": F64 for n in TOP_NGRAMS},
                          **{f"gopher_dup_{n}gram_frac": F64 for n in DUP_NGRAMS}},
    "c4": {"c4_lines_kept": I64, "c4_sentences": I64, "c4_lorem_ipsum": pl.Boolean, "c4_curly_bracket": pl.Boolean,
           "c4_third_longest_line": I64},
    "fineweb": {"fineweb_line_punct_frac": F64, "fineweb_short_line_frac": F64, "fineweb_dup_line_char_frac": F64,
                "fineweb_newline_word_ratio": F64},
    "url": {"url_domain": pl.String, "url_tld": pl.String},
}
ALL_GROUPS = tuple(GROUPS)
_BATCH_BYTES = 16 << 20  # text per internal batch: bounds the exploded word and line lists

class Flat:
    """One list per document (its words, or its lines), flattened: ``values`` with the document
    index ``doc`` of each, so per-element work is one vectorised pass and per-document figures are
    sums over ``doc`` (numpy bincount)."""

    def __init__(self, lists: pl.Series):
        self.n = len(lists)
        self.lens = lists.list.len().cast(pl.Int64).to_numpy()
        self.doc = np.repeat(np.arange(self.n, dtype=np.int64), self.lens)
        self.values = lists.explode(empty_as_null=False).rename("v")

    def sum(self, x: pl.Series | np.ndarray) -> np.ndarray:
        w = x.cast(pl.Float64).to_numpy() if isinstance(x, pl.Series) else x.astype(np.float64)
        return np.bincount(self.doc, weights=w, minlength=self.n)

    def eval(self, expr: pl.Expr) -> pl.Series:
        return self.values.to_frame().select(expr.alias("x")).to_series()

    def repeats(self) -> pl.Series:
        """True for an element equal to an earlier element of its document (datatrove's find_duplicates)."""
        frame = pl.DataFrame({"d": self.doc, "v": self.values})
        return frame.select(pl.struct("d", "v").is_first_distinct().not_()).to_series()

    def dup_count_chars(self) -> tuple[np.ndarray, np.ndarray]:
        rep = self.repeats()
        return self.sum(rep), self.sum(self.values.str.len_chars() * rep)


def _ratio(num: np.ndarray, den: np.ndarray) -> pl.Series:
    """num / den as Float64, null where den is 0 (a ratio of nothing is no evidence either way)."""
    den = np.asarray(den, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.asarray(num, dtype=np.float64) / den
    return pl.Series(np.where(den == 0, np.nan, out)).fill_nan(None)


def _ends_with_any(e: pl.Expr, suffixes: tuple[str, ...]) -> pl.Expr:
    out = e.str.ends_with(suffixes[0])
    for s in suffixes[1:]:
        out = out | e.str.ends_with(s)
    return out


def _contains_any(e: pl.Expr, needles: tuple[str, ...]) -> pl.Expr:
    return e.str.contains("|".join(re.escape(n) for n in needles))


def splitlines(text: pl.Series) -> pl.Series:
    """str.splitlines(): every line break Python knows, no empty last line after a final break."""
    t = text.str.replace_all("\r\n", "\n", literal=True).str.replace_all(_SPLITLINES_BREAKS, "\n")
    frame = pl.DataFrame({"t": t, "empty": text.str.len_bytes() == 0})
    lines = pl.col("t").str.split("\n")
    drop_last = pl.col("t").str.ends_with("\n").cast(pl.Int64) + pl.col("empty").cast(pl.Int64)
    return frame.select(lines.list.head(lines.list.len() - drop_last)).to_series()


def datatrove_words(text: pl.Series) -> pl.Series:
    """Each text's words as datatrove's English word tokenizer (spaCy's, tokens stripped, empty ones
    dropped) splits them."""
    return split_words(text, WORD_RE)


class Batch:
    """The texts of one batch and their flattened words and lines, each made once on first use."""

    def __init__(self, text: pl.Series, words: str = "whitespace"):
        self.text = text
        self.words = words
        self.n = len(text)
        self.n_chars = text.str.len_chars().cast(pl.Int64).to_numpy()
        self._flats: dict[str, Flat] = {}

    def flat(self, kind: str) -> Flat:
        if kind not in self._flats:
            t = self.text
            lists = {
                "words": lambda: t.str.extract_all(WORD_RE) if self.words == "whitespace" else datatrove_words(t),
                "splitlines": lambda: splitlines(t),
                "lines": lambda: t.str.split("\n"),  # text.split("\n")
                "line_runs": lambda: t.str.replace_all(r"\n+", "\n").str.split("\n"),  # re.split("\n+", text)
                # re.split(r"\n{2,}", text.strip()); NUL never occurs in a text (readers quarantine it)
                "paragraphs": lambda: t.str.strip_chars(PY_WS).str.replace_all(r"\n{2,}", "\x00").str.split("\x00"),
            }[kind]()
            self._flats[kind] = Flat(lists)
        return self._flats[kind]


# ---------------------------------------------------------------- the groups


def _counts(b: Batch) -> dict[str, pl.Series | np.ndarray]:
    n_bytes = b.text.str.len_bytes().cast(pl.Int64)
    w = b.flat("words")
    longest = pl.DataFrame({"d": w.doc, "n": w.eval(pl.col("v").str.len_chars())}).group_by("d").agg(pl.col("n").max())
    max_len = np.zeros(b.n, np.int64)
    max_len[longest["d"].to_numpy()] = longest["n"].to_numpy()
    return {"n_chars": b.n_chars, "n_bytes": n_bytes, "n_words": w.lens,
            "n_lines": b.text.str.count_matches("\n", literal=True).cast(pl.Int64) + 1,
            "max_word_length": max_len, "est_tokens": (n_bytes + 3) // 4, "content_hash": content_hash(b.text)}


def _gopher_quality(b: Batch) -> dict[str, pl.Series | np.ndarray]:
    w, lines = b.flat("words"), b.flat("splitlines")
    v = pl.col("v")
    per_word = w.values.to_frame().with_columns(v.str.replace_all(f"^[{PUNCT}]+|[{PUNCT}]+$", "").alias("s"))
    per_word = per_word.select(
        pl.col("s"), (pl.col("s").str.len_bytes() > 0).alias("word"), pl.col("s").str.len_chars().alias("len"),
        v.str.contains(r"\p{L}").alias("alpha"), pl.col("s").is_in(list(STOP_WORDS)).alias("stop"))
    non_symbol = w.sum(per_word["word"])
    ws = v.str.strip_chars_start(PY_WS)
    per_line = lines.values.to_frame().select(
        (ws.str.starts_with("\u2022") | ws.str.starts_with("-")).alias("bullet"),
        _ends_with_any(v.str.strip_chars_end(PY_WS), ("...", "\u2026")).alias("ellipsis"))
    t = b.text
    ellipses = (t.str.count_matches("...", literal=True) + t.str.count_matches("\u2026", literal=True)).to_numpy()
    return {
        "gopher_words": non_symbol,
        "gopher_mean_word_length": _ratio(w.sum(per_word["len"] * per_word["word"]), non_symbol),
        "gopher_hash_ratio": _ratio(t.str.count_matches("#", literal=True).to_numpy(), w.lens),
        "gopher_ellipsis_ratio": _ratio(ellipses, w.lens),
        "gopher_bullet_lines": _ratio(lines.sum(per_line["bullet"]), lines.lens),
        "gopher_ellipsis_lines": _ratio(lines.sum(per_line["ellipsis"]), lines.lens),
        "gopher_alpha_words": _ratio(w.sum(per_word["alpha"]), w.lens),
        "gopher_stop_words": _distinct_stop_words(w, per_word),
    }


def _distinct_stop_words(w: Flat, per_word: pl.DataFrame) -> np.ndarray:
    """How many *different* stop words each document holds (datatrove intersects the word set with
    the stop words: "the the" has one)."""
    found = pl.DataFrame({"d": w.doc, "s": per_word["s"], "stop": per_word["stop"]})
    found = found.filter(pl.col("stop")).unique(["d", "s"])
    return np.bincount(found["d"].to_numpy(), minlength=w.n).astype(np.int64)


def _gopher_repetition(b: Batch) -> dict[str, pl.Series | np.ndarray]:
    paras, lines = b.flat("paragraphs"), b.flat("line_runs")
    para_n, para_chars = paras.dup_count_chars()
    line_n, line_chars = lines.dup_count_chars()
    out = {"gopher_dup_para_frac": _ratio(para_n, paras.lens),
           "gopher_dup_para_char_frac": _ratio(para_chars, b.n_chars),
           "gopher_dup_line_frac": _ratio(line_n, lines.lens),
           "gopher_dup_line_char_frac": _ratio(line_chars, b.n_chars)}
    w = b.flat("words")
    top, dup = ngram_stats(w.values.hash(seed=0).to_numpy(), w.values.str.len_chars().cast(pl.Int64).to_numpy(),
                           np.concatenate([[0], np.cumsum(w.lens)]).astype(np.int64))
    out |= {f"gopher_top_{n}gram_frac": _ratio(top[:, i], b.n_chars) for i, n in enumerate(TOP_NGRAMS)}
    out |= {f"gopher_dup_{n}gram_frac": _ratio(dup[:, i], b.n_chars) for i, n in enumerate(DUP_NGRAMS)}
    return out


def c4_line_rules(b: Batch, terminal_punct: bool) -> tuple[Flat, pl.DataFrame]:
    """Each ``splitlines`` line of the batch through C4's line rules: the frame has, per line, the
    line as kept (``cleaned``: stripped, citations removed), whether it is kept (``kept``), marks
    ``lorem`` and ``curly`` and its ``sentences`` (0 unless kept)."""
    lines = b.flat("splitlines")
    nonspace, space = f"[^{WS_CLASS}]", f"[{WS_CLASS}]"
    # Step by step (each intermediate a column once): C4's rules in datatrove's order, per line.
    f = lines.values.to_frame().select(pl.col("v").str.strip_chars(PY_WS).alias("line"))
    f = f.with_columns(pl.col("line").str.replace_all(C4_CITATION, "").alias("cleaned"))
    f = f.with_columns(pl.col("cleaned").str.to_lowercase().alias("lower"))
    line, cleaned, lower = pl.col("line"), pl.col("cleaned"), pl.col("lower")
    base = line.str.contains(f"^{nonspace}+{space}+{nonspace}+{space}+{nonspace}")  # at least 3 words
    if bool((b.n_chars > 1000).any()):  # only then can a word be longer than 1000 characters
        base = base & line.str.contains(f"{nonspace}{{1001}}").not_()
    if terminal_punct:
        base = base & _ends_with_any(cleaned, C4_END) & cleaned.str.ends_with("...").not_()
    f = f.with_columns(base.alias("base"), lower.str.contains("javascript", literal=True).alias("js"))
    f = f.with_columns((pl.col("base") & lower.str.contains("lorem ipsum", literal=True)).alias("lorem"),
                       (pl.col("base") & pl.col("js").not_() & cleaned.str.contains("{", literal=True)).alias("curly"))
    f = f.with_columns((pl.col("base") & (pl.col("lorem") | pl.col("js") | pl.col("curly")
                                          | _contains_any(lower, C4_POLICY)).not_()).alias("kept"))
    f = f.with_columns(pl.when(pl.col("kept")).then(cleaned.str.count_matches(_SENTENCE_BREAK) + 1).otherwise(0)
                       .alias("sentences"))
    return lines, f


def _c4(b: Batch, terminal_punct: bool) -> dict[str, pl.Series | np.ndarray]:
    lines, f = c4_line_rules(b, terminal_punct)
    nl = b.flat("lines")
    third = pl.DataFrame({"d": nl.doc, "n": nl.values.str.len_chars()}).group_by("d").agg(
        pl.col("n").sort(descending=True).get(2, null_on_oob=True))
    third_longest = np.zeros(b.n, np.int64)
    third_longest[third["d"].to_numpy()] = third["n"].fill_null(0).to_numpy()
    return {"c4_lines_kept": lines.sum(f["kept"]), "c4_sentences": lines.sum(f["sentences"]),
            "c4_lorem_ipsum": lines.sum(f["lorem"]) > 0, "c4_curly_bracket": lines.sum(f["curly"]) > 0,
            "c4_third_longest_line": third_longest}


def _fineweb(b: Batch, short_line_chars: int) -> dict[str, pl.Series | np.ndarray]:
    lines, w = b.flat("lines"), b.flat("words")
    v = pl.col("v")
    per_line = lines.values.to_frame().select(
        v.str.contains(FINEWEB_END).alias("punct"), (v.str.len_chars() <= short_line_chars).alias("short"),
        (v.str.strip_chars(PY_WS) != "").alias("non_empty"))
    # duplicates among the non-empty lines: an empty line never repeats a non-empty one
    # datatrove's FineWebQualityFilter judges the non-blank lines only (none at all: null, its "empty")
    non_empty = per_line["non_empty"]
    rep = lines.repeats() & non_empty
    newlines = lines.lens - 1
    n_lines = lines.sum(non_empty)
    return {"fineweb_line_punct_frac": _ratio(lines.sum(per_line["punct"] & non_empty), n_lines),
            "fineweb_short_line_frac": _ratio(lines.sum(per_line["short"] & non_empty), n_lines),
            "fineweb_dup_line_char_frac": _ratio(lines.sum(lines.values.str.len_chars() * rep), b.n_chars - newlines),
            "fineweb_newline_word_ratio": _ratio(newlines, w.lens)}


def url_parts(url: pl.Expr) -> list[pl.Expr]:
    """The URL's host, lowercased, without port, user, brackets, a final dot or a leading "www." (null
    when it has no "scheme://"), and its last label (null for an IP address or a one-label host)."""
    host = (url.str.extract(_URL_HOST, 1).str.to_lowercase().str.strip_chars("[]").str.strip_chars_end(".")
            .str.strip_prefix("www."))
    host = pl.when(host.str.len_bytes() > 0).then(host).otherwise(None)
    is_ip = host.str.contains(r"^\d+(\.\d+){3}$") | host.str.contains(":", literal=True)
    tld = pl.when(is_ip | host.str.contains(".", literal=True).not_()).then(None).otherwise(
        host.str.extract(r"\.([^.]+)$", 1))
    return [host.alias("url_domain"), tld.alias("url_tld")]


# ---------------------------------------------------------------- n-gram repetition (compiled)


def ngram_stats(word_hash: np.ndarray, word_len: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The compiled ``_ngram_stats`` (numba is imported on first use: filters share this module's word
    definition without paying for it)."""
    global _compiled
    if _compiled is None:
        from numba import njit

        _compiled = njit(cache=True)(_ngram_stats)
    return _compiled(word_hash, word_len, offsets)


_compiled = None


def _ngram_stats(word_hash: np.ndarray, word_len: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per document (words word_hash[offsets[d]:offsets[d + 1]]), as datatrove's GopherRepetitionFilter
    counts them: top[d, i], the characters of the most common TOP_NGRAMS[i]-gram (words joined by
    spaces; ties go to the one seen first) times its count; dup[d, i], the characters (words joined
    without spaces) of the DUP_NGRAMS[i]-grams found again by a left-to-right scan that jumps past each
    repeat (datatrove's find_all_duplicate).

    n-grams are compared by a 64-bit polynomial hash of their word hashes (collisions: about k^2 / 2^65
    for a document of k words), counted in an open-addressing table stamped per (document, n) so it is
    never cleared: linear time."""
    n_docs = len(offsets) - 1
    top = np.zeros((n_docs, 3), np.int64)
    dup = np.zeros((n_docs, 6), np.int64)
    longest = 0
    for d in range(n_docs):
        longest = max(longest, offsets[d + 1] - offsets[d])
    bits = 1
    while (1 << bits) < 2 * longest + 2:
        bits += 1
    size = 1 << bits
    keys = np.zeros(size, np.uint64)
    stamp = np.zeros(size, np.int64)  # slot in use for (document, n) number `gen` when stamp == gen
    first = np.zeros(size, np.int64)
    count = np.zeros(size, np.int64)
    seen = np.zeros(size, np.int64)  # dup scan: slot's n-gram added when seen == gen
    h = np.zeros(max(longest, 1), np.uint64)
    chars = np.zeros(max(longest, 1), np.int64)
    slot_of = np.zeros(max(longest, 1), np.int64)
    base = np.uint64(0x9E3779B97F4A7C15)
    shift = np.uint64(64 - bits)
    gen = 0
    for d in range(n_docs):
        a, m = offsets[d], offsets[d + 1] - offsets[d]
        for i in range(m):
            h[i] = word_hash[a + i]
            chars[i] = word_len[a + i]
        for n in range(2, 11):
            k = m - n + 1
            if k <= 0:
                break
            gen += 1
            for i in range(k):  # extend every (n-1)-gram by its next word
                h[i] = h[i] * base + word_hash[a + i + n - 1]
                chars[i] += word_len[a + i + n - 1]
                s = np.int64((h[i] * base) >> shift)
                while stamp[s] == gen and keys[s] != h[i]:
                    s = (s + 1) & (size - 1)
                if stamp[s] != gen:
                    stamp[s], keys[s], first[s], count[s] = gen, h[i], i, 0
                count[s] += 1
                slot_of[i] = s
            if n <= 4:
                best, best_at = 0, 0
                for i in range(k):
                    s = slot_of[i]
                    if first[s] == i and count[s] > best:
                        best, best_at = count[s], i
                top[d, n - 2] = (chars[best_at] + n - 1) * best
            else:
                i = 0
                while i < k:
                    s = slot_of[i]
                    if seen[s] == gen:
                        dup[d, n - 5] += chars[i]
                        i += n
                    else:
                        seen[s] = gen
                        i += 1
    return top, dup


def content_hash(text: pl.Series) -> pl.Series:
    """blake2b-128 of each text's UTF-8 bytes, hex: the digest exact dedup takes (of the text as is)."""
    raw = digests128(text).tobytes()
    arr = pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(text), [None, pa.py_buffer(raw)])
    return pl.Series("content_hash", arr).cast(pl.Binary).bin.encode("hex")


# ---------------------------------------------------------------- the operator


@dataclass
class QualitySignals(MapOperator):
    """Add the quality-signal columns (docs/operators.md, "Quality signals") of the chosen groups:
    counts, gopher_quality, gopher_repetition, c4, fineweb, url. Filters are then thresholds on them."""

    name = "quality_signals"
    # 2: distinct stop words; FineWeb's lines: non-blank ones, terminal punctuation as datatrove
    # 3: words "datatrove" split by spaCy's English rules (stages/words.py)
    version = "3"
    # with the default groups (what `corpus ops` shows); columns() gives each instance's own
    needs = {TEXT: pl.String, META: pl.String}
    adds = {c: t for g in GROUPS.values() for c, t in g.items()}

    groups: list[str] = field(default_factory=lambda: list(ALL_GROUPS))
    url_field: str = "url"  # meta field holding the page URL; "id": the document id is the URL
    c4_terminal_punct: bool = True  # C4's line rule "ends in terminal punctuation" (FineWeb turns it off)
    short_line_chars: int = 30  # FineWeb: a line this long or shorter is short
    words: str = "whitespace"  # or "datatrove": as datatrove's English tokenizer (spaCy) splits

    def __post_init__(self) -> None:
        unknown = [g for g in self.groups if g not in GROUPS]
        if unknown or not self.groups:
            raise ValueError(f"groups: unknown {unknown}; choose among {list(GROUPS)}")
        if not self.url_field:
            raise ValueError("url_field must name a meta field (or 'id')")
        if self.words not in WORD_MODES:
            raise ValueError(f"words must be one of {WORD_MODES}, got {self.words!r}")
        if self.short_line_chars < 0:
            raise ValueError("short_line_chars must be >= 0")

    def columns(self) -> tuple[Columns, Columns, tuple[str, ...]]:
        needs = {TEXT: pl.String}
        if "url" in self.groups:
            needs[ID if self.url_field == ID else META] = pl.String
        adds = {c: t for g in GROUPS if g in self.groups for c, t in GROUPS[g].items()}
        return needs, adds, ()

    def map(self, df: pl.DataFrame) -> pl.DataFrame:
        if df.height == 0:
            return df.with_columns(pl.lit(None, t).alias(c) for c, t in self.columns()[1].items())
        parts = [self._batch(df.slice(a, b - a)) for a, b in _batches(df[TEXT])]
        added = pl.concat(parts)
        return df.drop([c for c in added.columns if c in df.columns]).hstack(added)  # recomputed in place

    def _batch(self, df: pl.DataFrame) -> pl.DataFrame:
        b = Batch(df[TEXT], self.words)
        cols: dict[str, pl.Series | np.ndarray] = {}
        g = self.groups
        if "counts" in g:
            cols |= _counts(b)
        if "gopher_quality" in g:
            cols |= _gopher_quality(b)
        if "gopher_repetition" in g:
            cols |= _gopher_repetition(b)
        if "c4" in g:
            cols |= _c4(b, self.c4_terminal_punct)
        if "fineweb" in g:
            cols |= _fineweb(b, self.short_line_chars)
        if "url" in g:
            url = pl.col(ID) if self.url_field == ID else pl.col(META).str.json_path_match(
                "$[" + json.dumps(self.url_field) + "]")
            cols |= df.select(url_parts(url)).to_dict()
        adds = self.columns()[1]
        return pl.DataFrame([pl.Series(c, cols[c]).cast(adds[c]) for c in adds])


def _batches(text: pl.Series) -> list[tuple[int, int]]:
    """Row ranges of about _BATCH_BYTES of text each."""
    ends = (text.str.len_bytes().cast(pl.Int64).cum_sum() // _BATCH_BYTES).to_numpy()
    cuts = np.flatnonzero(np.diff(ends)) + 1
    bounds = [0, *cuts.tolist(), len(text)]
    return [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
