"""Fields as the readers note them: schema drift counts only files with parsed records
(corpus/readers/fields.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import pytest
from test_readers import write

from corpus.pipeline import Pipeline
from corpus.readers import InputSpec
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
