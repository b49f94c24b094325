"""Preference data: the shared formats, their reader, and aggregation across annotators.

A library (no CLI, no training): the RLHF cycle, the reward model, DPO and the annotation app use it.

Formats (JSONL, one object per line; extra fields are allowed and kept in ``meta``):

- **task** (what the cycle writes for ranking): ``{"item_id", "prompt", "responses": [2..K],
  "response_ids"?, "meta"?}``.
- **ranking** (one annotator's label of one item): ``{"item_id", "annotator", "prompt", "responses",
  "ranking": [rank of each response in the given order, 1 = best, ties share a rank], "aspects"?:
  {name: {"0": score, ...}}, "comment"?, "shown_order"?: [order shown], "created_at"?}``.
- **pair**: ``{"prompt", "chosen", "rejected", "margin"?, "annotator"?, "item_id"?}`` (a ranking of
  two with ``[1, 2]``).

A record without ``item_id`` (any format) gets the content id ``item_id_for(prompt, responses)``, which
ignores the order of the responses: labels of one prompt and response set are one item wherever they are.

A label without ``annotator`` (or with the reserved name ``"anonymous"``, which is what such a label is
exported as) is a separate label of its own unknown annotator: public pair sets name none, and three lines
A>B, B>A, B>A of one pair are three labels with the consensus B>A. ``duplicate_label`` is only for a
*named* annotator labelling an item twice. Anonymous labels count in the consensus and in the agreement
figures as if each came from a different annotator (Kendall's W over an item's labels and Krippendorff's
alpha need only the rankings, not who gave them; an anonymous crowd that is really one person agreeing
with itself would read as agreement), and they are left out of the per-annotator profiles (position and
length bias, distance from the consensus), which describe one known person each.

``read_preferences`` reads through ``corpus.readers`` (so broken JSON, bad UTF-8 and a missing prompt
are quarantined exactly as for documents), then checks each record's preference fields; a record
failing them is quarantined with its raw line and one of ``PREFERENCE_KINDS``.

``aggregate`` fits a Bradley-Terry consensus per item from every annotator's ranking, measures
agreement (Kendall's W per item, Krippendorff's alpha overall), and profiles each annotator (position
bias, length bias, distance from the consensus).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from corpus.plugins.rank_stats import (  # noqa: F401 (part of this module's API)
    bradley_terry,
    kendall_distance,
    kendalls_w,
    krippendorff_alpha,
    ranks_from_scores,
    spearman,
    tie_ranks,
    wins_matrix,
)
from corpus.readers import InputSpec, plan_tasks, read_task
from corpus.readers.base import derived_id
from corpus.readers.streams import ByteSource
from corpus.report import html as H
from corpus.schema import RAW_LINE, empty_quarantine, quarantine_frame
from corpus.writers import write_bytes_atomic

# Why a well-formed JSON record is not a usable preference label.
PREFERENCE_KINDS = (
    "missing_responses",  # no responses (nor chosen/rejected), fewer than two, or one empty / not a string
    "duplicate_response",  # the same response text twice in one record
    "bad_ranking",  # missing, wrong length, not integers, or not a ranking (1..n with ties)
    "bad_field",  # margin, aspects, shown_order or annotator of the wrong shape
    "duplicate_label",  # a second label of one item by one named annotator (the first is kept)
    "item_mismatch",  # an item_id seen before with another prompt or another set of responses
)
ANONYMOUS = "anonymous"  # a label with no annotator: each is a separate label, in no annotator's profile


@dataclass(frozen=True)
class Preference:
    """One label: an annotator's ranking of an item's responses (a pair is a ranking of two)."""

    item_id: str
    prompt: str
    responses: tuple[str, ...]
    ranking: tuple[int, ...]  # rank per response, 1 = best, ties share a rank
    annotator: str = ANONYMOUS
    margin: float | None = None  # pairs: how much better chosen is (Bradley-Terry with margin)
    aspects: dict[str, dict[int, float]] = field(default_factory=dict)  # name -> response index -> score
    shown_order: tuple[int, ...] | None = None  # response indices in the order the annotator saw them
    response_ids: tuple[str, ...] | None = None
    comment: str | None = None
    created_at: str | None = None
    file: str = ""  # where it was read: file relative to its input, 1-based line
    line: int = 0

    def pairs(self) -> list[tuple[int, int]]:
        """(better, worse) index pairs the ranking states (ties state none)."""
        k = len(self.responses)
        return [(i, j) for i in range(k) for j in range(k) if self.ranking[i] < self.ranking[j]]


@dataclass(frozen=True)
class Task:
    """One item to rank (the task JSONL the cycle writes and the annotation app loads)."""

    item_id: str
    prompt: str
    responses: tuple[str, ...]
    response_ids: tuple[str, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    file: str = field(default="", compare=False)  # where it was read (as Preference), not part of the task
    line: int = field(default=0, compare=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"item_id": self.item_id, "prompt": self.prompt, "responses": list(self.responses)}
        if self.response_ids is not None:
            out["response_ids"] = list(self.response_ids)
        if self.meta:
            out["meta"] = self.meta
        return out


def ranking_json(p: Preference) -> dict[str, Any]:
    """A label as a ranking JSONL object (what the annotation app exports). Every object has the same
    keys: ``aspects`` ({} for none) and ``comment`` ("" for none); ``shown_order``, ``created_at`` and
    ``response_ids`` are null when unknown (the reader takes either)."""
    return {"item_id": p.item_id, "annotator": p.annotator, "prompt": p.prompt, "responses": list(p.responses),
            "ranking": list(p.ranking), "aspects": {a: {str(i): v for i, v in s.items()} for a, s in p.aspects.items()},
            "comment": p.comment or "", "shown_order": None if p.shown_order is None else list(p.shown_order),
            "created_at": p.created_at,
            "response_ids": None if p.response_ids is None else list(p.response_ids)}


def write_records(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Task, ranking or pair objects as JSONL, written atomically."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    write_bytes_atomic(Path(path), text.encode())


# ---------------------------------------------------------------- checks


class _Bad(ValueError):
    def __init__(self, kind: str, error: str) -> None:
        super().__init__(error)
        self.kind = kind


def is_ranking(ranks: Sequence[int]) -> bool:
    """1 = best, ties share a rank: dense ([1, 2, 2, 3]) or competition ([1, 2, 2, 4]) numbering."""
    if not ranks:
        return False
    levels = sorted(set(ranks))
    if levels == list(range(1, len(levels) + 1)):
        return True
    return all(r == 1 + sum(1 for s in ranks if s < r) for r in ranks)


def _as_int(value: Any) -> int | None:
    # polars' vectorised path may hand ints back as floats (1 -> 1.0) when a piece mixes them
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _responses(meta: dict[str, Any]) -> tuple[tuple[str, ...], tuple[int, ...] | None, float | None]:
    if "responses" in meta:
        responses, ranking = meta["responses"], meta.get("ranking")
        margin = None
    elif "chosen" in meta or "rejected" in meta:
        responses, ranking = [meta.get("chosen"), meta.get("rejected")], [1, 2]
        margin = meta.get("margin")
        if margin is not None and not _number(margin):
            raise _Bad("bad_field", f"margin is {margin!r}, expected a number")
    else:
        raise _Bad("missing_responses", "no 'responses' (nor 'chosen' and 'rejected')")
    if not isinstance(responses, list) or len(responses) < 2:
        raise _Bad("missing_responses", "expected a list of at least two responses")
    for i, r in enumerate(responses):
        if not isinstance(r, str) or not r.strip():
            raise _Bad("missing_responses", f"response {i} is {'empty' if isinstance(r, str) else repr(r)}")
    if len(set(responses)) < len(responses):
        first = next(r for r in responses if responses.count(r) > 1)
        raise _Bad("duplicate_response", f"response {first[:40]!r} occurs twice")
    if ranking is None:
        return tuple(responses), None, margin
    if not isinstance(ranking, list) or len(ranking) != len(responses):
        n = len(ranking) if isinstance(ranking, list) else ranking
        raise _Bad("bad_ranking", f"ranking has {n} entries for {len(responses)} responses")
    ranks = [_as_int(r) for r in ranking]
    if any(r is None for r in ranks):
        raise _Bad("bad_ranking", f"ranking {ranking} holds a value that is not an integer")
    if not is_ranking(ranks):  # type: ignore[arg-type]
        raise _Bad("bad_ranking", f"ranking {ranks} is not a ranking (1 = best, ties share a rank)")
    return tuple(responses), tuple(ranks), margin  # type: ignore[arg-type]


def _aspects(value: Any, k: int) -> dict[str, dict[int, float]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Bad("bad_field", "aspects must be an object {name: {response index: score}}")
    out: dict[str, dict[int, float]] = {}
    for name, scores in value.items():
        if scores is None:  # polars fills aspects only other records of a piece have with null
            continue
        if not isinstance(scores, dict):
            raise _Bad("bad_field", f"aspect {name!r} must map response indices to scores")
        got: dict[int, float] = {}
        for idx, score in scores.items():
            if score is None:
                continue
            if not (str(idx).isdigit() and int(idx) < k) or not _number(score):
                raise _Bad("bad_field", f"aspect {name!r}: {idx!r}: {score!r} is not a response index and a number")
            got[int(idx)] = float(score)
        if got:
            out[str(name)] = got
    return out


def _order(value: Any, k: int) -> tuple[int, ...] | None:
    if value is None:
        return None
    order = [_as_int(v) for v in value] if isinstance(value, list) else None
    if order is None or sorted(order) != list(range(k)):  # type: ignore[type-var]
        raise _Bad("bad_field", f"shown_order {value!r} is not a permutation of 0..{k - 1}")
    return tuple(order)  # type: ignore[arg-type]


def _optional_str(meta: dict[str, Any], key: str) -> str | None:
    value = meta.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _Bad("bad_field", f"{key} is {value!r}, expected a string")


def _record(item_id: str | None, prompt: str, meta: dict[str, Any], file: str, line: int, need_ranking: bool) -> Any:
    responses, ranking, margin = _responses(meta)
    if item_id is None:  # no item_id: the content id, so every label of one item is one item (order ignored)
        item_id = item_id_for(prompt, responses)
    ids = meta.get("response_ids")
    if ids is not None and (not isinstance(ids, list) or len(ids) != len(responses)
                            or not all(isinstance(i, str) for i in ids)):
        raise _Bad("bad_field", "response_ids must be strings, one per response")
    if not need_ranking:
        extra = meta.get("meta")
        return Task(item_id, prompt, responses, tuple(ids) if ids else None, extra if isinstance(extra, dict) else {},
                    file=file, line=line)
    if ranking is None:
        raise _Bad("bad_ranking", "no 'ranking'")
    annotator = meta.get("annotator", ANONYMOUS)
    if not isinstance(annotator, str | int) or isinstance(annotator, bool) or str(annotator) == "":
        raise _Bad("bad_field", f"annotator is {annotator!r}, expected a non-empty string")
    return Preference(
        item_id=item_id, prompt=prompt, responses=responses, ranking=ranking, annotator=str(annotator),
        margin=float(margin) if margin is not None else None,
        aspects=_aspects(meta.get("aspects"), len(responses)), shown_order=_order(meta.get("shown_order"),
                                                                                    len(responses)),
        response_ids=tuple(ids) if ids else None, comment=_optional_str(meta, "comment"),
        created_at=_optional_str(meta, "created_at"), file=file, line=line)


def _raw_lines(path: str, wanted: set[int]) -> dict[int, bytes]:
    """The raw bytes of the given 1-based lines of a (possibly compressed) file."""
    out: dict[int, bytes] = {}
    line, rest = 1, b""
    for block in ByteSource(path).blocks():
        parts = (rest + block).split(b"\n")
        rest = parts.pop()
        for part in parts:
            if line in wanted:
                out[line] = part.removesuffix(b"\r")
            line += 1
    if rest and line in wanted:
        out[line] = rest.removesuffix(b"\r")
    return out


def _read(path: str | Path, need_ranking: bool) -> tuple[list[Any], pl.DataFrame]:
    spec = InputSpec(source="preferences", path=str(path), format="jsonl", text_key="prompt", id_key="item_id",
                     max_quarantine_fraction=1.0)
    records: list[Any] = []
    bad: list[pl.DataFrame] = []
    # Labels are checked across the whole input (its files, and the parts of a big one): an item is one
    # item wherever its labels are. Tasks per file: a task in two files of a folder is what loading the
    # files one by one gives (the annotation app: already there, or an item conflict).
    seen: dict[tuple[str, str, str], tuple[str, int]] = {}  # (scope, item, annotator) -> first (file, line)
    items: dict[tuple[str, str], tuple[str, frozenset[str]]] = {}  # (scope, item) -> prompt, responses
    for task in plan_tasks([spec]):
        found: list[tuple[int, str, str]] = []  # line, kind, error
        scope = "" if need_ranking else task.rel_path
        for chunk in read_task(task):
            bad.append(chunk.bad)
            for doc_id, prompt, meta_text, line in chunk.docs.select("id", "text", "meta", "src_row").iter_rows():
                given = None if doc_id == derived_id(spec.source, task.rel_path, line) else doc_id  # else derived
                try:
                    rec = _record(given, prompt, json.loads(meta_text), task.rel_path, line, need_ranking)
                    shape = (rec.prompt, frozenset(rec.responses))
                    if items.setdefault((scope, rec.item_id), shape) != shape:
                        raise _Bad("item_mismatch", f"item {rec.item_id!r} was read before with another prompt "
                                   "or other responses")
                    key = (scope, rec.item_id, rec.annotator if need_ranking else "")
                    if key in seen and not (need_ranking and rec.annotator == ANONYMOUS):  # anonymous: each its own
                        who = f" by {rec.annotator!r}" if need_ranking else ""
                        file, first = seen[key]
                        where = f"at line {first}" if file == task.rel_path else f"in {file} at line {first}"
                        raise _Bad("duplicate_label", f"item {rec.item_id!r} was labelled{who} before, {where}")
                    seen[key] = (task.rel_path, line)
                    records.append(rec)
                except _Bad as exc:
                    found.append((line, exc.kind, str(exc)))
        if found:
            raw = _raw_lines(task.path, {line for line, _, _ in found})
            bad.append(quarantine_frame([
                {"source": spec.source, "file": task.rel_path, "line": line, "kind": kind,
                 "error": f"{task.rel_path}:{line}: {error}", "raw": raw.get(line), "raw_unit": RAW_LINE}
                for line, kind, error in found]))
    quarantined = pl.concat(bad) if bad else empty_quarantine()
    return records, quarantined.sort("file", "line")


def read_preferences(path: str | Path) -> tuple[list[Preference], pl.DataFrame]:
    """Ranking or pair JSONL (file, folder or glob; .gz/.zst too) -> (labels, quarantined records).

    ``quarantined`` has corpus.schema's QUARANTINE_SCHEMA: file, line, kind, error, raw bytes.
    Raises corpus.readers.InputError when the path itself cannot be read.
    """
    return _read(path, need_ranking=True)


def read_tasks(path: str | Path) -> tuple[list[Task], pl.DataFrame]:
    """Task JSONL -> (tasks, quarantined records), checked like labels but without a ranking."""
    return _read(path, need_ranking=False)


def item_id_for(prompt: str, responses: Iterable[str]) -> str:
    """A stable item id from an item's content (the cycle's tasks; order of responses ignored)."""
    h = hashlib.sha256(json.dumps([prompt, sorted(responses)], ensure_ascii=False).encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- aggregation


@dataclass(frozen=True)
class Thresholds:
    """When an annotator is flagged: enough labels, and a bias or distance past these."""

    min_labels: int = 5
    position_bias: float = 0.5  # |mean Spearman(shown position, rank)|
    length_bias: float = 0.5  # |mean Spearman(length, preference) - the consensus's|
    distance: float = 0.4  # mean Kendall distance from the others' consensus (0.5 = chance)


@dataclass
class ItemConsensus:
    item_id: str
    prompt: str
    responses: tuple[str, ...]
    scores: list[float]  # Bradley-Terry log-strengths, mean 0
    ranking: tuple[int, ...]  # consensus ranks, 1 = best
    n_labels: int
    annotators: list[str]
    agreement: float | None  # Kendall's W over this item's labels (None: one label)
    aspects: dict[str, list[float | None]] = field(default_factory=dict)  # name -> mean score per response
    margin: float | None = None  # pairs: consensus_margin of the labels' margins (None: none given or it disagrees)
    excluded: bool = False


@dataclass
class AnnotatorProfile:
    annotator: str
    n_labels: int
    position_bias: float | None  # mean Spearman(shown position, rank): +1 = always prefers what it saw first
    length_bias: float | None  # mean Spearman(length, preference) minus the consensus's on the same items
    distance_from_consensus: float | None  # mean Kendall distance from the consensus of the other labels
    flags: list[str] = field(default_factory=list)


@dataclass
class Aggregate:
    consensus: dict[str, ItemConsensus]
    agreement: dict[str, Any]  # kendalls_w (mean over items with 2+ labels), krippendorff_alpha, per_item
    annotators: dict[str, AnnotatorProfile]
    excluded_items: list[str]
    min_agreement: float | None = None

    def kept(self) -> list[ItemConsensus]:
        """Consensus items not excluded for low agreement, in item order."""
        return [c for c in self.consensus.values() if not c.excluded]

    def to_dict(self) -> dict[str, Any]:
        return {
            "consensus": {k: asdict(v) for k, v in self.consensus.items()},
            "agreement": self.agreement,
            "annotators": {k: asdict(v) for k, v in self.annotators.items()},
            "excluded_items": list(self.excluded_items),
            "min_agreement": self.min_agreement,
        }


def _mean(xs: Sequence[float | None]) -> float | None:
    got = [x for x in xs if x is not None]
    return float(np.mean(got)) if got else None


def _aligned(label: Preference, order: tuple[str, ...]) -> Preference:
    """The label with its responses in the item's first-seen order (labels may list them differently)."""
    if label.responses == order:
        return label
    pos = [label.responses.index(r) for r in order]  # new index -> old index
    back = {old: new for new, old in enumerate(pos)}
    return Preference(
        item_id=label.item_id, prompt=label.prompt, responses=order,
        ranking=tuple(label.ranking[p] for p in pos), annotator=label.annotator, margin=label.margin,
        aspects={a: {back[i]: v for i, v in s.items()} for a, s in label.aspects.items()},
        shown_order=tuple(back[i] for i in label.shown_order) if label.shown_order is not None else None,
        response_ids=tuple(label.response_ids[p] for p in pos) if label.response_ids else None,
        comment=label.comment, created_at=label.created_at, file=label.file, line=label.line)


