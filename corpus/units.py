"""Sizes, token estimates and counts as every command and the report show them: one definition each.

A run meets three kinds of bytes, and each figure says which it is:

* input bytes: the input files as stored (a .gz/.zst file counts compressed);
* text bytes: the UTF-8 bytes of the documents' texts;
* Parquet bytes: the shards on disk (zstd-compressed).

MB is 10^6 bytes.
"""

from __future__ import annotations

from collections.abc import Callable

INPUT = "input MB (files as stored)"
TEXT = "text MB (UTF-8)"
PARQUET = "MB of Parquet on disk"


def est_tokens(text_bytes: int | None) -> int:
    """Estimated tokens of a text of ``text_bytes`` UTF-8 bytes: bytes / 4, rounded up once.

    Applied to the total of whatever is counted (a corpus, a source, a stage's output), never summed
    from per-document estimates, so every figure of the same text agrees."""
    return -(-(text_bytes or 0) // 4)


def mb(nbytes: int | float | None) -> str:
    """Bytes as MB (10^6) with two decimals: 1,234.57."""
    return f"{(nbytes or 0) / 1e6:,.2f}"


def plural(n: int, noun: str) -> str:
    """A count with its noun: "1 shard", "2,000 shards"."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def flagged_when(low: float, high: float, fmt: Callable[[float], str]) -> str:
    """A profile feature's outlier bounds as the rule a reader applies. Every profile feature is a count
    or a share, so a low bound at or below 0 flags nothing and is left out."""
    return f"> {fmt(high)}" if low <= 0 else f"< {fmt(low)} or > {fmt(high)}"
