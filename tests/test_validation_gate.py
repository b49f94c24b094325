"""The `validate` stage: a suite as a gate in a pipeline, with on_fail stop | warn | quarantine; its
results in the run catalog and the report; nothing lost whatever it does."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pytest
from helpers import write_config

pytest.importorskip("great_expectations")

from corpus import InputSpec, MapOperator, Pipeline  # noqa: E402
from corpus.config import ConfigError, load_config  # noqa: E402
from corpus.executor import PipelineError  # noqa: E402
from corpus.operators import StopRun  # noqa: E402
from corpus.validation.operator import Validate  # noqa: E402

UNIQUE_IDS = "expect_column_values_to_be_unique(id)"
LANGS = "expect_column_values_to_be_in_set(lang)"
NOT_NULL = "expect_column_values_to_not_be_null(lang)"


@dataclass
class LangFromMeta(MapOperator):
    """What a language-identification stage adds: lang and lang_score (here taken from the input's meta)."""

    name = "lang_from_meta"
    needs = {"meta": pl.String}
    adds = {"lang": pl.String, "lang_score": pl.Float64}

    def map(self, df: pl.DataFrame) -> pl.DataFrame:
        return df.with_columns(pl.col("meta").str.json_path_match("$.lang").alias("lang"),
                               pl.col("meta").str.json_path_match("$.score").cast(pl.Float64).alias("lang_score"))


def _records() -> list[dict]:
    """40 English documents; 3 in German, 2 without a language, id 'doc-7' twice."""
    rows = [{"id": f"doc-{i}", "text": f"An ordinary English document, number {i}, about the harbour.",
             "lang": "en", "score": 0.9} for i in range(40)]
    for i in (3, 11, 25):
        rows[i].update(lang="de", text=f"Ein deutsches Dokument Nummer {i} über den Hafen.")
    for i in (5, 30):
        del rows[i]["lang"]
    rows[20]["id"] = "doc-7"
    return rows


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("gate")
    (folder / "in").mkdir()
    pl.DataFrame(_records()).write_ndjson(folder / "in" / "a.jsonl")
    return folder


def suite(folder: Path, *expectations: dict, name: str = "gate") -> str:
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"name": name, "expectations": list(expectations)}))
    return str(path)


def unique_ids() -> dict:
    return {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "id"}}


def english() -> dict:
    return {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "lang", "value_set": ["en"]}}


def run(data: Path, out: str, *ops) -> tuple:
    inputs = [InputSpec(source="web", path=str(data / "in"), id_key="id")]
    return Pipeline([LangFromMeta(), *ops]).run(inputs, data / out, workers=1, quiet=True)


