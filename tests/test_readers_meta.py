"""A record's meta: its own fields as it wrote them, whatever records share its JSONL piece (polars
unifies a field's type across a piece; corpus/readers/jsonl.py)."""

from __future__ import annotations

import json
import random
from typing import Any

import polars as pl
import pytest
from test_readers import jsonl, read_path, write

from corpus.readers import jsonl as jsonl_reader


def _canonical(value: Any) -> str:
    # json.dumps tells 1 from 1.0 and true from 1, where == on decoded values does not.
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _sorted_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    assert keys == sorted(keys), f"keys not sorted: {keys}"
    return dict(pairs)


def _expected_meta(line: str) -> dict[str, Any]:
    rec = json.loads(line)
    return {k: v for k, v in rec.items() if k not in ("id", "text") and v is not None}


def test_a_records_meta_does_not_depend_on_the_records_read_with_it(tmp_path):
    """The report: p's list became the string "[1, 2]" and its 1 became 1.0, q got a key it lacks."""
    lines = ['{"id":"p","text":"doc p","attrs":{"k":[1,2]},"v":1}', '{"id":"q","text":"doc q","attrs":{},"v":2.5}',
             '{"id":"r","text":"doc r","attrs":{"k":"s"}}']
    docs = read_path(write(tmp_path / "mixed.jsonl", "\n".join(lines) + "\n"), id_key="id")[0]
    want = ['{"attrs":{"k":[1,2]},"v":1}', '{"attrs":{},"v":2.5}', '{"attrs":{"k":"s"}}']
    assert docs.select("id", "meta").rows() == list(zip("pqr", want, strict=True))
    for i, line in enumerate(lines):  # each alone gives the same text
        alone = read_path(write(tmp_path / f"one-{i}.jsonl", line + "\n"), id_key="id")[0]
        assert alone["meta"].to_list() == [want[i]]
    # a field that is a list in one record and a string in another (polars: all strings); a nested
    # object's keys come sorted whatever order the piece first saw them in
    recs = [{"text": "a", "f": [1, 2], "o": {"b": 1, "a": 2}}, {"text": "b", "f": "x", "o": {"a": 3, "b": 4}}]
    docs = read_path(write(tmp_path / "f.jsonl", jsonl(recs)))[0]
    assert docs["meta"].to_list() == ['{"f":[1,2],"o":{"a":2,"b":1}}', '{"f":"x","o":{"a":3,"b":4}}']
    # nested keys polars would read as wildcards (the per-record path reads them)
    recs = [{"text": "a", "o": {"*": 1, "^k$": [{"*": 2}]}}, {"text": "b", "o": {"b": 1}}]
    docs = read_path(write(tmp_path / "w.jsonl", jsonl(recs)))[0]
    assert docs["meta"].to_list() == ['{"o":{"*":1,"^k$":[{"*":2}]}}', '{"o":{"b":1}}']


# ----- property: random records with nested and mixed values -----------------------------------
_STRINGS = ["s", "1", "-2.5", "1e5", "true", "false", "null", "[1, 2]", '{"k": 1}', "", " ", "é\u2028",
            "2026-01-01", "NaN"]
_KEYS = ["b", "a", "k", "c"]
Shape = tuple[str, Any]


def _shape(rng: random.Random, depth: int = 0) -> Shape:
    """A field's values in one file, in mixes polars reads as one piece (it refuses some, e.g. a list
    beside an int: such a piece takes the per-record path whole, which is not what this test is after)."""
    kind = rng.choice(["num", "str", "bool"] + (["obj", "list"] if depth < 2 else []))
    if kind == "str":  # strings beside one other type, which polars then writes as text
        return ("str", rng.choice([5, 2.5, True, [1, 2], {"k": [1]}]))
    if kind == "obj":
        return ("obj", {k: _shape(rng, depth + 1) for k in _KEYS})
    if kind == "list":
        return ("list", _shape(rng, depth + 1))
    return (kind, None)


def _value(rng: random.Random, shape: Shape) -> Any:
    kind, inner = shape
    if rng.random() < 0.1:
        return None
    if kind == "obj":  # keys in any order, any of them missing
        return {k: _value(rng, inner[k]) for k in rng.sample(_KEYS, rng.randint(0, len(_KEYS)))}
    if kind == "list":
        return [_value(rng, inner) for _ in range(rng.randint(0, 3))]
    if kind == "num":  # ints beside floats, integral floats, big ints
        return rng.choice([0, 1, -7, 2**40, 2**63 + 5, 2.0, 0.5, -1.25, 1e20, 1.5e-05, 3.0])
    if kind == "str":
        return rng.choice([rng.choice(_STRINGS), inner])
    return rng.choice([True, False])


def _records(seed: int, n: int = 60) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    shapes = {f"f{i}": _shape(rng) for i in range(5)}
    recs = []
    for i in range(n):
        rec: dict[str, Any] = {"id": f"r{i}", "text": f"document {i}"}
        rec.update({f: _value(rng, s) for f, s in shapes.items() if rng.random() < 0.8})
        recs.append(rec)
    return recs


@pytest.mark.parametrize("seeds", [range(0, 20), range(20, 40)])
def test_meta_is_each_records_own_fields_property(tmp_path, monkeypatch, seeds):
    """Random records with nested and mixed values, read in one piece: each record's meta is json.loads
    of its own line less text and id (and its null top-level fields), with the same types (1 stays 1,
    "1" stays a string, no null members added), keys sorted at every level; and the hot path still
    reads the records polars' unification left alone."""
    per_record = 0
    add_line = jsonl_reader.DocBuilder.add_line

    def counted(self, line: bytes, row: int) -> None:
        nonlocal per_record
        per_record += 1
        add_line(self, line, row)

    monkeypatch.setattr(jsonl_reader.DocBuilder, "add_line", counted)
    total = 0
    for seed in seeds:
        lines = [json.dumps(r, ensure_ascii=False) for r in _records(seed)]
        data = "\n".join(lines) + "\n"
        pl.read_ndjson(data.encode(), infer_schema_length=None)  # one piece polars reads: the hot path's case
        docs, bad, _ = read_path(write(tmp_path / f"r{seed}.jsonl", data), id_key="id")
        assert bad.height == 0 and docs["id"].to_list() == [f"r{i}" for i in range(len(lines))]
        for line, meta in zip(lines, docs["meta"], strict=True):
            got = json.loads(meta, object_pairs_hook=_sorted_pairs)
            assert _canonical(got) == _canonical(_expected_meta(line)), (seed, line)
        total += len(lines)
    assert 0 < per_record < total  # some records took the per-record path, not all

