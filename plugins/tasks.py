"""Training objectives as small task classes that plugins compose: causal LM, masked LM, span
corruption and SFT.

A task is what a plugin's ``build`` hands the trainer: the model, the train and validation datasets
(rows of tensors, ``corpus.plugins.data``) and the objective. The trainer knows nothing else:

* ``count(batch)``: how many units the loss of a micro-batch sums over (target tokens here; pairs for
  a preference loss). The trainer divides every micro-batch's ``loss`` by the count of the whole
  optimizer step on all processes, so accumulation and DDP give the update of one big batch;
* ``loss(model, batch)``: the summed loss (here: cross-entropy over ``labels`` != -100);
* ``eval_sums(model, batch)`` and ``metrics(sums)``: what an evaluation adds up over the validation
  batches (on all processes) and the metrics it reports, ``val_loss`` among them (best model, early
  stopping); ``samples(model)``: generations shown at each evaluation;
* ``start(rt, cfg)``, ``next_batches(n)``, ``state_dict()``: the data side (a ``TrainLoader``), which a
  task that makes its own batches (rollouts) overrides; ``export``: the HF folder written.

The labels of a row come from a row function given to the dataset (``causal_row``, ``MaskRows``,
``SpanRows``); its randomness is seeded by (seed, epoch, row), so a rerun or a resume corrupts the
same row the same way and validation uses the same corruption at every evaluation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from corpus.plugins import checkpoint as ckpt
from corpus.plugins.data import IGNORE_INDEX, Row, TrainLoader, Window, collate, count_targets, eval_loader
from corpus.plugins.models import model_positions

if TYPE_CHECKING:
    from corpus.plugins.base import TrainConfig
    from corpus.plugins.runtime import Runtime


def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of cross-entropy over target positions (labels != -100)."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE_INDEX,
                           reduction="sum")


def matmul_params(model: torch.nn.Module) -> int:
    """Parameters that take part in matmuls: all but embedding tables, except an output head tied
    to the input embedding (which is a matmul)."""
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    head = {id(out.weight)} if out is not None and hasattr(out, "weight") else set()
    emb = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    seen: set[int] = set()
    n = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if id(p) not in emb or id(p) in head:
            n += p.numel()
    return n


class Task:
    """The base: token-level cross-entropy on ``labels``; subclasses give ``forward``."""

    primary_metric = "val_loss"  # shown in the progress line and the report
    eval_keys: tuple[str, ...] = ("loss", "n", "correct")  # what eval_sums returns, summed over batches
    empty_hint = ""  # why a micro-batch may have no target, for the error that says so

    def __init__(self, model: torch.nn.Module, train: Dataset, val: Dataset | None = None, *, tokenizer: Any = None,
                 pad_id: int = 0, shuffle: bool = True, stats: dict[str, Any] | None = None):
        self.model, self.train, self.val, self.tokenizer = model, train, val, tokenizer
        self.pad_id, self.shuffle = pad_id, shuffle
        self.stats = stats or {}  # data statistics, written to data_stats.json

    # ---- data: called by the trainer once the model is on its device

    def start(self, rt: Runtime, cfg: TrainConfig) -> None:
        self.rt, self.batch_size, self.eval_limit = rt, cfg.batch_size, cfg.eval_batches
        self.loader = TrainLoader(self.train, cfg.batch_size, seed=cfg.seed, shuffle=self.shuffle, rank=rt.rank,
                                  world=rt.world, workers=cfg.data_workers, collate_fn=self.collate_fn,
                                  pin_memory=rt.device.type == "cuda")

    @property
    def collate_fn(self) -> Any:
        return functools.partial(collate, pad_id=self.pad_id)  # a plain function: DataLoader workers may copy it

    @property
    def batches_per_epoch(self) -> int:
        return self.loader.per_epoch

    @property
    def epochs_done(self) -> float:
        return self.loader.epochs_done

    def next_batches(self, n: int) -> list[Row]:
        """This process's ``n`` micro-batches of the next optimizer step."""
        return [next(self.loader) for _ in range(n)]

    def eval_batches(self) -> Iterable[Row] | None:
        """This process's validation batches for one evaluation, or None without validation data."""
        if self.val is None or len(self.val) == 0:  # type: ignore[arg-type]
            return None
        return eval_loader(self.val, self.batch_size, rank=self.rt.rank, world=self.rt.world, limit=self.eval_limit,
                           collate_fn=self.collate_fn)

    def state_dict(self) -> dict[str, Any]:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loader.load_state_dict(state)

    # ---- the objective

    def forward(self, model: torch.nn.Module, batch: Row) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [B, T, V], labels [B, T] with -100 where there is no target) for a batch on the device."""
        raise NotImplementedError

    def count(self, batch: Row) -> int:
        return count_targets(batch)

    def loss(self, model: torch.nn.Module, batch: Row) -> torch.Tensor:
        return token_loss(*self.forward(model, batch))

    def eval_sums(self, model: torch.nn.Module, batch: Row) -> dict[str, torch.Tensor]:
        logits, labels = self.forward(model, batch)
        keep = labels != IGNORE_INDEX
        correct = (logits.argmax(-1).eq(labels) & keep).sum()
        return {"loss": token_loss(logits, labels), "n": keep.sum(), "correct": correct}

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """Validation metrics from the summed ``eval_sums`` (empty when there was nothing to evaluate)."""
        n = sums["n"]
        return {"val_loss": sums["loss"] / n, "val_acc": sums["correct"] / n, "val_tokens": int(n)} if n else {}

    def samples(self, model: torch.nn.Module) -> dict[str, Any]:
        """Shown at each evaluation (rank 0, model in eval mode, RNG streams untouched)."""
        return {}

    def tokens_in(self, batch: Row) -> int:
        return int(batch["input_ids"].numel())

    def step_metrics(self) -> dict[str, Any]:
        """Extra figures for the train metrics row of the step just taken (PPO: its rollout's reward, KL)."""
        return {}

    def flops_per_token(self) -> float:
        """Training FLOPs per input token: 6 N (forward 2N + backward 4N, N = matmul parameters)."""
        return 6.0 * matmul_params(ckpt.unwrap(self.model))

    def export(self, model: torch.nn.Module, folder: Path, extra: dict[str, Any]) -> None:
        ckpt.export_pretrained(model, folder, self.tokenizer, extra)


def _perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))


