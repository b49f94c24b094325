"""One training run per folder: `corpus train` takes the same lock as `corpus run` (sweeps: the sweep
folder and each trial folder); the second run fails at once with one error line, writing nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, run_cli
from trainkit import shards  # noqa: F401 (fixture)

from corpus import plugins
from corpus.lock import LockedError, RunLock
from corpus.plugins.sweep import run_sweep


def _config(tmp_path: Path, tokens: Path, out: Path, steps: int = 2) -> Path:
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"output: {out}\nmodel: {{hidden_size: 32, layers: 2, heads: 4, intermediate_size: 64}}\n"
                   f"data: {{train: {tokens}, seq_len: 32}}\nsamples: {{count: 0}}\n"
                   f"train: {{max_steps: {steps}, batch_size: 4, eval_every: 0, save_every: 1, progress: false, "
                   "tensorboard: false}\n")
    return cfg


def test_two_concurrent_pretrain_runs_into_one_folder(tmp_path: Path, shards):  # noqa: F811
    _, tokens = shards
    out = tmp_path / "run"
    cfg = _config(tmp_path, tokens, out, steps=100_000)  # the first run is still training when the second starts
    first = subprocess.Popen([sys.executable, "-m", "corpus", "train", "pretrain", str(cfg), "--quiet"],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ((out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").stat().st_size):  # it is training
            if first.poll() is not None:
                pytest.fail(f"the first run ended: {first.communicate()[1][-2000:]}")
            assert time.monotonic() < deadline, "the first run did not start training in 120 s"
            time.sleep(0.1)
        second = run_cli("train", "pretrain", str(cfg), "--quiet", "--set", "train.max_steps=2")
        assert first.poll() is None  # the first run was not disturbed
    finally:
        first.terminate()
        first.wait(timeout=60)
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert second.stderr.strip().splitlines() == [f"error: another run (pid {first.pid}) is writing {out}; wait for "
                                                  "it or stop it first"]


def test_a_locked_run_folder_is_refused_before_any_write(tmp_path: Path, shards):  # noqa: F811
    _, tokens = shards
    out = tmp_path / "run"
    cfg = _config(tmp_path, tokens, out)
    with RunLock(out):
        res = run_cli("train", "pretrain", str(cfg))
        with pytest.raises(LockedError, match=f"another run \\(pid {os.getpid()}\\) is writing {out}"):
            plugins.run("pretrain", cfg)
    assert res.returncode == 2 and res.stderr.strip().splitlines()[-1].startswith(f"error: another run (pid "
                                                                                 f"{os.getpid()}) is writing {out}")
    assert sorted(p.name for p in out.iterdir()) == [".lock"]
    assert plugins.run("pretrain", cfg).steps == 2  # released: the same run now works


def test_sweeps_lock_their_folder_and_each_trial(tmp_path: Path, shards):  # noqa: F811
    _, tokens = shards
    base = _config(tmp_path, tokens, tmp_path / "unused")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"plugin: pretrain\nbase: {base.name}\noutput: out\nspace:\n  train.lr: [1.0e-3, 2.0e-3]\n")
    out = tmp_path / "out"
    with RunLock(out), pytest.raises(LockedError, match="another run"):
        run_sweep(sweep)
    with RunLock(out / "trial-001"):
        summary = run_sweep(sweep)
    by_trial = {t["trial"]: t for t in summary["trials"]}
    assert by_trial[0]["error"] is None and by_trial[0]["steps"] == 2
    assert by_trial[1]["error"].startswith(f"LockedError: another run (pid {os.getpid()}) is writing "
                                           f"{out / 'trial-001'}")
    assert sorted(p.name for p in (out / "trial-001").iterdir()) == [".lock"]


def test_a_run_never_replaces_files_it_did_not_write(tmp_path: Path, shards):  # noqa: F811
    """`corpus train` deleted or overwrote what it found in its output folder (a checkpoint of one's own,
    TensorBoard events, notes in final/, a report.md) and trained into token shards or a corpus folder."""
    from corpus.owner import ForeignFilesError
    from corpus.plugins.base import load_plugin_config

    tok, tokens = shards

    def run(out: Path, *sets: str):
        return plugins.run("pretrain", load_plugin_config(plugins.get("pretrain").config_class,
                                                          _config(tmp_path, tokens, out), overrides=list(sets)))

    for rel in ("checkpoints/my_model.pt", "tensorboard/events.out", "report.md"):
        out = tmp_path / rel.replace("/", "_")
        (out / rel).parent.mkdir(parents=True)
        (out / rel).write_text("mine")
        with pytest.raises(ForeignFilesError, match=f"holds files no training run wrote.*: {rel}; move them out"):
            run(out)
        assert (out / rel).read_text() == "mine"
    out = tmp_path / "run"
    run(out)
    (out / "final/notes.txt").write_text("mine")
    (out / "checkpoints/step-00000002/extra.bin").write_text("mine")
    with pytest.raises(ForeignFilesError, match="checkpoints/step-00000002/extra.bin, final/notes.txt; move"):
        run(out, "train.resume=false")
    assert (out / "final/notes.txt").is_file()
    (out / "final/notes.txt").unlink()
    (out / "checkpoints/step-00000002/extra.bin").unlink()
    run(out, "train.max_steps=3")  # the run's own files are its to replace
    corpus, made = tmp_path / "corpus", tmp_path / "tokens"
    for folder, marker in ((corpus, ".corpusforge"), (made, "tokenize.json")):  # as `corpus run`, `tokenize` do
        folder.mkdir()
        (folder / marker).write_text("{}")
    for bad, says in ((made, "holds token shards"), (tok, "holds a tokenizer"), (corpus / "sft", "a corpus")):
        with pytest.raises(ForeignFilesError, match=f"is another command's output.*{says}"):
            run(bad)
    assert not (tok / ".lock").exists()


def test_a_fresh_run_without_validation_drops_the_old_best(tmp_path: Path, shards):  # noqa: F811
    _, tokens = shards
    out = tmp_path / "run"
    cfg = _config(tmp_path, tokens, out)
    conf = plugins.load_config("pretrain", cfg, overrides=["train.eval_every=1"])
    assert plugins.run("pretrain", conf).best_dir is not None and (out / "best").is_dir()
    conf = plugins.load_config("pretrain", cfg, overrides=[f"data.train={tokens / 'train'}", "train.resume=false"])
    assert plugins.run("pretrain", conf).best_dir is None and not (out / "best").exists()


def test_a_sigkilled_run_with_data_workers_frees_its_lock(tmp_path: Path, shards):  # noqa: F811
    """Forked DataLoader workers inherit the run's lock: orphaned by a SIGKILL they held it for about 5 s
    (until their watchdog noticed) and an immediate rerun was refused, naming the dead run's pid."""
    import signal

    _, tokens = shards
    out = tmp_path / "run"
    cfg = _config(tmp_path, tokens, out, steps=100_000)
    first = subprocess.Popen([sys.executable, "-m", "corpus", "train", "pretrain", str(cfg), "--quiet", "--set",
                              "train.data_workers=1"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not ((out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").stat().st_size):  # workers started
        assert first.poll() is None, first.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the run did not start training in 120 s"
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    deadline = time.monotonic() + 1.5  # the worker's watchdog alone took 5 s
    while True:
        try:
            with RunLock(out):
                break
        except LockedError:
            assert time.monotonic() < deadline, "a worker of the killed run still holds the lock"
            time.sleep(0.05)
