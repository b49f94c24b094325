"""Cleaning operators: text in, text out, same rows."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from corpus.operators import MapOperator
from corpus.stages.normalise import clean_document


@dataclass
class NormalizeText(MapOperator):
    """Unicode NFC, unify line endings, trim trailing spaces per line and collapse runs of blank lines
    (``corpus.stages.normalise.clean_document``: it changes only what exact dedup ignores)."""

    name = "normalize_text"
    needs = {"text": pl.String}
    modifies = ("text",)

    nfc: bool = True
    max_blank_lines: int = 1

    def __post_init__(self) -> None:
        if self.max_blank_lines < 0:
            raise ValueError("max_blank_lines must be >= 0")

    def map(self, df: pl.DataFrame) -> pl.DataFrame:
        return df.with_columns(clean_document(df["text"], self.nfc, self.max_blank_lines).alias("text"))
