"""Decontamination: documents that share word n-grams with evaluation sets, and n-gram leakage between
the splits of tokenized shards.

``decontaminate`` (a global filter): its fit reads the user's evaluation sets (JSONL or Parquet of
benchmark questions and answers; ``fields``: the text fields to index, default every string field),
normalises each field at a ``normalise`` level (``stages/normalise.py``; default ``fuzzy``: lower case,
punctuation as spaces, digit runs as 0) and indexes its word n-grams (``n``, default 13, as GPT-3 and
NeMo Curator). A field shorter than ``n`` words but at least ``min_words`` long is indexed whole (GPT-3
does so for short items); shorter ones are skipped (a one-word answer would match everything). Then
each document's n-grams are looked up: ``decontam_matches`` counts its positions that match,
``decontam_ngrams`` records up to ``record`` matching n-grams (their normalised words), and with
``mode: remove`` (default) a matching document is dropped as ``decontam:<eval set>``; ``flag`` keeps it.

n-grams are compared by a 64-bit hash of their words' hashes (polars' word hash, combined in numpy): a
collision, about one in 2^64 per pair, is the only way two different n-grams could match.

``leakage`` compares tokenized splits (``corpus shards leakage TRAIN VALID [TEST]``): the token
n-grams of each held-out split against the training split's, and whole documents equal to a training
document; every shard set is checked against its sidecar before it is read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import duckdb
import numpy as np
import polars as pl

from corpus.integrity import file_sha256
from corpus.operators import Columns, GlobalFilterOperator, StageContext, StageView, Verdict
from corpus.schema import TEXT
from corpus.stages.normalise import Normalisation
from corpus.stages.rules import RULE_VALUE

if TYPE_CHECKING:
    from corpus.progress import Progress

INDEX = "ngrams.parquet"
SUMMARY = "summary.json"
_BASE = np.uint64(0x9E3779B97F4A7C15)


def rolling_hashes(values: np.ndarray, lens: np.ndarray, n: int, first_doc: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hash, document, start) of every n-gram of consecutive ``values`` (uint64) that lies within one
    document (documents of ``lens`` values each, numbered from ``first_doc``); the hash is seeded by n."""
    lens = lens.astype(np.int64)
    k = len(values) - n + 1
    if k <= 0:
        return np.empty(0, np.uint64), np.empty(0, np.int64), np.empty(0, np.int64)
    doc = np.repeat(np.arange(first_doc, first_doc + len(lens)), lens)
    pos = np.arange(len(values)) - np.repeat(np.cumsum(lens) - lens, lens)
    ok = (pos + n <= np.repeat(lens, lens))[:k]
    h = np.full(k, np.uint64(n), np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            h = h * _BASE + values[j:j + k]
    return h[ok], doc[:k][ok], pos[:k][ok]


def ngram_hashes(words: pl.Series, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a Series of word lists: (hash, doc, start) of every n-gram that fits in its document."""
    lens = words.list.len().cast(pl.Int64).to_numpy()
    wh = words.explode(empty_as_null=False).drop_nulls().hash(seed=1).to_numpy().astype(np.uint64)
    return rolling_hashes(wh, lens, n)


def _relation(path: Path) -> str:
    p = str(path).replace("'", "''")
    if path.suffix == ".parquet":
        return f"read_parquet('{p}')"
    return f"read_json_auto('{p}', format = 'newline_delimited')"


@dataclass
class Decontaminate(GlobalFilterOperator):
    """Drop (``mode: remove``) or flag documents sharing a word ``n``-gram (13) with the evaluation sets
    ``eval_sets`` (JSONL/Parquet files of benchmark items; ``fields`` to index, default every string
    field); records the matching n-grams. See the module docstring."""

    name = "decontaminate"
    needs = {TEXT: pl.String}
    adds = {"decontam_matches": pl.Int64, "decontam_ngrams": pl.List(pl.String), RULE_VALUE: pl.Float64}
    report_title = "Decontamination"
    report_order = 64

    eval_sets: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    n: int = 13
    min_words: int = 8
    normalise: Literal["none", "exact", "loose", "fuzzy"] = "fuzzy"
    mode: Literal["remove", "flag"] = "remove"
    record: int = 5

    def __post_init__(self) -> None:
        if not self.eval_sets:
            raise ValueError("eval_sets: name at least one JSONL or Parquet file of evaluation items")
        for p in self.eval_sets:
            if not Path(p).is_file():
                raise ValueError(f"decontaminate: evaluation set {p} does not exist")
        # Each message starts with its parameter, so `corpus check` points at its line. A negative record
        # passed here once and stopped the run in polars (head(-1)) at the first matching document.
        if self.n < 1:
            raise ValueError(f"n must be 1 or more (words per n-gram), got {self.n}")
        if not 1 <= self.min_words <= self.n:
            raise ValueError(f"min_words must be between 1 and n ({self.n}), got {self.min_words}")
        if self.record < 0:
            raise ValueError(f"record must be 0 or more (matching n-grams recorded per document; 0 records "
                             f"none), got {self.record}")
        self._index: pl.DataFrame | None = None
        # A set that indexes nothing (an empty file, every text under min_words) matches no document: the
        # stage would run as a no-op that looks like a clean corpus. Said when the config is read.
        empty = []
        for path in map(Path, self.eval_sets):
            items, cols, texts = self._eval_texts(path)
            if not (self.words(texts).list.len() >= self.min_words).any():
                empty.append(f"evaluation set {path} indexes nothing: " + (
                    "it holds no items" if not items else
                    f"none of its {texts.len():,} texts (fields {', '.join(cols)}) has min_words "
                    f"({self.min_words}) words or more after normalisation ({self.normalise})"))
        if empty:
            raise ValueError("decontaminate: " + "; ".join(empty))

    def config_key(self) -> str:
        """Parameters and the evaluation sets' bytes: an edited set reruns the stage."""
        digests = [file_sha256(Path(p)) for p in self.eval_sets]
        return hashlib.sha256((super().config_key() + "|" + ",".join(digests)).encode()).hexdigest()

    def columns(self) -> tuple[Columns, Columns, tuple[str, ...]]:
        return dict(self.needs), dict(self.adds), ()

    def words(self, text: pl.Series) -> pl.Series:
        norm = Normalisation(self.normalise).apply(text)
        return norm.str.split(" ").list.eval(pl.element().filter(pl.element() != ""))

    def _eval_texts(self, path: Path) -> tuple[int, list[str], pl.Series]:
        """(items, the fields indexed, their non-null texts) of one evaluation set."""
        try:
            items = duckdb.sql(f"SELECT * FROM {_relation(path)}").pl()
        except duckdb.Error as exc:
            raise ValueError(f"{path}: cannot read the evaluation set ({str(exc).splitlines()[0]})") from exc
        cols = self.fields or [c for c, t in items.schema.items() if t == pl.String]
        if not items.height:  # an empty file: duckdb makes up a column
            return 0, cols, pl.Series("text", [], pl.String)
        missing = [c for c in cols if c not in items.columns]
        if missing or not cols:
            raise ValueError(f"{path}: no field(s) {missing or cols}; it has {items.columns}")
        return items.height, cols, pl.concat([items[c].cast(pl.String) for c in cols]).drop_nulls()

    def build_index(self) -> tuple[pl.DataFrame, dict]:
        """The evaluation n-grams: hash, length k, their words and the set they come from."""
        parts, summary = [], {}
        for path in map(Path, self.eval_sets):
            items, cols, texts = self._eval_texts(path)
            words = self.words(texts)
            lens = words.list.len()
            name = path.stem
            counted = 0
            for k in sorted({self.n, *[x for x in lens.unique().to_list() if self.min_words <= x < self.n]}):
                pick = words.filter(lens == k) if k < self.n else words.filter(lens >= k)
                h, d, s = ngram_hashes(pick, k)
                grams = pl.DataFrame({"w": pick.gather(d), "s": s}).select(
                    pl.col("w").list.slice(pl.col("s"), k).list.join(" ")).to_series()
                parts.append(pl.DataFrame({"hash": h, "k": np.full(len(h), k, np.int32), "ngram": grams,
                                           "set": [name] * len(h)}))
                counted += len(h)
            summary[name] = {"items": items, "fields": cols, "texts": texts.len(),
                             "indexed_texts": int((lens >= self.min_words).sum()), "ngrams": counted}
        index = pl.concat(parts).unique("hash", keep="first", maintain_order=True) if parts else pl.DataFrame()
        return index, summary

    def fit(self, ctx: StageContext) -> dict:
        index, summary = self.build_index()
        index.write_parquet(ctx.artifacts / INDEX)
        (ctx.artifacts / SUMMARY).write_text(json.dumps({"sets": summary, "n": self.n, "mode": self.mode,
                                                         "normalise": self.normalise}, indent=2))
        return {"ngrams": index.height}

    def load(self, artifacts: Path) -> None:
        self._index = pl.read_parquet(artifacts / INDEX)

    def filter(self, df: pl.DataFrame) -> Verdict:
        if self._index is None:
            index, _ = self.build_index()
            self._index = index
        words = self.words(df[TEXT])
        found = []
        for k in sorted(set(self._index["k"].to_list())) if self._index.height else []:
            h, d, _ = ngram_hashes(words, int(k))
            hits = pl.DataFrame({"hash": h, "doc": d}).join(self._index.filter(pl.col("k") == k), on="hash")
            found.append(hits)
        hits = pl.concat(found) if found else pl.DataFrame(schema={"hash": pl.UInt64, "doc": pl.Int64,
                                                                   "k": pl.Int32, "ngram": pl.String,
                                                                   "set": pl.String})
        per_doc = hits.group_by("doc").agg(pl.len().cast(pl.Int64).alias("decontam_matches"),
                                           pl.col("ngram").unique(maintain_order=True).head(self.record)
                                           .alias("decontam_ngrams"), pl.col("set").first())
        full = pl.DataFrame({"doc": np.arange(df.height)}).cast({"doc": per_doc.schema["doc"]}).join(
            per_doc, on="doc", how="left", maintain_order="left")
        matches = full["decontam_matches"].fill_null(0)
        ngrams = full["decontam_ngrams"].fill_null(pl.lit([], pl.List(pl.String))).cast(pl.List(pl.String))
        reason = pl.select(pl.when(matches > 0).then(pl.lit("decontam:") + full["set"])
                           .otherwise(pl.lit(None, pl.String))).to_series()
        # Typed: [True] * 0 alone is a null-typed Series, which an empty shard's verdict cannot use.
        keep = pl.Series([True] * df.height, dtype=pl.Boolean) if self.mode == "flag" else matches == 0
        value = pl.select(pl.when(matches > 0).then(matches.cast(pl.Float64))).to_series()
        return Verdict(keep=keep, reason=reason, scores={"decontam_matches": matches, "decontam_ngrams": ngrams,
                                                         RULE_VALUE: value})

    @classmethod
    def report(cls, stages: list[StageView]) -> Any:
        from corpus.report.html import Col, esc, num_cell, table
        from corpus.report.sections import Rendered

        parts, figures = [], {}
        for st in stages:
            try:
                summary = json.loads((st.artifacts / SUMMARY).read_text())
            except (OSError, ValueError):
                continue
            rows = []
            for name, s in summary["sets"].items():
                reason = f"decontam:{name}"
                dropped = sum(st.drops.get(reason, {}).values())
                examples = st.examples.get(reason, [])[:2]
                shown = "; ".join(f"{esc(ex['id'])}: {esc(str(ex['scores'].get('decontam_ngrams', ''))[:200])}"
                                  for ex in examples)
                rows.append([name, num_cell(s["items"]), num_cell(s["ngrams"]), num_cell(dropped), shown])
            cols = [Col("evaluation set"), Col("items", num=True), Col("n-grams", num=True),
                    Col("documents removed", num=True), Col("matching n-grams (examples)", cls="snip")]
            parts.append(f"<h3>{esc(st.label)}</h3><p>{summary['n']}-grams of words at normalisation "
                         f"'{esc(summary['normalise'])}', mode {esc(summary['mode'])}</p>" + table(cols, rows))
            figures[st.label] = summary
        return Rendered("".join(parts), figures) if parts else None


# ---------------------------------------------------------------- leakage between tokenized splits


def _token_ngrams(ds: Any, n: int, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
    """(hash, document) of every token n-gram of documents first..last-1 that fits in its document."""
    if last <= first:  # an empty split (--split 1,0,0): nothing to hash
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    lengths = ds.lengths[first:last].astype(np.int64)
    start = ds.start(first)
    tokens = np.asarray(ds.tokens[start:start + int(lengths.sum())]).astype(np.uint64) + np.uint64(1)
    h, doc, _ = rolling_hashes(tokens, lengths, n, first)
    return h, doc


def _doc_hashes(ds: Any) -> np.ndarray:
    """A digest of each document's tokens (exact duplicates across splits)."""
    out = np.empty(len(ds), np.uint64)
    for i in range(len(ds)):
        out[i] = np.uint64(int.from_bytes(hashlib.blake2b(np.asarray(ds[i]).tobytes(), digest_size=8).digest(),
                                          "little"))
    return out


def leakage(train_prefix: str | Path, held_out: list[str | Path], n: int = 13, chunk_tokens: int = 1 << 23,
            examples: int = 5, progress: Progress | None = None) -> dict:
    """Per held-out split: its documents, those sharing a token n-gram with the training split, those
    equal to a training document, and examples (held-out document, a training document it shares with).
    ``progress``: a bar per held-out split over the training tokens compared (`corpus shards leakage`)."""
    from corpus.shards import IndexedDataset, check_content

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"--ngram must be a whole number of tokens, 1 or more, got {n}")
    for p in [train_prefix, *held_out]:
        check_content(p)
    train = IndexedDataset(train_prefix)
    train_docs = _doc_hashes(train)
    result: dict[str, Any] = {"train": str(train_prefix), "ngram": n, "splits": {}}
    total = int(train.lengths.sum())
    with progress if progress is not None else nullcontext():
        for prefix in held_out:
            result["splits"][str(prefix)] = _leaked(train, train_docs, IndexedDataset(prefix), n, chunk_tokens,
                                                    examples, _tokens_bar(progress, f"leakage {Path(prefix).name}",
                                                                          total))
    return result


def _tokens_bar(progress: Progress | None, label: str, total: int) -> Callable[[int], object]:
    """``shown(tokens done)`` on a bar of ``total`` training tokens; nothing without progress."""
    if progress is None:
        return lambda done: None
    bar = progress.add(label, total=total)
    return lambda done: progress.update(bar, done, f"{done / 1e6:,.1f}M of {total / 1e6:,.1f}M training tokens")


def _leaked(train: Any, train_docs: np.ndarray, ds: Any, n: int, chunk_tokens: int, examples: int,
            shown: Callable[[int], object]) -> dict:
    """One held-out split against the training split, chunk by chunk; ``shown(training tokens done)``."""
    h, d = _token_ngrams(ds, n, 0, len(ds))
    order = np.argsort(h, kind="stable")
    hs, ds_of = h[order], d[order]
    leaked_doc: dict[int, int] = {}  # held-out document -> a training document sharing an n-gram
    first = done = 0
    while first < len(train):
        last, tokens = first, 0
        while last < len(train) and (tokens == 0 or tokens + int(train.lengths[last]) <= chunk_tokens):
            tokens += int(train.lengths[last])
            last += 1
        th, td = _token_ngrams(train, n, first, last)
        if len(hs):
            at = np.clip(np.searchsorted(hs, th), 0, len(hs) - 1)
            hit = hs[at] == th
            for t_doc, j in zip(td[hit].tolist(), at[hit].tolist(), strict=True):
                # every held-out document with this n-gram (equal hashes sit together)
                k = j
                while k < len(hs) and hs[k] == hs[j]:
                    leaked_doc.setdefault(int(ds_of[k]), t_doc)
                    k += 1
        done += tokens
        shown(done)
        first = last
    dup = np.isin(_doc_hashes(ds), train_docs)
    return {
        "documents": len(ds), "sharing_ngrams": len(leaked_doc), "identical_to_train": int(dup.sum()),
        "examples": [{"document": k, "train_document": v} for k, v in sorted(leaked_doc.items())[:examples]],
    }
