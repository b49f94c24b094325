"""The document schema: the columns every corpus shard carries, and the quarantine record."""

from __future__ import annotations

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

# Rows a reader could not turn into documents. `raw` holds the input bytes (capped, see RAW_CAP).
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    SOURCE: pl.String(),
    "file": pl.String(),
    "line": pl.Int64(),
    "kind": pl.String(),
    "error": pl.String(),
    "raw": pl.Binary(),
    "raw_truncated": pl.Boolean(),
}
RAW_CAP = 1 << 20

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


def row_id(task_index: int, row: int) -> int:
    return (task_index << ROW_BITS) | row


def empty_docs() -> pl.DataFrame:
    return pl.DataFrame(schema=DOC_SCHEMA)


def empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)


def quarantine_frame(rows: list[dict]) -> pl.DataFrame:
    """Build a quarantine frame from dicts with keys source, file, line, kind, error, raw (bytes)."""
    if not rows:
        return empty_quarantine()
    for r in rows:
        raw = r.get("raw") or b""
        r["raw_truncated"] = len(raw) > RAW_CAP
        r["raw"] = raw[:RAW_CAP]
    return pl.DataFrame(rows, schema=QUARANTINE_SCHEMA)
