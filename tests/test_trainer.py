"""The shared trainer: schedule, exact resume, gradient-accumulation and DDP equivalence, outputs, config errors."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from trainkit import QUIET, TINY_MODEL, pretrain_config, read_metrics, shards  # noqa: F401 (fixture)
from transformers import AutoModelForCausalLM

from corpus import plugins
from corpus.config import ConfigError
from corpus.plugins.base import TrainConfig, load_plugin_config
from corpus.plugins.data import PackedExamples, TrainLoader
from corpus.plugins.models import ModelConfig, SpecialIds, build_model
from corpus.plugins.pretrain import PretrainConfig
from corpus.plugins.runtime import Runtime, seed_everything
from corpus.plugins.tasks import SFT, CausalLM
from corpus.plugins.trainer import EmptyTargetsError, Trainer, lr_factor
from corpus.plugins.trainlog import curves_svg, diagnose

ROOT = Path(__file__).resolve().parent.parent


def test_lr_schedule_warmup_then_cosine():
    f = [lr_factor(s, warmup=4, total=14, min_ratio=0.1) for s in range(15)]
    assert f[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert f[4] == pytest.approx(1.0)
    assert f[9] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f[14] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(f[4:], f[5:], strict=False))


# ---------------------------------------------------------------- gradient accumulation


def _toy_rows(n: int = 16, seq: int = 24) -> PackedExamples:
    """Rows with very different numbers of targets, so a per-micro-batch mean would weigh them wrongly."""
    rng = np.random.default_rng(0)
    examples = []
    for i in range(n):
        length = int(rng.integers(6, seq + 1))
        ids = rng.integers(3, 64, size=length)
        mask = np.zeros(length, dtype=np.uint8)
        mask[-(1 + i % 7 * 3):] = 1  # 1 to 19 targets
        examples.append((ids, mask))
    return PackedExamples(examples, seq, pad_id=0, packing=False)


def _tiny_llama() -> torch.nn.Module:
    m = ModelConfig(hidden_size=32, layers=2, heads=4, intermediate_size=64)
    return build_model(m, "causal", 64, 32, SpecialIds(eos=1, pad=0))


def _train_toy(tmp: Path, batch_size: int, accum: int, steps: int = 2) -> tuple[dict, list[dict]]:
    cfg = TrainConfig(lr=1e-2, max_steps=steps, batch_size=batch_size, grad_accum=accum, grad_clip=1e9,
                      eval_every=0, log_every=1, warmup_steps=0, weight_decay=0.1, **QUIET)
    rt = Runtime.create(cfg)
    seed_everything(0)
    task = CausalLM(_tiny_llama(), _toy_rows())
    Trainer(task, cfg, tmp, rt).fit()
    return {k: v.clone() for k, v in task.model.state_dict().items()}, read_metrics(tmp)


def test_grad_accumulation_1x8_equals_8x1(tmp_path: Path):
    w_big, m_big = _train_toy(tmp_path / "8x1", batch_size=8, accum=1)
    w_acc, m_acc = _train_toy(tmp_path / "1x8", batch_size=1, accum=8)
    for a, b in zip(m_big, m_acc, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)
    for k in w_big:
        torch.testing.assert_close(w_big[k], w_acc[k], atol=1e-6, rtol=0)

    # The test can see the classic bug: averaging per-micro-batch means gives another gradient.
    seed_everything(0)
    model, rows = _tiny_llama(), _toy_rows()
    it = TrainLoader(rows, 1, seed=0)
    batches = [next(it) for _ in range(8)]
    grads = []
    for per_micro_mean in (False, True):
        model.zero_grad()
        n_all = sum(int((b["labels"] != -100).sum()) for b in batches)
        for b in batches:
            logits = model(input_ids=b["input_ids"], position_ids=b["position_ids"]).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 64), b["labels"].reshape(-1), reduction="sum")
            n = int((b["labels"] != -100).sum())
            (loss / (n * 8) if per_micro_mean else loss / n_all).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item())
    assert grads[0] == pytest.approx(m_acc[0]["grad_norm"], rel=1e-5)
    assert abs(grads[1] - grads[0]) > 1e-3 * grads[0]


# ---------------------------------------------------------------- exact resume


class Killed(Exception):
    pass


def test_resume_is_exact(tmp_path: Path, shards):  # noqa: F811
    _, tokens = shards
    over = {"model": {"dropout": 0.1}, "train": {"max_steps": 6, "save_every": 2, "eval_every": 3}}
    straight = pretrain_config(tmp_path / "a", tokens, **over)
    ra = plugins.run("pretrain", straight)

    def kill_at_5(step: int, row: dict) -> None:
        if step == 5:
            raise Killed

    cfg_b = pretrain_config(tmp_path / "b", tokens, **over)
    with pytest.raises(Killed):
        plugins.get("pretrain")().run(cfg_b, tmp_path / "b", hooks=(kill_at_5,))
    assert (tmp_path / "b/checkpoints/latest").read_text() == "step-00000004"
    rb = plugins.run("pretrain", pretrain_config(tmp_path / "b", tokens, **over))
    assert rb.resumed_from == 4 and rb.steps == ra.steps == 6

    a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]  # no duplicate rows from the killed attempt
    for x, y in zip(a, b, strict=True):
        assert (x["loss"], x["lr"], x["grad_norm"]) == (y["loss"], y["lr"], y["grad_norm"])  # bit for bit
    assert [r["val_loss"] for r in read_metrics(tmp_path / "a", "eval")] == \
        [r["val_loss"] for r in read_metrics(tmp_path / "b", "eval")]
    wa = load_file(tmp_path / "a/final/model.safetensors")
    wb = load_file(tmp_path / "b/final/model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)

    # A checkpoint of another config is not silently continued; more steps of the same config are.
    with pytest.raises(ValueError, match="different config.*train.lr"):
        plugins.run("pretrain", pretrain_config(tmp_path / "b", tokens,
                                                **{**over, "train": {**over["train"], "max_steps": 8, "lr": 1e-3}}))
    # The plugin's own resumable keys (pretrain: samples) are its to declare; the trainer knows none.
    more = pretrain_config(tmp_path / "b", tokens, **{**over, "train": {**over["train"], "max_steps": 8}},
                           samples={"count": 1, "max_new_tokens": 2})
    assert plugins.run("pretrain", more).resumed_from == 6


# ---------------------------------------------------------------- empty targets, early stop, outputs


def test_empty_target_batch_is_an_error(tmp_path: Path):
    ids = np.arange(3, 13)
    rows = PackedExamples([(ids, np.zeros(10, dtype=np.uint8))] * 4, 16, pad_id=0)
    cfg = TrainConfig(max_steps=1, batch_size=2, eval_every=0, **QUIET)
    task = SFT(_tiny_llama(), rows)
    with pytest.raises(EmptyTargetsError, match="step 1, micro-batch 0.*assistant mask is empty"):
        Trainer(task, cfg, tmp_path, Runtime.create(cfg)).fit()


def test_a_plugin_of_ones_own_runs_from_its_class(tmp_path: Path, shards):  # noqa: F811
    """plugins.run took a registered name only: a plugin written in a notebook or a script needed an entry
    point first. Its class is taken as well, its config checked as its own."""
    from corpus.plugins.pretrain import Pretrain

    class Warmed(Pretrain):  # a plugin of one's own: here, pretraining with a longer warmup
        name = "warmed"

        def build(self, config, runtime):
            config.train.warmup_steps = 3
            return super().build(config, runtime)

    _, tokens = shards
    cfg = tmp_path / "w.yaml"
    cfg.write_text(json.dumps({"plugin": "warmed", "output": str(tmp_path / "run"), "model": dict(TINY_MODEL),
                               "data": {"train": str(tokens), "seq_len": 32}, "samples": {"count": 0},
                               "train": {"lr": 3e-3, "max_steps": 2, "batch_size": 2, "eval_every": 0, **QUIET}}))
    r = plugins.run(Warmed, cfg)
    assert r.steps == 2 and read_metrics(tmp_path / "run")[0]["lr"] == pytest.approx(3e-3 / 4)  # its warmup, 3
    with pytest.raises(ConfigError, match="this config is for 'warmed', not 'pretrain'"):
        plugins.run("pretrain", cfg)
    with pytest.raises(TypeError, match="dict is not a TrainPlugin subclass"):
        plugins.run(dict, cfg)
    # A dict of the YAML's keys, as a notebook writes it (it ended in "'dict' object has no attribute 'output'")
    data = json.loads(cfg.read_text()) | {"output": str(tmp_path / "run2")}
    assert plugins.run(Warmed, data, overrides=["train.max_steps=1"]).steps == 1
    with pytest.raises(ConfigError) as exc:
        plugins.run("pretrain", {"output": str(tmp_path / "run3"), "trian": {}})
    assert exc.value.errors[0].startswith("pretrain config: pretrain.trian: unknown parameter (did you mean 'train'?)")
    with pytest.raises(TypeError, match="config must be a YAML path, a dict or a PretrainConfig, got int"):
        plugins.run("pretrain", 5)


def test_early_stopping_and_run_outputs(tmp_path: Path, shards):  # noqa: F811
    _, tokens = shards
    cfg = pretrain_config(tmp_path, tokens, train={"max_steps": 12, "eval_every": 2, "early_stopping_patience": 2,
                                                   "early_stopping_min_delta": 100.0, "tensorboard": True})
    r = plugins.run("pretrain", cfg)
    assert r.stopped_early and r.steps == 6  # best at 2, no improvement of 100 at 4 and 6
    assert json.loads((tmp_path / "best/corpusforge.json").read_text())["step"] == 2
    assert json.loads((tmp_path / "final/corpusforge.json").read_text())["step"] == 6

    rows = read_metrics(tmp_path)
    assert [x["step"] for x in rows] == [1, 2, 3, 4, 5, 6]
    assert all(x["tokens_per_s"] > 0 and 0 < x["mfu"] < 1 for x in rows)
    assert rows[0]["lr"] == pytest.approx(3e-3 / 3) and rows[2]["lr"] == pytest.approx(3e-3)  # warmup 2, then peak
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    svg = ET.fromstring((tmp_path / "curves.svg").read_text())
    assert svg.tag.endswith("svg") and len(svg.findall("{http://www.w3.org/2000/svg}polyline")) == 2
    assert "curves.svg" in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "result.json").read_text())["stopped_early"] is True
    assert (r.final_dir / "model.safetensors").is_file() and (r.final_dir / "tokenizer.json").is_file()
    assert (r.best_dir / "config.json").is_file()

    # A rerun of the finished run does nothing: it trained on past the early stop (steps 7-12, other final
    # weights) and wrote its final metrics as {} (result.json, final/corpusforge.json, report.md).
    def outputs() -> tuple:
        return ((tmp_path / "final/model.safetensors").read_bytes(),
                (tmp_path / "final/corpusforge.json").read_text(),
                json.loads((tmp_path / "result.json").read_text())["final_metrics"],
                (tmp_path / "report.md").read_text())

    first = outputs()
    assert first[2]["val_loss"] == r.final_metrics["val_loss"] and "val_loss" in first[1]
    again = plugins.run("pretrain", cfg)
    assert again.steps == 6 and again.stopped_early and again.resumed_from == 6 and outputs() == first
    for name in ("final", "result.json", "report.md"):  # killed between its last checkpoint and its end
        path = tmp_path / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert plugins.run("pretrain", cfg).final_metrics == r.final_metrics and outputs() == first


def test_a_diverged_run_stops_naming_the_step(tmp_path: Path, shards, monkeypatch):  # noqa: F811
    """A NaN training loss finished as a success with NaN weights (and a NaN best model, NaN in result.json)."""
    from corpus.plugins.trainer import DivergedError

    _, tokens = shards
    with pytest.raises(DivergedError, match=r"step \d+: the training loss is nan.*lower train.lr"):
        plugins.run("pretrain", pretrain_config(tmp_path / "nan", tokens, train={"lr": 1e4}))
    assert not (tmp_path / "nan/final").exists() and not (tmp_path / "nan/result.json").exists()

    # A NaN validation loss is never the best model, and result.json stays valid JSON (null, not NaN).
    monkeypatch.setattr(CausalLM, "metrics", lambda self, sums: {"val_loss": math.nan})
    r = plugins.run("pretrain", pretrain_config(tmp_path / "val", tokens))
    assert r.best_val_loss is None and r.best_dir is None and not (tmp_path / "val/best").exists()
    saved = json.loads((tmp_path / "val/result.json").read_text(),
                       parse_constant=lambda c: pytest.fail(f"result.json holds {c}"))
    assert saved["final_metrics"] == {"val_loss": None}


def test_curves_and_diagnosis():
    train = [(s, 3.0 - 0.1 * s) for s in range(1, 11)]
    over = [(2, 2.9), (4, 2.7), (6, 2.8), (8, 3.0)]
    assert diagnose(train, over).startswith("overfitting")
    assert diagnose(train, [(2, 3.0), (4, 2.8), (6, 2.6)]).startswith("still improving")
    assert curves_svg([], []).startswith("<svg")


# ---------------------------------------------------------------- configs and registry


def test_config_errors_name_line_and_key(tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text("output: out\nmodel:\n  hiden_size: 64\n  layers: two\ntrain:\n  lr: 3e-4\n  batch_size: 0\n"
                    "objective: clm\n")
    with pytest.raises(ConfigError) as exc:
        load_plugin_config(PretrainConfig, path, plugin="pretrain")
    text = "\n".join(exc.value.errors)
    assert "p.yaml:3: model.hiden_size: unknown parameter (did you mean 'hidden_size'?)" in text
    assert "p.yaml:4: model.layers: expected int, got str 'two'" in text
    assert "p.yaml:7: train: batch_size must be >= 1, got 0" in text  # the line of batch_size
    assert "objective must be one of" in text
    # Out-of-range values are refused before anything runs (negative max_steps trained a whole epoch, a
    # model with no layers trained, dropout 1.5 ended in torch's traceback)
    bad = {"train:\n  max_steps: -5\n": "train: max_steps must be >= 0 (0: from epochs), got -5",
           "train:\n  weight_decay: -1\n": "train: weight_decay must be >= 0",
           "train:\n  betas: [0.9, 1.5]\n": "train: betas must lie in [0, 1), got [0.9, 1.5]",
           "train:\n  eval_every: -1\n": "train: eval_every must be >= 0 (0: only at the end), got -1",
           "model:\n  layers: 0\n": "model: layers must be >= 1, got 0",
           "model:\n  dropout: 1.5\n": "model: dropout must lie in [0, 1), got 1.5",
           "model:\n  kv_heads: 3\n": "model: heads 4 is not a multiple of kv_heads 3"}
    for body, msg in bad.items():
        path.write_text("output: out\n" + body)
        with pytest.raises(ConfigError) as exc:
            load_plugin_config(PretrainConfig, path, plugin="pretrain")
        # the line of the parameter the message starts with, else the section's
        key, first = body.split("\n")[1].split(":")[0].strip(), msg.split(": ", 1)[1].split()[0].rstrip(",")
        assert f"p.yaml:{3 if first == key else 2}: {msg}" in "\n".join(exc.value.errors)
    # A failed section is said once: its parent's checks do not judge the stand-in's defaults (an SFT data
    # section that failed left "give at least one dataset" beside its real error), other problems still show
    from corpus.plugins.sft import SFTConfig

    path.write_text("output: out\ndata:\n  datasets:\n    - path: d.jsonl\n      weight: -1\ntrain:\n  lr: 0\n")
    with pytest.raises(ConfigError) as exc:
        load_plugin_config(SFTConfig, path, plugin="sft")
    assert sorted(exc.value.errors) == [f"{path}:5: data.datasets[0]: weight and few_shot must be >= 0",
                                        f"{path}:7: train: lr must be > 0, got 0"]  # the parameters' lines
    path.write_text("output: out\ntrain:\n  lr: 3e-4\n")  # YAML reads 3e-4 as a string: accepted as a float
    cfg = load_plugin_config(PretrainConfig, path, overrides=["train.warmup_steps=7"])
    assert cfg.train.lr == 3e-4 and cfg.train.warmup_steps == 7 and cfg.output == str(tmp_path / "out")
    # A bad value given by --set is named as the command line's, not as a line of the file.
    with pytest.raises(ConfigError) as exc:
        load_plugin_config(PretrainConfig, path, overrides=["train.lr=fast", "model.layerz=2", "model.layers=2"])
    assert sorted(exc.value.errors) == [
        "--set model.layerz: unknown parameter (did you mean 'layers'?); known: arch, from_pretrained, hidden_size, "
        "layers, heads, kv_heads, intermediate_size, max_positions, dropout, tie_embeddings, attn_implementation, "
        "extra",
        "--set train.lr: expected float, got str 'fast'"]


@pytest.mark.parametrize("override,says", [
    ("train.device=tpu", "device must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"),  # a traceback as it started
    ("train.seed=-1", "seed must lie in [0, 2**32), got -1"),  # "expected non-negative integer", nothing more
    ("train.epochs=-1", "epochs must be >= 0, got -1"),
    ("samples.count=-1", "--set samples.count: count must be >= 0, got -1"),
    ("train.epochs=inf", "--set train.epochs: epochs must be a finite number, got inf"),  # OverflowError
    ("train.lr=[1", "--set 'train.lr=[1': the value is not valid YAML (expected ',' or ']'"),  # a yaml traceback
])
def test_training_settings_out_of_range_are_config_errors(tmp_path: Path, override: str, says: str):
    path = tmp_path / "p.yaml"
    path.write_text("output: out\ntrain:\n  max_steps: 2\n")
    with pytest.raises(ConfigError) as exc:
        load_plugin_config(PretrainConfig, path, overrides=[override])
    assert any(says in e for e in exc.value.errors), exc.value.errors


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine with CUDA runs on it")
def test_a_cuda_device_without_cuda_says_so():
    """train.device cuda on a machine without it was an AttributeError from inside torch."""
    from corpus.plugins.base import PluginInputError

    with pytest.raises(PluginInputError, match="train.device 'cuda': .*; use 'auto' .* or 'cpu'"):
        Runtime.create(TrainConfig(device="cuda", max_steps=1))


def test_deterministic_kernels_without_loading_the_compiler():
    """A run's Runtime turns on torch's deterministic kernels (warn only) in a fresh process without importing
    torch._inductor, which torch's public switch imports (2.5 s of every training command's start)."""
    code = ("import sys, torch\nfrom corpus.plugins.base import TrainConfig\n"
            "from corpus.plugins.runtime import Runtime\n"
            "Runtime.create(TrainConfig(device='cpu', max_steps=1))\n"
            "print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),"
            " 'torch._inductor' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.split() == ["True", "True", "False"], res.stderr[-2000:]


def test_registry_finds_builtins_and_suggests():
    assert {"pretrain", "sft"} <= set(plugins.names())
    assert plugins.get("sft").name == "sft"
    with pytest.raises(plugins.UnknownPlugin, match="did you mean 'pretrain'"):
        plugins.get("pretrian")


def test_cli_check_and_errors(tmp_path: Path, shards):  # noqa: F811
    import argparse

    from corpus.plugins.cli import add_train_parser

    _, tokens = shards
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"output: out\ndata:\n  train: {tokens}\n")
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "pretrain", str(cfg), "--check"])
    printed = []

    class Console:
        def print(self, *a, **_):
            printed.append(" ".join(map(str, a)))

    assert args.fn(args, Console()) == 0 and printed[0].startswith("ok: pretrain")
    # An input the config names that is not there: --check said ok, and the run failed once torch had loaded
    cfg.write_text(f"output: out\ndata:\n  train: {tokens}\n  tokenizer: {tmp_path / 'no-tok'}\n"
                   f"model: {{from_pretrained: {tmp_path / 'no-model'}}}\n")
    with pytest.raises(ConfigError) as exc:
        args.fn(parser.parse_args(["train", "pretrain", str(cfg), "--check"]), Console())
    assert exc.value.errors == [f"{cfg}: model.from_pretrained: {tmp_path / 'no-model'} does not exist",
                                f"{cfg}: data.tokenizer: {tmp_path / 'no-tok'} does not exist"]
    cfg.write_text(f"output: out\ndata:\n  train: {tokens}\n  tokenizer: {'t' * 300}\n")  # too long a name
    with pytest.raises(ConfigError, match=r"data.tokenizer: .*t{300} does not exist"):
        args.fn(parser.parse_args(["train", "pretrain", str(cfg), "--check"]), Console())
    with pytest.raises(ConfigError, match="unknown training plugin 'pretrian'"):
        args = parser.parse_args(["train", "pretrian", str(cfg)])
        args.fn(args, Console())


def test_cli_run_says_what_it_does_and_max_steps_overrides(tmp_path: Path, shards, capsys, caplog):  # noqa: F811
    """The first line comes before torch loads; a banner gives the model's size, tokens per step, the
    steps and where the models go; step lines carry an ETA; --max-steps overrides the config."""
    import logging

    from corpus.cli import main

    _, tokens = shards
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"output: run\nmodel: {{hidden_size: 32, layers: 2, heads: 4, intermediate_size: 64}}\n"
                   f"data: {{train: {tokens}, seq_len: 32}}\nsamples: {{count: 0}}\n"
                   "train: {max_steps: 500, batch_size: 4, eval_every: 2, log_every: 2, progress: false, "
                   "tensorboard: false}\n")
    with caplog.at_level(logging.INFO, logger="corpusforge.train"):
        assert main(["train", "pretrain", str(cfg), "--max-steps", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"corpus train pretrain {cfg}: loading PyTorch and the data...\n")
    assert "done: 3 steps, 384 tokens" in out
    lines = [r.getMessage() for r in caplog.records]
    params = sum(p.numel() for p in {id(p): p for p in AutoModelForCausalLM.from_pretrained(tmp_path / "run/final")
                                     .parameters()}.values())
    assert f"pretrain: llama, {params:,} parameters, on cpu" in lines
    assert "3 steps of 128 tokens (4 rows x 32 tokens x 1 accumulated x 1 processes): 384 tokens" in "\n".join(lines)
    run = tmp_path / "run"
    assert any(f"checkpoints: {run}/checkpoints/ (every 2 steps and at the end); best model: {run}/best/; final "
               f"model: {run}/final/" in line for line in lines)
    steps = [line for line in lines if line.startswith("step ") and " loss " in line]
    assert [s.split()[1] for s in steps] == ["1/3", "2/3", "3/3"]  # step 1 at once, then every log_every
    assert all(" ETA " in s and "tok/s" in s for s in steps)


def test_no_plugin_imports_another_plugin():
    import ast
    import importlib

    modules = {name: plugins.PLUGINS.entries[name].value.split(":")[0] for name in plugins.names()}
    for name, module in modules.items():
        tree = ast.parse(Path(importlib.import_module(module).__file__).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | \
            {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        others = set(modules.values()) - {module}
        assert not imported & others, f"plugin {name} imports {imported & others}"


# ---------------------------------------------------------------- DDP (gloo, 2 processes on CPU)


def test_ddp_two_processes_match_one(tmp_path: Path, shards):  # noqa: F811
    """torchrun -nproc 2 with batch 2 per process == one process with batch 4: same rows, same update."""
    _, tokens = shards
    body = (f"output: {tmp_path / 'ddp'}\nmodel: {{hidden_size: 32, layers: 2, heads: 4, intermediate_size: 64}}\n"
            f"data: {{train: {tokens}, seq_len: 32}}\n"
            "train: {lr: 3.0e-3, max_steps: 2, batch_size: 2, eval_every: 2, log_every: 1, progress: false, "
            "tensorboard: false, peak_tflops: 1.0}\nsamples: {count: 0}\n")
    (tmp_path / "ddp.yaml").write_text(body)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "corpus.plugins.cli", "pretrain", str(tmp_path / "ddp.yaml"), "--quiet"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = load_plugin_config(PretrainConfig, tmp_path / "ddp.yaml", output=tmp_path / "one",
                                overrides=["train.batch_size=4"])
    plugins.run("pretrain", single)
    d, s = read_metrics(tmp_path / "ddp"), read_metrics(tmp_path / "one")
    for x, y in zip(d, s, strict=True):
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-5)
        assert x["tokens"] == y["tokens"]
    assert read_metrics(tmp_path / "ddp", "eval")[0]["val_loss"] == \
        pytest.approx(read_metrics(tmp_path / "one", "eval")[0]["val_loss"], abs=1e-5)
    wd, ws = load_file(tmp_path / "ddp/final/model.safetensors"), load_file(tmp_path / "one/final/model.safetensors")
    for k in wd:
        torch.testing.assert_close(wd[k], ws[k], atol=1e-5, rtol=1e-4)
