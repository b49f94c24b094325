"""Operational failures end in one `error:` line naming the cause and the file, never a traceback.

The conditions are real: a tmpfs mounted small or read-only in a private mount namespace (unshare, so
nothing leaks when a test dies), and a worker process that is SIGKILLed the way the OOM killer does it."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import ROOT, make_jsonl_corpus, run_cli, write_config


def _can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


needs_mount = pytest.mark.skipif(not _can_mount(), reason="needs unshare and mount (root in a container)")


def _on_tmpfs(mnt: Path, options: str, script: str, timeout: int = 240) -> subprocess.CompletedProcess:
    """Run `script` (sh, with $CORPUS = the CLI) with a private tmpfs mounted on `mnt`."""
    mnt.mkdir(parents=True, exist_ok=True)
    corpus = f"{sys.executable} -m corpus"
    body = f"mount -t tmpfs -o {options} tmpfs {mnt} && CORPUS='{corpus}' && {script}"
    return subprocess.run(["unshare", "--mount", "sh", "-c", body], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def _one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert "Traceback" not in stderr, stderr
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


@needs_mount
def test_read_only_output_folder(tmp_path: Path):
    make_jsonl_corpus(tmp_path / "in", files=1, docs_per_file=50)
    cfg = write_config(tmp_path / "c.yaml", f"inputs:\n  - source: web\n    path: {tmp_path / 'in'}\n")
    mnt = tmp_path / "mnt"
    # a finished run, then the folder turns read-only (a full disk remounted, a read-only share)
    res = _on_tmpfs(mnt, "size=8m", f"$CORPUS run {cfg} -o {mnt}/out -q && mount -o remount,ro {mnt} && "
                                    f"$CORPUS run {cfg} -o {mnt}/out -q; echo rc=$? >&2; "
                                    f"$CORPUS run {cfg} -o {mnt}/new -q")
    first, second = res.stderr.split("rc=2")
    line = _one_error_line(first)
    assert "read-only file system" in line and f"{mnt}/out" in line, line
    line = _one_error_line(second)
    assert "read-only file system" in line and f"{mnt}/new" in line, line
    assert res.returncode == 2
    # A file written whole, then renamed into place, is named as asked: the temp file's cleanup raised EROFS
    # too, and that error ("{mnt}/.tmp-PID-s.json") hid the first one.
    res = _on_tmpfs(mnt, "size=8m", f"$CORPUS run {cfg} -o {mnt}/out -q && mount -o remount,ro {mnt} && "
                                    f"$CORPUS validate suggest {mnt}/out --out {mnt}/s.json")
    assert _one_error_line(res.stderr) == f"error: {mnt}/s.json is on a read-only file system; choose a writable " \
                                          "output folder"


@needs_mount
def test_disk_full_names_the_first_failure(tmp_path: Path):
    rng = random.Random(0)
    (tmp_path / "in").mkdir()
    with open(tmp_path / "in" / "big.jsonl", "w") as fh:  # incompressible text: 6 MB of shards on a 2 MB disk
        for i in range(3000):
            fh.write(json.dumps({"text": rng.randbytes(1000).hex(), "n": i}) + "\n")
    cfg = write_config(tmp_path / "c.yaml", f"workers: 1\nshard_max_bytes: 1MB\ninputs:\n  - source: web\n"
                                            f"    path: {tmp_path / 'in'}\n")
    mnt = tmp_path / "mnt"
    res = _on_tmpfs(mnt, "size=2m", f"$CORPUS run {cfg} -o {mnt}/out -q")
    assert res.returncode == 2
    line = _one_error_line(res.stderr)
    assert line.startswith(f"error: no space left on device writing {mnt}/out/"), line
    assert "rerun the same command to resume" in line and "WAL" not in res.stderr and "duckdb" not in line.lower()
    # the run catalog can be what fills the disk: DuckDB's error is worded like the OSError it was
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent(f"""
        import duckdb
        from corpus.errors import describe_duckdb_error
        con = duckdb.connect("{mnt}/catalog.duckdb")
        con.execute("CREATE TABLE t (s VARCHAR)")
        try:
            con.execute("INSERT INTO t SELECT repeat('x', 1000) || range FROM range(100000)")
        except duckdb.Error as exc:
            print(describe_duckdb_error(exc))
    """))
    res = _on_tmpfs(mnt, "size=64k", f"{sys.executable} {probe}")
    assert res.stdout.startswith(f"no space left on device writing {mnt}/catalog.duckdb"), res.stdout + res.stderr



@needs_mount
def test_disk_full_in_a_dedup_fit_names_the_file(tmp_path: Path):
    """The minhash and exact dedup fits keep their intermediate arrays in .npy files: a full disk there said
    "error: 20224 requested and 2016 written" (numpy's words, no file, no cause), and left the temp file."""
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent(f"""
        import numpy as np
        from pathlib import Path
        from corpus.stages.dedup_index import save_npy
        try:
            save_npy(Path("{tmp_path / 'mnt'}") / "sig" / "a.npy", np.arange(200_000, dtype=np.uint64))
        except OSError as exc:
            print(exc.errno, exc.filename, sorted(p.name for p in Path(exc.filename).parent.iterdir()))
    """))
    res = _on_tmpfs(tmp_path / "mnt", "size=512k", f"{sys.executable} {probe}")
    assert res.stdout.strip() == f"28 {tmp_path / 'mnt' / 'sig' / 'a.npy'} []", res.stdout + res.stderr


