"""Models and tokenizers for the plugins: built from a small config with ``transformers``, or loaded
from a local folder. Nothing is downloaded."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

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
        if not self.from_pretrained and self.hidden_size % max(self.heads, 1):
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
            "span": tf.AutoModelForSeq2SeqLM}[objective]


def build_model(m: ModelConfig, objective: str, vocab: int, positions: int, ids: SpecialIds,
                base_dir: Path | None = None) -> torch.nn.Module:
    """A fresh model from the config (seeded by the caller), or the ``from_pretrained`` folder's
    weights; the embedding is resized when the tokenizer has more ids than the model."""
    quiet_transformers()
    cls = auto_class(objective)
    if m.from_pretrained:
        folder = Path(m.from_pretrained)
        if base_dir is not None and not folder.is_absolute():
            folder = base_dir / folder
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"model.from_pretrained: no HF model folder (config.json) at {folder}")
        check_export(folder)  # an export of ours (final/, best/) must match its manifest
        model = cls.from_pretrained(str(folder), attn_implementation=m.attn_implementation, dtype=torch.float32)
        if model.get_input_embeddings().num_embeddings < vocab:
            model.resize_token_embeddings(vocab)
        check_positions(model, positions)
        return model
    arch = m.arch or DEFAULT_ARCH[objective]
    if ARCHS[arch] != objective:
        raise ValueError(f"model.arch {arch!r} is a {ARCHS[arch]} model; the objective {objective!r} needs "
                         f"{[a for a, o in ARCHS.items() if o == objective]}")
    cfg = _hf_config(m, arch, vocab, positions, ids)
    return cls.from_config(cfg, attn_implementation=m.attn_implementation)


def quiet_transformers() -> None:
    """No per-file progress bars from transformers: the trainer has its own progress line."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


# Learned absolute position tables cannot go past their size; rotary models can (with some loss).
_LEARNED_POSITIONS = ("gpt2", "bert")


def check_positions(model: torch.nn.Module, seq_len: int) -> None:
    cfg = model.config
    limit = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    if limit is not None and seq_len > limit:
        msg = f"seq_len {seq_len} is longer than the model's {limit} positions"
        if cfg.model_type in _LEARNED_POSITIONS:
            raise ValueError(msg + ": lower data.seq_len")
        import logging

        logging.getLogger("corpusforge.train").warning("%s: rotary positions extrapolate, quality may drop", msg)


def load_tokenizer(folder: str | Path) -> Any:
    """An HF fast tokenizer from a local folder (as ``corpus.stages.tokenizer`` saves them)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    folder = Path(folder)
    if folder.is_file():  # a bare tokenizer.json
        return PreTrainedTokenizerFast(tokenizer_file=str(folder))
    if not folder.is_dir():
        raise FileNotFoundError(f"no tokenizer at {folder}")
    check_export(folder)  # a model export of ours (SFT's tokenizer is often its base model's folder)
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError):
        return PreTrainedTokenizerFast.from_pretrained(str(folder))


def add_tokens(tokenizer: Any, tokens: list[str]) -> list[int]:
    """Add special tokens (mask, sentinels) to a tokenizer; returns their ids in order."""
    missing = [t for t in tokens if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    return [tokenizer.convert_tokens_to_ids(t) for t in tokens]
