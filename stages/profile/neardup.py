"""The near-duplicate rate: the share of a section's documents that ``minhash_dedup`` at the same
threshold would drop, estimated on a sample, with a 95% confidence interval.

Definition: minhash_dedup links two documents whose word 5-gram sets have Jaccard >= the threshold
(its normalisation, shingles, MinHash signatures and LSH bands from dedup_text.py and lsh_params.py
with its default weights, then exact Jaccard), and keeps the first document (corpus order) of each
connected cluster. A document counts when its cluster holds an earlier document.

Estimate: the sample is the NEAR_DUP_SAMPLE documents with the smallest pick keys (a hash of their
place: uniform), per section. Each sampled document's cluster is explored in the *whole* section,
not the sample (within a sample, a document's partner is rarely sampled too: that estimate fell
with the corpus size), breadth first: the spilled sketches (kernel.py) propose the documents
sharing at least min(2, sketch size) values with a member (the NEAR_DUP_CANDIDATES sharing most,
earlier ones first), their texts come from the spill, and a proposal joins the cluster when
minhash_dedup's own LSH bands and exact Jaccard accept the pair. The exploration stops at an earlier
member (the document would be dropped), when the cluster is complete (kept), or after MAX_DEPTH
steps or MAX_CLUSTER members. Near duplicates share most sketch values (a pair at the threshold
shares 2 of 8 with probability > 0.999), so little that minhash_dedup links is missed. The interval
is Wilson's for a proportion, with the finite population correction (a section sampled whole has
an exact rate).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from corpus.stages.dedup_text import Shingles, band_keys
from corpus.stages.minhash import MinHashDedup

from .constants import NEAR_DUP_CANDIDATES, NEAR_DUP_THRESHOLD
from .features import SKETCH_COLS

Fetch = Callable[[np.ndarray], dict[int, str]]  # orders -> their texts
MAX_DEPTH = 4
MAX_CLUSTER = 64
PER_VALUE = 64
BATCH_NODES = 8192  # documents per sketch join (each meets at most 8 x PER_VALUE others)
BATCH_PAIRS = 2048  # pairs checked together (their shingle sets are laid out together)
SIGN_BYTES = 8 << 20  # text signed together


@dataclass(frozen=True)
class Estimate:
    rate: float | None
    low: float | None
    high: float | None
    sample: int  # documents sampled

    def fields(self) -> dict:
        r = None if self.rate is None else round(self.rate, 6)
        ci = None if self.low is None or self.high is None else [round(self.low, 6), round(self.high, 6)]
        return {"near_dup_rate": r, "near_dup_ci95": ci, "near_dup_sample": self.sample}


def wilson(k: int, n: int, population: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval of a proportion k / n sampled without replacement from population."""
    p = k / n
    fpc = (population - n) / (population - 1) if population > 1 else 0.0
    if fpc <= 0:
        return p, p
    m = n / fpc  # the effective sample size
    centre = (p + z * z / (2 * m)) / (1 + z * z / m)
    half = z * math.sqrt(p * (1 - p) / m + z * z / (4 * m * m)) / (1 + z * z / m)
    return max(0.0, centre - half), min(1.0, centre + half)


def estimate(samples: dict[str, np.ndarray], docs: dict[str, int], files: list[Path], fetch: Fetch,
             threshold: float = NEAR_DUP_THRESHOLD) -> dict[str, Estimate]:
    """Per section ("" the whole corpus, else a source): samples holds its sampled orders, docs its
    documents with text."""
    graph = _Graph(files, fetch, threshold)
    out = {}
    for s, roots in samples.items():
        if len(roots) == 0:
            out[s] = Estimate(None, None, None, 0)
            continue
        k = int(graph.dropped(np.asarray(roots, np.int64), s).sum())
        lo, hi = wilson(k, len(roots), docs[s])
        out[s] = Estimate(k / len(roots), lo, hi, len(roots))
    return out


