"""The load benchmark's machinery, for a couple of seconds with a few annotators: a real `corpus annotate
serve` process, retried submissions, and the database check afterwards (no figures asserted)."""

from __future__ import annotations

from benchmarks import annotate_load


def test_a_short_load_run_loses_and_duplicates_nothing():
    r = annotate_load.run(users=4, seconds=2, items=200, per_item=2)
    assert r["errors"] == 0, r["error_examples"]
    assert r["labels"] > 0 and r["requests"] >= 2 * r["labels"]
    assert r["problems"] == []


def test_annotators_who_think_pause_before_each_ranking():
    slow = annotate_load.run(users=2, seconds=2, items=100, per_item=1, think=0.5)
    assert slow["errors"] == 0 and slow["problems"] == []
    assert 0 < slow["labels"] <= 2 * 2 / 0.25  # each pause is at least half of 0.5 s


def test_the_database_check_sees_a_lost_label(tmp_path):
    r = annotate_load.run(users=2, seconds=1, items=50, per_item=2, keep=tmp_path / "proj")
    assert r["problems"] == []
    stats = annotate_load.Stats()
    stats.acked = {("user000", "it-0", "never-stored")}  # a submission the server acknowledged but lacks
    problems = annotate_load.check_database(tmp_path / "proj" / "annotate.duckdb", stats, per_item=2)
    assert any("acknowledged submissions missing" in p for p in problems)
