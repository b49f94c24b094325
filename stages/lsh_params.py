"""LSH parameters for MinHash dedup: bands x rows from a Jaccard threshold, and the S-curve they give.

A pair of documents with Jaccard similarity J shares at least one of b bands of r MinHash values with
probability ``P(J) = 1 - (1 - J**r)**b``. datasketch's optimiser (``datasketch.lsh._optimal_param``,
reproduced exactly here without its scipy import) picks (b, r), b * r <= num_perm, that minimise
``fp_weight * (area under P below the threshold) + fn_weight * (area above it missed)``.
Because candidates are verified by exact Jaccard afterwards, a false positive costs only a check,
while a false negative is a duplicate kept: hence the default weights favour recall (0.1 / 0.9).
"""

from __future__ import annotations

import math
import numbers
from functools import lru_cache

import numpy as np

DEFAULT_FP_WEIGHT = 0.1
DEFAULT_FN_WEIGHT = 0.9
# Fewer than 2 hashes give no band plan. The optimiser's work grows as num_perm**2 log num_perm (1024: about
# 2 s, 2048: 7 s and growing, 2,000,000: terabytes), so above MAX_OPTIMISED_NUM_PERM bands and rows must be
# given; more than a few hundred hashes buys little precision (the estimate's error falls as 1 / sqrt(num_perm)).
MIN_NUM_PERM = 2
MAX_OPTIMISED_NUM_PERM = 1024
MAX_NUM_PERM = 1 << 14  # any path: 16,384 hashes, 128 KB of signature per document


