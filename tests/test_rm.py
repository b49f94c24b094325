"""The reward model plugin: learns a rule from K-wise rankings (pairwise accuracy >= 0.9), exports an HF
folder that scores texts, resumes exactly, trains aspect heads, and reports what it read."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import torch
from rlhfkit import assert_resumes_exactly, pref_config, ranking_records, response, write_jsonl
from trainkit import read_metrics, shards  # noqa: F401 (fixture)

from corpus import plugins
from corpus.plugins.reward import RewardConfig, ranks_from_ratings
from corpus.plugins.rlhf_data import RewardScorer


@pytest.fixture(scope="module")
def rankings(tmp_path_factory):
    root = tmp_path_factory.mktemp("rm-data")
    train = write_jsonl(root / "train.jsonl", ranking_records(160, seed=1))
    val = write_jsonl(root / "val.jsonl", ranking_records(40, seed=2))
    return train, val


@pytest.mark.slow
def test_reward_model_learns_the_rule_and_its_export_scores_texts(tmp_path: Path, shards, rankings):  # noqa: F811
    tok, _ = shards
    train, val = rankings
    cfg = pref_config(RewardConfig, tmp_path, {"train": str(train), "validation": str(val)}, tok,
                      train={"max_steps": 60, "eval_every": 30, "lr": 3e-3})
    r = plugins.run("reward", cfg)
    assert r.final_metrics["val_pair_acc"] >= 0.9, r.final_metrics
    assert 0 <= r.final_metrics["val_ece"] <= 1 and r.final_metrics["val_brier"] < 0.25
    scorer = RewardScorer(tmp_path / "final")
    import random

    rng = random.Random(5)
    lo, hi = [response(rng, 0) for _ in range(20)], [response(rng, 2) for _ in range(20)]
    s_lo, s_hi = scorer.score(["say something"] * 20, lo), scorer.score(["say something"] * 20, hi)
    assert (s_hi > s_lo).float().mean() >= 0.9
    info = json.loads((tmp_path / "final" / "corpusforge.json").read_text())
    assert info["reward"] == {"heads": ["reward"], "weights": [1.0]}
    stats = json.loads((tmp_path / "data_stats.json").read_text())
    assert stats["labels"] == 160 and stats["validation_items"] == 40


def test_reward_model_resumes_exactly(tmp_path: Path, shards, rankings):  # noqa: F811
    tok, _ = shards
    train, _ = rankings
    over = {"train": {"max_steps": 6, "save_every": 2, "eval_every": 3}}
    assert_resumes_exactly("reward", lambda out: pref_config(RewardConfig, out, {"train": str(train)}, tok, **over),
                           tmp_path)


def test_aspect_heads_and_the_preference_report(tmp_path: Path, shards):  # noqa: F811
    tok, _ = shards
    recs = ranking_records(24, seed=3, annotators=("a1", "a2"), aspects=True)
    bad = '{"item_id": "x", "prompt": "p", "responses": ["a", "b"], "ranking": [1, 3]}'
    lines = [json.dumps(r) for r in recs] + [bad, "not json"]
    path = tmp_path / "labels.jsonl"
    path.write_text("\n".join(lines) + "\n")
    cfg = pref_config(RewardConfig, tmp_path / "run", {"train": str(path), "validation_fraction": 0.25}, tok,
                      loss={"aspects": {"length": 0.5}, "center": 0.01}, train={"max_steps": 2, "eval_every": 2})
    r = plugins.run("reward", cfg)
    run = tmp_path / "run"
    stats = json.loads((run / "data_stats.json").read_text())
    assert stats["quarantined_by_kind"] == {"bad_ranking": 1, "invalid_json": 1}
    assert stats["items"] == 24 and stats["annotators"] == 2 and stats["kendalls_w"] == pytest.approx(1.0)
    assert stats["train_items"] + stats["validation_items"] == 24  # split by item: both labels on one side
    q = pl.read_parquet(run / "quarantine.parquet")
    assert sorted(q["line"].to_list()) == [49, 50]
    assert "Kendall" in (run / "preferences.html").read_text()
    info = json.loads((run / "final" / "corpusforge.json").read_text())
    assert info["reward"] == {"heads": ["length"], "weights": [0.5]}
    assert "val_pair_acc" in r.final_metrics


def test_ranks_from_ratings():
    ranks, rated = ranks_from_ratings(torch.tensor([[3.0, float("nan"), 5.0, 3.0]]))
    assert ranks.tolist() == [[2, 0, 1, 2]] and rated.tolist() == [[True, False, True, True]]


def test_missing_preference_data_is_one_clear_error(tmp_path: Path, shards):  # noqa: F811
    tok, _ = shards
    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "p", "responses": ["a"]}])
    from corpus.plugins.base import PluginInputError

    with pytest.raises(PluginInputError, match=r"bad.jsonl: no usable preference record \(1 quarantined: "
                                                r"missing_responses 1\)"):
        plugins.run("reward", pref_config(RewardConfig, tmp_path / "run", {"train": str(path)}, tok))
    # Rankings that are all ties: said as such, for both learners (they said the data made 0 rows, and to
    # lower batch_size)
    from corpus.plugins.dpo import DPOConfig

    ties = write_jsonl(tmp_path / "ties.jsonl", [{"item_id": f"i{i}", "prompt": f"p{i}", "responses": ["a", "b"],
                                                  "ranking": [1, 1], "annotator": "x"} for i in range(12)])
    for name, cls in (("reward", RewardConfig), ("dpo", DPOConfig)):
        with pytest.raises(PluginInputError, match=r"ties.jsonl: every training item's ranking is a tie \(\d+ items\)"):
            plugins.run(name, pref_config(cls, tmp_path / f"run-{name}", {"train": str(ties)}, tok))


def test_a_small_validation_fraction_still_holds_out_an_item(tmp_path: Path, caplog):
    """0.05 of 12 items was int(0.6) = 0: the run finished without an evaluation, and nothing said so."""
    from corpus.plugins.rlhf_data import PreferenceData, load_items

    path = write_jsonl(tmp_path / "r.jsonl", ranking_records(12))
    train, val, stats = load_items(PreferenceData(train=str(path), validation_fraction=0.05), Path, 0, None)
    assert (len(train), len(val), stats["validation_items"]) == (11, 1, 1) and "no_validation" not in stats
    one = write_jsonl(tmp_path / "one.jsonl", ranking_records(1))
    with caplog.at_level("WARNING"):
        train, val, stats = load_items(PreferenceData(train=str(one), validation_fraction=0.05), Path, 0, None)
    assert (len(train), len(val)) == (1, 0)
    assert stats["no_validation"].startswith("no validation item: validation_fraction 0.05 holds out none")
    assert stats["no_validation"] in caplog.text


@pytest.mark.parametrize("plugin", ["reward", "dpo"])
@pytest.mark.parametrize("value", [2, -1])
def test_reward_and_dpo_configs_check_min_agreement_as_the_cycle_does(tmp_path: Path, plugin: str, value: float):
    """--check passed 2 and -1 (corpus rlhf refused them); 2 then failed the run after loading, with
    'no training item left'."""
    from corpus.config import ConfigError

    with pytest.raises(ConfigError, match=rf"data: min_agreement is a Kendall's W, in \[0, 1\]: got {value}"):
        pref_config(plugins.get(plugin).config_class, tmp_path, {"train": "r.jsonl", "min_agreement": value},
                    tmp_path / "tok")


@pytest.mark.parametrize("plugin", ["reward", "dpo", "ppo"])
def test_chat_template_is_checked_by_corpus_train_check(tmp_path: Path, shards, capsys, plugin: str):  # noqa: F811
    """A file path given as data.chat_template (every example rendered as that path) passed
    `corpus train reward|dpo|ppo --check`, and only the run refused it: SFT's config check now applies."""
    from corpus.cli import main

    tok, _ = shards
    train = write_jsonl(tmp_path / "r.jsonl", ranking_records(4))
    data = {"prompts": str(train)} if plugin == "ppo" else {"train": str(train)}
    extra = {"ppo": {"reward_fn": "rlhfkit:vowel_share"}} if plugin == "ppo" else {}
    cfg = tmp_path / "c.yaml"

    def check(template: str) -> int:
        cfg.write_text(json.dumps({"output": str(tmp_path / "out"), "tokenizer": str(tok),
                                   "data": {**data, "chat_template": template}, **extra}))
        return main(["train", plugin, str(cfg), "--check"])

    assert check("templates/chat.jinja") == 2
    err = capsys.readouterr().err
    assert "data: chat_template renders a conversation without its messages' text" in err and "file name" in err
    assert "Traceback" not in err
    assert check("{% for m in messages %}{{ m.content }}") == 2
    assert "chat_template not a valid Jinja template: line 1" in capsys.readouterr().err
    assert check("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}") == 0
    assert f"ok: {plugin} config" in capsys.readouterr().out
