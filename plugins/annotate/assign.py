"""Assignment: which item an annotator gets next, so that each item gets ``per_item`` annotators and no
annotator sees an item twice.

``Pool`` is an in-memory index of the ``assignments`` and ``labels`` tables, built from them when the
store opens and changed by the store with each write (the store is the database's single writer,
under its lock; a rolled-back transaction rebuilds it from the tables), so picking an item costs no
query however many items a project holds. An item counts
toward its ``per_item`` by its done labels plus its open assignments younger than the lease; a skipped
or abandoned item goes back to the others, never to the annotator who had it. Items partly labelled
come first (the most labelled first, then load order), so items are finished rather than started.
"""

from __future__ import annotations

from collections import Counter, defaultdict

OPEN, DONE, SKIPPED = "open", "done", "skipped"


class Pool:
    def __init__(self, items: dict[str, int], per_item: int, lease_seconds: float):
        self.order: list[str] = []
        self.pos: dict[str, int] = {}
        self.k: dict[str, int] = {}  # item -> number of responses
        self.per_item = per_item
        self.lease = lease_seconds
        self.done: Counter[str] = Counter()  # item -> done labels
        self.leases: dict[str, dict[str, float]] = defaultdict(dict)  # item -> annotator -> assigned at (open)
        self.state: dict[tuple[str, str], str] = {}  # (item, annotator) -> OPEN, DONE or SKIPPED
        self.shown: dict[tuple[str, str], list[int]] = {}  # (item, annotator) -> the order they see it in
        self.seen: dict[str, set[str]] = defaultdict(set)  # annotator -> items they were given
        self.open: dict[str, str] = {}  # annotator -> their open item
        self.active: set[str] = set()  # items given to someone and not yet full
        self.full: set[str] = set()
        self.fresh = 0  # items before this position in `order` were given to someone
        self.labelled: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.add_items(items)

    def add_items(self, items: dict[str, int]) -> None:
        """New items (id -> number of responses), in load order."""
        for item, k in items.items():
            self.pos[item] = len(self.order)
            self.order.append(item)
            self.k[item] = k

    def record(self, item: str, annotator: str, state: str, at: float, shown: list[int] | None = None) -> None:
        """Apply one committed change of an (item, annotator) assignment (``shown``: when it is made)."""
        before = self.state.get((item, annotator))
        self.state[(item, annotator)] = state
        if shown is not None:
            self.shown[(item, annotator)] = shown
        if before is None:
            self.seen[annotator].add(item)
            if item not in self.full:
                self.active.add(item)
        if before == OPEN:
            self.leases[item].pop(annotator, None)
            if self.open.get(annotator) == item:
                del self.open[annotator]
        if before == SKIPPED:
            self.skipped[annotator] -= 1
        if state == OPEN:
            self.leases[item][annotator] = at
            self.open.setdefault(annotator, item)
        elif state == SKIPPED:
            self.skipped[annotator] += 1
        elif state == DONE and before != DONE:
            self.labelled[annotator] += 1
            self.done[item] += 1
            if self.done[item] >= self.per_item:
                self.full.add(item)
                self.active.discard(item)

    def taken(self, item: str, now: float) -> int:
        live = now - self.lease
        return self.done[item] + sum(1 for t in self.leases[item].values() if t > live)

    def pick(self, annotator: str, now: float) -> str | None:
        """The item to give this annotator next (None: none left for them); changes nothing."""
        seen = self.seen[annotator]
        best, best_key = None, None
        for item in self.active:
            if item in seen:
                continue
            n = self.taken(item, now)
            key = (-n, self.pos[item])
            if n < self.per_item and (best_key is None or key < best_key):
                best, best_key = item, key
        if best is not None:
            return best
        while self.fresh < len(self.order) and (self.order[self.fresh] in self.active
                                                or self.order[self.fresh] in self.full):
            self.fresh += 1
        return self.order[self.fresh] if self.fresh < len(self.order) else None

    def progress(self, annotator: str) -> dict[str, int]:
        seen = self.seen[annotator]
        left = len(self.order) - len(seen) - (len(self.full) - len(seen & self.full))
        return {"labelled": self.labelled[annotator], "skipped": self.skipped[annotator], "available": left}
