"""`corpus train` as a user meets it on run folders, resume and config errors: an output that would
overwrite what the run reads, another plugin's run, a rerun asked for fewer steps, a model export given
as the output, sample generation past a model's positions, rows longer than the model's positions, a
step out of memory, and config errors from --set said as --set's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import ROOT
from trainkit import shards  # noqa: F401 (fixture)

from corpus.cli import main
from corpus.config import ConfigError
from corpus.plugins.base import load_plugin_config


def _pretrain_yaml(path: Path, tokens: Path, extra: str = "") -> Path:
    path.write_text(f"plugin: pretrain\noutput: out\nmodel: {{hidden_size: 32, layers: 1, heads: 2}}\n"
                    f"data: {{train: {tokens}, seq_len: 32}}\nsamples: {{count: 0}}\n"
                    "train: {lr: 3.0e-3, max_steps: 2, batch_size: 4, eval_every: 2, eval_batches: 1, "
                    "progress: false, tensorboard: false}\n" + extra)
    return path


def _train(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["train", *argv, "-q"])
    return rc, " ".join(capsys.readouterr().err.split())  # one line, however the console wrapped it


@pytest.fixture(scope="module")
def base(tmp_path_factory, shards):  # noqa: F811
    """A finished 2-step pretrain run (checkpoint, best/, final/) and its config."""
    _, tokens = shards
    root = tmp_path_factory.mktemp("base")
    cfg = _pretrain_yaml(root / "p.yaml", tokens)
    assert main(["train", "pretrain", str(cfg), "-o", str(root / "run"), "-q"]) == 0
    return cfg, root / "run"


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def test_an_output_folder_holding_an_input_of_the_run_is_refused(tmp_path: Path, base, shards, capsys):  # noqa: F811
    """Fine-tuning into the folder of the model fine-tuned from: --fresh deleted that model (final/ and every
    checkpoint) and trained on; now refused before anything, --check too, and nothing is touched."""
    cfg, run = base
    run = _copy(run, tmp_path / "run")
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    for extra in ([], ["--fresh"], ["--check"]):
        rc, err = _train(capsys, "pretrain", str(cfg), "-o", str(run), "--set",
                         f"model.from_pretrained={run / 'final'}", *extra)
        assert rc == 2 and err.startswith(f"error: output folder {run} holds model.from_pretrained {run / 'final'}, "
                                          "which the run reads"), (extra, err)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    # an output inside an input (the token shards' parent folder holds the train set)
    _, tokens = shards
    for extra in (["--check"], []):  # without --check: refused by TrainPlugin.run once the plugin built
        rc, err = _train(capsys, "pretrain", str(cfg), "-o", str(tokens / "train" / "run"), *extra)
        assert rc == 2 and err.startswith(f"error: output folder {tokens / 'train' / 'run'} lies inside data.train "
                                          f"{tokens}, which the run reads"), (extra, err)
        assert not (tokens / "train" / "run").exists()
    # an output symlinked into the input folder
    (tmp_path / "link").symlink_to(tokens / "train", target_is_directory=True)
    rc, err = _train(capsys, "pretrain", str(cfg), "-o", str(tmp_path / "link" / "run"), "--check")
    assert rc == 2 and f"lies inside data.train {tokens}" in err, err
    rc, err = _train(capsys, "pretrain", str(cfg), "-o", str(tokens.parent), "--check")
    assert rc == 2 and f"output folder {tokens.parent} holds data.train {tokens}" in err, err


def test_a_glob_input_refuses_only_an_output_it_would_read(tmp_path: Path):
    """A glob was taken as its whole top folder: `*.jsonl` refused the output `out` ("lies inside data.train"),
    `runs/*/rankings.jsonl` refused `runs/dpo`, though neither could match a file of the run."""
    from corpus.plugins.base import output_overlap
    from corpus.plugins.dpo import DPOConfig

    (tmp_path / "r.jsonl").write_text("{}\n")
    for d in ("a", "dpo"):
        (tmp_path / "runs" / d).mkdir(parents=True)
    (tmp_path / "runs" / "a" / "rankings.jsonl").write_text("{}\n")

    def overlap(train: str, out: str, inside: bool = True) -> str | None:
        path = tmp_path / "c.yaml"
        path.write_text(f"output: {out}\ndata: {{train: '{train}'}}\n")
        return output_overlap(load_plugin_config(DPOConfig, path, plugin="dpo"), inside=inside)

    assert overlap("*.jsonl", "out") is None
    assert overlap("runs/*/rankings.jsonl", "runs/dpo") is None
    (tmp_path / "runs" / "dpo" / "rankings.jsonl").write_text("{}\n")  # now the glob reads the run's file
    assert "runs/dpo/rankings.jsonl lies inside the output folder" in overlap("runs/*/rankings.jsonl", "runs/dpo")
    # a ** glob reads its folder whole: an output inside it is refused, once the plugin checked its inputs
    why = overlap("runs/**/*.jsonl", "runs/new")
    assert why and why.startswith("data.train 'runs/**/*.jsonl': it reads ") and "holds the output folder" in why
    assert overlap("runs/**/*.jsonl", "runs/new", inside=False) is None


def test_another_plugins_run_is_named_as_such(tmp_path: Path, base, capsys):
    """An SFT into a pretrain run's folder said "a checkpoint of a different config (changed:
    data.chat_template, ...)": it says whose run the folder holds."""
    _, run = base
    sft = tmp_path / "s.yaml"
    sft.write_text(f"plugin: sft\noutput: out\nmodel: {{from_pretrained: {run / 'final'}}}\n"
                   f"data: {{seq_len: 32, validation_fraction: 0.1, datasets: [{{path: "
                   f"{ROOT / 'examples/train/sft_data.jsonl'}}}]}}\nsamples: {{count: 0}}\n"
                   "train: {max_steps: 1, batch_size: 4, progress: false, tensorboard: false}\n")
    other = _copy(run, tmp_path / "other")
    rc, err = _train(capsys, "sft", str(sft), "-o", str(other))
    assert rc == 2 and f"{other} holds another plugin's run, pretrain" in err, err
    assert "different config" not in err


