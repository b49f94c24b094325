"""Models and tokenizers for the plugins: built from a small config with ``transformers``, or loaded
from a local folder (checked against its manifest when it is one of our exports); LoRA adapters.
Nothing is downloaded. Tokenizers load through ``corpus.stages.tokenizer``, the one loader."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from corpus.plugins.base import PluginInputError, model_hint, require, shown
from corpus.plugins.checkpoint import check_export

ARCHS = {"llama": "causal", "gpt2": "causal", "bert": "mlm", "t5": "span"}
DEFAULT_ARCH = {"causal": "llama", "mlm": "bert", "span": "t5"}


@dataclass
class ModelConfig:
    """The ``model:`` section. With ``from_pretrained`` the sizes below are ignored."""

    arch: str = ""  # llama | gpt2 (causal LM), bert (masked LM), t5 (span corruption); '' = by objective
    from_pretrained: str = ""  # a local HF model folder to start from (transfer learning)
    hidden_size: int = 256
    layers: int = 4
    heads: int = 4
    kv_heads: int = 0  # llama grouped-query attention; 0 = heads
    intermediate_size: int = 0  # 0: 4 x hidden (gpt2, bert, t5), 8/3 x hidden rounded up to 64 (llama)
    max_positions: int = 0  # 0: the data's seq_len
    dropout: float = 0.0
    tie_embeddings: bool = True
    attn_implementation: str = "sdpa"  # sdpa | eager | flash_attention_2 ...
    extra: dict[str, Any] = field(default_factory=dict)  # any other transformers config field

    def __post_init__(self) -> None:
        if self.arch and self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {sorted(ARCHS)}, got {self.arch!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        # each message starts with the key it rejects: its line in the file, or `--set model.KEY`
        for key in ("kv_heads", "intermediate_size", "max_positions"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0 (0: the default), got {getattr(self, key)}")
        if self.from_pretrained:
            return
        for key in ("hidden_size", "layers", "heads"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.kv_heads and self.heads % self.kv_heads:
            raise ValueError(f"heads {self.heads} is not a multiple of kv_heads {self.kv_heads}")
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of heads {self.heads}")


@dataclass
class SpecialIds:
    eos: int
    pad: int
    bos: int | None = None


def _hf_config(m: ModelConfig, arch: str, vocab: int, positions: int, ids: SpecialIds) -> Any:
    import transformers as tf

    h, L, H = m.hidden_size, m.layers, m.heads
    ff = m.intermediate_size
    common: dict[str, Any] = {"vocab_size": vocab, "pad_token_id": ids.pad, "eos_token_id": ids.eos,
                              "bos_token_id": ids.bos if ids.bos is not None else ids.eos,
                              "tie_word_embeddings": m.tie_embeddings}
    if arch == "llama":
        ff = ff or 64 * -(-(8 * h // 3) // 64)
        cfg = tf.LlamaConfig(hidden_size=h, intermediate_size=ff, num_hidden_layers=L, num_attention_heads=H,
                             num_key_value_heads=m.kv_heads or H, max_position_embeddings=positions,
                             attention_dropout=m.dropout, **common)
    elif arch == "gpt2":
        cfg = tf.GPT2Config(n_embd=h, n_layer=L, n_head=H, n_inner=ff or 4 * h, n_positions=positions,
                            resid_pdrop=m.dropout, embd_pdrop=m.dropout, attn_pdrop=m.dropout, **common)
    elif arch == "bert":
        cfg = tf.BertConfig(hidden_size=h, num_hidden_layers=L, num_attention_heads=H, intermediate_size=ff or 4 * h,
                            max_position_embeddings=positions, hidden_dropout_prob=m.dropout,
                            attention_probs_dropout_prob=m.dropout, type_vocab_size=1, **common)
    else:  # t5
        cfg = tf.T5Config(d_model=h, d_kv=h // H, d_ff=ff or 4 * h, num_layers=L, num_decoder_layers=L, num_heads=H,
                          dropout_rate=m.dropout, decoder_start_token_id=ids.pad, **common)
    for k, v in m.extra.items():
        setattr(cfg, k, v)
    return cfg


def auto_class(objective: str) -> Any:
    import transformers as tf

    return {"causal": tf.AutoModelForCausalLM, "mlm": tf.AutoModelForMaskedLM,
            "span": tf.AutoModelForSeq2SeqLM, "reward": tf.AutoModelForSequenceClassification}[objective]


def pretrained_folder(m: ModelConfig, base_dir: Path | None = None) -> Path:
    """The ``from_pretrained`` folder, resolved; MissingInputError naming the command that makes it."""
    folder = Path(m.from_pretrained).expanduser()
    if base_dir is not None and not folder.is_absolute():
        folder = base_dir / folder
    return require(folder, "model", model_hint(folder, base_dir or Path.cwd()))


def build_model(m: ModelConfig, objective: str, vocab: int, positions: int, ids: SpecialIds,
                base_dir: Path | None = None, num_labels: int = 1) -> torch.nn.Module:
    """A fresh model from the config (seeded by the caller), or the ``from_pretrained`` folder's
    weights; the embedding is resized when the tokenizer has more ids than the model. ``reward``: a
    causal architecture with a sequence-classification head of ``num_labels`` outputs (new when the
    folder holds a language model)."""
    quiet_transformers()
    cls = auto_class(objective)
    head = {"num_labels": num_labels} if objective == "reward" else {}
    if m.from_pretrained:
        folder = pretrained_folder(m, base_dir)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"model.from_pretrained: no HF model folder (config.json) at {folder}")
        check_export(folder)  # an export of ours (final/, best/) must match its manifest
        from safetensors import SafetensorError

        try:
            with _quiet_load(bool(head)):  # a language model's folder has no reward head yet: a new one is expected
                model = cls.from_pretrained(str(folder), attn_implementation=m.attn_implementation,
                                            dtype=torch.float32, **head)
        except (SafetensorError, OSError, ValueError) as exc:  # a folder without a manifest is not checked first
            raise PluginInputError(f"model.from_pretrained: cannot load the model in {shown(folder)} "
                                   f"(damaged or incomplete?): {str(exc).splitlines()[0] if str(exc) else exc!r}"
                                   ) from exc
        if model.get_input_embeddings().num_embeddings < vocab:
            model.resize_token_embeddings(vocab)
        check_positions(model, positions)
        return model
    arch = m.arch or DEFAULT_ARCH["causal" if objective == "reward" else objective]
    if ARCHS[arch] != ("causal" if objective == "reward" else objective):
        raise ValueError(f"model.arch {arch!r} is a {ARCHS[arch]} model; the objective {objective!r} needs "
                         f"{[a for a, o in ARCHS.items() if o == objective]}")
    cfg = _hf_config(m, arch, vocab, positions, ids)
    for k, v in head.items():
        setattr(cfg, k, v)
    return cls.from_config(cfg, attn_implementation=m.attn_implementation)


def quiet_transformers() -> None:
    """No per-file progress bars from transformers: the trainer has its own progress line."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


