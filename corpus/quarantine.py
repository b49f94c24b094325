"""Quarantined records kept whole, and given back: `corpus quarantine list` and `corpus quarantine export`.

A quarantined record's bytes are stored whole. Up to its input's ``max_doc_bytes`` they sit in the
``raw`` column of the quarantine Parquet (zstd); larger ones go to a side file,
``quarantine/raw/<source>-<file number>/<line>.zst``, named by the row's ``raw_file``. Each row
carries the size and sha256 of its bytes, checked whenever they are read back.

Export writes, per input file, the exact bytes of its quarantined records in that file's own form,
so they can be fixed and read again: JSONL and text read by line as lines, CSV records after the
file's header line, a text file read whole as it was; Parquet and DuckDB rows as JSON lines.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import zstandard

from corpus.export import check_dest
from corpus.integrity import record
from corpus.readers.streams import strip_compression
from corpus.schema import RAW_FILE, RAW_ROW
from corpus.writers import atomic_path

RAW_DIR = "raw"
_LEVEL = 3
_BLOCK = 1 << 20


class RawStore:
    """Writes the side files of one input file's quarantine (``<quarantine>/raw/<prefix>/``)."""

    def __init__(self, quarantine_dir: Path, prefix: str) -> None:
        self.root = quarantine_dir
        self.prefix = prefix
        self.names: list[str] = []  # raw_file of each side file written, relative to quarantine_dir
        self.records: dict[str, dict] = {}  # name -> integrity record taken as it was written

    @property
    def folder(self) -> Path:
        return self.root / RAW_DIR / self.prefix

    def put(self, line: int, blocks: Iterable[bytes]) -> dict:
        """Store a record's bytes (streamed: a whole file need not fit in memory); returns the
        quarantine row's raw columns."""
        name = f"{RAW_DIR}/{self.prefix}/{line}.zst"
        n = 1
        while name in self.names:  # never expected (lines are unique per file), but never overwrite
            n += 1
            name = f"{RAW_DIR}/{self.prefix}/{line}-{n}.zst"
        digest = hashlib.sha256()
        size = 0
        with atomic_path(self.root / name) as tmp:
            with open(tmp, "wb") as fh, zstandard.ZstdCompressor(level=_LEVEL).stream_writer(fh, closefd=False) as w:
                for block in blocks:
                    digest.update(block)
                    size += len(block)
                    w.write(block)
            self.records[name] = record(tmp)
        self.names.append(name)
        return {"raw": None, "raw_file": name, "raw_bytes": size, "raw_sha256": digest.hexdigest()}


