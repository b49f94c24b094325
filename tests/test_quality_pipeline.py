"""The rule sets in a run: rejected rows carry the rule and the failing value, the report counts drops
per rule with examples, and a changed threshold reruns only the filter (config-hash resume)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl

from corpus import InputSpec, Pipeline
from corpus.catalog import Catalog
from corpus.stages.rulesets import GopherQualityFilter, GopherRepetitionFilter
from corpus.stages.signals import QualitySignals

WORDS = ("the of and to in is was for on that with as by at from his her it an were are which this be or has "
         "had not but first new after also one two time year city world people state school river music").split()


def make_corpus(folder: Path, n: int = 120) -> None:
    """English-like documents (stop words, 3-10 letter words) of 20 to 150 words, one in 9 with many '#'."""
    rng = random.Random(0)
    folder.mkdir(parents=True)
    with open(folder / "docs.jsonl", "w") as fh:
        for i in range(n):
            words = [rng.choice(WORDS) for _ in range(rng.randint(20, 150))]
            if i % 9 == 0:
                words = ["#" + w for w in words]
            fh.write(json.dumps({"text": " ".join(words).capitalize() + "."}) + "\n")


def _run(tmp_path: Path, out: str, min_len: float) -> Path:
    pipe = Pipeline([QualitySignals(groups=["gopher_quality", "gopher_repetition"]),
                     GopherQualityFilter(rules={"mean_word_length": {"min": min_len}}),
                     GopherRepetitionFilter()])
    pipe.run([InputSpec(source="web", path=str(tmp_path / "in"))], tmp_path / out, workers=1, quiet=True)
    return tmp_path / out


def test_rule_sets_in_a_run_report_and_resume(tmp_path: Path):
    make_corpus(tmp_path / "in")
    out = _run(tmp_path, "out", 3)
    rejected = pl.read_parquet(out / "rejected" / "*" / "*.parquet")
    reasons = set(rejected["reject_reason"])
    assert {"gopher_quality:words<50", "gopher_quality:hash_ratio>0.1"} <= reasons
    short = rejected.filter(pl.col("reject_reason") == "gopher_quality:words<50")
    assert (short["rule_value"] == short["gopher_words"].cast(pl.Float64)).all()
    # the report: a section with each rule's drops (and every rule listed, even with none)
    report = json.loads((out / "report.json").read_text())
    section = report["sections"]["stage-gopher_quality_filter"]["figures"]
    rules = next(iter(section.values()))["rules"]
    assert set(rules) >= {"words", "mean_word_length", "stop_words"}
    assert rules["words"]["dropped"] == short.height and rules["words"]["check"] == "gopher_words >= 50 and <= 100000"
    assert "gopher_stop_words &gt;= 2" in (out / "report.html").read_text()
    # a changed threshold reruns the filter and what follows, not the signals
    _run(tmp_path, "out", 3.4)
    cat = Catalog(out / "catalog.duckdb", create=False)
    resumed = dict(cat.query("SELECT stage, bool_and(resumed) FROM unit_stats WHERE run_id = ? GROUP BY stage",
                             [cat.latest_run()]))
    assert resumed == {"00-read": True, "01-quality_signals": True, "02-gopher_quality_filter": False,
                       "03-gopher_repetition_filter": False}
    again = pl.read_parquet(out / "rejected" / "*" / "*.parquet")
    assert again.filter(pl.col("reject_reason") == "gopher_quality:mean_word_length<3.4").height > 0


def test_config_errors_name_the_rule(tmp_path: Path):
    from helpers import run_cli

    make_corpus(tmp_path / "in", 5)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
inputs: [{{source: web, path: {tmp_path / 'in'}}}]
output: {tmp_path / 'out'}
pipeline:
  - op: quality_signals
  - op: gopher_quality_filter
    rules: {{stop_wrds: {{enabled: false}}}}
  - op: rule_filter
    rules: [{{column: n_words, min: "50"}}]
""")
    res = run_cli("check", str(cfg))
    assert res.returncode == 2 and res.stderr.startswith("error:")
    assert "did you mean 'stop_words'" in res.stderr and "min must be a number" in res.stderr