def fit_positions(prompt: list[int], max_new_tokens: int, limit: int | None) -> tuple[list[int], int]:
    """(prompt, new tokens) within ``limit`` positions: the new tokens first cut to leave the prompt's
    last token (at most half the positions when the prompt is long), then the prompt keeps its end.
    A sample past GPT-2's position table was an IndexError at the first evaluation, no checkpoint kept."""
    if limit is None or len(prompt) + max_new_tokens <= limit:
        return prompt, max_new_tokens
    new = min(max_new_tokens, max(limit - len(prompt), limit // 2))
    return prompt[len(prompt) - (limit - new):] if len(prompt) > limit - new else prompt, new


class CausalLM(Task):
    """Next-token prediction. Rows come packed with positions restarting per document and no target
    across a boundary (``causal_row``); given no attention mask, HF decoders derive the block-causal
    mask from the positions. Samples: greedy continuations of ``prompts`` (token ids)."""

    primary_metric = "val_ppl"
    reply_only = False  # samples show the continuation only, not the prompt

    def __init__(self, model: torch.nn.Module, train: Dataset, val: Dataset | None = None, *,
                 prompts: Sequence[Sequence[int]] = (), max_new_tokens: int = 24, stop_ids: list[int] | None = None,
                 **kw: Any):
        super().__init__(model, train, val, **kw)
        self.prompts, self.max_new_tokens, self.stop_ids = list(prompts), max_new_tokens, stop_ids

    def forward(self, model: torch.nn.Module, batch: Row) -> tuple[torch.Tensor, torch.Tensor]:
        out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False)
        return out.logits, batch["labels"]

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        m = super().metrics(sums)
        return {**m, "val_ppl": _perplexity(m["val_loss"])} if m else m

    def samples(self, model: torch.nn.Module) -> dict[str, Any]:
        texts = []
        limit = model_positions(model)
        for ids in self.prompts:
            ids, new_tokens = fit_positions(list(ids), self.max_new_tokens, limit)
            if new_tokens < 1:
                continue
            prompt = torch.tensor([ids], dtype=torch.long, device=self.rt.device)
            stop = {"eos_token_id": self.stop_ids} if self.stop_ids else {}
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                 max_new_tokens=new_tokens, pad_token_id=self.pad_id, **stop)
            new = out[0, prompt.shape[1] if self.reply_only else 0:].tolist()
            texts.append(self.tokenizer.decode(new) if self.tokenizer is not None else " ".join(map(str, new)))
        return {"samples": texts} if texts else {}


