"""CSV / TSV reader: the header row names the fields; every later record is one document.

Rows are numbered by record (1 = first record after the header), the same number in ``src_row``
and in the quarantine ``line`` column; the error message adds the physical file line. Not a hot
path, so it uses the stdlib csv module over the decompressed line stream.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

from corpus.readers.base import ReadChunk, ReadTask
from corpus.readers.jsonl import DocBuilder
from corpus.readers.parquet import check_columns
from corpus.readers.streams import ByteSource, LineChunker, strip_compression

# Documents can be far larger than csv's 128 KiB default field limit.
csv.field_size_limit(2**31 - 1)


def delimiter_for(task: ReadTask) -> str:
    if task.spec.csv_delimiter == "," and strip_compression(task.path).lower().endswith(".tsv"):
        return "\t"
    return task.spec.csv_delimiter


class _Lines:
    """The decompressed lines fed to csv.reader, remembering the raw bytes of the current record."""

    def __init__(self, task: ReadTask, chunk_bytes: int) -> None:
        self.src = ByteSource(task.path, block_size=min(chunk_bytes, 1 << 20))
        self.chunker = LineChunker(self.src, chunk_bytes)
        self.pending: list[bytes] = []  # raw lines of the record being read
        self.line = 0  # physical lines handed out

    def __iter__(self) -> Iterator[str]:
        for chunk in self.chunker:
            pieces = chunk.split(b"\n")
            pieces.pop()  # chunk ends with a newline
            for raw in pieces:
                yield self._give(raw) + "\n"
        if self.chunker.tail and not (self.src.truncated or self.src.error):
            yield self._give(self.chunker.tail)

    def _give(self, raw: bytes) -> str:
        self.pending.append(raw)
        self.line += 1
        # surrogateescape keeps going past bad bytes; the record is then checked strictly.
        return raw.decode("utf-8", "surrogateescape")

    def take(self) -> bytes:
        raw = b"\n".join(self.pending)
        self.pending = []
        return raw[:-1] if raw.endswith(b"\r") else raw


def read_csv(task: ReadTask, chunk_bytes: int) -> Iterator[ReadChunk]:
    lines = _Lines(task, chunk_bytes)
    reader = csv.reader(iter(lines), delimiter=delimiter_for(task))
    header: list[str] | None = None
    record = 0
    b = DocBuilder(task)
    size = 0
    reported = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raw = lines.take()
            if lines.src.truncated or lines.src.error:
                break  # an unfinished quoted record at the cut: reported below with the tail
            record += 1
            b.seen += 1
            b.add_bad(record, "malformed_row", f"{exc} (file line {lines.line})", raw)
            continue
        raw = lines.take()
        size += len(raw) + 1
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue  # blank line: not a record
        if header is None:
            header = [f.lstrip("\ufeff") if i == 0 else f for i, f in enumerate(fields)]
            check_columns(task, header, f"CSV file {task.rel_path!r} header")
            continue
        record += 1
        b.seen += 1
        _add_row(b, task, header, fields, record, lines.line, raw)
        if size >= chunk_bytes:
            yield b.finish(lines.src.consumed - reported)
            reported = lines.src.consumed
            b, size = DocBuilder(task), 0
    if lines.src.truncated or lines.src.error:
        kind = "truncated_file" if lines.src.truncated else "unreadable_file"
        msg = "compressed stream ends early; this partial record was cut" if lines.src.truncated else None
        pending = lines.take()
        tail = lines.chunker.tail
        raw = pending + b"\n" + tail if pending else tail
        b.seen += 1
        b.add_bad(record + 1, kind, msg or lines.src.error or kind, raw)
    if b.seen or lines.src.consumed > reported:
        yield b.finish(lines.src.consumed - reported)


def _add_row(
    b: DocBuilder, task: ReadTask, header: list[str], fields: list[str], record: int, line: int, raw: bytes
) -> None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"invalid UTF-8 byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} (file line {line})"
        b.add_bad(record, "invalid_utf8", msg, raw)
        return
    if len(fields) != len(header):
        msg = f"expected {len(header)} fields, got {len(fields)} (file line {line})"
        b.add_bad(record, "malformed_row", msg, raw)
        return
    rec: dict[str, str | None] = {}
    for name, value in zip(header, fields, strict=True):
        rec.setdefault(name, value)
    id_key = task.spec.id_key
    if id_key is not None and rec.get(id_key) == "":
        rec[id_key] = None  # an empty id cell means "no id": derive one
    b.add_record(rec, record, raw)
