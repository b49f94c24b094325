"""The DPO plugin: the first step's loss is the closed form (policy = reference), the policy learns to
prefer what the rankings prefer, both losses run, and a killed run resumes exactly."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from rlhfkit import assert_resumes_exactly, pref_config, ranking_records, write_jsonl
from trainkit import read_metrics, shards  # noqa: F401 (fixture)

from corpus import plugins
from corpus.plugins.dpo import DPOConfig, item_pairs
from corpus.plugins.rlhf_data import RankedItem


@pytest.fixture(scope="module")
def prefs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpo-data")
    return write_jsonl(root / "train.jsonl", ranking_records(120, seed=7)), \
        write_jsonl(root / "val.jsonl", ranking_records(30, seed=8))


def test_item_pairs():
    it = RankedItem("i", "p", ("a", "b", "c"), (2, 1, 2))
    assert item_pairs(it, "all") == [(1, 0), (1, 2)]
    assert item_pairs(it, "best_worst") == [(1, 0)]
    assert item_pairs(RankedItem("j", "p", ("a", "b"), (1, 1)), "best_worst") == []


def test_dpo_starts_at_log2_and_learns_the_preference(tmp_path: Path, shards, prefs):  # noqa: F811
    tok, _ = shards
    train, val = prefs
    cfg = pref_config(DPOConfig, tmp_path, {"train": str(train), "validation": str(val)}, tok,
                      dpo={"beta": 0.5}, train={"max_steps": 24, "eval_every": 24, "lr": 3e-3})
    r = plugins.run("dpo", cfg)
    rows = read_metrics(tmp_path)
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # policy = reference at step 1
    assert rows[-1]["loss"] < 0.6
    assert r.final_metrics["val_reward_acc"] >= 0.8 and r.final_metrics["val_margin"] > 0
    assert (tmp_path / "final" / "model.safetensors").is_file()


def test_ipo_first_loss_is_its_closed_form(tmp_path: Path, shards, prefs):  # noqa: F811
    tok, _ = shards
    train, _ = prefs
    cfg = pref_config(DPOConfig, tmp_path, {"train": str(train)}, tok, dpo={"loss": "ipo", "beta": 0.1,
                                                                          "pairs": "best_worst"},
                      train={"max_steps": 1, "eval_every": 0})
    plugins.run("dpo", cfg)
    assert read_metrics(tmp_path)[0]["loss"] == pytest.approx((1 / (2 * 0.1)) ** 2, rel=1e-6)


def test_dpo_resumes_exactly(tmp_path: Path, shards, prefs):  # noqa: F811
    tok, _ = shards
    train, _ = prefs
    over = {"train": {"max_steps": 6, "save_every": 2, "eval_every": 3}, "model": {"dropout": 0.1}}
    assert_resumes_exactly("dpo", lambda out: pref_config(DPOConfig, out, {"train": str(train)}, tok, **over),
                           tmp_path)
