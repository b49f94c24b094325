"""Raw JSONL read for profiling only: the reader's checks, without building documents.

Profiling needs each record's fate (document, or quarantined and why), its id, its text, and which
meta fields it has with which JSON types. The file is cut into the very pieces the corpus reader
uses (8 MiB of whole lines, so polars would infer the same schema per piece), the pieces of one
chunk read as one buffer, and each chunk goes through jsonscan.py's compiled scanner, which
validates every line and keeps only texts, ids and meta key types. Lines it cannot vouch for go
through the reader's own per-record rules (``DocBuilder.add_line``), so every record meets the fate
the reader gives it. Meta types follow the reader's JSON: a field mixing integers and floats within
a piece is "number" there (polars unifies the column); a chunk in which a field mixes other types
is judged piece by piece, and a piece mixing them is parsed by polars exactly as the reader does
(``_polars_piece``), as are pieces the scanner declines.

Whenever that polars path would have to guess (polars refuses a piece, rows and lines disagree, a
column whose JSON form is uncertain, a damaged compressed stream), it raises ``Fallback`` and the
caller reads the whole file again through ``corpus.readers.read_task``: every record is still
counted exactly once, as the reader counts it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
from numba import njit

from corpus.readers import ReadTask
from corpus.readers.jsonl import DocBuilder, row_lines
from corpus.readers.streams import ByteSource, LineChunker, MappedLines, prefetch
from corpus.schema import empty_quarantine

from .jsonscan import TYPES, ScannedPiece, scan_piece
from .meta import META_SCHEMA, column_meta_types, empty_meta, json_meta_types
from .textscan import Texts, count_newlines

PIECE_BYTES = 8 << 20  # the reader's piece size (corpus.readers.jsonl._PIECE): same pieces, same schemas
_ROW = "\x00row"  # scratch column: no JSON key collides with it in practice (as in the reader)


class Fallback(Exception):  # noqa: N818 (a signal, not an error)
    """This file needs the corpus reader: results from the fast path so far must be discarded."""


@dataclass
class Piece:
    texts: Texts  # the documents' texts, in line order (per-record ones last)
    ids: pa.Array  # their ids (large_string)
    meta: pl.DataFrame  # (source, key, type, n) for those docs
    bad: pl.DataFrame  # quarantined records (QUARANTINE_SCHEMA)
    end_of_chunk: bool  # the reader would close its chunk after this piece (chunk_bytes of input)


def usable(task: ReadTask) -> bool:
    return task.format == "jsonl"


def _n_lines(buf: bytes | memoryview) -> int:
    """Lines in buf; a last one may lack its newline."""
    data = np.frombuffer(buf, np.uint8)
    return count_newlines(data) + int(len(data) > 0 and data[-1] != 10)


def read_pieces(task: ReadTask, chunk_bytes: int) -> Iterator[Piece]:
    """The file's records, a chunk (the reader's pieces of one chunk, read as one buffer) at a time;
    raises Fallback (possibly after yielding pieces)."""
    piece_bytes = min(chunk_bytes, PIECE_BYTES)
    src = ByteSource(task.path, block_size=piece_bytes)
    # An uncompressed file is mapped, not read: the same chunks, without a copy.
    chunker = LineChunker(src, piece_bytes) if src.compression else MappedLines(task.path, piece_bytes)
    lines_before = 0
    try:
        groups = chunker.groups(chunk_bytes)
        # A decompressed stream is read ahead in a thread; a mapped file has nothing to wait for.
        for buf, ends in prefetch(groups) if src.compression else groups:
            out, n_lines = _chunk(task, buf, ends, lines_before + 1)
            lines_before += n_lines
            out.end_of_chunk = len(buf) >= chunk_bytes
            yield out
    except OSError:  # unreadable or unmappable: the reader says which records are lost, and why
        raise Fallback from None
    if src.truncated or src.error:
        raise Fallback  # the reader quarantines the partial tail: let it
    tail = chunker.tail
    if tail:
        yield _chunk(task, tail, [len(tail)], lines_before + 1)[0]


def _chunk(task: ReadTask, buf: bytes | memoryview, ends: list[int], first_line: int) -> tuple[Piece, int]:
    """The reader's pieces ending at `ends` in buf, scanned as one buffer when no meta field mixes
    types across them (then none mixes within a piece either); else piece by piece, and a piece
    the scanner cannot vouch for takes the reader's polars path. Also: the lines in buf."""
    spec = task.spec
    sp = scan_piece(buf, spec.text_key, spec.id_key, spec.max_doc_bytes)
    meta = None if sp is None else _scanned_meta(sp, spec.source, spec.meta_keys)
    if sp is not None and meta is not None:
        return _scanned(task, buf, sp, meta, first_line), len(sp.status)
    n_lines = len(sp.status) if sp is not None else _n_lines(buf)
    if len(ends) == 1:
        return _polars_piece(task, bytes(buf), first_line, n_lines), n_lines
    parts = []
    start = 0
    for end in ends:
        piece = bytes(buf[start:end])
        part, n = _chunk(task, piece, [len(piece)], first_line)
        parts.append(part)
        first_line += n
        start = end
    return Piece(Texts.concat([p.texts for p in parts]), pa.concat_arrays([p.ids for p in parts]),
                 pl.concat([p.meta for p in parts]), pl.concat([p.bad for p in parts]), False), n_lines


