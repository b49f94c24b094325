"""Field presence and JSON types of ``meta``: (source, key, type, n) rows per chunk.

Documents carry meta as a JSON object string (the readers write it); DuckDB's vectorised JSON
functions read its top-level keys and their types.
"""

from __future__ import annotations

import threading

import duckdb
import polars as pl

META_SCHEMA = {"source": pl.String, "key": pl.String, "type": pl.String, "n": pl.Int64}
_JSON_TYPES = {"VARCHAR": "string", "BIGINT": "integer", "UBIGINT": "integer", "HUGEINT": "integer",
               "DOUBLE": "number", "BOOLEAN": "boolean", "NULL": "null", "OBJECT": "object", "ARRAY": "array"}
_local = threading.local()


def _connection() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB per thread (a connection is not shared between threads; one per chunk
    would cost its start-up every time)."""
    con = getattr(_local, "con", None)
    if con is None:
        con = _local.con = duckdb.connect()
        con.sql("SET threads = 1")
    return con


def empty_meta() -> pl.DataFrame:
    return pl.DataFrame(schema=META_SCHEMA)


def json_meta_types(df: pl.DataFrame) -> pl.DataFrame:
    """From a `meta` column of JSON object strings (a JSON pointer per key, so any key name works)."""
    if "meta" not in df.columns or df.schema["meta"] != pl.String:
        return empty_meta()
    con = _connection()
    con.register("chunk_meta", df.select(pl.col("source").cast(pl.String).fill_null(""), "meta").to_arrow())
    try:
        rows = con.sql(
            "SELECT source, k AS key, json_type(meta, '/' || replace(replace(k, '~', '~0'), '/', '~1')) AS type, "
            "count(*) AS n FROM (SELECT source, meta, unnest(json_keys(meta)) AS k FROM chunk_meta "
            "WHERE json_valid(meta)) GROUP BY ALL"
        ).pl()
    finally:
        con.unregister("chunk_meta")
    if rows.height == 0:
        return empty_meta()
    return rows.with_columns(pl.col("type").replace_strict(_JSON_TYPES, default=pl.col("type").str.to_lowercase()),
                             pl.col("n").cast(pl.Int64))
