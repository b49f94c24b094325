"""Outliers: per-source robust thresholds fitted on the data, reviewed with a dry run before anything
is dropped, then applied (or only marked) with the feature and bound in the reason."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from helpers import run_cli

from corpus.stages.outliers import ALL, MAD_SCALE, fit_thresholds, flag


def test_mad_and_iqr_thresholds_per_source_by_hand():
    df = pl.DataFrame({"source": ["a"] * 6 + ["b"] * 4, "n": [10, 11, 12, 13, 14, 100, 1, 2, 3, 4]})
    th = fit_thresholds(df.lazy(), ["n"], "mad", 3.5, True, 5, "both")
    # a: median 12.5; |x - 12.5| = 2.5 1.5 .5 .5 1.5 87.5 -> MAD 1.5; bounds 12.5 -+ 3.5 * 1.4826 * 1.5
    a = th["a"]["n"]
    assert a["center"] == 12.5 and a["spread"] == pytest.approx(1.5 * MAD_SCALE)
    half = 3.5 * 1.5 * MAD_SCALE
    assert (a["low"], a["high"]) == (pytest.approx(12.5 - half), pytest.approx(12.5 + half))
    # b has 4 documents (< min_docs 5): it takes all sources' thresholds
    assert th["b"]["n"]["borrowed"] and th["b"]["n"]["center"] == th[ALL]["n"]["center"] == 10.5
    reason, value = flag(df, ["n"], th, True)
    assert reason.to_list()[5] == "outlier:n>20.28" and value[5] == 100
    assert reason.null_count() == 9
    # IQR: a's quartiles (linear) 11.25 and 13.75, IQR 2.5; fences 7.5 and 17.5
    th = fit_thresholds(df.lazy(), ["n"], "iqr", 1.5, True, 1, "high")
    assert th["a"]["n"]["low"] is None and th["a"]["n"]["high"] == pytest.approx(17.5)
    # no spread (most values equal): no thresholds, nothing flagged
    flat = pl.DataFrame({"source": ["a"] * 5, "n": [0, 0, 0, 0, 9]})
    th = fit_thresholds(flat.lazy(), ["n"], "mad", 3.5, True, 1, "both")
    assert flag(flat, ["n"], th, True)[0].null_count() == 5


def _setup(tmp_path: Path, report_only: bool = False) -> Path:
    (tmp_path / "in").mkdir()
    rows = [{"text": " ".join(["word"] * (40 + i % 7)), "src": "web"} for i in range(60)]
    rows += [{"text": " ".join(["word"] * 900), "src": "web"}, {"text": "tiny", "src": "web"}]
    (tmp_path / "in" / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return _config(tmp_path, report_only)


def _config(tmp_path: Path, report_only: bool) -> Path:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
inputs: [{{source: web, path: {tmp_path / 'in'}}}]
output: {tmp_path / 'out'}
workers: 1
pipeline:
  - {{op: quality_signals, groups: [counts]}}
  - {{op: outlier_filter, features: [n_words], report_only: {str(report_only).lower()}}}
""")
    return cfg


