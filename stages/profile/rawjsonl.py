"""Raw JSONL read for profiling only: the reader's parse and checks, without building documents.

Profiling needs each record's fate (document, or quarantined and why), its id, its text, and which
meta fields it has with which JSON types. The corpus reader (corpus/readers/jsonl.py) builds whole
documents: ids, provenance, and meta re-encoded as a JSON string that the profiler would then parse
again. Here the file is cut into the very pieces the reader uses (8 MiB of whole lines, so polars
infers the same schema per piece) and each piece is parsed by ``pl.read_ndjson`` like the reader
does; the reader's own ``DocBuilder`` flags the rows its vectorised rules cannot vouch for and
decides their fate one by one. Meta presence and types then come from the other columns' dtypes and
null counts (the type of the JSON the reader would have written), with no JSON encoding at all.

Whenever this path would have to guess (polars refuses a piece, rows and lines disagree, a column
whose JSON form is uncertain, a damaged compressed stream), it raises ``Fallback`` and the caller
reads the whole file again through ``corpus.readers.read_task``: every record is still counted
exactly once, as the reader counts it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from corpus.readers import ReadTask
from corpus.readers.jsonl import JSON_BLANK, DocBuilder
from corpus.readers.streams import ByteSource, LineChunker, prefetch

from .meta import column_meta_types, empty_meta, json_meta_types

PIECE_BYTES = 8 << 20  # the reader's piece size (corpus.readers.jsonl._PIECE): same pieces, same schemas
_BLANK_START = frozenset(JSON_BLANK)
_ROW = "\x00row"  # scratch column: no JSON key collides with it in practice (as in the reader)


class Fallback(Exception):  # noqa: N818 (a signal, not an error)
    """This file needs the corpus reader: results from the fast path so far must be discarded."""


@dataclass
class Piece:
    docs: pl.DataFrame  # id, text, source: in line order
    meta: pl.DataFrame  # (source, key, type, n) for those docs
    bad: pl.DataFrame  # quarantined records (QUARANTINE_SCHEMA)
    end_of_chunk: bool  # the reader would close its chunk after this piece (chunk_bytes of input)


def usable(task: ReadTask) -> bool:
    return task.format == "jsonl"


def _count_lines(piece: bytes) -> tuple[bytes, int]:
    # numpy releases the GIL (bytes.count does not): worker threads keep counting side by side.
    return piece, int(np.count_nonzero(np.frombuffer(piece, np.uint8) == 10))


def read_pieces(task: ReadTask, chunk_bytes: int) -> Iterator[Piece]:
    """The file's records, a piece at a time; raises Fallback (possibly after yielding pieces)."""
    piece_bytes = min(chunk_bytes, PIECE_BYTES)
    src = ByteSource(task.path, block_size=piece_bytes)
    chunker = LineChunker(src, piece_bytes)
    lines_before = pending = 0
    for piece, n_lines in prefetch(_count_lines(p) for p in chunker):
        pending += len(piece)
        out = _piece(task, piece, lines_before + 1, n_lines)
        lines_before += n_lines
        out.end_of_chunk = pending >= chunk_bytes
        if out.end_of_chunk:
            pending = 0
        yield out
    if src.truncated or src.error:
        raise Fallback  # the reader quarantines the partial tail: let it
    tail = chunker.tail
    if tail:
        yield _piece(task, tail, lines_before + 1, tail.count(b"\n") + 1)


def _piece(task: ReadTask, buf: bytes, first_line: int, n_lines: int) -> Piece:
    try:
        df = pl.read_ndjson(buf, infer_schema_length=None)
    except (Exception, pl.exceptions.PanicException):
        raise Fallback from None
    rows = _row_lines(buf, df.height, first_line, n_lines)
    b = DocBuilder(task)
    flags = b.flags(df, coerced=True)
    good = df if flags is None else df.filter(~flags)
    good_rows = rows if flags is None else rows.filter(~flags)
    if flags is not None:  # the reader's per-record rules decide these rows, one by one
        lines = buf.split(b"\n")
        for row in rows.filter(flags).to_list():
            b.add_line(lines[row - first_line], row)
    docs, meta = _fast_docs(task, good, good_rows)
    if docs is None:  # a column whose JSON form is uncertain: let the reader build the meta strings
        b.add_frame(good, good_rows)
    extra = b.finish()
    if extra.docs.height:
        meta = pl.concat([meta, json_meta_types(extra.docs)])
        mine = pl.DataFrame(schema={"id": pl.String, "text": pl.String, "source": pl.String, "src_row": pl.Int64})
        if docs is not None:
            mine = docs.with_columns(good_rows.alias("src_row"))
        docs = pl.concat([mine, extra.docs.select(mine.columns)]).sort("src_row").drop("src_row")
    assert docs is not None
    return Piece(docs, meta, extra.bad, False)


def _row_lines(buf: bytes, height: int, first_line: int, n_lines: int) -> pl.Series:
    """Line number of each parsed row (the reader's rule: polars skips blank lines)."""
    if height == n_lines:
        return pl.int_range(first_line, first_line + height, dtype=pl.Int64, eager=True)
    lines = buf.split(b"\n")
    if buf.endswith(b"\n"):
        lines.pop()
    idx = [i for i, ln in enumerate(lines) if ln and (ln[0] not in _BLANK_START or ln.strip(JSON_BLANK))]
    if len(idx) != height:
        raise Fallback
    return pl.Series(idx, dtype=pl.Int64) + first_line


def _fast_docs(task: ReadTask, df: pl.DataFrame, rows: pl.Series) -> tuple[pl.DataFrame | None, pl.DataFrame]:
    """(id, text, source) of rows that passed every check, and their meta rows; (None, empty) when
    the meta types cannot be read off the dtypes."""
    spec = task.spec
    if df.height == 0:
        return pl.DataFrame(schema={"id": pl.String, "text": pl.String, "source": pl.String}), empty_meta()
    skip = {spec.text_key, spec.id_key}
    if spec.meta_keys is not None:
        cols = [k for k in sorted(set(spec.meta_keys)) if k in df.columns and k not in skip]
    else:
        cols = sorted(c for c in df.columns if c not in skip)
    meta = column_meta_types(df, cols, spec.source)
    if meta is None:
        return None, empty_meta()
    derived = pl.concat_str([pl.lit(f"{spec.source}:{task.rel_path}:"), pl.col(_ROW).cast(pl.String)])
    doc_id = derived
    if spec.id_key is not None and spec.id_key in df.columns:
        doc_id = pl.coalesce(pl.col(spec.id_key).cast(pl.String), derived)
    docs = df.select(pl.col(spec.text_key).alias("text"), *([spec.id_key] if spec.id_key in df.columns else [])) \
        .with_columns(rows.alias(_ROW)) \
        .select(doc_id.alias("id"), "text", pl.lit(spec.source, pl.String).alias("source"))
    return docs, meta
