"""Outliers: documents far from their section's bulk on a feature, counted and shown, per section.

The rule (RULE), per section (a source, or the whole corpus) and feature: on a log scale for counts
and lengths (log(1 + x)) or a logit scale for fractions (log((x + eps) / (1 - x + eps))), a document
is flagged when its robust z-score (distance from the median over 1.4826 * MAD; where over half the
documents share the median, the 10-90% or 1-99% quantile spread stands in for the MAD) is beyond
Z_THRESHOLD *and* it is among the OUTLIER_SHARE most extreme documents on its side (OUTLIER_MIN_DOCS
in a small section). On the raw scale this is two bounds, ``low`` and ``high``: flagged means
x < low or x > high. (Raw z-scores flagged up to a quarter of a corpus: skewed lengths, and
fractions that are mostly 0.)

Medians, spreads and quantiles come from the fine histograms (histograms.py); the counts from one
streaming polars query over the spilled features; the examples (OUTLIER_EXAMPLES per section and
feature: largest |z| first, then the earlier document) from the candidates kept while streaming
(extremes.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from .aggregate import Acc, SourceAcc
from .constants import (
    FEATURES,
    INT_FEATURES,
    LOG_FEATURES,
    LOGIT_EPS,
    OUTLIER_EXAMPLES,
    OUTLIER_MIN_DOCS,
    OUTLIER_SHARE,
    Z_THRESHOLD,
)
from .extremes import Entry
from .histograms import Cdf, bins, num, quantile

RULE = (f"|robust z| > {Z_THRESHOLD:g} on log(1 + x) for counts and lengths, logit(x) for fractions (median, "
        f"1.4826 x MAD, per section), and among the {100 * OUTLIER_SHARE:g}% (at least {OUTLIER_MIN_DOCS}) most "
        f"extreme documents on its side: flagged when x < low or x > high")
_NORMAL_SPREADS = ((0.1, 2.5631), (0.01, 4.6527))  # quantile q: (Q(1-q) - Q(q)) / c estimates sigma


def to_scale(f: str) -> tuple[Callable[[float], float], Callable[[float], float]]:
    """(t, inverse of t): the feature's outlier scale."""
    if f in LOG_FEATURES:
        return math.log1p, math.expm1
    e = LOGIT_EPS

    def logit(x: float) -> float:
        return math.log((x + e) / (1 - x + e))

    def inverse(y: float) -> float:
        if y > 700:
            return 1.0 + e
        w = math.exp(y)
        return ((1 + e) * w - e) / (1 + w)

    return logit, inverse


@dataclass(frozen=True)
class Bounds:
    low: float
    high: float
    centre: float  # median on the scale
    scale: float  # robust sigma on the scale (0: none; then only the quantile bounds apply)

    def z(self, f: str, x: float) -> float | None:
        return (to_scale(f)[0](x) - self.centre) / self.scale if self.scale > 0 else None


def bounds(acc: SourceAcc, f: str) -> Bounds | None:
    """The section's outlier bounds for feature f (None: no values)."""
    if acc.n[f] == 0:
        return None
    b, c, vmin, vmax = bins(f), acc.hist[f], acc.mins[f], acc.maxs[f]
    t, inv = to_scale(f)

    def q(p: float) -> float:
        return quantile(b, c, p, vmin, vmax)

    med = q(0.5)
    m = t(med)
    sigma = _mad(b, c, vmin, vmax, f, m) * 1.4826
    for p, k in _NORMAL_SPREADS:
        if sigma > 1e-12:
            break
        sigma = (t(q(1 - p)) - t(q(p))) / k
    sigma = sigma if sigma > 1e-12 else 0.0
    lo_z, hi_z = (inv(m - Z_THRESHOLD * sigma), inv(m + Z_THRESHOLD * sigma)) if sigma else (med, med)
    # At most OUTLIER_SHARE of the documents a side (OUTLIER_MIN_DOCS in a small section): beyond the
    # z bound and beyond that quantile.
    share = max(OUTLIER_SHARE, OUTLIER_MIN_DOCS / acc.n[f])
    lo_q, hi_q = (q(share), q(1 - share)) if share < 0.5 else (med, med)
    top = math.inf if f in LOG_FEATURES else 1.0  # a logit bound can fall a hair outside [0, 1]
    return Bounds(max(0.0, min(lo_z, lo_q)), min(top, max(hi_z, hi_q)), m, sigma)


