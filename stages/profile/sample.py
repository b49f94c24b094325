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
        h = np.concatenate([self.h, o.h])
        n = np.concatenate([self.n, o.n])
        order = np.argsort(h, kind="stable")
        h, n = h[order], n[order]
        starts = np.flatnonzero(np.concatenate([[True], h[1:] != h[:-1]]))
        keep_h, keep_n = h[starts][:k], np.add.reduceat(n, starts)[:k]
        text = {key: self.text[key] if key in self.text else o.text[key] for key in keep_h.tolist()}
        return Sample(keep_h, keep_n, text)