@contextmanager
def _quiet_load(quiet: bool) -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    if quiet:
        hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)


# Learned absolute position tables cannot go past their size; rotary models can (with some loss).
_LEARNED_POSITIONS = ("gpt2", "bert")


def model_positions(model: torch.nn.Module) -> int | None:
    """The positions the model was built for (``max_position_embeddings``, GPT-2's ``n_positions``), or None."""
    from corpus.plugins.checkpoint import unwrap

    cfg = getattr(unwrap(model), "config", None)
    limit = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    return int(limit) if isinstance(limit, int) and limit > 0 else None


def check_seq_len(m: ModelConfig, seq_len: int) -> None:
    """A config's ``data.seq_len`` against the positions of a model it builds from scratch
    (``model.max_positions``; 0: seq_len): a longer row was GPT-2's and BERT's IndexError, and Llama trained
    on and exported a config claiming fewer positions than it was trained on. Every config that builds a
    model for rows of seq_len (pretrain, SFT) checks it here; a pretrained model: ``check_positions``."""
    if m.max_positions and not m.from_pretrained and seq_len > m.max_positions:
        raise ValueError(f"data.seq_len {seq_len} is longer than the model's {m.max_positions} positions "
                         "(model.max_positions): lower data.seq_len or raise model.max_positions")