def _optimal_param(threshold: float, num_perm: int, fp_weight: float, fn_weight: float) -> tuple[int, int]:
    """datasketch's ``lsh._optimal_param``, vectorised: the same search over every (b, r) with
    b * r <= num_perm, minimising the same weighted areas, the first minimum in the same (b, r) order.

    datasketch integrates with scipy's adaptive quad; the integrands are polynomials of degree
    b * r <= num_perm, so Gauss-Legendre with num_perm / 2 + 1 nodes is exact (to rounding). Same
    answers (tests check against datasketch over a grid), without importing scipy.integrate, which
    costs 0.9 s a run."""
    x, w = np.polynomial.legendre.leggauss(num_perm // 2 + 2)
    s_fp, w_fp = (x + 1) * threshold / 2, w * threshold / 2
    s_fn, w_fn = threshold + (x + 1) * (1 - threshold) / 2, w * (1 - threshold) / 2
    pairs = np.array([(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)], dtype=float)
    b, r = pairs[:, :1], pairs[:, 1:]
    fp = ((1 - (1 - s_fp**r) ** b) * w_fp).sum(axis=1)
    fn = (((1 - s_fn**r) ** b) * w_fn).sum(axis=1)
    best = int(np.argmin(fp * fp_weight + fn * fn_weight))
    return int(pairs[best, 0]), int(pairs[best, 1])


@lru_cache(maxsize=64)
def optimal_bands_rows(threshold: float, num_perm: int, fp_weight: float = DEFAULT_FP_WEIGHT,
                       fn_weight: float = DEFAULT_FN_WEIGHT) -> tuple[int, int]:
    check_params(threshold, num_perm, fp_weight=fp_weight, fn_weight=fn_weight)
    return _optimal_param(threshold, num_perm, fp_weight, fn_weight)


def check_params(threshold: float, num_perm: int, bands: int = 0, rows: int = 0,
                 fp_weight: float = DEFAULT_FP_WEIGHT, fn_weight: float = DEFAULT_FN_WEIGHT) -> None:
    """The one check of the minhash_dedup stage's LSH settings and of `corpus dedup explain`'s: the threshold,
    num_perm, given bands and rows (0 and 0: the optimiser's) fitting in num_perm hashes, and where the
    optimiser picks them, its weights and num_perm's bound."""
    check_threshold(threshold)
    check_num_perm(num_perm)
    if bool(bands) != bool(rows) or bands < 0 or rows < 0:
        raise ValueError("give both bands and rows (>= 1), or neither (then they are derived from threshold)")
    if bands * rows > num_perm:
        raise ValueError(f"bands x rows = {bands * rows} exceeds num_perm = {num_perm}")
    if bands and rows:
        return
    if num_perm > MAX_OPTIMISED_NUM_PERM:
        raise ValueError(f"num_perm = {num_perm} is too many hashes for the bands x rows optimiser (at most "
                         f"{MAX_OPTIMISED_NUM_PERM}): give bands and rows, or a smaller num_perm")
    check_weights(fp_weight, fn_weight)


def check_threshold(threshold: float) -> None:
    if not (isinstance(threshold, numbers.Real) and not isinstance(threshold, bool) and 0.0 < threshold < 1.0):
        raise ValueError(f"threshold must lie strictly between 0 and 1, got {threshold}")


def check_num_perm(num_perm: int) -> None:
    """Checked before the optimiser's bound, which applies only where it runs (check_params). MAX_NUM_PERM
    holds on every path: each document's signature is num_perm hashes, so a typo such as 100000 would run
    out of memory part way through a run."""
    if isinstance(num_perm, bool) or not isinstance(num_perm, numbers.Integral) or num_perm < MIN_NUM_PERM:
        raise ValueError(f"num_perm must be a whole number >= {MIN_NUM_PERM}, got {num_perm!r}")
    if num_perm > MAX_NUM_PERM:
        raise ValueError(f"num_perm must be at most {MAX_NUM_PERM} (hashes per document), got {num_perm}")


def check_weights(fp_weight: float, fn_weight: float) -> None:
    """Only the weights' ratio matters to the optimiser; a NaN would compare false everywhere."""
    if not all(isinstance(w, numbers.Real) and not isinstance(w, bool) and math.isfinite(w) and w >= 0
               for w in (fp_weight, fn_weight)) or fp_weight + fn_weight == 0:
        raise ValueError(f"fp_weight and fn_weight must be finite, >= 0 and not both 0, got {fp_weight}, "
                         f"{fn_weight}")


def p_candidate(j: float, bands: int, rows: int) -> float:
    return 1.0 - (1.0 - j**rows) ** bands


def s_curve(threshold: float, num_perm: int = 128, fp_weight: float = DEFAULT_FP_WEIGHT,
            fn_weight: float = DEFAULT_FN_WEIGHT, bands: int = 0, rows: int = 0,
            step: float = 0.05) -> tuple[int, int, list[tuple[float, float]]]:
    """(bands, rows, [(J, P(candidate)) for J in 0, step, ..., 1]). Given bands and rows win over
    the optimiser."""
    check_params(threshold, num_perm, bands, rows, fp_weight, fn_weight)
    if not (bands and rows):
        bands, rows = optimal_bands_rows(threshold, num_perm, fp_weight, fn_weight)
    n = round(1 / step)
    table = [(round(i * step, 4), p_candidate(i * step, bands, rows)) for i in range(n + 1)]
    return bands, rows, table


def explain(threshold: float, num_perm: int = 128, fp_weight: float = DEFAULT_FP_WEIGHT,
            fn_weight: float = DEFAULT_FN_WEIGHT, bands: int = 0, rows: int = 0, width: int = 50) -> str:
    """A text report of the chosen parameters: a table and a bar plot of P(candidate) against J."""
    b, r, table = s_curve(threshold, num_perm, fp_weight, fn_weight, bands, rows)
    knee = (1 / b) ** (1 / r)  # where the curve is steepest, roughly P = 0.5
    lines = [
        f"MinHash LSH for Jaccard threshold {threshold:g}: num_perm={num_perm}, bands={b} x rows={r} "
        f"({b * r} of {num_perm} hashes used), fp_weight={fp_weight:g}, fn_weight={fn_weight:g}",
        f"curve midpoint (1/b)^(1/r) = {knee:.3f}; P(candidate) at threshold = {p_candidate(threshold, b, r):.3f}, "
        f"at threshold + 0.05 = {p_candidate(min(threshold + 0.05, 1.0), b, r):.3f}",
        "P is the chance that a pair with Jaccard J shares a band, i.e. becomes a candidate. With exact",
        "verification (verify: true, the default) a candidate below the threshold costs only a check;",
        "above the threshold, 1 - P is the chance a true near-duplicate is missed.",
        "",
        "   J   P(cand)  ",
    ]
    for j, p in table:
        bar = "█" * int(round(p * width))
        mark = " ◀ threshold" if abs(j - threshold) < 1e-9 else ""
        lines.append(f"{j:5.2f}  {p:7.3f}  |{bar:<{width}}|{mark}")
    if all(abs(j - threshold) > 1e-9 for j, _ in table):
        lines.append(f"{threshold:5.2f}  {p_candidate(threshold, b, r):7.3f}  (threshold)")
    return "\n".join(lines)
