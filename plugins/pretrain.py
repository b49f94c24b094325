"""Pretraining on tokenized shards: causal LM, masked LM (BERT-style) or span corruption (T5-style).

This file is the plugin's config, its data (shard sets, tokenizer, special ids) and its choice of
task from ``corpus.plugins.tasks``:

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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from corpus.plugins.base import MissingInputError, PluginConfig, SampleConfig, TrainPlugin, require, shown
from corpus.plugins.data import PackedDataset
from corpus.plugins.models import (
    ModelConfig,
    SpecialIds,
    add_tokens,
    build_model,
    check_seq_len,
    load_tokenizer,
    model_tokenizer,
    pretrained_folder,
    same_tokenizer,
)
from corpus.plugins.runtime import Runtime
from corpus.plugins.tasks import CausalLM, MaskedLM, MaskRows, SpanCorruption, SpanRows, Task, span_lengths

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
        if not 0 < self.mask_rate < 1:  # each message starts with the key it rejects (its line, or --set's)
            raise ValueError(f"mask_rate must lie in (0, 1), got {self.mask_rate}")
        for key in ("replace_mask", "replace_random"):
            if not 0 <= getattr(self, key) <= 1:
                raise ValueError(f"{key} must lie in [0, 1], got {getattr(self, key)}")
        if self.replace_mask + self.replace_random > 1:
            raise ValueError(f"replace_mask + replace_random must be <= 1, got {self.replace_mask} + "
                             f"{self.replace_random}")


@dataclass
class SpanConfig:
    noise_density: float = 0.15
    mean_span_length: float = 3.0

    def __post_init__(self) -> None:
        if not 0 < self.noise_density < 1:  # each message starts with the key it rejects
            raise ValueError(f"noise_density must lie in (0, 1), got {self.noise_density}")
        if not self.mean_span_length >= 1:
            raise ValueError(f"mean_span_length must be >= 1, got {self.mean_span_length}")


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
        check_seq_len(self.model, self.data.seq_len)


# ---------------------------------------------------------------- data


def shard_sets(cfg: PretrainConfig) -> tuple[list[Path], list[Path]]:
    """(train, validation) shard-set prefixes from ``data.train`` / ``data.validation``."""
    d = cfg.data

    def as_list(v: str | list[str]) -> list[Path]:
        return [cfg.path(p) for p in ([v] if isinstance(v, str) else v) if p]

    train, val = as_list(d.train), as_list(d.validation)
    if not train:
        raise FileNotFoundError("data.train: required, token shard prefix(es) or a tokenize output folder")
    make = "make them with `corpus tokenize CORPUS --tokenizer TOKENIZER --out {}`"
    for p in train + val:
        if p.suffix in (".bin", ".idx") and p.is_file():  # a shard set is named by its prefix
            raise MissingInputError(f"{shown(p)}: name the shard set by its prefix, {shown(p.with_suffix(''))}")
        if (p / "manifest.json").is_file():  # a prepared corpus: tokenized into shards first
            raise MissingInputError(f"{shown(p)} is a corpus folder, not token shards: tokenize it (`corpus tokenize "
                                    f"{shown(p)} --tokenizer TOKENIZER --out {shown(p)}-tokens`) and give that folder")
    if len(train) == 1 and train[0].is_dir():
        folder = train[0]
        train = [folder / "train"]
        if not val and (folder / "validation.idx").exists():
            val = [folder / "validation"]
    elif len(train) == 1 and not train[0].with_name(train[0].name + ".idx").exists():
        require(train[0], "token shards", make.format(shown(train[0])))
    for p in train + val:
        require(p.with_name(p.name + ".idx"), "token shards", make.format(shown(p.parent)))
    return train, val


def datasets(cfg: PretrainConfig) -> tuple[PackedDataset, PackedDataset | None]:
    """The train and validation rows, each shard set checked against its sidecar first."""
    d = cfg.data
    train_p, val_p = shard_sets(cfg)
    out = []
    for prefixes, shuffle in ((train_p, d.shuffle), (val_p, False)):
        if not prefixes:
            out.append(None)
            continue
        ds = PackedDataset(prefixes, d.seq_len, seed=cfg.train.seed, shuffle_documents=shuffle, use_loss_mask=False,
                           document_mask=d.document_mask)
        if len(ds) < 1:
            raise ValueError(f"{ds.total_tokens} tokens in {[shown(p) for p in prefixes]} cannot fill one row of "
                             f"seq_len {d.seq_len}")
        out.append(ds)
    return out[0], out[1]


def sample_prompts(val: PackedDataset | None, samples: SampleConfig) -> list[list[int]]:
    """The openings of the first validation documents (continued greedily at each evaluation)."""
    prompts: list[list[int]] = []
    for doc in val.documents() if val is not None and samples.count > 0 else ():
        if doc.size > 1:
            prompts.append(doc[:min(samples.prompt_tokens, doc.size - 1)].tolist())
        if len(prompts) == samples.count:
            break
    return prompts


# ---------------------------------------------------------------- the plugin


class Pretrain(TrainPlugin):
    """Pretrain a language model from scratch on token shards (causal LM, masked LM or span corruption)."""

    name: ClassVar[str] = "pretrain"
    config_class = PretrainConfig
    resumable = ("samples.",)

    def build(self, config: PretrainConfig, runtime: Runtime) -> Task:
        d, t = config.data, config.train
        train, val = datasets(config)
        meta = train.meta
        tok_path = config.path(d.tokenizer) if d.tokenizer else (Path(meta["tokenizer"]) if meta.get("tokenizer")
                                                                 else None)
        tokenizer = None
        if tok_path is not None:
            require(tok_path, "tokenizer", f"train one with `corpus tokenizer train CORPUS --out {shown(tok_path)}`")
            tokenizer = load_tokenizer(tok_path)
            if config.model.from_pretrained:
                model_tokenizer(tokenizer, tok_path, pretrained_folder(config.model, Path(config.base_dir)))
        # every set, train and validation, against the tokenizer in use (the sidecar's too: retrained in place?)
        same_tokenizer([(s.prefix, s.meta) for ds in (train, val) if ds is not None for s in ds.sets], tokenizer,
                       tok_path)
        base_vocab = len(tokenizer) if tokenizer is not None else int(meta.get("vocab_size") or 0)
        if base_vocab <= 0:
            raise ValueError("vocabulary size unknown: give data.tokenizer or shards whose sidecar has vocab_size")
        # The model's embedding has base_vocab rows (plus any mask/sentinel ids added below): a larger id
        # would be an IndexError deep in the forward pass, or silently read as a mask or sentinel.
        hint = (f"(the tokenizer {tok_path}): were the shards made with another tokenizer?" if tok_path is not None
                else "(the shards' vocab_size)")
        for ds in (train, val):
            if ds is not None:
                ds.check_vocab(base_vocab, "the model's vocabulary", hint)
        specials = meta.get("special_token_ids") or {}
        eos = int(meta.get("eod_id", specials.get("<|endoftext|>", 0)))
        pad = int(specials.get("<|pad|>", eos))
        vocab = base_vocab
        task: type[Task] = CausalLM
        extra: dict[str, Any] = {}
        if config.objective == "causal":
            extra = {"prompts": sample_prompts(val, config.samples), "max_new_tokens": config.samples.max_new_tokens}
        elif config.objective == "mlm":
            mask_id = add_tokens(tokenizer, ["<|mask|>"])[0] if tokenizer is not None else base_vocab
            vocab = max(vocab, mask_id + 1)
            m = config.mlm
            rows: Any = MaskRows(mask_id, base_vocab, np.asarray(sorted(set(specials.values()) | {eos, pad})),
                                 rate=m.mask_rate, p_mask=m.replace_mask, p_random=m.replace_random, seed=t.seed)
            task = MaskedLM
        else:
            _, n_spans = span_lengths(d.seq_len, config.span.noise_density, config.span.mean_span_length)
            names = [f"<extra_id_{k}>" for k in range(n_spans)]
            sentinels = (add_tokens(tokenizer, names) if tokenizer is not None
                         else list(range(base_vocab, base_vocab + n_spans)))
            if sentinels != list(range(sentinels[0], sentinels[0] + n_spans)):
                raise ValueError("sentinel tokens must have consecutive ids")
            vocab = max(vocab, sentinels[-1] + 1)
            rows = SpanRows(sentinels[0], eos, pad, config.span.noise_density, config.span.mean_span_length, t.seed)
            task = SpanCorruption
        if config.objective != "causal":
            for ds in (train, val):
                if ds is not None:
                    ds.row = rows
        model = build_model(config.model, config.objective, vocab, config.model.max_positions or d.seq_len,
                            SpecialIds(eos=eos, pad=pad), Path(config.base_dir))
        return task(model, train, val, tokenizer=tokenizer, pad_id=pad, shuffle=d.shuffle, **extra)
