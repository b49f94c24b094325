"""Reward model from comparative rankings: a scalar head (``AutoModelForSequenceClassification``) on a
pretrained or SFT checkpoint, trained on pairs (Bradley-Terry, with margin) and K-wise rankings with ties
(Plackett-Luce), from the annotators' consensus or from each label (``plugins/rlhf_data.py``).

Optional: reward centering (``loss.center``), and one head per named aspect (``loss.aspects: {name:
weight}``) trained on that aspect's ratings, the reward being their weighted total. Metrics: pairwise
accuracy, Brier score and expected calibration error of sigmoid(r_i - r_j), reward mean and spread.
The export is an HF folder; ``corpusforge.json`` names its heads and their weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from corpus.plugins import rl_math as M
from corpus.plugins.base import PluginConfig, PluginInputError, TrainPlugin
from corpus.plugins.chat import chat_template
from corpus.plugins.checkpoint import export_pretrained
from corpus.plugins.models import ModelConfig, SpecialIds, build_model, plugin_tokenizer
from corpus.plugins.rlhf_data import (
    PairEncoder,
    PreferenceData,
    RankedDataset,
    collate_ranked,
    load_items,
    sequence_scores,
)
from corpus.plugins.runtime import Runtime
from corpus.plugins.tasks import Task

BINS = 5


@dataclass
class RewardLoss:
    margin: bool = True  # pairs with a margin ask for a gap of at least that much
    center: float = 0.0  # coefficient of (sum of an item's rewards)^2; TRL recommends 0.01
    aspects: dict[str, float] = field(default_factory=dict)  # head name -> weight in the total reward
    aspect_weight: float = 1.0  # weight of the aspect-rating losses against the ranking loss

    def __post_init__(self) -> None:
        if self.center < 0 or self.aspect_weight < 0:
            raise ValueError("center and aspect_weight must be >= 0")


@dataclass
class RewardConfig(PluginConfig):
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: str = ""  # default: model.from_pretrained's
    data: PreferenceData = field(default_factory=PreferenceData)
    loss: RewardLoss = field(default_factory=RewardLoss)


def ranks_from_ratings(ratings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ranks, rated) from ratings [B, K] with NaN where a response has none: rank 1 = highest rating."""
    rated = ~torch.isnan(ratings)
    r = torch.where(rated, ratings, torch.finfo(ratings.dtype).min)
    ranks = 1 + ((r[:, None, :] > r[:, :, None]) & rated[:, None, :]).sum(dim=2)
    return ranks * rated, rated


