"""Corpus profiling: per-document features, aggregated in bounded memory into ``profile.json``.

The output is specified in docs/profile-format.md. How it is computed:

* **Per document, vectorised.** Character classes are counted on the UTF-8 bytes of a whole chunk
  with numpy: ASCII bytes are classified by a 256-entry table (``bytes.translate``), multi-byte
  characters are decoded only where they occur and looked up in a code-point table built by running
  the very regexes named below through polars' engine (``\\p{L}``, ``\\p{Nd}``, ``\\p{Lu}``,
  ``\\p{P}``, ``\\s``, ``[\\p{C}--[\\t\\n\\r]]``, ``\\p{Latin}``...). A class is one bit per byte, so
  ``popcount(word & mask)`` counts it in 8 bytes and ``reduceat`` sums the words of each document,
  in blocks of documents that stay in cache; no per-document Python. Lines are exploded with polars
  (stripped, inner whitespace collapsed, blank ones dropped). One regex scans text (U+FFFD and
  mojibake such as ``Ã©``, ``â€``), only in documents with non-ASCII bytes.
* **Aggregates, mergeable.** Per source: exact sums and counts; min/max; fine fixed-bin histograms
  (2000+ bins: log-spaced for lengths, linear on [0, 1] for fractions, exact bins for 0, 1 and small
  integers) from which quantiles (within a bin: ~1.2% for lengths, 0.0005 for fractions), the
  median/MAD for outliers and the <= 40-bin display histograms come; letters per script; languages;
  meta keys and JSON types; a Misra-Gries table of frequent lines (with their text); the
  ``near_dup_sample`` smallest distinct text keys with their doc counts. Overall = merge(sources).
* **Spill, then DuckDB.** Each unit (input file or shard) writes a Parquet file of per-document
  features (id, source, text key, a 200-char snippet) and one of per-chunk line-hash doc counts into
  a scratch folder. DuckDB then counts distinct text keys (exact dup rate), the exact doc counts of
  the candidate lines, and the outliers with their examples, out of core (memory_limit +
  temp_directory): memory does not grow with the corpus.

Exact duplicates: the text key is the hash of a document's list of line hashes, lines normalised as
above, so texts differing only in whitespace (CRLF, trailing spaces, blank lines, runs of spaces)
are copies. Near duplicates: the sample is the distinct texts with the smallest keys (a uniform
sample of distinct texts), each weighted by its number of copies. A sampled text has a near
duplicate when it has an exact copy, or when MinHash-LSH on word 5-gram sets finds another sampled
text at estimated Jaccard >= 0.8: 128-value signatures by one-permutation hashing (densified for
the bands), LSH with datasketch's optimal 9 bands x 13 rows, candidates confirmed by the estimate.
On a section with at most ``near_dup_sample`` distinct texts this is the rate up to MinHash error;
on larger ones a near (non-identical) copy counts only when both fall in the sample: a lower bound.
Hashes are polars' (stable within one polars version, which one run uses).
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from corpus.manifest import read_manifest
from corpus.operators import FitContext, GlobalOperator
from corpus.readers import InputSpec, ReadTask, plan_tasks, read_task
from corpus.writers import write_bytes_atomic

FORMAT = "corpusforge.profile/1"
LOG_FEATURES = ("n_chars", "n_words", "n_lines", "est_tokens", "mean_word_len")
FRAC_FEATURES = ("frac_alpha", "frac_digit", "frac_upper", "frac_punct", "frac_space", "frac_nonprint",
                 "frac_lines_terminal_punct", "dup_line_ratio", "frac_replacement")
FEATURES = LOG_FEATURES + FRAC_FEATURES
INT_FEATURES = frozenset({"n_chars", "n_words", "n_lines", "est_tokens"})
QUANTILES = {"p01": 0.01, "p05": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95, "p99": 0.99}
SCRIPTS = ("Latin", "Cyrillic", "Greek", "Arabic", "Hebrew", "Devanagari", "Han", "Hiragana", "Katakana", "Hangul",
           "Thai")
OTHER_SCRIPT = "Other"
TERMINAL_PUNCT = (".", "!", "?", "…", "。", "！", "？", '"', "'")
# U+FFFD, and UTF-8 read as Latin-1/cp1252: Ã© (é), Â  (nbsp), â€™ (’), ï»¿ (BOM).
MOJIBAKE_RE = (r"\x{FFFD}|[ÃÂ][\x{80}-\x{BF}\x{152}\x{153}\x{160}\x{161}\x{178}\x{17D}\x{17E}\x{192}\x{2C6}\x{2DC}"
               r"\x{2013}\x{2014}\x{2018}-\x{201E}\x{2020}-\x{2022}\x{2026}\x{2030}\x{2039}\x{203A}\x{20AC}\x{2122}]"
               r"|â€|ï»¿")
Z_THRESHOLD = 3.5
OUTLIER_EXAMPLES = 5
TOP_LINES = 25
MIN_LINE_CHARS = 10  # shorter lines ("Home", "Share") are too common to say anything
LINE_TABLE = 10_000  # Misra-Gries capacity per source: a line in over 1/10000 of all lines is kept
LINE_TEXT_CHARS = 300
NEAR_DUP_SAMPLE = 2000
NEAR_DUP_THRESHOLD = 0.8
NUM_PERM = 128
SHINGLE_WORDS = 5
SAMPLE_TEXT_CHARS = 20_000  # MinHash on the first 20k chars: bounds the sample's memory
SNIPPET_CHARS = 200
DISPLAY_BINS = 40
FRAC_DISPLAY_BINS = 20
CHUNK_BYTES = 32 << 20
_SEED = 0x5EED  # polars hash seed: fixed so every worker of a run agrees
_SPILL = "_spill"
_EMPTY_KEY = 0x9E3779B97F4A7C15

# ---------------------------------------------------------------- character tables

_ALPHA, _DIGIT, _UPPER, _PUNCT, _SPACE, _NONPRINT, _WS, _ODD = (1 << i for i in range(8))
# _WS marks every byte of a whitespace character (words split there); _ODD a whitespace character
# other than " " and "\n" (tab, CR, NBSP...): a doc holding one may need its lines collapsing.
# The classes, as the regexes the brief names; the tables below are built by running them.
_CLASS_RE = {_ALPHA: r"\p{L}", _DIGIT: r"\p{Nd}", _UPPER: r"\p{Lu}", _PUNCT: r"\p{P}", _SPACE: r"\s",
             _NONPRINT: r"[\p{C}--[\t\n\r]]"}
_COUNTED = {"alpha": _ALPHA, "digit": _DIGIT, "upper": _UPPER, "punct": _PUNCT, "space": _SPACE,
            "nonprint": _NONPRINT}
_ONES = np.uint64(0x0101010101010101)
_LOW = np.array([(1 << (8 * r)) - 1 for r in range(8)], dtype=np.uint64)


@dataclass(frozen=True)
class _Tables:
    flags: np.ndarray  # uint8 class bits per code point
    script: np.ndarray  # uint8 per code point: 1 + index in SCRIPTS, 0 for other (letters only)
    ascii: bytes  # 256-byte translate table: class bits of ASCII bytes, 0 for bytes >= 0x80


@cache
def _tables() -> _Tables:
    """Class bits and script of every code point, decided by polars' own regex engine (~0.2 s).
    Planes 4-13 and 15-16 hold only unassigned and private-use code points (all \\p{C})."""
    cps = np.concatenate([np.arange(0xD800), np.arange(0xE000, 0x40000), np.arange(0xE0000, 0xE1000)]).astype("<u4")
    chars = pl.Series("c", list(cps.tobytes().decode("utf-32-le")), dtype=pl.String).to_frame()
    c = pl.col("c").str
    cls = chars.select(*(c.contains(f"^{rx}$").alias(str(bit)) for bit, rx in _CLASS_RE.items()))
    flags = np.full(0x110000, _NONPRINT, np.uint8)
    bits = np.zeros(len(cps), np.uint8)
    for bit in _CLASS_RE:
        bits |= cls[str(bit)].to_numpy().astype(np.uint8) * np.uint8(bit)
    space = (bits & _SPACE) != 0
    bits[space] |= _WS
    bits[space & (cps != 0x20) & (cps != 0x0A)] |= _ODD
    flags[cps] = bits
    letters = cps[(bits & _ALPHA) != 0]
    scr = chars.filter(pl.Series((bits & _ALPHA) != 0)).select(
        *(c.contains(rf"^\p{{{s}}}$").alias(s) for s in SCRIPTS))
    script = np.zeros(0x110000, np.uint8)
    for i, s in enumerate(SCRIPTS, 1):
        script[letters[scr[s].to_numpy()]] = i
    return _Tables(flags, script, bytes(flags[:128]) + bytes(128))


# ---------------------------------------------------------------- byte-level counting


def _byte_view(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(UTF-8 bytes of all texts, n+1 offsets into them), zero-copy from Arrow."""
    arr = texts.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    n = len(arr)
    bufs = arr.buffers()
    offs = np.frombuffer(bufs[1], dtype=np.int64, count=n + 1, offset=arr.offset * 8)
    lo, hi = int(offs[0]), int(offs[-1])
    data = np.frombuffer(bufs[2], dtype=np.uint8, count=hi - lo, offset=lo) if hi > lo else np.zeros(0, np.uint8)
    return data, offs - lo


