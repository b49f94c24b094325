"""Sweeps: grid and random trials, ranked by validation loss, best config written out and runnable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from trainkit import shards  # noqa: F401 (fixture)

from corpus import plugins
from corpus.config import ConfigError
from corpus.plugins.sweep import SweepConfig, load_sweep, run_sweep, trial_params


def _base(tmp_path: Path, tokens: Path) -> Path:
    base = tmp_path / "base.yaml"
    base.write_text(f"""\
output: out/base
data:
  train: {tokens}
  seq_len: 32
model: {{hidden_size: 32, layers: 2, heads: 4, intermediate_size: 64}}
samples: {{count: 0}}
train: {{lr: 1.0e-3, max_steps: 4, batch_size: 4, eval_every: 4, log_every: 2, progress: false, tensorboard: false}}
""")
    return base


def _sweep(tmp_path: Path, tokens: Path, body: str) -> dict:
    """Run a pretrain sweep of ``body`` (output, method, space) on the base config."""
    _base(tmp_path, tokens)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("plugin: pretrain\nbase: base.yaml\n" + body)
    return run_sweep(sweep)


def test_grid_sweep_ranks_and_writes_best(tmp_path: Path, shards):  # noqa: F811
    _, tokens = shards
    summary = _sweep(tmp_path, tokens, "output: out/sweep\nmethod: grid\n"
                     "space:\n  train.lr: [1.0e-5, 5.0e-3]\n  train.warmup_steps: [0]\n")
    trials = summary["trials"]
    assert [t["params"]["train.lr"] for t in trials] == [5e-3, 1e-5]  # ranked: the higher lr learns more in 4 steps
    assert trials[0]["best_val_loss"] < trials[1]["best_val_loss"]
    out = tmp_path / "out/sweep"
    assert json.loads((out / "sweep.json").read_text())["best"]["trial"] == 1
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["train"]["lr"] == 5e-3 and best["train"]["warmup_steps"] == 0
    cfg = plugins.load_config("pretrain", out / "best.yaml")  # the best config is a valid, runnable config
    assert cfg.data.train == str(tokens) and cfg.output == str(out / "best") and cfg.train.lr == 5e-3

    short = tmp_path / "short.yaml"  # `corpus train sweep --max-steps N`: every trial trains N steps
    short.write_text("plugin: pretrain\nbase: base.yaml\noutput: out/short\nspace:\n  train.lr: [1.0e-3]\n")
    assert [t["steps"] for t in run_sweep(short, max_steps=1)["trials"]] == [1]
    assert yaml.safe_load((tmp_path / "out/short/best.yaml").read_text())["train"]["max_steps"] == 4  # the base's
    # a quick look over finished trials: their resume refused (already past), every trial failed and the sweep
    # deleted best.yaml; now refused before any trial, naming them
    written = (out / "best.yaml").read_text()
    with pytest.raises(ConfigError) as exc:
        run_sweep(tmp_path / "sweep.yaml", max_steps=2)
    assert exc.value.errors == [f"{out} holds trials already past the steps asked (train.max_steps, --max-steps): "
                                "trial-000 at step 4 of 2; trial-001 at step 4 of 2: ask for at least as many steps, "
                                "or give this sweep another `output` for a shorter look"]
    assert (out / "best.yaml").read_text() == written


def test_a_diverged_trial_is_never_best(tmp_path: Path, shards):  # noqa: F811
    """A NaN trial came first (nan sorts as a number), best.yaml said "best validation loss nan" and
    sweep.json held a bare NaN."""
    _, tokens = shards
    summary = _sweep(tmp_path, tokens, "output: out/nan\n"
                     "space: {train.lr: [1.0e+4, 3.0e-3], train.max_steps: [6], train.eval_every: [3]}\n")
    assert summary["best"]["trial"] == 1 and summary["trials"][1]["best_val_loss"] is None
    assert "DivergedError: step" in summary["trials"][1]["error"]
    text = (tmp_path / "out/nan/sweep.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"sweep.json holds {c}"))["best"]["trial"] == 1
    assert "trial 1, best validation loss" in (tmp_path / "out/nan/best.yaml").read_text()


def test_a_sweep_into_another_sweeps_folder_is_refused_before_any_trial(tmp_path: Path, shards, capsys,  # noqa: F811
                                                                         monkeypatch):
    """A sweep run into another sweep's folder (another space) failed every trial on the old checkpoints
    (ResumeMismatchError, exit 1) and only then said so; it is now refused before any trial starts, naming
    the folder and what to do. The same sweep rerun still resumes its trials."""
    import corpus.plugins.sweep as sweep_mod
    from corpus.cli import main

    _, tokens = shards
    assert _sweep(tmp_path, tokens, "output: out/s\nspace: {train.lr: [1.0e-3], train.max_steps: [1]}\n")["best"]
    metrics = (tmp_path / "out/s/trial-000/metrics.jsonl").read_text()
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("plugin: pretrain\nbase: base.yaml\noutput: out/s\n"
                     "space: {train.lr: [2.0e-3], train.max_steps: [1]}\n")
    assert main(["train", "sweep", str(sweep), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'out/s'} holds another sweep's trials" in err and "trial-000 (train.lr)" in err
    assert "give this sweep another `output`, or delete that folder" in err and "Traceback" not in err
    assert (tmp_path / "out/s/trial-000/metrics.jsonl").read_text() == metrics  # no trial ran
    assert (tmp_path / "out/s/best.yaml").is_file()  # the folder's own sweep's, left as it was
    # the same sweep again: resumed (finished: nothing trained), the same best
    again = _sweep(tmp_path, tokens, "output: out/s\nspace: {train.lr: [1.0e-3], train.max_steps: [1]}\n")
    assert again["best"]["trial"] == 0 and again["trials"][0]["error"] is None
    assert (tmp_path / "out/s/trial-000/metrics.jsonl").read_text() == metrics
    # a sweep whose trials all fail finds no best and deletes none: the earlier best.yaml stays (sweep.json says
    # this run found none)
    written = (tmp_path / "out/s/best.yaml").read_text()
    monkeypatch.setattr(sweep_mod, "_run_inline", lambda *a: (_ for _ in ()).throw(RuntimeError("failed")))
    summary = _sweep(tmp_path, tokens, "output: out/s\nspace: {train.lr: [1.0e-3], train.max_steps: [1]}\n")
    assert summary["best"] is None and summary["trials"][0]["error"] == "RuntimeError: failed"
    assert (tmp_path / "out/s/best.yaml").read_text() == written
    # the command says why it exits 1 (it printed the trial's line and stopped)
    capsys.readouterr()
    assert main(["train", "sweep", str(tmp_path / "sweep.yaml"), "-q"]) == 1
    out, err = capsys.readouterr()
    assert "trial   0  val_loss failed" in out and "RuntimeError: failed" in out
    assert err.strip() == (f"error: no trial of the sweep finished with a validation loss: each one's error is above "
                           f"({tmp_path / 'out/s/sweep.json'} lists them); no best.yaml was written")


def test_random_space_is_seeded_and_checked(tmp_path: Path, shards):  # noqa: F811
    cfg = SweepConfig(plugin="sft", base="b.yaml", output="o", method="random", trials=5, seed=3,
                      space={"train.lr": {"log_uniform": [1e-5, 1e-2]}, "train.batch_size": [4, 8],
                             "train.epochs": {"int_uniform": [1, 3]}})
    a, b = trial_params(cfg), trial_params(cfg)
    assert a == b and len(a) == 5
    assert all(1e-5 <= p["train.lr"] <= 1e-2 and p["train.batch_size"] in (4, 8) and p["train.epochs"] in (1, 2, 3)
               for p in a)

    _, tokens = shards
    _base(tmp_path, tokens)
    sweep = tmp_path / "s.yaml"
    sweep.write_text("plugin: pretrain\nbase: base.yaml\noutput: o\nspace:\n  train.lrr: [1]\n"
                     "  train.warmup_steps: {int_uniform: [0, 3]}\n  train.batch_size: [0]\n")
    with pytest.raises(ConfigError) as exc:
        load_sweep(sweep)
    text = "\n".join(exc.value.errors)
    assert "s.yaml:5: space.train.lrr: not a key of the pretrain config" in text
    assert "space.train.warmup_steps: a distribution needs method: random" in text
    sweep.write_text("plugin: pretrain\nbase: base.yaml\noutput: o\nmethod: random\nspace:\n"
                     "  train.lr: {log_uniform: [0, 1.0e-3]}\n  train.epochs: {int_uniform: [1.5, 3]}\n")
    with pytest.raises(ConfigError) as exc:  # log(0) was "error: math domain error"
        load_sweep(sweep)
    assert exc.value.errors == [f"{sweep}:6: space.train.lr: log_uniform needs [low, high] with 0 < low <= high, got "
                                "[0, 0.001]", f"{sweep}:7: space.train.epochs: int_uniform needs whole numbers, got "
                                "[1.5, 3]"]
    sweep.write_text("plugin: pretrain\nbase: base.yaml\noutput: o\nparallel: 0\nspace:\n  train.lr: [1]\n")
    with pytest.raises(ConfigError) as exc:  # was "s.yaml:1: sweep: trials and parallel must be >= 1"
        load_sweep(sweep)
    assert exc.value.errors == [f"{sweep}:4: sweep: parallel must be a whole number >= 1, got 0"]
    sweep.write_text("plugin: pretrain\nbase: base.yaml\noutput: o\nspace:\n  train.batch_size: [0]\n")
    with pytest.raises(ConfigError, match="trial 0.*batch_size must be >= 1, got 0"):
        load_sweep(sweep)  # every trial's config is validated before any runs
    # and the inputs it names are there (a missing one said "ok: 2 trials" to --check): said once
    sweep.write_text("plugin: pretrain\nbase: base.yaml\noutput: o\nspace:\n  train.lr: [1.0e-3, 2.0e-3]\n"
                     "  data.tokenizer: [nowhere]\n")
    with pytest.raises(ConfigError) as exc:
        load_sweep(sweep)
    assert len(exc.value.errors) == 1 and exc.value.errors[0].endswith(
        f"data.tokenizer: {tmp_path / 'nowhere'} does not exist"), exc.value.errors


def test_parallel_trials_run_as_processes(tmp_path: Path, shards, monkeypatch):  # noqa: F811
    """The process pool (2 at a time, logs, failures) with a stand-in trial command: the real one,
    `python -m corpus.plugins.cli`, is what the DDP test launches under torchrun."""
    import sys

    import corpus.plugins.sweep as sweep_mod

    _, tokens = shards
    _base(tmp_path, tokens)
    fake = ("import json, pathlib, sys; out = pathlib.Path(sys.argv[1]); lr = float(sys.argv[2]); "
            "sys.exit(3) if lr > 1 else "
            "(out / 'result.json').write_text(json.dumps({'best_val_loss': lr, 'steps': 1}))")
    monkeypatch.setattr(sweep_mod, "_command",
                        lambda cfg, base, params, out: [sys.executable, "-c", fake, str(out), str(params["train.lr"])])
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("plugin: pretrain\nbase: base.yaml\noutput: out/par\nparallel: 2\n"
                     "space:\n  train.lr: [0.3, 5.0, 0.1]\n")
    summary = run_sweep(sweep)
    assert [t["params"]["train.lr"] for t in summary["trials"]] == [0.1, 0.3, 5.0]
    assert summary["trials"][-1]["error"].startswith("exit 3") and summary["best"]["trial"] == 2
    assert yaml.safe_load((tmp_path / "out/par/best.yaml").read_text())["train"]["lr"] == 0.1


def test_trial_processes_say_errors_in_one_line(tmp_path: Path, shards):  # noqa: F811
    """`python -m corpus.plugins.cli` (each trial of a parallel sweep, torchrun's ranks) printed a plain
    ValueError as a full traceback where `corpus train` says `error: ...`; a parallel sweep's failed trial
    then showed the traceback's last 500 characters. Both say the one-line error now."""
    import subprocess
    import sys

    from trainkit import make_tokenizer

    _, tokens = shards
    base = _base(tmp_path, tokens)
    other = make_tokenizer(tmp_path / "other", vocab_size=400)
    base.write_text(base.read_text().replace(f"  train: {tokens}\n", f"  train: {tokens}\n  tokenizer: {other}\n"))
    says = "the shards were tokenized with"
    proc = subprocess.run([sys.executable, "-m", "corpus.plugins.cli", "pretrain", str(base), "-q",
                           "--output", str(tmp_path / "one")], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and says in errors[0] and "point data.tokenizer at the shards' tokenizer" in errors[0]
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("plugin: pretrain\nbase: base.yaml\noutput: out/par\nparallel: 2\n"
                     "space: {train.lr: [1.0e-3, 2.0e-3]}\n")
    summary = run_sweep(sweep)
    assert summary["best"] is None
    for t in summary["trials"]:
        assert t["error"].startswith(f"exit 2: error: {tokens / 'train'}: {says}") and "Traceback" not in t["error"]