@needs_mount
def test_disk_full_in_profile_and_token_shards_names_the_file(tmp_path: Path):
    """`corpus profile` said "[Errno 28] Error writing bytes to file" or ended in a polars ComputeError
    traceback, and a token shard's write "[Errno 28] No space left on device": no file named. A profile
    starts over when rerun, so it does not promise to resume."""
    rng = random.Random(1)
    (tmp_path / "in").mkdir()
    with open(tmp_path / "in" / "big.jsonl", "w") as fh:
        for i in range(3000):
            fh.write(json.dumps({"text": rng.randbytes(1000).hex(), "n": i}) + "\n")
    mnt = tmp_path / "mnt"
    res = _on_tmpfs(mnt, "size=2m", f"$CORPUS profile {tmp_path / 'in'} -o {mnt}/prof -w 1")
    assert res.returncode == 2
    line = _one_error_line(res.stderr)
    assert line.startswith(f"error: no space left on device writing {mnt}/prof/"), line
    assert line.endswith("then rerun the command"), line
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent(f"""
        from corpus.errors import describe_os_error
        from corpus.shards import write_documents
        try:
            write_documents("{mnt}/tok/train", [list(range(1000))] * 200, vocab_size=50000)
        except OSError as exc:
            print(describe_os_error(exc))
    """))
    res = _on_tmpfs(mnt, "size=64k", f"{sys.executable} {probe}")
    assert res.stdout.startswith(f"no space left on device writing {mnt}/tok/train.bin;"), res.stdout + res.stderr
    # A DuckDB file that cannot be made on a full disk is not "damaged" (the catalog, an annotation project)
    probe.write_text(textwrap.dedent(f"""
        from pathlib import Path
        from corpus.catalog import Catalog
        from corpus.plugins.annotate.store import Store
        for make in (lambda: Catalog(Path("{mnt}/out/catalog.duckdb")), lambda: Store(Path("{mnt}/proj"))):
            try:
                make()
            except OSError as exc:
                print(type(exc).__name__, exc.filename)
    """))
    res = _on_tmpfs(mnt, "size=64k", f"mkdir {mnt}/out && head -c 60000 /dev/zero > {mnt}/fill && "
                                     f"{sys.executable} {probe}")
    assert res.stdout.splitlines() == [f"OSError {mnt}/out/catalog.duckdb", f"OSError {mnt}/proj/annotate.duckdb"], \
        res.stdout + res.stderr