def _consensus_ranking(labels: Sequence[Preference], k: int) -> tuple[list[float], tuple[int, ...]]:
    scores = bradley_terry(k, wins_matrix([p.ranking for p in labels], k))
    return [float(s) for s in scores], ranks_from_scores(scores)


def consensus_margin(ranking: Sequence[int], labels: Iterable[tuple[Sequence[int], float | None]]) -> float | None:
    """The margin a pair's consensus order carries, from its labels' (ranking, margin) in the same response
    order. A margin counts only in the direction it was given: +m from a label ordering the pair as the
    consensus does, -m from one ordering it the other way. The result is the mean of these signed margins
    over the labels that gave one (labels without a margin take no part); None when no label gave one, the
    consensus is not a strict order of two responses, or the mean is not positive (the margins say the
    consensus order is not better by any amount)."""
    if len(ranking) != 2 or ranking[0] == ranking[1]:
        return None
    signed = [m if (r[0] < r[1]) == (ranking[0] < ranking[1]) else -m for r, m in labels
              if m is not None and len(r) == 2 and r[0] != r[1]]
    mean = sum(signed) / len(signed) if signed else 0.0
    return float(mean) if mean > 0 else None


def check_min_agreement(value: float | None) -> None:
    """The one range check of a ``min_agreement`` (every config that takes one: reward, DPO, the cycle):
    a Kendall's W lies in [0, 1], so 2 excluded every item (found only after loading) and -1 none."""
    if value is not None and not 0 <= value <= 1:
        raise ValueError(f"min_agreement is a Kendall's W, in [0, 1]: got {value:g}")


