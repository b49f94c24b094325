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
