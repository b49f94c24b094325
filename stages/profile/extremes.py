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

import numpy as np
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


def _side(key: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Rows of the K smallest keys (NaN never), ties to the smaller order, best first."""
    ok = np.flatnonzero(~np.isnan(key))
    if len(ok) > K:
        kth = np.partition(key[ok], K - 1)[K - 1]
        ok = ok[key[ok] <= kth]  # the K smallest and every tie of the K-th
    return ok[np.lexsort((order[ok], key[ok]))][:K]


def chunk_extremes(docs: pl.DataFrame, text: pl.Series) -> dict[str, Extremes]:
    """Per source, one chunk's candidates (docs: features.Chunk.docs, text: its texts)."""
    order = docs["order"].to_numpy()
    source = docs["source"]
    groups = ({source[0]: np.arange(docs.height)} if source.n_unique() == 1 else
              {s: np.flatnonzero((source == s).to_numpy()) for s in source.unique(maintain_order=True)})
    picked: dict[str, dict[tuple[str, int], np.ndarray]] = {}
    for src, rows in groups.items():
        for f in FEATURES:
            x = docs[f].to_numpy()[rows]  # NaN where null
            for side, sign in ((0, -1.0), (1, 1.0)):
                got = rows[_side(sign * x, order[rows])]
                if len(got):
                    picked.setdefault(src, {})[(f, side)] = got
    if not picked:
        return {}
    used = np.unique(np.concatenate([r for per in picked.values() for r in per.values()]))
    snip = dict(zip(used.tolist(), text.gather(used).str.slice(0, SNIPPET_CHARS).to_list(), strict=True))
    ids = dict(zip(used.tolist(), docs["id"].gather(used).to_list(), strict=True))
    out: dict[str, Extremes] = {}
    for src, per in picked.items():
        for (f, side), rows in per.items():
            x = docs[f].to_numpy()
            out.setdefault(src, {})[(f, side)] = [
                Entry(-x[r] if side == 0 else x[r], int(order[r]), float(x[r]), ids[r], src, snip[r])
                for r in rows.tolist()]
    return out
