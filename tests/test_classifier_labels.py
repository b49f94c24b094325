"""Classifier labels as the user wrote them: labels with whitespace train, evaluate and score as given,
``label:`` of a model of three labels scores every document, and bad settings (min_score past 1, the
model file for its folder, --out naming a file) are one clear error."""

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


def test_labels_with_whitespace_round_trip(tmp_path: Path):
    """fastText reads a label as one token: training wrote "sports news" as sports_news, and the metrics
    and the scorer compared that with "sports news": metrics 0.000, every score null. Labels that differ
    only in a space, an underscore or a percent-escape stay three labels."""
    names = {"sport": "sports news", "cooking": "sports_news", "music": "sports%20news"}
    with open(tmp_path / "topics.jsonl", "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in topic_rows(100, 2, names))
    res = run_cli("quality", "train", "--labelled", str(tmp_path / "topics.jsonl"), "--label-column", "topic",
                  "--out", str(tmp_path / "m"), "--epoch", "5", "--bucket", "10000", "--json")
    assert res.returncode == 0, res.stderr
    card = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert card["labels"] == ["sports news", "sports%20news", "sports_news"]
    assert set(card["held_out"]["per_label"]) == set(card["labels"]) and card["held_out"]["macro_f1"] >= 0.9
    texts = pl.DataFrame({"text": [r["text"] for r in topic_rows(1, 3)]})  # sport, cooking, music
    op = QualityScore(model=str(tmp_path / "m"), label="sports news", label_column="topic")
    out = op.map(texts)
    assert out["topic"].to_list() == ["sports news", "sports_news", "sports%20news"]
    assert out["quality_score"][0] > 0.5

    # two labels: the positive label with a space, its metrics and its scores
    rows = topic_rows(100, 4)
    df = pl.DataFrame({"text": [r["text"] for r in rows if r["topic"] != "music"],
                       "label": ["good text" if r["topic"] == "sport" else "bad text" for r in rows
                                 if r["topic"] != "music"]})
    card = train(df, tmp_path / "m2", TrainConfig(epoch=5, bucket=10_000, positive_label="good text"))
    assert card["positive_label"] == "good text" and card["held_out"]["f1"] >= 0.9
    assert card["held_out"]["roc_auc"] >= 0.9
    s = QualityScore(model=str(tmp_path / "m2")).map(texts[:2])["quality_score"].to_list()
    assert s[0] > 0.5 > s[1]
    s_bad = QualityScore(model=str(tmp_path / "m2"), label="bad text").map(texts[:2])["quality_score"].to_list()
    assert s_bad == pytest.approx([1 - s[0], 1 - s[1]])


def test_a_model_trained_with_underscored_labels_scores_as_its_labels(tmp_path: Path, monkeypatch):
    """A model trained before labels were escaped holds "sports news" as __label__sports_news while its
    metrics.json says "sports news": it scores under the label metrics.json names."""
    import re

    from corpus.stages import classifier

    df = pl.DataFrame(topic_rows(100, 6, {"sport": "sports news"})).rename({"topic": "label"})
    with monkeypatch.context() as m:
        m.setattr(classifier, "label_token", lambda lab: "__label__" + re.sub(r"\s", "_", lab),
                  raising=False)  # before the fix: no label_token, "_" written by train itself
        train(df, tmp_path / "old", TrainConfig(epoch=5, bucket=10_000))
    assert b"__label__sports_news" in (tmp_path / "old" / "model.bin").read_bytes()
    texts = pl.DataFrame({"text": [r["text"] for r in topic_rows(1, 7)]})  # sport, cooking, music
    out = QualityScore(model=str(tmp_path / "old"), label="sports news", label_column="topic").map(texts)
    assert out["topic"].to_list() == ["sports news", "cooking", "music"] and out["quality_score"][0] > 0.5


def test_label_of_a_three_label_model_scores_every_document(topic_model: Path):
    """score_column got the probability of ``label`` only where it was the top label, null elsewhere."""
    texts = pl.DataFrame({"text": [r["text"] for r in topic_rows(3, 5)] + [""]})  # 3 each of sport, cooking, music
    top = QualityScore(model=str(topic_model), label_column="top").map(texts)
    by_label = {lab: QualityScore(model=str(topic_model), label=lab).map(texts)["quality_score"].to_list()
                for lab in TOPICS}
    for i in range(9):
        probs = [by_label[lab][i] for lab in TOPICS]
        assert None not in probs and sum(probs) == pytest.approx(1, abs=1e-3)
        # the top label's probability is the one the batch call gives
        assert by_label[top["top"][i]][i] == pytest.approx(top["quality_score"][i], abs=1e-6)
    assert [round(by_label["music"][i]) for i in range(9)] == [0] * 6 + [1] * 3
    assert all(by_label[lab][9] is None for lab in TOPICS)  # an empty text has no score


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
