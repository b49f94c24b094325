"""Pretraining: loss falls, HF round trip, document masking, MLM statistics, span-corruption layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from trainkit import pretrain_config, read_metrics, shards  # noqa: F401 (fixture)

from corpus import plugins
from corpus.plugins.data import IGNORE_INDEX as IGNORE
from corpus.plugins.data import PackedDataset
from corpus.plugins.models import ModelConfig, SpecialIds, build_model
from corpus.plugins.runtime import Runtime
from corpus.plugins.tasks import mlm_mask, random_spans_mask, span_corrupt, span_lengths
from corpus.plugins.trainer import Trainer


def test_causal_loss_falls_and_hf_round_trip(tmp_path: Path, shards):  # noqa: F811
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, tokens = shards
    cfg = pretrain_config(tmp_path, tokens, train={"max_steps": 24, "eval_every": 12, "log_every": 4, "lr": 5e-3},
                          samples={"count": 1, "max_new_tokens": 4})
    rt = Runtime.create(cfg.train)
    task = plugins.get("pretrain")().build(cfg, rt)
    result = Trainer(task, cfg.train, tmp_path, rt).fit()
    losses = [r["loss"] for r in read_metrics(tmp_path)]
    evals = read_metrics(tmp_path, "eval")
    assert losses[-1] < losses[0] - 0.8, losses
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] and evals[-1]["val_ppl"] < 80
    assert isinstance(evals[0]["samples"][0], str) and evals[0]["samples"][0]

    loaded = AutoModelForCausalLM.from_pretrained(result.final_dir).eval()
    tok = AutoTokenizer.from_pretrained(result.final_dir)
    ids = torch.tensor([tok("the cat sees the moon.")["input_ids"]])
    task.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, task.model(ids).logits, rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_document_masking_matches_separate_documents(arch: str):
    """A packed row with restarted positions gives each document exactly its stand-alone logits."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, hidden_size=32, layers=2, heads=4), "causal", 50, 32,
                        SpecialIds(eos=0, pad=1)).eval()
    a, b = torch.randint(2, 50, (1, 7)), torch.randint(2, 50, (1, 9))
    packed = torch.cat([a, b], 1)
    pos = torch.cat([torch.arange(7), torch.arange(9)]).unsqueeze(0)
    with torch.no_grad():
        both = model(input_ids=packed, position_ids=pos, use_cache=False).logits
        torch.testing.assert_close(both[:, :7], model(a, use_cache=False).logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(both[:, 7:], model(b, use_cache=False).logits, atol=1e-5, rtol=0)
        leaky = model(input_ids=packed, use_cache=False).logits  # without the reset, b sees a
        assert (leaky[:, 7:] - both[:, 7:]).abs().max() > 1e-3


def test_rows_with_and_without_document_masking(shards):  # noqa: F811
    _, tokens = shards
    rows = PackedDataset([tokens / "train"], 32, seed=3, use_loss_mask=False)
    assert len(rows) > 10
    for i in (0, 5, len(rows) - 1):
        r = rows[i]
        keep = r["labels"] != IGNORE
        starts = torch.nonzero(torch.diff(r["document_ids"])).flatten() + 1
        assert (r["position_ids"][starts] == 0).all() and (~keep).sum() >= len(starts)
    plain = PackedDataset([tokens / "train"], 32, seed=3, use_loss_mask=False, document_mask=False)[5]
    assert plain["position_ids"].tolist() == list(range(32)) and (plain["labels"] != IGNORE).all()
    assert torch.equal(plain["input_ids"], rows[5]["input_ids"])


def test_mlm_mask_rates_and_80_10_10():
    rng = np.random.default_rng(0)
    specials = np.array([0, 1])
    tokens = rng.integers(0, 1000, size=200_000)
    inputs, labels = mlm_mask(tokens, rng, rate=0.15, mask_id=1000, vocab_size=1000, special_ids=specials)
    sel = labels != IGNORE
    maskable = ~np.isin(tokens, specials)
    assert not sel[~maskable].any()  # special tokens are never selected
    assert sel[maskable].mean() == pytest.approx(0.15, abs=0.005)
    np.testing.assert_array_equal(labels[sel], tokens[sel])
    masked = inputs[sel] == 1000
    unchanged = inputs[sel] == tokens[sel]
    random_ = ~masked & ~unchanged
    assert masked.mean() == pytest.approx(0.8, abs=0.01)
    # "random" draws the original token 1 in 1000 times, so unchanged is 10% + a hair
    assert unchanged.mean() == pytest.approx(0.1, abs=0.01) and random_.mean() == pytest.approx(0.1, abs=0.01)
    assert (inputs[~sel] == tokens[~sel]).all()
    one = mlm_mask(np.array([5, 6]), np.random.default_rng(1), rate=1e-9, mask_id=9, vocab_size=9,
                   special_ids=specials)[1]
    assert (one != IGNORE).sum() == 1  # never a row without targets


def test_span_corruption_layout_known_example():
    tokens = np.arange(10, 20)  # 10 .. 19
    noise = np.array([0, 0, 1, 1, 0, 0, 0, 1, 0, 1], dtype=bool)
    enc, dec = span_corrupt(tokens, noise, first_sentinel=100, eos=1)
    assert enc.tolist() == [10, 11, 100, 14, 15, 16, 101, 18, 102, 1]
    assert dec.tolist() == [100, 12, 13, 101, 17, 102, 19, 1]
    rng = np.random.default_rng(0)
    for length in (32, 64, 100):
        n_noise, n_spans = span_lengths(length, 0.15, 3.0)
        m = random_spans_mask(length, 0.15, 3.0, rng)
        assert m.sum() == n_noise and not m[0]  # starts with kept text
        assert (np.diff(m.astype(int)) == 1).sum() == n_spans


@pytest.mark.parametrize("objective,metric,auto", [("mlm", "val_mlm_acc", "AutoModelForMaskedLM"),
                                                   ("span", "val_span_acc", "AutoModelForSeq2SeqLM")])
def test_other_objectives_train_and_save(tmp_path: Path, shards, objective: str, metric: str, auto: str):  # noqa: F811
    import transformers

    tok, tokens = shards
    cfg = pretrain_config(tmp_path, tokens, objective=objective, train={"max_steps": 10, "eval_every": 5, "lr": 5e-3})
    result = plugins.run("pretrain", cfg)
    evals = read_metrics(tmp_path, "eval")
    assert metric in evals[-1] and evals[-1]["val_loss"] < evals[0]["val_loss"] + 0.05
    train = [r["loss"] for r in read_metrics(tmp_path)]
    assert np.mean(train[-3:]) < np.mean(train[:3])
    model = getattr(transformers, auto).from_pretrained(result.final_dir)
    saved_tok = transformers.AutoTokenizer.from_pretrained(result.final_dir)
    extra = "<|mask|>" if objective == "mlm" else "<extra_id_0>"
    assert saved_tok.convert_tokens_to_ids(extra) < model.config.vocab_size


def test_corrupt_shards_stop_training_before_the_first_step(tmp_path: Path, shards):  # noqa: F811
    import shutil

    from corpus.shards import ShardError

    _, tokens = shards
    mine = shutil.copytree(tokens, tmp_path / "tokens")  # the fixture is shared: damage a copy
    raw = bytearray((mine / "train.bin").read_bytes())
    for k in range(0, 40, 2):  # 20 in-vocab bit flips (bit 0 of low bytes; the vocab size is even)
        raw[100 * k] ^= 0x01
    (mine / "train.bin").write_bytes(bytes(raw))
    with pytest.raises(ShardError, match=r"train\.bin: sha256 differs"):
        plugins.run("pretrain", pretrain_config(tmp_path / "run", mine))
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_out_of_vocab_ids_are_a_clear_error_not_an_index_error(tmp_path: Path, shards):  # noqa: F811
    from helpers import run_cli

    from corpus.shards import write_documents

    tok, tokens = shards
    # Shards that claim a vocabulary of 1000 while their tokenizer (the model's) has 320 ids.
    meta = json.loads((tokens / "train.json").read_text())
    docs = [list(range(3, 40)) + [0]] * 30 + [[5, 6, 700, 0]] + [list(range(3, 40)) + [0]] * 10
    write_documents(tmp_path / "big" / "train", docs, 1000, meta={"tokenizer": str(tok), "eod_id": meta["eod_id"],
                                                                  "special_token_ids": meta["special_token_ids"]})
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"output: {tmp_path / 'run'}\nmodel: {{hidden_size: 32, layers: 2, heads: 4}}\n"
                   f"data: {{train: {tmp_path / 'big'}, seq_len: 32}}\n"
                   "train: {max_steps: 2, progress: false, tensorboard: false}\nsamples: {count: 0}\n")
    res = run_cli("train", "pretrain", str(cfg))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    err = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and ("big/train.bin: document 30 (token 2 of it) has id 700, outside the model's vocabulary "
                              f"[0, 320) (the tokenizer {tok}): were the shards made with another tokenizer?") in err[0]