def catalog(out: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(out / "catalog.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def rejected(out: Path) -> pl.DataFrame:
    files = sorted((out / "rejected").rglob("*.parquet"))
    return pl.read_parquet(files) if files else pl.DataFrame()


def test_a_passing_gate_passes_every_document_on_unchanged(data, tmp_path):
    s = suite(tmp_path, {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "text"}},
              {"type": "expect_column_values_to_be_between", "kwargs": {"column": "lang_score", "min_value": 0.5}})
    res = run(data, "pass", Validate(suite=s))
    assert res.balance[0]["kept"] == 40 and res.balance[0]["ok"]
    out = data / "pass"
    work = next((out / "work").glob("02-validate-*"))
    before = next((out / "work").glob("01-lang_from_meta-*"))
    shard = next((work / "shards").glob("*.parquet"))
    assert shard.stat().st_ino == (before / "shards" / shard.name).stat().st_ino  # hard-linked, not rewritten
    assert catalog(out, "SELECT count(*), bool_and(success), any_value(action) FROM validation") == [
        (2, True, "passed")]
    report = json.loads((out / "report.json").read_text())["sections"]["stage-validate"]
    assert report["title"] == "Data contracts" and report["figures"]["02-validate"]["success"] is True


def test_duplicate_ids_stop_the_run_with_the_expectation_named(data, tmp_path):
    with pytest.raises(StopRun) as err:
        run(data, "stop", Validate(suite=suite(tmp_path, unique_ids(), english()), on_fail="stop"))
    msg = str(err.value)
    assert msg.startswith("02-validate: suite 'gate'") and f"{UNIQUE_IDS}: 2 of 40 rows unexpected" in msg
    assert f"{LANGS}: 3 of 38 rows unexpected" in msg and "on_fail: stop" in msg
    out = data / "stop"
    assert not (out / "data").exists() and not (out / "manifest.json").exists()  # nothing published
    assert catalog(out, "SELECT status FROM runs") == [("failed",)]
    rows = catalog(out, "SELECT expectation, success, unexpected_count, action FROM validation ORDER BY 1")
    assert rows == [(LANGS, False, 3, "stopped"), (UNIQUE_IDS, False, 2, "stopped")]
    examples = json.loads(catalog(out, f"SELECT examples FROM validation WHERE expectation = '{UNIQUE_IDS}'")[0][0])
    assert [e["id"] for e in examples] == ["doc-7", "doc-7"]
    report = json.loads((out / "report.json").read_text())  # the report says why the run stopped
    gate = report["sections"]["stage-validate"]["figures"]["02-validate"]
    assert report["status"] == "failed" and gate["action"] == "stopped" and gate["failed"] == [UNIQUE_IDS, LANGS]
    assert "doc-7" in (out / "report.html").read_text()


def test_a_stopped_run_goes_on_once_the_suite_is_fixed(data, tmp_path):
    path = suite(tmp_path, unique_ids(), name="fixable")
    with pytest.raises(StopRun):
        run(data, "fixed", Validate(suite=path))
    Path(path).write_text(json.dumps({"name": "fixable", "expectations": [
        {**unique_ids(), "severity": "warning"}]}))  # a person decides repeated ids only warn
    res = run(data, "fixed", Validate(suite=path))
    assert res.balance[0]["kept"] == 40
    assert catalog(data / "fixed", "SELECT success, severity, action FROM validation WHERE run_id = "
                                   "(SELECT run_id FROM runs ORDER BY started DESC LIMIT 1)") == [
        (False, "warning", "passed")]


def test_the_report_of_a_stopped_run_never_shows_the_previous_runs_corpus(data, tmp_path):
    """A run stopped by its gate publishes nothing: its report said "kept 40 of 40" beside the shards and
    Parquet bytes of the corpus an earlier run had published in the same folder."""
    path = suite(tmp_path, english(), name="lang")
    run(data, "again", Validate(suite=path, on_fail="quarantine"))
    out = data / "again"
    before = json.loads((out / "manifest.json").read_text())
    with pytest.raises(StopRun):
        run(data, "again", Validate(suite=path, on_fail="stop"))
    report = json.loads((out / "report.json").read_text())
    output = report["sections"]["overview"]["figures"]["output"]
    assert report["status"] == "failed" and output["published"] is False
    assert output["shards"] == 0 and output["parquet_bytes"] is None
    assert any("published nothing (failed): data/ still holds the corpus of run " + before["run_id"] in w
               for w in report["warnings"]), report["warnings"]
    html = (out / "report.html").read_text()
    assert "nothing published" in html and "not published" in html
    assert json.loads((out / "manifest.json").read_text()) == before  # the earlier corpus, untouched


def test_wrong_language_warns_and_passes_documents_on(data, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        res = run(data, "warn", Validate(suite=suite(tmp_path, english()), on_fail="warn"))
    assert res.balance[0]["kept"] == 40 and not (data / "warn" / "rejected").exists()
    warned = [r.getMessage() for r in caplog.records if "02-validate" in r.getMessage()]
    assert len(warned) == 1 and f"{LANGS}: 3 of 38 rows unexpected" in warned[0]
    assert "on_fail: warn: documents pass on" in warned[0] and "id 'doc-3': de" in warned[0]
    assert catalog(data / "warn", "SELECT action, success FROM validation") == [("warned", False)]


def test_quarantine_moves_the_failing_rows_with_the_expectation_as_reason(data, tmp_path):
    s = suite(tmp_path, unique_ids(), english(),
              {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "lang"}})
    res = run(data, "quarantine", Validate(suite=s, on_fail="quarantine"))
    b = res.balance[0]
    assert (b["input"], b["kept"], b["rejected"], b["ok"]) == (40, 33, 7, True)
    out = data / "quarantine"
    rej = rejected(out).sort("row_id")
    assert set(rej["reject_stage"]) == {"validate"}
    by_reason = dict(rej.group_by("reject_reason").len().iter_rows())
    assert by_reason == {UNIQUE_IDS: 2, LANGS: 3, NOT_NULL: 2}
    assert sorted(rej.filter(pl.col("reject_reason") == UNIQUE_IDS)["id"]) == ["doc-7", "doc-7"]
    kept = pl.read_parquet(sorted((out / "data").glob("*.parquet")))
    assert set(kept["lang"]) == {"en"} and kept["id"].n_unique() == 33
    assert (out / "rejected" / "02-validate").is_dir()
    assert catalog(out, "SELECT expectation, quarantined FROM validation ORDER BY 1") == [
        (LANGS, 3), (UNIQUE_IDS, 2), (NOT_NULL, 2)]


def test_quarantine_cannot_fix_a_wrong_type_so_it_stops(data, tmp_path):
    s = suite(tmp_path, {"type": "expect_column_values_to_be_of_type", "kwargs": {"column": "lang_score",
                                                                                 "type_": "str"}})
    with pytest.raises(StopRun, match=r"expect_column_values_to_be_of_type\(lang_score\): float64.*quarantine "
                                      r"cannot meet an expectation that names no rows"):
        run(data, "typed", Validate(suite=s, on_fail="quarantine"))
    assert not (data / "typed" / "rejected").exists()


def test_warning_severity_never_acts(data, tmp_path):
    res = run(data, "severity", Validate(suite=suite(tmp_path, {**english(), "severity": "warning"}),
                                         on_fail="quarantine"))
    assert res.balance[0]["kept"] == 40 and not (data / "severity" / "rejected").exists()


def test_the_gate_checks_its_suite_and_columns_before_the_run(data, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "expectations": [{"type": "expect_nothing", "kwargs": {}}]}')
    cfg = write_config(tmp_path / "c.yaml", f"""\
output: {tmp_path / 'out'}
inputs:
  - source: web
    path: {data / 'in'}
pipeline:
  - op: validate
    suite: {bad}
    on_fail: quarantine
""")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert f"c.yaml:6: pipeline[0] (validate): {bad}: expectations[0] (expect_nothing): unknown expectation type" \
        in err.value.errors[0]
    wrong = suite(tmp_path, {"type": "expect_column_values_to_be_in_set",
                             "kwargs": {"column": "lnag", "value_set": ["en"]}}, name="wrong")
    with pytest.raises(PipelineError, match=r"pipeline\[1\] 'validate' needs column 'lnag'"):
        run(data, "wrong", Validate(suite=wrong))
    assert not (data / "wrong").exists()