def test_a_rerun_asked_for_fewer_steps_than_its_checkpoint_says_so(tmp_path: Path, base, capsys):
    """It showed 2/1 steps, an ETA of -:--:-- and "done: 2 steps"."""
    cfg, run = base
    run = _copy(run, tmp_path / "run")
    rc, err = _train(capsys, "pretrain", str(cfg), "-o", str(run), "--max-steps", "1")
    assert rc == 2 and f"{run} holds a run already at step 2, past the 1 steps asked (train.max_steps" in err, err
    # max_steps 0: the steps come from train.epochs and the data, which the message names (not --max-steps)
    rc, err = _train(capsys, "pretrain", str(cfg), "-o", str(run), "--set", "train.max_steps=0", "--set",
                     "train.epochs=0.001")
    assert rc == 2 and (f"{run} holds a run already at step 2, past the 1 steps asked (train.epochs 0.001 of this "
                        "data, as train.max_steps is 0)") in err and "Ask for more epochs" in err, err
    assert _train(capsys, "pretrain", str(cfg), "-o", str(run))[0] == 0  # the same steps: as before, nothing to do


def test_a_model_export_as_the_output_is_named_a_model_export(base, capsys):
    """It was called a tokenizer (an export holds one) with `corpus tokenize --tokenizer` as the advice."""
    cfg, run = base
    for out in (run / "final", run / "best" / "sub"):
        rc, err = _train(capsys, "pretrain", str(cfg), "-o", str(out))
        assert rc == 2 and f"holds a model export (the final/ or best/ of the training run {run}" in err, err
        assert "tokenizer train" not in err