@needs_mount
def test_disk_full_while_training_names_the_checkpoint(tmp_path: Path):
    """A checkpoint or an exported model on a full disk ended in a torch ("file write failed") or
    safetensors ("(os error 28)") traceback."""
    pytest.importorskip("torch")
    mnt = tmp_path / "mnt"
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent(f"""
        from pathlib import Path
        import torch
        from transformers import GPT2Config, GPT2LMHeadModel
        from corpus.errors import describe_os_error
        from corpus.plugins.checkpoint import export_pretrained, save_checkpoint
        model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=64, n_head=2, vocab_size=4000, n_positions=64))
        opt = torch.optim.AdamW(model.parameters())
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        for save in (lambda: save_checkpoint(Path("{mnt}/ckpt"), 5, model=model, optimizer=opt, scheduler=sched,
                                             trainer_state={{}}, rank=0, world=1, keep=2, barrier=lambda: None),
                     lambda: export_pretrained(model, Path("{mnt}/final"))):
            try:
                save()
            except OSError as exc:
                print(describe_os_error(exc))
    """))
    res = _on_tmpfs(mnt, "size=512k", f"{sys.executable} {probe}")
    assert res.stdout.splitlines() == [
        f"no space left on device writing {mnt}/ckpt/step-00000005; free some space (or use a bigger disk), then "
        "rerun the same command to resume (finished work is kept)",
        f"no space left on device writing {mnt}/final; free some space (or use a bigger disk), then rerun the same "
        "command to resume (finished work is kept)"], res.stdout + res.stderr

PLUGIN = '''
import os
import signal
from dataclasses import dataclass

from corpus.operators import MapOperator


@dataclass
class Crash(MapOperator):
    """Dies like a worker the OOM killer picked, on the shard of the second input file."""

    name = "crash"

    def map(self, df):
        if os.environ.get("CRASH_NOW") and df.height and df["src_file"][0] == "part-001.jsonl":
            os.kill(os.getpid(), signal.SIGKILL)
        return df
'''


def test_a_worker_killed_like_the_oom_killer_does(tmp_path: Path):
    plug = tmp_path / "plug"
    (plug / "crash_op").mkdir(parents=True)
    (plug / "crash_op" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    dist = plug / "crash_op-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: crash-op\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[corpusforge.operators]\ncrash = crash_op:Crash\n")
    n = make_jsonl_corpus(tmp_path / "in", files=3, docs_per_file=40)
    cfg = write_config(tmp_path / "c.yaml", f"workers: 2\ninputs:\n  - source: web\n    path: {tmp_path / 'in'}\n"
                                            "pipeline:\n  - op: crash\n")
    env = {"PYTHONPATH": os.pathsep.join([str(plug), os.environ.get("PYTHONPATH", "")])}
    res = run_cli("run", str(cfg), "-o", str(tmp_path / "out"), "--quiet", env={**env, "CRASH_NOW": "1"})
    assert res.returncode == 2
    line = _one_error_line(res.stderr)
    assert "killed by SIGKILL" in line and "out-of-memory" in line, line
    assert "shard web-00001-00000 through 01-crash" in line and "rerun the same command to resume" in line, line
    res = run_cli("run", str(cfg), "-o", str(tmp_path / "out"), "--quiet", env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["docs"] == n  # resumed, nothing lost


RAISER = """
from dataclasses import dataclass
import builtins
from corpus.operators import MapOperator


@dataclass
class Raiser(MapOperator):
    name = "raiser"
    kind: str = "RuntimeError"

    def map(self, df):
        if df["text"].str.contains("BOOM").any():
            raise getattr(builtins, self.kind)("row contains BOOM")
        return df
"""


def test_an_operator_error_of_any_type_is_one_line(tmp_path: Path):
    """An operator's own error was one `error:` line only for the types the CLI expects (ValueError,
    OSError...): a plugin's RuntimeError or TypeError, or a polars error from a built-in, printed a
    traceback and exited 1. Any error raised in a stage is now said in one line, with its type, stage and
    unit, and --debug still shows the traceback."""
    plug = tmp_path / "plug"
    (plug / "raiser_op").mkdir(parents=True)
    (plug / "raiser_op" / "__init__.py").write_text(RAISER)
    dist = plug / "raiser_op-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: raiser-op\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[corpusforge.operators]\nraiser = raiser_op:Raiser\n")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text('{"text": "fine"}\n{"text": "a BOOM here"}\n')
    env = {"PYTHONPATH": os.pathsep.join([str(plug), os.environ.get("PYTHONPATH", "")])}
    for kind, workers in (("RuntimeError", 2), ("TypeError", 1)):
        cfg = write_config(tmp_path / "c.yaml", f"workers: {workers}\ninputs:\n  - source: s\n"
                                                f"    path: {tmp_path / 'in'}\npipeline:\n  - op: raiser\n"
                                                f"    kind: {kind}\n")
        res = run_cli("run", str(cfg), "-o", str(tmp_path / f"out-{kind}"), "--quiet", env=env)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        line = _one_error_line(res.stderr)
        assert line.startswith(f"error: {kind}: row contains BOOM (in stage 01-raiser)"), line
        assert "running shard s-00000-00000" in line and line.endswith("--debug shows the traceback"), line
    res = run_cli("--debug", "run", str(cfg), "-o", str(tmp_path / "out-debug"), "--quiet", env=env)
    assert res.returncode == 1 and "Traceback" in res.stderr and "TypeError: row contains BOOM" in res.stderr