def aggregate(records: Iterable[Preference], min_agreement: float | None = None,
              thresholds: Thresholds | None = None) -> Aggregate:
    """Consensus, agreement and annotator profiles of labels (from ``read_preferences`` or the app).

    Items whose Kendall's W is below ``min_agreement`` are excluded (items with one label have no
    agreement to judge and are kept).
    """
    th = thresholds or Thresholds()
    by_item: dict[str, list[Preference]] = defaultdict(list)
    for p in records:
        first = by_item[p.item_id][0].responses if by_item[p.item_id] else p.responses
        by_item[p.item_id].append(_aligned(p, first))

    consensus: dict[str, ItemConsensus] = {}
    units: list[list[float]] = []
    per_annot: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for item, labels in by_item.items():
        k = len(labels[0].responses)
        scores, ranking = _consensus_ranking(labels, k)
        w = kendalls_w([p.ranking for p in labels])
        aspects = {a: [_mean([p.aspects.get(a, {}).get(i) for p in labels]) for i in range(k)]
                   for a in sorted({a for p in labels for a in p.aspects})}
        consensus[item] = ItemConsensus(
            item_id=item, prompt=labels[0].prompt, responses=labels[0].responses, scores=scores, ranking=ranking,
            n_labels=len(labels), annotators=[p.annotator for p in labels], agreement=w, aspects=aspects,
            margin=consensus_margin(ranking, [(p.ranking, p.margin) for p in labels]),
            excluded=min_agreement is not None and w is not None and w < min_agreement)
        for i in range(k):
            units.append([float(tie_ranks(p.ranking)[i]) for p in labels])
        lengths = [float(len(r)) for r in labels[0].responses]
        cons_len = spearman(lengths, [-float(r) for r in ranking])
        for p in labels:
            if p.annotator == ANONYMOUS:  # an unknown annotator per label: no profile to add it to
                continue
            stats = per_annot[p.annotator]
            stats["n"].append(1.0)
            if p.shown_order is not None:
                position = [0.0] * k
                for pos, idx in enumerate(p.shown_order):
                    position[idx] = float(pos)
                rho = spearman([-x for x in position], [-float(r) for r in p.ranking])
                if rho is not None:
                    stats["position"].append(rho)
            rho = spearman(lengths, [-float(r) for r in p.ranking])
            if rho is not None and cons_len is not None:
                stats["length"].append(rho - cons_len)
            if len(labels) >= 2:
                others = [q for q in labels if q is not p]
                stats["distance"].append(kendall_distance(p.ranking, _consensus_ranking(others, k)[1]))

    profiles: dict[str, AnnotatorProfile] = {}
    for name in sorted(per_annot):
        s = per_annot[name]
        prof = AnnotatorProfile(name, len(s["n"]), _mean(s["position"]), _mean(s["length"]), _mean(s["distance"]))
        if prof.n_labels >= th.min_labels:
            if prof.position_bias is not None and abs(prof.position_bias) >= th.position_bias:
                prof.flags.append("position_bias")
            if prof.length_bias is not None and abs(prof.length_bias) >= th.length_bias:
                prof.flags.append("length_bias")
            if prof.distance_from_consensus is not None and prof.distance_from_consensus >= th.distance:
                prof.flags.append("far_from_consensus")
        profiles[name] = prof

    per_item = {k: c.agreement for k, c in consensus.items()}
    agreement = {"kendalls_w": _mean(list(per_item.values())), "krippendorff_alpha": krippendorff_alpha(units),
                 "items_with_agreement": sum(1 for w in per_item.values() if w is not None), "per_item": per_item}
    excluded = [k for k, c in consensus.items() if c.excluded]
    return Aggregate(consensus, agreement, profiles, excluded, min_agreement)