def check_positions(model: torch.nn.Module, seq_len: int) -> None:
    """A pretrained model's positions against the rows it is given (``check_seq_len``: one from scratch)."""
    limit = model_positions(model)
    if limit is not None and seq_len > limit:
        msg = f"seq_len {seq_len} is longer than the model's {limit} positions"
        if model.config.model_type in _LEARNED_POSITIONS:
            raise ValueError(msg + ": lower data.seq_len")
        import logging

        logging.getLogger("corpusforge.train").warning("%s: rotary positions extrapolate, quality may drop", msg)


def load_tokenizer(path: str | Path) -> Any:
    """The HF fast tokenizer of a local folder or ``tokenizer.json``; a folder that is one of our model
    exports (SFT's tokenizer is often its base model's) is checked against its manifest first."""
    from corpus.stages.tokenizer import load_hf_tokenizer

    path = Path(path)
    if path.is_dir():
        check_export(path)
    return load_hf_tokenizer(path)


def model_tokenizer(tokenizer: Any, where: Path, model: Path) -> None:
    """Raise PluginInputError when ``tokenizer`` (from ``where``) is not the one the ``model`` folder was
    trained with (its own tokenizer, saved beside it in an export): its ids would name other tokens, the
    embedding rows other words. The vocabularies must be the same but for added tokens (MLM's mask, new
    chat tokens: one tokenizer may have more), and a token both have must have the same id."""
    if not (model / "tokenizer.json").is_file() or Path(where).resolve() == model.resolve():
        return  # a model from elsewhere without its tokenizer: nothing to compare with
    own = load_tokenizer(model)
    ours, theirs = tokenizer.get_vocab(), own.get_vocab()
    added = set(tokenizer.get_added_vocab()) | set(own.get_added_vocab())
    differ = sorted(t for t in set(ours) | set(theirs)
                    if ours.get(t) != theirs.get(t) and (t not in added or t in ours and t in theirs))
    if differ:
        raise PluginInputError(
            f"the tokenizer {shown(where)} ({len(ours):,} tokens) is not the one the model {shown(model)} was trained "
            f"with ({len(theirs):,} tokens, saved beside it): {len(differ):,} tokens differ (first: {differ[0]!r}). "
            "Leave the tokenizer out to use the model's, or give the one it was trained with")


def plugin_tokenizer_path(config: Any) -> Path:
    """Where a plugin config's tokenizer is: its ``tokenizer`` folder, else the ``model.from_pretrained``
    folder (MissingInputError naming the command that makes it)."""
    if config.tokenizer:
        return config.path(config.tokenizer)
    if config.model.from_pretrained:
        return pretrained_folder(config.model, Path(config.base_dir))
    raise FileNotFoundError("tokenizer: required (or model.from_pretrained, whose folder has one)")


def plugin_tokenizer(config: Any) -> Any:
    """A plugin config's tokenizer (``plugin_tokenizer_path``), checked against the model's own."""
    path = plugin_tokenizer_path(config)
    tokenizer = load_tokenizer(path)
    if config.tokenizer and config.model.from_pretrained:
        model_tokenizer(tokenizer, path, pretrained_folder(config.model, Path(config.base_dir)))
    return tokenizer


