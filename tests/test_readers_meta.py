"""A record's meta: its own fields as it wrote them, whatever records share its JSONL piece (polars
unifies a field's type across a piece; corpus/readers/jsonl.py)."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
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


# ----- a corpusforge document read back ---------------------------------------------------------
_DOC_META = [
    ('{"text": "a", "meta": "{\\"x\\": 1, \\"y\\": [1, 2.5]}", "z": 2}', '{"x":1,"y":[1,2.5],"z":2}'),
    ('{"text": "b", "meta": "{\\"x\\": 1, \\"w\\": 0}", "x": 5}', '{"w":0,"x":5}'),  # its own field wins
    ('{"text": "c", "meta": "not json {"}', '{"meta":"not json {"}'),  # not an object: a field as any other
    ('{"text": "d", "meta": "[1, 2]"}', '{"meta":"[1, 2]"}'),
    ('{"text": "e", "meta": " {\\"a\\": null, \\"b\\": {\\"d\\": 1, \\"c\\": null}} "}', '{"b":{"c":null,"d":1}}'),
    # a field named like a document column stays, unless the record has them all (a document)
    ('{"text": "f", "meta": "{\\"x\\": 1}", "source": "web"}', '{"source":"web","x":1}'),
    ('{"text": "g", "meta": "{\\"x\\": 1}", "source": "s", "src_file": "f.jsonl", "src_row": 1, "row_id": 7, '
     '"copy_of_row": 3}', '{"x":1}'),
    ('{"text": "h", "source": "s", "src_file": "f.jsonl", "src_row": 1, "row_id": 7}',
     '{"row_id":7,"source":"s","src_file":"f.jsonl","src_row":1}'),
]


def test_a_documents_meta_field_is_its_meta_on_every_path(tmp_path):
    """A `meta` field holding JSON text of an object (a corpusforge document) gives its members to meta;
    the document columns go when the record has them all; anything else is a field as before. Same on
    the hot path, the per-record path and Parquet."""
    lines = [line for line, _ in _DOC_META]
    want = [meta for _, meta in _DOC_META]
    fast = read_path(write(tmp_path / "fast.jsonl", "\n".join(lines) + "\n"))[0]
    slow = read_path(write(tmp_path / "slow.jsonl", "\n".join(lines) + "\n{bad\n"))[0]
    assert fast["meta"].to_list() == want and slow["meta"].to_list() == want
    (tmp_path / "p").mkdir()
    pl.DataFrame([json.loads(line) for line in lines]).write_parquet(tmp_path / "p" / "d.parquet")
    assert read_path(tmp_path / "p" / "d.parquet")[0]["meta"].to_list() == want
    # a typed NaN beside a document's meta is null, as the hot path writes it beside any other meta
    nan = pl.DataFrame({"text": ["a", "b"], "meta": ['{"x":1}', None], "q": [float("nan"), float("nan")]})
    nan.write_parquet(tmp_path / "p" / "nan.parquet")
    assert read_path(tmp_path / "p" / "nan.parquet")[0]["meta"].to_list() == ['{"q":null,"x":1}', '{"q":null}']
    # an object (not JSON text) is a field as before; so is a meta renamed or left out by meta_keys
    obj = write(tmp_path / "obj.jsonl", '{"text": "o", "meta": {"x": 1}, "source": "s"}\n')
    assert read_path(obj)[0]["meta"].to_list() == ['{"meta":{"x":1},"source":"s"}']
    renamed = read_path(tmp_path / "fast.jsonl", meta_rename={"meta": "orig"})[0]
    assert renamed["meta"][0] == '{"orig":"{\\"x\\": 1, \\"y\\": [1, 2.5]}","z":2}'
    assert read_path(tmp_path / "fast.jsonl", meta_keys=["z"])[0]["meta"][0] == '{"z":2}'


@pytest.mark.parametrize("form", ["jsonl", "parquet", "data"])
def test_a_corpus_read_back_keeps_ids_texts_and_meta(tmp_path, form):
    """`corpus export` (JSONL, Parquet) or the output's data/ read by another run, twice over: the same
    ids, texts and meta, where meta nested one level deeper each time, with the old run's row_id, source,
    src_file and src_row in it."""
    from corpus import InputSpec, Pipeline
    from corpus.export import export

    recs = [{"id": f"d{i}", "text": f"Document {i} has words.", "n": i, "score": [0.5, 1.0][i % 2],
             "tags": {"b": [1, 2.5], "a": None if i % 3 else "x"}, "source": "crawl"} for i in range(12)]
    write(tmp_path / "in" / "a.jsonl", jsonl(recs))

    def run(path: Path, out: Path) -> pl.DataFrame:
        Pipeline([]).run([InputSpec(source="rt", path=str(path), id_key="id")], out, workers=1, quiet=True)
        return pl.read_parquet(out / "data" / "*.parquet").sort("id")

    first = run(tmp_path / "in", tmp_path / "out0")
    assert json.loads(first["meta"][0]) == {"n": 0, "score": 0.5, "source": "crawl", "tags": {"a": "x", "b": [1, 2.5]}}
    out = tmp_path / "out0"
    for i in (1, 2):
        if form == "data":
            back = out / "data"
        else:
            back = tmp_path / f"export{i}"
            export(out, back, form)
        out = tmp_path / f"out{i}"
        again = run(back, out)
        assert again.select("id", "text", "meta").equals(first.select("id", "text", "meta"))
        assert (again["source"] == "rt").all() and not (again["src_file"] == "a.jsonl").any()  # the new run's own


def _count_per_record(monkeypatch) -> list[int]:
    calls = [0]
    add_line = jsonl_reader.DocBuilder.add_line

    def counted(self, line: bytes, row: int) -> None:
        calls[0] += 1
        add_line(self, line, row)

    monkeypatch.setattr(jsonl_reader.DocBuilder, "add_line", counted)
    return calls


def test_numeric_strings_stay_on_the_hot_path_unless_the_piece_mixes_types(tmp_path, monkeypatch):
    """A field of numeric-looking strings in every record ("zip": "12345") stays on polars: only a piece
    that writes the key with a non-string value somewhere (at any depth) sends such strings to the
    per-record path, and then each record's meta is its own."""
    calls = _count_per_record(monkeypatch)
    recs = [{"id": f"r{i}", "text": f"doc {i}", "zip": f"{12345 + i}", "year": "2020", "o": {"z": "1e5"},
             "n": None if i % 2 else "true", "l": [{"z": "7"}]} for i in range(50)]
    docs = read_path(write(tmp_path / "strings.jsonl", jsonl(recs)), id_key="id")[0]
    assert calls[0] == 0
    assert json.loads(docs["meta"][0]) == {"zip": "12345", "year": "2020", "o": {"z": "1e5"}, "n": "true",
                                           "l": [{"z": "7"}]}
    # "zip" a number in one record, a numeric string in another; a nested key; a key written with an escape
    cases = [
        ['{"text":"a","zip":12345}', '{"text":"b","zip":"12345"}', '{"text":"c","zip":"x"}'],
        ['{"text":"a","o":{"z":5}}', '{"text":"b","o":{"z":"5"}}', '{"text":"c","o":{"z":"x"}}'],
        ['{"text":"a","\\u007aip":12345}', '{"text":"b","zip":"12345"}', '{"text":"c","zip":"x"}'],
        ['{"text":"a","zip": true}', '{"text":"b","zip":"true"}', '{"text":"c","zip":"x"}'],
    ]
    for n, lines in enumerate(cases):
        calls[0] = 0
        docs = read_path(write(tmp_path / f"mixed{n}.jsonl", "\n".join(lines) + "\n"))[0]
        assert [json.loads(m) for m in docs["meta"]] == [_expected_meta(line) for line in lines], lines
        assert calls[0] == 2, lines  # the number and the numeric string; "x" is as written


