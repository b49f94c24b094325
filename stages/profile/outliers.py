"""Outliers: documents with |robust z| > 3.5 on a feature, counted and shown, per section.

Each doc is judged against its section's median and robust scale (from the fine histograms, see
histograms.py): the whole corpus for the overall section, its source for the per-source one. Both
need the final figures, so the counts come from one streaming polars query over the spilled
features. The examples (OUTLIER_EXAMPLES per section and feature: largest |z| first, ties by id
(null first), value, source) are the section's furthest documents from its median, so they are
picked from the candidates kept while streaming (extremes.py): no text is read again.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl

from .aggregate import Acc, SourceAcc
from .constants import FEATURES, OUTLIER_EXAMPLES, Z_THRESHOLD
from .extremes import Entry
from .histograms import num, robust_params


def outliers(files: list[Path], acc: Acc, overall: SourceAcc) -> dict[str, dict[str, dict]]:
    """{section: {feature: {count, examples}}}; section "" is the whole corpus."""
    names = sorted(acc.sources)
    med_all, scale_all = _params([robust_params(overall)])
    # One source: its figures are the overall ones (the fine histograms' search is not free).
    med_src, scale_src = (med_all, scale_all) if len(names) == 1 else _params(
        [robust_params(acc.sources[s]) for s in names])
    counts = _counts(files, names, med_src, scale_src, med_all, scale_all)
    out: dict[str, dict[str, dict]] = {}
    for i, section in enumerate([*names, ""]):
        src = acc.sources[section] if section else overall
        med, sc = (med_src[i], scale_src[i]) if section else (med_all[0], scale_all[0])
        out[section] = {f: {"count": int(counts[i, j]), "examples": _examples(
            src.extremes.get((f, 0), []) + src.extremes.get((f, 1), []), med[j], sc[j])}
            for j, f in enumerate(FEATURES)}
    return {"": out.pop(""), **out}


def _examples(entries: list[Entry], med: float, sc: float) -> list[dict]:
    """The best OUTLIER_EXAMPLES outliers among a section's candidates (both sides)."""
    if math.isnan(sc):
        return []
    seen, cand = set(), []
    for _, has_id, id_key, source, x, i, snip, tag in entries:
        z = (x - med) / sc
        if tag in seen or not abs(z) > Z_THRESHOLD:
            continue
        seen.add(tag)
        cand.append((-abs(z), has_id, id_key, x, source, z, i, snip))
    best = sorted(cand, key=lambda t: t[:5])[:OUTLIER_EXAMPLES]
    return [{"id": i, "source": s, "value": num(x), "robust_z": num(z), "snippet": snip}
            for _, _, _, x, s, z, i, snip in best]


def _counts(files: list[Path], names: list[str], med_src: np.ndarray, scale_src: np.ndarray,
            med_all: np.ndarray, scale_all: np.ndarray) -> np.ndarray:
    """[section (sources, then overall), feature] counts of |z| > Z_THRESHOLD, in one streaming
    scan of the spill (float64, z computed as the examples' is)."""
    counts = np.zeros((len(names) + 1, len(FEATURES)), np.int64)
    if not files:
        return counts

    def hits(f: str, med: pl.Expr | float, sc: pl.Expr | float) -> pl.Expr:
        x = pl.col(f)
        # NaN: a feature that does not apply, or a section without outliers (polars orders NaN last).
        ok = x.is_not_nan() & (sc.is_not_nan() if isinstance(sc, pl.Expr) else not math.isnan(sc))
        return (ok & (((x - med) / sc).abs() > Z_THRESHOLD)).sum()

    lf = pl.scan_parquet(files).select("source", *FEATURES)
    overall = [hits(f, float(med_all[0, j]), float(scale_all[0, j])).alias(f"all:{f}")
               for j, f in enumerate(FEATURES)]
    if len(names) == 1:
        row = lf.select(overall).collect(engine="streaming")
        counts[:] = row.row(0)
        return counts
    params = pl.LazyFrame({"source": names, **{f"med:{f}": med_src[:, j] for j, f in enumerate(FEATURES)},
                           **{f"sc:{f}": scale_src[:, j] for j, f in enumerate(FEATURES)}})
    per_src = [hits(f, pl.col(f"med:{f}"), pl.col(f"sc:{f}")).alias(f"src:{f}") for f in FEATURES]
    got = (lf.join(params, on="source").group_by("source").agg(per_src + overall)
           .collect(engine="streaming"))
    row_of = {s: i for i, s in enumerate(names)}
    for r in got.iter_rows(named=True):
        i = row_of[r["source"]]
        for j, f in enumerate(FEATURES):
            counts[i, j] = r[f"src:{f}"]
            counts[-1, j] += r[f"all:{f}"]
    return counts


def _params(per_section: list[dict[str, tuple[float, float | None]]]) -> tuple[np.ndarray, np.ndarray]:
    """(medians, scales) as [section, feature] arrays; a missing scale is NaN (no outliers)."""
    med = np.array([[p[f][0] for f in FEATURES] for p in per_section], np.float64).reshape(-1, len(FEATURES))
    sc = np.array([[np.nan if p[f][1] is None else p[f][1] for f in FEATURES] for p in per_section],
                  np.float64).reshape(-1, len(FEATURES))
    return med, sc
