"""Pretraining on tokenized shards: causal LM, masked LM (BERT-style) or span corruption (T5-style).

* ``causal``: next-token prediction with a Llama- or GPT-2-style decoder on packed rows with
  document masking (positions restart per document; no target crosses a boundary). Validation
  perplexity, and greedy sample generations at each evaluation.
* ``mlm``: a BERT-style encoder; ``mask_rate`` of the tokens are selected, of those 80% become
  ``<|mask|>``, 10% a random token, 10% stay; the loss is on selected tokens only. Attention is
  masked per document. Validation masked-token accuracy.
* ``span``: a T5-style encoder-decoder; ``noise_density`` of each row is cut into spans of mean
  ``mean_span_length``, each replaced in the input by a sentinel ``<extra_id_k>``; the target lists
  each sentinel followed by its span, then the end-of-document token. Validation span-token accuracy.

Masks and spans are drawn from a generator seeded by (seed, epoch, row): the same row gets the same
corruption on a rerun or a resume, and validation uses the same corruption at every evaluation.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from corpus.plugins.base import PluginConfig, TrainPlugin, TrainResult
from corpus.plugins.models import ModelConfig, SpecialIds, add_tokens, build_model, load_tokenizer
from corpus.plugins.packing import IGNORE, BatchIterator, ShardRows, eval_batches, segment_positions
from corpus.plugins.trainer import Runtime, Task, Trainer, matmul_params

OBJECTIVES = ("causal", "mlm", "span")


@dataclass
class PretrainData:
    train: str | list[str] = ""  # shard prefix(es) (<prefix>.bin/.idx/.json), or a tokenize output folder
    validation: str | list[str] = ""  # prefix(es); default: <folder>/validation when train is a folder
    tokenizer: str = ""  # HF tokenizer folder; default: the one recorded in the shards' sidecar
    seq_len: int = 256
    document_mask: bool = True
    shuffle: bool = True

    def __post_init__(self) -> None:
        if self.seq_len < 4:
            raise ValueError(f"seq_len must be >= 4, got {self.seq_len}")


@dataclass
class MLMConfig:
    mask_rate: float = 0.15  # share of tokens selected for prediction
    replace_mask: float = 0.8  # of the selected: replaced by <|mask|>
    replace_random: float = 0.1  # of the selected: replaced by a random token (the rest stay)

    def __post_init__(self) -> None:
        if not (0 < self.mask_rate < 1 and self.replace_mask >= 0 and self.replace_random >= 0
                and self.replace_mask + self.replace_random <= 1):
            raise ValueError("need 0 < mask_rate < 1 and replace_mask + replace_random <= 1")


@dataclass
class SpanConfig:
    noise_density: float = 0.15
    mean_span_length: float = 3.0

    def __post_init__(self) -> None:
        if not (0 < self.noise_density < 1 and self.mean_span_length >= 1):
            raise ValueError("need 0 < noise_density < 1 and mean_span_length >= 1")


@dataclass
class SampleConfig:
    count: int = 2  # prompts (the starts of validation rows); 0: no samples
    prompt_tokens: int = 8
    max_new_tokens: int = 24


@dataclass
class PretrainConfig(PluginConfig):
    objective: str = "causal"  # causal | mlm | span
    model: ModelConfig = field(default_factory=ModelConfig)
    data: PretrainData = field(default_factory=PretrainData)
    mlm: MLMConfig = field(default_factory=MLMConfig)
    span: SpanConfig = field(default_factory=SpanConfig)
    samples: SampleConfig = field(default_factory=SampleConfig)

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")


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
    return inputs, np.where(selected, tokens, IGNORE)


class MLMRows:
    def __init__(self, stream: ShardRows, cfg: MLMConfig, *, mask_id: int, vocab_size: int,
                 special_ids: list[int], seed: int):
        self.stream, self.cfg, self.mask_id, self.vocab_size = stream, cfg, mask_id, vocab_size
        self.special, self.seed = np.asarray(special_ids, dtype=np.int64), seed

    def __len__(self) -> int:
        return len(self.stream)

    def row(self, epoch: int, i: int) -> dict[str, np.ndarray]:
        toks, docs = self.stream.window(epoch, i, self.stream.seq_len)
        rng = np.random.default_rng([self.seed, 3, epoch, i])
        inputs, labels = mlm_mask(toks, rng, rate=self.cfg.mask_rate, mask_id=self.mask_id,
                                  vocab_size=self.vocab_size, special_ids=self.special,
                                  p_mask=self.cfg.replace_mask, p_random=self.cfg.replace_random)
        doc = docs - docs[0]
        if not self.stream.document_mask:
            doc = np.zeros_like(doc)
        return {"input_ids": inputs, "labels": labels, "position_ids": segment_positions(doc), "document_ids": doc}


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


class SpanRows:
    def __init__(self, stream: ShardRows, cfg: SpanConfig, *, first_sentinel: int, eos: int, pad: int, seed: int):
        self.stream, self.cfg, self.first_sentinel, self.eos, self.pad, self.seed = \
            stream, cfg, first_sentinel, eos, pad, seed

    def __len__(self) -> int:
        return len(self.stream)

    def row(self, epoch: int, i: int) -> dict[str, np.ndarray]:
        toks, _ = self.stream.window(epoch, i, self.stream.seq_len)
        rng = np.random.default_rng([self.seed, 4, epoch, i])
        noise = random_spans_mask(toks.size, self.cfg.noise_density, self.cfg.mean_span_length, rng)
        enc, dec = span_corrupt(toks, noise, self.first_sentinel, self.eos)
        dec_in = np.concatenate([[self.pad], dec[:-1]])  # teacher forcing, T5 starts decoding from pad
        return {"input_ids": enc, "labels": dec, "decoder_input_ids": dec_in}


# ---------------------------------------------------------------- tasks


class CausalTask(Task):
    primary_metric = "val_ppl"

    def __init__(self, model: torch.nn.Module, train: BatchIterator, val: ShardRows | None, *, batch_size: int,
                 rt: Runtime, eval_limit: int, tokenizer: Any, samples: SampleConfig, pad_id: int):
        self.model, self.train_data, self.val, self.tokenizer = model, train, val, tokenizer
        self.batch_size, self.rt, self.eval_limit = batch_size, rt, eval_limit
        self.samples, self.pad_id = samples, pad_id

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        # No attention mask: HF decoders derive a block-causal (per-document) mask from position_ids.
        out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False)
        return out.logits, batch["labels"]

    def eval_data(self) -> Any:
        if self.val is None:
            return None
        return eval_batches(self.val, self.batch_size, rank=self.rt.rank, world=self.rt.world, limit=self.eval_limit)

    def eval_metrics(self, loss: float, accuracy: float) -> dict[str, float]:
        return {"val_ppl": math.exp(min(loss, 50.0))}

    def on_evaluate(self, model: torch.nn.Module) -> dict[str, Any]:
        if self.val is None or self.samples.count <= 0:
            return {}
        texts = []
        prompts = []
        for d in self.val.documents():
            if d.size > 1:
                prompts.append(d[:min(self.samples.prompt_tokens, d.size - 1)])
            if len(prompts) == self.samples.count:
                break
        for p in prompts:  # the openings of the first validation documents, continued greedily
            prompt = torch.as_tensor(np.asarray(p, dtype=np.int64)).unsqueeze(0).to(self.rt.device)
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                 max_new_tokens=self.samples.max_new_tokens, pad_token_id=self.pad_id)
            ids = out[0].tolist()
            texts.append(self.tokenizer.decode(ids) if self.tokenizer is not None else " ".join(map(str, ids)))
        model.train()
        return {"samples": texts}


class MLMTask(CausalTask):
    primary_metric = "val_mlm_acc"

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        doc = batch["document_ids"]
        allowed = doc[:, None, :, None] == doc[:, None, None, :]  # bidirectional, within each document
        out = model(input_ids=batch["input_ids"], attention_mask=allowed, position_ids=batch["position_ids"])
        return out.logits, batch["labels"]

    def eval_metrics(self, loss: float, accuracy: float) -> dict[str, float]:
        return {"val_mlm_acc": accuracy, "val_mlm_ppl": math.exp(min(loss, 50.0))}

    def on_evaluate(self, model: torch.nn.Module) -> dict[str, Any]:
        return {}


class SpanTask(CausalTask):
    primary_metric = "val_span_acc"

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        out = model(input_ids=batch["input_ids"], decoder_input_ids=batch["decoder_input_ids"], use_cache=False)
        return out.logits, batch["labels"]

    def eval_metrics(self, loss: float, accuracy: float) -> dict[str, float]:
        return {"val_span_acc": accuracy, "val_span_ppl": math.exp(min(loss, 50.0))}

    def on_evaluate(self, model: torch.nn.Module) -> dict[str, Any]:
        return {}

    def tokens_in(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["input_ids"].numel() + batch["labels"].numel())

    def flops_per_token(self) -> float:
        """6 x (encoder params x input tokens + decoder params x target tokens) per token processed."""
        m = self.model
        n_enc = matmul_params(m.get_encoder())
        n_all = matmul_params(m)
        row = self.train_data.source.row(0, 0)
        t_enc, t_dec = row["input_ids"].size, row["labels"].size
        return 6.0 * (n_enc * t_enc + (n_all - n_enc) * t_dec) / (t_enc + t_dec)


# ---------------------------------------------------------------- the plugin


def _prefixes(cfg: PretrainConfig) -> tuple[list[Path], list[Path]]:
    d = cfg.data

    def as_list(v: str | list[str]) -> list[Path]:
        return [cfg.path(p) for p in ([v] if isinstance(v, str) else v) if p]

    train, val = as_list(d.train), as_list(d.validation)
    if not train:
        raise FileNotFoundError("data.train: required, token shard prefix(es) or a tokenize output folder")
    if len(train) == 1 and train[0].is_dir():
        folder = train[0]
        train = [folder / "train"]
        if not val and (folder / "validation.idx").exists():
            val = [folder / "validation"]
    for p in train + val:
        if not p.with_name(p.name + ".idx").is_file():
            raise FileNotFoundError(f"no token shards at {p} (expected {p.name}.bin/.idx)")
    return train, val


def build_task(cfg: PretrainConfig, rt: Runtime) -> Task:
    train_p, val_p = _prefixes(cfg)
    d, t = cfg.data, cfg.train
    stream = ShardRows(train_p, d.seq_len, seed=t.seed, shuffle=d.shuffle, document_mask=d.document_mask)
    val = ShardRows(val_p, d.seq_len, shuffle=False, document_mask=d.document_mask) if val_p else None
    meta = stream.meta
    tok_path = cfg.path(d.tokenizer) if d.tokenizer else (Path(meta["tokenizer"]) if meta.get("tokenizer") else None)
    tokenizer = load_tokenizer(tok_path) if tok_path is not None else None
    base_vocab = len(tokenizer) if tokenizer is not None else int(meta.get("vocab_size") or 0)
    if base_vocab <= 0:
        raise ValueError("vocabulary size unknown: give data.tokenizer or shards whose sidecar has vocab_size")
    # The model's embedding has base_vocab rows (plus any mask/sentinel ids added below): a larger id
    # would be an IndexError deep in the forward pass, or silently read as a mask or sentinel.
    hint = (f"(the tokenizer {tok_path}): were the shards made with another tokenizer?" if tok_path is not None
            else "(the shards' vocab_size)")
    for rows in (stream, val):
        if rows is not None:
            rows.ds.check_vocab(base_vocab, "the model's vocabulary", hint)
    specials = meta.get("special_token_ids") or {}
    eos = int(meta.get("eod_id", specials.get("<|endoftext|>", 0)))
    pad = int(specials.get("<|pad|>", eos))
    ids = SpecialIds(eos=eos, pad=pad)
    vocab = base_vocab
    if cfg.objective == "causal":
        source: Any = stream
        val_rows: Any = val
    elif cfg.objective == "mlm":
        mask_id = add_tokens(tokenizer, ["<|mask|>"])[0] if tokenizer is not None else base_vocab
        vocab = max(vocab, mask_id + 1)
        special = sorted(set(specials.values()) | {eos, pad})
        source = MLMRows(stream, cfg.mlm, mask_id=mask_id, vocab_size=base_vocab, special_ids=special, seed=t.seed)
        val_rows = MLMRows(val, cfg.mlm, mask_id=mask_id, vocab_size=base_vocab, special_ids=special,
                           seed=t.seed) if val else None
    else:
        _, n_spans = span_lengths(d.seq_len, cfg.span.noise_density, cfg.span.mean_span_length)
        names = [f"<extra_id_{k}>" for k in range(n_spans)]
        sentinels = add_tokens(tokenizer, names) if tokenizer is not None else list(range(base_vocab,
                                                                                          base_vocab + n_spans))
        if sentinels != list(range(sentinels[0], sentinels[0] + n_spans)):
            raise ValueError("sentinel tokens must have consecutive ids")
        vocab = max(vocab, sentinels[-1] + 1)
        source = SpanRows(stream, cfg.span, first_sentinel=sentinels[0], eos=eos, pad=pad, seed=t.seed)
        val_rows = SpanRows(val, cfg.span, first_sentinel=sentinels[0], eos=eos, pad=pad, seed=t.seed) if val else None
    positions = cfg.model.max_positions or d.seq_len
    model = build_model(cfg.model, cfg.objective, vocab, positions, ids, Path(cfg.base_dir))
    train_it = BatchIterator(source, t.batch_size, seed=t.seed, shuffle=d.shuffle, rank=rt.rank, world=rt.world)
    cls = {"causal": CausalTask, "mlm": MLMTask, "span": SpanTask}[cfg.objective]
    return cls(model, train_it, val_rows, batch_size=t.batch_size, rt=rt, eval_limit=t.eval_batches,
               tokenizer=tokenizer, samples=cfg.samples, pad_id=pad)


class Pretrain(TrainPlugin):
    """Pretrain a language model from scratch on token shards (causal LM, masked LM or span corruption)."""

    name: ClassVar[str] = "pretrain"
    config_class = PretrainConfig

    def run(self, config: PretrainConfig, out_dir: Path, hooks: tuple = ()) -> TrainResult:
        rt = Runtime.create(config.train)
        try:
            task = build_task(config, rt)
            return Trainer(task, config.train, out_dir, rt, run_config=dataclasses.asdict(config), hooks=hooks).fit()
        finally:
            rt.close()
