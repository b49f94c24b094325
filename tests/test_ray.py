"""The pipeline on Ray (corpus/ray_executor.py), on the session's local cluster of 2 CPUs: the same output as
the local executor, resume, a killed worker retried, and the YAML / CLI / Python entry points."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pytest
from helpers import make_jsonl_corpus, run_cli

from corpus import InputSpec, MapOperator, Pipeline
from corpus.config import ConfigError, load_config
from corpus.errors import WorkerDiedError
from corpus.executor import LocalExecutor
from corpus.ray_executor import RayExecutor
from corpus.stages.clean import NormalizeText
from corpus.stages.dedup import ExactDedup
from corpus.stages.dedup_lines import LineDedup
from corpus.stages.filter import LengthFilter
from corpus.stages.minhash import MinHashDedup
from corpus.stages.profile import Profile

pytestmark = pytest.mark.slow


def _ops(*extra) -> list:
    return [Profile(), NormalizeText(), LengthFilter(min_chars=10), *extra, ExactDedup(), LineDedup(),
            MinHashDedup(), Profile()]


@pytest.fixture(scope="module")
def corpus_in(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ray") / "in"
    make_jsonl_corpus(folder, files=3, docs_per_file=150)
    with open(folder / "part-000.jsonl", "a") as f:
        f.write('{"text": "a broken record\n{"no_text": 1}\n\n')  # quarantined, and a blank line
    return folder


def _inputs(folder: Path) -> list[InputSpec]:
    return [InputSpec(source="web", path=str(folder))]


def _files(out: Path) -> dict[str, str]:
    """Every published file's sha256, by path (data, rejected, quarantine)."""
    m = json.loads((out / "manifest.json").read_bytes())
    return {e["path"]: e["sha256"] for key in ("shards", "rejected", "quarantine") for e in m[key]}


@pytest.fixture(scope="module")
def local_out(corpus_in: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "out"
    LocalExecutor(workers=2, quiet=True).run(_ops(), _inputs(corpus_in), out, shard_max_bytes=16 << 10)
    return out


def test_ray_gives_the_local_executors_output(ray_cluster, corpus_in: Path, local_out: Path, tmp_path: Path):
    res = RayExecutor(quiet=True).run(_ops(), _inputs(corpus_in), tmp_path / "out", shard_max_bytes=16 << 10)
    files = _files(tmp_path / "out")
    assert len([f for f in files if f.startswith("data/")]) > 3  # several shards, so several tasks per stage
    assert any(f.startswith("rejected/") for f in files) and any(f.startswith("quarantine/") for f in files)
    assert files == _files(local_out)
    assert all(b["ok"] for b in res.balance)
    assert _config(tmp_path / "out")["executor"] == "ray"
    assert _units(tmp_path / "out") == _units(local_out)  # the catalog is filled as locally


def _config(out: Path) -> dict:
    with duckdb.connect(str(out / "catalog.duckdb"), read_only=True) as con:
        return json.loads(con.execute("SELECT config FROM runs ORDER BY started DESC LIMIT 1").fetchone()[0])


def _units(out: Path) -> list[tuple]:
    """Per stage and unit: documents and bytes in and out (the catalog's unit counters)."""
    with duckdb.connect(str(out / "catalog.duckdb"), read_only=True) as con:
        return con.execute("SELECT stage, unit, source, docs_in, docs_out, bytes_in, bytes_out FROM unit_stats "
                           "ORDER BY ALL").fetchall()


@dataclass
class FailOnce(MapOperator):
    """Raises on its first shard while `flag` does not exist (an interrupted run), then passes through."""

    flag: str = ""
    name = "fail_once"

    def map(self, df: pl.DataFrame) -> pl.DataFrame:
        if not Path(self.flag).exists():
            Path(self.flag).touch()
            raise ValueError("stopped on purpose")
        return df


def _kept(out: Path) -> dict[str, str]:
    """The published corpus and quarantine (rejected/ folders are named by stage position)."""
    return {p: h for p, h in _files(out).items() if not p.startswith("rejected/")}


def test_ray_run_resumes_and_surfaces_the_units_own_error(ray_cluster, corpus_in: Path, local_out: Path,
                                                          tmp_path: Path):
    flag = tmp_path / "flag"
    ops = _ops(FailOnce(flag=str(flag)))
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="stopped on purpose") as raised:  # the operator's error, not Ray's wrapping
        RayExecutor(quiet=True).run(ops, _inputs(corpus_in), out, shard_max_bytes=16 << 10)
    # which stage and which unit, as under the process pool (the unit was left out on Ray)
    notes = raised.value.__notes__
    assert any(n.startswith("(in stage ") for n in notes), notes
    assert any(n.startswith("(in a worker process, running shard ") for n in notes), notes
    reads = sorted((out / "work").glob("00-read/done/*.json"))
    assert reads  # reading finished before the failure: kept
    before = {p: p.stat().st_mtime_ns for p in reads}
    RayExecutor(quiet=True).run(ops, _inputs(corpus_in), out, shard_max_bytes=16 << 10)
    assert {p: p.stat().st_mtime_ns for p in reads} == before  # resumed with the same markers, not reread
    assert _kept(out) == _kept(local_out)  # FailOnce passes documents through: the same corpus