def test_a_lone_surrogate_escape_in_an_id_or_meta_is_read_alike_on_every_path(tmp_path):
    """polars reads a lone high surrogate escape (\\ud800-\\udbff) as NUL: an id, a meta value or key
    ("x\\ud800") came out "x\\u0000" on the hot path, where the per-record path quarantines the id and
    keeps the escape in meta."""
    lines = ['{"text":"a","id":"x\\ud800"}', '{"text":"b","id":"b","m":"x\\udbff"}',
             '{"text":"c","id":"c","o":{"k":"\\ud800y"}}', '{"text":"d","id":"d","l":["\\ud801"]}',
             '{"text":"e","id":"e","k\\ud800":1}', '{"text":"f","id":"f","o":{"k\\ud800":2}}',
             '{"text":"g","id":"g","m":"nul \\u0000 as written"}', '{"text":"h","id":"h","m":"plain"}']
    data = "\n".join(lines) + "\n"
    fast, fast_bad, _ = read_path(write(tmp_path / "fast.jsonl", data), id_key="id")
    slow, slow_bad, _ = read_path(write(tmp_path / "slow.jsonl", data + "{bad\n"), id_key="id")
    assert fast.select("id", "meta").rows() == slow.select("id", "meta").rows()
    assert fast_bad["kind"].to_list() == ["invalid_utf8"]
    assert slow_bad["kind"].to_list() == ["invalid_utf8", "invalid_json"]
    assert "\x00" not in "".join(fast["meta"].to_list()[:-2])
    assert fast["meta"].to_list()[0] == '{"m":"x\\udbff"}'


