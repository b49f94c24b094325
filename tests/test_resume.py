"""Resumable runs: a SIGKILLed run, restarted, gives exactly the output of an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import ROOT, make_jsonl_corpus, run_cli, tree_digest, write_config

from corpus.catalog import Catalog

CONFIG = """\
workers: 2
shard_max_bytes: 40KB
inputs:
  - source: web
    path: {inp}
pipeline:
  - op: normalize_text
  - op: length_filter
    min_chars: {min_chars}
  - op: exact_dedup
"""


def _config(tmp_path: Path, min_chars: int = 10) -> Path:
    return write_config(tmp_path / f"c{min_chars}.yaml", CONFIG.format(inp=tmp_path / "in", min_chars=min_chars))


def _outputs(out: Path) -> dict[str, str]:
    return {**tree_digest(out / "data"), **{f"rejected/{k}": v for k, v in tree_digest(out / "rejected").items()}}


def test_sigkill_then_rerun_equals_clean_run(tmp_path: Path):
    make_jsonl_corpus(tmp_path / "in", files=24, docs_per_file=400, seed=3)
    cfg = _config(tmp_path)
    t0 = time.perf_counter()
    clean = run_cli("run", str(cfg), "-o", str(tmp_path / "clean"), "--quiet")
    duration = time.perf_counter() - t0
    assert clean.returncode == 0, clean.stderr

    rng = random.Random()  # a different kill point each time the suite runs
    killed = tmp_path / "killed"
    for attempt in range(2):
        delay = rng.uniform(0.25, 0.6) * duration
        proc = subprocess.Popen([sys.executable, "-m", "corpus", "run", str(cfg), "-o", str(killed), "--quiet"],
                                cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)  # the main process only: its workers must die with it
        proc.wait()
        print(f"attempt {attempt}: killed after {delay:.2f}s of a {duration:.2f}s run")
        if attempt == 0:  # the kill really interrupted a run: it never recorded an end
            assert not (killed / "manifest.json").exists()

    status = run_cli("status", str(killed))  # a killed run's progress is readable
    assert status.returncode == 0, status.stderr
    assert "00-read" in status.stdout and "units done" in status.stdout
    if not (killed / "manifest.json").exists():  # killed before its end: not shown as running (it was)
        assert "stopped (its process is gone: killed or crashed; rerun the same command to resume)" in status.stdout

    resumed = run_cli("run", str(cfg), "-o", str(killed), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert _outputs(killed) == _outputs(tmp_path / "clean")
    assert _outputs(killed)  # not vacuous: there are shards and rejected rows
    cat = Catalog(killed / "catalog.duckdb", create=False)
    assert cat.query("SELECT status FROM runs ORDER BY started DESC LIMIT 1") == [("ok",)]


def test_rerun_skips_finished_work(tmp_path: Path):
    make_jsonl_corpus(tmp_path / "in", files=4, docs_per_file=100)
    cfg = _config(tmp_path)
    assert run_cli("run", str(cfg), "-o", str(tmp_path / "out"), "--quiet").returncode == 0
    before = _outputs(tmp_path / "out")
    assert run_cli("run", str(cfg), "-o", str(tmp_path / "out"), "--quiet").returncode == 0
    assert _outputs(tmp_path / "out") == before
    cat = Catalog(tmp_path / "out" / "catalog.duckdb", create=False)
    rows = cat.query("SELECT bool_and(resumed), count(*) FROM unit_stats WHERE run_id = ?", [cat.latest_run()])
    assert rows[0][0] is True and rows[0][1] > 0


def test_changed_config_reruns_only_later_stages(tmp_path: Path):
    make_jsonl_corpus(tmp_path / "in", files=3, docs_per_file=100)
    out = tmp_path / "out"
    assert run_cli("run", str(_config(tmp_path, 10)), "-o", str(out), "--quiet").returncode == 0
    assert run_cli("run", str(_config(tmp_path, 40)), "-o", str(out), "--quiet").returncode == 0
    cat = Catalog(out / "catalog.duckdb", create=False)
    rows = dict(cat.query("SELECT stage, bool_and(resumed) FROM unit_stats WHERE run_id = ? GROUP BY stage",
                          [cat.latest_run()]))
    assert rows == {"00-read": True, "01-normalize_text": True, "02-length_filter": False, "03-exact_dedup": False}
    # and the result equals a fresh run of the new config
    assert run_cli("run", str(_config(tmp_path, 40)), "-o", str(tmp_path / "fresh"), "--quiet").returncode == 0
    assert _outputs(out) == _outputs(tmp_path / "fresh")
    # stage folders of the old config are gone
    assert len(list((out / "work").glob("02-length_filter-*"))) == 1
