"""The run catalog: an embedded DuckDB file (`catalog.duckdb`) in the output folder.

Only the run's main process writes it, opening it briefly for each write so that `corpus status`
can read it while a run is going (DuckDB allows one process to hold a file at a time).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from corpus.errors import check_path_name, duckdb_os_error
from corpus.integrity import CorruptFileError
from corpus.readers.fields import shown_name

# A run's status when it ran its stages and published nothing (a dry run): the latest run of a folder
# is the latest that was not one, since the folder's corpus, manifest and report are that run's.
DRY_RUN = "dry-run"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  run_id VARCHAR PRIMARY KEY, started TIMESTAMP, finished TIMESTAMP, status VARCHAR,
  config VARCHAR, workers INTEGER, error VARCHAR);
CREATE TABLE IF NOT EXISTS stages (
  run_id VARCHAR, stage_idx INTEGER, stage VARCHAR, kind VARCHAR, key VARCHAR, params VARCHAR,
  units INTEGER);
CREATE TABLE IF NOT EXISTS unit_stats (
  run_id VARCHAR, stage_idx INTEGER, stage VARCHAR, unit VARCHAR, source VARCHAR,
  docs_in BIGINT, docs_out BIGINT, bytes_in BIGINT, bytes_out BIGINT, seconds DOUBLE, resumed BOOLEAN);
CREATE TABLE IF NOT EXISTS drops (
  run_id VARCHAR, stage_idx INTEGER, stage VARCHAR, unit VARCHAR, source VARCHAR, reason VARCHAR,
  docs BIGINT);
CREATE TABLE IF NOT EXISTS quarantine (
  run_id VARCHAR, source VARCHAR, file VARCHAR, kind VARCHAR, docs BIGINT);
CREATE TABLE IF NOT EXISTS stage_counters (
  run_id VARCHAR, stage_idx INTEGER, stage VARCHAR, unit VARCHAR, source VARCHAR, counter VARCHAR,
  value BIGINT);
CREATE TABLE IF NOT EXISTS stage_figures (
  run_id VARCHAR, stage_idx INTEGER, stage VARCHAR, name VARCHAR, value DOUBLE);
CREATE TABLE IF NOT EXISTS balance (
  run_id VARCHAR, source VARCHAR, input BIGINT, kept BIGINT, rejected BIGINT, quarantined BIGINT,
  ok BOOLEAN);
ALTER TABLE balance ADD COLUMN IF NOT EXISTS blank BIGINT DEFAULT 0;
ALTER TABLE balance ADD COLUMN IF NOT EXISTS copies BIGINT DEFAULT 0;
CREATE TABLE IF NOT EXISTS blank_lines (
  run_id VARCHAR, source VARCHAR, file VARCHAR, lines BIGINT);
CREATE TABLE IF NOT EXISTS id_check (
  run_id VARCHAR, policy VARCHAR, docs BIGINT, repeated_ids BIGINT, later_rows BIGINT);
CREATE TABLE IF NOT EXISTS repeated_ids (
  run_id VARCHAR, id VARCHAR, occurrences BIGINT, occurrence INTEGER, source VARCHAR, file VARCHAR,
  row BIGINT, row_id BIGINT);
CREATE TABLE IF NOT EXISTS source_fields (
  run_id VARCHAR, source VARCHAR, file VARCHAR, field VARCHAR, types VARCHAR, "rows" BIGINT);
CREATE TABLE IF NOT EXISTS schema_drift (
  run_id VARCHAR, source VARCHAR, reference VARCHAR, file VARCHAR, field VARCHAR, kind VARCHAR,
  reference_types VARCHAR, file_types VARCHAR);
CREATE TABLE IF NOT EXISTS validation (
  run_id VARCHAR, stage_idx INTEGER, stage VARCHAR, suite VARCHAR, suite_sha256 VARCHAR,
  expectation_index INTEGER, expectation VARCHAR, type VARCHAR, kwargs VARCHAR, severity VARCHAR,
  scope VARCHAR, success BOOLEAN, observed VARCHAR, element_count BIGINT, unexpected_count BIGINT,
  unexpected_percent DOUBLE, examples VARCHAR, action VARCHAR, quarantined BIGINT);
"""
# Tables whole-corpus stages fill through ``Operator.catalog_rows`` (each row: these columns after
# run_id, stage_idx, stage). validation: one row per expectation of a `validate` gate (corpus/validation).
STAGE_TABLES: dict[str, tuple[str, ...]] = {
    "validation": ("suite", "suite_sha256", "expectation_index", "expectation", "type", "kwargs", "severity",
                   "scope", "success", "observed", "element_count", "unexpected_count", "unexpected_percent",
                   "examples", "action", "quarantined"),
}
# balance.input counts what the readers met: records and blank lines (skipped, not records), so that
# input = kept + rejected + quarantined + blank. (`blank` was added later: ALTER keeps old catalogs.)


