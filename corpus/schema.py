"""The document schema: the columns every corpus shard carries, and the quarantine record."""

from __future__ import annotations

import hashlib
from typing import Any

import polars as pl

# Core columns of every document batch, in this order. Operators add attribute columns after them.
ID, TEXT, SOURCE, META, SRC_FILE, SRC_ROW, ROW_ID = "id", "text", "source", "meta", "src_file", "src_row", "row_id"
# A row's identity within a run, unique by construction: (input file number << ROW_BITS) | row. Internal
# work (dedup results, joins) is keyed by it, never by the user's id, which may repeat.
ROW_BITS = 40

DOC_SCHEMA: dict[str, pl.DataType] = {
    ID: pl.String(),  # unique; "<source>:<relative file>:<row>" when the input has no id
    TEXT: pl.String(),
    SOURCE: pl.String(),  # the input's name in the config
    META: pl.String(),  # JSON object: the input record's other fields
    SRC_FILE: pl.String(),  # provenance: input file (or "duckdb:<query hash>")
    SRC_ROW: pl.Int64(),  # provenance: 1-based line (JSONL/text), record (CSV) or row (Parquet/DuckDB)
    ROW_ID: pl.Int64(),  # (task index << ROW_BITS) | src_row: unique in the run
}
CORE_COLUMNS: tuple[str, ...] = tuple(DOC_SCHEMA)

# Rows a reader could not turn into documents, with the record's input bytes whole, so that
# `corpus quarantine export` can give them back exactly (see corpus/quarantine.py).
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    SOURCE: pl.String(),
    "file": pl.String(),  # the input file, relative to its input's root (as src_file)
    "line": pl.Int64(),  # as src_row: the line (JSONL/text), record (CSV) or row (Parquet/DuckDB)
    "kind": pl.String(),  # one of QUARANTINE_KINDS
    "error": pl.String(),  # one line: the cause, with file lines where they help
    "raw": pl.Binary(),  # the record's bytes; null when they are in raw_file
    "raw_bytes": pl.Int64(),  # size of the record's bytes (inline or in raw_file)
    "raw_sha256": pl.String(),  # hex sha256 of the record's bytes
    "raw_file": pl.String(),  # records over the input's max_doc_bytes: zstd file, relative to quarantine/
    "raw_unit": pl.String(),  # what raw is: RAW_LINE, RAW_FILE or RAW_ROW
    "header": pl.Binary(),  # CSV: the file's header line (export writes it first); else null
}
# A line of the file without its line end (a CSV record: its lines joined by "\n"), the whole file
# (text files read one document per file; also files quarantined as a whole, with raw empty), or a
# typed row (Parquet, DuckDB) written as a JSON object.
RAW_LINE, RAW_FILE, RAW_ROW = "line", "file", "row"

# Error kinds a reader reports; `corpus stats` groups quarantine by these.
QUARANTINE_KINDS = (
    "invalid_json",
    "not_an_object",
    "invalid_utf8",
    "missing_text",
    "null_text",
    "non_string_text",
    "empty_text",
    "nul_bytes",
    "too_large",
    "truncated_file",
    "malformed_row",
    "unreadable_file",
)

# Columns the executor adds to rejected rows.
REJECT_STAGE, REJECT_REASON = "reject_stage", "reject_reason"
# An extra copy of a document made by upsampling (stages/sample.py) names its original's row_id here
# (null on originals); it has a row_id of its own. The balance counts originals only.
COPY_OF = "copy_of_row"


def has_object(dtype: Any) -> bool:
    """Is ``dtype`` pl.Object, or a List, Array or Struct holding one (at any depth)? Such a column holds
    Python objects, which polars writes to Arrow as memory addresses."""
    if dtype is None:
        return False
    if isinstance(dtype, type):
        dtype = dtype()
    if dtype == pl.Object or isinstance(dtype, pl.Object):
        return True
    inner = getattr(dtype, "inner", None)
    if inner is not None and has_object(inner):
        return True
    return any(has_object(f.dtype) for f in getattr(dtype, "fields", None) or ())


def copy_marks(df: pl.DataFrame) -> pl.Series:
    """The frame's ``copy_of_row`` as it came in: all null (Int64) where no earlier stage made copies."""
    return df[COPY_OF] if COPY_OF in df.columns else pl.Series(COPY_OF, [None] * df.height, pl.Int64)


def row_id(task_index: int, row: int) -> int:
    return (task_index << ROW_BITS) | row


def empty_docs() -> pl.DataFrame:
    return pl.DataFrame(schema=DOC_SCHEMA)


def empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)


def quarantine_frame(rows: list[dict]) -> pl.DataFrame:
    """A quarantine frame from dicts with at least source, file, line, kind, error, raw (bytes or None)
    and raw_unit; raw_bytes and raw_sha256 are computed from raw when not given."""
    if not rows:
        return empty_quarantine()
    for r in rows:
        raw = r.get("raw")
        if "raw_sha256" not in r:
            r["raw_bytes"] = len(raw or b"")
            r["raw_sha256"] = hashlib.sha256(raw or b"").hexdigest()
    return pl.DataFrame(rows, schema=QUARANTINE_SCHEMA)
