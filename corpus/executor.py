"""The executor: runs a pipeline resumably and accounts for every record.

``Executor`` holds the phases every executor shares (plan, ingest, check ids, segments, fits and sinks,
balance, publish, report); only *how units run* differs, behind the ``Runner`` interface: ``LocalExecutor``
runs them on a process pool (``Pool``), ``RayExecutor`` (corpus/ray_executor.py) as Ray tasks. Units of
work are plain functions of frozen jobs (corpus/work.py), so both call the same code.

Layout of an output folder:

    OUT/
      .corpusforge                marks the folder as a run's own (corpus/owner.py)
      catalog.duckdb              run catalog (runs, stages, per-unit counters, drops, quarantine)
      manifest.json               the final corpus: schema, docs, every file's bytes and sha256 as written
      data/                       final shards (Parquet, zstd)
      rejected/NN-op/             rows dropped by stage NN, with reject_stage and reject_reason
      quarantine/                 records the readers could not parse, with file, line, raw bytes, error
      quarantine/raw/<src>-<n>/   bytes of quarantined records over max_doc_bytes (<line>.zst)
      work/00-read/               shards as read, per input file markers in done/
      work/00-ids-<key>/          the repeated-id check (corpus/ids.py); with on_duplicate_id: reject,
                                  also the first stage (01-duplicate_id), which drops later occurrences
      work/NN-op-<key>/           each stage's output per shard; <key> hashes its config and all upstream

A unit of work (an input file, or a shard through a stage) is done when its marker exists with the
current key; a rerun skips it, after checking the files it takes from it against the sizes and hashes
the marker recorded (corpus/resume.py). Keys chain, so a changed operator invalidates only itself and
what follows it; "changed" is what its key sees (its parameters, its ``version``, and its code only for a
class defined in ``__main__``: operators.main_code), so a library operator whose behaviour changes bumps
its ``version``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from corpus.catalog import DRY_RUN, Catalog
from corpus.config import param_problems
from corpus.errors import (
    MAIN_GUARD,
    SpawnedImportError,
    WorkerDiedError,
    described,
    note_stage,
    note_unit,
    worker_death,
)
from corpus.ids import SUMMARY, DuplicateIdError, RepeatedIds, check_policy, derived_unique, describe, located
from corpus.lock import RunLock
from corpus.manifest import build_manifest
from corpus.operators import (
    FITTED,
    Operator,
    PoolMap,
    SinkOperator,
    StageContext,
    StopRun,
    chain_key,
    ensure_columns,
    is_global,
    source_problems,
)
from corpus.owner import check_output, claim, remove_own, write_listing
from corpus.progress import Progress
from corpus.readers import Inputs, InputSpec, ReadTask, as_specs, fields, plan_tasks
from corpus.readers.check import QuarantineShare
from corpus.readers.plan import SPLIT_BYTES, largest_first, number_lines, split_tasks
from corpus.resume import check_finished_work
from corpus.schema import DOC_SCHEMA
from corpus.stats import count_by_source, emptied_stages, funnel_rows
from corpus.work import (
    STAGE_DONE,
    IngestJob,
    SegmentJob,
    Stage,
    ingest,
    job_in_worker,
    merge_parts,
    pack_job,
    read_marker,
    resolve_workers,
    run_segment,
    stage_dir,
    start_worker,
    worker_env,
    worker_ready,
    write_marker,
)
from corpus.writers import check_shard_max, link_or_copy


class PipelineError(ValueError):
    """The pipeline is wired wrongly (an operator needs a column nobody provides)."""


class LostRecordsError(RuntimeError):
    """input != kept + rejected + quarantined for some source: a bug, never silently accepted."""


@dataclass
class RunResult:
    output: Path
    run_id: str
    manifest: dict
    balance: list[dict]
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per phase, in run order
    shards: list[Path] = field(default_factory=list)  # a stages-only run: the last stage's shards, in work/


class _Laps:
    """Wall time per phase of a run (what a run on another executor gains or pays, per stage)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._last
        self._last = now


# ---------------------------------------------------------------- how units run


class Runner(Protocol):
    """How units of work run: ``fn(job)`` for each job, where ``fn`` is a plain module-level function
    and a job a frozen dataclass (or any picklable item). ``Pool`` (processes) and ``RayPool`` (Ray
    tasks) implement it; the executor's phases use nothing else."""

    workers: int  # how many units run at once (a fit sizes its partitions by it)

    def unordered(self, fn: Callable[[Any], Any], jobs: Sequence[Any], labels: Sequence[str] | None = None
                  ) -> Iterator[Any]:
        """Results as they finish; a failure raises the unit's own exception (a died worker: WorkerDiedError)."""
        ...

    def ordered(self, fn: Callable[[Any], Any], items: Sequence[Any], label: str = "",
                each: Callable[[Any], None] | None = None) -> list[Any]:
        """Results in order; ``each(result)`` as each arrives (progress)."""
        ...

    def close(self, stop: bool = False) -> None:
        """Release the workers (stop: at once, units still running killed)."""