def _classify(data: np.ndarray, tables: _Tables) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class bits per byte, padded to whole u64 words plus one; and the positions and code points of
    the multi-byte characters' lead bytes. Continuation bytes carry no class (a character counts once),
    except _WS so a multi-byte space still separates words."""
    n = len(data)
    k = np.zeros(((n >> 3) + 2) * 8, np.uint8)
    k[:n] = np.frombuffer(data.tobytes().translate(tables.ascii), np.uint8)
    if n == 0 or int(data.max()) < 0x80:
        return k, np.zeros(0, np.int64), np.zeros(0, np.uint32)
    lead = np.flatnonzero(data >= 0xC0)
    b0 = data[lead].astype(np.uint32)
    tail = [data[np.minimum(lead + i, n - 1)].astype(np.uint32) & 0x3F for i in (1, 2, 3)]
    size = 2 + (b0 >= 0xE0) + (b0 >= 0xF0)
    cp = np.where(size == 2, ((b0 & 0x1F) << 6) | tail[0],
                  np.where(size == 3, ((b0 & 0x0F) << 12) | (tail[0] << 6) | tail[1],
                           ((b0 & 0x07) << 18) | (tail[0] << 12) | (tail[1] << 6) | tail[2]))
    cp = np.minimum(cp, 0x10FFFF)
    fl = tables.flags[cp]
    k[lead] = fl
    spaces = (fl & _WS) != 0
    if spaces.any():
        for i in (1, 2, 3):
            pos = lead[spaces & (size > i)] + i
            k[pos] = _WS
    return k, lead, cp


_BLOCK_BYTES = 1 << 18  # documents are counted in blocks of ~256 KiB: the arrays stay in L2 cache
# Class planes counted per doc: bit masks over the bytes of a u64 word.
_PLANES = ("alpha", "digit", "upper", "punct", "space", "nonprint", "odd_space")
_MASKS = [_ONES * np.uint64(flag) for flag in (_ALPHA, _DIGIT, _UPPER, _PUNCT, _SPACE, _NONPRINT, _ODD)]
_M_WS = _ONES * np.uint64(_WS)


class _Block:
    """Per-document sums over one block of documents, 8 bytes (one u64 word) at a time: a class is
    one bit per byte, so popcount(word & mask) counts it in 8 bytes, and the words a document only
    partly covers are masked at its ends."""

    def __init__(self, words: np.ndarray, offs: np.ndarray):
        self.words = words[:int(offs[-1] >> 3) + 1]
        self.at = offs >> 3
        self.low = _LOW[offs & 7]
        self.nonempty = self.at[1:] > self.at[:-1]

    def counts(self, bits: np.ndarray) -> np.ndarray:
        full = np.add.reduceat(np.bitwise_count(bits), self.at, dtype=np.int64)[:-1]
        part = np.bitwise_count(bits[self.at] & self.low).astype(np.int64)
        return np.where(self.nonempty, full, 0) - part[:-1] + part[1:]


def _block_counts(words: np.ndarray, offs: np.ndarray, out: np.ndarray) -> None:
    """Fill out[:, docs] (the planes, then word starts) for one block of docs; `words` is the
    block's own padded class bytes, offs its doc offsets starting at 0."""
    b = _Block(words, offs)
    w = b.words
    for i, mask in enumerate(_MASKS):
        out[i] = b.counts(w & mask)
    # A word starts at a non-space byte after a space byte (or at the block's first byte); each
    # other document's own first byte is fixed up by the caller.
    ws = w & _M_WS
    prev = (ws << np.uint64(8)) | np.concatenate(([np.uint64(_WS)], ws[:-1] >> np.uint64(56)))
    out[len(_MASKS)] = b.counts((ws ^ _M_WS) & prev)


def _blocks(offs: np.ndarray, size: int) -> Iterator[tuple[int, int]]:
    """Consecutive doc ranges of about `size` bytes (a longer doc is a block of its own)."""
    n = len(offs) - 1
    cuts = np.unique(np.concatenate(([0], np.searchsorted(offs[:-1], np.arange(size, int(offs[-1]), size)), [n])))
    return zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True)


@dataclass
class _CharCounts:
    counts: dict[str, np.ndarray]  # per doc: alpha, digit, upper, punct, space, nonprint, odd_space, words
    script_doc: np.ndarray  # doc index of each non-ASCII letter
    script_id: np.ndarray  # its script (0 other, 1 + index in SCRIPTS)


def _char_counts(texts: pl.Series) -> _CharCounts:
    """Class counts per doc, a block of ~256 KiB of documents at a time (classified and counted
    while in cache)."""
    tables = _tables()
    data, offs = _byte_view(texts)
    n = len(offs) - 1
    planes = np.zeros((len(_PLANES) + 1, n), np.int64)
    script_doc, script_id = [np.zeros(0, np.int64)], [np.zeros(0, np.uint8)]
    for d0, d1 in _blocks(offs, _BLOCK_BYTES):
        local = offs[d0:d1 + 1] - offs[d0]
        k, lead, cp = _classify(data[offs[d0]:offs[d1]], tables)
        _block_counts(k.view(np.uint64), local, planes[:, d0:d1])
        # A doc's first byte starts a word unless it is a space; the block saw the previous doc's
        # last byte before it, so add the starts it missed.
        first = local[:-1]
        space_before = (k[np.maximum(first - 1, 0)] & _WS) != 0
        planes[len(_PLANES), d0:d1] += (local[1:] > first) & (first > 0) & ((k[first] & _WS) == 0) & ~space_before
        if len(lead):
            letters = (k[lead] & _ALPHA) != 0
            script_doc.append(d0 + np.searchsorted(local, lead[letters], side="right") - 1)
            script_id.append(tables.script[cp[letters]])
    counts = dict(zip(_PLANES, planes, strict=False))
    counts["words"] = planes[len(_PLANES)]
    return _CharCounts(counts, np.concatenate(script_doc), np.concatenate(script_id))


# ---------------------------------------------------------------- per-document features


@dataclass
class _Chunk:
    docs: pl.DataFrame  # one row per input doc: id, source, lang, text, features, h, snippet
    names: list[str]  # the sources, sorted
    codes: np.ndarray  # each doc's source as an index into names
    lines: _Lines
    scripts: np.ndarray  # letters per (source, script)
    meta: pl.DataFrame  # (source, key, type, n)
    has_lang: bool  # the frame had a lang column


