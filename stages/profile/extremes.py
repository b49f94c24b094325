"""Outlier example candidates, kept while streaming: per source and feature, the documents with the
OUTLIER_EXAMPLES largest and the OUTLIER_EXAMPLES smallest values (ties: null id first, then the
smaller id, then the earlier document), with their ids and snippets.

A section's outlier examples are its documents furthest from its median (largest |robust z|), so
they are among the section's largest or smallest values, and each among the largest or smallest of
its own source under the same order. The final examples (outliers.py) are picked from these
candidates: no pass over the texts or the spill at the end, and no snippet per document spilled.
"""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
from numba import njit

from corpus.stages.dedup_text import utf8_buffers

from .constants import FEATURES, OUTLIER_EXAMPLES, SNIPPET_CHARS
from .nbutil import borrowed, bswap, load8
from .textscan import Texts

K = OUTLIER_EXAMPLES
# One candidate: (order key: x for the low side, -x for the high side; has id; id or ""; source;
# x; id; snippet; tag). Sorting by the first four is the side's order; the tag tells one document
# apart from another (a document may be a candidate on both sides), and is never compared.
Entry = tuple[float, bool, str, str, float, str | None, str | None, tuple[int, int]]
Extremes = dict[tuple[str, int], list[Entry]]  # (feature, side: 0 high, 1 low) -> up to K entries


_CHUNKS = itertools.count()  # tags: (chunk, row), unique within the process


def merge(into: Extremes, more: Extremes) -> None:
    for key, entries in more.items():
        into[key] = sorted(into.get(key, []) + entries, key=lambda e: e[:4])[:K]


@njit(inline="always")
def _id_less(a, b, id_data, id_offs, id_null):  # noqa: ANN001, ANN202
    """Document a's id sorts before b's: null first, then by UTF-8 bytes (code point order), then a
    before b when equal (the earlier document)."""
    if id_null[a] != id_null[b]:
        return id_null[a]
    if not id_null[a]:
        i, ie = id_offs[a], id_offs[a + 1]
        j, je = id_offs[b], id_offs[b + 1]
        # 8 bytes at a time while both have them (ids often share a long "source:file:" prefix).
        while i + 8 <= ie and j + 8 <= je:
            x = bswap(load8(id_data, i))
            y = bswap(load8(id_data, j))
            if x != y:
                return x < y
            i += 8
            j += 8
        while i < ie and j < je:
            if id_data[i] != id_data[j]:
                return id_data[i] < id_data[j]
            i += 1
            j += 1
        if (i < ie) != (j < je):
            return i == ie
    return a < b


@njit(nogil=True, cache=True)
def _extremes(values, rows, id_data, id_offs, id_null, k):  # noqa: ANN001, ANN202
    """Per feature (row of values) and side (0: largest first, 1: smallest first), the rows of the
    k most extreme values among `rows` (NaN skipped), best first; -1 pads."""
    values, rows = borrowed(values), borrowed(rows)
    id_data, id_offs, id_null = borrowed(id_data), borrowed(id_offs), borrowed(id_null)
    n_f = values.shape[0]
    out = np.full((n_f, 2, k), -1, np.int64)
    for f in range(n_f):
        for side in range(2):
            sign = 1.0 if side == 0 else -1.0
            held = 0
            for r in rows:
                v = sign * values[f, r]
                if v != v:
                    continue
                if held == k:  # the worst held one must lose to r
                    w = out[f, side, k - 1]
                    wv = sign * values[f, w]
                    if v < wv or (v == wv and not _id_less(r, w, id_data, id_offs, id_null)):
                        continue
                    j = k - 1
                else:
                    j = held
                    held += 1
                while j > 0:  # insertion: move worse ones down
                    p = out[f, side, j - 1]
                    pv = sign * values[f, p]
                    if pv > v or (pv == v and _id_less(p, r, id_data, id_offs, id_null)):
                        break
                    out[f, side, j] = p
                    j -= 1
                out[f, side, j] = r
    return out


def chunk_extremes(stacked: np.ndarray, rows: np.ndarray, ids: pa.Array, texts: Texts, source: str) -> Extremes:
    """One source's candidates in one chunk (stacked: features by FEATURES order, rows: its documents)."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    offs, data = utf8_buffers(ids)
    null = ids.is_null().to_numpy(zero_copy_only=False) if ids.null_count else np.zeros(len(ids), bool)
    picked = _extremes(stacked, np.ascontiguousarray(rows, np.int64), data, offs, null, K)
    used = np.unique(picked[picked >= 0])
    if len(used) == 0:
        return {}
    snippets = texts.prefixes(SNIPPET_CHARS, used).to_pylist()
    snip = dict(zip(used.tolist(), snippets, strict=True))
    id_of = {r: None if null[r] else bytes(data[offs[r]:offs[r + 1]]).decode() for r in used.tolist()}
    chunk = next(_CHUNKS)
    out: Extremes = {}
    for fi, f in enumerate(FEATURES):
        for side in (0, 1):
            entries = []
            for r in picked[fi, side].tolist():
                if r < 0:
                    break
                x = float(stacked[fi, r])
                i = id_of[r]
                entries.append((-x if side == 0 else x, i is not None, i or "", source, x, i, snip[r], (chunk, r)))
            if entries:
                out[(f, side)] = entries
    return out
