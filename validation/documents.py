"""The documents table a document suite runs against: a pipeline stage's shards, a corpus folder (each
shard hashed against manifest.json as it is read) or Parquet and JSONL files exactly as they are (their
own columns and types, so a schema contract sees what a producer wrote).

Besides the data's own columns a suite may name the profile's per-document features, computed on
demand by the profiler's own kernel (``corpus.stages.profile``), so a contract and a profile measure
the same thing: ``n_chars``, ``n_words``, ``n_lines``, ``est_tokens``, ``mean_word_len``, ``frac_*``
(alpha, digit, upper, punct, space, nonprint, lines_terminal_punct, replacement: U+FFFD and mojibake
per character), ``dup_line_ratio``, and ``text_key``: the profile's exact-duplicate key (normalised
lines), so ``1 - proportion of unique text_key`` is the profile's ``exact_dup_rate``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path

import polars as pl
import pyarrow as pa

from corpus.frames import parquet_file
from corpus.integrity import read_verified
from corpus.manifest import require_intact
from corpus.schema import DOC_SCHEMA, ID, ROW_BITS, ROW_ID, SOURCE, TEXT
from corpus.validation.engine import BATCH_BYTES, Part, Table

TEXT_KEY = "text_key"
GROUP_BYTES = 16 << 20  # Parquet/JSONL bytes on disk per part (a 128 MB shard of text is a part of its own)


def _features() -> tuple[str, ...]:
    from corpus.stages.profile.constants import FEATURES

    return FEATURES


def derived_columns() -> dict[str, str]:
    """Columns a document suite may name without the data having them -> the column they need."""
    return {**dict.fromkeys(_features(), TEXT), TEXT_KEY: TEXT}


def derive(df: pl.DataFrame, names: Sequence[str]) -> pl.DataFrame:
    """``df`` with the derived columns ``names`` added (one profiler pass over the text)."""
    from corpus.stages.profile.constants import INT_FEATURES
    from corpus.stages.profile.features import doc_features

    if TEXT not in df.columns:
        raise ValueError("they are computed from the 'text' column, which this data does not have")
    n = df.height
    base = pl.DataFrame({
        ID: df[ID].cast(pl.String, strict=False) if ID in df.columns else pl.Series(ID, [None] * n, pl.String),
        TEXT: df[TEXT].cast(pl.String, strict=False),
        SOURCE: df[SOURCE].cast(pl.String, strict=False) if SOURCE in df.columns else pl.Series(SOURCE, [""] * n),
    })
    docs = doc_features(base)
    cols = []
    for name in names:
        if name == TEXT_KEY:  # the exact-duplicate key, null for a null text
            cols.append(docs["h"].reinterpret(signed=True).alias(TEXT_KEY))
        else:
            s = docs[name].fill_nan(None).alias(name)
            cols.append(s.cast(pl.Int64) if name in INT_FEATURES else s)
    return df.with_columns(cols)


File = tuple[int, str, str, "dict | None", str]  # number, path, format, manifest record, name shown


def _table(files: list[File], columns: dict, where: str) -> Table:
    """Parts of consecutive files holding about GROUP_BYTES on disk each: many small shards make one
    batch for GX, whose every call costs the same."""
    parts: list[Part] = []
    group: list[File] = []
    size = 0
    for f in files:
        group.append(f)
        size += Path(f[1]).stat().st_size
        if size >= GROUP_BYTES:
            parts.append(_part(len(parts), group, size, columns))
            group, size = [], 0
    if group:
        parts.append(_part(len(parts), group, size, columns))
    return Table("documents", columns, tuple(parts), derived_columns(), derive, ID if ID in columns else None, where)


def _part(k: int, files: list[File], size: int, columns: dict) -> Part:
    name = files[0][4] if len(files) == 1 else f"{files[0][4]} .. {files[-1][4]}"
    return Part(k, name, file_frames, (tuple(files), columns), size)


def file_frames(files: tuple[File, ...], columns: dict | None = None) -> Iterator[pl.DataFrame]:
    """The frames of a part's files, small ones together up to about BATCH_BYTES (files of one schema
    only: the schema expectations judge each batch), each row named by its file's number when the data
    has no row_id. A JSONL file has the table's ``columns`` it lacks as nulls: a record without a key
    holds null there, whichever file it is in (a Parquet file's schema is its own)."""
    buf: list[pl.DataFrame] = []
    size = 0
    for number, path, fmt, record, _ in files:
        frames = parquet_frames(path, record) if fmt == "parquet" else _filled(jsonl_frames(path), columns or {})
        for start, df in _numbered(frames):
            if ROW_ID not in df.columns:
                df = df.with_columns(((pl.int_range(1, df.height + 1, dtype=pl.Int64) + start)
                                      | (number << ROW_BITS)).alias(ROW_ID))
            if buf and (df.schema != buf[0].schema or size >= BATCH_BYTES):
                yield pl.concat(buf)
                buf, size = [], 0
            buf.append(df)
            size += df.estimated_size()
    if buf:
        yield pl.concat(buf)


def _filled(frames: Iterator[pl.DataFrame], columns: dict) -> Iterator[pl.DataFrame]:
    for df in frames:
        gone = [pl.lit(None, dtype).alias(c) for c, dtype in columns.items() if c not in df.columns]
        yield df.with_columns(gone) if gone else df


def _numbered(frames: Iterator[pl.DataFrame]) -> Iterator[tuple[int, pl.DataFrame]]:
    """(rows before it in its file, frame)."""
    start = 0
    for df in frames:
        yield start, df
        start += df.height


# ---------------------------------------------------------------- sources


def shards_table(shards: Sequence[Path], where: str = "the documents at this point of the pipeline") -> Table:
    """A pipeline stage's input shards (Parquet, the document schema plus earlier stages' columns)."""
    columns = dict(pl.read_parquet_schema(shards[0])) if shards else dict(DOC_SCHEMA)
    return _table([(k, str(p), "parquet", None, Path(p).name) for k, p in enumerate(shards)], columns, where)


def corpus_table(root: Path) -> Table:
    """A corpus folder: its manifest's shards, sizes checked first and each hashed as it is read."""
    manifest = require_intact(root)
    shards = manifest.get("shards", [])
    # The columns from the first shard, hashed first like every shard read here.
    columns = dict(pl.read_parquet_schema(io.BytesIO(read_verified(root / shards[0]["path"], shards[0])))) \
        if shards else {}
    return _table([(k, str(root / s["path"]), "parquet", s, s["path"]) for k, s in enumerate(shards)], columns,
                  f"the corpus {root}")


def files_table(target: str) -> Table:
    """Parquet and JSONL files (a file, a folder or a glob), read as they are."""
    from corpus.readers import InputSpec, plan_tasks

    tasks = plan_tasks([InputSpec(source="input", path=target)])
    other = sorted({t.format for t in tasks} - {"parquet", "jsonl"})
    if other:
        raise ValueError(f"{target}: corpus validate reads Parquet and JSONL files or a corpus folder, not "
                         f"{', '.join(other)}; run a pipeline over them and validate its output folder")
    if not tasks:
        raise ValueError(f"{target}: no Parquet or JSONL files there")
    # The columns of every file, in order of first appearance: a column only later files have is still
    # the table's (a JSONL file without it holds nulls there, file_frames).
    columns: dict = {}
    for t in tasks:
        try:
            schema = pl.read_parquet_schema(t.path) if t.format == "parquet" else jsonl_schema(t.path)
        except pl.exceptions.PolarsError as exc:
            raise ValueError(f"{t.path}: not a readable {t.format} file ({exc})") from None
        columns.update((c, dtype) for c, dtype in schema.items() if c not in columns)
    return _table([(t.index, t.path, t.format, None, t.rel_path) for t in tasks], columns, target)


def parquet_frames(path: str, record: dict | None) -> Iterator[pl.DataFrame]:
    """A Parquet file in batches of row groups of about BATCH_BYTES (one empty frame when it has no rows),
    hashed against ``record`` first when given (a corpus shard)."""
    pf = parquet_file(path, pa.BufferReader(read_verified(Path(path), record)) if record else None)
    groups: list[int] = []
    size = 0
    for rg in range(pf.num_row_groups):
        groups.append(rg)
        size += pf.metadata.row_group(rg).total_byte_size
        if size >= BATCH_BYTES:
            yield _frame(pf.read_row_groups(groups))
            groups, size = [], 0
    if groups or pf.num_row_groups == 0:
        yield _frame(pf.read_row_groups(groups) if groups else pf.schema_arrow.empty_table())


def _frame(table: pa.Table) -> pl.DataFrame:
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    return df


def _first_bad_line(path: str) -> str | None:
    """The first record the corpus readers would quarantine as not JSON, as "line N: why" (polars says only
    "Syntax at character 0"); read again, through the one parse path, only once the file has failed."""
    from corpus.readers import InputSpec, plan_tasks, read_task

    spec = InputSpec(source="validate", path=path, format="jsonl", max_quarantine_fraction=1.0)
    for task in plan_tasks([spec]):
        for chunk in read_task(task):
            bad = chunk.bad.filter(pl.col("kind").is_in(["invalid_json", "invalid_utf8", "not_an_object"]))
            if bad.height:
                return f"line {bad['line'][0]}: {bad['error'][0]}"
    return None


def _jsonl_bytes(path: str) -> bytes:
    from corpus.readers.streams import ByteSource

    src = ByteSource(path)
    data = b"".join(src.blocks())
    if src.error or src.truncated:
        raise ValueError(f"{path}: {src.error or 'truncated compressed file'}")
    return data


def _not_json(path: str, exc: Exception) -> ValueError:
    return ValueError(f"{path}: not readable as JSON lines ({_first_bad_line(path) or exc}); files are validated "
                      "as they are: run a pipeline over them (bad records go to quarantine) and validate its output")


def jsonl_schema(path: str) -> dict:
    """The columns and types polars infers for a JSONL file (every record seen; no frame built)."""
    data = _jsonl_bytes(path)
    try:
        return dict(pl.scan_ndjson(io.BytesIO(data), infer_schema_length=None).collect_schema()) \
            if data.strip() else {}
    except pl.exceptions.PolarsError as exc:
        raise _not_json(path, exc) from None


def jsonl_frames(path: str) -> Iterator[pl.DataFrame]:
    """A JSONL file (plain, .gz or .zst) with the types polars infers, in slices of about BATCH_BYTES."""
    data = _jsonl_bytes(path)
    try:
        df = pl.read_ndjson(io.BytesIO(data), infer_schema_length=None) if data.strip() else pl.DataFrame()
    except pl.exceptions.PolarsError as exc:
        raise _not_json(path, exc) from None
    rows = max(1, int(df.height * BATCH_BYTES / max(len(data), 1)))
    for start in range(0, max(df.height, 1), rows):
        yield df.slice(start, rows)
