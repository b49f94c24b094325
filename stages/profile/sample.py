"""The MinHash sample of a section: its k smallest distinct text keys (a uniform sample of its
distinct texts), each with its number of documents and one text (the first SAMPLE_TEXT_CHARS).

Keys and counts are numpy arrays and texts a dict by key: merging is a sort of at most 2k numbers,
and a text is held once, by itself (a text kept in a frame of views kept its chunk's whole buffer
alive, and copying the frame on every merge cost more than the merge).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Sample:
    h: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))  # sorted, distinct
    n: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # documents per key
    text: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.h)

    def bound(self, k: int) -> int | None:
        """The k-th smallest key once k are held: a key above it cannot enter."""
        return int(self.h[k - 1]) if len(self.h) >= k else None

    def merge(self, o: Sample, k: int) -> Sample:
        """The k smallest keys of both, counts added (exact: a key among the k smallest of the union
        is among the k smallest of each part it occurs in)."""
        if len(o) == 0:
            return self
        h, n = sum_by_key(self.h, self.n, o.h, o.n)
        keep_h, keep_n = h[:k], n[:k]
        text = {key: self.text[key] if key in self.text else o.text[key] for key in keep_h.tolist()}
        return Sample(keep_h, keep_n, text)


def sum_by_key(h1: np.ndarray, n1: np.ndarray, h2: np.ndarray, n2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct keys sorted, summed counts) of two keyed count arrays."""
    h = np.concatenate([h1, h2])
    n = np.concatenate([n1, n2])
    order = np.argsort(h, kind="stable")
    h, n = h[order], n[order]
    starts = np.flatnonzero(np.concatenate([[True], h[1:] != h[:-1]])) if len(h) else np.zeros(0, np.int64)
    return h[starts], np.add.reduceat(n, starts) if len(h) else n