def test_samples_stay_within_a_gpt2_models_positions(tmp_path: Path, shards, capsys):  # noqa: F811
    """A prompt plus samples.max_new_tokens past GPT-2's 32 positions was an IndexError at the first
    evaluation, before any checkpoint."""
    from corpus.plugins.tasks import fit_positions

    _, tokens = shards
    cfg = _pretrain_yaml(tmp_path / "p.yaml", tokens)
    rc, err = _train(capsys, "pretrain", str(cfg), "-o", str(tmp_path / "run"), "--set", "model.arch=gpt2", "--set",
                     "samples={count: 1, prompt_tokens: 8, max_new_tokens: 40}")
    assert rc == 0, err
    assert fit_positions([1, 2, 3], 40, 32) == ([1, 2, 3], 29)
    assert fit_positions(list(range(40)), 8, 32) == (list(range(16, 40)), 8)  # the prompt keeps its end
    assert fit_positions(list(range(40)), 40, 32) == (list(range(24, 40)), 16)
    assert fit_positions([1, 2], 5, None) == ([1, 2], 5)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_rows_longer_than_the_models_positions_are_refused(tmp_path: Path, shards, capsys, arch: str):  # noqa: F811
    """GPT-2 ended in an IndexError, Llama trained 32-token rows and exported a config claiming 16."""
    _, tokens = shards
    cfg = _pretrain_yaml(tmp_path / "p.yaml", tokens)
    rc, err = _train(capsys, "pretrain", str(cfg), "-o", str(tmp_path / "run"), "--set", f"model.arch={arch}",
                     "--set", "model.max_positions=16")
    assert rc == 2 and err == ("error: --set model.max_positions: data.seq_len 32 is longer than the model's 16 "
                               "positions (model.max_positions): lower data.seq_len or raise model.max_positions"), err
    assert not (tmp_path / "run").exists()


def test_an_sft_model_from_scratch_shorter_than_its_rows_is_refused(tmp_path: Path):
    """SFT built its model with model.max_positions and fed it rows of data.seq_len: GPT-2's IndexError."""
    from corpus.plugins.sft import SFTConfig

    path = tmp_path / "s.yaml"
    path.write_text("output: o\nmodel: {arch: gpt2, max_positions: 16}\n"
                    "data: {seq_len: 32, datasets: [{path: x.jsonl}]}\n")
    with pytest.raises(ConfigError) as exc:
        load_plugin_config(SFTConfig, path, plugin="sft")
    assert exc.value.errors == [f"{path}:3: sft: data.seq_len 32 is longer than the model's 16 positions "
                                "(model.max_positions): lower data.seq_len or raise model.max_positions"]


def test_a_step_out_of_memory_is_one_line_naming_the_sizes(tmp_path: Path, shards, capsys, monkeypatch):  # noqa: F811
    """A data.seq_len of 100000 was torch's allocator traceback ("can't allocate 40000000000 bytes")."""
    from corpus.plugins import trainer

    def step(self):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried "
                           "to allocate 40000000000 bytes")

    monkeypatch.setattr(trainer.Trainer, "step", step)
    _, tokens = shards
    cfg = _pretrain_yaml(tmp_path / "p.yaml", tokens)
    rc, err = _train(capsys, "pretrain", str(cfg), "-o", str(tmp_path / "run"))
    assert rc == 2, err
    assert err.startswith("error: step 1: out of memory on cpu with micro-batches of 4 rows of 32 tokens"), err
    assert "lower train.batch_size" in err and "Traceback" not in err


RLHF = "output: o\npolicy: p\nprompts: p.jsonl\nrounds: 1\njudge: {function: 'm:f'}\n"


