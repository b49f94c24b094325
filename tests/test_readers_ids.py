"""A record's id is the one it wrote (its JSON number's text as json.loads and str give it, or its string),
whatever records share its JSONL piece: polars unifies a field's type across a piece
(corpus/readers/jsonl.py)."""

from __future__ import annotations

import json

import polars as pl
from test_readers import read_path, write

from corpus import InputSpec, Pipeline

BIG = ['{"text":"a","id":12345678901234567890}', '{"text":"b","id":12345678901234567891}',
       '{"text":"c","id":9007199254740993}', '{"text":"d","id":9007199254740992}', '{"text":"e","id":0.5}']


def _own_ids(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        value = json.loads(line)["id"]
        out.append(("true" if value else "false") if isinstance(value, bool) else str(value))
    return out


def test_an_id_is_what_its_record_wrote_whatever_shares_its_piece(tmp_path):
    """Big ints beside a float were unified to Float64 (1.2345678901234567e+19 twice, 9007199254740992.0
    twice); 1 beside 2.5 was "1.0" (but "1" in a piece with a bad line); 1.0 beside a string was "1"."""
    cases = [
        BIG,
        ['{"text":"a","id":1}', '{"text":"b","id":2.5}'],
        ['{"text":"a","id":1.0}', '{"text":"b","id":"x"}', '{"text":"c","id":"1"}'],
        ['{"text":"a","id":1e2}', '{"text":"b","id":1.5e-05}', '{"text":"c","id":true}', '{"text":"d","id":"true"}'],
        ['{"text":"a","doc":{"id":1}}', '{"text":"b","doc":{"id":2.5}}'],
    ]
    for n, lines in enumerate(cases):
        id_key = "doc.id" if "doc" in lines[0] else "id"
        want = _own_ids(lines) if id_key == "id" else ["1", "2.5"]
        fast = read_path(write(tmp_path / f"f{n}.jsonl", "\n".join(lines) + "\n"), id_key=id_key)[0]
        slow = read_path(write(tmp_path / f"s{n}.jsonl", "\n".join(lines) + "\n{bad\n"), id_key=id_key)[0]
        assert fast["id"].to_list() == want, lines
        assert slow["id"].to_list() == want, lines


def test_unique_big_int_ids_are_not_rejected_as_duplicates(tmp_path):
    (tmp_path / "in").mkdir()
    write(tmp_path / "in" / "a.jsonl", "\n".join(BIG) + "\n")
    Pipeline([]).run([InputSpec(source="s", path=str(tmp_path / "in"), id_key="id")], tmp_path / "out",
                     workers=1, quiet=True, on_duplicate_id="reject")
    docs = pl.read_parquet(tmp_path / "out" / "data" / "*.parquet").sort("src_row")
    assert docs["id"].to_list() == _own_ids(BIG)