@dataclass
class KillOnce(MapOperator):
    """SIGKILLs the worker process running it on its first shard (once: the flag is taken atomically)."""

    flag: str = ""
    name = "kill_once"

    def map(self, df: pl.DataFrame) -> pl.DataFrame:
        try:
            fd = os.open(self.flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return df
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)
        return df


def test_a_killed_ray_worker_is_retried_with_the_same_output(ray_cluster, corpus_in: Path, local_out: Path,
                                                            tmp_path: Path):
    flag = tmp_path / "killed"
    res = RayExecutor(quiet=True).run(_ops(KillOnce(flag=str(flag))), _inputs(corpus_in), tmp_path / "out",
                                      shard_max_bytes=16 << 10)
    assert flag.exists()  # a worker was killed mid-task
    pid = int(flag.read_text())
    assert pid != os.getpid()  # ... a Ray worker, not this process
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert all(b["ok"] for b in res.balance)
    assert _kept(tmp_path / "out") == _kept(local_out)  # as a run without the kill (KillOnce passes through)


def test_a_worker_that_dies_past_its_retries_is_named_in_one_line(ray_cluster, corpus_in: Path, tmp_path: Path):
    flag = tmp_path / "killed"
    ex = RayExecutor(quiet=True, max_retries=0, report=False)
    with pytest.raises(WorkerDiedError) as err:
        ex.run([KillOnce(flag=str(flag))], _inputs(corpus_in), tmp_path / "out", shard_max_bytes=16 << 10)
    msg = str(err.value)
    assert "\n" not in msg and "through 01-kill_once" in msg and "tried once" in msg
    assert "rerun the same command to resume" in msg


def test_yaml_and_cli_select_the_ray_executor(ray_cluster, corpus_in: Path, tmp_path: Path, capsys):
    from corpus.cli import main

    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"output: {tmp_path / 'out'}\nexecutor: ray\nray:\n  memory_per_task: 512MB\n"
                   f"inputs:\n  - source: web\n    path: {corpus_in}\npipeline:\n  - op: exact_dedup\n")
    loaded = load_config(cfg)
    assert loaded.executor == "ray" and loaded.ray == {"memory_per_task": 512 << 20}
    assert main(["run", str(cfg), "-q"]) == 0
    assert _config(tmp_path / "out")["executor"] == "ray"
    # --executor local on the command line wins over the config's
    assert main(["run", str(cfg), "-q", "--executor", "local", "-o", str(tmp_path / "local")]) == 0
    assert _files(tmp_path / "out") == _files(tmp_path / "local")


def test_the_cli_starts_and_stops_a_local_cluster_of_its_own(corpus_in: Path, local_out: Path, tmp_path: Path):
    """`corpus run --executor ray` from a shell: no cluster yet, so it starts one of -w CPUs and stops it."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"output: {tmp_path / 'out'}\ninputs:\n  - source: web\n    path: {corpus_in}\n"
                   "shard_max_bytes: 16KB\npipeline:\n" + "".join(f"  - {json.dumps({'op': op.name, **op.params()})}\n"
                                                          for op in _ops()))
    env = {"RAY_ADDRESS": ""}  # (an address in the environment would join that cluster instead)
    res = run_cli("run", str(cfg), "-q", "--executor", "ray", "-w", "2", env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert _files(tmp_path / "out") == _files(local_out)
    bad = run_cli("run", str(cfg), "-q", "--address", "auto", env=env)
    assert bad.returncode == 2 and "error: --address names a Ray cluster: use it with --executor ray" in bad.stderr


def test_python_pipeline_takes_an_executor(ray_cluster, corpus_in: Path, tmp_path: Path):
    res = Pipeline([ExactDedup()]).run(inputs=_inputs(corpus_in), output=tmp_path / "out",
                                       executor=RayExecutor(quiet=True))
    assert res.manifest["docs"] > 0


def test_bad_executor_settings_are_config_errors(tmp_path: Path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("output: out\nexecutor: spark\nray:\n  adress: auto\ninputs: []\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    text = "\n".join(err.value.errors)
    assert "executor: expected one of local, ray, got 'spark'" in text
    assert "ray.adress: unknown key (did you mean 'address'?)" in text
    with pytest.raises(ValueError, match="cpus_per_task must be positive"):
        RayExecutor(cpus_per_task=0)


def test_a_task_no_node_can_hold_is_refused_not_left_waiting():
    from corpus.ray_executor import fits

    fits(1, 1 << 30, [{"CPU": 2.0, "memory": 4.0 * 2**30}])
    with pytest.raises(ValueError, match=r"no node of the Ray cluster can run a task of 1 CPUs and 8.00 GiB .*"
                                         r"largest has 2 CPUs and 4.00 GiB.*lower ray.memory_per_task"):
        fits(1, 8 << 30, [{"CPU": 2.0, "memory": 4.0 * 2**30}, {"CPU": 8.0, "memory": 1.0 * 2**30}])
    with pytest.raises(ValueError, match="task of 4 CPUs"):
        fits(4, 1 << 30, [{"CPU": 2.0, "memory": 4.0 * 2**30}])
