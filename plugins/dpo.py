"""Direct preference optimisation: the policy (from an SFT checkpoint) learns from the same preference
data as the reward model, against a frozen reference (by default the policy's starting weights).

Each ranked item gives (chosen, rejected) pairs: every strictly ordered pair of its responses
(``dpo.pairs: all``) or its best against its worst (``best_worst``). Losses: ``sigmoid`` (Rafailov et
al., with optional conservative label smoothing) on summed log-probabilities, ``ipo`` (Azar et al.) on
per-token means. Chosen and rejected go through one forward pass; the reference's through another
without gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset

from corpus.plugins import rl_math as M
from corpus.plugins.base import PluginConfig, PluginInputError, TrainConfig, TrainPlugin
from corpus.plugins.chat import chat_template
from corpus.plugins.models import (
    ModelConfig,
    SpecialIds,
    build_model,
    plugin_tokenizer,
    reference_model,
)
from corpus.plugins.rlhf_data import PairEncoder, PreferenceData, RankedItem, load_items, response_labels
from corpus.plugins.runtime import Runtime
from corpus.plugins.tasks import Task

PAIRS = ("all", "best_worst")


@dataclass
class DPOSettings:
    beta: float = 0.1
    loss: str = "sigmoid"  # sigmoid | ipo
    label_smoothing: float = 0.0  # sigmoid only: the share of labels assumed flipped
    pairs: str = "all"  # all: every ordered pair of an item's responses | best_worst: one per item
    reference: str = ""  # frozen reference model folder; default: model.from_pretrained (or the initial weights)

    def __post_init__(self) -> None:
        if self.loss not in M.DPO_LOSSES:
            raise ValueError(f"loss must be one of {M.DPO_LOSSES}, got {self.loss!r}")
        if self.pairs not in PAIRS:
            raise ValueError(f"pairs must be one of {PAIRS}, got {self.pairs!r}")
        if not self.beta > 0:  # each message starts with the key it rejects: its line, or `--set dpo.KEY`
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must lie in [0, 0.5), got {self.label_smoothing}")


@dataclass
class DPOConfig(PluginConfig):
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: str = ""
    data: PreferenceData = field(default_factory=PreferenceData)
    dpo: DPOSettings = field(default_factory=DPOSettings)


def item_pairs(item: RankedItem, how: str) -> list[tuple[int, int]]:
    """(chosen, rejected) response indices of an item."""
    k, r = len(item.responses), item.ranks
    if how == "best_worst":
        best, worst = min(r), max(r)
        return [] if best == worst else [(r.index(best), r.index(worst))]
    return [(i, j) for i in range(k) for j in range(k) if r[i] < r[j]]


class PairDataset(Dataset):
    """Rows ``chosen_input_ids``, ``chosen_labels`` (response tokens only), and the same for rejected."""

    def __init__(self, items: list[RankedItem], enc: PairEncoder, how: str):
        self.rows = []
        for it in items:
            encoded = [enc.encode(it.prompt, r) for r in it.responses]
            for c, r in item_pairs(it, how):
                (ci, cm), (ri, rm) = encoded[c], encoded[r]
                self.rows.append({"chosen_input_ids": torch.from_numpy(ci), "chosen_labels": response_labels(ci, cm),
                                  "chosen_attention_mask": torch.ones(ci.size, dtype=torch.long),
                                  "rejected_input_ids": torch.from_numpy(ri),
                                  "rejected_labels": response_labels(ri, rm),
                                  "rejected_attention_mask": torch.ones(ri.size, dtype=torch.long)})

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: Any) -> dict[str, torch.Tensor]:
        return self.rows[key[1] if isinstance(key, tuple) else key]


def _both(batch: dict[str, torch.Tensor], name: str, fill: int) -> torch.Tensor:
    c, r = batch[f"chosen_{name}"], batch[f"rejected_{name}"]
    t = max(c.shape[1], r.shape[1])
    pad = [torch.nn.functional.pad(x, (0, t - x.shape[1]), value=fill) for x in (c, r)]
    return torch.cat(pad)


class DPOTask(Task):
    primary_metric = "val_reward_acc"
    eval_keys = ("loss", "n", "correct", "margin", "chosen", "rejected")

    def __init__(self, model: torch.nn.Module, train: Dataset, val: Dataset | None, *, reference: torch.nn.Module,
                 settings: DPOSettings, **kw: Any):
        super().__init__(model, train, val, **kw)
        self.reference, self.s = reference, settings

    def start(self, rt: Runtime, cfg: TrainConfig) -> None:
        super().start(rt, cfg)
        self.reference.to(rt.device).eval().requires_grad_(False)

    def count(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["chosen_input_ids"].shape[0])

    def tokens_in(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["chosen_input_ids"].numel() + batch["rejected_input_ids"].numel())

    def flops_per_token(self) -> float:
        return super().flops_per_token() * 8 / 6  # the reference's forward pass too

    def logps(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(chosen, rejected) log-probabilities of the responses: sums, or per-token means for IPO."""
        ids, labels = _both(batch, "input_ids", self.pad_id), _both(batch, "labels", -100)
        attn = _both(batch, "attention_mask", 0)
        logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits
        lp = M.token_logprobs(logits, labels).sum(dim=1)
        if self.s.loss == "ipo":
            lp = lp / (labels >= 0).sum(dim=1).clamp(min=1)
        b = batch["chosen_input_ids"].shape[0]
        return lp[:b], lp[b:]

    def pair_losses(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        pc, pr = self.logps(model, batch)
        with torch.no_grad():
            rc, rr = self.logps(self.reference, batch)
        return M.dpo_loss(pc, pr, rc, rr, self.s.beta, self.s.loss, self.s.label_smoothing)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.pair_losses(model, batch)[0].sum()

    def eval_sums(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        loss, chosen, rejected = self.pair_losses(model, batch)
        return {"loss": loss.sum(), "n": torch.tensor(loss.numel()), "correct": (chosen > rejected).sum(),
                "margin": (chosen - rejected).sum(), "chosen": chosen.sum(), "rejected": rejected.sum()}

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        n = sums["n"]
        if not n:
            return {}
        return {"val_loss": sums["loss"] / n, "val_reward_acc": sums["correct"] / n, "val_margin": sums["margin"] / n,
                "val_reward_chosen": sums["chosen"] / n, "val_reward_rejected": sums["rejected"] / n,
                "val_pairs": int(n)}


class DPO(TrainPlugin):
    """DPO (sigmoid or IPO) against a frozen reference, from ranking or pair data."""

    name: ClassVar[str] = "dpo"
    config_class = DPOConfig

    def build(self, config: DPOConfig, runtime: Runtime) -> DPOTask:
        d, s, base = config.data, config.dpo, Path(config.base_dir)
        tokenizer = plugin_tokenizer(config)
        out = Path(config.output) if runtime.is_main else None
        train_items, val_items, stats = load_items(d, config.path, config.train.seed, out)
        enc = PairEncoder(tokenizer, chat_template(tokenizer, d.chat_template), d.max_len)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        model = build_model(config.model, "causal", len(tokenizer), config.model.max_positions or d.max_len,
                            SpecialIds(eos=tokenizer.eos_token_id, pad=pad), base)
        reference = reference_model(config, s.reference, model)
        train = PairDataset(train_items, enc, s.pairs)
        if train_items and not len(train):
            raise PluginInputError(f"{config.data.train}: every training item's ranking is a tie "
                                   f"({len(train_items):,} items): no (chosen, rejected) pair to learn from")
        val = PairDataset(val_items, enc, s.pairs) if val_items else None
        stats |= {"train_pairs": len(train), "validation_pairs": len(val) if val is not None else 0}
        return DPOTask(model, train, val, reference=reference, settings=s, tokenizer=tokenizer, pad_id=pad,
                       stats=stats)
