"""Estimated near-duplicate rate from a MinHash sample.

The sample is the distinct texts with the smallest text keys (a uniform sample of distinct texts),
each weighted by its number of copies. A sampled text has a near duplicate when it has an exact
copy, or when MinHash-LSH on word 5-gram sets finds another sampled text at estimated Jaccard >= 0.8:
128-value signatures by one-permutation hashing (densified for the bands), LSH with datasketch's
optimal 9 bands x 13 rows, candidates confirmed by the estimate. On a section with at most
``near_dup_sample`` distinct texts this is the rate up to MinHash error; on larger ones a near
(non-identical) copy counts only when both fall in the sample: a lower bound.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import polars as pl
from numba import njit

from .constants import NEAR_DUP_THRESHOLD, NUM_PERM, SHINGLE_WORDS
from .sample import Sample
from .textscan import _SEED, Texts, _decode, _fmix, _mix, tables


@cache
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) minimising the false positive + false negative areas around the
    threshold: the same criterion as datasketch's MinHashLSH (9 x 13 for 0.8 and 128). Every
    (bands, rows) pair at once: a loop of trapezoids took a tenth of a second."""
    lo, hi = np.linspace(0, threshold, 201), np.linspace(threshold, 1, 201)
    pairs = np.array([(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)])
    b, r = pairs[:, :1].astype(np.float64), pairs[:, 1:].astype(np.float64)
    fp = np.trapezoid(1 - (1 - lo**r) ** b, lo, axis=1)
    fn = np.trapezoid((1 - hi**r) ** b, hi, axis=1)
    best = np.lexsort((pairs[:, 1], pairs[:, 0], 0.5 * fp + 0.5 * fn))[0]  # ties: fewest bands, rows
    return int(pairs[best, 0]), int(pairs[best, 1])


