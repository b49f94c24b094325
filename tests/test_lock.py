"""One run at a time per output folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import make_jsonl_corpus, run_cli, write_config

from corpus.lock import LockedError, RunLock


def test_second_run_on_locked_folder_fails_clearly(tmp_path: Path):
    make_jsonl_corpus(tmp_path / "in", files=1, docs_per_file=10)
    cfg = write_config(tmp_path / "c.yaml", f"output: {tmp_path / 'out'}\ninputs:\n  - source: a\n    path: in\n")
    with RunLock(tmp_path / "out"):
        res = run_cli("run", str(cfg), "--quiet")
        assert res.returncode == 2
        assert "another run" in res.stderr and "Traceback" not in res.stderr
        assert not (tmp_path / "out" / "data").exists()
    # released: the same command now works
    res = run_cli("run", str(cfg), "--quiet")
    assert res.returncode == 0, res.stderr


def test_lock_in_process(tmp_path: Path):
    with RunLock(tmp_path):
        with pytest.raises(LockedError):
            with RunLock(tmp_path):
                pass
    with RunLock(tmp_path):
        pass


def test_nothing_locks_a_folder_a_run_rewrites(tmp_path: Path):
    """Training, tokenizing or anything else that locks its output folder refuses one inside a run output's
    data/, work/, rejected/ or quarantine/: its files there would stop the next run (and fail the corpus's
    verification). The output folder itself, and other folders in it, stay usable."""
    from corpus import Pipeline

    make_jsonl_corpus(tmp_path / "in", files=1, docs_per_file=5)
    out = tmp_path / "out"
    Pipeline([]).run(tmp_path / "in", out, workers=1, quiet=True)
    for inside in (out / "data", out / "work" / "tokens", out / "quarantine"):
        with pytest.raises(ValueError, match=r"the runs of the output folder .*/out rewrite its \w+/ folder"):
            with RunLock(inside):
                pass
        assert not (inside / ".lock").exists()
    with RunLock(out / "models"):  # beside the managed folders: the owner check lets it be
        pass
    assert run_cli("verify", str(out)).returncode == 0
    assert Pipeline([]).run(tmp_path / "in", out, workers=1, quiet=True).balance[0]["kept"] == 5


def test_commands_that_write_without_a_lock_refuse_a_folder_a_run_rewrites(tmp_path: Path):
    """The same rule for what writes a file or a folder without locking it: a tokenizer, a profile, a
    suite, merged shards, a quality model, exported labels. `corpus tokenizer train out --out out/data/tok`
    left the corpus failing its verification and its next run refusing to start."""
    import polars as pl

    from corpus import Pipeline
    from corpus.plugins.annotate.export import export
    from corpus.shards import write_documents
    from corpus.stages.classifier import TrainConfig, train
    from corpus.stages.profile import profile_input
    from corpus.stages.tokenizer import train_tokenizer
    from corpus.validation.suites import write_suite

    make_jsonl_corpus(tmp_path / "in", files=1, docs_per_file=5)
    out = tmp_path / "out"
    Pipeline([]).run(tmp_path / "in", out, workers=1, quiet=True)
    write_documents(tmp_path / "s", [[1, 2]], vocab_size=10)
    writers = {
        "tokenizer": lambda dest: train_tokenizer(out, dest, vocab_size=1000),
        "profile": lambda dest: profile_input(tmp_path / "in", dest, workers=1),
        "suite": lambda dest: write_suite(dest / "s.json", "s", "contract", []),
        "merged shards": lambda dest: _cli_error(run_cli("shards", "merge", str(tmp_path / "s"), "--out",
                                                         str(dest / "m"))),
        "quality model": lambda dest: train(pl.DataFrame({"text": ["a", "b"], "label": ["x", "y"]}), dest,
                                            TrainConfig()),
        "labels": lambda dest: export(None, dest / "labels.jsonl"),  # type: ignore[arg-type]
    }
    for what, write in writers.items():
        for inside in (out / "data" / "x", out / "rejected"):
            with pytest.raises(ValueError, match=r"the runs of the output folder .*/out rewrite its \w+/ folder"):
                write(inside)
            assert not (out / "data" / "x").exists(), what
    assert run_cli("verify", str(out)).returncode == 0
    with pytest.raises(ValueError, match="vocab_size 262 leaves no room for learned tokens: the byte alphabet and "
                                         "the 6 special tokens take 262"):
        train_tokenizer(out, tmp_path / "tok", vocab_size=262)
    with pytest.raises(ValueError, match="vocab_size 99,999,999,999 is more than token ids can hold"):
        train_tokenizer(out, tmp_path / "tok", vocab_size=99_999_999_999)  # was an OverflowError traceback
    from corpus.stages.tokenize import tokenize_shards

    with pytest.raises(ValueError, match="no documents to tokenize: the corpus holds none"):
        tokenize_shards([], tmp_path / "tok", tmp_path / "tokens")  # said "merge needs at least one shard set"


def _cli_error(res) -> None:  # noqa: ANN001
    if res.returncode == 2 and res.stderr.startswith("error: "):
        raise ValueError(res.stderr)


def test_the_lock_says_whether_its_holder_lives(tmp_path: Path):
    """`corpus status` of a SIGKILLed run said "running": the lock names its holder's pid."""
    import subprocess
    import sys

    from corpus.lock import holder_alive

    assert holder_alive(tmp_path) is None
    with RunLock(tmp_path):
        assert holder_alive(tmp_path) is True
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / ".lock").write_text(gone.stdout.strip())
    assert holder_alive(tmp_path) is False