class CatalogDamagedError(CorruptFileError):
    """The catalog file cannot be read (truncated, overwritten, a block failing its checksum)."""


def damaged(path: Path, exc: Exception) -> str:
    why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (f"{path}: the run catalog is damaged ({why}). It holds the runs' history and figures, not the corpus "
            f"(`corpus verify {path.parent}` checks that): move it aside and rerun the pipeline, which resumes "
            "from its finished work and starts a new catalog")


class Catalog:
    # Counters are buffered: opening the file costs a checkpoint each time, and while a run holds it no
    # other process can read it. `corpus status` reads the work markers instead, so flushes can be rare.
    FLUSH_SECONDS = 30.0

    def __init__(self, path: Path, create: bool = True):
        self.path = path
        self._pending: dict[str, list[list]] = {"unit_stats": [], "drops": [], "quarantine": [], "blank_lines": [],
                                             "stage_counters": []}
        self._flushed = time.monotonic()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._read_only = not create
        check_path_name(path)  # DuckDB fails on a name that is not UTF-8 with std::bad_cast
        if not create and not path.exists():
            from corpus.owner import folder_hint

            raise FileNotFoundError(f"no run catalog at {path}"
                                    + (folder_hint(path.parent) or ": is this a corpusforge output folder?"))
        if create:
            with self.connect() as con:
                con.execute(SCHEMA)

    @contextmanager
    def session(self) -> Iterator[Catalog]:
        """Hold one connection for a series of queries (a report makes a dozen)."""
        with self.connect(read_only=self._read_only) as con:
            self._con = con
            try:
                yield self
            finally:
                self._con = None

    @contextmanager
    def connect(self, read_only: bool = False, retries: int = 50) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._con is not None:
            yield self._con
            return
        for attempt in range(retries):
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as exc:
                as_os = duckdb_os_error(exc)
                if as_os is not None:  # a full disk, a read-only folder: not damage
                    raise as_os from None
                if "could not set lock" not in str(exc).lower():  # not held by another process: damaged
                    raise CatalogDamagedError(damaged(self.path, exc)) from None
                if attempt == retries - 1:
                    raise
                time.sleep(0.1)  # held by the writer for a moment; wait our turn
        try:
            yield con
        except duckdb.IOException as exc:  # a block that fails its checksum shows when it is read
            if "corrupt" in str(exc).lower() or "checksum" in str(exc).lower():
                raise CatalogDamagedError(damaged(self.path, exc)) from None
            raise
        finally:
            con.close()

    def start_run(self, run_id: str, config: dict, workers: int, stages: list[dict]) -> None:
        with self.connect() as con:
            con.execute(
                "INSERT INTO runs VALUES (?, now(), NULL, 'running', ?, ?, NULL)",
                [run_id, json.dumps(config, default=str), workers],
            )
            con.executemany(
                "INSERT INTO stages VALUES (?, ?, ?, ?, ?, ?, ?)",
                [[run_id, s["idx"], s["stage"], s["kind"], s["key"], json.dumps(s["params"], default=str),
                  s["units"]] for s in stages],
            )

    def set_units(self, run_id: str, units: int) -> None:
        """Shards are known only after reading: record how many units each later stage has."""
        with self.connect() as con:
            con.execute("UPDATE stages SET units = ? WHERE run_id = ? AND stage_idx > 0", [units, run_id])

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        self.flush()
        with self.connect() as con:
            con.execute(
                "UPDATE runs SET finished = now(), status = ?, error = ? WHERE run_id = ?", [status, error, run_id]
            )

    def record_ingest(self, run_id: str, markers: list[dict], resumed: bool) -> None:
        for m in markers:
            self._pending["unit_stats"].append([run_id, 0, "00-read", m["file"], m["source"], m["seen"], m["docs"],
                                                m["bytes_in"], m["bytes_out"], m["seconds"], resumed])
            self._pending["quarantine"] += [[run_id, m["source"], m["file"], k, n]
                                            for k, n in m["quarantine_kinds"].items()]
            if m.get("blank"):
                self._pending["blank_lines"].append([run_id, m["source"], m["file"], m["blank"]])
        self._maybe_flush()

    def record_stage(self, run_id: str, stage_idx: int, markers: list[dict]) -> None:
        for m in markers:
            for src in sorted(set(m["in"]) | set(m["out"])):
                i, o = m["in"].get(src, {}), m["out"].get(src, {})
                self._pending["unit_stats"].append(
                    [run_id, stage_idx, m["stage"], m["shard"], src, i.get("docs", 0), o.get("docs", 0),
                     i.get("bytes", 0), o.get("bytes", 0), m["seconds"], m["resumed"]])
            for src, reasons in m["rejected"].items():
                self._pending["drops"] += [[run_id, stage_idx, m["stage"], m["shard"], src, r, n]
                                           for r, n in reasons.items()]
            for src, sums in m.get("counters", {}).items():
                self._pending["stage_counters"] += [[run_id, stage_idx, m["stage"], m["shard"], src, c, n]
                                                    for c, n in sums.items()]
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._flushed >= self.FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        pending = {t: rows for t, rows in self._pending.items() if rows}
        if pending:
            with self.connect() as con:
                for table, rows in pending.items():
                    marks = ",".join("?" * len(rows[0]))
                    con.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
                    rows.clear()
        self._flushed = time.monotonic()

    def record_figures(self, run_id: str, stage_idx: int, stage: str, figures: dict[str, float]) -> None:
        """A whole-corpus stage's figures (from its artifacts, through the operator's ``figures``)."""
        rows = [[run_id, stage_idx, stage, k, float(v)] for k, v in figures.items() if v is not None]
        if rows:
            with self.connect() as con:
                con.execute("DELETE FROM stage_figures WHERE run_id = ? AND stage_idx = ?", [run_id, stage_idx])
                con.executemany("INSERT INTO stage_figures VALUES (?, ?, ?, ?, ?)", rows)

    def record_stage_rows(self, run_id: str, stage_idx: int, stage: str, table: str, rows: list[dict]) -> None:
        """A whole-corpus stage's rows for one of STAGE_TABLES (replacing the stage's earlier rows of this run)."""
        if table not in STAGE_TABLES:
            raise ValueError(f"stage {stage}: no catalog table {table!r} (known: {', '.join(STAGE_TABLES)})")
        cols = STAGE_TABLES[table]
        with self.connect() as con:
            con.execute(f"DELETE FROM {table} WHERE run_id = ? AND stage_idx = ?", [run_id, stage_idx])
            if rows:
                marks = ",".join("?" * (len(cols) + 3))
                con.executemany(f"INSERT INTO {table} (run_id, stage_idx, stage, {', '.join(cols)}) VALUES ({marks})",
                                [[run_id, stage_idx, stage, *(r.get(c) for c in cols)] for r in rows])

    def record_balance(self, run_id: str, rows: list[dict]) -> None:
        self.flush()
        with self.connect() as con:
            con.executemany(
                "INSERT INTO balance (run_id, source, input, kept, rejected, quarantined, blank, copies, ok) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                [[run_id, r["source"], r["input"], r["kept"], r["rejected"], r["quarantined"], r["blank"],
                  r.get("copies", 0), r["ok"]] for r in rows],
            )

    def record_id_check(self, run_id: str, policy: str, summary: dict, examples: list[dict]) -> None:
        """The repeated-id check (corpus/ids.py): counts, and examples with where each occurrence was read."""
        with self.connect() as con:
            con.execute("INSERT INTO id_check VALUES (?,?,?,?,?)",
                        [run_id, policy, summary["docs"], summary["ids"], summary["rows"]])
            rows = [[run_id, e["id"], e["occurrences"], k, a["source"], a["file"], a["row"], a["row_id"]]
                    for e in examples for k, a in enumerate(e["at"], 1)]
            if rows:
                con.executemany("INSERT INTO repeated_ids VALUES (?,?,?,?,?,?,?,?)", rows)

    def record_fields(self, run_id: str, markers: list[dict], drift: list[dict]) -> None:
        """Each input file's fields with their types and row counts, and the schema drift between the
        files of a source (corpus/readers/fields.py): kind missing, extra or retyped. Field names go in as
        ``shown_name`` writes them: a JSON key that is a lone surrogate is no UTF-8, which DuckDB refuses."""
        rows = [[run_id, m["source"], m["file"], shown_name(f), ",".join(s["types"]), s["rows"]]
                for m in markers for f, s in (m.get("fields") or {}).items()]
        found = []
        for d in drift:
            head = [run_id, d["source"], d["reference"], d["file"]]
            found += [[*head, shown_name(f), "missing", None, None] for f in d["missing"]]
            found += [[*head, shown_name(f), "extra", None, None] for f in d["extra"]]
            found += [[*head, shown_name(f), "retyped", ",".join(t["reference"]), ",".join(t["file"])]
                      for f, t in d["retyped"].items()]
        with self.connect() as con:
            if rows:
                con.executemany("INSERT INTO source_fields VALUES (?,?,?,?,?,?)", rows)
            if found:
                con.executemany("INSERT INTO schema_drift VALUES (?,?,?,?,?,?,?,?)", found)

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        with self.connect(read_only=True) as con:
            return con.execute(sql, params or []).fetchall()

    def latest_run(self) -> str | None:
        """The latest run that published (not a DRY_RUN)."""
        rows = self.query("SELECT run_id FROM runs WHERE status IS DISTINCT FROM ? ORDER BY started DESC LIMIT 1",
                          [DRY_RUN])
        return rows[0][0] if rows else None