def _scanned(task: ReadTask, buf: bytes | memoryview, sp: ScannedPiece, meta: pl.DataFrame, first_line: int) -> Piece:
    texts = Texts(sp.text, sp.text_offs, np.zeros(len(sp.doc_line), bool))
    ids = _scanned_ids(task, sp, first_line)
    slow = np.flatnonzero(sp.status == 2)
    if len(slow) == 0:
        return Piece(texts, ids, meta, empty_quarantine(), False)
    b = DocBuilder(task)
    data = np.frombuffer(buf, np.uint8)
    starts = np.concatenate([[0], np.flatnonzero(data == 10) + 1])  # line i: starts[i] up to its "\n"
    for i in slow.tolist():
        end = starts[i + 1] - 1 if i + 1 < len(starts) else len(data)
        b.add_line(bytes(buf[starts[i]:end]), first_line + i)
    extra = b.finish()
    if extra.docs.height:
        texts = Texts.concat([texts, Texts.from_series(extra.docs["text"])])
        ids = pa.concat_arrays([ids, extra.docs["id"].to_arrow().cast(pa.large_string())])
        meta = pl.concat([meta, json_meta_types(extra.docs)])
    return Piece(texts, ids, meta, extra.bad, False)


def _scanned_ids(task: ReadTask, sp: ScannedPiece, first_line: int) -> pa.Array:
    """Given ids where the record has one, else the reader's `source:file:row`."""
    prefix = np.frombuffer(f"{task.spec.source}:{task.rel_path}:".encode(), np.uint8)
    data, offs = _ids(prefix, sp.doc_line + first_line, sp.id_given, sp.ids, sp.id_offs)
    return pa.LargeStringArray.from_buffers(len(sp.doc_line), pa.py_buffer(offs), pa.py_buffer(data))


@njit(nogil=True, cache=True)
def _ids(prefix, rows, given, ids, id_offs):  # noqa: ANN001, ANN202
    """The ids as one string buffer: the given one, or prefix + the row number in decimal."""
    n = len(rows)
    total = 0
    for j in range(n):
        total += id_offs[j + 1] - id_offs[j] if given[j] else len(prefix) + 20
    out = np.empty(total, np.uint8)
    offs = np.empty(n + 1, np.int64)
    offs[0] = 0
    p = 0
    digits = np.empty(20, np.uint8)
    for j in range(n):
        if given[j]:
            for k in range(id_offs[j], id_offs[j + 1]):
                out[p] = ids[k]
                p += 1
        else:
            for k in range(len(prefix)):
                out[p] = prefix[k]
                p += 1
            r = rows[j]
            m = 0
            while True:
                digits[m] = 48 + r % 10
                m += 1
                r //= 10
                if r == 0:
                    break
            for k in range(m - 1, -1, -1):
                out[p] = digits[k]
                p += 1
        offs[j + 1] = p
    return out[:p], offs


def _scanned_meta(sp: ScannedPiece, source: str, meta_keys: list[str] | None) -> pl.DataFrame | None:
    """(source, key, type, n) rows as the reader's JSON would type them; None when a field mixes
    types polars would coerce (strings with numbers, ...): that piece takes the polars path."""
    wanted = None if meta_keys is None else set(meta_keys)
    rows = []
    for key, counts in zip(sp.keys, sp.key_types.tolist(), strict=True):
        if wanted is not None and key not in wanted:
            continue
        by_type = {TYPES[i]: n for i, n in enumerate(counts) if n}
        if "integer" in by_type and "number" in by_type:  # polars reads the column as floats
            by_type["number"] += by_type.pop("integer")
        if len(by_type) > 1:
            return None
        rows += [(source, key, typ, n) for typ, n in by_type.items()]
    return pl.DataFrame(rows, schema=META_SCHEMA, orient="row") if rows else empty_meta()


def _polars_piece(task: ReadTask, buf: bytes, first_line: int, n_lines: int) -> Piece:
    """The piece as the reader parses it: ``pl.read_ndjson``, the vectorised checks, per-record
    rules for the flagged rows."""
    try:
        df = pl.read_ndjson(buf, infer_schema_length=None)
    except (Exception, pl.exceptions.PanicException):
        raise Fallback from None
    rows = row_lines(buf, df.height, first_line, n_lines)
    if rows is None:
        raise Fallback
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
    return Piece(Texts.from_series(docs["text"]), docs["id"].to_arrow().cast(pa.large_string()), meta, extra.bad,
                 False)


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