def raw_blocks(quarantine_dir: Path, row: dict) -> Iterator[bytes]:
    """A quarantined record's bytes, in blocks; raises ValueError naming the file if they are not the
    bytes that were stored (size and sha256), after the last block."""
    digest = hashlib.sha256()
    size = 0
    record = f"{row['file']}:{row['line']}"
    if row.get("raw_file"):
        where = f"quarantine/{row['raw_file']}"
        path = (quarantine_dir / row["raw_file"]).resolve()
        if not path.is_relative_to((quarantine_dir / RAW_DIR).resolve()):
            raise ValueError(f"quarantined record {record} names a file outside quarantine/raw: {row['raw_file']!r}")
        try:
            with open(path, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as r:
                while block := r.read(_BLOCK):
                    digest.update(block)
                    size += len(block)
                    yield block
        except (OSError, zstandard.ZstdError) as exc:
            raise ValueError(f"{where}: cannot read quarantined record {record}: {exc}") from None
    else:
        where = "its quarantine row"
        data = bytes(row.get("raw") or b"")
        digest.update(data)
        size = len(data)
        if data:
            yield data
    if size != row["raw_bytes"] or digest.hexdigest() != row["raw_sha256"]:
        raise ValueError(f"quarantined record {record} is damaged in {where}: {size} bytes, stored as "
                         f"{row['raw_bytes']}, sha256 {digest.hexdigest()[:12]} instead of {row['raw_sha256'][:12]}")


def _quarantine_files(out: Path) -> tuple[Path, list[Path]]:
    qdir = Path(out) / "quarantine"
    if not (Path(out) / "catalog.duckdb").exists() and not qdir.is_dir():
        raise FileNotFoundError(f"{out}: no quarantine/ or catalog.duckdb: is this a corpusforge output folder?")
    return qdir, sorted(qdir.glob("*.parquet"))


_LIST_COLUMNS = ["source", "file", "line", "kind", "raw_bytes", "raw_file", "raw_unit"]


def _read_list_columns(path: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(path, columns=_LIST_COLUMNS)
    except (pl.exceptions.PolarsError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: not a quarantine file of this version ({first}); rerun the pipeline to "
                         "rewrite it") from None


def summary(out: Path) -> pl.DataFrame:
    """Quarantined records per source, file and kind: records, bytes, how many in side files."""
    _, files = _quarantine_files(out)
    schema = {"source": pl.String, "file": pl.String, "kind": pl.String, "records": pl.UInt32,
              "raw_bytes": pl.Int64, "side_files": pl.UInt32}
    if not files:
        return pl.DataFrame(schema=schema)
    df = pl.concat([_read_list_columns(f) for f in files])
    return (df.group_by("source", "file", "kind")
            .agg(pl.len().alias("records"), pl.col("raw_bytes").sum(), pl.col("raw_file").count().alias("side_files"))
            .sort("source", "file", "kind").select(list(schema)))


@dataclass
class Exported:
    source: str
    file: str  # the input file
    path: Path | None  # what was written (None: nothing to give back)
    records: int
    bytes: int
    note: str = ""


def export_name(file: str, unit: str) -> str:
    """Where an input file's records go, relative to the source's folder under DEST."""
    if unit == RAW_ROW:  # typed rows come back as JSON lines
        return file.replace(":", "-") + ".jsonl"
    return strip_compression(file)  # the bytes as decompressed


def export(out: Path, dest: Path, source: str | None = None, kind: str | None = None) -> list[Exported]:
    """Write the quarantined records of `out` (only of `source` / error `kind` when given) to
    ``dest/<source>/<file>``, one file per input file, each record's exact bytes."""
    qdir, files = _quarantine_files(out)
    dest = Path(dest)
    check_dest(Path(out), dest)  # a new or empty folder outside the corpus: never over an input file
    metas = [_read_list_columns(f).with_row_index("i").with_columns(pl.lit(str(f)).alias("parquet")) for f in files]
    # A filter that names nothing quarantined is a typo, not an empty export: say what there is.
    for value, column in ((source, "source"), (kind, "kind")):
        if value is None:
            continue
        have = sorted({v for m in metas for v in m[column].unique().to_list()})
        if value not in have:
            raise ValueError(f"--{column} {value!r}: no quarantined record has it in {out}; there are: "
                             f"{', '.join(have) if have else 'none'}")
        metas = [m.filter(pl.col(column) == value) for m in metas]
    if not metas:
        return []
    # An input file's records, from all its parts, in line order.
    ordered = pl.concat(metas).sort("source", "file", "line", maintain_order=True)
    return [_export_file(qdir, dest, str(src), str(name), group)
            for (src, name), group in ordered.group_by("source", "file", maintain_order=True)]


def _export_file(qdir: Path, dest: Path, source: str, file: str, group: pl.DataFrame) -> Exported:
    # A file quarantined as a whole (missing text column, unreadable) has no bytes to give back.
    empty = group.filter((pl.col("raw_unit") == RAW_FILE) & (pl.col("raw_bytes") == 0))
    group = group.filter(~pl.col("i").is_in(empty["i"].implode()))
    if group.height == 0:
        return Exported(source, file, None, 0, 0, f"quarantined as a whole ({empty['kind'][0]}): read the original")
    units = set(group["raw_unit"].to_list())
    target = (dest / source / export_name(file, group["raw_unit"][0])).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise ValueError(f"quarantine row names a file outside the export folder: {source}/{file}")
    whole = units == {RAW_FILE} and group.height == 1  # a text file read whole: as it was
    size = 0
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        header_done = False
        parts = [(Path(p), set(g["i"].to_list())) for (p,), g in group.group_by("parquet", maintain_order=True)]
        for row in (r for parquet, wanted in parts for r in _rows(parquet, wanted)):
            if row.get("header") is not None and not header_done:
                fh.write(bytes(row["header"]) + b"\n")
                header_done = True
            for block in raw_blocks(qdir, row):
                fh.write(block)
                size += len(block)
            if not whole:
                fh.write(b"\n")
    note = f"{empty.height} quarantined as a whole file, not exported" if empty.height else ""
    return Exported(source, file, target, group.height, size, note)


def _rows(parquet: Path, wanted: set[int]) -> Iterator[dict]:
    """The rows numbered in `wanted`, in file order, a few at a time (records can be large)."""
    i = 0
    for batch in pq.ParquetFile(parquet).iter_batches(batch_size=16):
        for row in batch.to_pylist():
            if i in wanted:
                yield row
            i += 1
