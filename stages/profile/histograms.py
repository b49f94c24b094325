"""Fine fixed-bin histograms of the per-document features, and what is read off them.

Each feature gets 2000+ fixed bins: log-spaced for lengths (exact bins for small integers), linear
on [0, 1] for fractions with exact bins for 0 and 1 (common: no digits, every line terminated).
Fixed bins add up across chunks, workers and sources, so a section's distribution is exact up to
the bin: quantiles are within ~1.2% for lengths and 0.0005 for fractions, and the median and MAD for
outliers and the <= 40-bin display histograms come from the same counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Protocol

import numpy as np
from numba import njit

from .constants import DISPLAY_BINS, FEATURES, FRAC_DISPLAY_BINS, INT_FEATURES, LOG_FEATURES, QUANTILES


class Summarised(Protocol):
    """What the summaries need of an accumulator (aggregate.SourceAcc)."""

    n: dict[str, int]
    sums: dict[str, float]
    mins: dict[str, float]
    maxs: dict[str, float]
    hist: dict[str, np.ndarray]


@dataclass(frozen=True)
class Bins:
    """Fine bins of one feature: [lo, hi) each, or a single value where ``point``."""

    lo: np.ndarray
    hi: np.ndarray
    point: np.ndarray
    log: bool
    integer: bool
    # Edges used to place a value: bin = offset + searchsorted(edges, x, "right") - 1.
    edges: np.ndarray
    offset: int

    def index(self, x: np.ndarray) -> np.ndarray:
        """Each value's bin (the definition add_values compiles, and the tests' reference)."""
        if self.log:
            return np.where(x < 1, 0, 1 + np.searchsorted(self.edges, x, side="right") - 1)
        n = len(self.lo)
        lin = 1 + np.minimum(np.floor(x * (n - 2)), n - 3).astype(np.int64)
        return np.where(x <= 0, 0, np.where(x >= 1, n - 1, lin))


@cache
def bins(feature: str) -> Bins:
    per_decade, decades = 200, 10
    if feature in LOG_FEATURES:
        integer = feature in INT_FEATURES
        e = 10 ** (np.arange(decades * per_decade + 1) / per_decade)
        e = np.unique(np.floor(e)) if integer else e
        lo = np.concatenate(([0.0], e))
        hi = np.concatenate(([1.0], e[1:], [np.inf]))
        point = np.concatenate(([integer], (hi[1:] - lo[1:] == 1) & integer))
        return Bins(lo, hi, point, True, integer, e, 1)
    # Fractions: an exact bin for 0 and for 1 (common: no digits, all lines terminated), 2000 between.
    n = 2000
    inner = np.arange(n + 1) / n
    lo = np.concatenate(([0.0], inner[:-1], [1.0]))
    hi = np.concatenate(([0.0], inner[1:], [1.0]))
    point = np.zeros(n + 2, bool)
    point[[0, -1]] = True
    return Bins(lo, hi, point, False, False, inner, 1)


@cache
def kernel_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """FEATURES' bins for add_values: (kind per feature: 0 fraction, 1 log, 2 count; their edges back
    to back; each feature's offset into them; bins per feature)."""
    kinds = np.array([0 if not bins(f).log else 2 if bins(f).integer else 1 for f in FEATURES], np.int64)
    edges = [bins(f).edges for f in FEATURES]
    offs = np.cumsum([0, *map(len, edges)]).astype(np.int64)
    return kinds, np.concatenate(edges), offs, np.array([len(bins(f).lo) for f in FEATURES], np.int64)


@njit(nogil=True, cache=True)
def add_values(values, rows, kinds, edges, offs, n_bins, lut, n, sums, mins, maxs, hist):  # noqa: ANN001, ANN201
    """Add the rows of values (feature x doc, NaN where a feature does not apply) to each feature's
    count, sum, min, max and fine histogram, in one compiled pass: the same bins as Bins.index."""
    for f in range(values.shape[0]):
        x_f = values[f]
        e = edges[offs[f]:offs[f + 1]]
        nb = n_bins[f]
        for j in range(len(rows)):
            x = x_f[rows[j]]
            if np.isnan(x):
                continue
            n[f] += 1
            sums[f] += x
            mins[f] = min(mins[f], x)
            maxs[f] = max(maxs[f], x)
            if kinds[f] == 0:
                if x <= 0:
                    b = 0
                elif x >= 1:
                    b = nb - 1
                else:
                    b = 1 + min(np.int64(np.floor(x * (nb - 2))), nb - 3)
            elif x < 1:
                b = 0
            elif kinds[f] == 2 and x < len(lut):
                b = lut[np.int64(x)]
            else:
                b = np.searchsorted(e, x, side="right")
            hist[f, b] += 1


@cache
def int_lut() -> np.ndarray:
    """The bin of every count below 2**16 (the integer features share their bins)."""
    b = bins("n_chars")
    x = np.arange(1 << 16, dtype=np.float64)
    return np.where(x < 1, 0, np.searchsorted(b.edges, x, side="right")).astype(np.int64)


class _Cdf:
    """Docs <= x (or < x) of one fine histogram, point bins exact, other bins uniform over [lo, hi]
    clipped to [min, max]."""

    def __init__(self, b: Bins, c: np.ndarray, vmin: float, vmax: float):
        self.c = c
        self.lo, hi = np.maximum(b.lo, vmin), np.minimum(b.hi, vmax)
        self.width = hi - self.lo
        self.pts = b.point | (self.width <= 0)
        self.div = np.where(self.width > 0, self.width, 1)

    def __call__(self, x: float, inclusive: bool) -> float:
        at = np.where(self.pts, (self.lo <= x) if inclusive else (self.lo < x),
                      np.clip((x - self.lo) / self.div, 0, 1))
        return float((self.c * at).sum())


