"""Field presence and JSON types of ``meta``: (source, key, type, n) rows per chunk.

Documents carry meta as a JSON object string; DuckDB's vectorised JSON functions read its top-level
keys and their types. Raw JSONL read by the profiler's own fast path never builds that string: the
other fields are typed polars columns, and a field's JSON type follows from its dtype (the string
the reader would have written for it has exactly that type), its presence from its null count.
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


def dtype_json_type(dtype: pl.DataType) -> str | None:
    """The JSON type polars writes a non-null value of this dtype as; None where not certain."""
    if dtype == pl.String:
        return "string"
    if dtype == pl.Boolean:
        return "boolean"
    if dtype.is_integer():
        return "integer"
    if dtype.is_float():
        return "number"
    if isinstance(dtype, pl.List | pl.Array):
        return "array"
    if isinstance(dtype, pl.Struct):
        return "object"
    return None


def column_meta_types(df: pl.DataFrame, columns: list[str], source: str) -> pl.DataFrame | None:
    """Meta rows from typed columns (each non-null value is one present field); None when a column's
    JSON form is not certain (then the caller builds the JSON strings instead)."""
    rows = []
    for c in columns:
        dtype = df.schema[c]
        if dtype == pl.Null:
            continue  # null everywhere: absent from every record's meta
        typ = dtype_json_type(dtype)
        if typ is None:
            return None
        if dtype.is_float() and not df[c].is_finite().fill_null(True).all():
            return None  # inf/NaN have no JSON form
        n = df.height - df[c].null_count()
        if n:
            rows.append((source, c, typ, n))
    return pl.DataFrame(rows, schema=META_SCHEMA, orient="row") if rows else empty_meta()