def test_nan_and_infinity_in_typed_columns_are_null_on_every_path(tmp_path):
    """JSON has no NaN or infinity: a typed Parquet or DuckDB float is null in meta on the hot path
    (polars) and on the per-record path, and in a text_json text (which was '[NaN, 2.5]')."""
    from test_readers import read

    from corpus.readers import InputSpec, plan_tasks

    nan, inf = float("nan"), float("inf")
    (tmp_path / "p").mkdir()
    hot_df = pl.DataFrame({"text": ["a", "b"], "f": [nan, 2.5], "g": [[inf], [1.5]]})
    hot_df.write_parquet(tmp_path / "p" / "hot.parquet")
    hot = read_path(tmp_path / "p" / "hot.parquet")[0]
    assert hot["meta"].to_list() == ['{"f":null,"g":[null]}', '{"f":2.5,"g":[1.5]}']
    # a list text takes the per-record path
    pl.DataFrame({"text": [[1.0], [nan, 2.5]], "f": [nan, 2.5], "g": [[inf], [1.5]]}).write_parquet(
        tmp_path / "p" / "rec.parquet")
    rec = read_path(tmp_path / "p" / "rec.parquet", text_json=True)[0]
    assert rec.select("text", "meta").rows() == [("[1.0]", '{"f":null,"g":[null]}'),
                                                 ("[null, 2.5]", '{"f":2.5,"g":[1.5]}')]
    (task,) = plan_tasks([InputSpec(source="q", format="duckdb", text_json=True,
                                    query="SELECT ['nan'::DOUBLE, 1.5] AS text, 'inf'::DOUBLE AS f")])
    assert read(task)[0].select("text", "meta").rows() == [("[null, 1.5]", '{"f":null}')]


# ----- columns a frame cannot hold ---------------------------------------------------------------
def test_repeated_or_unreadable_columns_quarantine_a_parquet_file_and_stop_a_duckdb_query(tmp_path):
    """A column name given twice (which value is meta's?) or a type polars cannot import was a polars
    traceback (DuplicateError, ComputeError, a panic); a Parquet file is now quarantined whole naming the
    column, as README promises for unreadable files, and a DuckDB query is a one-line error saying what
    to do."""
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq
    from test_readers import read

    from corpus.readers import InputError, InputSpec, plan_tasks
    from corpus.readers.parquet import parquet_problem

    (tmp_path / "p").mkdir()
    dup = pa.Table.from_arrays([pa.array(["doc a"]), pa.array([1]), pa.array([2])], names=["text", "x", "x"])
    pq.write_table(dup, tmp_path / "p" / "dup.parquet")
    docs, bad, seen = read_path(tmp_path / "p" / "dup.parquet")
    assert (docs.height, seen, bad["kind"].to_list()) == (0, 1, ["unreadable_file"])
    assert "'x' 2 times (columns 2, 3)" in bad["error"][0] and "rename one" in bad["error"][0]
    (task,) = plan_tasks([InputSpec(source="s", path=str(tmp_path / "p" / "dup.parquet"))])
    assert parquet_problem(task) == bad["error"][0]  # corpus check says so before a run
    # the columns read with meta_keys do not repeat a name: the file is read
    assert read_path(tmp_path / "p" / "dup.parquet", meta_keys=[])[0]["text"].to_list() == ["doc a"]
    wide = pa.table({"text": ["doc a"], "d": pa.array([decimal.Decimal("1.5")], pa.decimal256(60, 2))})
    pq.write_table(wide, tmp_path / "p" / "d256.parquet")
    docs, bad, _ = read_path(tmp_path / "p" / "d256.parquet")
    assert (docs.height, bad["kind"].to_list()) == (0, ["unreadable_file"])
    assert "column 'd' (type decimal256(60, 2)) cannot be read" in bad["error"][0]

    for query, said in (("SELECT 'doc a' AS text, 1 AS x, 2 AS x", "names 'x' 2 times (columns 2, 3): give each its "
                         "own name in the query (… AS x_2)"),
                        ("SELECT 'doc a' AS text, INTERVAL 1 DAY AS iv", "column 'iv' (type month_day_nano_interval) "
                         "cannot be read")):
        (task,) = plan_tasks([InputSpec(source="q", format="duckdb", query=query)])
        with pytest.raises(InputError) as exc:
            read(task)
        assert said in str(exc.value) and str(exc.value).startswith("input 'q': ") and "\n" not in str(exc.value)
    assert "cast it in the query (iv::VARCHAR)" in str(exc.value)


def test_a_mislabelled_gz_read_as_one_document_keeps_its_bytes_in_quarantine(tmp_path):
    """A .gz that is plain text, read one document per file, was quarantined with 0 bytes where the line
    reader and JSONL keep the bytes the source kept (not gzip data); bytes after the last stream too."""
    plain = b"hello plain text\nsecond line\n"
    for mode in ("file", "line"):
        docs, bad, _ = read_path(write(tmp_path / mode / "mis.txt.gz", plain), text_mode=mode)
        assert (docs.height, bad["kind"].to_list(), bad["raw"].to_list()) == (0, ["unreadable_file"], [plain])
    docs, bad, _ = read_path(write(tmp_path / "after.txt.gz", gzip.compress(plain) + b"junk"))
    assert (docs.height, bad["raw"].to_list()) == (0, [plain + b"junk"])