class SFT(CausalLM):
    """Supervised fine-tuning: the causal LM loss on assistant tokens only (the rows' loss mask);
    samples are the model's replies to validation conversations."""

    reply_only = True
    empty_hint = ("For SFT this means the assistant mask is empty: check `train_on`, the chat template's "
                  "assistant turns, and whether truncation (data.seq_len) cut every reply off.")


# ---------------------------------------------------------------- masked LM


def mlm_mask(tokens: np.ndarray, rng: np.random.Generator, *, rate: float, mask_id: int, vocab_size: int,
             special_ids: np.ndarray, p_mask: float = 0.8, p_random: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels): each non-special token is selected with probability ``rate`` (at least one
    per row); selected tokens become ``mask_id`` (p_mask), a random id (p_random) or stay."""
    maskable = ~np.isin(tokens, special_ids)
    selected = (rng.random(tokens.size) < rate) & maskable
    if not selected.any() and maskable.any():  # never an empty row: it would have nothing to learn
        selected[rng.choice(np.flatnonzero(maskable))] = True
    u = rng.random(tokens.size)
    inputs = tokens.copy()
    inputs[selected & (u < p_mask)] = mask_id
    rand = selected & (u >= p_mask) & (u < p_mask + p_random)
    inputs[rand] = rng.integers(0, vocab_size, size=int(rand.sum()))
    return inputs, np.where(selected, tokens, IGNORE_INDEX)


@dataclass
class MaskRows:
    """The masked LM's rows: the window's first S tokens, BERT-masked (``mlm_mask``)."""

    mask_id: int
    vocab_size: int
    special_ids: np.ndarray
    rate: float = 0.15
    p_mask: float = 0.8
    p_random: float = 0.1
    seed: int = 0

    def __call__(self, w: Window, epoch: int, index: int) -> Row:
        s = w.tokens.size - 1
        rng = np.random.default_rng([self.seed, 3, epoch, index])
        inputs, labels = mlm_mask(w.tokens[:s], rng, rate=self.rate, mask_id=self.mask_id, vocab_size=self.vocab_size,
                                  special_ids=self.special_ids, p_mask=self.p_mask, p_random=self.p_random)
        return {"input_ids": torch.from_numpy(inputs), "labels": torch.from_numpy(labels),
                "position_ids": torch.from_numpy(w.pos[:s]), "document_ids": torch.from_numpy(w.doc[:s])}


class MaskedLM(Task):
    """BERT-style masked LM: bidirectional attention within each document; accuracy on masked tokens."""

    primary_metric = "val_mlm_acc"

    def forward(self, model: torch.nn.Module, batch: Row) -> tuple[torch.Tensor, torch.Tensor]:
        doc = batch["document_ids"]
        allowed = doc[:, None, :, None] == doc[:, None, None, :]
        out = model(input_ids=batch["input_ids"], attention_mask=allowed, position_ids=batch["position_ids"])
        return out.logits, batch["labels"]

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        m = super().metrics(sums)
        return {**m, "val_mlm_acc": m["val_acc"], "val_mlm_ppl": _perplexity(m["val_loss"])} if m else m


# ---------------------------------------------------------------- span corruption


def span_lengths(length: int, density: float, mean_span: float) -> tuple[int, int]:
    """(noise tokens, spans) for a row of ``length`` tokens; fixed per length, so rows share a shape."""
    noise = min(max(int(round(length * density)), 1), length - 1)
    spans = max(1, min(int(round(noise / mean_span)), noise, length - noise))
    return noise, spans


def random_spans_mask(length: int, density: float, mean_span: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean noise mask: ``spans`` noise runs interleaved with non-noise runs, starting with non-noise."""
    noise, spans = span_lengths(length, density, mean_span)

    def split(n: int, k: int) -> np.ndarray:  # n items into k non-empty runs, uniformly at random
        cuts = np.sort(rng.choice(np.arange(1, n), size=k - 1, replace=False)) if k > 1 else np.zeros(0, int)
        return np.diff(np.concatenate([[0], cuts, [n]]))

    noise_runs, keep_runs = split(noise, spans), split(length - noise, spans)
    mask = np.zeros(length, dtype=bool)
    pos = 0
    for keep, nz in zip(keep_runs, noise_runs, strict=True):
        pos += int(keep)
        mask[pos:pos + int(nz)] = True
        pos += int(nz)
    return mask