class RewardTask(Task):
    """Ranking losses on the rewards of an item's responses; ``count`` = items."""

    primary_metric = "val_pair_acc"
    eval_keys = ("loss", "n", "pairs", "correct", "brier", "reward_sum", "reward_sq", "rewards",
                 *(f"{k}{i}" for k in ("bin_n", "bin_conf", "bin_correct") for i in range(BINS)))

    def __init__(self, model: torch.nn.Module, train: RankedDataset, val: RankedDataset | None, *,
                 loss: RewardLoss, heads: list[str], weights: list[float], **kw: Any):
        super().__init__(model, train, val, **kw)
        self.cfg, self.heads = loss, heads
        self.weights = torch.tensor(weights, dtype=torch.float32)

    @property
    def collate_fn(self) -> Any:
        import functools

        return functools.partial(collate_ranked, pad_id=self.pad_id)

    def count(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["ranks"].shape[0])

    def tokens_in(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["attention_mask"].sum())

    def scores(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(total reward [B, K], per-head rewards [B, A, K]), 0 in empty slots."""
        b, k = batch["ranks"].shape
        heads = sequence_scores(model, batch["input_ids"], batch["attention_mask"]).float()
        heads = heads.reshape(b, k, -1).transpose(1, 2) * batch["valid"][:, None, :]
        total = (heads * self.weights.to(heads.device)[None, :, None]).sum(dim=1)
        return total, heads

    def item_losses(self, total: torch.Tensor, heads: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ranks, valid = batch["ranks"], batch["valid"]
        loss = M.plackett_luce_loss(total, ranks, valid)
        if self.cfg.margin:  # pairs: Bradley-Terry with the margin (Plackett-Luce of two without one)
            pair = (valid.sum(dim=1) == 2) & (ranks == 2).any(dim=1)  # two responses, strictly ordered
            hi, lo = (total * (ranks == 1)).sum(dim=1), (total * (ranks == 2)).sum(dim=1)
            loss = torch.where(pair, M.bradley_terry_loss(hi, lo, batch["margin"].float()), loss)
        if self.cfg.center:
            loss = loss + self.cfg.center * M.centering_penalty(total, valid)
        if self.heads and batch["aspects"].numel():
            for a in range(len(self.heads)):
                ranks_a, rated = ranks_from_ratings(batch["aspects"][:, a, :].to(total.device))
                rated = rated & valid.bool()
                loss = loss + self.cfg.aspect_weight * M.plackett_luce_loss(heads[:, a, :], ranks_a, rated)
        return loss

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        total, heads = self.scores(model, batch)
        return self.item_losses(total, heads, batch).sum()

    def eval_sums(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        total, heads = self.scores(model, batch)
        pairs = M.ordered_pairs(batch["ranks"], batch["valid"])
        p = M.pair_probabilities(total)[pairs].double()
        count, conf, correct = M.calibration_bins(p, BINS)
        valid = batch["valid"].bool()
        out = {"loss": self.item_losses(total, heads, batch).sum(), "n": torch.tensor(total.shape[0]),
               "pairs": pairs.sum(), "correct": (p > 0.5).sum(), "brier": ((1 - p) ** 2).sum(),
               "reward_sum": total[valid].sum(), "reward_sq": (total[valid] ** 2).sum(), "rewards": valid.sum()}
        for i in range(BINS):
            out[f"bin_n{i}"], out[f"bin_conf{i}"], out[f"bin_correct{i}"] = count[i], conf[i], correct[i]
        return out

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        n, pairs, r = sums["n"], sums["pairs"], sums["rewards"]
        if not n:
            return {}
        mean = sums["reward_sum"] / r
        ece = M.expected_calibration_error(*([sums[f"{k}{i}"] for i in range(BINS)]
                                             for k in ("bin_n", "bin_conf", "bin_correct")))
        out = {"val_loss": sums["loss"] / n, "val_pair_acc": sums["correct"] / pairs if pairs else 0.0,
               "val_brier": sums["brier"] / pairs if pairs else 0.0, "val_reward_mean": mean,
               "val_reward_std": max(sums["reward_sq"] / r - mean * mean, 0.0) ** 0.5, "val_items": int(n)}
        if ece is not None:
            out["val_ece"] = ece
        return out

    def export(self, model: torch.nn.Module, folder: Path, extra: dict[str, Any]) -> None:
        reward = {"heads": self.heads or ["reward"], "weights": self.weights.tolist()}
        export_pretrained(model, folder, self.tokenizer, {**extra, "reward": reward})


class Reward(TrainPlugin):
    """Reward model on pairs and K-wise rankings, consensus of several annotators, optional aspect heads."""

    name: ClassVar[str] = "reward"
    config_class = RewardConfig

    def build(self, config: RewardConfig, runtime: Runtime) -> RewardTask:
        d, base = config.data, Path(config.base_dir)
        tokenizer = plugin_tokenizer(config)
        out = Path(config.output) if runtime.is_main else None
        train_items, val_items, stats = load_items(d, config.path, config.train.seed, out)
        tied = sum(len(set(it.ranks)) <= 1 for it in train_items)
        train_items = [it for it in train_items if len(set(it.ranks)) > 1]  # all tied: nothing to learn
        val_items = [it for it in val_items if len(set(it.ranks)) > 1]
        if not train_items and tied:
            raise PluginInputError(f"{d.train}: every training item's ranking is a tie ({tied:,} items): no "
                                   "preference to learn from")
        heads = list(config.loss.aspects)
        weights = [config.loss.aspects[h] for h in heads] or [1.0]
        enc = PairEncoder(tokenizer, chat_template(tokenizer, d.chat_template), d.max_len)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        model = build_model(config.model, "reward", len(tokenizer), config.model.max_positions or d.max_len,
                            SpecialIds(eos=tokenizer.eos_token_id, pad=pad), base, num_labels=max(1, len(heads)))
        model.config.pad_token_id = pad
        if heads:
            model.config.id2label = dict(enumerate(heads))
            model.config.label2id = {h: i for i, h in enumerate(heads)}
        train = RankedDataset(train_items, enc, heads)
        val = RankedDataset(val_items, enc, heads) if val_items else None
        return RewardTask(model, train, val, loss=config.loss, heads=heads, weights=weights, tokenizer=tokenizer,
                          pad_id=pad, stats=stats)