def same_tokenizer(sets: list[tuple[Path, dict[str, Any]]], tokenizer: Any, path: Path | None,
                   key: str = "data.tokenizer") -> None:
    """Raise ValueError when a token shard set was tokenized by another tokenizer than the one training
    uses (``path``, the config's ``key``): its ids would name other tokens (a vocabulary that fits in the
    model's trains without an error). Every plugin that reads token shards (pretraining, SFT) checks them
    here. Compared by the sidecar's tokenizer_hash, as `corpus shards verify --tokenizer` does; a tokenizer
    whose file differs from the hash passes only when the shards' own tokenizer is still where they say,
    unchanged (its hash), with the same vocabulary (the tokenizer re-saved, as a model export holds it);
    shards without a hash by vocabulary while their tokenizer is where they say, else by size. Without
    any tokenizer the sets' hashes must agree."""
    from corpus.shards import tokenizer_mismatch

    if path is None:
        hashes = {m.get("tokenizer_hash") for _, m in sets} - {None}
        if len(hashes) > 1:
            raise ValueError(f"the shard sets {', '.join(shown(p) for p, _ in sets)} were made by different "
                             "tokenizers (their sidecars' tokenizer_hash differ): tokenize them with one tokenizer")
        return

    def vocab_differs(theirs: Path) -> bool:
        if theirs.resolve() == Path(path).resolve():
            return False
        try:
            other = load_tokenizer(theirs)
        except (OSError, ValueError):
            return False
        return other.get_vocab() != tokenizer.get_vocab()

    for prefix, meta in sets:
        theirs = Path(meta["tokenizer"]) if meta.get("tokenizer") else None
        differ = ""
        if meta.get("tokenizer_hash"):  # the hash decides: a retrained tokenizer keeps its path and often its size
            differ = tokenizer_mismatch(meta, path) or ""
            if differ and theirs is not None and theirs.exists() and not tokenizer_mismatch(meta, theirs) \
                    and theirs.resolve() != Path(path).resolve():
                differ = differ if vocab_differs(theirs) else ""  # the same tokenizer, re-saved
        elif theirs is not None and theirs.exists():
            differ = "their vocabularies differ" if vocab_differs(theirs) else ""
        elif meta.get("vocab_size") and int(meta["vocab_size"]) != len(tokenizer):
            differ = f"{int(meta['vocab_size']):,} tokens against {len(tokenizer):,}"
        if differ:
            raise ValueError(f"{shown(prefix)}: the shards were tokenized with "
                             f"{shown(theirs) if theirs else 'another tokenizer'}, not the tokenizer {shown(path)} "
                             f"({differ}): their ids would name other tokens; point {key} at the shards' "
                             "tokenizer, or tokenize the corpus again with this one")


def reference_model(config: Any, path: str, policy: torch.nn.Module) -> torch.nn.Module:
    """The frozen reference of DPO and PPO: the causal LM in ``path`` (checked against its manifest),
    or a copy of the policy as built (its from_pretrained weights, or the seeded initial ones)."""
    import copy

    if not path:
        return copy.deepcopy(policy)
    folder = require(config.path(path), "reference model", model_hint(config.path(path), Path(config.base_dir)))
    check_export(folder)
    return auto_class("causal").from_pretrained(str(folder), dtype=torch.float32)


END_OF_TURN = ("<|end|>", "<|im_end|>", "<|eot_id|>", "<end_of_turn>")


def stop_ids(tokenizer: Any) -> list[int]:
    """The eos id plus the end-of-turn markers the tokenizer knows (where a generated reply ends)."""
    vocab = tokenizer.get_vocab()
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return ids + [vocab[t] for t in END_OF_TURN if t in vocab and vocab[t] not in ids]


def add_tokens(tokenizer: Any, tokens: list[str]) -> list[int]:
    """Add special tokens (mask, sentinels) to a tokenizer; returns their ids in order."""
    missing = [t for t in tokens if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    return [tokenizer.convert_tokens_to_ids(t) for t in tokens]


@dataclass
class LoraSettings:
    """The ``lora:`` section: train low-rank adapters (peft) instead of every weight."""

    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"r must be >= 1, alpha > 0 and dropout in [0, 1), got {self.r}, {self.alpha}, "
                             f"{self.dropout}")
        if not self.target_modules:
            raise ValueError("target_modules: give module names (or 'all-linear')")


def apply_lora(model: torch.nn.Module, lora: LoraSettings) -> torch.nn.Module:
    import warnings

    import peft

    cfg = peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                          target_modules=lora.target_modules, task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft still asks transformers 5 a deprecated question
        warnings.filterwarnings("ignore", category=FutureWarning)
        return peft.get_peft_model(model, cfg)