def test_shards_of_another_tokenizer_are_refused(tmp_path: Path, shards):  # noqa: F811
    """data.tokenizer naming another tokenizer than the shards were made with trained without a word when
    its vocabulary held every id: each id then names another token. Compared by the sidecar's
    tokenizer_hash (as `corpus shards verify --tokenizer`), for shards without one by size."""
    from trainkit import make_tokenizer

    tok, tokens = shards
    other = make_tokenizer(tmp_path / "other", vocab_size=400)
    with pytest.raises(ValueError, match=r"tokens.train: the shards were tokenized with .*tokenizer, not the "
                                         r"tokenizer .*other \(tokenizer hash differs from the sidecar's: shards "
                                         r"made by another tokenizer\): their ids would name other tokens"):
        plugins.run("pretrain", pretrain_config(tmp_path / "run", tokens, data={"tokenizer": str(other)}))
    moved = tmp_path / "moved"
    for name in ("train", "validation"):  # older shards without a hash, their tokenizer no longer there
        for ext in ("bin", "idx"):
            (moved / f"{name}.{ext}").parent.mkdir(exist_ok=True)
            (moved / f"{name}.{ext}").write_bytes((tokens / f"{name}.{ext}").read_bytes())
        meta = json.loads((tokens / f"{name}.json").read_text())
        del meta["tokenizer_hash"]
        (moved / f"{name}.json").write_text(json.dumps({**meta, "tokenizer": str(tmp_path / "gone")}))
    with pytest.raises(ValueError, match=r"\(320 tokens against \d+\)"):
        plugins.run("pretrain", pretrain_config(tmp_path / "run2", moved, data={"tokenizer": str(other)}))
    assert plugins.run("pretrain", pretrain_config(tmp_path / "run3", tokens, data={"tokenizer": str(tok)},
                                                   train={"max_steps": 1}))


