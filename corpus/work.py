"""The work a worker process does: read one input file into shards, or push one shard through a run
of stages. Plain functions of one frozen job each (``IngestJob``, ``SegmentJob``), so any executor
(process pool, Ray) can call them.

``start_worker`` and ``job_in_worker`` are the process pool's side of a worker (corpus/executor.py
``Pool``): here, so a worker imports what units need and not the executor.

Every unit ends by writing a JSON marker (atomically) holding its counters; a marker whose key matches
means the unit is done and is skipped on resume.
"""

from __future__ import annotations

import ctypes
import json
import os
import pickle
import shutil
import signal
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import polars as pl
import pyarrow.parquet as pq

from corpus.errors import note_stage, note_worker
from corpus.integrity import record
from corpus.operators import FITTED, FilterOperator, MapOperator, Operator, Verdict, output_problem
from corpus.quarantine import RawStore
from corpus.readers import ReadTask, read_task
from corpus.readers.check import QuarantineShare
from corpus.readers.fields import FieldStats
from corpus.readers.fields import merge as merge_fields
from corpus.readers.plan import CountJob, count_lines
from corpus.schema import COPY_OF, REJECT_REASON, REJECT_STAGE, ROW_ID, SOURCE, TEXT, copy_marks
from corpus.writers import ShardWriter, link_or_copy, write_bytes_atomic, write_parquet

_RUNNING: Path | None = None  # in a worker: where it notes the unit it is running (see Pool._died)