def _ratio(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    return pl.when(den > 0).then(num.cast(pl.Float64) / den).otherwise(None)


# Whitespace that collapsing would change inside a line: docs are flagged from their class counts,
# then only their lines are tested (literals, and a regex for Unicode spaces on non-ASCII lines).
_ODD_WS = ("  ", "\t", "\r", "\x0b", "\x0c")
_UNI_SPACE_RE = r"[\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]"


def _odd_ws(s: pl.Series) -> pl.Series:
    odd = pl.Series([False] * len(s))
    for lit in _ODD_WS:
        odd = odd | s.str.contains(lit, literal=True)
    wide = s.str.len_bytes() != s.str.len_chars()
    if wide.any():
        odd = odd | (wide & s.str.contains(_UNI_SPACE_RE))
    return odd.fill_null(False)


def _collapse_lines(line: pl.Series, maybe: pl.Series) -> pl.Series:
    """Stripped lines with inner whitespace runs collapsed to one space; `maybe` marks the lines of
    docs that have any whitespace other than single spaces and newlines (only those are looked at)."""
    idx = maybe.arg_true()
    if len(idx) == 0:
        return line
    sub = line.gather(idx)
    odd = _odd_ws(sub)
    if not odd.any():
        return line
    idx = idx.filter(odd)
    return line.scatter(idx, sub.filter(odd).str.replace_all(r"\s+", " "))


@dataclass
class _Lines:
    per_doc: pl.DataFrame  # doc, nb_lines, distinct_lines, terminal_lines, key
    counts: pl.DataFrame  # source, h, n: docs holding each line >= MIN_LINE_CHARS in this chunk
    text: pl.DataFrame  # h, line: their text (to name the frequent ones)


def _line_stats(df: pl.DataFrame, names: list[str], single_line: bool, odd_docs: pl.Series) -> _Lines:
    """Lines are compared stripped, inner whitespace collapsed, blank ones dropped. A doc's text key
    (exact duplicates) is the hash of its list of line hashes."""
    doc = pl.int_range(pl.len(), dtype=pl.Int64).alias("doc")
    src = df.select(doc, "src", "text", odd_docs.alias("odd"))
    if single_line:  # no doc has an inner newline: the stripped text is the one line, no explode
        lines = src.select("doc", "src", "odd", pl.col("text").str.strip_chars().alias("line"))
    else:
        lines = (src.select("doc", "src", "odd", pl.col("text").str.split("\n").alias("line"))
                 .explode("line").with_columns(pl.col("line").str.strip_chars()))
    lines = lines.filter(pl.col("line").str.len_bytes() > 0).set_sorted("doc")
    lines = lines.with_columns(_collapse_lines(lines["line"], lines["odd"]))
    lines = lines.with_columns(pl.col("line").hash(_SEED).alias("h"),
                               pl.col("line").str.slice(-1).is_in(TERMINAL_PUNCT).alias("term"))
    per_doc = lines.group_by("doc").agg(
        pl.len().alias("nb_lines"),
        pl.col("h").n_unique().alias("distinct_lines"),
        pl.col("term").sum().alias("terminal_lines"),
        pl.col("h").alias("key"),
    ).with_columns(pl.col("key").hash(_SEED))
    long = lines.filter(pl.col("line").str.len_chars() >= MIN_LINE_CHARS).select("doc", "src", "h", "line")
    if not single_line:  # a line counts once per doc: dedupe the docs that repeat lines
        rep = per_doc.filter(pl.col("nb_lines") > pl.col("distinct_lines"))["doc"]
        if len(rep):
            inner = long["doc"].is_in(rep.implode())
            long = pl.concat([long.filter(~inner), long.filter(inner).unique(["doc", "h"])])
    counts = long.group_by("src", "h").agg(pl.len().cast(pl.Int64).alias("n"))
    counts = counts.select(pl.col("src").replace_strict(dict(enumerate(names)), return_dtype=pl.String)
                           .alias("source"), "h", "n")
    return _Lines(per_doc, counts, long.select("h", "line"))


def _meta_types(df: pl.DataFrame, con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """(source, key, type, n): top-level keys of the meta JSON objects and their JSON types, by
    DuckDB's vectorised JSON functions (a JSON pointer per key, so any key name works)."""
    empty = pl.DataFrame(schema={"source": pl.String, "key": pl.String, "type": pl.String, "n": pl.Int64})
    if "meta" not in df.columns or df.schema["meta"] != pl.String:
        return empty
    con.register("chunk_meta", df.select("source", "meta").to_arrow())
    try:
        rows = con.sql(
            "SELECT source, k AS key, json_type(meta, '/' || replace(replace(k, '~', '~0'), '/', '~1')) AS type, "
            "count(*) AS n FROM (SELECT source, meta, unnest(json_keys(meta)) AS k FROM chunk_meta "
            "WHERE json_valid(meta)) GROUP BY ALL"
        ).pl()
    finally:
        con.unregister("chunk_meta")
    if rows.height == 0:
        return empty
    return rows.with_columns(pl.col("type").replace_strict(_JSON_TYPES, default=pl.col("type").str.to_lowercase()),
                             pl.col("n").cast(pl.Int64))


_JSON_TYPES = {"VARCHAR": "string", "BIGINT": "integer", "UBIGINT": "integer", "HUGEINT": "integer",
               "DOUBLE": "number", "BOOLEAN": "boolean", "NULL": "null", "OBJECT": "object", "ARRAY": "array"}


def _scatter(n: int, idx: pl.Series, values: pl.Series) -> np.ndarray:
    out = np.zeros(n, np.int64)
    out[idx.to_numpy()] = values.to_numpy()
    return out


def doc_features(df: pl.DataFrame, con: duckdb.DuckDBPyConnection | None = None) -> _Chunk:
    """Every per-document feature of one frame (columns id, text, source; optional meta, lang)."""
    t = pl.col("text")
    base = df.select(
        pl.col("id").cast(pl.String),
        pl.col("source").cast(pl.String).fill_null(""),
        (pl.col("lang").cast(pl.String) if "lang" in df.columns else pl.lit(None, pl.String)).alias("lang"),
        t.cast(pl.String),
    )
    n = base.height
    text = base["text"]
    names = sorted(base["source"].unique().to_list())
    codes = base["source"].replace_strict({s: i for i, s in enumerate(names)}, return_dtype=pl.UInt32)
    cc = _char_counts(text)
    base = base.with_columns(
        t.is_null().alias("is_null"),
        t.str.len_chars().cast(pl.Int64).alias("n_chars"),
        t.str.len_bytes().cast(pl.Int64).alias("bytes"),
        t.str.count_matches("\n", literal=True).cast(pl.Int64).alias("newlines"),
        t.str.ends_with("\n").fill_null(False).alias("ends_nl"),
    )
    single_line = not (base["newlines"] - base["ends_nl"].cast(pl.Int64)).max()
    odd = pl.Series(cc.counts["odd_space"] > 0) | text.str.contains("  ", literal=True).fill_null(False)
    lines = _line_stats(base.select(codes.alias("src"), "text"), names, single_line, odd)
    per_doc = lines.per_doc
    cols: dict[str, Any] = dict(cc.counts)
    for c in ("nb_lines", "distinct_lines", "terminal_lines"):
        cols[c] = _scatter(n, per_doc["doc"], per_doc[c])
    # Mojibake needs non-ASCII bytes: the regex runs on those docs only.
    nonascii = np.flatnonzero((base["bytes"] != base["n_chars"]).fill_null(False).to_numpy())
    cols["replacements"] = np.zeros(n, np.int64)
    if len(nonascii):
        idx = pl.Series(nonascii)
        cols["replacements"][nonascii] = text.gather(idx).str.count_matches(MOJIBAKE_RE).to_numpy()
    # The text key: docs without a non-blank line share the key of the empty text.
    h = np.full(n, _EMPTY_KEY, np.uint64)
    h[per_doc["doc"].to_numpy()] = per_doc["key"].to_numpy()
    null = pl.col("is_null")
    n_chars = pl.col("n_chars")
    live = pl.when(~null)
    feats = base.with_columns(pl.Series(k, v) for k, v in cols.items()).with_columns(pl.Series("h", h)).select(
        "id", "source", "lang", "text", "is_null", "bytes", "n_chars", "replacements",
        live.then(pl.col("words")).alias("n_words"),
        live.then(pl.col("newlines") + (pl.col("bytes") > 0) - pl.col("ends_nl")).alias("n_lines"),
        live.then((pl.col("bytes") + 3) // 4).alias("est_tokens"),
        _ratio(n_chars - pl.col("space"), pl.col("words")).alias("mean_word_len"),
        *(_ratio(pl.col(k), n_chars).alias(f"frac_{k}") for k in _COUNTED),
        _ratio(pl.col("terminal_lines"), pl.col("nb_lines")).alias("frac_lines_terminal_punct"),
        # Non-blank lines that repeat an earlier line of the same doc, over its non-blank lines.
        _ratio(pl.col("nb_lines") - pl.col("distinct_lines"), pl.col("nb_lines")).alias("dup_line_ratio"),
        _ratio(pl.col("replacements"), n_chars).alias("frac_replacement"),
        (~null & (pl.col("words") == 0)).alias("is_empty"),
        live.then(pl.col("h")).alias("h"),
        t.str.slice(0, SNIPPET_CHARS).alias("snippet"),
    )
    scripts = _script_counts(codes.to_numpy(), len(names), cc)
    meta = _meta_types(df.with_columns(pl.col("source").cast(pl.String).fill_null("")), con or _worker_connection())
    return _Chunk(feats, names, codes.to_numpy().astype(np.int64), lines, scripts, meta, "lang" in df.columns)


def _script_counts(codes: np.ndarray, n_sources: int, cc: _CharCounts) -> np.ndarray:
    """Letters per (source, script): ASCII letters are Latin; non-ASCII ones were looked up one by one."""
    width = len(SCRIPTS) + 1
    out = np.zeros((n_sources, width), np.int64)
    ascii_letters = cc.counts["alpha"] - np.bincount(cc.script_doc, minlength=len(codes))
    out[:, 1] = np.bincount(codes, weights=ascii_letters, minlength=n_sources).astype(np.int64)
    wide = np.bincount(codes[cc.script_doc] * width + cc.script_id, minlength=n_sources * width)
    return out + wide.reshape(n_sources, width)


# ---------------------------------------------------------------- fine histograms


@dataclass(frozen=True)
class _Bins:
    """Fine bins of one feature: [lo, hi) each, or a single value where ``point``."""

    lo: np.ndarray
    hi: np.ndarray
    point: np.ndarray
    log: bool
    integer: bool
    # Edges used to place a value: bin = offset + searchsorted(edges, x, "right") - 1.
    edges: np.ndarray
    offset: int

    def index(self, x: np.ndarray) -> np.ndarray:
        if self.log:
            return np.where(x < 1, 0, 1 + np.searchsorted(self.edges, x, side="right") - 1)
        n = len(self.lo)
        lin = 1 + np.minimum(np.floor(x * (n - 2)), n - 3).astype(np.int64)
        return np.where(x <= 0, 0, np.where(x >= 1, n - 1, lin))


@cache
def _bins(feature: str) -> _Bins:
    per_decade, decades = 200, 10
    if feature in LOG_FEATURES:
        integer = feature in INT_FEATURES
        e = 10 ** (np.arange(decades * per_decade + 1) / per_decade)
        e = np.unique(np.floor(e)) if integer else e
        lo = np.concatenate(([0.0], e))
        hi = np.concatenate(([1.0], e[1:], [np.inf]))
        point = np.concatenate(([integer], (hi[1:] - lo[1:] == 1) & integer))
        return _Bins(lo, hi, point, True, integer, e, 1)
    # Fractions: an exact bin for 0 and for 1 (common: no digits, all lines terminated), 2000 between.
    n = 2000
    inner = np.arange(n + 1) / n
    lo = np.concatenate(([0.0], inner[:-1], [1.0]))
    hi = np.concatenate(([0.0], inner[1:], [1.0]))
    point = np.zeros(n + 2, bool)
    point[[0, -1]] = True
    return _Bins(lo, hi, point, False, False, inner, 1)


# ---------------------------------------------------------------- accumulators

_COUNTS = ("docs", "null_text", "empty_text", "bytes", "chars", "words", "lines", "est_tokens",
           "encoding_error_docs")
_SAMPLE_SCHEMA = {"h": pl.UInt64, "n": pl.Int64, "text": pl.String}
_LINES_SCHEMA = {"h": pl.UInt64, "n": pl.Int64, "line": pl.String}


@dataclass
class _SourceAcc:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTS, 0))
    n: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FEATURES, 0))
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FEATURES, 0.0))
    mins: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FEATURES, math.inf))
    maxs: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FEATURES, -math.inf))
    hist: dict[str, np.ndarray] = field(
        default_factory=lambda: {f: np.zeros(len(_bins(f).lo), np.int64) for f in FEATURES})
    scripts: np.ndarray = field(default_factory=lambda: np.zeros(len(SCRIPTS) + 1, np.int64))
    langs: dict[str, int] = field(default_factory=dict)
    meta: dict[str, dict[str, int]] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    lines: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_LINES_SCHEMA))
    sample: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_SAMPLE_SCHEMA))

    def merge(self, o: _SourceAcc, sample_size: int) -> None:
        for k in _COUNTS:
            self.counts[k] += o.counts[k]
        for f in FEATURES:
            self.n[f] += o.n[f]
            self.sums[f] += o.sums[f]
            self.mins[f] = min(self.mins[f], o.mins[f])
            self.maxs[f] = max(self.maxs[f], o.maxs[f])
            self.hist[f] += o.hist[f]
        self.scripts += o.scripts
        _add_counts(self.langs, o.langs)
        _add_counts(self.quarantined, o.quarantined)
        for key, types in o.meta.items():
            _add_counts(self.meta.setdefault(key, {}), types)
        self.lines = _merge_lines(self.lines, o.lines)
        self.sample = _merge_sample(self.sample, o.sample, sample_size)