class Pool:
    """Runs fn(job) for each job (a frozen dataclass, or any picklable item): in this process when
    workers == 1, else a spawn pool. A worker that dies (the OOM killer) becomes a WorkerDiedError naming
    the unit it was running."""

    def __init__(self, workers: int):
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._in_flight: set[Future] = set()
        cores = os.cpu_count() or 1
        if workers > cores:  # a config written for a bigger machine: many times slower here (docs/benchmarks.md)
            log.warning("%d workers on %d cores: the worker processes take turns on the cores, each holding "
                        "its own memory, which is slower than one per core (workers: 0)", workers, cores)
        if workers > 1:
            self._running = tempfile.mkdtemp(prefix="corpusforge-pool-")
            self._pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=start_worker,
                                             initargs=(self._running, os.getpid()))
            # Each worker gets its share of the cores for its libraries' threads (a user's own setting
            # stands); the driver's environment is as it was once they have started.
            with _environ(worker_env((os.cpu_count() or 1) // workers)), _main_without_file():
                for _ in range(workers):  # start every worker now: they import while the driver plans the run
                    self._pool.submit(worker_ready)

    def _submit(self, fn: Callable[[Any], Any], label: str, job: Any) -> Future:
        assert self._pool is not None
        try:
            fut = self._pool.submit(job_in_worker, pack_job(fn, label, job))
        except BrokenProcessPool:  # a worker died before this unit was handed out
            raise self._died() from None
        self._in_flight.add(fut)
        fut.add_done_callback(self._in_flight.discard)
        return fut

    def _died(self) -> WorkerDiedError:
        """Which worker died, how, and what it was running: exit codes from the pool's process table
        (the others were terminated by the pool itself, with SIGTERM)."""
        procs = dict(getattr(self._pool, "_processes", None) or {})
        deadline = time.monotonic() + 5.0  # a dead worker's pipe closes a moment before it can be reaped
        while any(p.exitcode is None for p in procs.values()) and time.monotonic() < deadline:
            time.sleep(0.02)
        dead = [(pid, p.exitcode) for pid, p in procs.items() if p.exitcode not in (None, 0, -signal.SIGTERM)]
        pid, code = dead[0] if dead else (None, None)
        unit = None
        if pid is not None:
            try:
                unit = (Path(self._running) / str(pid)).read_text()
            except OSError:
                pass
        return WorkerDiedError(worker_death(pid, code, unit))

    def unordered(self, fn: Callable[[Any], Any], jobs: Sequence[Any], labels: Sequence[str] | None = None
                  ) -> Iterator[Any]:
        labels = labels or [f"{fn.__name__} {job!r:.80}" for job in jobs]
        if self._pool is None:
            for label, job in zip(labels, jobs, strict=True):
                yield _labelled(fn, label, job)
            return
        pending = {self._submit(fn, label, job) for label, job in zip(labels, jobs, strict=True)}
        try:
            while pending:
                done, pending = wait(pending, timeout=_WAKE, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
        except BrokenProcessPool:
            raise self._died() from None
        finally:
            for fut in pending:
                fut.cancel()

    def ordered(self, fn: Callable[[Any], Any], items: Sequence[Any], label: str = "",
                each: Callable[[Any], None] | None = None) -> list[Any]:
        """fn over items, results in order; ``each(result)`` is called as each one arrives (progress)."""
        def seen(result: Any) -> Any:
            if each is not None:
                each(result)
            return result

        what = label or fn.__name__
        labels = [f"{what} (part {i + 1} of {len(items)})" for i in range(len(items))]
        if self._pool is None:
            return [seen(_labelled(fn, part, x)) for part, x in zip(labels, items, strict=True)]
        futures = [self._submit(fn, part, x) for part, x in zip(labels, items, strict=True)]
        try:
            return [seen(_result(f)) for f in futures]
        except BrokenProcessPool:
            raise self._died() from None
        finally:
            for f in futures:
                f.cancel()

    def close(self, stop: bool = False) -> None:
        """stop: kill the workers first (an interrupted run: Ctrl-C, a notebook's interrupt, which signals
        the driver alone), as a SIGKILLed run's die; a rerun resumes, their temp files removed."""
        if self._pool is not None:
            if stop:
                for proc in list((getattr(self._pool, "_processes", None) or {}).values()):
                    proc.kill()
            # With no unit running, nothing is left to wait for but the workers' interpreters tearing
            # down (a few tenths of a second): they exit in the background. A unit still running (a run
            # that failed) is waited for, so that nothing writes into the output once its lock is gone.
            idle = all(f.done() for f in list(self._in_flight))
            self._pool.shutdown(wait=not idle or stop, cancel_futures=True)
            shutil.rmtree(self._running, ignore_errors=True)
            self._pool = None


# A wait wakes this often. A signal may reach another thread of the driver (the pool's own), which cannot
# interrupt a wait without a timeout: a notebook's interrupt (SIGINT to the driver alone) surfaced only
# once the units running had ended, minutes with slow ones.
_WAKE = 0.25


def _labelled(fn: Callable[[Any], Any], label: str, job: Any) -> Any:
    """fn(job) in this process, an error it raises noted with the unit's label (as a worker's: job_in_worker)."""
    try:
        return fn(job)
    except Exception as exc:
        note_unit(exc, label)
        raise


def _result(fut: Future) -> Any:
    while True:
        try:
            return fut.result(timeout=_WAKE)
        except TimeoutError:
            continue


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """``values`` in os.environ for processes started in the block (those already set are kept)."""
    added = {k: v for k, v in values.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


@contextmanager
def _main_without_file() -> Iterator[None]:
    """A spawned worker runs the driver's main script again, found by its ``__file__``; a script read
    from stdin (`python - < run.py`) has "<stdin>" there, no file, and every worker died at start. Such
    a main is left out, as `python -c` and notebooks are (their operators travel by value: pack_job)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or getattr(main, "__spec__", None) is not None or os.path.isfile(path):
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


@contextmanager
def worker_pool(workers: int) -> Iterator[Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]]:
    """``pool_map(fn, items)`` over a spawn pool of ``workers`` processes (in this process for 1): what
    a whole-corpus stage run outside a pipeline (``corpus tokenize``) gets as ``StageContext.pool_map``
    (0 workers: one per core)."""
    pool = Pool(resolve_workers(workers))
    try:
        yield pool.ordered
    finally:
        pool.close()


# ---------------------------------------------------------------- executor


log = logging.getLogger(__name__)




class Executor:
    """The phases of a run, shared by every executor; subclasses say how units run (``_runner``)."""

    name = ""

    def __init__(self, workers: int = 0, quiet: bool = False, chunk_bytes: int = 32 << 20, report: bool = True,
                 on_duplicate_id: str = "keep", split_bytes: int = SPLIT_BYTES):
        if split_bytes < 0:
            raise ValueError(f"split_bytes must be 0 (never split) or more, got {split_bytes}")
        self.split_bytes = split_bytes  # files over this are read in parts (corpus/readers/plan.py)
        self.workers = resolve_workers(workers)
        self.quiet = quiet
        self.report = report
        self.chunk_bytes = chunk_bytes
        self.on_duplicate_id = check_policy(on_duplicate_id)  # keep | reject | fail: see corpus/ids.py

    def run(
        self,
        ops: list[Operator],
        inputs: Inputs,
        output: Path,
        shard_max_bytes: int = 128 << 20,
        base_dir: Path | None = None,
        stages_only: bool = False,
    ) -> RunResult:
        """Run the pipeline into ``output``. stages_only: run its stages (resuming finished ones) and stop
        there, publishing nothing: the corpus, manifest, rejected/, report and the work of stages it does
        not have stay as they are, for a dry run before the full pipeline (`corpus quality outliers
        --dry-run`); its catalog record is a DRY_RUN, which commands reading the latest run pass over."""
        if getattr(mp.current_process(), "_inheriting", False):  # multiprocessing's own test of this
            raise SpawnedImportError(f"a worker process started a run while importing its run's script; {MAIN_GUARD}")
        inputs = as_specs(inputs)
        if not isinstance(output, str | os.PathLike) or not str(output):
            raise PipelineError(f"output: give the folder to write the corpus into (a path), got {output!r}")
        try:
            check_shard_max(shard_max_bytes)  # as a config's: -1 or 10 bytes ran, a shard per chunk
        except ValueError as exc:
            raise PipelineError(f"shard_max_bytes: {exc}") from None
        out = Path(output).resolve()
        errors = [p for o in ops for p in param_problems(o)] + ensure_columns(ops, DOC_SCHEMA) + _publish_clashes(ops)
        errors += [p for _, p in source_problems(ops, [s.source for s in inputs])]
        if errors:
            raise PipelineError("pipeline wiring:\n  " + "\n  ".join(errors))
        tasks = plan_tasks(inputs, base_dir, output=out)
        check_output(out, tuple(_sink_folders(ops)))  # before the lock: the folder may not be ours
        with RunLock(out):
            claim(out)
            return self._run_locked(ops, inputs, tasks, out, shard_max_bytes, stages_only)

    def _runner(self, shard_max_bytes: int) -> Runner:
        """What runs this run's units (started here, closed when the run ends)."""
        raise NotImplementedError

    def _run_locked(self, ops: list[Operator], inputs: list[InputSpec], tasks: list[ReadTask], out: Path,
                    shard_max_bytes: int, stages_only: bool = False) -> RunResult:
        pool = self._runner(shard_max_bytes)  # first: its workers start up while the run is planned
        try:
            return self._run_on(pool, ops, inputs, tasks, out, shard_max_bytes, stages_only)
        except KeyboardInterrupt:
            pool.close(stop=True)  # out now, not once the units running have ended (minutes, with slow ones)
            raise
        finally:
            pool.close()

    def _run_on(self, pool: Runner, ops: list[Operator], inputs: list[InputSpec], tasks: list[ReadTask], out: Path,
                shard_max_bytes: int, stages_only: bool = False) -> RunResult:
        work = out / "work"
        for tmp in work.rglob(".tmp-*") if work.exists() else []:
            tmp.unlink(missing_ok=True)  # left by a killed run; never a finished file
        read_dir = work / "00-read"
        units, notes = split_tasks(tasks, self.split_bytes, self._read_chunk(shard_max_bytes))
        bounds: dict[int, list] = {}
        for u in units:
            if u.part is not None:
                bounds.setdefault(u.index, []).append([u.start, u.end])
        task_keys = {t.index: self._task_key(t, shard_max_bytes, bounds.get(t.index)) for t in tasks}
        read_key = parent = hashlib.sha256(json.dumps(sorted(task_keys.items())).encode()).hexdigest()
        # The repeated-id check runs after reading whatever the policy; with reject it is also stage 1.
        reject = self.on_duplicate_id == "reject"
        id_op = RepeatedIds(derived=derived_unique(tasks))
        id_key = chain_key(read_key, id_op)
        id_stage = Stage(int(reject), id_op, id_key, stage_dir(work, 0, "ids", id_key))
        stages = [id_stage] if reject else []
        parent = id_key if reject else read_key
        for i, op in enumerate(ops, len(stages) + 1):
            parent = chain_key(parent, op)
            stages.append(Stage(i, op, parent, stage_dir(work, i, op.name, parent)))

        catalog = Catalog(out / "catalog.duckdb")
        run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        stage_rows = [{"idx": 0, "stage": "00-read", "kind": "read", "key": read_key, "params": {
            "inputs": [asdict(s) for s in inputs]}, "units": len(units)}]
        stage_rows += [{"idx": s.idx, "stage": s.label, "kind": s.op.kind, "key": s.key, "params": s.op.params(),
                        "units": 0} for s in stages]
        config = {"inputs": [asdict(s) for s in inputs], "pipeline": [{"op": o.name, **o.params()} for o in ops],
                  "shard_max_bytes": shard_max_bytes, "workers": pool.workers, "executor": self.name,
                  "on_duplicate_id": self.on_duplicate_id, "split_bytes": self.split_bytes}
        progress = Progress(quiet=self.quiet)
        laps = _Laps()
        try:
            catalog.start_run(run_id, config, pool.workers, stage_rows)
            with progress:
                for note in notes:
                    progress.log(note)
                check_finished_work(read_dir, units, task_keys, _segments(stages),
                                    functools.partial(pool.ordered, label="checking finished work"), _warn)
                laps.lap("check finished work")
                markers = merge_parts(self._ingest(pool, progress, catalog, run_id, units, task_keys, read_dir,
                                                   shard_max_bytes))
                laps.lap("00-read")
                drift = fields.drift(markers)
                files = _files(read_dir, markers)  # every work file of this run, as its writer recorded it
                shards = [s for m in markers for s in m["shards"]]
                prev = read_dir / "shards"
                # One connection for the reading's records and the id check's (opening the file costs a
                # checkpoint).
                with catalog.session():
                    catalog.flush()
                    catalog.record_fields(run_id, markers, drift)
                    catalog.set_units(run_id, len(shards))
                    for line in fields.describe(drift) + fields.unused_keys(inputs, markers):
                        log.warning("%s", line)
                    self._check_ids(pool, progress, catalog, run_id, id_stage,
                                    [prev / f"{s}.parquet" for s in shards], markers)
                laps.lap("00-ids (repeated ids)")
                for segment in _segments(stages):
                    head = segment[0]
                    inputs_now = tuple(prev / f"{s}.parquet" for s in shards)
                    side = _side_inputs(stages, head)
                    if isinstance(head.op, SinkOperator):
                        self._whole(pool, progress, catalog, run_id, head, inputs_now, side)
                        laps.lap(f"{head.label} write")
                        continue  # documents pass on unchanged: the next stage reads the same shards
                    if isinstance(head.op, FITTED) and head is not id_stage:  # that one is fitted already
                        self._whole(pool, progress, catalog, run_id, head, inputs_now, side)
                        laps.lap(f"{head.label} fit")
                    for results in self._segment(pool, progress, catalog, run_id, segment, shards, prev):
                        for stage, m in zip(segment, results, strict=True):
                            files.update(_files(stage.dir, [m]))
                    prev = segment[-1].dir / "shards"
                    laps.lap(" ".join(st.label for st in segment))
            if stages_only:
                catalog.finish_run(run_id, DRY_RUN)
                return RunResult(out, run_id, {}, [], laps.seconds, [prev / f"{s}.parquet" for s in shards])
            # Every record is accounted for before anything is published: a run that lost some publishes
            # nothing, and the corpus an earlier run published stays as it was.
            final = _final_files(read_dir, markers, stages, shards, files)
            balance = _balance(markers, final)
            bad = [b for b in balance if not b["ok"]]
            if bad:
                catalog.record_balance(run_id, balance)
                raise LostRecordsError(
                    "records unaccounted for (nothing was published): "
                    + "; ".join(f"{b['source']}: input {b['input']} != kept {b['kept']} + rejected "
                                f"{b['rejected']} + quarantined {b['quarantined']} + blank lines {b['blank']}"
                                for b in bad)
                )
            laps.lap("balance")
            manifest = _publish(out, final, stages, run_id, files)
            with catalog.session():
                catalog.record_balance(run_id, balance)
                catalog.finish_run(run_id, "ok")
                for line in emptied_stages(funnel_rows(out, run_id, catalog)[1]):
                    _warn(line)
            laps.lap("publish")
            if self.report:
                _write_report(out, run_id, progress)
                laps.lap("report")
            _collect_garbage(work, {read_dir.name, id_stage.dir.name} | {s.dir.name for s in stages})
            return RunResult(out, run_id, manifest, balance, laps.seconds)
        except BaseException as exc:
            try:
                catalog.finish_run(run_id, "failed", described(exc))
            except Exception:  # noqa: BLE001 - e.g. the catalog's disk is the full one: report the first error
                logging.getLogger(__name__).debug("could not record the failure in the catalog", exc_info=True)
            if isinstance(exc, StopRun) and self.report:  # a gate stopped it: the report shows why
                _write_report(out, run_id, progress)
            raise

    # ------------------------------------------------------------ phases

    def _read_chunk(self, shard_max_bytes: int) -> int:
        """How much a read takes at a time: no more than a shard, so a worker's memory is bounded by it."""
        return min(self.chunk_bytes, max(shard_max_bytes, 1 << 20))

    def _task_key(self, task: ReadTask, shard_max_bytes: int, parts: list | None = None) -> str:
        st = os.stat(task.path) if not task.path.startswith("duckdb:") else None
        fingerprint = {
            # max_quarantine_fraction only decides whether a run goes on, never what a read writes
            "spec": {k: v for k, v in asdict(task.spec).items() if k != "max_quarantine_fraction"},
            "path": task.path, "rel": task.rel_path, "format": task.format,
            "index": task.index, "size": st.st_size if st else None, "mtime": st.st_mtime_ns if st else None,
            "shard_max_bytes": shard_max_bytes, "chunk_bytes": self.chunk_bytes, "reader_version": 3,
        }
        if parts:  # read in parts: their bounds (a whole file's key is as it always was)
            fingerprint["parts"] = parts
        return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()

    def _ingest(self, pool: Runner, progress: Progress, catalog: Catalog, run_id: str, tasks: list[ReadTask],
                task_keys: dict[int, str], read_dir: Path, shard_max_bytes: int) -> list[dict]:
        """Read every unit (a file, or a part of a big one); returns their markers in unit order."""
        done: dict[str, dict] = {}
        for t in tasks:
            m = read_marker(read_dir / "done" / f"{t.unit}.json", task_keys[t.index])
            if m is not None and all(p.exists() for p in _read_outputs(read_dir, m)):
                done[t.unit] = m
        _drop_stale_reads(read_dir, {t.unit for t in tasks})
        if done:
            catalog.record_ingest(run_id, list(done.values()), resumed=True)
            progress.log(f"resuming: {len(done)} of {len(tasks)} input files (or parts) already read")
        # Parts of big line files start at their file's own line numbers: count the lines before them.
        known = {u: m["lines"] for u, m in done.items() if m.get("lines") is not None}
        tasks, lines = number_lines(tasks, known, set(done))
        todo = largest_first([t for t in tasks if t.unit not in done])  # the pool hands them out in this order
        bar = progress.add("read inputs", total=len(tasks), completed=len(done), unit="input MB/s")
        chunk = self._read_chunk(shard_max_bytes)
        # A source's quarantine share is judged as its files finish; an input of one unit, in its worker.
        share = QuarantineShare(tasks)
        for m in done.values():
            share.add(m["source"], m["seen"], m["quarantine_kinds"])
        jobs = [IngestJob(t, task_keys[t.index], read_dir, shard_max_bytes, chunk,
                          watch=len(share.tasks[t.spec.source]) == 1, lines=lines.get(t.unit)) for t in todo]
        labels = [f"reading {t.path}" + (f" (part {t.part + 1})" if t.part is not None else "") for t in todo]
        for m in pool.unordered(ingest, jobs, labels):
            done[m["unit"]] = m
            catalog.record_ingest(run_id, [m], resumed=False)
            progress.advance(bar, docs=m["seen"], nbytes=m["bytes_in"])
            share.add(m["source"], m["seen"], m["quarantine_kinds"])
            share.check(m["source"])
        for source in share.tasks:  # every record read: small inputs are judged now too
            share.check(source, final=True)
        # Keep every shard of the current units, in unit order: that order defines the corpus.
        return [done[t.unit] for t in tasks]

    def _check_ids(self, pool: Runner, progress: Progress, catalog: Catalog, run_id: str, stage: Stage,
                   shard_paths: list[Path], markers: list[dict]) -> None:
        """Find repeated ids (before any stage), record them, and warn or stop as the policy says."""
        self._whole(pool, progress, catalog, run_id, stage, tuple(shard_paths))
        summary = json.loads((stage.artifacts / SUMMARY).read_bytes())
        examples = located(summary, markers)
        catalog.record_id_check(run_id, self.on_duplicate_id, summary, examples)
        if summary["rows"] and self.on_duplicate_id == "fail":
            raise DuplicateIdError(describe(summary, examples, "fail"))
        if summary["rows"]:
            log.warning("%s", describe(summary, examples, self.on_duplicate_id, one_line=True))

    def _whole(self, pool: Runner, progress: Progress, catalog: Catalog, run_id: str, stage: Stage,
               shards: tuple[Path, ...], side_inputs: dict[str, Path] | None = None) -> None:
        """A global operator's fit, or a sink's consume, over the whole corpus into the stage's artifacts
        folder; its figures go to the catalog."""
        marker = stage.dir / STAGE_DONE
        itself = stage.op.resumes_itself  # it checks its own units: called again, its artifacts kept
        if read_marker(marker, stage.key) is not None and not itself:
            progress.log(f"resuming: {stage.label} already done")
        else:
            if stage.artifacts.exists() and not itself:
                shutil.rmtree(stage.artifacts)  # a fit or write that died: started over, never half-used
            stage.artifacts.mkdir(parents=True, exist_ok=True)
            verb = "write" if isinstance(stage.op, SinkOperator) else "fit"
            bar = progress.add(f"{verb} {stage.label}", total=None)
            start = time.perf_counter()
            ctx = StageContext(stage.label, stage.artifacts, shards, pool.workers,
                               _tracked(pool, progress, f"{verb} {stage.label}"), side_inputs or {})
            try:
                stage.op.setup()
                summary = stage.op.consume(ctx) if isinstance(stage.op, SinkOperator) else stage.op.fit(ctx)  # type: ignore[attr-defined]
            except StopRun:
                self._record_whole(catalog, run_id, stage)  # a gate that stopped the run: its results count
                raise
            except Exception as exc:  # the operator's own error: which stage, doing what
                note_stage(exc, stage.label)
                raise
            write_marker(marker, {"key": stage.key, "seconds": time.perf_counter() - start, "summary": summary or {}})
            progress.finish(bar)
        self._record_whole(catalog, run_id, stage)

    @staticmethod
    def _record_whole(catalog: Catalog, run_id: str, stage: Stage) -> None:
        cls = type(stage.op)
        catalog.record_figures(run_id, stage.idx, stage.label, cls.figures(stage.artifacts))
        for table, rows in cls.catalog_rows(stage.artifacts).items():
            catalog.record_stage_rows(run_id, stage.idx, stage.label, table, rows)

    def _segment(self, pool: Runner, progress: Progress, catalog: Catalog, run_id: str, segment: list[Stage],
                 shards: list[str], prev: Path) -> Iterator[list[dict]]:
        """Push every shard through the segment; yields each shard's markers (one per stage)."""
        names = segment[0].label if len(segment) == 1 else f"{segment[0].label}..{segment[-1].idx:02d}"
        bar = progress.add(names, total=len(shards), unit="text MB/s")
        last = segment[-1]
        finished = sum(1 for s in shards if read_marker(last.dir / "done" / f"{s}.json", last.key) is not None)
        if finished:
            progress.log(f"resuming: {finished} of {len(shards)} shards already through {names}")
        jobs = [SegmentJob(shard, prev / f"{shard}.parquet", tuple(segment)) for shard in shards]
        for results in pool.unordered(run_segment, jobs, [f"shard {shard} through {names}" for shard in shards]):
            for stage, m in zip(segment, results, strict=True):
                catalog.record_stage(run_id, stage.idx, [m])
            first = results[0]
            progress.advance(bar, docs=sum(v["docs"] for v in first["in"].values()),
                             nbytes=sum(v["bytes"] for v in first["in"].values()))
            yield results
        catalog.flush()


class LocalExecutor(Executor):
    """Units run on a spawn pool of ``workers`` processes on this machine (in this process for 1)."""

    name = "local"

    def _runner(self, shard_max_bytes: int) -> Runner:
        return Pool(self.workers)


def _tracked(pool: Runner, progress: Progress, label: str) -> PoolMap:
    """A fit's pool_map that shows a bar per pass (units done, and documents when a result counts them)."""
    def pool_map(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        bar = progress.add(f"  {label}: {fn.__name__.strip('_').replace('_', ' ')}", total=len(items))

        def tick(result: Any) -> None:
            docs = result.get("docs") if isinstance(result, dict) else None
            progress.advance(bar, docs=docs if isinstance(docs, int) else 0)

        return pool.ordered(fn, items, label=label, each=tick)

    return pool_map


def _side_inputs(stages: list[Stage], stage: Stage) -> dict[str, Path]:
    """The side outputs a stage ``uses``: the artifacts folder of the latest earlier sink publishing each."""
    found = {s.op.publish: s.artifacts for s in stages if s.idx < stage.idx
             and isinstance(s.op, SinkOperator) and s.op.publish}
    return {name: found[name] for name in stage.op.uses if name in found}


def _warn(message: str) -> None:
    logging.getLogger(__name__).warning(message)


def _files(folder: Path, markers: list[dict]) -> dict[Path, dict]:
    return {folder / rel: rec for m in markers for rel, rec in m["files"].items()}


def _write_report(out: Path, run_id: str, progress: Progress) -> None:
    """The quality report is part of every run, but a rendering problem must not fail a finished run."""
    from corpus.report import write_report

    try:
        html, _ = write_report(out, run_id)
        progress.log(f"report: {html}")
    except Exception as exc:  # noqa: BLE001
        log.warning("could not write the quality report: %s", exc)


def _segments(stages: list[Stage]) -> list[list[Stage]]:
    """Split at global operators (each needs the whole corpus fitted before its per-shard apply) and
    sinks (each a segment of its own: it reads the whole corpus and passes it on unchanged)."""
    segs: list[list[Stage]] = []
    for s in stages:
        if not segs or is_global(s.op) or isinstance(segs[-1][0].op, SinkOperator):
            segs.append([s])
        else:
            segs[-1].append(s)
    return segs


def _sink_folders(ops: list[Operator]) -> dict[str, int]:
    """Folders of the output that sinks publish their artifacts into (``tokens``), with the sink's position."""
    return {op.publish: i for i, op in enumerate(ops) if isinstance(op, SinkOperator) and op.publish}


def _publish_clashes(ops: list[Operator]) -> list[str]:
    """Two sinks may not publish into the same folder of the output."""
    seen: dict[str, str] = {}
    errors = []
    for i, op in enumerate(ops):
        name = op.publish if isinstance(op, SinkOperator) else None
        if name and name in seen:
            errors.append(f"pipeline[{i}] '{op.name}' publishes {name}/ like {seen[name]}: keep one")
        elif name:
            seen[name] = f"pipeline[{ops.index(op)}] '{op.name}'"
    return errors


def _quarantine_names(marker: dict) -> list[str]:
    """An input file's quarantine (relative to quarantine/): its Parquet and the side files of big records."""
    return ([marker["quarantine_file"]] if marker.get("quarantine_file") else []) + marker.get("quarantine_raw", [])


def _read_outputs(read_dir: Path, marker: dict) -> list[Path]:
    """The files an input file's read wrote."""
    return ([read_dir / "shards" / f"{s}.parquet" for s in marker["shards"]]
            + [read_dir / "quarantine" / name for name in _quarantine_names(marker)])


def _drop_stale_reads(read_dir: Path, current: set[str]) -> None:
    """Forget outputs of units no longer planned: input files no longer in the config (their index is past
    the current list), and a file's parts when it is now read otherwise (split differently, or whole)."""
    for marker in (read_dir / "done").glob("*.json") if (read_dir / "done").exists() else []:
        if marker.stem not in current:
            for path in _read_outputs(read_dir, json.loads(marker.read_bytes())):
                path.unlink(missing_ok=True)
            marker.unlink()


def _final_files(read_dir: Path, markers: list[dict], stages: list[Stage], shards: list[str],
                 files: dict[Path, dict]) -> dict[str, list[tuple[Path, str]]]:
    """What a run publishes, as (file in work/, path in the output): the final stage's shards that hold rows
    (data/), each per-shard stage's rejected rows (rejected/<label>/) and the quarantine (quarantine/)."""
    per_shard = [s for s in stages if not isinstance(s.op, SinkOperator)]
    final_dir = per_shard[-1].dir / "shards" if per_shard else read_dir / "shards"
    final: dict[str, list[tuple[Path, str]]] = {"data": [], "rejected": [], "quarantine": []}
    for s in shards:
        src = final_dir / f"{s}.parquet"
        if files[src]["rows"]:
            final["data"].append((src, f"data/{src.name}"))
    for st in per_shard:
        for s in shards:
            rej = st.dir / "rejected" / f"{s}.parquet"
            if rej in files:
                final["rejected"].append((rej, f"rejected/{st.label}/{rej.name}"))
    for m in markers:
        for rel in sorted(m["files"]):
            if rel.startswith("quarantine/"):
                final["quarantine"].append((read_dir / rel, rel))
    return final


def _publish(out: Path, final: dict[str, list[tuple[Path, str]]], stages: list[Stage], run_id: str,
             files: dict[Path, dict]) -> dict:
    """Expose the final corpus, rejected rows and quarantine (``_final_files``) as plain folders (hard links
    into work/), described in the manifest by the records their writers took (never by hashing them again
    here)."""
    staging = out / ".publish"
    remove_own(out, staging)
    published: dict[str, list[tuple[Path, dict]]] = {name: [] for name in final}
    for name, pairs in final.items():
        for src, rel in pairs:
            link_or_copy(src, staging / rel)
            published[name].append((out / rel, files[src]))
    sinks = {s.op.publish: s for s in stages if isinstance(s.op, SinkOperator) and s.op.publish}
    for name, st in sinks.items():  # a sink's artifacts, exposed as OUT/<name>/ (its own files listed there)
        rels = sorted(p.relative_to(st.artifacts).as_posix() for p in st.artifacts.rglob("*") if p.is_file())
        for rel in rels:
            link_or_copy(st.artifacts / rel, staging / name / rel)
        write_listing(staging / name, rels)
    for name in (*published, *sinks):
        remove_own(out, out / name)
        if (staging / name).exists():
            os.replace(staging / name, out / name)
    remove_own(out, staging)
    pipeline = [{"stage": s.label, **s.op.params()} for s in stages]
    return build_manifest(out, published["data"], published["rejected"], published["quarantine"],
                          {"run_id": run_id, "pipeline": pipeline})


def _balance(markers: list[dict], final: dict[str, list[tuple[Path, str]]]) -> list[dict]:
    """Per source: what the readers met (records and blank lines) == rows in the files the run is about to
    publish (``_final_files``: data/, rejected/, quarantine/'s Parquet, counted on disk in work/) + the
    blank lines they skipped."""
    seen: dict[str, int] = {}
    blank: dict[str, int] = {}
    for m in markers:
        seen[m["source"]] = seen.get(m["source"], 0) + m["seen"]
        blank[m["source"]] = blank.get(m["source"], 0) + m.get("blank", 0)
    data, rejected = [src for src, _ in final["data"]], [src for src, _ in final["rejected"]]
    kept, rej = count_by_source(data), count_by_source(rejected)
    quar = count_by_source([src for src, rel in final["quarantine"] if rel.count("/") == 1
                             and rel.endswith(".parquet")])  # not the side files of big records, raw/
    copies = count_by_source(data, copies=True)  # upsampled copies: not input, kept beside it
    rows = []
    for src in sorted(set(seen) | set(kept) | set(rej) | set(quar)):
        k, r, q, b = kept.get(src, 0), rej.get(src, 0), quar.get(src, 0), blank.get(src, 0)
        n = seen.get(src, 0) + b
        row = {"source": src, "input": n, "kept": k, "rejected": r, "quarantined": q, "blank": b,
               "ok": n == k + r + q + b}
        if copies:  # only runs that up-sample have copies to show
            row = {**row, "copies": copies.get(src, 0)}
        rows.append(row)
    return rows


def _collect_garbage(work: Path, keep: set[str]) -> None:
    """Remove stage folders of configs no longer in use (earlier versions of a changed pipeline)."""
    for d in work.iterdir():
        if d.is_dir() and d.name not in keep:
            remove_own(work.parent, d)
