"""Repeated user ids are found after reading, reported (warning, catalog, report) and handled as
on_duplicate_id says: keep (default), reject the later occurrences, or fail before any stage."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import duckdb
import polars as pl
import pytest
from helpers import read_all, run_cli, write_config

from corpus import InputSpec, Pipeline
from corpus.config import ConfigError, load_config
from corpus.ids import DuplicateIdError
from corpus.stages.filter import LengthFilter


def _inputs(tmp: Path) -> list[InputSpec]:
    """Source a: two files whose ids restart at r0, and r1 twice within f0; source b: one file reusing a's
    ids, and a unique one. Corpus order: a/f0, a/f1, b/f0."""
    files = {("a", "f0"): ["r0", "r1", "r1", "r2"], ("a", "f1"): ["r0", "x"], ("b", "f0"): ["r2", "r0", "y"]}
    for (src, name), ids in files.items():
        (tmp / "in" / src).mkdir(parents=True, exist_ok=True)
        with open(tmp / "in" / src / f"{name}.jsonl", "w") as fh:
            for k, i in enumerate(ids):
                fh.write(json.dumps({"id": i, "text": f"text of {src} {name} row {k + 1} with enough words"}) + "\n")
    return [InputSpec(source=s, path=str(tmp / "in" / s), id_key="id") for s in "ab"]


def _catalog(out: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(out / "catalog.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_keep_is_the_default_with_a_warning_catalog_and_report(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        res = Pipeline([LengthFilter(min_words=1)]).run(_inputs(tmp_path), tmp_path / "out", workers=1, quiet=True)
    assert res.manifest["docs"] == 9 and all(b["ok"] for b in res.balance)  # nothing dropped
    (warning,) = [r.getMessage() for r in caplog.records if "more than once" in r.getMessage()]
    assert "\n" not in warning and warning.startswith("3 ids occur more than once (4 later occurrences")
    assert "id 'r0' 3 times: a f0.jsonl:1, a f1.jsonl:1, b f0.jsonl:2" in warning and "on_duplicate_id" in warning
    assert _catalog(res.output, "SELECT policy, docs, repeated_ids, later_rows FROM id_check") == [("keep", 9, 3, 4)]
    rows = _catalog(res.output, "SELECT id, occurrences, occurrence, source, file, row FROM repeated_ids "
                                "ORDER BY row_id")
    assert rows == [("r0", 3, 1, "a", "f0.jsonl", 1), ("r1", 2, 1, "a", "f0.jsonl", 2),
                    ("r1", 2, 2, "a", "f0.jsonl", 3), ("r2", 2, 1, "a", "f0.jsonl", 4),
                    ("r0", 3, 2, "a", "f1.jsonl", 1), ("r2", 2, 2, "b", "f0.jsonl", 1),
                    ("r0", 3, 3, "b", "f0.jsonl", 2)]
    section = json.loads((res.output / "report.json").read_text())["sections"]["repeated_ids"]["figures"]
    assert section["repeated_ids"] == 3 and section["later_occurrences"] == 4 and section["policy"] == "keep"
    assert [(e["id"], e["file"], e["row"]) for e in section["examples"][:3]] == [
        ("r0", "f0.jsonl", 1), ("r0", "f1.jsonl", 1), ("r0", "f0.jsonl", 2)]
    assert "Repeated ids" in (res.output / "report.html").read_text()


def test_reject_keeps_the_first_occurrence_and_accounts_for_the_rest(tmp_path):
    inputs = _inputs(tmp_path)
    res = Pipeline([LengthFilter(min_words=1)]).run(inputs, tmp_path / "out", workers=2, quiet=True,
                                                    on_duplicate_id="reject")
    assert all(b["ok"] for b in res.balance)
    assert {b["source"]: (b["kept"], b["rejected"]) for b in res.balance} == {"a": (4, 2), "b": (1, 2)}
    kept = read_all(res.output / "data").sort("row_id")
    assert kept.select("id", "src_file", "src_row").rows() == [
        ("r0", "f0.jsonl", 1), ("r1", "f0.jsonl", 2), ("r2", "f0.jsonl", 4), ("x", "f1.jsonl", 2), ("y", "f0.jsonl", 3)]
    rej = read_all(res.output / "rejected" / "01-duplicate_id").sort("row_id")
    assert set(rej["reject_reason"]) == {"duplicate_id"} and set(rej["reject_stage"]) == {"duplicate_id"}
    first = dict(zip(kept["id"], kept["row_id"], strict=True))
    assert rej["id_first_row"].to_list() == [first[i] for i in rej["id"]]
    assert (res.output / "rejected").exists() and [p.name for p in (res.output / "rejected").iterdir()] == [
        "01-duplicate_id"]  # the user's filter is stage 02 and dropped nothing
    drops = _catalog(res.output, "SELECT stage, reason, sum(docs) FROM drops GROUP BY ALL")
    assert drops == [("01-duplicate_id", "duplicate_id", 4)]
    # the same output folder, back to keep: the user's stages chain from the read again, nothing is lost
    again = Pipeline([LengthFilter(min_words=1)]).run(inputs, tmp_path / "out", workers=1, quiet=True)
    assert again.manifest["docs"] == 9 and not (res.output / "rejected").exists()


def test_fail_stops_before_any_stage_listing_examples(tmp_path):
    with pytest.raises(DuplicateIdError) as err:
        Pipeline([LengthFilter(min_words=1)]).run(_inputs(tmp_path), tmp_path / "out", workers=1, quiet=True,
                                                  on_duplicate_id="fail")
    msg = str(err.value)
    assert msg.splitlines()[0].startswith("3 ids occur more than once") and "on_duplicate_id: fail" in msg
    assert "  id 'r1' 2 times: a f0.jsonl:2, a f0.jsonl:3" in msg.splitlines()
    out = tmp_path / "out"
    assert not (out / "data").exists() and not list((out / "work").glob("01-*"))  # no stage ran
    assert _catalog(out, "SELECT status FROM runs") == [("failed",)]
    assert _catalog(out, "SELECT policy, repeated_ids FROM id_check") == [("fail", 3)]


def test_derived_ids_are_checked_too(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.jsonl").write_text(json.dumps({"text": "first document"}) + "\n")
    (tmp_path / "b").mkdir()  # an explicit id that equals a's derived one
    (tmp_path / "b" / "g.jsonl").write_text(json.dumps({"key": "a:f.jsonl:1", "text": "second document"}) + "\n")
    inputs = [InputSpec(source="a", path=str(tmp_path / "a")), InputSpec(source="b", path=str(tmp_path / "b"),
                                                                          id_key="key")]
    with pytest.raises(DuplicateIdError, match="id 'a:f.jsonl:1' 2 times: a f.jsonl:1, b g.jsonl:1"):
        Pipeline([]).run(inputs, tmp_path / "out", workers=1, quiet=True, on_duplicate_id="fail")
    res = Pipeline([]).run(inputs[:1], tmp_path / "alone", workers=1, quiet=True, on_duplicate_id="fail")
    assert res.manifest["docs"] == 1  # derived ids alone never repeat
    assert _catalog(res.output, "SELECT repeated_ids, later_rows FROM id_check") == [(0, 0)]


def test_derived_ids_proven_unique_are_not_read_but_colons_in_names_are_checked(tmp_path, monkeypatch):
    import corpus.ids as ids

    for folder, name in (("x", "y:z.jsonl"), ("xy", "z.jsonl")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_text(json.dumps({"text": f"a document in {folder}"}) + "\n")
    # Sources "x:y" and "x" with files "z.jsonl" and "y:z.jsonl": both derive the id "x:y:z.jsonl:1".
    clash = [InputSpec(source="x:y", path=str(tmp_path / "xy")), InputSpec(source="x", path=str(tmp_path / "x"))]
    with pytest.raises(DuplicateIdError, match="id 'x:y:z.jsonl:1' 2 times"):
        Pipeline([]).run(clash, tmp_path / "clash", workers=1, quiet=True, on_duplicate_id="fail")
    # Distinct prefixes: unique by construction, proven without reading a single id.
    monkeypatch.setattr(ids, "find_copies", lambda *a, **k: pytest.fail("derived unique ids were read"))
    plain = [InputSpec(source="xy", path=str(tmp_path / "xy")), InputSpec(source="x", path=str(tmp_path / "x"))]
    res = Pipeline([]).run(plain, tmp_path / "plain", workers=1, quiet=True, on_duplicate_id="reject")
    assert res.manifest["docs"] == 2 and all(b["ok"] for b in res.balance)
    assert _catalog(res.output, "SELECT docs, repeated_ids, later_rows FROM id_check") == [(2, 0, 0)]


def test_yaml_key_and_cli(tmp_path):
    _inputs(tmp_path)
    body = """output: out
on_duplicate_id: {policy}
inputs:
  - {{source: a, path: in/a, id_key: id}}
  - {{source: b, path: in/b, id_key: id}}
pipeline:
  - op: length_filter
    min_words: 1
"""
    cfg = write_config(tmp_path / "run.yaml", body.format(policy="reject"))
    assert load_config(cfg).on_duplicate_id == "reject"
    with pytest.raises(ConfigError, match=r"bad.yaml:2: on_duplicate_id: expected one of keep, reject, fail, got"):
        load_config(write_config(tmp_path / "bad.yaml", body.format(policy="drop")))
    r = run_cli("run", str(write_config(tmp_path / "fail.yaml", body.format(policy="fail"))), "--quiet")
    assert r.returncode == 2 and "error:" in r.stderr and "id 'r0' 3 times" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("run", str(cfg), "--quiet")
    assert r.returncode == 0, r.stderr
    assert pl.read_parquet(tmp_path / "out" / "data" / "*.parquet").height == 5
