"""Shared pieces of the RLHF tests: synthetic preference sets with a learnable rule, tiny configs."""

from __future__ import annotations

import json
import random
from pathlib import Path

from trainkit import OBJECTS, QUIET, SUBJECTS, TINY_MODEL, VERBS, merge

PROMPTS = ["tell me a story", "say something", "describe a scene", "write a line", "what happened"]
GOOD_WORD = "moon"


def response(rng: random.Random, good: int) -> str:
    """A sentence with ``good`` mentions of the good word (the rule the reward model must learn)."""
    words = [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice([o for o in OBJECTS if GOOD_WORD not in o])}"]
    words += [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} the {GOOD_WORD}"] * good
    rng.shuffle(words)
    return " and ".join(words) + "."


def ranking_records(n: int, seed: int = 0, k: int = 3, annotators: tuple[str, ...] = ("a1",),
                    aspects: bool = False) -> list[dict]:
    """K-wise rankings: response i has a distinct count of the good word; more is better. Every
    annotator labels every item (the same ranking: honest annotators)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        counts = rng.sample(range(k), k)
        responses = [response(rng, c) for c in counts]
        ranking = [1 + sum(o > c for o in counts) for c in counts]
        prompt = rng.choice(PROMPTS)
        for a in annotators:
            rec = {"item_id": f"s{seed}-{i}", "annotator": a, "prompt": prompt,
                   "responses": responses, "ranking": ranking}
            if aspects:  # "length" rates the longer response higher, independent of the good word
                rec["aspects"] = {"length": {str(j): float(len(r)) for j, r in enumerate(responses)}}
            out.append(rec)
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def pref_config(cls, out: Path, data: dict, tokenizer: Path, **over):
    """A validated tiny reward-model / DPO config."""
    from corpus.plugins.base import parse_config

    base = {"output": str(out), "tokenizer": str(tokenizer), "model": dict(TINY_MODEL),
            "data": {"max_len": 48, **data},
            "train": {"lr": 3e-3, "max_steps": 6, "batch_size": 8, "eval_every": 3, "log_every": 1,
                      "warmup_steps": 2, **QUIET}}
    return parse_config(cls, merge(base, over), source="test")


class Killed(Exception):
    pass


def assert_resumes_exactly(plugin: str, make, root: Path, kill_at: int = 5, resumed_from: int = 4) -> None:
    """Run ``make(out)`` straight into root/a, and killed after step ``kill_at`` then rerun into root/b:
    the losses, gradient norms and final weights must be equal bit for bit."""
    import pytest
    import torch
    from safetensors.torch import load_file
    from trainkit import read_metrics

    from corpus import plugins

    plugins.run(plugin, make(root / "a"))

    def kill(step: int, row: dict) -> None:
        if step == kill_at:
            raise Killed

    with pytest.raises(Killed):
        plugins.get(plugin)().run(make(root / "b"), hooks=(kill,))
    assert plugins.run(plugin, make(root / "b")).resumed_from == resumed_from
    a, b = read_metrics(root / "a"), read_metrics(root / "b")
    assert [(x["step"], x["loss"], x["grad_norm"]) for x in a] == [(y["step"], y["loss"], y["grad_norm"]) for y in b]
    wa, wb = load_file(root / "a/final/model.safetensors"), load_file(root / "b/final/model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def vowel_share(prompts: list[str], responses: list[str]) -> list[float]:
    """The PPO toy task's known reward: the share of a response's letters that are vowels."""
    out = []
    for r in responses:
        letters = [c for c in r.lower() if c.isalpha()]
        out.append(sum(c in "aeiou" for c in letters) / len(letters) if letters else 0.0)
    return out


def ppo_config(out: Path, prompts: Path, tokenizer: Path, **over):
    from corpus.plugins.base import parse_config
    from corpus.plugins.ppo import PPOConfig

    base = {"output": str(out), "tokenizer": str(tokenizer), "model": dict(TINY_MODEL),
            "data": {"prompts": str(prompts), "validation_fraction": 0.2, "max_prompt_len": 16},
            "ppo": {"reward_fn": "rlhfkit:vowel_share", "max_new_tokens": 12, "epochs": 2, "rollout_batch": 16,
                    "kl_coef": 0.05},
            "train": {"lr": 3e-3, "max_steps": 4, "batch_size": 8, "eval_every": 4, "log_every": 1,
                      "warmup_steps": 0, **QUIET}}
    return parse_config(PPOConfig, merge(base, over), source="test")


def prompt_file(path: Path, n: int = 80) -> Path:
    return write_jsonl(path, [{"prompt": f"{PROMPTS[i % len(PROMPTS)]} {i}"} for i in range(n)])
