"""Exact deduplication of normalised text across all shards and sources.

The first copy in corpus order (inputs in config order, files sorted, rows in file order) is kept,
so the choice is deterministic; later copies are dropped with reason `exact_duplicate` and the id of
the kept copy in `duplicate_of`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from corpus.operators import FitContext, GlobalOperator, Verdict
from corpus.writers import write_parquet


def normalise(text: pl.Expr, lowercase: bool, collapse_whitespace: bool) -> pl.Expr:
    if lowercase:
        text = text.str.to_lowercase()
    if collapse_whitespace:
        text = text.str.replace_all(r"\s+", " ").str.strip_chars()
    return text


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _hash_shard(args: tuple[Path, bool, bool]) -> pl.DataFrame:
    path, lowercase, collapse = args
    table = pq.read_table(path, columns=["id", "text"])
    df = pl.from_arrow(table).select("id", normalise(pl.col("text"), lowercase, collapse).alias("norm"))
    # A stable hash (polars' own hash may change between versions, and fit state outlives a process).
    digests = [_digest(t) for t in df["norm"]]
    return df.select("id").with_columns(pl.Series("digest", digests, pl.String))


@dataclass
class ExactDedup(GlobalOperator):
    name = "exact_dedup"
    needs = ("id", "text")
    adds = ("duplicate_of",)
    apply_kind = "filter"

    lowercase: bool = False
    collapse_whitespace: bool = True

    def fit(self, ctx: FitContext) -> None:
        frames = ctx.pool_map(_hash_shard, [(p, self.lowercase, self.collapse_whitespace) for p in ctx.shards])
        if frames:
            all_docs = pl.concat(frames).with_row_index("order")
            first = all_docs.group_by("digest").agg(pl.col("id").sort_by("order").first().alias("kept"))
            dups = all_docs.join(first, on="digest").filter(pl.col("id") != pl.col("kept")).select("id", "kept")
        else:
            dups = pl.DataFrame(schema={"id": pl.String, "kept": pl.String})
        write_parquet(dups.sort("id"), ctx.workdir / "duplicates.parquet")

    def load(self, workdir: Path) -> None:
        dups = pl.read_parquet(workdir / "duplicates.parquet")
        self._map = dict(zip(dups["id"].to_list(), dups["kept"].to_list(), strict=True))

    def apply(self, df: pl.DataFrame) -> Verdict:
        kept_id = df["id"].replace_strict(self._map, default=None, return_dtype=pl.String).alias("duplicate_of")
        return Verdict(keep=kept_id.is_null(), reason="exact_duplicate", scores={"duplicate_of": kept_id})