def span_corrupt(tokens: np.ndarray, noise: np.ndarray, first_sentinel: int, eos: int) -> tuple[np.ndarray, np.ndarray]:
    """(encoder input, target) for T5 span corruption: every noise run is replaced in the input by
    the next sentinel; the target is each sentinel followed by the run it replaced; both end with eos."""
    starts = noise & ~np.concatenate([[False], noise[:-1]])
    n_spans = int(starts.sum())
    sentinels = first_sentinel + np.cumsum(starts) - 1
    enc = np.where(starts, sentinels, tokens)[~noise | starts]  # a run's first token becomes its sentinel
    dec = np.insert(tokens[noise], np.flatnonzero(starts[noise]), first_sentinel + np.arange(n_spans))
    return (np.concatenate([enc, [eos]]).astype(np.int64), np.concatenate([dec, [eos]]).astype(np.int64))


@dataclass
class SpanRows:
    """The span-corruption rows: encoder input, target, and the decoder input (the target shifted
    right, starting from pad as T5 does)."""

    first_sentinel: int
    eos: int
    pad: int
    noise_density: float = 0.15
    mean_span_length: float = 3.0
    seed: int = 0

    def __call__(self, w: Window, epoch: int, index: int) -> Row:
        toks = w.tokens[:-1]
        rng = np.random.default_rng([self.seed, 4, epoch, index])
        noise = random_spans_mask(toks.size, self.noise_density, self.mean_span_length, rng)
        enc, dec = span_corrupt(toks, noise, self.first_sentinel, self.eos)
        dec_in = np.concatenate([[self.pad], dec[:-1]])
        return {"input_ids": torch.from_numpy(enc), "labels": torch.from_numpy(dec),
                "decoder_input_ids": torch.from_numpy(dec_in)}


class SpanCorruption(Task):
    """T5-style span corruption with an encoder-decoder; accuracy on the target's tokens."""

    primary_metric = "val_span_acc"

    def forward(self, model: torch.nn.Module, batch: Row) -> tuple[torch.Tensor, torch.Tensor]:
        out = model(input_ids=batch["input_ids"], decoder_input_ids=batch["decoder_input_ids"], use_cache=False)
        return out.logits, batch["labels"]

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        m = super().metrics(sums)
        return {**m, "val_span_acc": m["val_acc"], "val_span_ppl": _perplexity(m["val_loss"])} if m else m

    def tokens_in(self, batch: Row) -> int:
        return int(batch["input_ids"].numel() + batch["labels"].numel())

    def flops_per_token(self) -> float:
        """6 x (encoder params x input tokens + decoder params x target tokens) per token processed."""
        m = ckpt.unwrap(self.model)
        n_enc, n_all = matmul_params(m.get_encoder()), matmul_params(m)
        row = self.train[(0, 0)]
        t_enc, t_dec = row["input_ids"].numel(), row["labels"].numel()
        return 6.0 * (n_enc * t_enc + (n_all - n_enc) * t_dec) / (t_enc + t_dec)