def quantile(b: Bins, c: np.ndarray, q: float, vmin: float, vmax: float) -> float:
    n = c.sum()
    target = max(q * n, 1e-9)
    cum = np.cumsum(c)
    i = int(np.searchsorted(cum, target, side="left"))
    lo, hi = max(b.lo[i], vmin), min(b.hi[i], vmax)
    if b.point[i] or hi <= lo:
        v = lo
    else:
        # The j-th of c values spread evenly over the bin sits at (j - 0.5) / c of its width.
        j = max(1.0, math.ceil(target - (cum[i] - c[i]) - 1e-9))
        v = lo + (j - 0.5) / c[i] * (hi - lo)
        if b.integer:
            v = math.floor(v)
    return float(min(max(v, vmin), vmax))


def scale(b: Bins, c: np.ndarray, med: float, vmin: float, vmax: float) -> float | None:
    """Robust scale: MAD / 0.6745, or 1.253314 * mean absolute deviation when MAD is 0
    (Iglewicz-Hoaglin), or None when every value equals the median."""
    n = float(c.sum())
    hi_d = max(vmax - med, med - vmin)
    if hi_d <= 0:
        return None
    cdf = _Cdf(b, c, vmin, vmax)
    lo_d, top = 0.0, hi_d
    if cdf(med, True) - cdf(med, False) < n / 2:
        while top - lo_d > 1e-9 * hi_d:  # bisection on the mass within [med - d, med + d]
            mid = (lo_d + top) / 2
            inside = cdf(med + mid, True) - cdf(med - mid, False)
            lo_d, top = (lo_d, mid) if inside >= n / 2 else (mid, top)
        mad = top
    else:
        mad = 0.0
    if mad > 1e-12:
        return mad / 0.6745
    lo, hi = np.maximum(b.lo, vmin), np.minimum(b.hi, np.maximum(vmax, vmin))
    hi = np.maximum(hi, lo)
    mid = (lo + hi) / 2
    inside = np.where(hi > lo, ((med - lo) ** 2 + (hi - med) ** 2) / (2 * np.where(hi > lo, hi - lo, 1)), 0)
    dev = np.where(b.point | (hi <= lo), np.abs(lo - med),
                   np.where(med <= lo, mid - med, np.where(med >= hi, med - mid, inside)))
    mean_ad = float((c * dev).sum() / n)
    return 1.253314 * mean_ad if mean_ad > 1e-12 else None


def display(b: Bins, c: np.ndarray) -> dict:
    if not b.log:  # 20 equal bins on [0, 1]; the exact-0 bin joins the first, exact-1 the last
        per = (len(c) - 2) // FRAC_DISPLAY_BINS
        inner = c[1:-1].reshape(FRAC_DISPLAY_BINS, per).sum(axis=1)
        inner[0] += c[0]
        inner[-1] += c[-1]
        edges = [round(i / FRAC_DISPLAY_BINS, 6) for i in range(FRAC_DISPLAY_BINS + 1)]
        return {"edges": edges, "counts": [int(x) for x in inner], "log": False}
    used = np.flatnonzero(c)
    first, last = int(used[0]), int(used[-1])
    span = last - first + 1
    groups = min(DISPLAY_BINS, span)
    cuts = first + np.round(np.linspace(0, span, groups + 1)).astype(np.int64)
    counts = [int(c[cuts[i]:cuts[i + 1]].sum()) for i in range(groups)]
    his = [float(b.hi[j - 1]) for j in cuts[1:]]
    if math.isinf(his[-1]):
        his[-1] = float(b.lo[last]) * 10
    edges = [num(float(b.lo[cuts[0]]))] + [num(h) for h in his]
    return {"edges": edges, "counts": counts, "log": True}


def num(x: float | None) -> float | None:
    """6 significant digits: figures stable across runs and readable."""
    if x is None or math.isnan(x):
        return None
    return float(f"{x:.6g}")


def feature_summary(acc: Summarised, f: str) -> dict:
    b, c, n = bins(f), acc.hist[f], acc.n[f]
    if n == 0:
        return {"mean": None, "min": None, "max": None, "quantiles": dict.fromkeys(QUANTILES),
                "histogram": {"edges": [], "counts": [], "log": b.log}}
    vmin, vmax = acc.mins[f], acc.maxs[f]
    return {"mean": num(acc.sums[f] / n), "min": num(vmin), "max": num(vmax),
            "quantiles": {k: num(quantile(b, c, q, vmin, vmax)) for k, q in QUANTILES.items()},
            "histogram": display(b, c)}


def robust_params(acc: Summarised) -> dict[str, tuple[float, float | None]]:
    """(median, scale) per feature, from the fine histogram."""
    out = {}
    for f in FEATURES:
        if acc.n[f] == 0:
            out[f] = (0.0, None)
            continue
        b, c, vmin, vmax = bins(f), acc.hist[f], acc.mins[f], acc.maxs[f]
        med = quantile(b, c, 0.5, vmin, vmax)
        out[f] = (med, scale(b, c, med, vmin, vmax))
    return out
