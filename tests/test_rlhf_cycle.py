"""The RLHF cycle: two rounds end to end (sample -> scripted judge with three annotators -> reward model ->
PPO or DPO -> win rate), every round versioned in the run folder; a cycle killed inside a round's reward
training resumes at that step and ends with the same models as an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from rlhfkit import prompt_file
from safetensors.torch import load_file
from trainkit import QUIET, pretrain_config, shards  # noqa: F401 (fixture)

from corpus import plugins
from corpus.plugins.base import PluginInputError
from corpus.plugins.preferences import read_preferences, read_tasks
from corpus.plugins.rlhf import load_cycle_config, run_cycle, win_rate

TINY_TRAIN = {"max_steps": 4, "batch_size": 4, "eval_every": 4, "save_every": 2, "log_every": 1, **QUIET}


@pytest.fixture(scope="module")
def start(tmp_path_factory, shards):  # noqa: F811
    """A tiny pretrained policy (the cycle's SFT stand-in) and a prompt file."""
    _, tokens = shards
    root = tmp_path_factory.mktemp("cycle")
    plugins.run("pretrain", pretrain_config(root / "pre", tokens, train={"max_steps": 2, "eval_every": 2}))
    return root / "pre" / "final", prompt_file(root / "prompts.jsonl", 40)


def cycle_yaml(path: Path, policy: Path, prompts: Path, method: str = "ppo", judge: str = "scripted") -> Path:
    cfg = {"output": "run", "policy": str(policy), "prompts": str(prompts), "rounds": 2, "method": method,
           "sampling": {"responses": 3, "prompts_per_round": 8, "max_new_tokens": 6, "eval_prompts": 8},
           "judge": {"kind": judge, "function": "rlhfkit:vowel_share", "annotators": ["a1", "a2", "a3"],
                     "noise": 0.05},
           "train": TINY_TRAIN, "reward": {"data": {"max_len": 48, "validation_fraction": 0.25}},
           "ppo": {"ppo": {"rollout_batch": 4, "epochs": 1, "max_new_tokens": 6}, "data": {"max_prompt_len": 16}},
           "dpo": {"data": {"max_len": 48}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


@pytest.mark.slow
def test_two_rounds_end_to_end_and_resume_inside_a_round(tmp_path: Path, start, monkeypatch):
    policy, prompts = start
    straight = run_cycle(load_cycle_config(cycle_yaml(tmp_path / "a" / "c.yaml", policy, prompts)))
    run = tmp_path / "a" / "run"
    assert [r["round"] for r in straight["rounds"]] == [1, 2]
    for r in (1, 2):
        d = run / f"round-{r:03d}"
        tasks, bad = read_tasks(d / "tasks.jsonl")
        labels, bad2 = read_preferences(d / "rankings.jsonl")
        assert tasks and bad.height == bad2.height == 0
        assert len(labels) == 3 * len(tasks) and {p.annotator for p in labels} == {"a1", "a2", "a3"}
        assert all(t.meta["round"] == r for t in tasks)
        for sub in ("reward", "policy"):
            assert (d / sub / "final" / "manifest.json").is_file()
        assert (d / "reward" / "preferences.html").is_file()
        ev = json.loads((d / "eval.json").read_text())
        assert 0 <= ev["win_rate"] <= 1 and ev["eval_prompts"] == 8
    # round 2 started from round 1's policy
    assert json.loads((run / "round-002/policy/config.json").read_text())["model"]["from_pretrained"] == \
        str(run / "round-001/policy/final")
    assert json.loads((run / "cycle.json").read_text())["policy"] == str(run / "round-002/policy/final")

    # the same cycle, killed at step 3 of round 2's reward training, then rerun
    real = plugins.run
    calls = []

    class Killed(Exception):
        pass

    def kill_at_3(step: int, row: dict) -> None:
        if step == 3:
            raise Killed

    def killing_run(name, cfg):
        calls.append(name)
        if len(calls) == 3:  # round 1: reward, ppo; round 2: reward
            return plugins.get(name)().run(cfg, hooks=(kill_at_3,))
        return real(name, cfg)

    monkeypatch.setattr(plugins, "run", killing_run)
    cfg_b = load_cycle_config(cycle_yaml(tmp_path / "b" / "c.yaml", policy, prompts))
    with pytest.raises(Killed):
        run_cycle(cfg_b)
    monkeypatch.setattr(plugins, "run", real)
    run_b = tmp_path / "b" / "run"
    tasks_before = (run_b / "round-002/tasks.jsonl").stat().st_mtime_ns
    assert not (run_b / "round-002/round.json").exists()
    run_cycle(load_cycle_config(cycle_yaml(tmp_path / "b" / "c.yaml", policy, prompts)))
    assert (run_b / "round-002/tasks.jsonl").stat().st_mtime_ns == tasks_before  # not sampled again
    assert json.loads((run_b / "round-002/reward/result.json").read_text())["resumed_from"] == 2
    for sub in ("round-002/reward/final", "round-002/policy/final"):
        wa, wb = load_file(run / sub / "model.safetensors"), load_file(run_b / sub / "model.safetensors")
        assert all(torch.equal(wa[k], wb[k]) for k in wa), sub
    for f in ("round-001/rankings.jsonl", "round-002/rankings.jsonl", "round-002/eval.json"):
        assert (run / f).read_text().replace(str(run), "") == (run_b / f).read_text().replace(str(run_b), ""), f


@pytest.mark.slow
def test_dpo_cycle_and_the_annotation_handoff(tmp_path: Path, start):
    policy, prompts = start
    cfg = load_cycle_config(cycle_yaml(tmp_path / "c.yaml", policy, prompts, judge="annotation"))
    with pytest.raises(PluginInputError, match=r"round 1: rank the tasks in .*round-001/tasks.jsonl .* export the "
                                               r"rankings to .*round-001/rankings.jsonl, then rerun"):
        run_cycle(cfg)
    tasks, _ = read_tasks(tmp_path / "run/round-001/tasks.jsonl")
    assert len(tasks) >= 4
    dpo = load_cycle_config(cycle_yaml(tmp_path / "d" / "c.yaml", policy, prompts, method="dpo"),
                            overrides=["rounds=1"])
    out = run_cycle(dpo)
    assert out["rounds"][0]["round"] == 1
    assert json.loads((tmp_path / "d/run/round-001/policy/config.json").read_text())["plugin"] == "dpo"


def test_the_command(tmp_path: Path, start):
    """`corpus rlhf CONFIG` (its parser built without importing the cycle): --check validates and says where
    the run goes; a bad override is one error line."""
    from helpers import ROOT, run_cli

    policy, prompts = start
    cfg = cycle_yaml(tmp_path / "c.yaml", policy, prompts)
    judge = {"PYTHONPATH": str(ROOT / "tests")}  # the check loads the judge function (tests/rlhfkit.py)
    res = run_cli("rlhf", str(cfg), "--check", "-q", "-o", str(tmp_path / "out"), env=judge)  # -q: as train -q
    assert res.returncode == 0, res.stderr
    assert f"ok: rlhf config {cfg}" in res.stdout and "out" in res.stdout
    res = run_cli("rlhf", str(cfg), "--check", "--set", "rounds=many", env=judge)
    assert res.returncode == 2 and res.stderr.strip().startswith("error:") and "rounds" in res.stderr, res.stderr
    res = run_cli("rlhf", str(cfg), "--check", "--set", f"policy={tmp_path / 'gone'}", env=judge)  # it said ok
    assert res.returncode == 2 and f"policy: {tmp_path / 'gone'} does not exist" in res.stderr, res.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("key,value,error", [
    ("judge.noise", -1, "c.yaml:1: judge: noise must be >= 0 (a score's standard deviation), got -1"),
    ("judge.annotators", [], "judge: annotators must be one or more distinct names, got []"),
    ("sampling.prompts_per_round", 0, "sampling: prompts_per_round must be >= 1, got 0"),
    ("min_agreement", 2, "rlhf: min_agreement is a Kendall's W, in [0, 1]: got 2"),
    ("judge.function", "rlhfkit:nope", "judge.function 'rlhfkit:nope': module 'rlhfkit' has no attribute 'nope'"),
    ("ppo.ppo.kl_coef", -1, "c.yaml: ppo (each round's ppo run): ppo: kl_coef must be >= 0, got -1"),
    ("ppo.ppo.epochs", 0, "c.yaml: ppo (each round's ppo run): ppo: epochs must be >= 1, got 0"),
    ("ppo.data.max_prompt_lne", 8, "ppo (each round's ppo run): data.max_prompt_lne: unknown parameter (did you "
                                   "mean 'max_prompt_len'?)"),
    ("reward.data.validation_fraction", 1.5, "reward (each round's reward run): data: validation_fraction must be "
                                            "in [0, 1)"),
])
def test_every_section_is_checked_before_a_round_starts(tmp_path: Path, key: str, value, error: str):
    """The rounds' reward, PPO and DPO runs are built from the cycle's config once a round has sampled
    (minutes in): their sections are checked at load time, each mistake said once, with no knock-on
    errors from the sections around it."""
    from corpus.config import ConfigError
    from corpus.plugins.base import _set_dotted

    path = cycle_yaml(tmp_path / "c.yaml", tmp_path / "policy", tmp_path / "prompts.jsonl")
    cfg = json.loads(path.read_text())
    _set_dotted(cfg, key, value)
    path.write_text(json.dumps(cfg))
    with pytest.raises((ConfigError, PluginInputError)) as exc:
        load_cycle_config(path)
    errors = exc.value.errors if isinstance(exc.value, ConfigError) else [str(exc.value)]
    assert len(errors) == 1 and error in errors[0], errors


def test_win_rate():
    assert win_rate([1.0, 2.0, 3.0, 0.0], [0.0, 2.0, 4.0, -1.0]) == pytest.approx((1 + 0.5 + 0 + 1) / 4)
