"""Export a project's labels in the shared preference formats (``corpus.plugins.preferences``):
Ranking JSONL (one object per label, with the annotator and the order they saw) or Pair JSONL (every
pair a label orders; ties give none). Written atomically: a reader never sees half a file."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from corpus.owner import refuse_foreign_file
from corpus.plugins.annotate.store import Store
from corpus.plugins.preferences import Preference, ranking_json
from corpus.writers import write_bytes_atomic

FORMATS = ("rankings", "pairs")


def pair_json(p: Preference) -> list[dict[str, Any]]:
    """The label's (better, worse) pairs as Pair JSONL objects. Each pair is an item of its own to the
    shared reader, so its id names the ranked item and the two response indices, lower first:
    ``ITEM/i-j`` whichever won, so annotators who disagree label one item (their disagreement is measured,
    not split into two items of one label each)."""
    return [{"prompt": p.prompt, "chosen": p.responses[i], "rejected": p.responses[j], "annotator": p.annotator,
             "item_id": f"{p.item_id}/{min(i, j)}-{max(i, j)}"} for i, j in p.pairs()]


def jsonl_bytes(records: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)


def export(store: Store, dest: Path, fmt: str = "rankings") -> int:
    """Write the labels to ``dest``; returns the number of records written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    refuse_foreign_file(Path(dest))
    prefs = store.preferences()
    records = [ranking_json(p) for p in prefs] if fmt == "rankings" else [r for p in prefs for r in pair_json(p)]
    write_bytes_atomic(Path(dest), jsonl_bytes(records))
    return len(records)
