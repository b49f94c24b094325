"""Shared fixtures for the training tests: a tiny byte-level BPE tokenizer, token shards, tiny configs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from corpus.shards import write_documents
from corpus.stages.tokenizer import SPECIAL_TOKENS, save_tokenizer, special_token_ids, tokenizer_hash

SUBJECTS = ["the cat", "a dog", "the bird", "my friend", "the teacher", "a child"]
VERBS = ["sees", "likes", "finds", "follows", "draws", "hears"]
OBJECTS = ["the river", "a red ball", "the old tree", "a small house", "the moon", "a green boat"]


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}." for _ in range(n)]


def documents(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(sentences(rng.randint(1, 4), seed=seed * 1000 + i)) for i in range(n)]


def make_tokenizer(folder: Path, vocab_size: int = 320) -> Path:
    """A byte-level BPE with the project's special tokens (and chat template), saved in HF format."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(documents(200, seed=99) + ["Q: what is 2+2? A: 4."] * 5, trainer=trainer)
    return save_tokenizer(tok, folder)


def make_shards(folder: Path, tokenizer: Path, n_train: int = 120, n_val: int = 24) -> Path:
    """``folder/train`` and ``folder/validation`` shard sets, as the tokenize stage writes them."""
    tok = Tokenizer.from_file(str(tokenizer / "tokenizer.json"))
    specials = special_token_ids(tok)
    eod = specials["<|endoftext|>"]
    meta = {"tokenizer": str(tokenizer), "tokenizer_hash": tokenizer_hash(tokenizer), "special_token_ids": specials,
            "eod_id": eod, "eod_appended": True}
    for split, n, seed in (("train", n_train, 1), ("validation", n_val, 2)):
        docs = [tok.encode(t, add_special_tokens=False).ids + [eod] for t in documents(n, seed)]
        write_documents(folder / split, docs, tok.get_vocab_size(), meta={**meta, "split": split})
    return folder


TINY_MODEL = {"hidden_size": 32, "layers": 2, "heads": 4, "intermediate_size": 64}


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


QUIET = {"progress": False, "tensorboard": False}


def pretrain_config(out: Path, tokens: Path, **over: dict):
    """A validated tiny pretrain config (llama, hidden 32, seq 32); nested keys in ``over`` merge."""
    from corpus.plugins.base import parse_config
    from corpus.plugins.pretrain import PretrainConfig

    data = {"output": str(out), "model": dict(TINY_MODEL), "data": {"train": str(tokens), "seq_len": 32},
            "samples": {"count": 0},
            "train": {"lr": 3e-3, "max_steps": 6, "batch_size": 4, "eval_every": 3, "log_every": 1,
                      "warmup_steps": 2, **QUIET}}
    return parse_config(PretrainConfig, merge(data, over), source="test")


def read_metrics(run: Path, kind: str = "train") -> list[dict]:
    import json

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r["type"] == kind]


@pytest.fixture(scope="session")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(tokenizer folder, token shards folder with train/validation)."""
    root = tmp_path_factory.mktemp("tokens")
    tok = make_tokenizer(root / "tokenizer")
    return tok, make_shards(root / "tokens", tok)