# ---------------------------------------------------------------- report


def preference_report_html(agg: Aggregate) -> str:
    """The preference-data section body: headline figures, annotators with their flags, agreement
    per item (histogram and the least agreed items). Built from corpus/report/html.py helpers."""
    ag = agg.agreement
    n_labels = sum(c.n_labels for c in agg.consensus.values())
    flagged = sum(1 for p in agg.annotators.values() if p.flags)
    parts = [H.kpis([
        ("Items", H.fmt_int(len(agg.consensus)), f"{H.fmt_int(len(agg.excluded_items))} excluded"),
        ("Labels", H.fmt_int(n_labels), None),
        ("Annotators", H.fmt_int(len(agg.annotators)), f"{flagged} flagged"),
        ("Kendall's W", H.fmt_num(ag["kendalls_w"]), f"mean over {ag['items_with_agreement']} items with 2+ labels"),
        ("Krippendorff's α", H.fmt_num(ag["krippendorff_alpha"]), "interval, on ranks"),
    ])]
    if agg.min_agreement is not None:
        parts.append(f"<p>Items with Kendall's W below {H.esc(H.fmt_num(agg.min_agreement))} are excluded "
                     "from training.</p>")
    cols = [H.Col("annotator"), H.Col("labels", num=True), H.Col("position bias", num=True),
            H.Col("length bias", num=True), H.Col("distance from consensus", num=True), H.Col("flags")]
    rows = [[p.annotator, H.num_cell(p.n_labels), H.num_cell(p.position_bias), H.num_cell(p.length_bias),
             H.num_cell(p.distance_from_consensus),
             H.Cell(", ".join(p.flags) or "ok",
                    markup=" ".join(H.badge(f, False) for f in p.flags) or H.badge("ok", True))]
            for p in agg.annotators.values()]
    parts.append("<h3>Annotators</h3>" + H.table(cols, rows))
    ws = [w for w in ag["per_item"].values() if w is not None]
    if ws:
        edges = [i / 10 for i in range(11)]
        counts = [sum(1 for w in ws if edges[i] <= w < edges[i + 1] or (i == 9 and w == 1.0)) for i in range(10)]
        parts.append(H.histogram_chart(edges, counts, "Kendall's W per item", x_label="W"))
        worst = sorted((c for c in agg.consensus.values() if c.agreement is not None), key=lambda c: c.agreement)[:20]
        cols = [H.Col("item"), H.Col("labels", num=True), H.Col("W", num=True), H.Col("prompt"), H.Col("status")]
        rows = [[c.item_id, H.num_cell(c.n_labels), H.num_cell(c.agreement), H.truncate(c.prompt, 80),
                 H.Cell("excluded" if c.excluded else "kept", markup=H.badge("excluded" if c.excluded else "kept",
                                                                             not c.excluded))]
                for c in worst]
        parts.append("<h3>Least agreed items</h3>" + H.table(cols, rows))
    return "\n".join(parts)


def write_preference_report(agg: Aggregate, path: Path, title: str = "Preference data") -> None:
    """A standalone HTML page (atomic write) with the preference section."""
    body = f'<section id="preferences"><h2>{H.esc(title)}</h2>{preference_report_html(agg)}</section>'
    doc = H.page(title, "annotators, agreement and consensus", [("preferences", title)], body)
    write_bytes_atomic(path, doc.encode())