@pytest.mark.parametrize("plugin,body,override,error", [
    ("pretrain", "output: o\ntrain:\n  batch_size: 4\n  grad_accum: 1\n", "train.grad_accum=0",
     "--set train.grad_accum: grad_accum must be >= 1, got 0"),
    ("pretrain", "output: o\nmodel:\n  max_positions: 64\ndata:\n  seq_len: 32\n", "data.seq_len=128",
     "--set data.seq_len: data.seq_len 128 is longer than the model's 64 positions"),
    ("pretrain", "output: o\nmodel:\n  hidden_size: 32\n  layers: 2\n", "model.layers=0",
     "--set model.layers: layers must be >= 1, got 0"),
    ("pretrain", "output: o\nmlm:\n  mask_rate: 0.15\n", "mlm.replace_random=0.5",
     "--set mlm.replace_random: replace_mask + replace_random must be <= 1, got 0.8 + 0.5"),
    ("ppo", "output: o\ndata: {prompts: p.jsonl}\nppo:\n  reward_fn: 'm:f'\n  temperature: 1.0\n", "ppo.top_k=-1",
     "--set ppo.top_k: top_k must be >= 0 (0: the whole distribution), got -1"),
    ("dpo", "output: o\ndata: {train: r.jsonl}\ndpo:\n  beta: 0.1\n  label_smoothing: 0.1\n", "dpo.label_smoothing=0.7",
     "--set dpo.label_smoothing: label_smoothing must lie in [0, 0.5), got 0.7"),
    ("rlhf", RLHF + "sampling:\n  temperature: 1.0\n",
     "sampling.responses=1", "--set sampling.responses: responses must be >= 2"),
    ("rlhf", RLHF + "sampling:\n  max_new_tokens: 8\n",
     "sampling.temperature=0", "--set sampling.temperature: temperature must be > 0, got 0"),
])
def test_a_bad_value_from_set_is_blamed_on_set(tmp_path: Path, plugin: str, body: str, override: str, error: str):
    """The message named a key of the file first (batch_size beside grad_accum, temperature beside top_k),
    and the error pointed at that key's line: `p.yaml:7: train: batch_size and grad_accum must be >= 1`."""
    from corpus.plugins.dpo import DPOConfig
    from corpus.plugins.ppo import PPOConfig
    from corpus.plugins.pretrain import PretrainConfig
    from corpus.plugins.rlhf import RLHFConfig

    cls = {"pretrain": PretrainConfig, "ppo": PPOConfig, "dpo": DPOConfig, "rlhf": RLHFConfig}[plugin]
    path = tmp_path / "c.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as exc:
        load_plugin_config(cls, path, plugin=plugin, overrides=[override])
    assert len(exc.value.errors) == 1 and exc.value.errors[0].startswith(error), exc.value.errors


def test_a_bad_value_in_the_file_is_not_blamed_on_a_set_key_it_mentions(tmp_path: Path):
    """`--set ppo.kl_coef=0.1` with `kl_target: -1` in the file said "--set ppo.kl_coef: kl_target must be > 0
    (or null for a fixed kl_coef), got -1": the message's advice named kl_coef."""
    from corpus.plugins.ppo import PPOConfig

    path = tmp_path / "c.yaml"
    path.write_text("output: o\ndata: {prompts: p.jsonl}\nppo:\n  reward_fn: 'm:f'\n  kl_target: -1\n")
    with pytest.raises(ConfigError) as exc:
        load_plugin_config(PPOConfig, path, plugin="ppo", overrides=["ppo.kl_coef=0.1"])
    assert exc.value.errors == [f"{path}:5: ppo: kl_target must be > 0 (or null for a fixed kl_coef), got -1"]


def test_a_check_of_several_keys_is_blamed_on_the_one_given_by_set(tmp_path: Path):
    """Cutting the message at " must " lost the keys after it: "seq_len must be >= 8 and mixture_size >= 0"
    with `--set data.mixture_size=-1` was blamed on the file's line."""
    from corpus.plugins.sft import SFTConfig

    path = tmp_path / "s.yaml"
    path.write_text("output: o\nmodel: {from_pretrained: m}\ndata:\n  seq_len: 32\n  datasets: [{path: d.jsonl}]\n")
    with pytest.raises(ConfigError) as exc:
        load_plugin_config(SFTConfig, path, plugin="sft", overrides=["data.mixture_size=-1"])
    assert exc.value.errors[0].startswith("--set data.mixture_size: seq_len must be >= 8 and mixture_size >= 0")


def test_a_bad_value_from_set_is_blamed_on_set_by_the_cli(tmp_path: Path, shards, capsys):  # noqa: F811
    _, tokens = shards
    cfg = _pretrain_yaml(tmp_path / "p.yaml", tokens)
    rc, err = _train(capsys, "pretrain", str(cfg), "--set", "train.grad_accum=0", "--check")
    assert rc == 2 and err == "error: --set train.grad_accum: grad_accum must be >= 1, got 0", err