def _mad(b, c: np.ndarray, vmin: float, vmax: float, f: str, m: float) -> float:  # noqa: ANN001
    """Median absolute deviation from m on the feature's scale (0 when half the mass is at the median)."""
    t, inv = to_scale(f)
    n = float(c.sum())
    cdf = Cdf(b, c, vmin, vmax)
    med = inv(m)
    if cdf(med, True) - cdf(med, False) >= n / 2:
        return 0.0
    lo_d, hi_d = 0.0, max(t(vmax) - m, m - t(vmin))
    while hi_d - lo_d > 1e-9 * max(hi_d, 1.0):  # bisection on the mass within [m - d, m + d]
        mid = (lo_d + hi_d) / 2
        inside = cdf(inv(m + mid), True) - cdf(inv(m - mid), False)
        lo_d, hi_d = (lo_d, mid) if inside >= n / 2 else (mid, hi_d)
    return hi_d


def outliers(files: list[Path], acc: Acc, overall: SourceAcc) -> dict[str, dict[str, dict]]:
    """{section: {feature: {count, low, high, examples}}}; section "" is the whole corpus."""
    names = sorted(acc.sources)
    sections = {"": overall, **{s: acc.sources[s] for s in names}}
    found = {s: {f: bounds(a, f) for f in FEATURES} for s, a in sections.items()}
    counts = _counts(files, names, found)
    out: dict[str, dict[str, dict]] = {}
    for s, a in sections.items():
        out[s] = {}
        for f in FEATURES:
            bd = found[s][f]
            entries = a.extremes.get((f, 0), []) + a.extremes.get((f, 1), [])
            out[s][f] = {"count": int(counts[s][f]), "low": _bound(f, bd, "low"), "high": _bound(f, bd, "high"),
                         "examples": _examples(f, entries, bd)}
    return out


def _bound(f: str, bd: Bounds | None, side: str) -> float | int | None:
    """A bound as profile.json gives it: a count's as the whole number that flags the same documents (x < 97.6
    is x < 98, x > 51.3 is x > 51), so no one reads of a document with 51.3 lines."""
    if bd is None:
        return None
    x = getattr(bd, side)
    if f in INT_FEATURES and math.isfinite(x):
        return math.ceil(x) if side == "low" else math.floor(x)
    return num(x)


def _examples(f: str, entries: list[Entry], bd: Bounds | None) -> list[dict]:
    """The OUTLIER_EXAMPLES flagged candidates furthest from the median (both sides)."""
    if bd is None:
        return []
    t = to_scale(f)[0]
    seen, cand = set(), []
    for e in entries:
        if e.order in seen or not (e.x < bd.low or e.x > bd.high):
            continue
        seen.add(e.order)
        cand.append((-abs(t(e.x) - bd.centre), e.order, e))
    return [{"id": e.id, "source": e.source, "value": num(e.x), "robust_z": num(bd.z(f, e.x)), "snippet": e.snippet}
            for _, _, e in sorted(cand)[:OUTLIER_EXAMPLES]]


def _counts(files: list[Path], names: list[str], found: dict[str, dict[str, Bounds | None]]) -> dict[str, dict]:
    """Flagged documents per section and feature, in one streaming scan of the spill."""
    counts = {s: dict.fromkeys(FEATURES, 0) for s in found}
    if not files:
        return counts

    def flagged(f: str, bd: Bounds | None, lo: pl.Expr | None = None, hi: pl.Expr | None = None) -> pl.Expr:
        if bd is None and lo is None:
            return pl.lit(0, pl.UInt32)
        x = pl.col(f)
        low = lo if lo is not None else pl.lit(bd.low)  # type: ignore[union-attr]
        high = hi if hi is not None else pl.lit(bd.high)  # type: ignore[union-attr]
        return ((x < low) | (x > high)).fill_null(False).sum()

    lf = pl.scan_parquet(files).select("source", *FEATURES)
    overall = [flagged(f, found[""][f]).alias(f"all:{f}") for f in FEATURES]
    if len(names) == 1:
        row = lf.select(overall).collect(engine="streaming").row(0)
        counts[""] = dict(zip(FEATURES, row, strict=True))
        counts[names[0]] = dict(counts[""])
        return counts
    nan = float("nan")
    params = pl.LazyFrame({"source": names, **{
        f"{side}:{f}": [getattr(found[s][f], side) if found[s][f] else nan for s in names]
        for f in FEATURES for side in ("low", "high")}})
    per_src = [flagged(f, None, pl.col(f"low:{f}"), pl.col(f"high:{f}")).alias(f"src:{f}") for f in FEATURES]
    got = lf.join(params, on="source").group_by("source").agg(per_src + overall).collect(engine="streaming")
    for r in got.iter_rows(named=True):
        for f in FEATURES:
            counts[r["source"]][f] = r[f"src:{f}"]
            counts[""][f] += r[f"all:{f}"]
    return counts
