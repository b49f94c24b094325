"""Mergeable aggregates per source: everything a chunk adds that is not spilled.

Per source: exact sums and counts; min/max and fine histograms per feature (histograms.py); the
outlier example candidates (extremes.py); letters per script; languages; meta keys and JSON types;
quarantined records by kind; a Misra-Gries table of frequent lines (lines.py); the MinHash sample
(sample.py, neardup.py). Everything merges by addition or a bounded merge, so chunks, units and
workers combine in any grouping; overall = merge(sources).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from .constants import FEATURES, NEAR_DUP_SAMPLE, SAMPLE_TEXT_CHARS, SCRIPTS
from .extremes import Extremes, chunk_extremes
from .extremes import merge as merge_extremes
from .features import Chunk
from .histograms import add_values, bins, int_lut, kernel_tables
from .lines import LineTable, chunk_candidates
from .sample import Sample

COUNTS = ("docs", "null_text", "empty_text", "bytes", "chars", "words", "lines", "est_tokens", "encoding_error_docs")


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
    sample: Sample = field(default_factory=Sample)
    extremes: Extremes = field(default_factory=dict)  # outlier example candidates (extremes.py)

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
        self.sample = self.sample.merge(o.sample, sample_size)
        merge_extremes(self.extremes, o.extremes)


def add_counts(into: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


@dataclass
class Acc:
    """Everything a job learns, per source; merged across jobs in corpus order."""

    sources: dict[str, SourceAcc] = field(default_factory=dict)
    has_lang: bool = False
    sample_size: int = NEAR_DUP_SAMPLE
    # Shared by the accumulators of one run's threads: per source, the k-th smallest text key some
    # accumulator already holds. No key at or above it can be among the k smallest of the whole
    # run, so later chunks skip those docs (their texts are never copied).
    bounds: dict[str, int] | None = None

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

    def add_quarantine(self, bad: pl.DataFrame) -> None:
        if bad.height == 0:
            return
        for src, kind, n in bad.group_by("source", "kind").len().rows():
            add_counts(self.source(src).quarantined, {kind: n})

    def add_chunk(self, ch: Chunk) -> None:
        self.has_lang |= ch.has_lang
        groups = _groups(ch.codes, len(ch.names))
        for i, src in enumerate(ch.names):
            acc = self.source(src)
            acc.scripts += ch.scripts[i]
            self._add_docs(acc, ch, groups[i])
            rows = np.arange(len(ch.codes)) if groups[i] is None else groups[i]
            merge_extremes(acc.extremes, chunk_extremes(ch.stacked, rows, ch.ids, ch.texts, src))
        if ch.has_lang:  # counted always ("unknown" without a lang): reported only if some input had it
            langs = pl.DataFrame({"src": ch.codes, "lang": ch.lang}).group_by("src", "lang").len()
            for code, lang, n in langs.rows():
                add_counts(self.sources[ch.names[code]].langs, {lang if lang is not None else "unknown": n})
        else:
            for i, src in enumerate(ch.names):
                rows = groups[i]
                add_counts(self.sources[src].langs, {"unknown": len(ch.codes) if rows is None else len(rows)})
        for src, key, typ, n in ch.meta.rows():
            add_counts(self.source(src).meta.setdefault(key, {}), {typ: n})
        for src, named in chunk_candidates(ch.lines).items():
            acc = self.source(src)
            acc.lines = acc.lines.merge(named)
        self._add_sample(ch, groups)

    @staticmethod
    def _add_docs(acc: SourceAcc, ch: Chunk, rows: np.ndarray | None) -> None:
        def pick(a: np.ndarray) -> np.ndarray:
            return a if rows is None else a[rows]

        null = pick(ch.is_null)
        c = acc.counts
        c["docs"] += len(null)
        c["null_text"] += int(null.sum())
        c["empty_text"] += int(pick(ch.is_empty).sum())
        for k in ("bytes", "words", "lines", "est_tokens"):
            c[k] += int(pick(ch.sums[k]).sum())
        c["chars"] += int(pick(ch.sums["n_chars"]).sum())
        c["encoding_error_docs"] += int((pick(ch.sums["replacements"]) > 0).sum())
        kinds, edges, offs, n_bins = kernel_tables()
        n, sums = np.zeros(len(FEATURES), np.int64), np.zeros(len(FEATURES))
        mins, maxs = np.full(len(FEATURES), np.inf), np.full(len(FEATURES), -np.inf)
        hist = np.zeros((len(FEATURES), int(n_bins.max())), np.int64)
        add_values(ch.stacked, np.arange(len(ch.codes)) if rows is None else rows,
                   kinds, edges, offs, n_bins, int_lut(), n, sums, mins, maxs, hist)
        for i, f in enumerate(FEATURES):
            if n[i]:
                acc.n[f] += int(n[i])
                acc.sums[f] += float(sums[i])
                acc.mins[f] = min(acc.mins[f], float(mins[i]))
                acc.maxs[f] = max(acc.maxs[f], float(maxs[i]))
                acc.hist[f] += hist[i, :n_bins[i]]

    def _add_sample(self, ch: Chunk, groups: list[np.ndarray | None]) -> None:
        k = self.sample_size
        live = ~ch.is_null
        for i, src in enumerate(ch.names):
            acc = self.sources[src]
            rows = np.arange(len(ch.codes)) if groups[i] is None else groups[i]
            rows = rows[live[rows]]
            # Only keys up to the k-th held (this accumulator's, or the least any other holds) can enter.
            bound = acc.sample.bound(k)
            if self.bounds is not None and src in self.bounds:
                bound = self.bounds[src] if bound is None else min(bound, self.bounds[src])
            if bound is not None:
                rows = rows[ch.key[rows] <= np.uint64(bound)]
            if len(rows) == 0:
                continue
            keys = ch.key[rows]
            order = np.argsort(keys, kind="stable")  # stable: a key's first doc comes first
            keys, rows = keys[order], rows[order]
            starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
            counts = np.diff(np.append(starts, len(keys)))[:k]
            starts = starts[:k]
            firsts = rows[starts]
            texts = ch.texts.prefixes(SAMPLE_TEXT_CHARS, firsts).to_pylist()
            new = Sample(keys[starts], counts.astype(np.int64), dict(zip(keys[starts].tolist(), texts, strict=True)))
            acc.sample = acc.sample.merge(new, k)
            top = acc.sample.bound(k)
            if self.bounds is not None and top is not None:
                self.bounds[src] = min(top, self.bounds.get(src, top))


def _groups(codes: np.ndarray, n_sources: int) -> list[np.ndarray | None]:
    """Row indices of each source; None for "all rows" when there is one source."""
    if n_sources == 1:
        return [None]
    order = np.argsort(codes, kind="stable")
    cuts = np.searchsorted(codes[order], np.arange(n_sources + 1))
    return [order[cuts[i]:cuts[i + 1]] for i in range(n_sources)]
