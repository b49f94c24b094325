"""Field presence and JSON types of ``meta``: (source, key, type, n) rows for the whole corpus.

Documents carry meta as a JSON object string (the readers write it). Each chunk spills it beside its
features (spill.py); at the end one DuckDB query reads every spilled meta string with its vectorised
JSON functions (its top-level keys, and each value's type). One connection, after the chunks: a
connection per thread held its buffers through the whole run (docs/benchmarks.md).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

META_SCHEMA = {"source": pl.String, "key": pl.String, "type": pl.String, "n": pl.Int64}
_JSON_TYPES = {"VARCHAR": "string", "BIGINT": "integer", "UBIGINT": "integer", "HUGEINT": "integer",
               "DOUBLE": "number", "BOOLEAN": "boolean", "NULL": "null", "OBJECT": "object", "ARRAY": "array"}


def meta_column(df: pl.DataFrame) -> pl.Series:
    """The frame's meta JSON strings (null where it has none)."""
    if "meta" in df.columns and df.schema["meta"] == pl.String:
        return df["meta"]
    return pl.Series("meta", [None] * df.height, dtype=pl.String)


def meta_types(files: list[Path]) -> pl.DataFrame:
    """(source, key, type, n) over the spilled features' `meta` column (a JSON pointer per key, so any
    key name works)."""
    if not files:
        return pl.DataFrame(schema=META_SCHEMA)
    query = ("SELECT source, k AS key, json_type(meta, '/' || replace(replace(k, '~', '~0'), '/', '~1')) AS type, "
             "count(*) AS n FROM (SELECT source, meta, unnest(json_keys(meta)) AS k FROM read_parquet(?) "
             "WHERE meta IS NOT NULL AND json_valid(meta)) GROUP BY ALL")
    with duckdb.connect() as con:
        con.execute("SET threads = 2")
        rows = con.sql(query, params=[[str(f) for f in files]]).pl()
    if rows.height == 0:
        return pl.DataFrame(schema=META_SCHEMA)
    return rows.with_columns(pl.col("type").replace_strict(_JSON_TYPES, default=pl.col("type").str.to_lowercase()),
                             pl.col("n").cast(pl.Int64))
