"""PPO: a policy from an SFT checkpoint with a value head on its last hidden state, a frozen reference,
and a reward from a trained reward model (the ``reward`` plugin's export) or a Python function.

One rollout: ``rollout_batch`` prompts -> KV-cached batched sampling (``rlhf_data.sample``, left-padded),
whose passes also give the policy's log-probabilities and values -> one no-grad pass of the reference
(its output layer on the response positions only) -> score, less the
missing-EOS and overlong penalties -> per-token rewards (-beta KL, k1 or k3, the score at the last
token; beta from the adaptive KL controller) -> GAE -> whitened advantages. The rollout then serves
``ppo.epochs`` passes of micro-batches of ``train.batch_size`` rows; every trainer step is one
optimizer step (``grad_accum`` micro-batches) of the clipped policy loss plus ``vf_coef`` x the
clipped value loss, averaged over response tokens. The maths is ``plugins/rl_math.py``.

The checkpoint keeps the prompt loader's position, the rollout buffer, the queue of micro-batches, the
KL coefficient and the clip fractions of the steps since the last log line, so a killed run resumes
exactly, its metrics too. The export is the policy alone (an HF causal LM).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset

from corpus.plugins import rl_math as M
from corpus.plugins.base import PluginConfig, PluginInputError, TrainConfig, TrainPlugin, model_hint, require, shown
from corpus.plugins.chat import chat_template, check_configured_template
from corpus.plugins.checkpoint import export_pretrained, unwrap
from corpus.plugins.data import TrainLoader, eval_loader
from corpus.plugins.models import ModelConfig, SpecialIds, build_model, plugin_tokenizer, reference_model, stop_ids
from corpus.plugins.rlhf_data import (
    PairEncoder,
    RewardScorer,
    held_out,
    left_pad,
    load_function,
    no_validation_note,
    read_prompts,
    response_texts,
    sample,
    score_function,
)
from corpus.plugins.runtime import Runtime
from corpus.plugins.tasks import Task


@dataclass
class PPOData:
    prompts: str = ""  # JSONL with a `prompt` field (prompts, tasks or rankings)
    validation: str = ""  # default: validation_fraction of the prompts
    validation_fraction: float = 0.1
    max_prompt_len: int = 64  # tokens; longer prompts keep their end
    chat_template: str = ""

    def __post_init__(self) -> None:
        if not self.prompts:
            raise ValueError("prompts is required (a JSONL with a prompt field)")
        check_configured_template(self.chat_template)


@dataclass
class PPOSettings:
    reward_model: str = ""  # a reward plugin's export (final/)
    reward_fn: str = ""  # or "module:function", fn(prompts, responses) -> scores (trusted code, like a plugin)
    reference: str = ""  # frozen reference folder; default: model.from_pretrained (or the initial weights)
    rollout_batch: int = 0  # prompts per rollout on each process; 0: batch_size x grad_accum
    epochs: int = 4  # passes over each rollout
    max_new_tokens: int = 32
    temperature: float = 1.0
    top_k: int = 0  # 0: sample from the whole distribution
    kl_coef: float = 0.05
    kl_target: float | None = None  # adaptive KL controller's target per sequence (None: fixed kl_coef)
    kl_horizon: int = 10000
    kl_estimator: str = "k1"  # k1 | k3
    gamma: float = 1.0
    lam: float = 0.95
    clip: float = 0.2
    value_clip: float = 0.2
    vf_coef: float = 0.1
    whiten_advantages: bool = True
    missing_eos_penalty: float = 0.0  # subtracted from the score of a response without an end marker
    overlong_buffer: int = 0  # DAPO soft penalty over the last this-many tokens before max_new_tokens
    overlong_penalty: float = 0.0  # the penalty at max_new_tokens

    def __post_init__(self) -> None:
        if bool(self.reward_model) == bool(self.reward_fn):
            raise ValueError("give exactly one of reward_model (a reward plugin's export) and reward_fn")
        if self.kl_estimator not in M.KL_ESTIMATORS:
            raise ValueError(f"kl_estimator must be one of {M.KL_ESTIMATORS}, got {self.kl_estimator!r}")
        # each message starts with the key it rejects: its line in the file, or `--set ppo.KEY`
        for key in ("epochs", "max_new_tokens"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.rollout_batch < 0:
            raise ValueError(f"rollout_batch must be >= 0 (0: batch_size x grad_accum), got {self.rollout_batch}")
        if not self.temperature > 0:  # the sampling loop divides by the temperature
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0: the whole distribution), got {self.top_k}")
        nonneg = {k: getattr(self, k) for k in ("kl_coef", "value_clip", "vf_coef", "missing_eos_penalty",
                                                  "overlong_buffer", "overlong_penalty")}
        bad = {k: v for k, v in nonneg.items() if not v >= 0}
        if bad:  # a negative KL coefficient rewards drifting from the reference; a negative penalty is a bonus
            raise ValueError(f"{', '.join(bad)} must be >= 0, got {', '.join(str(v) for v in bad.values())}")
        for key in ("gamma", "lam"):
            if not 0 <= getattr(self, key) <= 1:
                raise ValueError(f"{key} must lie in [0, 1], got {getattr(self, key)}")
        if not self.clip > 0:
            raise ValueError(f"clip must be > 0, got {self.clip}")
        if self.kl_horizon < 1:
            raise ValueError(f"kl_horizon must be >= 1, got {self.kl_horizon}")
        if self.kl_target is not None and not self.kl_target > 0:
            raise ValueError(f"kl_target must be > 0 (or null for a fixed kl_coef), got {self.kl_target}")


@dataclass
class PPOConfig(PluginConfig):
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: str = ""
    data: PPOData = field(default_factory=PPOData)
    ppo: PPOSettings = field(default_factory=PPOSettings)

    def __post_init__(self) -> None:
        b, r = self.train.batch_size, self.ppo.rollout_batch
        if r and r % b:  # fewer: no micro-batch to train on; more, not a multiple: the rest never trained on
            raise ValueError(f"ppo.rollout_batch ({r}) must be a multiple of train.batch_size ({b}): each rollout "
                             "is cut into micro-batches of batch_size responses (0: batch_size x grad_accum)")

    def late_problems(self) -> list[str]:
        if not self.ppo.reward_fn:
            return []
        try:  # a wrong name was found only once the models had loaded
            load_function(self.ppo.reward_fn, "ppo.reward_fn", Path(self.base_dir))
        except PluginInputError as exc:
            return [str(exc)]
        return []


def split_prompts(prompts: list[str], fraction: float) -> tuple[list[str], list[str]]:
    """(train, validation): the first ``fraction`` of the distinct prompts, in file order, held out with
    every repeat of them (a split by position put a prompt that repeats on both sides: val_reward was
    partly measured on training prompts). Training keeps the others' repeats, as the file weighs them."""
    distinct = list(dict.fromkeys(prompts))
    held = set(distinct[:held_out(len(distinct), fraction)])
    return [p for p in prompts if p not in held], [p for p in distinct if p in held]


