"""Outlier example candidates, kept while streaming: per source and feature, the OUTLIER_EXAMPLES
documents with the largest values and the OUTLIER_EXAMPLES with the smallest (ties: the earlier
document), with their ids and snippets.

A section's outlier examples are its flagged documents furthest from its median, which are among
its largest or smallest values (the outlier scale is monotone), and so among the largest or
smallest of their own source. The examples (outliers.py) are picked from these candidates: no
pass over the texts at the end.
"""

from __future__ import annotations

from typing import NamedTuple

import polars as pl

from .constants import FEATURES, OUTLIER_EXAMPLES, SNIPPET_CHARS

K = OUTLIER_EXAMPLES


class Entry(NamedTuple):
    key: float  # the side's order: -x on the high side, x on the low side (smaller first)
    order: int  # the document's place in the corpus (ties: earlier first)
    x: float
    id: str | None
    source: str
    snippet: str | None


Extremes = dict[tuple[str, int], list[Entry]]  # (feature, side: 0 high, 1 low) -> up to K entries


def merge(into: Extremes, more: Extremes) -> None:
    for key, entries in more.items():
        into[key] = sorted(into.get(key, []) + entries)[:K]


def chunk_extremes(docs: pl.DataFrame, text: pl.Series) -> dict[str, Extremes]:
    """Per source, one chunk's candidates (docs: features.Chunk.docs, text: its texts)."""
    frame = docs.select("order", "id", "source", *FEATURES).with_row_index("row")
    picked: dict[tuple[str, int], pl.DataFrame] = {}
    for f in FEATURES:
        have = frame.filter(pl.col(f).is_not_null())
        if have.height == 0:
            continue
        for side, sign in ((0, -1.0), (1, 1.0)):
            key = (pl.col(f) * sign).alias("key")
            picked[(f, side)] = (have.with_columns(key).select("key", "order", f, "row", "source")
                                 .group_by("source").agg(pl.all().top_k_by(["key", "order"], K, reverse=True))
                                 .explode(pl.exclude("source")))
    if not picked:
        return {}
    rows = pl.concat([p.select("row") for p in picked.values()]).unique()["row"]
    snip = dict(zip(rows.to_list(), text.gather(rows).str.slice(0, SNIPPET_CHARS).to_list(), strict=True))
    ids = dict(zip(rows.to_list(), docs["id"].gather(rows).to_list(), strict=True))
    out: dict[str, Extremes] = {}
    for (f, side), p in picked.items():
        for key, order, x, row, src in p.select("key", "order", f, "row", "source").rows():
            out.setdefault(src, {}).setdefault((f, side), []).append(Entry(key, order, x, ids[row], src, snip[row]))
    for per in out.values():
        for k in per:
            per[k].sort()
    return out
