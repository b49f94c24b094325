"""Mergeable aggregates per source: everything a chunk adds that is not spilled.

Per source: exact sums and counts; min/max and fine histograms per feature (histograms.py); the
outlier example candidates (extremes.py); letters per script; languages; meta keys and JSON types;
quarantined records by kind; a Misra-Gries table of frequent lines (lines.py); the near-duplicate
sample's picks (the documents with the smallest pick keys, neardup.py). Everything merges by addition
or a bounded merge, so chunks, units and workers combine in any grouping; overall = merge(sources).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from .constants import FEATURES, NEAR_DUP_SAMPLE, SCRIPTS
from .extremes import Extremes, chunk_extremes
from .extremes import merge as merge_extremes
from .features import Chunk
from .histograms import add_values, bins
from .lines import LineTable

COUNTS = ("docs", "null_text", "empty_text", "bytes", "chars", "words", "lines", "est_tokens", "encoding_error_docs")
_SUMS = {"bytes": "bytes", "chars": "n_chars", "words": "n_words", "lines": "n_lines", "est_tokens": "est_tokens"}


@dataclass
class Picks:
    """The k documents with the smallest pick keys: (pick, order) sorted by pick."""

    pick: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    order: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def merge(self, o: Picks, k: int) -> Picks:
        pick, order = np.concatenate([self.pick, o.pick]), np.concatenate([self.order, o.order])
        first = np.lexsort((order, pick))[:k]
        return Picks(pick[first], order[first])


@dataclass
class SourceAcc:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    n: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FEATURES, 0))
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FEATURES, 0.0))
    mins: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FEATURES, math.inf))
    maxs: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FEATURES, -math.inf))
    hist: dict[str, np.ndarray] = field(
        default_factory=lambda: {f: np.zeros(len(bins(f).lo), np.int64) for f in FEATURES})
    scripts: np.ndarray = field(default_factory=lambda: np.zeros(len(SCRIPTS) + 1, np.int64))
    langs: dict[str, int] = field(default_factory=dict)
    meta: dict[str, dict[str, int]] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    lines: LineTable = field(default_factory=LineTable)
    picks: Picks = field(default_factory=Picks)
    extremes: Extremes = field(default_factory=dict)

    def merge(self, o: SourceAcc, sample_size: int) -> None:
        for k in COUNTS:
            self.counts[k] += o.counts[k]
        for f in FEATURES:
            self.n[f] += o.n[f]
            self.sums[f] += o.sums[f]
            self.mins[f] = min(self.mins[f], o.mins[f])
            self.maxs[f] = max(self.maxs[f], o.maxs[f])
            self.hist[f] += o.hist[f]
        self.scripts += o.scripts
        add_counts(self.langs, o.langs)
        add_counts(self.quarantined, o.quarantined)
        for key, types in o.meta.items():
            add_counts(self.meta.setdefault(key, {}), types)
        self.lines = self.lines.merge(o.lines)
        self.picks = self.picks.merge(o.picks, sample_size)
        merge_extremes(self.extremes, o.extremes)

    def add_docs(self, docs: pl.DataFrame, sample_size: int) -> None:
        """One source's documents of a chunk (features.Chunk.docs rows)."""
        c = self.counts
        sums = docs.select(pl.len(), pl.col("null").sum(), pl.col("empty").sum(),
                           *(pl.col(col).sum() for col in _SUMS.values()), (pl.col("replacements") > 0).sum()).row(0)
        for k, v in zip(COUNTS, sums, strict=True):
            c[k] += int(v or 0)
        for f in FEATURES:
            x = docs[f].to_numpy()  # NaN where null
            x = x[~np.isnan(x)]
            if len(x):
                self.n[f] += len(x)
                self.sums[f] += float(x.sum())
                self.mins[f] = min(self.mins[f], float(x.min()))
                self.maxs[f] = max(self.maxs[f], float(x.max()))
                add_values(bins(f), x, self.hist[f])
        live = docs.filter(~pl.col("null"))
        self.picks = self.picks.merge(Picks(live["pick"].to_numpy(), live["order"].to_numpy()), sample_size)


def add_counts(into: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


@dataclass
class Acc:
    """Everything a job learns, per source; merged across jobs in corpus order."""

    sources: dict[str, SourceAcc] = field(default_factory=dict)
    has_lang: bool = False
    sample_size: int = NEAR_DUP_SAMPLE

    def source(self, name: str) -> SourceAcc:
        if name not in self.sources:
            self.sources[name] = SourceAcc()
        return self.sources[name]

    def merge(self, o: Acc) -> None:
        self.has_lang |= o.has_lang
        for name, acc in o.sources.items():
            self.source(name).merge(acc, self.sample_size)

    def overall(self) -> SourceAcc:
        total = SourceAcc()
        for name in sorted(self.sources):
            total.merge(self.sources[name], self.sample_size)
        return total

    def add_meta(self, types: pl.DataFrame) -> None:
        """Meta fields and their JSON types: (source, key, type, n) rows (meta.meta_types)."""
        for src, key, typ, n in types.rows():
            add_counts(self.source(src).meta.setdefault(key, {}), {typ: n})

    def add_quarantine(self, bad: pl.DataFrame) -> None:
        if bad.height == 0:
            return
        for src, kind, n in bad.group_by("source", "kind").len().rows():
            add_counts(self.source(src).quarantined, {kind: n})

    def add_chunk(self, ch: Chunk) -> None:
        self.has_lang |= ch.has_lang
        parts = ch.docs.partition_by("source", as_dict=True) if ch.docs["source"].n_unique() > 1 else {
            (ch.docs["source"][0],): ch.docs} if ch.docs.height else {}
        for (src,), docs in parts.items():
            acc = self.source(src)
            acc.add_docs(docs, self.sample_size)
            acc.scripts += ch.scripts[src]
            # Counted always ("unknown" without a lang): shown only when some input had one.
            for lang, n in docs.group_by("lang").len().rows():
                add_counts(acc.langs, {lang if lang is not None else "unknown": n})
        for src, ex in chunk_extremes(ch.docs, ch.text).items():
            merge_extremes(self.source(src).extremes, ex)
        for (src,), counts in ch.lines.counts.partition_by("source", as_dict=True).items():
            acc = self.source(src)
            acc.lines = acc.lines.merge(LineTable.of(counts, ch.lines.where))
