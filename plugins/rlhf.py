"""The RLHF cycle (``corpus rlhf CONFIG``): rounds of generate -> rank -> reward model -> PPO or DPO ->
evaluate, each round's data and models versioned in the run folder, resumable at the step it was in.

    OUT/round-001/tasks.jsonl      K sampled responses per prompt (the annotation app's task format)
                 rankings.jsonl    the labels: the scripted judge's, or the app's export put there
                 reward/           the reward plugin's run (final/ = this round's reward model)
                 policy/           the PPO or DPO run (final/ = the new policy)
                 eval.json         win rate of the new policy against the previous one under the reward model
                 round.json        written last: the round is done
    OUT/cycle.json                 the rounds so far and the current policy

Each step writes its output atomically (files) or through a training run that resumes from its own
checkpoints, so a killed cycle, rerun, skips what is done and continues the step it was in. With
``judge.kind: annotation`` the cycle stops after writing a round's tasks and says where the rankings
go; rerun once they are there.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from corpus.plugins.base import ConfigError, PluginConfig, PluginInputError, load_plugin_config, parse_config, shown
from corpus.plugins.preferences import (
    Preference,
    Task,
    check_min_agreement,
    item_id_for,
    ranking_json,
    write_records,
)
from corpus.writers import write_bytes_atomic

log = logging.getLogger("corpusforge.train")
JUDGES = ("scripted", "annotation")
METHODS = ("ppo", "dpo")


@dataclass
class Judge:
    kind: str = "scripted"  # scripted: a function ranks (tests, demos) | annotation: people rank in the app
    function: str = ""  # scripted: "module:function", fn(prompts, responses) -> scores (higher = better)
    annotators: list[str] = field(default_factory=lambda: ["judge"])  # simulated annotators, one label each
    noise: float = 0.0  # scripted: each annotator's score noise (std), to exercise the aggregation

    def __post_init__(self) -> None:
        if self.kind not in JUDGES:
            raise ValueError(f"kind must be one of {JUDGES}, got {self.kind!r}")
        if self.kind == "scripted" and ":" not in self.function:
            raise ValueError("a scripted judge needs function: 'module:function'")
        if not self.noise >= 0:
            raise ValueError(f"noise must be >= 0 (a score's standard deviation), got {self.noise}")
        if not self.annotators or len(set(self.annotators)) != len(self.annotators):
            raise ValueError(f"annotators must be one or more distinct names, got {self.annotators}")


@dataclass
class Sampling:
    responses: int = 4  # K responses per prompt
    prompts_per_round: int = 16
    max_new_tokens: int = 32
    temperature: float = 1.0
    eval_prompts: int = 16  # prompts for the win rate (one sample per policy each)

    def __post_init__(self) -> None:
        # each message starts with the key it rejects: its line in the file, or `--set sampling.KEY`
        if not self.temperature > 0:  # the sampling loop divides by the temperature
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.responses < 2:
            raise ValueError(f"responses must be >= 2 (responses to rank per prompt), got {self.responses}")
        for key in ("max_new_tokens", "prompts_per_round", "eval_prompts"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")


@dataclass
class RLHFConfig(PluginConfig):
    policy: str = ""  # the starting policy (an SFT export)
    prompts: str = ""  # JSONL with a prompt field
    rounds: int = 2
    method: str = "ppo"  # ppo | dpo
    sampling: Sampling = field(default_factory=Sampling)
    judge: Judge = field(default_factory=Judge)
    min_agreement: float | None = None
    reward: dict[str, Any] = field(default_factory=dict)  # overrides of the reward run's config
    ppo: dict[str, Any] = field(default_factory=dict)  # overrides of the PPO run's config
    dpo: dict[str, Any] = field(default_factory=dict)  # overrides of the DPO run's config

    def __post_init__(self) -> None:
        if not self.policy or not self.prompts:
            raise ValueError("policy (an SFT export) and prompts (a JSONL) are required")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        check_min_agreement(self.min_agreement)


def load_cycle_config(path: str | Path, output: str | None = None, overrides: list[str] = ()) -> RLHFConfig:
    """The cycle's config, with its rounds' runs checked as they will be built (the reward, ppo and dpo
    sections' keys and values) and its scripted judge loaded: a mistake there stops the cycle now, not
    after a round's sampling."""
    cfg = load_plugin_config(RLHFConfig, path, plugin="rlhf", output=output, overrides=overrides)
    placeholder = "<from the round>"
    data = {"model": {"from_pretrained": placeholder}}
    runs = {"reward": ({**data, "data": {"train": placeholder}}, cfg.reward),
            "ppo": ({**data, "data": {"prompts": placeholder}, "ppo": {"reward_model": placeholder,
                                                                        "reference": placeholder}}, cfg.ppo),
            "dpo": ({**data, "data": {"train": placeholder}, "dpo": {"reference": placeholder}}, cfg.dpo)}
    errors = []
    for plugin in ("reward", cfg.method):
        try:
            sub_config(cfg, plugin, Path(cfg.output), *runs[plugin])
        except ConfigError as exc:  # said of the cycle's config, where the section is
            errors += [e.replace(f"rlhf config: {plugin}:0: ", f"{path}: {plugin} (each round's {plugin} run): ")
                       for e in exc.errors]
    if errors:
        raise ConfigError(errors)
    if cfg.judge.kind == "scripted":
        from corpus.plugins.rlhf_data import load_function

        load_function(cfg.judge.function, "judge.function", Path(cfg.base_dir))
    return cfg


def sub_config(cfg: RLHFConfig, plugin: str, out: Path, data: dict[str, Any], overrides: dict[str, Any]) -> Any:
    """A round's reward, PPO or DPO run config: the cycle's train section, the round's data, the overrides."""
    from corpus import plugins

    base = {"output": str(out), "train": asdict(cfg.train), **data}
    return parse_config(plugins.get(plugin).config_class, base, source=f"rlhf config: {plugin}",
                        base_dir=Path(cfg.base_dir), plugin=plugin, overrides=dotted(overrides))


# ---------------------------------------------------------------- pieces


def dotted(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """A nested mapping of config overrides as (dotted key, value) pairs."""
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        out += dotted(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [(f"{prefix}{k}", v)]
    return out


class Policy:
    """A causal-LM export sampling K responses per prompt, seeded."""

    def __init__(self, folder: Path, cfg: RLHFConfig):
        import torch

        from corpus.plugins.chat import chat_template
        from corpus.plugins.checkpoint import check_export
        from corpus.plugins.models import auto_class, load_tokenizer, quiet_transformers, stop_ids
        from corpus.plugins.rlhf_data import PairEncoder

        quiet_transformers()
        check_export(folder)
        self.tok = load_tokenizer(folder)
        self.model = auto_class("causal").from_pretrained(str(folder), dtype=torch.float32).eval()
        self.enc = PairEncoder(self.tok, chat_template(self.tok), 10**6)
        self.stops = stop_ids(self.tok)
        self.pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        self.s = cfg.sampling

    def responses(self, prompts: list[str], k: int, seed: int) -> list[list[str]]:
        import torch

        from corpus.plugins.rlhf_data import left_pad, response_texts, sample

        torch.manual_seed(seed)
        rows = [{"input_ids": torch.tensor(self.enc.prompt(p)), "row": torch.tensor(i)}
                for i, p in enumerate(prompts) for _ in range(k)]
        out: list[str] = []
        for s in range(0, len(rows), 32):
            b = left_pad(rows[s:s + 32], self.pad)
            seq = sample(self.model, b["input_ids"], b["attention_mask"], stops=self.stops, pad_id=self.pad,
                         max_new_tokens=self.s.max_new_tokens, temperature=self.s.temperature)
            out += response_texts(self.tok, seq, self.pad)
        return [out[i * k:(i + 1) * k] for i in range(len(prompts))]


def scripted_rankings(tasks: list[Task], judge: Judge, seed: int, base: Path | None = None) -> list[Preference]:
    """Each simulated annotator ranks each task by the judge's scores plus its own seeded noise."""
    from corpus.plugins.rlhf_data import score_function

    fn = score_function(judge.function, "judge.function", base)
    rng = random.Random(seed)
    labels = []
    for t in tasks:
        scores = fn([t.prompt] * len(t.responses), list(t.responses))
        for a in judge.annotators:
            noisy = [s + rng.gauss(0, judge.noise) if judge.noise else s for s in scores]
            ranking = tuple(1 + sum(o > v for o in noisy) for v in noisy)
            labels.append(Preference(t.item_id, t.prompt, t.responses, ranking, a))
    return labels


def win_rate(new: list[float], old: list[float]) -> float:
    """Share of prompts where the new policy's response scores higher (ties count half)."""
    if not new:
        return 0.5
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(new, old, strict=True)) / len(new)


# ---------------------------------------------------------------- the cycle


class Cycle:
    def __init__(self, cfg: RLHFConfig):
        from corpus.plugins.rlhf_data import read_prompts

        self.cfg, self.out = cfg, Path(cfg.output)
        self.prompts = read_prompts(cfg.path(cfg.prompts))
        if not self.prompts:
            raise PluginInputError(f"{shown(cfg.path(cfg.prompts))}: no prompt (records need a 'prompt' field)")
        self.start_policy = cfg.path(cfg.policy)

    def round_dir(self, r: int) -> Path:
        return self.out / f"round-{r:03d}"

    def policy_of(self, r: int) -> Path:
        """The policy that round r starts from."""
        return self.start_policy if r == 1 else self.round_dir(r - 1) / "policy" / "final"

    def round_prompts(self, r: int) -> list[str]:
        n = min(self.cfg.sampling.prompts_per_round, len(self.prompts))
        return random.Random(self.cfg.train.seed * 1000 + r).sample(self.prompts, n)

    def run(self) -> dict[str, Any]:
        from corpus.lock import main_process_lock

        self.out.mkdir(parents=True, exist_ok=True)
        with main_process_lock(self.out):
            summary: list[dict[str, Any]] = []
            for r in range(1, self.cfg.rounds + 1):
                summary.append(self.round(r))
                self.write_summary(summary, r)
            return {"rounds": summary, "policy": str(self.round_dir(self.cfg.rounds) / "policy" / "final")}

    def write_summary(self, rounds: list[dict[str, Any]], r: int) -> None:
        state = {"rounds": rounds, "policy": str(self.round_dir(r) / "policy" / "final"), "config": asdict(self.cfg)}
        write_bytes_atomic(self.out / "cycle.json", json.dumps(state, indent=2, default=str).encode())

    def round(self, r: int) -> dict[str, Any]:
        d = self.round_dir(r)
        done = d / "round.json"
        if done.is_file():
            return json.loads(done.read_text())
        d.mkdir(parents=True, exist_ok=True)
        seed = self.cfg.train.seed * 1000 + r
        tasks = self.generate(r, d, seed)
        rankings = self.label(r, d, tasks, seed)
        reward = self.train_reward(r, d, rankings)
        policy = self.train_policy(r, d, rankings, reward)
        result = self.evaluate(r, d, policy, reward, seed)
        write_bytes_atomic(done, json.dumps(result, indent=2).encode())
        return result

    def generate(self, r: int, d: Path, seed: int) -> list[Task]:
        path = d / "tasks.jsonl"
        if path.is_file():
            from corpus.plugins.preferences import read_tasks

            tasks, _ = read_tasks(path)
            return tasks
        log.info("round %d: sampling %d responses for %d prompts", r, self.cfg.sampling.responses,
                 self.cfg.sampling.prompts_per_round)
        prompts = self.round_prompts(r)
        policy = Policy(self.policy_of(r), self.cfg)
        tasks = []
        for p, resp in zip(prompts, policy.responses(prompts, self.cfg.sampling.responses, seed), strict=True):
            unique = list(dict.fromkeys(resp))  # a ranking needs distinct responses
            if len(unique) >= 2:
                tasks.append(Task(item_id_for(p, unique), p, tuple(unique),
                                  meta={"round": r, "policy": str(self.policy_of(r)), "seed": seed}))
        write_records(path, [t.to_json() for t in tasks])
        return tasks

    def label(self, r: int, d: Path, tasks: list[Task], seed: int) -> Path:
        path = d / "rankings.jsonl"
        if path.is_file():
            return path
        if self.cfg.judge.kind == "annotation":
            raise PluginInputError(f"round {r}: rank the tasks in {shown(d / 'tasks.jsonl')} (the annotation app), "
                                   f"export the rankings to {shown(path)}, then rerun to continue")
        labels = scripted_rankings(tasks, self.cfg.judge, seed, Path(self.cfg.base_dir))
        write_records(path, [ranking_json(p) for p in labels])
        return path

    def sub_config(self, plugin: str, out: Path, data: dict[str, Any], overrides: dict[str, Any]) -> Any:
        return sub_config(self.cfg, plugin, out, data, overrides)

    def train_reward(self, r: int, d: Path, rankings: Path) -> Path:
        from corpus import plugins

        final = d / "reward" / "final"
        if not (final / "manifest.json").is_file():
            data = {"model": {"from_pretrained": str(self.start_policy)},
                    "data": {"train": str(rankings), "min_agreement": self.cfg.min_agreement}}
            plugins.run("reward", self.sub_config("reward", d / "reward", data, self.cfg.reward))
        return final

    def train_policy(self, r: int, d: Path, rankings: Path, reward: Path) -> Path:
        from corpus import plugins

        final = d / "policy" / "final"
        if not (final / "manifest.json").is_file():
            start = {"model": {"from_pretrained": str(self.policy_of(r))}}
            if self.cfg.method == "ppo":
                data = {**start, "data": {"prompts": str(self.cfg.path(self.cfg.prompts))},
                        "ppo": {"reward_model": str(reward), "reference": str(self.start_policy)}}
                over = self.cfg.ppo
            else:
                data = {**start, "data": {"train": str(rankings), "min_agreement": self.cfg.min_agreement},
                        "dpo": {"reference": str(self.start_policy)}}
                over = self.cfg.dpo
            plugins.run(self.cfg.method, self.sub_config(self.cfg.method, d / "policy", data, over))
        return final

    def evaluate(self, r: int, d: Path, policy: Path, reward: Path, seed: int) -> dict[str, Any]:
        from corpus.plugins.rlhf_data import RewardScorer

        path = d / "eval.json"
        if path.is_file():
            return json.loads(path.read_text())
        n = min(self.cfg.sampling.eval_prompts, len(self.prompts))
        prompts = random.Random(seed + 7).sample(self.prompts, n)
        scorer = RewardScorer(reward)
        new = Policy(policy, self.cfg).responses(prompts, 1, seed + 11)
        old = Policy(self.policy_of(r), self.cfg).responses(prompts, 1, seed + 11)
        s_new = scorer.score(prompts, [x[0] for x in new]).tolist()
        s_old = scorer.score(prompts, [x[0] for x in old]).tolist()
        result = {"round": r, "win_rate": win_rate(s_new, s_old), "reward_new": sum(s_new) / n,
                  "reward_previous": sum(s_old) / n, "eval_prompts": n, "policy": str(policy),
                  "reward_model": str(reward)}
        write_bytes_atomic(path, json.dumps(result, indent=2).encode())
        return result


def run_cycle(cfg: RLHFConfig) -> dict[str, Any]:
    return Cycle(cfg).run()
