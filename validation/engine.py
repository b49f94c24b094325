"""Running a suite over a corpus: row rules part by part on the pool, corpus figures over the whole.

GX's pandas engine holds what it validates in memory, so the corpus is handed to it in two ways:

* **per part** (a shard, a file, a range of token documents; on the executor's pool, one batch of at most
  about ``BATCH_BYTES`` at a time): the row-local map expectations (``gx.scope`` 'row': each row passes
  or fails on its own) and the schema ones. A row expectation's counts (rows, missing, unexpected) are
  added up over the parts and its ``mostly`` decided on the sums, with GX's own rule; schema ones must
  hold in every part.
* **over the whole corpus** (in the calling process): every other expectation (aggregates, uniqueness,
  distinct values, row counts, anything marked ``meta.scope: corpus``) runs once on a frame of only the
  columns those expectations name, which the parts write as they go (``projection/``). A duplicate rate
  or a source mix is thus the corpus's, never a shard's.

Rows are named by ``row_id`` (unique by construction; parts without one get ``(part << 40) | row``).
With ``rejects``, every unexpected row of a critical row-level or corpus-level map expectation is
written to ``rejects/`` as (row_id, expectation), for a gate that quarantines them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from corpus.schema import ROW_BITS, ROW_ID
from corpus.validation import gx
from corpus.validation.suites import Suite, SuiteError, missing
from corpus.writers import write_parquet

FORMAT = "corpusforge.validation/1"
BATCH_BYTES = 64 << 20  # of data handed to GX at a time (its pandas frame and temporaries are a few times this)
VALUE_CHARS = 200  # example values are cut to this many characters
SCHEMA_ROWS = 1000  # rows of each batch the schema expectations see (list columns' values are checked one by one)
REJECTS = "rejects"


@dataclass(frozen=True)
class Part:
    """A piece of a table one worker validates: ``read(*args)`` yields its frames (bounded batches)."""

    index: int  # position in its table: the row identity prefix when the data has no row_id
    name: str  # for messages and examples: the file, or "train.bin documents 0-99,999"
    read: Callable[..., Iterator[pl.DataFrame]]
    args: tuple = ()
    bytes: int = 0  # its files' bytes on disk (or its share of them), which size a command's pool (0: not known)


@dataclass(frozen=True)
class Table:
    """What a suite (or the part of it about this table) is run against."""

    name: str  # "documents", or for token shards "documents" and "files"
    columns: dict[str, Any]  # name -> polars type, as the data has them
    parts: tuple[Part, ...]
    derived: dict[str, str] = field(default_factory=dict)  # columns computed on demand -> the column they need
    derive: Callable[[pl.DataFrame, Sequence[str]], pl.DataFrame] | None = None
    id_column: str | None = None  # shown beside row_id in examples
    where: str = "the data"  # for the missing-column message


@dataclass(frozen=True)
class PartJob:
    part: Part
    table: str
    suite: Suite
    local: tuple[int, ...]  # row and schema expectations run in each batch
    derive: tuple[str, ...]  # derived columns to compute
    derive_fn: Callable[[pl.DataFrame, Sequence[str]], pl.DataFrame] | None
    project: tuple[str, ...]  # columns the corpus-level expectations read (written to projection/)
    rejects: tuple[int, ...]  # expectations whose unexpected rows are written to rejects/
    show: tuple[str, ...]  # index columns of examples (row_id, and the id column when there is one)
    workdir: Path
    examples: int


def route(suite: Suite, tables: Sequence[Table]) -> dict[str, list[int]]:
    """Which table each expectation runs on: the one its ``meta.table`` names, else the first table that
    has every column it names (a token suite's files/documents), else the first table."""
    names = [t.name for t in tables]
    out: dict[str, list[int]] = {n: [] for n in names}
    for i, e in enumerate(suite.entries):
        want = (e.get("meta") or {}).get("table")
        if want is not None and want not in names:
            raise SuiteError(f"{suite.where(i)}: meta.table must be one of {', '.join(names)}, got {want!r}")
        if want is None:
            cols = suite.columns(i)
            want = next((t.name for t in tables if cols and set(cols) <= set(t.columns) | set(t.derived)),
                        names[0])
        out[want].append(i)
    return out


def validate(suite: Suite, tables: Sequence[Table], pool_map: Callable[[Callable, Sequence], list], workdir: Path,
             rejects: bool = False, examples: int = 5) -> dict:
    """Run the suite; returns the results document (see docs/validation.md): per expectation its
    success, observed value, counts and examples, and the suite's success (no critical failure).
    ``rows``: the rows of the first table (the documents)."""
    start = time.perf_counter()
    routed = route(suite, tables)
    results: dict[int, dict] = {}
    rows = None
    for table in tables:
        found, n = _table(suite, table, routed[table.name], pool_map, workdir, rejects, examples)
        results.update(found)
        rows = n if rows is None else rows
    ordered = [results[i] for i in range(len(suite.entries))]
    failed = [r["label"] for r in ordered if not r["success"] and r["severity"] == "critical"]
    warned = [r["label"] for r in ordered if not r["success"] and r["severity"] != "critical"]
    return {"format": FORMAT, "suite": suite.name, "path": suite.path, "sha256": suite.sha256, "kind": suite.kind,
            "engine": f"great_expectations {gx.version()} (pandas)", "rows": rows or 0, "success": not failed,
            "failed": failed, "warnings": warned, "expectations": ordered,
            "seconds": round(time.perf_counter() - start, 3)}


def _table(suite: Suite, table: Table, own: list[int], pool_map: Callable, workdir: Path, rejects: bool,
           examples: int) -> tuple[dict[int, dict], int]:
    """The results of the expectations ``own`` on one table, and its rows."""
    if not own:
        return {}, 0
    missing(suite, own, set(table.columns), table.where, table.derived)
    have = set(table.columns) | set(table.derived)
    local = tuple(i for i in own if suite.scope(i) in ("row", "schema"))
    whole = [i for i in own if i not in local]
    show = (ROW_ID, *([table.id_column] if table.id_column and table.id_column in table.columns else []))
    # The corpus-level expectations' columns (and the row names) are kept from every part for the whole pass.
    project = tuple(dict.fromkeys((*show, *(c for i in whole for c in suite.columns(i, have))))) if whole else ()
    derive = tuple(c for c in table.derived if c not in table.columns and
                   any(c in suite.columns(i, have) for i in own))
    crit = tuple(i for i in own if suite.severity(i) == "critical" and names_rows(suite, i)) if rejects else ()
    jobs = [PartJob(p, table.name, suite, local, derive, table.derive, project, crit, show, workdir, examples)
            for p in table.parts]
    done = pool_map(check_part, jobs) if jobs else []
    out = {i: _merge(suite, i, [d["results"][i] for d in done], examples) for i in local}
    todo = whole if done else own  # no parts at all: everything runs on an empty frame of the table's columns
    if todo:
        written = [p for d in done for p in d["projection"]]
        frame = _projection(table, project, written, {d["part"]: d["projection"] for d in done})
        for path in written:  # read: the whole pass holds them in memory now
            Path(path).unlink()
        if written:
            Path(written[0]).parent.rmdir()
        fmt = _format(show, examples, complete=bool(set(crit) & set(todo)))
        schema = [i for i in todo if suite.scope(i) == "schema"]
        found = gx.run(gx.to_pandas(frame), [(i, suite.entries[i]) for i in todo if i not in schema], fmt)
        found |= gx.run(gx.to_pandas(pl.DataFrame(schema=table.columns), nullable=True),
                        [(i, suite.entries[i]) for i in schema], fmt)
        for i in todo:
            _raise_error(suite, i, found[i], "the whole corpus")
            out[i] = _final(suite, i, found[i], examples)
            if i in crit:
                _write_rejects(workdir, f"{table.name}-whole", i, found[i]["result"].get("unexpected_index_list"))
    for i in own:
        out[i]["table"] = table.name
    return out, sum(d["rows"] for d in done)


def names_rows(suite: Suite, i: int) -> bool:
    """Does a failure of expectation i name rows (a map expectation, not a share)?"""
    if (suite.entries[i].get("meta") or {}).get("scope") == "corpus":
        return False
    return suite.scope(i) == "row" or suite.entries[i]["type"] in gx.WHOLE_COLUMN_MAPS


def _format(show: Sequence[str], examples: int, complete: bool) -> dict:
    return {"result_format": "COMPLETE" if complete else "SUMMARY", "unexpected_index_column_names": list(show),
            "partial_unexpected_count": max(examples, 1)}


# ---------------------------------------------------------------- one part (in a worker)


def check_part(job: PartJob) -> dict:
    """Validate one part batch by batch; returns per expectation the counts and examples of the part,
    and writes its projection and rejects."""
    suite, part = job.suite, job.part
    acc: dict[int, dict] = {i: {"n": 0, "missing": 0, "unexpected": 0, "examples": [], "success": True,
                                "observed": None, "failed_observed": None} for i in job.local}
    rows = 0
    projection: list[str] = []
    rejected: list[pl.DataFrame] = []
    fmt = _format(job.show, job.examples, complete=bool(job.rejects))
    entries = [(i, suite.entries[i]) for i in job.local]
    schema = [(i, e) for i, e in entries if suite.scope(i) == "schema"]
    per_row = [(i, e) for i, e in entries if suite.scope(i) != "schema"]
    for k, own in enumerate(part.read(*part.args)):
        # Schema expectations see the data's own columns (types are per column: a slice answers for the
        # batch); the rest also see row_id and derived columns.
        found = gx.run(gx.to_pandas(own.head(SCHEMA_ROWS), nullable=True),
                       [(i, e) for i, e in schema if _runnable(suite, i, own)], fmt)
        df = own
        if ROW_ID not in df.columns:
            df = df.with_columns(((pl.int_range(1, df.height + 1, dtype=pl.Int64) + rows)
                                  | (part.index << ROW_BITS)).alias(ROW_ID))
        missing(suite, [i for i, _ in per_row] + _whole_indexes(job), set(df.columns) | set(job.derive), part.name)
        if job.derive and job.derive_fn is not None:
            try:
                df = job.derive_fn(df, job.derive)
            except (ValueError, pl.exceptions.PolarsError) as exc:
                raise SuiteError(f"{part.name}: cannot compute {', '.join(job.derive)}: {exc}") from None
        rows += df.height
        found |= gx.run(gx.to_pandas(df), per_row, fmt)
        for i in job.local:
            res = found.get(i) or _column_missing(suite, i, df)
            _raise_error(suite, i, res, part.name)
            _add(acc[i], suite, i, res, job.examples)
            if i in job.rejects:
                rejected.append(_reject_frame(i, res["result"].get("unexpected_index_list")))
        if job.project:
            path = job.workdir / "projection" / f"{job.table}-{part.index:05d}-{k:04d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            df.select(job.project).write_parquet(path)
            projection.append(str(path))
    if job.rejects:
        frames = [f for f in rejected if f.height]
        if frames:
            write_parquet(pl.concat(frames), job.workdir / REJECTS / f"{job.table}-{part.index:05d}.parquet")
    return {"part": part.index, "rows": rows, "results": acc, "projection": projection}


def _whole_indexes(job: PartJob) -> list[int]:
    """The corpus-level expectations whose columns this part must have for the projection."""
    return [i for i in range(len(job.suite.entries)) if i not in job.local and
            set(job.suite.columns(i)) <= set(job.project)] if job.project else []


def _runnable(suite: Suite, i: int, df: pl.DataFrame) -> bool:
    """A schema expectation about a column the batch lacks is answered without GX (it fails)."""
    return not (suite.scope(i) == "schema" and any(c not in df.columns for c in suite.columns(i)))


def _column_missing(suite: Suite, i: int, df: pl.DataFrame) -> dict:
    gone = [c for c in suite.columns(i) if c not in df.columns]
    return {"success": False, "result": {"observed_value": f"no column {', '.join(map(repr, gone))}"}, "error": None}


def _raise_error(suite: Suite, i: int, res: dict, where: str) -> None:
    if res.get("error"):
        raise SuiteError(f"{suite.where(i)}: Great Expectations could not evaluate it on {where}: {res['error']}")


def _add(a: dict, suite: Suite, i: int, res: dict, examples: int) -> None:
    r = res["result"]
    if suite.scope(i) == "schema":
        a["success"] = a["success"] and res["success"]
        a["observed"] = a["observed"] if a["observed"] is not None else r.get("observed_value")
        if not res["success"] and a["failed_observed"] is None:
            a["failed_observed"] = r.get("observed_value")
        return
    a["n"] += r.get("element_count") or 0
    a["missing"] += r.get("missing_count") or 0
    a["unexpected"] += r.get("unexpected_count") or 0
    if len(a["examples"]) < examples:
        shown = r.get("unexpected_index_list") or r.get("partial_unexpected_index_list") or []
        a["examples"] += [_example(x) for x in shown[: examples - len(a["examples"])]]


def _example(x: Any) -> dict:
    """{row_id, id?, value}: the unexpected value(s) of a row, cut short."""
    if not isinstance(x, dict):
        return {"value": _cut(x)}
    out = {k: x[k] for k in (ROW_ID, "id") if k in x}
    rest = {k: _cut(v) for k, v in x.items() if k not in out} or {k: v for k, v in x.items() if k != ROW_ID}
    out["value"] = next(iter(rest.values())) if len(rest) == 1 else rest
    return out


def _cut(v: Any) -> Any:
    if isinstance(v, str) and len(v) > VALUE_CHARS:
        return v[:VALUE_CHARS] + f"... ({len(v):,} characters)"
    return v


def _reject_frame(i: int, index_list: list | None) -> pl.DataFrame:
    ids = [x[ROW_ID] for x in index_list or [] if isinstance(x, dict) and x.get(ROW_ID) is not None]
    return pl.DataFrame({ROW_ID: ids, "expectation": [i] * len(ids)},
                        schema={ROW_ID: pl.Int64, "expectation": pl.Int32})


def _write_rejects(workdir: Path, name: str, i: int, index_list: list | None) -> None:
    df = _reject_frame(i, index_list)
    if df.height:
        write_parquet(df, workdir / REJECTS / f"{name}-{i:04d}.parquet")


# ---------------------------------------------------------------- merging


def _merge(suite: Suite, i: int, parts: list[dict], examples: int) -> dict:
    """One expectation's result over every part."""
    if suite.scope(i) == "schema":
        ok = all(p["success"] for p in parts)
        bad = next((p["failed_observed"] for p in parts if not p["success"]), None)
        observed = bad if not ok else next((p["observed"] for p in parts if p["observed"] is not None), None)
        return _record(suite, i, ok, observed)
    n = sum(p["n"] for p in parts)
    miss = sum(p["missing"] for p in parts)
    unexpected = sum(p["unexpected"] for p in parts)
    considered = n - miss
    mostly = float((suite.entries[i]["kwargs"]).get("mostly", 1.0))
    ok = True if n == 0 or considered == 0 else gx.mostly_success(considered, unexpected, mostly)
    shown = [x for p in parts for x in p["examples"]][:examples]
    return _record(suite, i, ok, None, n=n, missing=miss, unexpected=unexpected, examples=shown)


def _final(suite: Suite, i: int, res: dict, examples: int) -> dict:
    """A result GX computed over the whole corpus: counts of rows when it names rows (uniqueness), else
    its observed value (for distinct-value expectations, the values that were not expected)."""
    r = res["result"]
    counts, shown, observed = {}, [], r.get("observed_value")
    if "element_count" in r:
        counts = {"n": r["element_count"] or 0, "missing": r.get("missing_count") or 0,
                  "unexpected": r.get("unexpected_count") or 0}
        shown = r.get("partial_unexpected_index_list") or r.get("unexpected_index_list") or []
    elif observed is None and r.get("partial_unexpected_list"):
        observed = {"unexpected_values": r["partial_unexpected_list"]}
    rec = _record(suite, i, res["success"], observed, examples=[_example(x) for x in shown[:examples]], **counts)
    if r.get("details"):
        rec["details"] = _details(r["details"])
    return rec


def _details(d: Any) -> Any:
    """GX's details, without its long value lists (a partition object of every distinct value)."""
    if isinstance(d, dict):
        return {k: _details(v) for k, v in d.items() if k not in ("observed_partition", "expected_partition")}
    if isinstance(d, list) and len(d) > 50:
        return d[:50] + [f"... {len(d) - 50} more"]
    return d


def _record(suite: Suite, i: int, ok: bool, observed: Any, n: int | None = None, missing: int | None = None,
            unexpected: int | None = None, examples: list | None = None) -> dict:
    e = suite.entries[i]
    considered = None if n is None else n - (missing or 0)
    rec = {"index": i, "label": suite.label(i), "type": e["type"], "kwargs": e["kwargs"],
           "severity": suite.severity(i), "scope": suite.scope(i), "success": bool(ok), "observed": observed,
           "element_count": n, "missing_count": missing, "unexpected_count": unexpected,
           "unexpected_percent": (100.0 * unexpected / considered) if considered and unexpected is not None else
           (0.0 if considered == 0 else None), "examples": examples or []}
    if e.get("notes"):
        rec["notes"] = e["notes"]
    return rec


def _projection(table: Table, project: Sequence[str], paths: list[str],
                by_part: dict[int, list[str]] | None = None) -> pl.DataFrame:
    """The columns the corpus-level expectations read, over the whole table (an empty frame of the
    table's columns when it has no rows). Parts may type a column differently (JSONL: 1 in one file,
    0.5 in another): they are unified to a supertype; SuiteError naming the column when there is none."""
    if paths:
        frames = [pl.read_parquet(p) for p in paths]
        clash = _type_clash(table, frames, paths, by_part or {})
        if clash:
            raise SuiteError(clash)
        return pl.concat(frames, how="vertical_relaxed")
    cols = dict(table.columns) | {c: pl.Float64() for c in table.derived if c not in table.columns}
    schema = {c: cols.get(c, pl.Float64()) for c in project} if project else cols
    schema.setdefault(ROW_ID, pl.Int64())
    return pl.DataFrame(schema=schema)


def _type_clash(table: Table, frames: list[pl.DataFrame], paths: list[str], by_part: dict[int, list[str]]) -> str:
    """'' when the parts' columns unify (Int64 and Float64 -> Float64; an all-null part takes any type),
    else a message naming the column and the files with each type. polars would make a number column
    with a string part all strings: that is a clash too, not a silent change of the column."""
    names = {path: p.name for p in table.parts for path in by_part.get(p.index, [])}
    for col in frames[0].columns:
        kinds: dict[str, list[str]] = {}
        for f, path in zip(frames, paths, strict=True):
            dtype = f.schema[col]
            if dtype == pl.Null:
                continue
            where = names.get(path, Path(path).name)
            if where not in kinds.setdefault(str(dtype), []):
                kinds[str(dtype)].append(where)
        if len(kinds) < 2:
            continue
        # An id shown in examples may be a string in one file and a number in another; it only names rows.
        clash = "String" in kinds and col not in (ROW_ID, table.id_column)
        if not clash:
            try:
                pl.concat([f.select(col) for f in frames], how="vertical_relaxed")
            except (pl.exceptions.SchemaError, pl.exceptions.ComputeError, pl.exceptions.InvalidOperationError):
                clash = True
        if clash:
            where = list(dict.fromkeys(w for ws in kinds.values() for w in ws))
            return (f"column {col!r} of {table.name} is {' in some files, '.join(kinds)} in others, types that "
                    f"cannot be combined for the corpus-level expectations (in {', '.join(where[:3])}"
                    f"{' ..' if len(where) > 3 else ''}): make it one type in every file")
    return ""


def rejected_rows(workdir: Path, failed: set[int]) -> pl.DataFrame:
    """(row_id, expectation) of the rows to quarantine: unexpected in a failed expectation of ``failed``;
    a row unexpected in several is named by the first in suite order."""
    files = sorted((workdir / REJECTS).glob("*.parquet")) if (workdir / REJECTS).exists() else []
    if not files or not failed:
        return pl.DataFrame(schema={ROW_ID: pl.Int64, "expectation": pl.Int32})
    return (pl.scan_parquet(files).filter(pl.col("expectation").is_in(sorted(failed)))
            .group_by(ROW_ID).agg(pl.col("expectation").min()).sort(ROW_ID).collect())
