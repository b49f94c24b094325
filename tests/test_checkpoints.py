"""Checkpoint and export manifests: resume takes the newest intact checkpoint, never deletes an older
valid one for a broken newer one, pruning counts only complete ones, exports are checked on load."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from trainkit import pretrain_config, read_metrics, shards  # noqa: F401 (fixture)

from corpus import plugins
from corpus.plugins.checkpoint import CheckpointError, find_resumable
from corpus.plugins.models import ModelConfig, SpecialIds, build_model, load_tokenizer

OVER = {"train": {"save_every": 2, "keep_checkpoints": 3, "eval_every": 0}}


def steps_of(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").glob("step-*"))


def flip_weights(path: Path, count: int = 50) -> None:
    """Flip ``count`` bytes in the tensor data of a safetensors file (after its JSON header)."""
    raw = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(raw[:8], "little")
    for k in range(count):
        raw[start + 37 * k] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.fixture(scope="module")
def straight(tmp_path_factory, shards):  # noqa: F811
    """The uninterrupted run of 8 steps that every resumed run must reproduce."""
    _, tokens = shards
    run = tmp_path_factory.mktemp("straight")
    plugins.run("pretrain", pretrain_config(run, tokens, train={**OVER["train"], "max_steps": 8}))
    return read_metrics(run)


@pytest.mark.parametrize("damage", ["trainer.pt missing", "50 bytes flipped in the weights"])
def test_resume_skips_a_broken_newest_checkpoint(tmp_path: Path, shards, straight, damage: str, caplog):  # noqa: F811
    _, tokens = shards

    def killed_after_6(step: int, row: dict) -> None:
        if step == 6:
            raise KeyboardInterrupt

    cfg = pretrain_config(tmp_path, tokens, train={**OVER["train"], "max_steps": 8})
    with pytest.raises(KeyboardInterrupt):
        plugins.get("pretrain")().run(cfg, tmp_path, hooks=(killed_after_6,))
    assert steps_of(tmp_path) == ["step-00000002", "step-00000004", "step-00000006"]
    newest = tmp_path / "checkpoints" / "step-00000006"
    if damage == "trainer.pt missing":
        (newest / "trainer.pt").unlink()
    else:
        flip_weights(newest / "model.safetensors")
    path, skipped = find_resumable(tmp_path / "checkpoints")
    assert path is not None and path.name == "step-00000004"
    assert skipped == ["step-00000006: trainer.pt is missing"] if damage == "trainer.pt missing" else \
        skipped == ["step-00000006: model.safetensors: sha256 differs from its manifest.json (corrupt)"]

    with caplog.at_level(logging.INFO, logger="corpusforge.train"):
        r = plugins.run("pretrain", pretrain_config(tmp_path, tokens, train={**OVER["train"], "max_steps": 8}))
    assert r.resumed_from == 4
    text = "\n".join(m.getMessage() for m in caplog.records)
    assert "skipped checkpoint step-00000006" in text and "resumed from step 4" in text
    # The continuation is the uninterrupted run, bit for bit: nothing of the broken checkpoint leaked in.
    assert [(x["step"], x["loss"]) for x in read_metrics(tmp_path)] == [(x["step"], x["loss"]) for x in straight]
    assert steps_of(tmp_path) == ["step-00000004", "step-00000006", "step-00000008"]  # 6 rewritten, intact
    assert find_resumable(tmp_path / "checkpoints") == (tmp_path / "checkpoints" / "step-00000008", [])


def test_no_intact_checkpoint_is_an_error_and_deletes_nothing(tmp_path: Path, shards):  # noqa: F811
    _, tokens = shards
    cfg = pretrain_config(tmp_path, tokens, train={**OVER["train"], "max_steps": 4})
    plugins.run("pretrain", cfg)
    for step in steps_of(tmp_path):
        (tmp_path / "checkpoints" / step / "manifest.json").unlink()  # as if every save had been cut short
    before = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "checkpoints").rglob("*"))
    with pytest.raises(CheckpointError, match=r"no usable checkpoint in .*checkpoints: step-00000004: no "
                                              r"manifest.json: incomplete .* \| step-00000002: .*Nothing was deleted"):
        plugins.run("pretrain", pretrain_config(tmp_path, tokens, train={**OVER["train"], "max_steps": 6}))
    assert sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "checkpoints").rglob("*")) == before
    fresh = pretrain_config(tmp_path, tokens, train={**OVER["train"], "max_steps": 2, "resume": False})
    assert plugins.run("pretrain", fresh).resumed_from is None  # starting over is the user's explicit choice


def test_pruning_counts_only_intact_checkpoints(tmp_path: Path, shards):  # noqa: F811
    _, tokens = shards
    plugins.run("pretrain", pretrain_config(tmp_path, tokens, train={**OVER["train"], "max_steps": 4,
                                                                    "keep_checkpoints": 2}))
    flip_weights(tmp_path / "checkpoints" / "step-00000004" / "model.safetensors")
    # Resume from step 2, save every step, keep one: the broken step 4 must not count as the one kept.
    r = plugins.run("pretrain", pretrain_config(tmp_path, tokens, train={**OVER["train"], "max_steps": 3,
                                                                        "save_every": 1, "keep_checkpoints": 1}))
    assert r.resumed_from == 2
    assert steps_of(tmp_path) == ["step-00000003", "step-00000004"]  # 2 pruned for 3; broken 4 left alone
    path, skipped = find_resumable(tmp_path / "checkpoints")
    assert path is not None and path.name == "step-00000003" and skipped[0].startswith("step-00000004: model")


def test_exports_carry_a_manifest_checked_on_load(tmp_path: Path, shards):  # noqa: F811
    _, tokens = shards
    r = plugins.run("pretrain", pretrain_config(tmp_path / "pre", tokens, train={"max_steps": 2}))
    manifest = json.loads((r.final_dir / "manifest.json").read_text())
    assert {"model.safetensors", "config.json", "tokenizer.json", "corpusforge.json"} <= set(manifest["files"])
    m = ModelConfig(from_pretrained=str(r.final_dir))
    build_model(m, "causal", 320, 32, SpecialIds(eos=0, pad=1))  # intact: loads
    load_tokenizer(r.final_dir)

    bad = shutil.copytree(r.final_dir, tmp_path / "bad")
    flip_weights(bad / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"bad does not match its manifest.json: model.safetensors: sha256 "
                                              r"differs .*export it again"):
        build_model(ModelConfig(from_pretrained=str(bad)), "causal", 320, 32, SpecialIds(eos=0, pad=1))
    (bad / "tokenizer.json").write_text((bad / "tokenizer.json").read_text()[:-10])
    with pytest.raises(CheckpointError, match="tokenizer.json has .* bytes, its manifest.json records"):
        load_tokenizer(bad)

    # SFT from a damaged pretrain final/: a clear error before any training
    from corpus.plugins.base import parse_config
    from corpus.plugins.sft import SFTConfig

    records = tmp_path / "a.jsonl"
    records.write_text("".join(json.dumps({"prompt": f"say {i}", "response": f"{i}."}) + "\n" for i in range(20)))
    cfg = parse_config(SFTConfig, {"output": str(tmp_path / "sft"), "model": {"from_pretrained": str(bad)},
                                   "data": {"datasets": [{"path": str(records)}], "seq_len": 32},
                                   "train": {"max_steps": 1, "progress": False, "tensorboard": False}},
                       source="test")
    with pytest.raises(CheckpointError, match="bad does not match its manifest.json"):
        plugins.run("sft", cfg)
    assert not (tmp_path / "sft" / "metrics.jsonl").exists()

    # A model folder that is not ours (no manifest) loads unchecked, as before.
    (bad / "manifest.json").unlink()
    shutil.copy(r.final_dir / "model.safetensors", bad / "model.safetensors")
    build_model(ModelConfig(from_pretrained=str(bad)), "causal", 320, 32, SpecialIds(eos=0, pad=1))