class PolicyWithValue(torch.nn.Module):
    """A causal LM and a scalar value head on its last hidden state: one pass gives both."""

    def __init__(self, policy: torch.nn.Module):
        super().__init__()
        self.policy = policy
        self.value_head = torch.nn.Linear(policy.config.hidden_size, 1)
        torch.nn.init.normal_(self.value_head.weight, std=1 / (policy.config.hidden_size + 1))
        torch.nn.init.zeros_(self.value_head.bias)
        self.config = policy.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, values) of positions ``start`` .. the last but one: the states that predict the
        response. The output layer runs on those alone (on 224-token prompts it would otherwise cost
        a third of the step)."""
        base = getattr(self.policy, self.policy.base_model_prefix)
        hidden = base(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                      use_cache=False).last_hidden_state[:, start:-1]
        return self.policy.get_output_embeddings()(hidden), self.value_head(hidden).squeeze(-1)


class PromptDataset(Dataset):
    """Prompts as token ids (rendered with the chat template's generation prompt) and as texts (what
    the reward sees)."""

    def __init__(self, texts: list[str], enc: PairEncoder, max_len: int):
        self.texts = texts
        self.prompts = [enc.prompt(p)[-max_len:] for p in texts]

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, key: Any) -> dict[str, torch.Tensor]:
        i = key[1] if isinstance(key, tuple) else key
        return {"input_ids": torch.tensor(self.prompts[i]), "row": torch.tensor(i)}


class PPOTask(Task):
    primary_metric = "val_reward"
    eval_keys = ("n", "reward", "kl", "length", "eos")

    def __init__(self, model: PolicyWithValue, train: PromptDataset, val: PromptDataset | None, *,
                 reference: torch.nn.Module, score: Callable[[list[str], list[str]], torch.Tensor],
                 settings: PPOSettings, stops: list[int], **kw: Any):
        super().__init__(model, train, val, **kw)
        self.reference, self.score_fn, self.s, self.stops = reference, score, settings, stops
        self.kl = M.AdaptiveKL(settings.kl_coef, settings.kl_target, settings.kl_horizon)
        self.buffer: dict[str, torch.Tensor] = {}
        self.queue: list[list[int]] = []  # row indices of the micro-batches still to train on
        self.rollouts = 0
        self.last: dict[str, float] = {}
        self.clipped: list[float] = []

    # ---- data: rollouts instead of a loader of rows

    def start(self, rt: Runtime, cfg: TrainConfig) -> None:
        self.rt, self.batch_size, self.eval_limit, self.seed = rt, cfg.batch_size, cfg.eval_batches, cfg.seed
        self.rollout_batch = self.s.rollout_batch or cfg.batch_size * cfg.grad_accum
        self.loader = TrainLoader(self.train, self.rollout_batch, seed=cfg.seed, rank=rt.rank, world=rt.world,
                                  collate_fn=self.collate_fn)
        self.reference.to(rt.device).eval().requires_grad_(False)

    @property
    def collate_fn(self) -> Any:
        import functools

        return functools.partial(left_pad, pad_id=self.pad_id)

    @property
    def batches_per_epoch(self) -> int:
        """Micro-batches per pass over the prompts: each rollout serves epochs x rollout / batch of them."""
        return self.loader.per_epoch * self.s.epochs * max(1, self.rollout_batch // self.batch_size)

    def next_batches(self, n: int) -> list[dict[str, torch.Tensor]]:
        out = []
        for _ in range(n):
            if not self.queue:
                self.rollout()
            idx = torch.tensor(self.queue.pop(0))
            out.append({k: v[idx] for k, v in self.buffer.items()})
        return out

    def generate(self, model: PolicyWithValue, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sampled responses with the policy's log-probabilities and values from the sampling passes
        themselves (the same numbers a full pass gives, to float rounding: tests/test_ppo.py)."""
        m = unwrap(model)
        seq = sample(m.policy, batch["input_ids"].to(self.rt.device), batch["attention_mask"].to(self.rt.device),
                     stops=self.stops, pad_id=self.pad_id, max_new_tokens=self.s.max_new_tokens,
                     temperature=self.s.temperature, top_k=self.s.top_k)
        with torch.no_grad():
            seq["values"] = m.value_head(seq.pop("hidden")).squeeze(-1).float()
        return seq

    def response_logps(self, model: torch.nn.Module, seq: dict[str, torch.Tensor],
                       with_values: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log-probabilities of the response tokens [B, R] (and values of the states before them)."""
        p = int(seq["prompt_len"])
        if isinstance(unwrap(model), PolicyWithValue):
            logits, values = model(seq["input_ids"], seq["attention_mask"], seq["position_ids"], p - 1)
        else:  # the reference: a plain causal LM, logits of the last R + 1 positions only
            r = seq["input_ids"].shape[1] - p
            logits = model(input_ids=seq["input_ids"], attention_mask=seq["attention_mask"],
                           position_ids=seq["position_ids"], use_cache=False, logits_to_keep=r + 1).logits[:, :-1]
            values = None
        labels = seq["input_ids"][:, p:].masked_fill(seq["response_mask"] == 0, -100)
        logp = M.token_logprobs(logits, labels)
        return logp, (values.float() if with_values and values is not None else None)

    def scored(self, seq: dict[str, torch.Tensor], prompts: list[str]) -> dict[str, torch.Tensor]:
        """Score (with penalties), per-token KL against the reference, old log-probs and values (those
        of the sampling passes)."""
        mask = seq["response_mask"].float()
        logp, values = seq["logp"], seq["values"]
        ref_logp, _ = self.response_logps(self.reference, seq, with_values=False)
        responses = response_texts(self.tokenizer, seq, self.pad_id)
        raw = torch.as_tensor(self.score_fn(prompts, responses), dtype=torch.float32).to(mask.device)
        score = M.score_penalties(raw, seq["response_mask"].sum(1), seq["has_eos"], max_len=self.s.max_new_tokens,
                                  missing_eos=self.s.missing_eos_penalty, overlong_buffer=self.s.overlong_buffer,
                                  overlong_factor=self.s.overlong_penalty)
        kl = M.kl_estimate(logp, ref_logp, self.s.kl_estimator) * mask
        return {"logp": logp, "values": values, "kl": kl, "score": score, "raw": raw, "mask": mask}

    @torch.no_grad()
    def rollout(self) -> None:
        model = self.model  # the raw module; the trainer moved it to the device
        batch = next(self.loader)
        with self.rt.autocast():  # the run's precision, as evaluation has it (the maths after it is fp32)
            seq = self.generate(model, batch)  # in eval mode: no dropout in the log-probabilities and values
            sc = self.scored(seq, [self.train.texts[i] for i in batch["row"].tolist()])
        mask = sc["mask"]
        rewards = M.sequence_rewards(sc["score"], sc["kl"], mask, self.kl.value)
        adv, returns = M.gae(rewards, sc["values"], mask, self.s.gamma, self.s.lam)
        if self.s.whiten_advantages:
            adv = M.whiten(adv, mask)
        kl_sum = self.rt.all_sum(sc["kl"].sum(1).mean().double().reshape(1))  # one controller on every process
        kl_seq = float(kl_sum) / self.rt.world
        self.last = {"reward": float(sc["raw"].mean()), "score": float(sc["score"].mean()), "kl": kl_seq,
                     "kl_coef": self.kl.value, "response_len": float(mask.sum(1).mean()),
                     "eos_rate": float(seq["has_eos"].float().mean())}
        self.kl.update(kl_seq, self.rollout_batch * self.rt.world)
        self.buffer = {k: seq[k] for k in ("input_ids", "attention_mask", "position_ids", "response_mask")}
        self.buffer |= {"old_logp": sc["logp"], "old_values": sc["values"], "advantages": adv, "returns": returns,
                        "prompt_len": seq["prompt_len"].expand(mask.shape[0])}
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.rollouts * 101 + self.rt.rank)
        n, b = mask.shape[0], self.batch_size
        self.queue = [perm[i:i + b].tolist() for _ in range(self.s.epochs)
                      for perm in [torch.randperm(n, generator=gen)] for i in range(0, n - b + 1, b)]
        self.rollouts += 1

    def state_dict(self) -> dict[str, Any]:
        # clipped: the clip fractions since the last log line, which averages them (a resumed run logged
        # the mean of its own steps alone)
        return {"loader": self.loader.state_dict(), "buffer": {k: v.cpu() for k, v in self.buffer.items()},
                "queue": self.queue, "kl_coef": self.kl.value, "rollouts": self.rollouts, "last": self.last,
                "clipped": list(self.clipped)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loader.load_state_dict(state["loader"])
        self.buffer = {k: v.to(self.rt.device) for k, v in state["buffer"].items()}
        self.queue, self.kl.value = [list(q) for q in state["queue"]], float(state["kl_coef"])
        self.rollouts, self.last = int(state["rollouts"]), dict(state["last"])
        self.clipped = [float(c) for c in state.get("clipped", [])]  # a checkpoint from before it was kept

    @property
    def epochs_done(self) -> float:
        return self.loader.epochs_done

    def step_metrics(self) -> dict[str, Any]:
        clip = {"clipfrac": sum(self.clipped) / len(self.clipped)} if self.clipped else {}
        self.clipped = []
        return {**{f"rollout_{k}": v for k, v in self.last.items()}, **clip}

    # ---- the objective

    def count(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["response_mask"].sum())

    def tokens_in(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["input_ids"].numel())

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        seq = {**batch, "prompt_len": batch["prompt_len"][0]}
        logp, values = self.response_logps(model, seq)
        mask = batch["response_mask"].float()
        pg, clipped = M.policy_loss(logp, batch["old_logp"], batch["advantages"], mask, self.s.clip)
        vf = M.value_loss(values, batch["old_values"], batch["returns"], mask, self.s.value_clip)
        self.clipped.append(float(clipped.sum() / mask.sum().clamp(min=1)))
        return (pg + self.s.vf_coef * vf).sum()

    def eval_batches(self) -> Any:
        if self.val is None or len(self.val) == 0:
            return None
        return eval_loader(self.val, self.batch_size, rank=self.rt.rank, world=self.rt.world, limit=self.eval_limit,
                           collate_fn=self.collate_fn)

    def eval_sums(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        torch.manual_seed(self.seed * 7919 + int(batch["row"][0]))  # the same samples at every evaluation
        seq = self.generate(model, batch)
        sc = self.scored(seq, [self.val.texts[i] for i in batch["row"].tolist()])
        return {"n": torch.tensor(sc["score"].numel()), "reward": sc["raw"].sum(), "kl": sc["kl"].sum(),
                "length": sc["mask"].sum(), "eos": seq["has_eos"].sum()}

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        n = sums["n"]
        if not n:
            return {}
        reward = sums["reward"] / n
        return {"val_loss": -reward, "val_reward": reward, "val_kl": sums["kl"] / n,
                "val_response_len": sums["length"] / n, "val_eos_rate": sums["eos"] / n}

    def export(self, model: torch.nn.Module, folder: Path, extra: dict[str, Any]) -> None:
        export_pretrained(unwrap(model).policy, folder, self.tokenizer, extra)


class PPO(TrainPlugin):
    """PPO with a value head, a frozen reference, KL control, GAE and clipped losses."""

    name: ClassVar[str] = "ppo"
    config_class = PPOConfig

    def build(self, config: PPOConfig, runtime: Runtime) -> PPOTask:
        d, s, base = config.data, config.ppo, Path(config.base_dir)
        tokenizer = plugin_tokenizer(config)
        enc = PairEncoder(tokenizer, chat_template(tokenizer, d.chat_template), d.max_prompt_len)
        prompts = read_prompts(config.path(d.prompts))
        if d.validation:
            val_p = read_prompts(config.path(d.validation))
        else:
            prompts, val_p = split_prompts(prompts, d.validation_fraction)
        if not prompts:
            raise PluginInputError(f"{shown(config.path(d.prompts))}: no prompt (records need a 'prompt' field)")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        positions = config.model.max_positions or d.max_prompt_len + s.max_new_tokens
        policy = build_model(config.model, "causal", len(tokenizer), positions,
                             SpecialIds(eos=tokenizer.eos_token_id, pad=pad), base)
        reference = reference_model(config, s.reference, policy)
        if s.reward_model:
            where = config.path(s.reward_model)
            folder = require(where, "reward model", model_hint(where, base))
            scorer = RewardScorer(folder, runtime.device)
            score: Callable[[list[str], list[str]], Any] = scorer.score
        else:
            score = score_function(s.reward_fn, "ppo.reward_fn", base)
        note = no_validation_note(len(val_p), None if d.validation else d.validation_fraction, "prompt")
        stats = {"prompts": len(prompts), "validation_prompts": len(val_p), **({"no_validation": note} if note else {})}
        train, val = PromptDataset(prompts, enc, d.max_prompt_len), PromptDataset(val_p, enc, d.max_prompt_len)
        return PPOTask(PolicyWithValue(policy), train, val if val_p else None,
                       reference=reference, score=score, settings=s, stops=stop_ids(tokenizer),
                       tokenizer=tokenizer,
                       pad_id=pad, stats=stats)