def _add_counts(into: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


def _compact(df: pl.DataFrame) -> pl.DataFrame:
    """A copy owning only its own bytes: polars string slices are views that would otherwise keep
    every chunk's whole text buffer alive (memory growing with the corpus)."""
    return pl.from_arrow(df.to_arrow())  # type: ignore[return-value]


def _merge_lines(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    """Misra-Gries merge: add counts, then take the (k+1)-th largest off every count and keep the
    positive ones. Bounded at LINE_TABLE entries; any line in more than 1/LINE_TABLE of all counted
    line occurrences is kept (its exact count comes later from the spilled hashes)."""
    both = pl.concat([a, b]).group_by("h").agg(pl.col("n").sum(), pl.col("line").first())
    return _compact(_prune(both).sort("h"))


def _prune(t: pl.DataFrame) -> pl.DataFrame:
    if t.height <= LINE_TABLE:
        return t
    cut = t["n"].top_k(LINE_TABLE + 1).min()
    return t.with_columns(pl.col("n") - cut).filter(pl.col("n") > 0)


def _merge_sample(a: pl.DataFrame, b: pl.DataFrame, k: int) -> pl.DataFrame:
    """The k smallest distinct text hashes, with their doc counts (exact: a hash among the k smallest
    of the union is among the k smallest of each part it occurs in)."""
    both = pl.concat([a, b]).group_by("h").agg(pl.col("n").sum(), pl.col("text").first())
    return _compact(both.sort("h").head(k))


@dataclass
class _Acc:
    """Everything a job learns, per source; merged across jobs in corpus order."""

    sources: dict[str, _SourceAcc] = field(default_factory=dict)
    has_lang: bool = False
    sample_size: int = NEAR_DUP_SAMPLE

    def source(self, name: str) -> _SourceAcc:
        if name not in self.sources:
            self.sources[name] = _SourceAcc()
        return self.sources[name]

    def merge(self, o: _Acc) -> None:
        self.has_lang |= o.has_lang
        for name, acc in o.sources.items():
            self.source(name).merge(acc, self.sample_size)

    def overall(self) -> _SourceAcc:
        total = _SourceAcc()
        for name in sorted(self.sources):
            total.merge(self.sources[name], self.sample_size)
        return total

    def add_quarantine(self, bad: pl.DataFrame) -> None:
        if bad.height == 0:
            return
        for src, kind, n in bad.group_by("source", "kind").len().rows():
            _add_counts(self.source(src).quarantined, {kind: n})

    def add_chunk(self, ch: _Chunk) -> None:
        d = ch.docs
        self.has_lang |= ch.has_lang
        names, codes = ch.names, ch.codes
        for i, src in enumerate(names):
            self.source(src).scripts += ch.scripts[i]
        self._add_counts(d, names)
        self._add_features(d, names, codes)
        # Counted always ("unknown" without a lang): reported only if some input had the column.
        for src, lang, n in d.group_by("source", "lang").len().rows():
            _add_counts(self.sources[src].langs, {lang if lang is not None else "unknown": n})
        for src, key, typ, n in ch.meta.rows():
            _add_counts(self.sources[src].meta.setdefault(key, {}), {typ: n})
        self._add_lines(ch.lines)
        self._add_sample(d)

    def _add_counts(self, d: pl.DataFrame, names: list[str]) -> None:
        agg = d.group_by("source").agg(
            pl.len().alias("docs"), pl.col("is_null").sum().alias("null_text"),
            pl.col("is_empty").sum().alias("empty_text"), pl.col("bytes").sum(), pl.col("n_chars").sum().alias("chars"),
            pl.col("n_words").sum().alias("words"), pl.col("n_lines").sum().alias("lines"),
            pl.col("est_tokens").sum(), (pl.col("replacements") > 0).sum().alias("encoding_error_docs"),
            *(pl.col(f).count().alias(f"n:{f}") for f in FEATURES),
            *(pl.col(f).sum().alias(f"sum:{f}") for f in FEATURES),
            *(pl.col(f).min().alias(f"min:{f}") for f in FEATURES),
            *(pl.col(f).max().alias(f"max:{f}") for f in FEATURES),
        )
        for row in agg.iter_rows(named=True):
            acc = self.sources[row["source"]]
            for k in _COUNTS:
                acc.counts[k] += int(row[k] or 0)
            for f in FEATURES:
                acc.n[f] += int(row[f"n:{f}"])
                if row[f"n:{f}"]:
                    acc.sums[f] += float(row[f"sum:{f}"])
                    acc.mins[f] = min(acc.mins[f], float(row[f"min:{f}"]))
                    acc.maxs[f] = max(acc.maxs[f], float(row[f"max:{f}"]))

    def _add_features(self, d: pl.DataFrame, names: list[str], codes: np.ndarray) -> None:
        for f in FEATURES:
            b = _bins(f)
            x = d[f].cast(pl.Float64).to_numpy()
            ok = ~np.isnan(x)
            nb = len(b.lo)
            idx = codes[ok] * nb + b.index(x[ok])
            hist = np.bincount(idx, minlength=len(names) * nb).reshape(len(names), nb)
            for i, src in enumerate(names):
                self.sources[src].hist[f] += hist[i]

    def _add_lines(self, lines: _Lines) -> None:
        for (src,), part in lines.counts.partition_by("source", as_dict=True, maintain_order=True).items():
            acc = self.sources[src]
            # Prune this chunk's counts first (the same Misra-Gries step), then name the survivors.
            part = _prune(part.select("h", "n"))
            text = lines.text.filter(pl.col("h").is_in(part["h"].implode())).unique("h")
            named = part.join(text, on="h", how="left")
            acc.lines = _merge_lines(acc.lines, named)

    def _add_sample(self, d: pl.DataFrame) -> None:
        k = self.sample_size
        for (src,), part in d.filter(pl.col("h").is_not_null()).partition_by("source", as_dict=True).items():
            acc = self.sources[src]
            if acc.sample.height >= k:  # only hashes below the current k-th can enter
                part = part.filter(pl.col("h") < acc.sample["h"][-1])
            if part.height:
                new = part.group_by("h").agg(pl.len().cast(pl.Int64).alias("n"),
                                             pl.col("text").first().str.slice(0, SAMPLE_TEXT_CHARS))
                acc.sample = _merge_sample(acc.sample, new, k)


# ---------------------------------------------------------------- spill files

_SPILL_COLUMNS = ["id", "source", "h", "snippet", *FEATURES]


class _Spill:
    """Per-unit Parquet files of per-doc features and per-chunk line counts, written as it goes."""

    def __init__(self, folder: Path, unit: int):
        self.paths = (folder / f"feat-{unit:06d}.parquet", folder / f"lines-{unit:06d}.parquet")
        self.writers: list[pq.ParquetWriter | None] = [None, None]

    def _write(self, i: int, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self.writers[i] is None:
            self.writers[i] = pq.ParquetWriter(self.paths[i], table.schema, compression="zstd", compression_level=1)
        self.writers[i].write_table(table)  # type: ignore[union-attr]

    def write(self, ch: _Chunk) -> None:
        feats = ch.docs.select(_SPILL_COLUMNS).with_columns(pl.col(f).cast(pl.Float64) for f in FEATURES)
        self._write(0, feats.to_arrow())
        self._write(1, ch.lines.counts.to_arrow())

    def close(self) -> None:
        for w in self.writers:
            if w is not None:
                w.close()


# ---------------------------------------------------------------- units of work

_READ_COLUMNS = ("id", "text", "source", "meta", "lang")


@dataclass(frozen=True)
class _Unit:
    index: int
    shard: str | None = None  # a Parquet file of the document schema
    task: ReadTask | None = None  # a raw input file, read by corpus.readers


@dataclass(frozen=True)
class _Job:
    units: tuple[_Unit, ...]
    spill: str
    sample_size: int
    chunk_bytes: int = CHUNK_BYTES


def _shard_frames(path: str, chunk_bytes: int) -> Iterator[pl.DataFrame]:
    pf = pq.ParquetFile(path)
    cols = [c for c in _READ_COLUMNS if c in pf.schema_arrow.names]
    md = pf.metadata
    rows, size = max(md.num_rows, 1), sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
    batch = max(64, int(chunk_bytes * rows / max(size, 1)))  # about chunk_bytes of data per batch
    for rb in pf.iter_batches(batch_size=batch, columns=cols):
        yield pl.from_arrow(rb)  # type: ignore[misc]


def _slices(df: pl.DataFrame, chunk_bytes: int) -> Iterator[pl.DataFrame]:
    """A caller's frame in pieces of about chunk_bytes of text, so memory stays bounded."""
    if "text" in df.columns and df.schema["text"] != pl.String:
        df = df.with_columns(pl.col("text").cast(pl.String))
    if df.height == 0 or "text" not in df.columns:
        yield df
        return
    size = int(df["text"].str.len_bytes().sum() or 0)
    rows = df.height if size <= chunk_bytes else max(1, df.height * chunk_bytes // size)
    for start in range(0, df.height, rows):
        yield df.slice(start, rows)


@cache
def _worker_connection() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB per process, for the meta JSON: a database per job would keep its memory."""
    con = duckdb.connect()
    con.sql("SET threads = 1")
    return con


class _Profiler:
    """One process's streaming profiler: feed frames, get an _Acc; spills per unit."""

    def __init__(self, spill: Path, sample_size: int):
        self.spill = spill
        self.acc = _Acc(sample_size=sample_size)
        self.con = _worker_connection()

    def add(self, df: pl.DataFrame, out: _Spill) -> None:
        missing = [c for c in ("id", "text", "source") if c not in df.columns]
        if missing:
            raise ValueError(f"profile: frame lacks column(s) {missing} (has {df.columns})")
        if df.height == 0:
            return
        ch = doc_features(df, self.con)
        self.acc.add_chunk(ch)
        out.write(ch)

    def run_unit(self, unit: _Unit, chunk_bytes: int) -> None:
        out = _Spill(self.spill, unit.index)
        try:
            if unit.shard is not None:
                for df in _shard_frames(unit.shard, chunk_bytes):
                    self.add(df, out)
            elif unit.task is not None:
                for chunk in read_task(unit.task, chunk_bytes):
                    self.acc.add_quarantine(chunk.bad)
                    self.add(chunk.docs, out)
        finally:
            out.close()


def _run_job(job: _Job) -> _Acc:
    prof = _Profiler(Path(job.spill), job.sample_size)
    for unit in job.units:
        prof.run_unit(unit, job.chunk_bytes)
    return prof.acc


# ---------------------------------------------------------------- quantiles, MAD, display histograms


def _cdf(b: _Bins, c: np.ndarray, vmin: float, vmax: float, x: float, inclusive: bool) -> float:
    """Docs <= x (or < x), point bins exact, other bins uniform over [lo, hi] within [min, max]."""
    lo, hi = np.maximum(b.lo, vmin), np.minimum(b.hi, vmax)
    width = hi - lo
    pts = b.point | (width <= 0)
    at = np.where(pts, (lo <= x) if inclusive else (lo < x),
                  np.clip((x - lo) / np.where(width > 0, width, 1), 0, 1))
    return float((c * at).sum())


def _quantile(b: _Bins, c: np.ndarray, q: float, vmin: float, vmax: float) -> float:
    n = c.sum()
    target = max(q * n, 1e-9)
    cum = np.cumsum(c)
    i = int(np.searchsorted(cum, target, side="left"))
    lo, hi = max(b.lo[i], vmin), min(b.hi[i], vmax)
    if b.point[i] or hi <= lo:
        v = lo
    else:
        # The j-th of c values spread evenly over the bin sits at (j - 0.5) / c of its width.
        j = max(1.0, math.ceil(target - (cum[i] - c[i]) - 1e-9))
        v = lo + (j - 0.5) / c[i] * (hi - lo)
        if b.integer:
            v = math.floor(v)
    return float(min(max(v, vmin), vmax))


def _scale(b: _Bins, c: np.ndarray, med: float, vmin: float, vmax: float) -> float | None:
    """Robust scale: MAD / 0.6745, or 1.253314 * mean absolute deviation when MAD is 0
    (Iglewicz-Hoaglin), or None when every value equals the median."""
    n = float(c.sum())
    hi_d = max(vmax - med, med - vmin)
    if hi_d <= 0:
        return None
    lo_d, top = 0.0, hi_d
    if _cdf(b, c, vmin, vmax, med, True) - _cdf(b, c, vmin, vmax, med, False) < n / 2:
        for _ in range(60):  # bisection on the mass within [med - d, med + d]
            mid = (lo_d + top) / 2
            inside = _cdf(b, c, vmin, vmax, med + mid, True) - _cdf(b, c, vmin, vmax, med - mid, False)
            lo_d, top = (lo_d, mid) if inside >= n / 2 else (mid, top)
        mad = top
    else:
        mad = 0.0
    if mad > 1e-12:
        return mad / 0.6745
    lo, hi = np.maximum(b.lo, vmin), np.minimum(b.hi, np.maximum(vmax, vmin))
    hi = np.maximum(hi, lo)
    mid = (lo + hi) / 2
    inside = np.where(hi > lo, ((med - lo) ** 2 + (hi - med) ** 2) / (2 * np.where(hi > lo, hi - lo, 1)), 0)
    dev = np.where(b.point | (hi <= lo), np.abs(lo - med),
                   np.where(med <= lo, mid - med, np.where(med >= hi, med - mid, inside)))
    mean_ad = float((c * dev).sum() / n)
    return 1.253314 * mean_ad if mean_ad > 1e-12 else None


def _display(b: _Bins, c: np.ndarray) -> dict:
    if not b.log:  # 20 equal bins on [0, 1]; the exact-0 bin joins the first, exact-1 the last
        per = (len(c) - 2) // FRAC_DISPLAY_BINS
        inner = c[1:-1].reshape(FRAC_DISPLAY_BINS, per).sum(axis=1)
        inner[0] += c[0]
        inner[-1] += c[-1]
        edges = [round(i / FRAC_DISPLAY_BINS, 6) for i in range(FRAC_DISPLAY_BINS + 1)]
        return {"edges": edges, "counts": [int(x) for x in inner], "log": False}
    used = np.flatnonzero(c)
    first, last = int(used[0]), int(used[-1])
    span = last - first + 1
    groups = min(DISPLAY_BINS, span)
    cuts = first + np.round(np.linspace(0, span, groups + 1)).astype(np.int64)
    counts = [int(c[cuts[i]:cuts[i + 1]].sum()) for i in range(groups)]
    his = [float(b.hi[j - 1]) for j in cuts[1:]]
    if math.isinf(his[-1]):
        his[-1] = float(b.lo[last]) * 10
    edges = [_num(float(b.lo[cuts[0]]))] + [_num(h) for h in his]
    return {"edges": edges, "counts": counts, "log": True}


def _num(x: float | None) -> float | None:
    """6 significant digits: figures stable across runs and readable."""
    if x is None or math.isnan(x):
        return None
    return float(f"{x:.6g}")


def _feature(acc: _SourceAcc, f: str) -> dict:
    b, c, n = _bins(f), acc.hist[f], acc.n[f]
    if n == 0:
        return {"mean": None, "min": None, "max": None, "quantiles": dict.fromkeys(QUANTILES),
                "histogram": {"edges": [], "counts": [], "log": b.log}}
    vmin, vmax = acc.mins[f], acc.maxs[f]
    return {"mean": _num(acc.sums[f] / n), "min": _num(vmin), "max": _num(vmax),
            "quantiles": {k: _num(_quantile(b, c, q, vmin, vmax)) for k, q in QUANTILES.items()},
            "histogram": _display(b, c)}


def _robust_params(acc: _SourceAcc) -> dict[str, tuple[float, float | None]]:
    """(median, scale) per feature, from the fine histogram."""
    out = {}
    for f in FEATURES:
        if acc.n[f] == 0:
            out[f] = (0.0, None)
            continue
        b, c, vmin, vmax = _bins(f), acc.hist[f], acc.mins[f], acc.maxs[f]
        med = _quantile(b, c, 0.5, vmin, vmax)
        out[f] = (med, _scale(b, c, med, vmin, vmax))
    return out


# ---------------------------------------------------------------- near duplicates


@cache
def _lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) minimising the false positive + false negative areas around the
    threshold: the same criterion as datasketch's MinHashLSH (9 x 13 for 0.8 and 128)."""
    lo, hi = np.linspace(0, threshold, 201), np.linspace(threshold, 1, 201)
    best = (math.inf, 1, 1)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = np.trapezoid(1 - (1 - lo**r) ** b, lo)
            fn = np.trapezoid((1 - hi**r) ** b, hi)
            best = min(best, (0.5 * fp + 0.5 * fn, b, r))
    return best[1], best[2]


def _signatures(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """MinHash signatures (NUM_PERM values) of word 5-gram sets, by one-permutation hashing: each
    shingle's 64-bit hash picks a bin (low bits) and competes for that bin's minimum (high bits).
    O(shingles), all in polars/numpy. Returns (raw signatures, empty bins = all ones; densified
    ones, where an empty bin borrows the next non-empty bin's value (rotation), for LSH bands)."""
    n = len(texts)
    words = (pl.DataFrame({"text": texts}, schema={"text": pl.String}).with_row_index("doc")
             .select("doc", pl.col("text").str.to_lowercase().str.extract_all(r"\S+").alias("w"))
             .explode("w").drop_nulls("w")
             .with_columns(pl.int_range(pl.len()).over("doc").alias("pos"), pl.len().over("doc").alias("len")))
    grams = pl.concat_str([pl.col("w").shift(-k) for k in range(SHINGLE_WORDS)], separator=" ")
    short = pl.col("len") < SHINGLE_WORDS  # fewer words than a shingle: the whole text is one
    sh = pl.concat([
        words.with_columns(grams.alias("s")).filter(pl.col("pos") + SHINGLE_WORDS <= pl.col("len")).select("doc", "s"),
        words.filter(short).group_by("doc").agg(pl.col("w").str.join(" ").alias("s")),
    ]).select("doc", pl.col("s").hash(_SEED).alias("h"))
    bins = sh.select("doc", (pl.col("h") % NUM_PERM).alias("bin"), (pl.col("h") // NUM_PERM).alias("v"))
    best = bins.group_by("doc", "bin").agg(pl.col("v").min())
    empty = np.iinfo(np.uint64).max
    sig = np.full((n, NUM_PERM), empty, np.uint64)
    sig[best["doc"].to_numpy(), best["bin"].to_numpy()] = best["v"].to_numpy()
    raw = sig
    has = (sig != empty).any(axis=1)
    # Rotation: an empty bin takes the next non-empty bin's value (circularly), offset by the distance.
    cols = np.arange(2 * NUM_PERM)
    filled = np.where(np.tile(sig != empty, 2), cols, 2 * NUM_PERM)
    nxt = np.minimum.accumulate(filled[:, ::-1], axis=1)[:, ::-1][:, :NUM_PERM]
    dist = (nxt - np.arange(NUM_PERM)).astype(np.uint64)
    src = np.take_along_axis(sig, np.minimum(nxt, 2 * NUM_PERM - 1) % NUM_PERM, axis=1)
    return raw, np.where(has[:, None], src + dist * np.uint64(1 << 57), empty)


def _jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One-permutation-hashing estimate: equal non-empty bins over bins non-empty in either."""
    empty = np.iinfo(np.uint64).max
    match = ((a == b) & (a != empty)).sum(axis=1)
    used = ((a != empty) | (b != empty)).sum(axis=1)
    return match / np.maximum(used, 1)


def _near_dups(raw: np.ndarray, sig: np.ndarray, window: int = 16) -> np.ndarray:
    """Rows with another row at estimated Jaccard >= NEAR_DUP_THRESHOLD: LSH bands over the
    densified signatures propose pairs (each row against the next `window` rows sharing a band, so
    a huge cluster stays cheap), the raw signatures' estimate confirms them."""
    n = len(sig)
    near = np.zeros(n, bool)
    rows = np.flatnonzero((raw != np.iinfo(np.uint64).max).any(axis=1))
    if len(rows) < 2:
        return near
    bands, r = _lsh_params(NEAR_DUP_THRESHOLD, NUM_PERM)
    mix = (np.arange(1, r + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)
    for b in range(bands):
        key = (sig[rows, b * r:(b + 1) * r] * mix).sum(axis=1)  # wrapping: a hash of the band
        order = rows[np.argsort(key, kind="stable")]
        skey = np.sort(key, kind="stable")
        for w in range(1, min(window, len(order) - 1) + 1):
            same = skey[w:] == skey[:-w]
            a, c = order[:-w][same], order[w:][same]
            if len(a):
                ok = _jaccard(raw[a], raw[c]) >= NEAR_DUP_THRESHOLD
                near[a[ok]] = True
                near[c[ok]] = True
    return near


class _NearDup:
    """Signatures of the sampled texts (by text key), computed once for all sections."""

    def __init__(self, samples: list[pl.DataFrame]):
        union = pl.concat([pl.DataFrame(schema=_SAMPLE_SCHEMA), *samples]).unique("h", keep="first").sort("h")
        self.raw, self.sig = _signatures(union["text"].fill_null("").to_list())
        self.row = {h: i for i, h in enumerate(union["h"].to_list())}

    def rate(self, sample: pl.DataFrame) -> tuple[float | None, int]:
        if sample.height == 0:
            return None, 0
        idx = np.array([self.row[h] for h in sample["h"].to_list()], np.int64)
        n = sample["n"].to_numpy()
        near = (n >= 2) | _near_dups(self.raw[idx], self.sig[idx])
        total = int(n.sum())
        return float(n[near].sum()) / total, total


# ---------------------------------------------------------------- final figures (DuckDB over the spill)


class _Finisher:
    def __init__(self, spill: Path, workers: int):
        self.feats = sorted(spill.glob("feat-*.parquet"))
        self.lines = sorted(spill.glob("lines-*.parquet"))
        self.con = duckdb.connect()
        tmp = spill / "duckdb-tmp"
        tmp.mkdir(exist_ok=True)
        for setting in ("memory_limit = '256MB'", f"threads = {max(1, workers)}",
                        f"temp_directory = '{tmp.as_posix()}'", "preserve_insertion_order = false"):
            self.con.sql(f"SET {setting}")

    def _scan(self, files: list[Path]) -> str:
        return "read_parquet([" + ", ".join("'" + p.as_posix().replace("'", "''") + "'" for p in files) + "])"

    def distinct_texts(self) -> tuple[dict[str, int], int]:
        if not self.feats:
            return {}, 0
        scan = self._scan(self.feats)
        per = self.con.sql(f"SELECT source, count(*) FROM (SELECT DISTINCT source, h FROM {scan} "
                               "WHERE h IS NOT NULL) GROUP BY source").fetchall()
        total = self.con.sql(f"SELECT count(*) FROM (SELECT DISTINCT h FROM {scan} WHERE h IS NOT NULL)").fetchall()
        return {s: int(n) for s, n in per}, int(total[0][0])

    def line_counts(self, candidates: pl.DataFrame) -> pl.DataFrame:
        """(source, h, docs, line): exact doc counts of the candidate lines."""
        if not self.lines or candidates.height == 0:
            return pl.DataFrame(schema={"source": pl.String, "h": pl.UInt64, "docs": pl.Int64, "line": pl.String})
        self.con.register("cand", candidates.select("h").to_arrow())
        counts = self.con.sql(
            f"SELECT source, h, sum(n)::BIGINT AS docs FROM {self._scan(self.lines)} "
            "WHERE h IN (SELECT h FROM cand) GROUP BY source, h").pl()
        self.con.unregister("cand")
        return counts.with_columns(pl.col("h").cast(pl.UInt64)).join(candidates, on="h")

    def outliers(self, params: pl.DataFrame) -> dict[str, dict[str, dict]]:
        """{section: {feature: {count, examples}}}; section "" is the whole corpus. params: per
        source, each feature's median and scale for the whole corpus (m_all:f, s_all:f) and for the
        source (m_src:f, s_src:f); a null scale means no outliers. Two scans of the spilled features:
        counts and the 5th largest |z| per source, then the rows at or above those cut-offs."""
        names = params["source"].to_list()
        out: dict[str, dict[str, dict]] = {s: {f: {"count": 0, "examples": []} for f in FEATURES}
                                           for s in ["", *names]}
        if not self.feats:
            return out
        z = {(f, side): f'(x.{f} - p."m_{side}:{f}") / p."s_{side}:{f}"' for f in FEATURES for side in ("all", "src")}
        aggs = [f'count(*) FILTER (WHERE abs({e}) > {Z_THRESHOLD}), max(abs({e}), {OUTLIER_EXAMPLES}) '
                f'FILTER (WHERE abs({e}) > {Z_THRESHOLD})' for e in z.values()]
        scan = f"{self._scan(self.feats)} x JOIN params p USING (source)"
        self.con.register("params", params.to_arrow())
        rows = self.con.sql(f"SELECT x.source, {', '.join(aggs)} FROM {scan} GROUP BY x.source").fetchall()
        cuts: dict[tuple[str, str, str], float] = {}
        tops: dict[tuple[str, str], list[float]] = {}
        for row in rows:
            src, vals = row[0], row[1:]
            for i, (f, side) in enumerate(z):
                n, top = vals[2 * i], vals[2 * i + 1] or []
                if side == "src":
                    out[src][f]["count"] = int(n)
                    if top:
                        cuts[(src, f, side)] = min(top)
                else:
                    out[""][f]["count"] += int(n)
                    tops.setdefault((f, side), []).extend(top)
        for (f, side), top in tops.items():  # the corpus' top |z| are among each source's top ones
            if top:
                best = sorted(top, reverse=True)[:OUTLIER_EXAMPLES]
                for src in names:
                    cuts[(src, f, side)] = best[-1]
        if not cuts:
            self.con.unregister("params")
            return out
        cut_cols = {f"c_{side}:{f}": [cuts.get((src, f, side)) for src in names] for f, side in z}
        self.con.unregister("params")
        params = params.with_columns(pl.Series(k, v, dtype=pl.Float64) for k, v in cut_cols.items())
        self.con.register("params", params.to_arrow())
        hit = " OR ".join(f'abs({e}) >= p."c_{side}:{f}"' for (f, side), e in z.items())
        zs = ", ".join(f'{e} AS "z_{side}:{f}"' for (f, side), e in z.items())
        cand = self.con.sql(f"SELECT x.source, x.id, x.snippet, {', '.join(f'x.{f}' for f in FEATURES)}, {zs} "
                            f"FROM {scan} WHERE {hit}").pl()
        self.con.unregister("params")
        for (f, side) in z:
            zc = pl.col(f"z_{side}:{f}")
            hits = cand.filter(zc.abs() > Z_THRESHOLD).with_columns(zc.abs().alias("az"))
            if side == "src":
                for (src,), part in hits.partition_by("source", as_dict=True).items():
                    out[src][f]["examples"] = _examples(part, f, zc)
            else:
                out[""][f]["examples"] = _examples(hits, f, zc)
        return out


def _top_lines(counts: pl.DataFrame) -> list[dict]:
    top = (counts.filter(pl.col("docs") >= 2).sort(["docs", "line", "h"], descending=[True, False, False])
           .head(TOP_LINES))
    return [{"line": line, "docs": int(n)} for line, n in top.select("line", "docs").rows()]


def _examples(hits: pl.DataFrame, f: str, z: pl.Expr) -> list[dict]:
    """The largest |robust z| first; ties by id, value, source (a stable order)."""
    top = hits.sort(["az", "id", f, "source"], descending=[True, False, False, False]).head(OUTLIER_EXAMPLES)
    rows = top.select("id", "source", f, z.alias("z"), "snippet").iter_rows(named=True)
    return [{"id": r["id"], "source": r["source"], "value": _num(r[f]), "robust_z": _num(r["z"]),
             "snippet": r["snippet"]} for r in rows]


def _section(acc: _SourceAcc, sources: dict[str, int], has_lang: bool, distinct: int, near: tuple[float | None, int],
             top_lines: list[dict], outliers: dict[str, dict], quarantine: bool) -> dict:
    c = acc.counts
    letters = int(acc.scripts.sum())
    names = (*SCRIPTS, OTHER_SCRIPT)
    order = list(range(len(SCRIPTS) + 1))
    scripts = {names[i - 1] if i else OTHER_SCRIPT: _num(acc.scripts[i] / letters)
               for i in order[1:] + [0] if letters and acc.scripts[i]}
    texts = c["docs"] - c["null_text"]
    meta = sorted(acc.meta.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    out = {
        **{k: int(c[k]) for k in ("docs", "bytes", "chars", "words", "lines", "est_tokens", "null_text",
                                   "empty_text")},
        "features": {f: _feature(acc, f) for f in FEATURES},
        "scripts": scripts,
        "encoding_error_docs": int(c["encoding_error_docs"]),
        "languages": (dict(sorted(acc.langs.items(), key=lambda kv: (-kv[1], kv[0]))) if has_lang else None),
        "sources": sources,
        "meta_fields": {k: {"present": int(sum(t.values())),
                            "types": dict(sorted(t.items(), key=lambda kv: (-kv[1], kv[0])))} for k, t in meta},
        "exact_dup_rate": _num(1 - distinct / texts) if texts else None,
        "near_dup_rate": _num(near[0]) if near[0] is not None else None,
        "near_dup_sample": int(near[1]),
        "top_lines": top_lines,
        "outliers": outliers,
    }
    if quarantine:
        out["quarantined"] = dict(sorted(acc.quarantined.items()))
    return out


def _finish(acc: _Acc, spill: Path, label: str, workers: int, quarantine: bool) -> dict:
    fin = _Finisher(spill, workers)
    names = sorted(acc.sources)
    overall = acc.overall()
    per_src, total = fin.distinct_texts()
    # Top lines: candidates from the Misra-Gries tables, exact counts from the spilled hashes.
    cands = pl.concat([overall.lines.select("h", "line")] + [acc.sources[s].lines.select("h", "line") for s in names])
    counts = fin.line_counts(cands.unique("h", keep="first"))
    # Outliers: each doc is judged against its section's median and scale.
    params_all = _robust_params(overall)
    params_src = [_robust_params(acc.sources[s]) for s in names]
    params: dict[str, Any] = {"source": names}
    for f in FEATURES:
        src = [p[f] for p in params_src]
        params[f"m_all:{f}"], params[f"s_all:{f}"] = [params_all[f][0]] * len(names), [params_all[f][1]] * len(names)
        params[f"m_src:{f}"], params[f"s_src:{f}"] = [m for m, _ in src], [sc for _, sc in src]
    outl = fin.outliers(pl.DataFrame(params, schema={k: pl.String if k == "source" else pl.Float64 for k in params}))
    near = _NearDup([overall.sample] + [acc.sources[s].sample for s in names])
    by_source = {}
    for s in names:
        sa = acc.sources[s]
        by_source[s] = _section(sa, {s: sa.counts["docs"]}, acc.has_lang, per_src.get(s, 0), near.rate(sa.sample),
                                _top_lines(counts.filter(pl.col("source") == s)), outl[s], quarantine)
    all_counts = counts.group_by("h").agg(pl.col("docs").sum(), pl.col("line").first())
    sources = {s: acc.sources[s].counts["docs"] for s in names}
    overall_sec = _section(overall, sources, acc.has_lang, total, near.rate(overall.sample), _top_lines(all_counts),
                           outl[""], quarantine)
    fin.con.close()
    return {"format": FORMAT, "label": label, "overall": overall_sec, "by_source": by_source}


# ---------------------------------------------------------------- drivers


def _write(profile: dict, workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(workdir / "profile.json", json.dumps(profile, indent=2, ensure_ascii=False).encode())


def _fresh_spill(workdir: Path) -> Path:
    spill = workdir / _SPILL
    shutil.rmtree(spill, ignore_errors=True)
    spill.mkdir(parents=True)
    return spill


def _done(spill: Path, keep_features: bool) -> None:
    shutil.rmtree(spill / "duckdb-tmp", ignore_errors=True)
    if not keep_features:
        shutil.rmtree(spill, ignore_errors=True)


def _run_jobs(jobs: list[_Job], workers: int) -> _Acc:
    """Jobs on a spawn pool (in this process when workers <= 1), merged in job order as they finish."""
    acc = _Acc(sample_size=jobs[0].sample_size if jobs else NEAR_DUP_SAMPLE)
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            acc.merge(_run_job(job))
        return acc
    # Share the cores: polars in each worker would otherwise start one thread per core.
    os.environ.setdefault("POLARS_MAX_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        for part in pool.map(_run_job, jobs):
            acc.merge(part)
    return acc


def profile_frames(frames: Iterable[pl.DataFrame], label: str, workdir: Path,
                   sample_size: int = NEAR_DUP_SAMPLE, keep_features: bool = False) -> dict:
    """Profile document frames (columns id, text, source; optional meta, lang), streaming, in this
    process. Writes ``workdir/profile.json`` and returns the profile."""
    workdir = Path(workdir)
    spill = _fresh_spill(workdir)
    prof = _Profiler(spill, sample_size)
    out = _Spill(spill, 0)
    try:
        for df in frames:
            for part in _slices(df, CHUNK_BYTES):
                prof.add(part, out)
    finally:
        out.close()
    profile = _finish(prof.acc, spill, label, 1, quarantine=False)
    _write(profile, workdir)
    _done(spill, keep_features)
    return profile


def profile_input(inputs: list[InputSpec] | Path | str, out: Path, workers: int = 2,
                  sample_size: int = NEAR_DUP_SAMPLE, keep_features: bool = False,
                  base_dir: Path | None = None) -> dict:
    """Profile raw inputs (read by corpus.readers; quarantined records counted by kind) or a corpus
    folder (one with manifest.json), in parallel over files/shards. Writes ``out/profile.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spill = _fresh_spill(out)
    units: list[_Unit]
    if isinstance(inputs, str | Path):
        root = Path(inputs)
        if (root / "manifest.json").is_file():
            manifest = read_manifest(root)
            units = [_Unit(i, shard=str(root / s["path"])) for i, s in enumerate(manifest["shards"])]
            quarantine = False
        else:
            inputs = [InputSpec(source=root.name or "input", path=str(root))]
    if not isinstance(inputs, str | Path):
        tasks = plan_tasks(list(inputs), base_dir)
        units = [_Unit(t.index, task=t) for t in tasks]
        quarantine = True
    jobs = [_Job((u,), str(spill), sample_size) for u in units]
    acc = _run_jobs(jobs, workers)
    profile = _finish(acc, spill, "input", workers, quarantine)
    _write(profile, out)
    _done(spill, keep_features)
    return profile


def _stage_label(workdir: Path) -> str:
    """`01-profile` from the stage folder `01-profile-<12 hex>` holding the fit folder."""
    name = workdir.parent.name
    m = re.match(r"^(.*)-[0-9a-f]{12}$", name)
    return m.group(1) if m else name


@dataclass
class Profile(GlobalOperator):
    """Profiles the corpus at its place in the pipeline into ``fit/profile.json``; documents pass
    through unchanged. ``near_dup_sample``: distinct texts in the MinHash sample."""

    name = "profile"
    needs = ("id", "text", "source")
    adds = ()
    apply_kind = "map"

    near_dup_sample: int = NEAR_DUP_SAMPLE
    keep_features: bool = False  # keep the per-doc features Parquet files in fit/_spill

    def fit(self, ctx: FitContext) -> None:
        spill = _fresh_spill(ctx.workdir)
        units = [_Unit(i, shard=str(p)) for i, p in enumerate(ctx.shards)]
        # The executor's pool returns all results at once: a few jobs per worker bounds their number.
        n_jobs = min(len(units), max(1, ctx.workers) * 4)
        groups = [tuple(units[i::n_jobs]) for i in range(n_jobs)] if n_jobs else []
        jobs = [_Job(g, str(spill), self.near_dup_sample) for g in groups]
        acc = _Acc(sample_size=self.near_dup_sample)
        for part in ctx.pool_map(_run_job, jobs):
            acc.merge(part)
        profile = _finish(acc, spill, _stage_label(ctx.workdir), ctx.workers, quarantine=False)
        _write(profile, ctx.workdir)
        _done(spill, self.keep_features)

    def load(self, workdir: Path) -> None:
        """Nothing to load: the profile is a report, not state for apply."""

    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        return df


__all__ = ["FEATURES", "FORMAT", "Profile", "doc_features", "profile_frames", "profile_input"]
