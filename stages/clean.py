"""Cleaning operators: text in, text out, same rows."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from corpus.operators import MapOperator


@dataclass
class NormalizeText(MapOperator):
    """Unicode NFC, unify line endings, trim trailing spaces per line and collapse runs of blank lines."""

    name = "normalize_text"
    needs = {"text": pl.String}
    modifies = ("text",)

    nfc: bool = True
    max_blank_lines: int = 1

    def __post_init__(self) -> None:
        if self.max_blank_lines < 0:
            raise ValueError("max_blank_lines must be >= 0")

    def map(self, df: pl.DataFrame) -> pl.DataFrame:
        t = pl.col("text")
        if self.nfc:
            t = t.str.normalize("NFC")
        t = t.str.replace_all(r"\r\n?", "\n").str.replace_all(r"[ \t]+\n", "\n")
        t = t.str.replace_all(r"\n{" + str(self.max_blank_lines + 2) + r",}", "\n" * (self.max_blank_lines + 1))
        return df.with_columns(t.str.strip_chars().alias("text"))
