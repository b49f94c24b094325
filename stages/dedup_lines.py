"""Line / paragraph deduplication across documents (as datatrove's sentence dedup and Dolma's
paragraph dedup): a span (line, or paragraph = text between blank lines) whose normalised text occurs
in at least ``min_docs`` documents is removed from every document but the first (``keep: first``,
the default, as datatrove and Dolma do) or from all of them (``keep: none``).

The operator contract lets a map change text and a filter drop rows, not one step do both, so this is
two registered operators, used together::

    - op: line_dedup          # global map: rewrites text, adds dup_spans_removed, dup_chars_removed
      unit: line
      min_docs: 2
      min_chars: 10
    - op: line_dedup_filter   # filter: drops documents left too short, reason too_little_left
      min_words: 50

With ``scope: source`` a span counts as repeated when ``min_docs`` documents of one source contain it
(the ``boilerplate_lines`` operator is that, with ``keep: none``).

``line_dedup_filter`` only judges documents that lost something (``dup_chars_removed > 0``): a short
document nobody copied is not its business. Its wiring check fails if ``line_dedup`` is not before it.

Fit, in three pool passes: (1) per shard, split into spans, normalise, digest (blake2b-128), write
(digest, document, position) records partitioned by digest prefix; (2) per partition, sort, and for
each digest seen in >= min_docs documents list the occurrences to remove; (3) per shard, gather its
removals into ``results/<shard>.parquet`` (row_id, pos). Apply splits the same way and drops those
spans, matched by row_id (never by the user's id, which may repeat).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from corpus import frames
from corpus.operators import FilterOperator, GlobalMapOperator, StageContext, Verdict
from corpus.schema import ID, ROW_ID, SOURCE
from corpus.stages.dedup_index import (
    Layout,
    ResultLookup,
    check_partitions,
    n_partitions,
    partition_of,
    read_partition,
    save_identity,
    write_all_results,
    write_json,
    write_partitioned,
)
from corpus.stages.dedup_text import digests128
from corpus.stages.normalise import Level, Normalisation

SEPARATORS = {"line": "\n", "paragraph": "\n\n"}


def split_spans(text: pl.Series, unit: str) -> pl.DataFrame:
    """One row per span: (row, pos, span). Splitting on the separator and joining back is lossless."""
    return (pl.DataFrame({"span": text.fill_null("").str.split(SEPARATORS[unit])})
            .with_row_index("row")
            .with_columns(pl.int_ranges(0, pl.col("span").list.len(), dtype=pl.Int32).alias("pos"))
            .explode("span", "pos"))


@dataclass(frozen=True)
class DigestJob:
    """Pass 1 over one shard."""

    shard: int
    path: Path
    start: int  # the global number of its first document
    unit: str
    norm: Normalisation
    min_chars: int
    workdir: Path
    n_parts: int
    by_source: bool = False  # the same span in two sources is two keys: it repeats only within its source


def _digest_shard(job: DigestJob) -> dict:
    """(digest, document, position) of every span long enough, partitioned by digest prefix."""
    recs, ids, rows, g = [], [], [], job.start
    for df in frames.frames(job.path, ["text", ID, ROW_ID] + ([SOURCE] if job.by_source else [])):
        ids.append(df[ID])
        rows.append(df[ROW_ID].to_numpy())
        spans = split_spans(df["text"], job.unit)
        spans = spans.with_columns(job.norm.apply(spans["span"]).alias("norm"))
        spans = spans.filter(pl.col("norm").str.len_chars() >= job.min_chars)
        key = spans["norm"]
        if job.by_source:
            key = df[SOURCE].gather(spans["row"]) + "\x00" + key
        d = digests128(key)
        doc = spans["row"].to_numpy().astype(np.uint64) + np.uint64(g)
        recs.append(np.column_stack([d, doc, spans["pos"].to_numpy().astype(np.uint64)]))
        g += df.height
    save_identity(job.workdir, job.shard, ids, rows)
    rec = np.concatenate(recs) if recs else np.zeros((0, 4), np.uint64)
    part = partition_of(rec[:, 0], job.n_parts)
    write_partitioned(job.workdir / "spans" / f"{job.shard:05d}", rec, part, job.n_parts)
    return {"rows": g - job.start, "spans": len(rec)}


@dataclass(frozen=True)
class RepeatJob:
    """Pass 2 over one digest partition."""

    stems: tuple[Path, ...]  # every shard's partitioned span file
    part: int
    workdir: Path
    min_docs: int
    keep_first: bool
    shard_starts: np.ndarray  # the global number of each shard's first document (+ the total)


def _find_repeats(job: RepeatJob) -> dict:
    """Occurrences to remove in one digest partition, written partitioned by shard."""
    rec = read_partition(job.stems, job.part, 4, np.uint64)
    n_shards = len(job.shard_starts) - 1
    out = np.zeros((0, 2), np.int64)
    repeated_spans = 0
    if len(rec):
        rec = rec[np.lexsort((rec[:, 3], rec[:, 2], rec[:, 1], rec[:, 0]))]
        new = np.ones(len(rec), bool)
        new[1:] = (rec[1:, 0] != rec[:-1, 0]) | (rec[1:, 1] != rec[:-1, 1])
        group = np.cumsum(new) - 1
        new_doc = new.copy()
        new_doc[1:] |= rec[1:, 2] != rec[:-1, 2]
        docs_per_group = np.bincount(group, weights=new_doc).astype(np.int64)
        repeated = docs_per_group[group] >= job.min_docs
        drop = repeated & (~new if job.keep_first else True)
        out = rec[drop][:, 2:4].astype(np.int64)
        repeated_spans = int(new[repeated].sum())
    shard = np.searchsorted(job.shard_starts, out[:, 0], side="right") - 1
    write_partitioned(job.workdir / "drops" / f"{job.part:05d}", out, shard, n_shards)
    return {"removed": len(out), "repeated_spans": repeated_spans}


@dataclass
class LineDedup(GlobalMapOperator):
    """Remove lines (or paragraphs) repeated across documents; pair with ``line_dedup_filter``."""

    name = "line_dedup"
    needs = {"id": pl.String, "text": pl.String, "row_id": pl.Int64}
    adds = {"dup_spans_removed": pl.Int64, "dup_chars_removed": pl.Int64}
    modifies = ("text",)
    counters = ("dup_spans_removed", "dup_chars_removed")
    version = "3"  # 3: normalisation levels (loose adds NFC)

    unit: Literal["line", "paragraph"] = "line"
    min_docs: int = 2  # a span is repeated when this many documents contain it
    min_chars: int = 10  # shorter spans (after normalisation) are never removed
    keep: Literal["first", "none"] = "first"  # keep the first occurrence in corpus order, or none
    scope: Literal["corpus", "source"] = "corpus"  # count documents over the corpus, or within each source
    normalise: Level = "loose"  # spans equal at this level are repeats (stages/normalise.py)
    partitions: int = 0

    def __post_init__(self) -> None:
        if self.unit not in SEPARATORS:
            raise ValueError(f"unit must be line or paragraph, got {self.unit!r}")
        if self.min_docs < 2 or self.min_chars < 1:
            raise ValueError("min_docs must be >= 2 and min_chars >= 1")
        Normalisation(self.normalise)
        if self.scope not in ("corpus", "source"):
            raise ValueError(f"scope must be corpus or source, got {self.scope!r}")
        check_partitions(self.partitions)

    def fit(self, ctx: StageContext) -> None:
        t0 = time.perf_counter()
        work = ctx.artifacts
        layout = Layout.of([], ctx.shards)
        norm = Normalisation(self.normalise)
        # ~20 spans per document is typical of web text; only sizes the partitions
        n_parts = n_partitions(layout.total * 20, 32, ctx.workers, fixed=self.partitions)
        infos = ctx.pool_map(_digest_shard, [DigestJob(i, s.path, s.start, self.unit, norm, self.min_chars, work,
                                                       n_parts, self.scope == "source")
                                             for i, s in enumerate(layout.segments)])
        stems = tuple(work / "spans" / f"{i:05d}" for i in range(len(ctx.shards)))
        found = ctx.pool_map(_find_repeats, [RepeatJob(stems, p, work, self.min_docs, self.keep == "first",
                                                       layout.starts) for p in range(n_parts)])
        drop_stems = [work / "drops" / f"{p:05d}" for p in range(n_parts)]
        write_all_results(ctx.pool_map, work, layout, drop_stems, 2, ("pos",), kept=False)
        for sub in ("spans", "drops"):
            for f in (work / sub).glob("*.npy"):
                f.unlink()
        write_json(work / "params.json", {
            "operator": self.name, "params": self.params(), "docs": layout.total,
            "spans": sum(i["spans"] for i in infos), "repeated_spans": sum(f["repeated_spans"] for f in found),
            "removed_occurrences": sum(f["removed"] for f in found), "partitions": n_parts,
            "seconds": time.perf_counter() - t0,
        })

    def load(self, artifacts: Path) -> None:
        self._lookup = ResultLookup(artifacts, {"pos": pl.Int32()})

    def map(self, df: pl.DataFrame) -> pl.DataFrame:
        drops = self._lookup.rows_for(df)
        if drops.height == 0:
            return df.with_columns(pl.lit(0, pl.Int64).alias("dup_spans_removed"),
                                   pl.lit(0, pl.Int64).alias("dup_chars_removed"))
        spans = split_spans(df["text"], self.unit).with_columns(pl.col("row").cast(pl.Int64))
        rows = df.select(pl.col("row_id"), row=pl.int_range(df.height, dtype=pl.Int64))
        spans = spans.join(rows, on="row", how="left", maintain_order="left")
        spans = spans.join(drops.select("row_id", "pos").unique().with_columns(gone=pl.lit(True)),
                           on=["row_id", "pos"], how="left", maintain_order="left").with_columns(
            pl.col("gone").fill_null(False))
        per_row = (spans.group_by("row", maintain_order=True)
                   .agg(pl.col("span").filter(~pl.col("gone")).str.join(SEPARATORS[self.unit]).alias("text"),
                        pl.col("gone").sum().cast(pl.Int64).alias("n"))
                   .sort("row"))
        changed = per_row["n"] > 0
        text = df["text"].zip_with(~changed, per_row["text"])
        removed = (df["text"].str.len_chars() - text.str.len_chars()).cast(pl.Int64)
        return df.with_columns(text.alias("text"), per_row["n"].alias("dup_spans_removed"),
                               removed.alias("dup_chars_removed"))


@dataclass
class LineDedupFilter(FilterOperator):
    """Drop documents that line_dedup left too short (only those it changed)."""

    name = "line_dedup_filter"
    needs = {"text": pl.String, "dup_chars_removed": pl.Int64}
    adds = {"words_left": pl.Int64}

    min_words: int = 50  # as datatrove's sentence dedup
    min_fraction: float = 0.0  # of the original characters that must remain

    def filter(self, df: pl.DataFrame) -> Verdict:
        words = df["text"].str.count_matches(r"\S+").cast(pl.Int64).alias("words_left")
        chars = df["text"].str.len_chars().cast(pl.Int64)
        removed = df["dup_chars_removed"].cast(pl.Int64)
        original = chars + removed
        frac = pl.select(pl.when(original > 0).then(chars / original).otherwise(1.0)).to_series()
        short = (removed > 0) & ((words < self.min_words) | (frac < self.min_fraction) | (chars == 0))
        return Verdict(keep=~short, reason="too_little_left", scores={"words_left": words})