def resolve_workers(workers: int) -> int:
    """A worker count as every command and API takes it: 0 is one per core."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be 0 (one per core) or more, got {workers!r}")
    return workers or os.cpu_count() or 1


def worker_env(threads: int) -> dict[str, str]:
    """The environment a worker process starts with, given its share of the cores: polars' and OpenBLAS's
    thread pools sized to it. OpenBLAS starts a thread per core when numpy loads, and they spin up to
    0.1 s before they sleep, while the workers start up side by side (0.1 CPU s over the two workers of
    a 2-core machine, docs/benchmarks.md). At one thread it starts none."""
    n = str(max(1, threads))
    return {"POLARS_MAX_THREADS": n, "OPENBLAS_NUM_THREADS": n}


def start_worker(running: str, parent: int | None = None) -> None:
    """A pool worker's initializer (``parent``: the driver's pid)."""
    global _RUNNING
    _RUNNING = Path(running)
    die_with_parent(parent)


def die_with_parent(parent: int | None = None) -> None:
    """Make this worker process die with its parent (``parent``: the parent's pid, checked once)."""
    # A SIGKILLed run must not leave workers writing into a folder the next run will lock (or holding
    # the folder's lock: a forked worker shares the run's lock file).
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    # A driver killed while this worker was still importing is gone before the signal was asked for: the
    # worker would wait for work for ever (it holds the queue's write end itself, so it never sees EOF).
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def worker_ready() -> None:
    """Nothing: submitted once per worker so that the pool starts them all at once."""


def job_in_worker(payload: bytes) -> Any:
    """Run one unit in a pool worker, noting which (a file per worker survives the worker being killed;
    a queue might not). payload: (fn, label, job) as the driver pickled them (``pack_job``)."""
    fn, label, job = pickle.loads(payload)  # noqa: S301 (the driver's own bytes, as the pool's queue carries)
    if _RUNNING is not None:
        (_RUNNING / str(os.getpid())).write_text(label)
    try:
        return fn(job)
    except Exception as exc:
        note_worker(exc, label)
        raise


def pack_job(fn: Callable[[Any], Any], label: str, job: Any) -> bytes:
    """A unit for job_in_worker. By cloudpickle: an operator defined in a notebook, `python -c` or a
    script read from stdin lives in a ``__main__`` that a spawned worker cannot import, so its class
    travels by value (as Ray's and Dask's tasks do); everything importable still goes by reference."""
    try:
        return cloudpickle.dumps((fn, label, job))
    except Exception as exc:  # noqa: BLE001 - pickling raises TypeError, PicklingError, AttributeError...
        raise OperatorError(_unpicklable(label, job, exc)) from exc


def _unpicklable(label: str, job: Any, exc: Exception) -> str:
    """Why a unit cannot travel to a worker process: the stage whose operator holds what cannot be pickled
    (and which attribute), where one is to blame."""
    why = f"{type(exc).__name__}: {exc}"
    for stage in getattr(job, "stages", ()):
        try:
            cloudpickle.dumps(stage.op)
        except Exception:  # noqa: BLE001
            bad = []
            for attr, value in vars(stage.op).items():
                try:
                    cloudpickle.dumps(value)
                except Exception:  # noqa: BLE001
                    bad.append(f"{attr} ({type(value).__name__})")
            held = f", in its attribute(s) {', '.join(bad)}" if bad else ""
            return (f"stage {stage.label}: operator {type(stage.op).__name__} cannot be sent to a worker process "
                    f"({why}{held}): an operator's attributes must be picklable to run on worker processes "
                    f"(workers > 1); make what cannot be (locks, open files, clients, models) in setup(), which "
                    f"runs in each worker, or run with workers: 1")
    return (f"cannot send {label} to a worker process ({why}): what a stage hands to its pool_map (the function "
            f"and each item) must be picklable")


class OperatorError(RuntimeError):
    """An operator broke the contract (wrong mask length, dropped rows in a map, missing columns)."""


@dataclass(frozen=True)
class Stage:
    idx: int  # 1-based position in the pipeline (0 is reading)
    op: Operator
    key: str
    dir: Path

    @property
    def label(self) -> str:
        return f"{self.idx:02d}-{self.op.name}"

    @property
    def artifacts(self) -> Path:
        """The stage's own folder for what it writes besides documents (fitted state, side outputs)."""
        return self.dir / "artifacts"


def stage_dir(work: Path, idx: int, name: str, key: str) -> Path:
    """Where stage ``idx`` (operator ``name``, chain key ``key``) keeps its shards, markers and artifacts."""
    return work / f"{idx:02d}-{name}-{key[:12]}"


@dataclass(frozen=True)
class IngestJob:
    """Read one input file into shards of at most ``shard_max_bytes`` of text."""

    task: ReadTask
    key: str
    stage_dir: Path
    shard_max_bytes: int
    chunk_bytes: int
    watch: bool = False  # judge this file's quarantine share as it is read (its input's only file)
    lines: int | None = None  # a part of a line file: its line ends (recorded, so a resume need not count)


@dataclass(frozen=True)
class SegmentJob:
    """Push one shard (``input_path``) through consecutive per-shard stages."""

    shard: str
    input_path: Path
    stages: tuple[Stage, ...]


STAGE_DONE = "_done.json"  # a whole-corpus stage's (fit or sink) marker in its folder, written when it ends


def whole_stage_done(folder: Path, key: str) -> bool:
    """Whether the whole-corpus stage in ``folder`` (chain key ``key``) finished."""
    return read_marker(folder / STAGE_DONE, key) is not None


def read_marker(path: Path, key: str) -> dict | None:
    try:
        marker = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return marker if marker.get("key") == key else None


def write_marker(path: Path, marker: dict) -> None:
    write_bytes_atomic(path, json.dumps(marker, sort_keys=True).encode())


def _by_source(df: pl.DataFrame) -> dict[str, dict[str, int]]:
    if df.height == 0:
        return {}
    g = df.group_by(SOURCE).agg(pl.len().alias("docs"), pl.col(TEXT).str.len_bytes().sum().alias("bytes"))
    return {r[SOURCE]: {"docs": int(r["docs"]), "bytes": int(r["bytes"] or 0)} for r in g.iter_rows(named=True)}


# ---------------------------------------------------------------- reading


def ingest(job: IngestJob) -> dict:
    """Read one input file (or one part of a big one) into `<source>-<unit>-<n>.parquet` shards plus its
    quarantine file (and the side files of quarantined records over max_doc_bytes, in
    quarantine/raw/<source>-<unit>/); <unit> is the file's number, and `-p<part>` for a part."""
    task, key, stage_dir, shard_max_bytes, chunk_bytes = (job.task, job.key, job.stage_dir, job.shard_max_bytes,
                                                          job.chunk_bytes)
    start = time.perf_counter()
    prefix = f"{_safe(task.spec.source)}-{task.unit}"
    shards_dir, quar_dir = stage_dir / "shards", stage_dir / "quarantine"
    # (-[0-9]*: a whole file's leftovers, never the shards of its parts, -p<part>-<n>)
    for old in list(shards_dir.glob(f"{prefix}-[0-9]*.parquet")) + list(quar_dir.glob(f"{prefix}.parquet")):
        old.unlink()  # leftovers of an interrupted attempt; this attempt rewrites them identically
    raw = RawStore(quar_dir, prefix)
    shutil.rmtree(raw.folder, ignore_errors=True)
    docs = ShardWriter(shards_dir, prefix, shard_max_bytes)
    bad = ShardWriter(quar_dir, prefix, None)
    seen = blank = n_docs = n_bad = bytes_read = text_bytes = 0
    kinds: dict[str, int] = defaultdict(int)
    share = QuarantineShare([task]) if job.watch else None
    fields: FieldStats = {}
    try:
        for chunk in read_task(task, chunk_bytes=chunk_bytes, sink=raw):
            if chunk.seen != chunk.docs.height + chunk.bad.height:
                raise RuntimeError(
                    f"reader lost records in {task.path}: saw {chunk.seen}, "
                    f"returned {chunk.docs.height} documents + {chunk.bad.height} quarantined"
                )
            docs.write(chunk.docs)
            bad.write(chunk.bad)
            seen += chunk.seen
            blank += chunk.blank
            n_docs += chunk.docs.height
            n_bad += chunk.bad.height
            bytes_read += chunk.bytes_read
            text_bytes += int(chunk.docs[TEXT].str.len_bytes().sum() or 0)
            chunk_kinds = dict(chunk.bad["kind"].value_counts().iter_rows())
            for kind, n in chunk_kinds.items():
                kinds[kind] += n
            if share is not None:
                share.add(task.spec.source, chunk.seen, chunk_kinds)
                share.check(task.spec.source)
            merge_fields(fields, chunk.extra.get("fields", {}))
    except BaseException:
        docs.abort()
        bad.abort()
        shutil.rmtree(raw.folder, ignore_errors=True)
        raise
    shards = docs.close()
    quarantine = bad.close()
    lines = job.lines
    if lines is None and task.part is not None and task.end is not None and task.format != "parquet":
        lines = count_lines(CountJob(task.path, task.start, task.end))  # for a resume that reads later parts
    marker = {
        "key": key,
        "task": task.index,
        "unit": task.unit,
        "part": task.part,
        "lines": lines,
        "source": task.spec.source,
        "file": task.rel_path,
        "shards": [s["name"].removesuffix(".parquet") for s in shards],
        "seen": seen,  # records; input = seen + blank
        "blank": blank,  # blank lines skipped
        "docs": n_docs,
        "quarantined": n_bad,
        "quarantine_kinds": dict(kinds),
        "fields": fields,  # top-level fields of the file's records, with their types (schema drift)
        "quarantine_file": f"{prefix}.parquet" if n_bad else None,
        "quarantine_raw": raw.names,  # side files, relative to quarantine/
        # what this unit wrote, as written (paths relative to the stage folder): resume and publish check these
        "files": {**{f"{d}/{s['name']}": s["record"] for d, out in (("shards", shards), ("quarantine", quarantine))
                     for s in out}, **{f"quarantine/{n}": rec for n, rec in raw.records.items()}},
        "bytes_in": bytes_read,
        "bytes_out": text_bytes,
        "seconds": time.perf_counter() - start,
    }
    write_marker(stage_dir / "done" / f"{task.unit}.json", marker)
    return marker


_SUMMED = ("seen", "blank", "docs", "quarantined", "bytes_in", "bytes_out", "seconds")


def merge_parts(markers: list[dict]) -> list[dict]:
    """Read markers per input file: the markers of a big file's parts (consecutive, in part order) as one,
    as if it had been read whole (its shards in order, counts summed, fields merged)."""
    out: list[dict] = []
    for m in markers:
        if m.get("part") and out and out[-1]["task"] == m["task"]:
            acc = out[-1]
            acc["shards"] = acc["shards"] + m["shards"]
            acc["files"] = {**acc["files"], **m["files"]}
            for k in _SUMMED:
                acc[k] = acc[k] + m[k]
            acc["quarantine_kinds"] = {k: acc["quarantine_kinds"].get(k, 0) + m["quarantine_kinds"].get(k, 0)
                                       for k in {**acc["quarantine_kinds"], **m["quarantine_kinds"]}}
            fields: FieldStats = json.loads(json.dumps(acc.get("fields") or {}))
            merge_fields(fields, m.get("fields") or {})
            acc["fields"] = fields
        else:
            out.append(dict(m))
    return out


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


# ---------------------------------------------------------------- stages

# Operators set up (and global state loaded) in this process, by stage key and folder: each job arrives
# with a fresh unpickled copy, but models and fitted state are loaded once per worker. (A Ray worker
# outlives a run: the folder tells apart two runs of one config into two outputs.)
_ready: dict[tuple[str, Path], Operator] = {}


def _prepare(stage: Stage) -> Operator:
    key = (stage.key, stage.dir)
    if key not in _ready:
        stage.op.setup()
        if isinstance(stage.op, FITTED):
            stage.op.load(stage.artifacts)
        _ready[key] = stage.op
    return _ready[key]


def apply_op(op: Operator, df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Run one operator on a frame; returns (kept, rejected-or-None) and enforces the contract."""
    if isinstance(op, MapOperator):
        out = op.map(df)
        if not isinstance(out, pl.DataFrame) or out.height != df.height:
            if isinstance(out, pl.DataFrame):
                got = f"{out.height} rows"
            else:  # a pandas frame, a LazyFrame, None: say which, by its module
                kind = type(out)
                got = kind.__name__ if out is None else f"a {kind.__module__.split('.')[0]}.{kind.__name__}"
            raise OperatorError(f"map operator '{op.name}' must return a DataFrame of {df.height} rows (a "
                                f"polars.DataFrame: the frame it was given, its declared columns added or "
                                f"rewritten), got {got}")
        _check(op, df, out)
        return out, None
    if not isinstance(op, FilterOperator):
        raise OperatorError(f"operator '{op.name}' of kind {op.kind!r} does not run per shard")
    verdict = op.filter(df)
    if not isinstance(verdict, Verdict):
        raise OperatorError(f"filter operator '{op.name}' must return a Verdict, got {type(verdict).__name__}")
    keep, reason, scores = _verdict(op, verdict, df.height)
    if COPY_OF in scores:  # only copies name an original: a score may carry an earlier stage's marks, not make some
        earlier = copy_marks(df)
        if not scores[COPY_OF].equals(earlier):
            raise OperatorError(f"filter operator '{op.name}' returned a {COPY_OF!r} score that marks rows as copies: "
                                f"it names originals only on the copies it returns (Verdict.copies); a score "
                                f"keeps the column as it came in")
    if not scores and verdict.copies is None and keep.all():  # changes nothing: passes on (hard-linked)
        _check(op, df, df)
        return df, None
    scored = df.with_columns([s.alias(name) for name, s in scores.items()]) if scores else df
    _check(op, df, scored)
    rejected = scored.filter(~keep).with_columns(pl.lit(op.name).alias(REJECT_STAGE),
                                                 reason.filter(~keep).alias(REJECT_REASON))
    kept = scored.filter(keep)
    if verdict.copies is not None and verdict.copies.height:
        _check_copies(op, kept, verdict.copies)
        kept = pl.concat([kept, verdict.copies])
    return kept, rejected


def _series(value: Any, name: str) -> pl.Series | None:
    """A Verdict's per-row values as a Series: a Series, or a list, tuple or numpy array of them; else None."""
    if isinstance(value, pl.Series):
        return value
    if isinstance(value, list | tuple) or type(value).__module__ == "numpy":
        try:
            return pl.Series(name, value)
        except (TypeError, ValueError, pl.exceptions.PolarsError):
            return None
    return None


def _verdict(op: Operator, verdict: Verdict, height: int) -> tuple[pl.Series, pl.Series, dict[str, pl.Series]]:
    """A filter's Verdict checked against the frame it judged (``height`` rows): its keep mask, a reason per
    row (String; every dropped row has one) and its score columns."""
    where = f"filter operator '{op.name}' returned"
    keep = _series(verdict.keep, "keep")
    if keep is None:
        raise OperatorError(f"{where} a keep mask of type {type(verdict.keep).__name__}: give a polars Series of "
                            "booleans (a list or numpy array of them will do), one per row")
    if keep.len() == 0 and keep.dtype == pl.Null:  # [True] * 0 of an emptied shard: no values, no type
        keep = keep.cast(pl.Boolean)
    if keep.len() != height or keep.dtype != pl.Boolean or keep.null_count():
        raise OperatorError(
            f"{where} a keep mask of {keep.len()} {keep.dtype} values ({keep.null_count()} null) for {height} rows; "
            "it must be one non-null bool per row"
        )
    if isinstance(verdict.reason, str):
        reason = pl.Series(REJECT_REASON, [verdict.reason] * height, pl.String)
    else:
        given = _series(verdict.reason, REJECT_REASON)
        if given is None:
            raise OperatorError(f"{where} a reason of type {type(verdict.reason).__name__}: give one string, or a "
                                "Series of strings with one per row")
        if given.len() != height:
            raise OperatorError(f"{where} a reason Series of {given.len()} values for {height} rows: give one per "
                                "row (or one string for all)")
        reason = given.cast(pl.String, strict=False)
    missing = int(((reason.is_null() | (reason == "")) & ~keep).sum())
    if missing:
        raise OperatorError(f"{where} no reason (null or \"\") for {missing} of the {int((~keep).sum())} rows it "
                            "dropped: every dropped row needs a reason, which rejected/ and the catalog record")
    if verdict.copies is not None and not isinstance(verdict.copies, pl.DataFrame):
        raise OperatorError(f"{where} copies of type {type(verdict.copies).__name__}: give a DataFrame (or None)")
    _, adds, modifies = op.columns()
    undeclared = [name for name in verdict.scores if name not in adds and name not in modifies]
    if undeclared:
        raise OperatorError(f"{where} score(s) {undeclared} it declares neither in `adds` nor in `modifies`")
    scores = {}
    for name, value in verdict.scores.items():
        score = _series(value, name)
        if score is None or score.len() != height:
            got = f"{score.len()} values" if score is not None else f"a {type(value).__name__}"
            raise OperatorError(f"{where} score {name!r} as {got} for {height} rows: give a Series (or a list or "
                                "numpy array) with one value per row")
        scores[name] = score
    return keep, reason.alias(REJECT_REASON), scores


def _check_copies(op: Operator, kept: pl.DataFrame, copies: pl.DataFrame) -> None:
    """Copies (upsampling) have the kept rows' columns, name a kept row in copy_of_row and have row_ids
    of their own: every row keeps a unique identity, and the balance can count originals only."""
    where = f"filter operator '{op.name}' returned copies"
    if copies.schema != kept.schema:
        raise OperatorError(f"{where} with columns {dict(copies.schema)}, not the kept rows' {dict(kept.schema)}")
    if COPY_OF not in copies.columns or copies[COPY_OF].null_count():
        raise OperatorError(f"{where} without {COPY_OF!r} naming each one's original")
    if not copies[COPY_OF].is_in(kept[ROW_ID].implode()).all():
        raise OperatorError(f"{where} of rows it did not keep")
    ids = pl.concat([kept[ROW_ID], copies[ROW_ID]])
    if ids.n_unique() != ids.len():
        raise OperatorError(f"{where} whose {ROW_ID} repeats another row's")


def _check(op: Operator, before: pl.DataFrame, after: pl.DataFrame) -> None:
    problem = output_problem(op, before, after)
    if problem:
        raise OperatorError(problem)


def _counters(op: Operator, frames: list[pl.DataFrame | None]) -> dict[str, dict[str, int]]:
    """Per source, the sums of the operator's counter columns over every row it saw (kept and rejected)."""
    out: dict[str, dict[str, int]] = {}
    for df in frames:
        if not op.counters or df is None or df.height == 0:
            continue
        sums = df.group_by(SOURCE).agg([pl.col(c).cast(pl.Int64).sum() for c in op.counters])
        for r in sums.iter_rows(named=True):
            acc = out.setdefault(r[SOURCE], dict.fromkeys(op.counters, 0))
            for c in op.counters:
                acc[c] += int(r[c] or 0)
    return out


def run_segment(job: SegmentJob) -> list[dict]:
    """Push one shard through consecutive per-shard stages, skipping those already done."""
    shard, input_path, stages = job.shard, job.input_path, job.stages
    results: list[dict] = []
    df: pl.DataFrame | None = None
    prev_output = input_path
    for stage in stages:
        marker_path = stage.dir / "done" / f"{shard}.json"
        out_path = stage.dir / "shards" / f"{shard}.parquet"
        marker = read_marker(marker_path, stage.key)
        if marker is not None and out_path.exists():
            results.append(marker | {"resumed": True})
            df, prev_output = None, out_path
            continue
        start = time.perf_counter()
        if df is None:
            df = pl.read_parquet(prev_output)
        try:
            kept, rejected = apply_op(_prepare(stage), df)
        except OperatorError as exc:  # the stage, as the catalog and the report label it
            exc.args = (f"stage {stage.label}: {exc}", *exc.args[1:])
            raise
        except Exception as exc:  # the operator's own error (its setup, load, map or filter): which stage
            note_stage(exc, stage.label)
            raise
        rej_path = stage.dir / "rejected" / f"{shard}.parquet"
        rej_path.unlink(missing_ok=True)
        files = {}
        if rejected is not None and rejected.height:
            files[f"rejected/{shard}.parquet"] = write_parquet(rejected, rej_path)
        if kept is df and rejected is None:
            link_or_copy(prev_output, out_path)  # a pass-through stage (profile, tokenize): no rewrite
            files[f"shards/{shard}.parquet"] = record(out_path, kept.height)  # the input, checked before it ran
        else:
            files[f"shards/{shard}.parquet"] = write_parquet(kept, out_path)
        reasons: dict[str, dict[str, int]] = defaultdict(dict)
        if rejected is not None and rejected.height:
            for src, why, n in rejected.group_by(SOURCE, REJECT_REASON).len().iter_rows():
                reasons[src][why] = n
        marker = {
            "key": stage.key,
            "shard": shard,
            "stage": stage.label,
            "in": _by_source(df),
            "out": _by_source(kept),
            "rejected": dict(reasons),
            "counters": _counters(stage.op, [kept, rejected]),
            "files": files,
            "seconds": time.perf_counter() - start,
        }
        write_marker(marker_path, marker)
        results.append(marker | {"resumed": False})
        df, prev_output = kept, out_path
    return results


def shard_rows(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows
