"""Rule filters. Each keeps its measurement as a column (so a threshold can be re-run cheaply) and
gives a reason for every dropped row."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from corpus.operators import FilterOperator, Verdict
from corpus.stages.signals import WORD_RE


@dataclass
class LengthFilter(FilterOperator):
    """Keep documents whose length in characters and words lies within bounds."""

    name = "length_filter"
    needs = {"text": pl.String}
    adds = {"n_chars": pl.Int64, "n_words": pl.Int64}

    min_chars: int = 0
    max_chars: int | None = None
    min_words: int = 0
    max_words: int | None = None

    def __post_init__(self) -> None:
        for key in ("min_chars", "min_words", "max_chars", "max_words"):
            value = getattr(self, key)
            if value is not None and value < 0:  # a length is never negative: the bound would mean nothing
                raise ValueError(f"{key} must be >= 0, got {value}")
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise ValueError(f"max_chars ({self.max_chars}) is below min_chars ({self.min_chars})")
        if self.max_words is not None and self.max_words < self.min_words:
            raise ValueError(f"max_words ({self.max_words}) is below min_words ({self.min_words})")

    def filter(self, df: pl.DataFrame) -> Verdict:
        chars = df["text"].str.len_chars().cast(pl.Int64).alias("n_chars")
        words = df["text"].str.count_matches(WORD_RE).cast(pl.Int64).alias("n_words")
        max_c = self.max_chars if self.max_chars is not None else 2**62
        max_w = self.max_words if self.max_words is not None else 2**62
        reason = (
            pl.select(
                pl.when(chars < self.min_chars).then(pl.lit("too_few_chars"))
                .when(chars > max_c).then(pl.lit("too_many_chars"))
                .when(words < self.min_words).then(pl.lit("too_few_words"))
                .when(words > max_w).then(pl.lit("too_many_words"))
                .otherwise(pl.lit(None, pl.String))
                .alias("reason")
            ).to_series()
        )
        return Verdict(keep=reason.is_null(), reason=reason, scores={"n_chars": chars, "n_words": words})