def signatures(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """MinHash signatures (NUM_PERM values) of word 5-gram sets, by one-permutation hashing: each
    shingle's 64-bit hash picks a bin (low bits) and competes for that bin's minimum (high bits).
    O(shingles), in one compiled pass over the lowercased texts. Returns (raw signatures, empty bins
    = all ones; densified ones, where an empty bin borrows the next non-empty bin's value
    (rotation), for LSH bands)."""
    n = len(texts)
    assert NUM_PERM & (NUM_PERM - 1) == 0, "bins are picked by a mask: NUM_PERM must be a power of two"
    lower = Texts.from_series(pl.Series("w", texts, dtype=pl.String).str.to_lowercase())
    t = tables()
    sig = _oph(lower.data, lower.offs, t.lane_of_byte, t.lane_of_flags, t.cp_flags, NUM_PERM, SHINGLE_WORDS)
    empty = np.iinfo(np.uint64).max
    raw = sig
    has = (sig != empty).any(axis=1)
    # Rotation: an empty bin takes the next non-empty bin's value (circularly), offset by the distance.
    cols = np.arange(2 * NUM_PERM)
    filled = np.where(np.tile(sig != empty, 2), cols, 2 * NUM_PERM)
    nxt = np.minimum.accumulate(filled[:, ::-1], axis=1)[:, ::-1][:, :NUM_PERM]
    dist = (nxt - np.arange(NUM_PERM)).astype(np.uint64)
    src = np.take_along_axis(sig, np.minimum(nxt, 2 * NUM_PERM - 1) % NUM_PERM, axis=1)
    return raw, np.where(has[:, None], src + dist * np.uint64(1 << 57), empty) if n else sig


@njit(nogil=True, cache=True)
def _oph(data, offs, lane_of_byte, lane_of_flags, cp_flags, num_perm, k):  # noqa: ANN001, ANN202
    """Per doc: split at whitespace, hash each word, hash each run of k words (the whole text when
    it has fewer), and keep each bin's minimum of the shingle hashes' high bits."""
    n = len(offs) - 1
    empty = np.uint64(0xFFFFFFFFFFFFFFFF)
    sig = np.full((n, num_perm), empty, np.uint64)
    ring = np.zeros(k, np.uint64)  # the last k word hashes
    bins = np.uint64(num_perm)
    shift = np.uint64(0)
    while (np.uint64(1) << shift) < bins:
        shift += np.uint64(1)
    for d in range(n):
        words = 0
        at = 0  # where the next word hash goes in ring
        i = offs[d]
        hi = offs[d + 1]
        while i < hi:
            while i < hi:  # skip whitespace
                b = data[i]
                if b < 128:
                    if not (lane_of_byte[b] >> np.uint64(32)) & np.uint64(1):
                        break
                    i += 1
                else:
                    cp, size = _decode(data, i)
                    if not (lane_of_flags[cp_flags[cp]] >> np.uint64(32)) & np.uint64(1):
                        break
                    i += size
            if i >= hi:
                break
            start = i
            while i < hi:  # the word
                b = data[i]
                if b < 128:
                    if (lane_of_byte[b] >> np.uint64(32)) & np.uint64(1):
                        break
                    i += 1
                else:
                    cp, size = _decode(data, i)
                    if (lane_of_flags[cp_flags[cp]] >> np.uint64(32)) & np.uint64(1):
                        break
                    i += size
            h = _SEED
            for j in range(start, i):
                h = _mix(h, np.uint64(data[j]))
            ring[at] = _fmix(h)
            at = at + 1 if at + 1 < k else 0  # words % k, without a division per word
            words += 1
            if words >= k:
                _oph_add(sig, d, ring, at, k, bins, shift)
        if 0 < words < k:  # fewer words than a shingle: the whole text is one
            _oph_add(sig, d, ring, 0, words, bins, shift)
    return sig


@njit(inline="always")
def _oph_add(sig, d, ring, first, k, bins, shift):  # noqa: ANN001, ANN202
    """The shingle of the k word hashes from ring[first] on (circularly) competes for its bin."""
    h = _SEED
    j = first
    for _ in range(k):
        h = _mix(h, ring[j])
        j = j + 1 if j + 1 < len(ring) else 0
    h = _fmix(_mix(h, np.uint64(k)))
    b = h & (bins - np.uint64(1))  # bins is a power of two: a mask and a shift, not two divisions
    v = h >> shift
    if v < sig[d, b]:
        sig[d, b] = v


def jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One-permutation-hashing estimate: equal non-empty bins over bins non-empty in either."""
    empty = np.iinfo(np.uint64).max
    match = ((a == b) & (a != empty)).sum(axis=1)
    used = ((a != empty) | (b != empty)).sum(axis=1)
    return match / np.maximum(used, 1)


def near_dups(raw: np.ndarray, sig: np.ndarray, window: int = 16) -> np.ndarray:
    """Rows with another row at estimated Jaccard >= NEAR_DUP_THRESHOLD: LSH bands over the
    densified signatures propose pairs (each row against the next `window` rows sharing a band, so
    a huge cluster stays cheap), the raw signatures' estimate confirms them."""
    n = len(sig)
    near = np.zeros(n, bool)
    rows = np.flatnonzero((raw != np.iinfo(np.uint64).max).any(axis=1))
    if len(rows) < 2:
        return near
    bands, r = lsh_params(NEAR_DUP_THRESHOLD, NUM_PERM)
    mix = (np.arange(1, r + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)
    for b in range(bands):
        key = (sig[rows, b * r:(b + 1) * r] * mix).sum(axis=1)  # wrapping: a hash of the band
        order = rows[np.argsort(key, kind="stable")]
        skey = np.sort(key, kind="stable")
        for w in range(1, min(window, len(order) - 1) + 1):
            same = skey[w:] == skey[:-w]
            a, c = order[:-w][same], order[w:][same]
            if len(a):
                ok = jaccard(raw[a], raw[c]) >= NEAR_DUP_THRESHOLD
                near[a[ok]] = True
                near[c[ok]] = True
    return near


class NearDup:
    """Signatures of the sampled texts (by text key), computed once for all sections."""

    def __init__(self, samples: list[Sample]):
        text: dict[int, str] = {}
        for s in samples:
            text.update(s.text)
        keys = sorted(text)
        self.raw, self.sig = signatures([text[h] or "" for h in keys])
        self.row = {h: i for i, h in enumerate(keys)}

    def rate(self, sample: Sample) -> tuple[float | None, int]:
        if len(sample) == 0:
            return None, 0
        idx = np.array([self.row[h] for h in sample.h.tolist()], np.int64)
        n = sample.n
        near = (n >= 2) | near_dups(self.raw[idx], self.sig[idx])
        total = int(n.sum())
        return float(n[near].sum()) / total, total
