"""Classifier labels and settings as the user wrote them: bad settings (min_score past 1, the model
file for its folder, --out naming a file) are one clear error."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import polars as pl
import pytest
from helpers import run_cli

from corpus.stages.classifier import QualityScore, QualityScoreFilter, TrainConfig, train

pytest.importorskip("fasttext")

TOPICS = {"sport": "match goal team player score league coach season win".split(),
          "cooking": "recipe oven flour butter sugar bake minutes salt pan".split(),
          "music": "album song guitar band concert tour singer chord drum".split()}


def topic_rows(n: int, seed: int, names: dict[str, str] | None = None) -> list[dict]:
    """n documents of 25 words of each topic, labelled by ``names`` (topic -> label)."""
    rng = random.Random(seed)
    return [{"text": " ".join(rng.choice(words) for _ in range(25)), "topic": (names or {}).get(t, t)}
            for t, words in TOPICS.items() for _ in range(n)]


@pytest.fixture(scope="module")
def topic_model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("topic") / "model"
    train(pl.DataFrame(topic_rows(100, 1)).rename({"topic": "label"}), out, TrainConfig(epoch=5, bucket=10_000))
    return out


def test_min_score_outside_0_1_is_refused():
    """min_score 1.5 was accepted and dropped every document: a score is a probability."""
    for bad in (1.5, -0.1, math.nan):
        with pytest.raises(ValueError, match=r"min_score must lie in \[0, 1\], got"):
            QualityScoreFilter(min_score=bad)
    assert QualityScoreFilter(min_score=0.0).min_score == 0.0 and QualityScoreFilter(min_score=1.0).min_score == 1.0
    with pytest.raises(ValueError, match="pareto_alpha must be positive"):
        QualityScoreFilter(pareto_alpha=math.nan)


def test_model_file_and_out_file_are_clear_errors(topic_model: Path, tmp_path: Path):
    """model: naming model.bin was '[Errno 20] Not a directory: .../model.bin/metrics.json' without the
    config's line; --out naming a file was '[Errno 17] File exists'."""
    with pytest.raises(ValueError, match=r"model\.bin is a file: model is the folder `corpus quality train` "
                                         r"wrote .*; give its folder, .*model$"):
        QualityScore(model=str(topic_model / "model.bin"))
    (tmp_path / "in.jsonl").write_text(json.dumps({"text": "a b", "id": 1}) + "\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"output: {tmp_path / 'out'}\ninputs:\n  - {{source: m, path: {tmp_path / 'in.jsonl'}}}\n"
                   f"pipeline:\n  - {{op: quality_score, model: {topic_model / 'model.bin'}}}\n")
    res = run_cli("check", str(cfg))
    assert res.returncode == 2 and res.stderr.startswith("error:"), res.stderr
    assert "c.yaml:5: pipeline[0] (quality_score):" in res.stderr and "is a file" in res.stderr
    assert "Errno" not in res.stderr
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"text": "a b"}) + "\n")
    for out, said in ((good, f"--out {good} is a file; give a folder"),
                      (good / "m", f"--out {good / 'm'} is under {good}, which is a file; give a folder")):
        res = run_cli("quality", "train", "--positive", str(good), "--negative", str(good), "--out", str(out))
        assert res.returncode == 2 and res.stderr.strip() == f"error: {said}", res.stderr