class _Graph:
    """The near-duplicate graph, explored on demand: sketch neighbours from the spill, edges checked
    as minhash_dedup checks them (each pair once)."""

    def __init__(self, files: list[Path], fetch: Fetch, threshold: float):
        self.lf = pl.scan_parquet(files).select("order", "source", *SKETCH_COLS) if files else None
        self.fetch = fetch
        self.threshold = threshold
        self.op = MinHashDedup(threshold=threshold)
        self.keys: dict[int, np.ndarray] = {}  # order -> LSH band keys (None: no shingles)
        self.sets: dict[int, np.ndarray] = {}  # order -> sorted shingle set
        self.checked: dict[tuple[int, int], bool] = {}

    def dropped(self, roots: np.ndarray, scope: str) -> np.ndarray:
        """Whether each root's cluster (within the scope: "" every source, else that source) holds an
        earlier document."""
        members = {int(d): {int(d)} for d in roots}
        frontier = {int(d): [int(d)] for d in roots}
        out = dict.fromkeys(members, False)
        for _ in range(MAX_DEPTH):
            if not frontier:
                break
            nodes = np.unique(np.concatenate([np.array(f) for f in frontier.values()]))
            near: dict[int, list[int]] = {}
            for a in range(0, len(nodes), BATCH_NODES):
                near.update(self._neighbours(nodes[a:a + BATCH_NODES], scope))
            proposals = {d: {v for u in f for v in near.get(u, ()) if v not in members[d]}
                         for d, f in frontier.items()}
            ok = self._check({(u, v) for d, f in frontier.items() for u in f for v in near.get(u, ())
                              if v in proposals[d]})
            nxt = {}
            for d, f in frontier.items():
                added = {v for u in f for v in near.get(u, ()) if v in proposals[d] and ok[(u, v)]}
                added = set(sorted(added)[:max(0, MAX_CLUSTER - len(members[d]))])
                members[d] |= added
                if any(v < d for v in added):
                    out[d] = True
                elif added:
                    nxt[d] = sorted(added)
            frontier = nxt
        return np.array([out[int(d)] for d in roots], bool)

    def _neighbours(self, nodes: np.ndarray, scope: str) -> dict[int, list[int]]:
        """Per node, the NEAR_DUP_CANDIDATES documents sharing most sketch values with it (at least
        min(2, either sketch's size); ties: the earlier document)."""
        if self.lf is None:
            return {}
        own = self._sketches(pl.col("order").is_in(pl.Series(nodes).implode()))
        if own.height == 0:
            return {}
        values = own["v"].unique().implode()
        # One streaming scan: the documents sharing any of these values (of the scope's source).
        near = pl.any_horizontal(pl.col(c).is_in(values) for c in SKETCH_COLS)
        hits = self._sketches(near & (pl.col("source") == scope) if scope else near).filter(pl.col("v").is_in(values))
        # A value many documents share (a big cluster, boilerplate) proposes its earliest PER_VALUE ones:
        # what an earlier member is looked for among, and the pairs stay few.
        hits = hits.sort("order").group_by("v", maintain_order=True).head(PER_VALUE)
        pairs = (hits.rename({"order": "w", "n": "w_n"})
                 .join(own.rename({"order": "u", "n": "u_n"}), on="v").filter(pl.col("w") != pl.col("u"))
                 .group_by("u", "w").agg(pl.len().alias("shared"), pl.first("u_n", "w_n"))
                 .filter(pl.col("shared") >= pl.min_horizontal(2, "u_n", "w_n"))
                 .sort(["u", "shared", "w"], descending=[False, True, False])
                 .group_by("u", maintain_order=True).head(NEAR_DUP_CANDIDATES))
        out: dict[int, list[int]] = {}
        for u, w in pairs.select("u", "w").iter_rows():
            out.setdefault(u, []).append(w)
        return out

    def _sketches(self, where: pl.Expr) -> pl.DataFrame:
        """(order, n: sketch values, v: one of them) of the documents `where` holds, one row per value."""
        rows = self.lf.filter(where).collect(engine="streaming")  # type: ignore[union-attr]
        n = pl.sum_horizontal(pl.col(c).is_not_null() for c in SKETCH_COLS).alias("n")
        return (rows.with_columns(n).unpivot(index=["order", "n"], on=list(SKETCH_COLS), value_name="v")
                .drop_nulls("v").select("order", "n", "v"))

    def _check(self, pairs: set[tuple[int, int]]) -> dict[tuple[int, int], bool]:
        """Each pair: would minhash_dedup link it (a shared LSH band, then exact Jaccard >= threshold)?"""
        todo = sorted({p for p in pairs if p not in self.checked and (p[1], p[0]) not in self.checked})
        for a in range(0, len(todo), BATCH_PAIRS):  # the pairs' shingle sets are laid out together
            part = todo[a:a + BATCH_PAIRS]
            self._sign(np.unique(np.array(part, np.int64).ravel()))
            self.checked.update(zip(part, self._linked(part).tolist(), strict=True))
        return {p: self.checked.get(p, self.checked.get((p[1], p[0]), False)) for p in pairs}

    def _linked(self, pairs: list[tuple[int, int]]) -> np.ndarray:
        a, b = (np.array([p[i] for p in pairs], np.int64) for i in (0, 1))
        banded = np.array([self.keys[u] is not None and self.keys[v] is not None
                           and bool((self.keys[u] == self.keys[v]).any()) for u, v in pairs], bool)
        ok = np.zeros(len(pairs), bool)
        if banded.any():
            nodes = np.unique(np.concatenate([a[banded], b[banded]]))
            sets = [self.sets[int(n)] for n in nodes]
            off = np.zeros(len(nodes) + 1, np.int64)
            np.cumsum([len(s) for s in sets], out=off[1:])
            ia, ib = np.searchsorted(nodes, a[banded]), np.searchsorted(nodes, b[banded])
            ok[banded] = Shingles(np.concatenate(sets), off).jaccard(ia, ib) >= self.threshold
        return ok

    def _sign(self, nodes: np.ndarray) -> None:
        new = np.array([n for n in nodes.tolist() if n not in self.keys], np.int64)
        if len(new) == 0:
            return
        texts = self.fetch(new)
        # In batches of about SIGN_BYTES of text: shingling holds several arrays per word of a batch.
        batch = np.cumsum([len(texts[int(n)]) for n in new]) // SIGN_BYTES
        for b in np.unique(batch):
            part = new[batch == b]
            sig, shingles = self.op.sign(pl.Series([texts.pop(int(n)) for n in part], dtype=pl.String))
            sets = shingles.unique_sorted()
            keys = band_keys(sig, *self.op.band_rows())
            for i, n in enumerate(part.tolist()):
                s = sets.hashes[sets.offsets[i]:sets.offsets[i + 1]]
                self.sets[n] = s
                self.keys[n] = keys[i] if len(s) else None  # documents without shingles are never banded