def test_dry_run_prints_thresholds_then_the_run_applies_them(tmp_path: Path):
    cfg = _setup(tmp_path)
    res = run_cli("quality", "outliers", str(cfg), "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "n_words" in res.stdout and "2 documents would be dropped" in res.stdout
    # nothing dropped, nothing published: the stages before the filter are in work/ for the run
    assert not (tmp_path / "out" / "data").exists() and not (tmp_path / "out" / "manifest.json").exists()
    assert not list((tmp_path / "out" / "rejected").glob("*/*.parquet"))
    res = run_cli("stats", str(tmp_path / "out"))
    assert res.returncode == 2 and res.stderr.strip().endswith(
        "the catalog has no runs yet (only a dry run, which publishes nothing: `corpus run CONFIG` makes the corpus)")
    res = run_cli("run", str(cfg), "--quiet")
    assert res.returncode == 0, res.stderr
    rejected = pl.read_parquet(tmp_path / "out" / "rejected" / "*" / "*.parquet")
    assert sorted(rejected["n_words"].to_list()) == [1, 900]
    assert all(r.startswith(("outlier:n_words<", "outlier:n_words>")) for r in rejected["reject_reason"])
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    fig = next(iter(report["sections"]["stage-outlier_filter"]["figures"].values()))
    assert fig["thresholds"]["web"]["n_words"]["center"] == 43
    # the signals computed for the dry run were reused
    from corpus.catalog import Catalog

    cat = Catalog(tmp_path / "out" / "catalog.duckdb", create=False)
    resumed = dict(cat.query("SELECT stage, bool_and(resumed) FROM unit_stats WHERE run_id = ? GROUP BY stage",
                             [cat.latest_run()]))
    assert resumed["01-quality_signals"] is True


def test_a_dry_run_after_a_run_leaves_its_corpus_as_it_was(tmp_path: Path):
    """The dry run ran the stages before the filter as a run into the config's folder: after a full run
    it replaced the corpus, manifest and report with the shorter pipeline's (no filter: 62 documents
    where the run kept 60) and deleted the filter's work."""
    from corpus.catalog import Catalog

    cfg = _setup(tmp_path)
    assert run_cli("run", str(cfg), "--quiet").returncode == 0
    out = tmp_path / "out"
    kept = {p.relative_to(out): p.read_bytes() for p in out.rglob("*")
            if p.is_file() and p.name != "catalog.duckdb" and ".lock" not in p.name}
    res = run_cli("quality", "outliers", str(cfg), "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "2 documents would be dropped" in res.stdout
    now = {p.relative_to(out): p.read_bytes() for p in out.rglob("*")
           if p.is_file() and p.name != "catalog.duckdb" and ".lock" not in p.name}
    assert now == kept  # the corpus, manifest, rejected/, report and every stage's work
    cat = Catalog(out / "catalog.duckdb", create=False)
    statuses = [s for (s,) in cat.query("SELECT status FROM runs ORDER BY started")]
    assert statuses == ["ok", "dry-run"]
    res = run_cli("stats", str(out))
    assert res.returncode == 0 and "02-outlier_filter" in res.stdout  # the full run's funnel, not the dry run's
    assert pl.read_parquet(out / "data" / "*.parquet").height == 60


def test_report_only_marks_and_keeps(tmp_path: Path):
    cfg = _setup(tmp_path, report_only=True)
    assert run_cli("run", str(cfg), "--quiet").returncode == 0
    data = pl.read_parquet(tmp_path / "out" / "data" / "*.parquet")
    assert data.height == 62 and data["outlier"].drop_nulls().len() == 2


def test_dry_run_needs_an_outlier_stage(tmp_path: Path):
    cfg = _setup(tmp_path)
    cfg.write_text(cfg.read_text().replace("  - {op: outlier_filter, features: [n_words], report_only: false}\n", ""))
    res = run_cli("quality", "outliers", str(cfg), "--dry-run")
    assert res.returncode == 2 and res.stderr.startswith("error:") and "no outlier_filter" in res.stderr


@pytest.mark.parametrize("feature", ["source", "text", "id", "row_id"])
def test_a_core_column_is_not_a_feature(tmp_path: Path, feature: str):
    """features: [source] passed corpus check, then the fit selected source twice (a polars DuplicateError)."""
    from corpus.schema import DOC_SCHEMA
    from corpus.stages.outliers import OutlierFilter

    with pytest.raises(ValueError, match=rf"^features: '{feature}' \({DOC_SCHEMA[feature]}\) is a column every "
                                         r"document has, not a numeric feature"):
        OutlierFilter(features=["n_words", feature])
    cfg = _setup(tmp_path)
    cfg.write_text(cfg.read_text().replace("features: [n_words]", f"features: [{feature}]"))
    res = run_cli("check", str(cfg))
    assert res.returncode == 2 and f"(outlier_filter): features: '{feature}' ({DOC_SCHEMA[feature]})" in res.stderr


def test_features_are_numeric_columns_named_once(tmp_path: Path):
    from corpus.stages.outliers import OutlierFilter

    with pytest.raises(ValueError, match=r"^features: 'n_words' named more than once$"):
        OutlierFilter(features=["n_words", "n_chars", "n_words"])
    # a string column an earlier stage adds: refused by the wiring check, naming the feature and its type
    cfg = _setup(tmp_path)
    cfg.write_text(cfg.read_text().replace("groups: [counts]}", "groups: [counts]}\n  - {op: langid}")
                   .replace("features: [n_words]", "features: [n_words, lang]"))
    res = run_cli("check", str(cfg))
    assert res.returncode == 2
    assert "pipeline[2] 'outlier_filter': features: 'lang' is String, not a numeric column" in res.stderr
    assert "'n_words' is" not in res.stderr  # the numeric feature is fine
    op = OutlierFilter(features=["n_words", "score"])
    assert op.column_problems({"n_words": pl.Int64(), "score": pl.Float32()}) == []
    assert op.column_problems({"n_words": pl.Int64(), "score": None}) == []  # type unknown: the fit checks it
    assert op.column_problems({"n_words": pl.Boolean(), "score": pl.Float32()}) == [
        "features: 'n_words' is Boolean, not a numeric column (thresholds are fitted on numbers; e.g. n_words "
        "from quality_signals)"]


def test_report_only_on_an_emptied_shard(tmp_path: Path):
    """A shard an earlier filter emptied: report_only's keep was [True] * 0, a null-typed Series the
    executor refused ('a keep mask of 0 Null values')."""
    cfg = _setup(tmp_path, report_only=True)
    (tmp_path / "in2").mkdir()
    (tmp_path / "in2" / "s.jsonl").write_text(json.dumps({"text": "tiny"}) + "\n")
    cfg.write_text(cfg.read_text().replace("inputs: [", f"inputs: [{{source: short, path: {tmp_path / 'in2'}}}, ")
                   .replace("  - {op: outlier", "  - {op: length_filter, min_words: 2}\n  - {op: outlier"))
    res = run_cli("run", str(cfg), "--quiet")
    assert res.returncode == 0, res.stderr
    data = pl.read_parquet(tmp_path / "out" / "data" / "*.parquet")
    assert data.height == 61 and set(data["source"]) == {"web"}
