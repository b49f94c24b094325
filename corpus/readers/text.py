"""Plain text reader: one document per file (text_mode "file") or per non-blank line ("line")."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain
from typing import TYPE_CHECKING

import polars as pl

from corpus.readers.base import ReadChunk, ReadTask
from corpus.readers.jsonl import BLANK_TEXT_RE, DocBuilder
from corpus.readers.streams import ByteSource, LineChunker

if TYPE_CHECKING:
    from corpus.quarantine import RawStore

_CUT = "compressed stream ends early; this partial record was cut"


def read_text(task: ReadTask, chunk_bytes: int, sink: RawStore | None = None) -> Iterator[ReadChunk]:
    if task.spec.text_mode == "line":
        yield from _read_lines(task, chunk_bytes, sink)
    else:
        yield _read_file(task, sink)


def _read_file(task: ReadTask, sink: RawStore | None) -> ReadChunk:
    src = ByteSource(task.path)
    limit = task.spec.max_doc_bytes
    parts: list[bytes] = []
    size = 0
    blocks = _with_rest(src)
    for block in blocks:
        size += len(block)
        parts.append(block)
        if size > limit:
            break
    b = DocBuilder(task, sink)
    b.seen = 1
    stored = None
    if size > limit:
        # Too large for a document, but quarantined whole: streamed to a side file when there is one.
        if sink is not None:
            stored = sink.put(1, chain(parts, blocks))
            size = stored["raw_bytes"]
        else:
            parts += list(blocks)
            size = sum(map(len, parts))
    data = b"".join(parts) if stored is None else b""
    if src.error:
        b.add_bad(1, "unreadable_file", src.error, data, stored=stored)
    elif src.truncated:
        b.add_bad(1, "truncated_file", _CUT, data, stored=stored)
    elif size > limit:
        b.add_bad(1, "too_large", f"text is {size} bytes, over the {limit} byte limit", data, stored=stored)
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            msg = f"invalid UTF-8 byte 0x{data[exc.start]:02x} at byte {exc.start + 1}"
            b.add_bad(1, "invalid_utf8", msg, data)
        else:
            b.add_record({task.spec.text_key: text}, 1, data)
    return b.finish(src.consumed)


def _with_rest(src: ByteSource) -> Iterator[bytes]:
    """The source's blocks, then the file bytes it kept that are no compressed stream (a mislabelled
    .gz): the quarantined record holds them."""
    yield from src.blocks()
    if src.rest:
        yield src.rest


def _read_lines(task: ReadTask, chunk_bytes: int, sink: RawStore | None) -> Iterator[ReadChunk]:
    src = ByteSource(task.path, block_size=min(chunk_bytes, 1 << 20), start=task.start, end=task.end)
    chunker = LineChunker(src, chunk_bytes)
    lines_before = task.first_row - 1  # a part of a big file starts at its own line
    reported = 0
    for chunk in chunker:
        b = DocBuilder(task, sink)
        _lines_chunk(b, task, chunk, lines_before + 1)
        lines_before += chunk.count(b"\n")
        yield b.finish(src.consumed - reported)
        reported = src.consumed
    b = DocBuilder(task, sink)
    if src.truncated or src.error:
        b.seen += 1
        kind = "truncated_file" if src.truncated else "unreadable_file"
        b.add_bad(lines_before + 1, kind, _CUT if src.truncated else str(src.error), chunker.tail)
    elif chunker.tail:
        _lines_chunk(b, task, chunker.tail, lines_before + 1)
    if b.seen or b.blank or src.consumed > reported:
        yield b.finish(src.consumed - reported)


def _lines_chunk(b: DocBuilder, task: ReadTask, buf: bytes, first_line: int) -> None:
    key = task.spec.text_key
    try:
        text = buf.decode("utf-8")
    except UnicodeDecodeError:
        _lines_slow(b, key, buf, first_line)
        return
    pieces = text.split("\n")
    if text.endswith("\n"):
        pieces.pop()
    lines = pl.Series(key, pieces, dtype=pl.String).str.strip_suffix("\r")
    df = pl.DataFrame([lines]).with_columns(
        pl.int_range(first_line, first_line + len(pieces), dtype=pl.Int64).alias("\x00line")
    )
    df = df.filter(~pl.col(key).str.contains(BLANK_TEXT_RE))  # blank lines are not records
    rows = df.get_column("\x00line")
    df = df.drop("\x00line")
    b.seen += df.height
    b.blank += len(pieces) - df.height
    flags = b.flags(df, coerced=False)
    if flags is None:
        b.add_frame(df, rows)
        return
    b.add_frame(df.filter(~flags), rows.filter(~flags))
    for value, row in zip(df.filter(flags).get_column(key).to_list(), rows.filter(flags).to_list(), strict=True):
        b.add_record({key: value}, row, value.encode("utf-8"))


def _lines_slow(b: DocBuilder, key: str, buf: bytes, first_line: int) -> None:
    pieces = buf.split(b"\n")
    if buf.endswith(b"\n"):
        pieces.pop()
    for i, raw in enumerate(pieces):
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        row = first_line + i
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            b.seen += 1
            b.add_bad(row, "invalid_utf8", f"invalid UTF-8 byte 0x{raw[exc.start]:02x} at byte {exc.start + 1}", raw)
            continue
        if value.strip():
            b.seen += 1
            b.add_record({key: value}, row, raw)
        else:
            b.blank += 1