def test_a_tokenizer_retrained_in_place_or_mixed_shard_sets_are_refused(tmp_path: Path, shards):  # noqa: F811
    """A tokenizer retrained in place (same path, same size, another vocabulary), a list of train sets
    from two tokenizers, or validation shards of another tokenizer trained without a word."""
    from trainkit import make_shards, make_tokenizer

    _, tokens = shards
    mine = make_tokenizer(tmp_path / "mine")
    made = make_shards(tmp_path / "made", mine, n_train=40, n_val=8)
    spec = json.loads((mine / "tokenizer.json").read_text())  # retrained: two tokens swap ids, size the same
    vocab = spec["model"]["vocab"]
    a, b = sorted(vocab)[100:102]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (mine / "tokenizer.json").write_text(json.dumps(spec))
    for data in ({"tokenizer": str(mine)}, {}):  # given, or taken from the sidecar
        with pytest.raises(ValueError, match=r"made.train: .*not the tokenizer .*mine \(tokenizer hash differs"):
            plugins.run("pretrain", pretrain_config(tmp_path / "run", made, data=data))
    other = make_shards(tmp_path / "other", make_tokenizer(tmp_path / "tok400", vocab_size=400), n_train=40, n_val=8)
    with pytest.raises(ValueError, match=r"other.train: .*not the tokenizer .*tokenizer \(tokenizer hash differs"):
        plugins.run("pretrain", pretrain_config(tmp_path / "run", tokens, data={
            "train": [str(tokens / "train"), str(other / "train")]}))
    with pytest.raises(ValueError, match=r"other.validation: .*not the tokenizer .*tokenizer \(tokenizer hash"):
        plugins.run("pretrain", pretrain_config(tmp_path / "run", tokens, data={
            "train": str(tokens / "train"), "validation": str(other / "validation")}))
    assert not (tmp_path / "run/checkpoints").exists()


def test_data_train_naming_a_corpus_or_a_bin_file_says_what_to_give(tmp_path: Path, shards):  # noqa: F811
    from corpus.plugins.base import MissingInputError

    _, tokens = shards
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "manifest.json").write_text("{}")  # a prepared corpus, not yet tokenized
    with pytest.raises(MissingInputError, match=r"corpus is a corpus folder, not token shards: tokenize it "
                                                r"\(`corpus tokenize .*corpus --tokenizer TOKENIZER --out "
                                                r".*corpus-tokens`"):
        plugins.run("pretrain", pretrain_config(tmp_path / "run", tmp_path / "corpus"))
    with pytest.raises(MissingInputError, match=r"train.bin: name the shard set by its prefix, .*tokens/train$"):
        plugins.run("pretrain", pretrain_config(tmp_path / "run", tokens / "train.bin"))
