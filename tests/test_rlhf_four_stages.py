"""examples/four_stages runs end to end (with --quick: a few steps per training stage) and writes each
stage's report; its bundled rankings hold the planted annotator bias and broken records."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import ROOT

from corpus.plugins.preferences import aggregate, read_preferences


def test_bundled_rankings_show_the_planted_bias_and_broken_records():
    labels, bad = read_preferences(ROOT / "examples" / "four_stages" / "rankings.jsonl")
    assert sorted(bad["kind"].to_list()) == ["bad_ranking", "duplicate_response"]
    agg = aggregate(labels)
    assert {"position_bias", "far_from_consensus"} <= set(agg.annotators["cyd"].flags)
    assert agg.annotators["ana"].flags == [] and agg.annotators["ben"].flags == []


@pytest.mark.slow  # the example pipeline, a tokenizer and four tiny trainings of 3 steps: ~2 minutes of CPU
@pytest.mark.timeout(900)
def test_four_stages_end_to_end(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "examples" / "four_stages" / "run.py"), "--quick", "--out",
                          str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "(missing)" not in res.stdout and "Traceback" not in res.stderr
    for rel in ("corpus/report.html", "pretrain/report.md", "sft/report.md", "reward/report.md",
                "reward/preferences.html", "ppo/report.md"):
        assert (tmp_path / rel).is_file(), rel
    assert json.loads((tmp_path / "ppo/result.json").read_text())["steps"] == 3
    stats = json.loads((tmp_path / "reward/data_stats.json").read_text())
    assert stats["quarantined"] == 2 and stats["annotators"] == 3
