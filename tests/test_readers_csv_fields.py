"""Field names that must not stop a run or lose a value: a JSON key that is a lone surrogate (catalog,
warnings), CSV headers with a byte that is not UTF-8, a repeated column or the wrong delimiter
(corpus/readers/csv.py), and schema drift counting only files with parsed records
(corpus/readers/fields.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import polars as pl
import pytest
from test_readers import one_task, read_path, write

from corpus.pipeline import Pipeline
from corpus.readers import InputSpec, whole_file_problem
from corpus.readers import fields as fields_mod


def _run(tmp_path: Path, caplog: pytest.LogCaptureFixture, *specs: InputSpec) -> tuple[list[dict], list[str]]:
    with caplog.at_level(logging.WARNING):
        result = Pipeline([]).run(list(specs), tmp_path / "out", workers=1)
    assert all(b["ok"] for b in result.balance)
    return result.balance, [r.getMessage() for r in caplog.records]


def _catalog(tmp_path: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(tmp_path / "out" / "catalog.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


# ----- a JSON key that is a lone surrogate --------------------------------------------------
def test_lone_surrogate_key_is_recorded_escaped_and_the_run_goes_on(tmp_path, caplog):
    src = tmp_path / "src"
    write(src / "a.jsonl", b'{"text":"plain"}\n')
    write(src / "k.jsonl", b'{"text":"ok key","\\udc00":"v"}\n{"text":"second"}\n')
    balance, warned = _run(tmp_path, caplog, InputSpec(source="s", path=str(src)))
    assert (balance[0]["kept"], balance[0]["quarantined"]) == (3, 0)
    # the document keeps its key as it was written (JSON escapes the surrogate)
    data = pl.read_parquet(next((tmp_path / "out" / "data").rglob("*.parquet")))
    assert '"\\udc00":"v"' in data.filter(pl.col("text") == "ok key")["meta"][0]
    assert _catalog(tmp_path, "SELECT file, field FROM source_fields ORDER BY file, field") == [
        ("a.jsonl", "text"), ("k.jsonl", "\\udc00"), ("k.jsonl", "text")]
    assert _catalog(tmp_path, "SELECT file, field, kind FROM schema_drift") == [("k.jsonl", "\\udc00", "extra")]
    drift = [w for w in warned if "schema drift" in w]
    assert len(drift) == 1 and "extra \\udc00 in 1 file(s)" in drift[0]


def test_shown_name_escapes_only_what_is_not_utf8():
    assert fields_mod.shown_name("caf\u00e9 \U0001f600") == "caf\u00e9 \U0001f600"
    assert fields_mod.shown_name("a\udc00b") == "a\\udc00b"
    lines = fields_mod.unused_keys([InputSpec(source="s", path="x", id_key="id")],
                                   [{"source": "s", "fields": {"\ud800": {"types": ["string"], "rows": 1}}}])
    assert lines and "fields: \\ud800 " in lines[0]
    lines[0].encode("utf-8")  # a terminal or log file takes it


# ----- CSV header with a byte that is not UTF-8 ----------------------------------------------
def test_csv_header_with_invalid_utf8_quarantines_every_record_with_its_bytes(tmp_path, caplog):
    path = write(tmp_path / "x.csv", b"text,t\xffag\nhello,a\n\nworld,b\n")
    docs, bad, seen = read_path(path)
    assert (docs.height, seen) == (0, 2)
    error = ("CSV file 'x.csv' header has an invalid UTF-8 byte 0xff at byte 7, in column 2 ('t\\xffag'): its "
             "field names are not text, so every record is quarantined with it — fix the header's encoding and "
             "read the file again")
    assert bad.select("line", "kind", "error", "raw", "header").rows() == [
        (1, "invalid_utf8", error + " (file line 2)", b"hello,a", b"text,t\xffag"),
        (2, "invalid_utf8", error + " (file line 4)", b"world,b", b"text,t\xffag")]
    assert whole_file_problem(one_task(path)) == error  # corpus check says it before a run
    balance, _ = _run(tmp_path, caplog, InputSpec(source="s", path=str(path)))
    assert (balance[0]["kept"], balance[0]["quarantined"], balance[0]["blank"]) == (0, 2, 1)


# ----- CSV header naming a column twice ------------------------------------------------------
@pytest.mark.parametrize(("data", "named"), [
    ("text,tag,tag\nhello,a,b\n", "'tag' 2 times (columns 2, 3)"),
    ("text,text,id\nfirst,second,1\n", "'text' 2 times (columns 1, 2)"),
    ("id,text,a,id,a,a\n1,x,2,3,4,5\n", "'id' 2 times (columns 1, 4); 'a' 3 times (columns 3, 5, 6)"),
])
def test_csv_repeated_column_quarantines_the_file_naming_it(tmp_path, data, named):
    path = write(tmp_path / "d.csv", data)
    docs, bad, seen = read_path(path)
    error = (f"CSV file 'd.csv' header names {named}: which value is the field's is unknown, so the file is not "
             "read (a record would keep one and lose the other) — rename one in the header")
    assert (docs.height, seen) == (0, 1)
    assert bad.select("line", "kind", "error").rows() == [(1, "unreadable_file", error)]
    assert whole_file_problem(one_task(path)) == error


# ----- CSV header read as one column: the wrong delimiter -------------------------------------
def test_a_comma_separated_tsv_file_is_read_with_csv_delimiter_comma(tmp_path):
    """csv_delimiter defaulted to ",", which a .tsv name turned into a tab, so "," could not be asked for
    and a comma-separated .tsv could not be read at all; unset now means by the extension."""
    path = write(tmp_path / "c.tsv", "text,id\nhello,1\n")
    docs, bad, _ = read_path(path, csv_delimiter=",")
    assert docs["text"].to_list() == ["hello"] and bad.height == 0
    docs, _, _ = read_path(write(tmp_path / "t.tsv", "text\tid\nhi there\t2\n"))
    assert docs["text"].to_list() == ["hi there"]


@pytest.mark.parametrize(("name", "data", "kw", "hint"), [
    ("w.csv", "text;id\nhello;1\n", {}, 'looks semicolon-separated (";" in it) while the file is read with "," '
     '(a .csv file\'s delimiter while csv_delimiter is unset) — set csv_delimiter: ";" for this input'),
    ("t.csv", "text\tid\nhello\t1\n", {"csv_delimiter": ","}, 'looks tab-separated ("\\t" in it) while the file '
     'is read with csv_delimiter "," — set csv_delimiter: "\\t" for this input'),
    ("p.csv", "text|id|n\nhello|1|2\n", {"csv_delimiter": ";"}, 'looks pipe-separated ("|" in it) while the file '
     'is read with csv_delimiter ";" — set csv_delimiter: "|" for this input'),
    ("c.tsv", "text,id\nhello,1\n", {}, "looks comma-separated (\",\" in it) while the file is read with \"\\t\" (a "
     ".tsv file's delimiter while csv_delimiter is unset) — set csv_delimiter: \",\" for this input"),
])
def test_csv_one_column_header_says_which_delimiter_it_looks_like(tmp_path, name, data, kw, hint):
    path = write(tmp_path / name, data)
    _, bad, _ = read_path(path, **kw)
    columns = data.split("\n")[0]
    assert bad["error"].to_list() == [f"CSV file {name!r} header has no column 'text' (columns: {columns}); the "
                                      f"header reads as one column, which {hint}"]
    assert whole_file_problem(one_task(path, **kw)) == bad["error"][0]


def test_csv_missing_column_without_another_delimiter_has_no_hint(tmp_path):
    _, bad, _ = read_path(write(tmp_path / "z.csv", "body\nx\n"))
    assert bad["error"].to_list() == ["CSV file 'z.csv' header has no column 'text' (columns: body)"]


# ----- schema drift counts parsed records only -----------------------------------------------
def test_no_drift_for_a_file_whose_records_were_all_quarantined_before_parsing(tmp_path, caplog):
    src = tmp_path / "j"
    write(src / "a.jsonl", b'{"text":"a"}\n')
    write(src / "b.jsonl", b'{"text":"\xff"}\n')
    txt = tmp_path / "t"
    write(txt / "a.txt", b"plain text\n")
    write(txt / "bad.txt", b"bad \xff utf8\n")
    balance, warned = _run(tmp_path, caplog, InputSpec(source="j", path=str(src), max_quarantine_fraction=1),
                           InputSpec(source="t", path=str(txt), format="text", max_quarantine_fraction=1))
    assert [(b["source"], b["kept"], b["quarantined"]) for b in balance] == [("j", 1, 1), ("t", 1, 1)]
    assert [w for w in warned if "schema drift" in w] == []
    assert _catalog(tmp_path, "SELECT * FROM schema_drift") == []


def test_drift_takes_its_reference_from_the_first_file_with_fields():
    def marker(file: str, names: list[str], docs: int = 1, quarantined: int = 0) -> dict:
        return {"source": "s", "file": file, "docs": docs, "quarantined": quarantined,
                "fields": {n: {"types": ["string"], "rows": 1} for n in names}}

    markers = [marker("0.jsonl", [], docs=0, quarantined=3), marker("1.jsonl", ["text", "tag"]),
               marker("2.jsonl", [], docs=0, quarantined=1), marker("3.jsonl", ["text"])]
    assert fields_mod.drift(markers) == [{"source": "s", "reference": "1.jsonl", "file": "3.jsonl",
                                          "missing": ["tag"], "extra": [], "retyped": {}}]