def test_a_script_without_the_main_guard_is_told_so(tmp_path: Path):
    """Spawned workers import the script that started the run. Without `if __name__ == "__main__":` each
    would start the run again (and meet its lock): each refuses with the reason instead, and the run's
    error says what to do. The same script under the guard runs."""
    make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=5)
    body = (f"from corpus import InputSpec\nfrom corpus.pipeline import Pipeline\n\n"
            f"def main():\n    Pipeline([]).run([InputSpec(source='s', path={str(tmp_path / 'in')!r})], "
            f"{str(tmp_path / 'out')!r}, workers=2, quiet=True)\n\n")
    (tmp_path / "bare.py").write_text(body + "main()\n")
    res = subprocess.run([sys.executable, str(tmp_path / "bare.py")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("corpus.errors.WorkerDiedError") and "before it ran anything" in last, last
    assert 'if __name__ == "__main__":' in last, last
    assert "SpawnedImportError" in res.stderr and "LockedError" not in res.stderr, res.stderr
    (tmp_path / "guarded.py").write_text(body + 'if __name__ == "__main__":\n    main()\n')
    res = subprocess.run([sys.executable, str(tmp_path / "guarded.py")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["docs"] == 10


def test_closing_the_pool_waits_for_a_unit_still_running():
    """A failed run closes its pool while another unit may still be running: close waits for it, so
    nothing writes into the output once the run (and its lock) is gone. (Idle workers exit unwaited.)"""
    import time

    from corpus.executor import Pool

    pool = Pool(2)
    try:
        fut = pool._submit(time.sleep, "a unit still running", 1.0)
        while not fut.running():
            time.sleep(0.01)
    finally:
        pool.close()
    assert fut.done() and fut.exception() is None


def test_workers_get_their_share_of_the_cores_and_the_driver_keeps_its_environment(monkeypatch):
    """Each worker starts with polars' and OpenBLAS's thread pools sized to its share of the cores (OpenBLAS's
    own threads spin as numpy loads); a user's own setting stands, and the driver's environment is left as
    it was."""
    import os

    from corpus.executor import Pool

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setenv("POLARS_MAX_THREADS", "3")  # the user's
    pool = Pool(2)
    try:
        got = pool.ordered(os.getenv, ["OPENBLAS_NUM_THREADS", "POLARS_MAX_THREADS"])
    finally:
        pool.close()
    assert got == [str(max(1, (os.cpu_count() or 1) // 2)), "3"]
    assert "OPENBLAS_NUM_THREADS" not in os.environ and os.environ["POLARS_MAX_THREADS"] == "3"


def test_more_workers_than_cores_is_said(caplog):
    """A config written for a bigger machine (workers: 16 on 2 cores ran the quickstart 3x slower) warns."""
    import os

    from corpus.executor import Pool

    cores = os.cpu_count() or 1
    with caplog.at_level("WARNING"):
        Pool(1).close()
        assert not caplog.records
        Pool(cores + 1).close()
    assert f"{cores + 1} workers on {cores} cores: the worker processes take turns" in caplog.text


def test_an_output_file_that_is_a_device_pipe_or_folder_is_refused(tmp_path: Path):
    """Output files are written whole, then renamed into place: over a pipe (or /dev/full, a folder, a
    link to one) the rename would replace it (as root, /dev/full became a regular file). Refused with
    its kind. A link to a file is replaced itself: never written through, it may point anywhere."""
    from corpus.writers import write_bytes_atomic

    make_jsonl_corpus(tmp_path / "in", files=1, docs_per_file=40)
    cfg = write_config(tmp_path / "c.yaml", f"inputs:\n  - source: web\n    path: {tmp_path / 'in'}\n")
    assert run_cli("run", str(cfg), "-o", str(tmp_path / "out"), "-q").returncode == 0
    os.mkfifo(tmp_path / "pipe")
    res = run_cli("validate", "suggest", str(tmp_path / "out"), "--out", str(tmp_path / "pipe"))
    assert res.returncode == 2
    assert f"{tmp_path / 'pipe'} is a pipe, not a file" in _one_error_line(res.stderr)
    (tmp_path / "folder").mkdir()
    (tmp_path / "to-pipe").symlink_to(tmp_path / "pipe")
    for dest, what in (("folder", "a folder"), ("to-pipe", "a link to a pipe")):
        with pytest.raises(OSError, match=f"{tmp_path / dest} is {what}, not a file"):
            write_bytes_atomic(tmp_path / dest, b"x")
    assert (tmp_path / "pipe").is_fifo() and (tmp_path / "folder").is_dir() and (tmp_path / "to-pipe").is_symlink()
    (tmp_path / "elsewhere.json").write_text("{}")
    (tmp_path / "link.json").symlink_to(tmp_path / "elsewhere.json")
    write_bytes_atomic(tmp_path / "link.json", b"[]")
    assert not (tmp_path / "link.json").is_symlink() and (tmp_path / "link.json").read_text() == "[]"
    assert (tmp_path / "elsewhere.json").read_text() == "{}"


def test_a_damaged_catalog_is_named_and_the_way_out_works(tmp_path: Path):
    """A truncated catalog.duckdb (a full disk, a bad copy) read as 'IO Error: Could not read enough bytes'
    with no way out, after 5 s of retries meant for a lock. Now one line says what the file holds and what
    to do; doing it (moving it aside, rerunning) resumes the run from its finished work."""
    make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=30)
    cfg = write_config(tmp_path / "c.yaml", f"inputs:\n  - source: web\n    path: {tmp_path / 'in'}\n")
    out = tmp_path / "out"
    assert run_cli("run", str(cfg), "-o", str(out), "-q").returncode == 0
    with open(out / "catalog.duckdb", "r+b") as f:
        f.truncate(1000)
    for args in (("stats", str(out)), ("run", str(cfg), "-o", str(out), "-q")):
        res = run_cli(*args)
        assert res.returncode == 2
        line = _one_error_line(res.stderr)
        assert f"{out / 'catalog.duckdb'}: the run catalog is damaged (IO Error: " in line, line
        assert "move it aside and rerun the pipeline" in line
    (out / "catalog.duckdb").rename(out / "catalog-damaged.duckdb")
    res = run_cli("run", str(cfg), "-o", str(out))
    assert res.returncode == 0 and "resuming: 2 of 2 input files (or parts) already read" in res.stderr, res.stderr
    assert run_cli("stats", str(out)).returncode == 0


def test_a_file_given_for_a_corpus_or_a_shard_is_named(tmp_path: Path):
    """`corpus verify FILE` said '[Errno 20] Not a directory: FILE/manifest.json'; `corpus tokenizer train
    FILE` said 'Parquet magic bytes not found in footer...' without naming the file."""
    text = tmp_path / "notes.md"
    text.write_text("# notes\n")
    res = run_cli("verify", str(text))
    assert res.returncode == 2
    assert _one_error_line(res.stderr) == f"error: {text} is a file, not a corpus folder (a `corpus run` output: " \
                                          "manifest.json and data/)"
    res = run_cli("tokenizer", "train", str(text), "--out", str(tmp_path / "tok"), "--vocab-size", "1000")
    assert res.returncode == 2
    assert _one_error_line(res.stderr).startswith(f"error: {text}: not a readable Parquet file (Parquet magic bytes")


def test_workers_of_a_driver_killed_while_they_start_do_not_stay(tmp_path: Path):
    """A driver SIGKILLed while its workers were still importing left them waiting for work for ever (the
    kernel's parent-death signal was asked for only after the parent had gone): each now sees its parent
    gone, and exits."""
    import signal
    import time

    script = tmp_path / "driver.py"
    script.write_text("import os, signal\nfrom corpus.executor import Pool\n"
                      "if __name__ == '__main__':\n"
                      "    pool = Pool(2)\n"
                      "    print(' '.join(str(p) for p in pool._pool._processes), flush=True)\n"
                      "    os.kill(os.getpid(), signal.SIGKILL)\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == -signal.SIGKILL
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 2

    def alive(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z"

    deadline = time.monotonic() + 30
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in pids if alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"workers {left} outlived their driver"


def test_a_pool_whose_worker_died_before_a_unit_was_handed_out_says_so():
    """A worker dead before the next unit is submitted (the pool already broken): the same WorkerDiedError
    as a death mid-unit, not concurrent.futures' BrokenProcessPool traceback."""
    import signal
    import time

    from corpus.errors import WorkerDiedError
    from corpus.executor import Pool

    pool = Pool(2)
    try:
        assert pool.ordered(abs, [-1, -2]) == [1, 2]
        os.kill(next(iter(pool._pool._processes)), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not pool._pool._broken and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(WorkerDiedError, match="killed by SIGKILL"):
            pool.ordered(abs, [-3])
    finally:
        pool.close()


_SLOW = '''
import os, sys, time
from dataclasses import dataclass
from typing import ClassVar
from corpus import InputSpec, MapOperator, Pipeline

@dataclass
class Slow(MapOperator):
    name: ClassVar[str] = "slow"
    seconds: float = 0

    def map(self, df):
        with open(os.path.join(FLAGS, str(os.getpid())), "w") as fh:
            fh.write("started")
        time.sleep(self.seconds)
        return df

if __name__ == "__main__":
    Pipeline([Slow(seconds=float(sys.argv[1]))]).run([InputSpec(source="s", path=INPUT)], OUT, workers=2, quiet=True)
'''


def test_an_interrupt_of_the_driver_alone_stops_the_run_at_once(tmp_path: Path):
    """A notebook's interrupt is a SIGINT to the driver alone (a terminal's Ctrl-C reaches the workers too).
    It surfaced only once the units running had ended (their whole length: minutes with slow ones), since
    the signal may land on a thread of the pool that cannot wake the driver's wait. Now the run stops at
    once, its workers killed, and a rerun resumes."""
    import signal
    import time

    make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=10)
    flags = tmp_path / "flags"
    flags.mkdir()
    script = tmp_path / "slow.py"
    script.write_text(f"INPUT, OUT, FLAGS = {str(tmp_path / 'in')!r}, {str(tmp_path / 'out')!r}, {str(flags)!r}\n"
                      + _SLOW)
    proc = subprocess.Popen([sys.executable, str(script), "300"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while len(list(flags.iterdir())) < 2 and time.monotonic() < deadline:  # both workers inside a unit
        time.sleep(0.1)
    workers = [int(p.name) for p in flags.iterdir()]
    assert len(workers) == 2, proc.communicate(timeout=30)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)  # the units would run 300 s
    finally:
        if proc.poll() is None:  # it did not stop: leave no 300 s units behind
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err, err

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    deadline = time.monotonic() + 10
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in workers)
    res = subprocess.run([sys.executable, str(script), "0"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["docs"] == 20


def _raising_ops():
    """A map that raises, a global filter whose fit raises, and a map holding a lock (not picklable)."""
    import threading
    from dataclasses import dataclass

    import polars as pl

    from corpus import GlobalFilterOperator, MapOperator, StageContext, Verdict

    @dataclass
    class Boom(MapOperator):
        name = "boom"

        def map(self, df: pl.DataFrame) -> pl.DataFrame:
            raise ValueError("boom in my operator")

    @dataclass
    class FitBoom(GlobalFilterOperator):
        name = "fit_boom"

        def fit(self, ctx: StageContext) -> None:
            raise RuntimeError("fit exploded")

        def load(self, artifacts: Path) -> None:
            pass

        def filter(self, df: pl.DataFrame) -> Verdict:
            return Verdict(keep=pl.Series([True] * df.height))

    @dataclass
    class Locky(MapOperator):
        name = "locky"

        def __post_init__(self) -> None:
            self.lock = threading.Lock()

        def map(self, df: pl.DataFrame) -> pl.DataFrame:
            return df

    return Boom(), FitBoom(), Locky()


def test_an_operator_s_error_names_its_stage(tmp_path: Path):
    """With workers: 1 a unit's error carried no label, a fit's or a sink's never did, so the catalog and
    `corpus status` said `ValueError: boom in my operator` and no more; an operator holding something
    that cannot be pickled failed `cannot pickle '_thread.lock' object` on a pool, naming no operator."""
    from corpus import InputSpec, Pipeline
    from corpus.catalog import Catalog
    from corpus.work import OperatorError

    make_jsonl_corpus(tmp_path / "in", files=1, docs_per_file=20)
    inputs = [InputSpec(source="s", path=str(tmp_path / "in"))]
    boom, fit_boom, locky = _raising_ops()
    with pytest.raises(ValueError, match="boom in my operator") as raised:
        Pipeline([boom]).run(inputs, tmp_path / "a", workers=1, quiet=True)
    assert "(in stage 01-boom)" in raised.value.__notes__
    error = Catalog(tmp_path / "a" / "catalog.duckdb", create=False).query("SELECT error FROM runs")[0][0]
    assert error.startswith("ValueError: boom in my operator (in stage 01-boom) (running shard s-"), error
    status = run_cli("status", str(tmp_path / "a"))
    assert "boom in my operator (in stage 01-boom)" in status.stdout, status.stdout + status.stderr
    with pytest.raises(RuntimeError, match="fit exploded") as raised:
        Pipeline([fit_boom]).run(inputs, tmp_path / "b", workers=1, quiet=True)
    assert raised.value.__notes__ == ["(in stage 01-fit_boom)"]
    with pytest.raises(OperatorError, match=r"stage 01-locky: operator Locky cannot be sent to a worker process "
                                            r"\(TypeError: .*_thread.lock.*attribute\(s\) lock \(lock\)\): an "
                                            "operator's attributes must be picklable"):
        Pipeline([locky]).run(inputs, tmp_path / "c", workers=2, quiet=True)
