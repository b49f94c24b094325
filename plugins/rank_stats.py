"""Rank statistics for preference data (small pure functions, closed-form tests in
tests/test_rlhf_preferences.py): Bradley-Terry strengths, Kendall's W, Krippendorff's alpha,
Spearman's rho and Kendall distance, ties handled throughout."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np


def bradley_terry(k: int, wins: np.ndarray, prior: float = 0.5, iters: int = 500, tol: float = 1e-10) -> np.ndarray:
    """Log-strengths (mean 0) of k items from ``wins[i, j]`` = times i beat j (a tie: 0.5 each way).

    Hunter's MM updates; ``prior`` adds that many virtual wins each way between every pair, which keeps
    the fit finite when one response always wins (and pulls scores of little-labelled items to 0).
    """
    w = np.asarray(wins, dtype=np.float64) + prior * (1 - np.eye(k))
    n = w + w.T
    p = np.ones(k)
    for _ in range(iters):
        denom = (n / (p[:, None] + p[None, :])).sum(axis=1)
        new = w.sum(axis=1) / np.maximum(denom, 1e-300)
        new = np.maximum(new, 1e-300)
        new /= math.exp(np.log(new).mean())
        if np.abs(new - p).max() < tol:
            p = new
            break
        p = new
    s = np.log(p)
    return s - s.mean()


def wins_matrix(rankings: Iterable[Sequence[int]], k: int) -> np.ndarray:
    """``wins[i, j]``: how many rankings put i above j (ties: half each way)."""
    w = np.zeros((k, k))
    for r in rankings:
        a = np.asarray(r)
        w += (a[:, None] < a[None, :]) + 0.5 * (a[:, None] == a[None, :]) * (1 - np.eye(k))
    return w


def ranks_from_scores(scores: Sequence[float], tol: float = 1e-9) -> tuple[int, ...]:
    """Competition ranks of scores (highest = 1, scores within tol tie)."""
    return tuple(1 + sum(1 for t in scores if t > s + tol) for s in scores)


def tie_ranks(ranking: Sequence[int]) -> np.ndarray:
    """Ranks 1..n with ties given their mean position (what Kendall's W and Spearman use)."""
    a = np.asarray(ranking, dtype=np.float64)
    return np.array([1 + (a < v).sum() + ((a == v).sum() - 1) / 2 for v in a])


def kendalls_w(rankings: Sequence[Sequence[int]]) -> float | None:
    """Kendall's coefficient of concordance of m rankings of n objects, corrected for ties.

    1: all rankings agree; 0: no agreement. None with fewer than two rankings or when every ranking
    ties everything (no variance to agree on).
    """
    m = len(rankings)
    if m < 2:
        return None
    n = len(rankings[0])
    r = np.array([tie_ranks(x) for x in rankings])
    totals = r.sum(axis=0)
    s = ((totals - totals.mean()) ** 2).sum()
    t = sum(((c := np.unique(x, return_counts=True)[1]) ** 3 - c).sum() for x in rankings)
    denom = m * m * (n**3 - n) - m * t
    return None if denom <= 0 else float(12 * s / denom)


def krippendorff_alpha(units: Iterable[Sequence[float]]) -> float | None:
    """Krippendorff's alpha, interval metric, from the values each unit received (any number per unit;
    units with fewer than two values are not pairable). None when nothing varies."""
    pairable = [np.asarray(u, dtype=np.float64) for u in units if len(u) >= 2]
    if not pairable:
        return None
    values = np.concatenate(pairable)
    n = len(values)
    d_o = sum(((u[:, None] - u[None, :]) ** 2).sum() / (len(u) - 1) for u in pairable) / n
    # sum over ordered pairs of (a - b)^2 = 2 n sum((v - mean)^2)
    d_e = 2 * n * ((values - values.mean()) ** 2).sum() / (n * (n - 1))
    return None if d_e == 0 else float(1 - d_o / d_e)


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho with mean ranks for ties; None when either side is constant."""
    rx, ry = tie_ranks([-v for v in x]), tie_ranks([-v for v in y])
    rx, ry = rx - rx.mean(), ry - ry.mean()
    d = math.sqrt((rx * rx).sum() * (ry * ry).sum())
    return None if d == 0 else float((rx * ry).sum() / d)


def kendall_distance(a: Sequence[int], b: Sequence[int]) -> float:
    """Share of response pairs two rankings order differently (a tie against an order counts half)."""
    k = len(a)
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    if not pairs:
        return 0.0
    bad = 0.0
    for i, j in pairs:
        sa, sb = np.sign(a[j] - a[i]), np.sign(b[j] - b[i])
        bad += 0.0 if sa == sb else 1.0 if sa * sb < 0 else 0.5
    return bad / len(pairs)
