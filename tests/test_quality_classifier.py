"""The fastText classifier: trained from a generated labelled set, held-out metrics saved with the
model, the score operator (model checked by its sha256) and the threshold and Pareto filters."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from helpers import run_cli

from corpus.readers import InputError
from corpus.stages.classifier import (
    QualityScore,
    QualityScoreFilter,
    TrainConfig,
    load_examples,
    roc_auc,
    split_holdout,
    train,
)

pytest.importorskip("fasttext")

GOOD = ("the history of the river valley shows that early settlers built farms and churches along its banks "
        "scientists have studied the climate and water of the region for many years and their results were "
        "published in several journals about geology chemistry and biology").split()
BAD = ("click here buy now cheap deals free shipping limited offer login register cart checkout subscribe "
       "best price discount sale win prize casino bonus hot singles follow us share this page menu home").split()


def labelled_set(n: int, seed: int) -> tuple[list[str], list[str]]:
    """n good and n bad documents of 30-80 words; three words in ten come from the other vocabulary."""
    rng = random.Random(seed)

    def doc(main: list[str], other: list[str]) -> str:
        return " ".join(rng.choice(other if rng.random() < 0.3 else main) for _ in range(rng.randint(30, 80)))

    return [doc(GOOD, BAD) for _ in range(n)], [doc(BAD, GOOD) for _ in range(n)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clf")
    good, bad = labelled_set(600, 1)
    (root / "good.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in good))
    pl.DataFrame({"body": bad}).write_parquet(root / "bad.parquet")
    # positives from JSONL, negatives from Parquet (whose text column is "body")
    df = pl.concat([load_examples([str(root / "good.jsonl")], [], text_key="text"),
                    load_examples([], [str(root / "bad.parquet")], text_key="body")])
    train(df, root / "model", TrainConfig(epoch=5, seed=0, bucket=10_000))
    return root / "model"


def test_held_out_metrics_are_saved_with_the_model(model_dir: Path):
    card = json.loads((model_dir / "metrics.json").read_text())
    m = card["held_out"]
    assert m["f1"] >= 0.9 and m["roc_auc"] >= 0.9 and m["precision"] > 0 and m["recall"] > 0
    assert card["labels"] == ["hq", "lq"] and card["positive_label"] == "hq"
    assert card["examples"]["held_out"] == 120 and card["examples"]["train"] == 1080  # 10% of each label
    assert len(card["model_sha256"]) == 64


def test_score_operator_and_threshold_filter(model_dir: Path):
    good, bad = labelled_set(50, 99)  # new documents
    df = pl.DataFrame({"row_id": range(100), "text": good + bad}, schema={"row_id": pl.Int64, "text": pl.String})
    scored = QualityScore(model=str(model_dir)).map(df)
    s = scored["quality_score"].to_numpy()
    assert s[:50].mean() > 0.8 > 0.2 > s[50:].mean()
    assert roc_auc(np.arange(100) < 50, s) > 0.95
    v = QualityScoreFilter(min_score=0.5).filter(scored)
    assert v.keep[:50].sum() >= 45 and v.keep[50:].sum() <= 5
    dropped = v.reason.drop_nulls().unique().to_list()
    assert dropped == ["quality_score:score<0.5"]
    # Pareto sampling (GPT-3): high scores are kept more often than low ones, deterministically
    p = QualityScoreFilter(pareto_alpha=9).filter(scored)
    assert p.keep.to_list() == QualityScoreFilter(pareto_alpha=9).filter(scored.reverse()).keep.reverse().to_list()
    # P(keep) = (2 - score) ** -9: about 0.6 at 0.95, 0.002 at 0.01
    assert p.keep[:50].sum() >= 25 and p.keep[50:].sum() <= 3


def test_scorer_refuses_a_changed_model(model_dir: Path, tmp_path: Path):
    copy = tmp_path / "m"
    copy.mkdir()
    (copy / "metrics.json").write_bytes((model_dir / "metrics.json").read_bytes())
    (copy / "model.bin").write_bytes((model_dir / "model.bin").read_bytes()[:-10])
    with pytest.raises(ValueError, match="sha256 differs"):
        QualityScore(model=str(copy))


def test_holdout_is_per_label_and_without_repeated_texts():
    df = pl.DataFrame({"text": [f"t{i}" for i in range(100)] + ["t0"] * 5, "label": ["a"] * 80 + ["b"] * 25})
    tr, held = split_holdout(df, 0.1, 0)
    assert held["label"].value_counts().sort("label")["count"].to_list() == [8, 2]
    assert tr.height + held.height == 100 and not set(tr["text"]) & set(held["text"])


def test_texts_under_two_labels_and_bad_settings_are_said(tmp_path: Path, caplog):
    """The same files as positives and negatives trained a one-label model and reported it (accuracy
    1.000); a negative lr or 0 epochs went to fastText as they were."""
    good, bad = labelled_set(50, 2)
    same = pl.DataFrame({"text": good * 2, "label": ["hq"] * 50 + ["lq"] * 50})
    with pytest.raises(ValueError, match=r"50 texts are given under more than one label: kept once each, under the "
                                         r"first, they leave only \['hq'\]; are the positive and negative"):
        train(same, tmp_path / "m1", TrainConfig(bucket=1000))
    some = pl.DataFrame({"text": good + bad + good[:3], "label": ["hq"] * 50 + ["lq"] * 53})
    with caplog.at_level("WARNING"):
        report = train(some, tmp_path / "m2", TrainConfig(epoch=2, bucket=1000))
    assert "3 texts are given under more than one label: each is kept once, under the first label it was given" \
        in caplog.text
    assert report["examples"]["unique"] == 100
    for bad_setting in ({"lr": -1.0}, {"epoch": 0}, {"dim": 0}, {"bucket": -1}):
        with pytest.raises(ValueError, match="epoch, word_ngrams, dim and min_count must be >= 1, bucket >= 0 and lr"):
            TrainConfig(**bad_setting)


def test_zero_buckets_with_word_ngrams_are_refused_before_training(tmp_path: Path, monkeypatch):
    """`--bucket 0` with the default word_ngrams 2 went to fastText, which divides by the bucket count:
    the process died of SIGFPE (rc 136, no message) and left its training folder in the output."""
    with pytest.raises(ValueError, match="bucket must be >= 1 with word_ngrams 2"):
        TrainConfig(bucket=0)
    assert TrainConfig(bucket=0, word_ngrams=1).bucket == 0  # unigrams use no buckets
    # an error fastText raises leaves no training folder behind; a killed training's is removed next time
    import fasttext

    def fail(**_):
        raise RuntimeError("fastText failed")

    monkeypatch.setattr(fasttext, "train_supervised", fail)
    (tmp_path / "m" / ".train-tmp-999999999-x").mkdir(parents=True)
    good, bad = labelled_set(10, 3)
    with pytest.raises(RuntimeError, match="fastText failed"):
        train(pl.DataFrame({"text": good + bad, "label": ["hq"] * 10 + ["lq"] * 10}), tmp_path / "m",
              TrainConfig(bucket=1000))
    assert list((tmp_path / "m").iterdir()) == []


def test_cli_trains_a_topic_classifier_from_a_query_and_a_label_column(tmp_path: Path):
    rng = random.Random(3)
    topics = {"sport": "match goal team player score league coach season win".split(),
              "cooking": "recipe oven flour butter sugar bake minutes salt pan".split(),
              "music": "album song guitar band concert tour singer chord drum".split()}
    rows = [{"body": " ".join(rng.choice(words) for _ in range(25)), "topic": t}
            for t, words in topics.items() for _ in range(150)]
    pl.DataFrame(rows).write_parquet(tmp_path / "topics.parquet")
    res = run_cli("quality", "train", "--labelled", str(tmp_path / "topics.parquet"), "--label-column", "topic",
                  "--text-key", "body", "--out", str(tmp_path / "topic"), "--epoch", "5", "--bucket", "10000")
    assert res.returncode == 0, res.stderr
    assert "held-out metrics" in res.stdout and "macro F1" in res.stdout
    # what it is doing, before the one-thread training that takes minutes on a large set (off a terminal:
    # without fastText's redrawn line)
    held = json.loads((tmp_path / "topic" / "metrics.json").read_text())["examples"]
    assert res.stderr.splitlines() == [
        f"quality train: fastText on {held['train']:,} examples, 5 epochs, one thread (so that the same examples and "
        "seed give the same model)", f"quality train: evaluating on the {held['held_out']:,} held out"], res.stderr
    card = json.loads((tmp_path / "topic" / "metrics.json").read_text())
    assert card["labels"] == ["cooking", "music", "sport"] and card["held_out"]["macro_f1"] >= 0.9
    # the same examples through a DuckDB query
    q = f"SELECT body AS text, topic AS label FROM read_parquet('{tmp_path / 'topics.parquet'}')"
    res = run_cli("quality", "train", "--query", q, "--out", str(tmp_path / "topic2"), "--epoch", "5", "--json",
                  "--bucket", "10000")
    assert res.returncode == 0, res.stderr
    # the operator adds the top label as a topic column
    op = QualityScore(model=str(tmp_path / "topic"), label_column="topic", score_column="topic_score")
    out = op.map(pl.DataFrame({"text": ["the band played a song on the guitar at the concert"]}))
    assert out["topic"].to_list() == ["music"] and out["topic_score"][0] > 0.5
    # bad input: one error line
    res = run_cli("quality", "train", "--positive", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and res.stderr.startswith("error:") and "missing.jsonl" in res.stderr


def test_examples_are_read_as_a_run_reads_its_inputs(tmp_path: Path, caplog):
    """Examples go through the corpus readers: CSV and compressed JSONL as in a pipeline (a CSV folder was
    refused: 'no .parquet or .jsonl files'), a bad record left out with a warning (it failed the whole
    file), a wrong --text-key or a CSV without the column named, numeric labels as JSON writes them."""
    import gzip

    good, bad = labelled_set(40, 5)
    (tmp_path / "pos").mkdir()
    pl.DataFrame({"post": good, "n": range(40)}).write_csv(tmp_path / "pos" / "posts.csv")
    lines = [json.dumps({"post": t}) for t in bad] + ["{not json"]
    (tmp_path / "neg.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with caplog.at_level("WARNING"):
        df = load_examples([str(tmp_path / "pos")], [str(tmp_path / "neg.jsonl.gz")], text_key="post")
    assert sorted(df.filter(pl.col("label") == "hq")["text"].to_list()) == sorted(good)
    assert sorted(df.filter(pl.col("label") == "lq")["text"].to_list()) == sorted(bad)
    assert "neg.jsonl.gz: 1 of 41 records left out, as a run would quarantine them (invalid_json 1)" in caplog.text
    with pytest.raises(ValueError, match=r"positive examples .*posts\.csv: .*no column 'text' .*--text-key"):
        load_examples([str(tmp_path / "pos")], [], text_key="text")
    with pytest.raises(InputError, match=r"input 'negative': 41 of its 41 records quarantined .*"
                                         r"no field 'body'.*fields seen: post"):
        load_examples([], [str(tmp_path / "neg.jsonl.gz")], text_key="body")
    (tmp_path / "lab.jsonl").write_text("".join(json.dumps({"text": t, "y": i % 2}) for i, t in enumerate(good[:4]))
                                        .replace("}{", "}\n{") + "\n")
    assert load_examples(labelled=[str(tmp_path / "lab.jsonl")], label_key="y")["label"].to_list() == \
        ["0", "1", "0", "1"]
    with pytest.raises(ValueError, match=r"lab\.jsonl: no record has the label field 'topic'"):
        load_examples(labelled=[str(tmp_path / "lab.jsonl")], label_key="topic")
