"""The spill: per-document features and per-chunk line counts on disk, read back by DuckDB.

Exact figures that need every document (distinct text keys, the exact doc counts of the frequent
line candidates, outliers against the final median and scale) cannot come from bounded in-memory
aggregates. Each chunk writes its rows (id, source, text key, features: no text) to Parquet in a
scratch folder instead (uncompressed: it is read once), and DuckDB and polars answer
those questions out of core (memory_limit + temp_directory): memory does not grow with the corpus.
"""

from __future__ import annotations

import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cached_property
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from .constants import FEATURES
from .features import Chunk

SPILL = "_spill"


class Spill:
    """Writes one unit's (input file or shard) chunks, one Parquet file per chunk and kind."""

    def __init__(self, folder: Path, unit: int):
        self.folder = folder
        self.unit = unit
        self.chunks = 0

    def write(self, ch: Chunk) -> None:
        n = len(ch.codes)
        if n == 0:
            return
        source = pl.Series(ch.names, dtype=pl.String).gather(ch.codes).to_arrow()
        key = _arrow(ch.key, ch.is_null)
        # Features stay NaN where they do not apply (a null costs a pass; the readers know NaN).
        feats = pa.Table.from_arrays([ch.ids, source, key, *(_arrow(ch.values[f]) for f in FEATURES)],
                                     names=["id", "source", "h", *FEATURES])
        name = f"{self.unit:06d}-{self.chunks:05d}.parquet"
        # No dictionary pages: they cost more than they save here.
        pq.write_table(feats, self.folder / f"feat-{name}", compression="none", write_statistics=False,
                       use_dictionary=False)
        lines = ch.lines
        if len(lines.h):
            src = pl.Series(lines.names, dtype=pl.String).gather(lines.src).to_arrow()
            pq.write_table(pa.Table.from_arrays([src, _arrow(lines.h), _arrow(lines.n)], names=["source", "h", "n"]),
                           self.folder / f"lines-{name}", compression="none", write_statistics=False,
                           use_dictionary=False)
        self.chunks += 1

    def discard(self) -> None:
        """Forget what this unit wrote (its input is being read again another way)."""
        for p in list(self.folder.glob(f"feat-{self.unit:06d}-*.parquet")) + list(
                self.folder.glob(f"lines-{self.unit:06d}-*.parquet")):
            p.unlink()
        self.chunks = 0


def _arrow(x: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """A numeric numpy array as Arrow, null where `null`. Not pa.array: it imports pandas (a quarter
    of a second, once per process) to check what it was given."""
    x = np.ascontiguousarray(x)
    valid = None if null is None or not null.any() else pa.py_buffer(np.packbits(~null, bitorder="little"))
    return pa.Array.from_buffers(pa.from_numpy_dtype(x.dtype), len(x), [valid, pa.py_buffer(x)])


def fresh_spill(workdir: Path) -> Path:
    spill = workdir / SPILL
    shutil.rmtree(spill, ignore_errors=True)
    spill.mkdir(parents=True)
    return spill


def done(spill: Path, keep_features: bool) -> None:
    shutil.rmtree(spill / "duckdb-tmp", ignore_errors=True)
    if not keep_features:
        shutil.rmtree(spill, ignore_errors=True)


class SpillReader:
    """DuckDB over a spill folder, in bounded memory. It may connect before the spill is written
    (open_soon): the files are listed when first queried."""

    def __init__(self, spill: Path, threads: int):
        self.spill = spill
        self.con = duckdb.connect()
        tmp = spill / "duckdb-tmp"
        tmp.mkdir(exist_ok=True)
        for setting in ("memory_limit = '32MB'", f"threads = {max(1, threads)}",
                        f"temp_directory = '{tmp.as_posix()}'", "preserve_insertion_order = false"):
            self.con.sql(f"SET {setting}")

    def close(self) -> None:
        self.con.close()

    @cached_property
    def feats(self) -> list[Path]:
        return sorted(self.spill.glob("feat-*.parquet"))

    @cached_property
    def lines(self) -> list[Path]:
        return sorted(self.spill.glob("lines-*.parquet"))

    @staticmethod
    def scan(files: list[Path]) -> str:
        return "read_parquet([" + ", ".join("'" + p.as_posix().replace("'", "''") + "'" for p in files) + "])"

    def distinct_texts(self, sources: list[str]) -> tuple[dict[str, int], int]:
        """Distinct text keys per source and overall (the exact duplicate rate); sources: those spilled."""
        if not self.feats:
            return {}, 0
        scan = self.scan(self.feats)
        if len(sources) == 1:  # one count (grouping sets would cost three times as much)
            n = int(self.con.sql(f"SELECT count(DISTINCT h) FROM {scan}").fetchall()[0][0])
            return {sources[0]: n}, n
        rows = self.con.sql(f"SELECT source, count(DISTINCT h) FROM {scan} "
                            "GROUP BY GROUPING SETS ((source), ())").fetchall()  # one scan: per source, overall
        return {s: int(n) for s, n in rows if s is not None}, int(next(n for s, n in rows if s is None))

    def line_counts(self, candidates: pl.DataFrame) -> pl.DataFrame:
        """(source, h, docs, line): exact doc counts of the candidate lines."""
        if not self.lines or candidates.height == 0:
            return pl.DataFrame(schema={"source": pl.String, "h": pl.UInt64, "docs": pl.Int64, "line": pl.String})
        self.con.register("cand", candidates.select("h").to_arrow())
        counts = self.con.sql(
            f"SELECT source, h, sum(n)::BIGINT AS docs FROM {self.scan(self.lines)} "
            "WHERE h IN (SELECT h FROM cand) GROUP BY source, h").pl()
        self.con.unregister("cand")
        return counts.with_columns(pl.col("h").cast(pl.UInt64)).join(candidates, on="h")


def open_soon(spill: Path, threads: int) -> Future[SpillReader]:
    """A SpillReader connecting in the background while the run goes on: a DuckDB connection takes
    30-40 ms, which would otherwise sit on the run's last, serial step."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="profile-duckdb")
    try:
        return pool.submit(SpillReader, spill, threads)
    finally:
        pool.shutdown(wait=False)
