"""CSV / TSV reader: the header row names the fields; every later record is one document.

Rows are numbered by record (1 = first record after the header), the same number in ``src_row``
and in the quarantine ``line`` column; the error message adds the physical file lines. Not a hot
path, so it uses the stdlib csv module over the decompressed line stream.

Parsing is strict (RFC 4180): a closing quote must be followed by the delimiter or the end of the
line. A quoted value may span lines; ``csv_multiline`` says when such a record is believed:

* ``true``: whenever it parses;
* ``false``: never: a record is one line, and a quote still open at the end of a line makes that
  line malformed;
* ``"auto"`` (default): when it parses, unless the lines after its first one are records of their
  own: an even number of quote characters that parse, strictly and on their own, into records of the
  header's width. A well-formed value spanning lines never looks like that (after its first line come
  its closing quote and doubled quotes: an odd number), while a line whose quote never closes,
  followed by well-formed records, does.

A record spanning lines that is not believed (a parse error inside it, the end of the file inside
its quotes, more than 2 x max_doc_bytes + 1 MiB of lines, or auto's test) has its first line
quarantined as ``malformed_row``, and reading resumes at the next line: the lines it swallowed are
read again as records of their own. What stays ambiguous: a broken quote that a later stray quote
closes cleanly, with the right number of fields, reads as one record (with ``true`` always; with
``"auto"`` when the lines it swallowed are not well-formed records, e.g. a second mistake).

The header row maps each value to a field, so a header that cannot do that is not guessed at:

* no ``text_key`` column: the file is quarantined whole (one ``unreadable_file`` record naming its
  columns). A header read as one column that holds another delimiter (``text;id`` read with ``,``)
  says which delimiter it looks like and how to set ``csv_delimiter`` (left unset, a ``.tsv`` file is
  read with a tab and any other with ``,``);
* a column name given twice (``text,tag,tag``): the file is quarantined whole, the error naming the
  repeated names and their columns. Which value is the field's (the text, the id, a meta key) is the
  user's to say; keeping one would drop the other's values, so rename one in the header;
* a byte that is not UTF-8 in the header: its names are not text, and would reach ``meta``, the
  catalog and the report as escapes nobody wrote. Every record of the file is quarantined as
  ``invalid_utf8`` with its own bytes, the header kept with them (``corpus quarantine export`` gives
  the file back): fix the header's encoding and read it again. A file whose header is wrong like this
  usually has no UTF-8 records either (a Latin-1 export), which are quarantined as such anyway.

``corpus check`` reports all three before a run.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

from corpus.readers.base import ReadChunk, ReadTask
from corpus.readers.jsonl import DocBuilder
from corpus.readers.parquet import missing_column, repeated_columns
from corpus.readers.streams import ByteSource, LineChunker, strip_compression
from corpus.schema import RAW_FILE

if TYPE_CHECKING:
    from corpus.quarantine import RawStore

# Documents can be far larger than csv's 128 KiB default field limit.
csv.field_size_limit(2**31 - 1)

_SLACK = 1 << 20  # a record's other fields, beyond twice its text (every quote doubled)


def delimiter_for(task: ReadTask) -> str:
    """The input's csv_delimiter; unset, a tab for a .tsv file and "," for any other."""
    if task.spec.csv_delimiter is not None:
        return task.spec.csv_delimiter
    return "\t" if strip_compression(task.path).lower().endswith(".tsv") else ","


class _Line(NamedTuple):
    no: int  # physical line of the file, from 1
    raw: bytes  # without the newline
    newline: bool  # False for a last line without one


class _Refused(Exception):  # noqa: N818 (a signal to the reading loop)
    """The record being read may not take another line."""


def _record_bytes(lines: list[_Line]) -> bytes:
    raw = b"\n".join(ln.raw for ln in lines)
    return raw[:-1] if raw.endswith(b"\r") else raw


def _decode(ln: _Line) -> str:
    # surrogateescape keeps going past bad bytes; the record is then checked strictly.
    return ln.raw.decode("utf-8", "surrogateescape") + ("\n" if ln.newline else "")


class _Lines:
    """The physical lines fed to csv.reader, remembering those of the record being read, with lines
    handed back to be read again."""

    def __init__(self, task: ReadTask, chunk_bytes: int, one_line: bool, max_record: int) -> None:
        self.src = ByteSource(task.path, block_size=min(chunk_bytes, 1 << 20))
        self.chunker = LineChunker(self.src, chunk_bytes)
        self._fresh = self._physical()
        self.back: list[_Line] = []  # to read again, the next one last
        self.pending: list[_Line] = []  # lines of the record being read
        self.pending_bytes = 0
        self.line = 0  # physical lines read from the file
        self.at_end = False  # the last request found no line left
        self.one_line, self.max_record = one_line, max_record
        self.refusal = ""

    def _physical(self) -> Iterator[_Line]:
        for chunk in self.chunker:
            pieces = chunk.split(b"\n")
            pieces.pop()  # chunk ends with a newline
            for raw in pieces:
                self.line += 1
                yield _Line(self.line, raw, True)
        if self.chunker.tail and not (self.src.truncated or self.src.error):
            self.line += 1
            yield _Line(self.line, self.chunker.tail, False)

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.pending and self.one_line:
            self.refusal = "quote still open at the end of the line, and csv_multiline is false"
            raise _Refused
        if self.pending_bytes > self.max_record:
            self.refusal = f"quoted value runs past {self.max_record} bytes without closing"
            raise _Refused
        if self.back:
            ln = self.back.pop()
        else:
            try:
                ln = next(self._fresh)
            except StopIteration:
                self.at_end = True
                raise
        self.at_end = False
        self.pending.append(ln)
        self.pending_bytes += len(ln.raw) + 1
        return _decode(ln)

    def take(self) -> list[_Line]:
        lines, self.pending, self.pending_bytes = self.pending, [], 0
        return lines

    def again(self, lines: list[_Line]) -> None:
        self.back.extend(reversed(lines))


def _own_records(lines: list[_Line], width: int, delimiter: str) -> bool:
    """Do these lines read, on their own, as well-formed records of `width` fields?"""
    if sum(ln.raw.count(b'"') for ln in lines) % 2:
        return False
    try:
        rows = list(csv.reader([_decode(ln) for ln in lines], delimiter=delimiter, strict=True))
    except csv.Error:
        return False
    rows = [r for r in rows if not _blank(r)]
    return bool(rows) and all(len(r) == width for r in rows)


def _blank(fields: list[str]) -> bool:
    return not fields or (len(fields) == 1 and not fields[0].strip())


def _span(lines: list[_Line]) -> str:
    a, z = lines[0].no, lines[-1].no
    return f"file line {a}" if a == z else f"file lines {a}-{z}"


class _CsvReader:
    def __init__(self, task: ReadTask, chunk_bytes: int, sink: RawStore | None) -> None:
        spec = task.spec
        self.task, self.sink, self.chunk_bytes = task, sink, chunk_bytes
        self.mode = spec.csv_multiline
        self.delimiter = delimiter_for(task)
        self.lines = _Lines(task, chunk_bytes, spec.csv_multiline is False, 2 * spec.max_doc_bytes + _SLACK)
        self.reader = csv.reader(self.lines, delimiter=self.delimiter, strict=True)
        self.header: list[str] | None = None
        self.header_raw: bytes | None = None
        self.header_bad: str | None = None  # why every record is quarantined (a header that is no UTF-8)
        self.record = 0
        self.stopped = False  # the file was quarantined whole
        self.b = self._builder()

    def _builder(self) -> DocBuilder:
        b = DocBuilder(self.task, self.sink)
        b.header = self.header_raw
        return b

    def records(self) -> Iterator[tuple[list[str], list[_Line]]]:
        """Each parsed record (the header first) with its lines; records that do not parse are
        quarantined on the way. Stops at the end of the input, at a cut in a damaged compressed
        stream, or when the header is broken (``stopped``)."""
        src = self.lines.src
        while True:
            try:
                fields = next(self.reader)
            except StopIteration:
                return
            except (csv.Error, _Refused) as exc:
                if self.lines.at_end and (src.truncated or src.error):
                    return  # an unfinished quoted record at the cut: reported with the tail
                if not self._broken(exc):
                    self.stopped = True
                    return
                continue
            lines = self.lines.take()
            if len(lines) == 1 and _blank(fields):
                self.b.blank += 1
                continue
            yield fields, lines

    def chunks(self) -> Iterator[ReadChunk]:
        src = self.lines.src
        size = reported = 0
        for fields, lines in self.records():
            raw = _record_bytes(lines)
            if self.header is None:
                if not self._set_header(fields, raw):
                    self.stopped = True
                    break
                continue
            if len(lines) > 1 and self.mode == "auto" and _own_records(lines[1:], len(self.header), self.delimiter):
                self._quarantine_first(lines, "quote swallows lines that are records of their own")
                continue
            size += len(raw) + 1
            self.record += 1
            self.b.seen += 1
            if self.header_bad is not None:
                self.b.add_bad(self.record, "invalid_utf8", f"{self.header_bad} ({_span(lines)})", raw)
            else:
                _add_row(self.b, self.task, self.header, fields, self.record, _span(lines), raw)
            if size >= self.chunk_bytes:
                yield self.b.finish(src.consumed - reported)
                reported = src.consumed
                self.b, size = self._builder(), 0
        if (src.truncated or src.error) and not self.stopped:
            kind = "truncated_file" if src.truncated else "unreadable_file"
            msg = "compressed stream ends early; this partial record was cut" if src.truncated else None
            pending = _record_bytes(self.lines.take())
            tail = self.lines.chunker.tail
            raw = pending + b"\n" + tail if pending else tail
            self.b.seen += 1
            self.b.add_bad(self.record + 1, kind, msg or src.error or kind, raw)
        if self.b.seen or self.b.blank or src.consumed > reported:
            yield self.b.finish(src.consumed - reported)

    def _broken(self, exc: Exception) -> bool:
        """A record that does not parse: quarantine its first line, read the rest again. False when it
        is the header (the file is then quarantined whole)."""
        lines = self.lines.take()
        if isinstance(exc, _Refused):
            why = self.lines.refusal
        elif self.lines.at_end:
            why = "quote never closes"
        elif len(lines) > 1:
            why = f"quote does not close properly: {exc} on file line {lines[-1].no}"
        else:
            why = str(exc)
        if self.header is None:
            self._whole_file(f"CSV file {self.task.rel_path!r} has a malformed header: {why} ({_span(lines)})")
            return False
        self._quarantine_first(lines, why)
        return True

    def _quarantine_first(self, lines: list[_Line], why: str) -> None:
        first, rest = lines[0], lines[1:]
        self.lines.again(rest)
        again = f"; {_span(rest).replace('file ', '')} read again" if rest else ""
        self.record += 1
        self.b.seen += 1
        self.b.add_bad(self.record, "malformed_row", f"{why} (file line {first.no}{again})", _record_bytes([first]))

    def _set_header(self, fields: list[str], raw: bytes) -> bool:
        """Take the header row; False when the file is quarantined whole for it (see the docstring)."""
        bad = _undecodable_header(self.task, fields, raw)  # then every record goes to quarantine, with its bytes
        if bad is None:
            what = f"CSV file {self.task.rel_path!r} header"
            problem = missing_column(self.task, fields, what)
            if problem is not None:
                self._whole_file(problem + _delimiter_hint(self.task, fields, self.delimiter))
                return False
            repeated = repeated_columns(fields)
            if repeated:
                self._whole_file(f"{what} names {repeated}: which value is the field's is unknown, so the file is "
                                 "not read (a record would keep one and lose the other) — rename one in the header")
                return False
        self.header, self.header_raw, self.header_bad = fields, raw, bad
        self.b.header = raw
        return True

    def _whole_file(self, why: str) -> None:
        self.b.seen += 1
        self.b.add_bad(1, "unreadable_file", why, b"", unit=RAW_FILE)


def _undecodable_header(task: ReadTask, fields: list[str], raw: bytes) -> str | None:
    """Why a header with a byte that is not UTF-8 quarantines every record (None when it is UTF-8)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = ""
        for i, name in enumerate(fields, 1):
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                # the bytes as the user gave them (t\xffag), not the surrogates decoding made of them
                shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                where = f", in column {i} ('{shown}')"
                break
        return (f"CSV file {task.rel_path!r} header has an invalid UTF-8 byte 0x{raw[exc.start]:02x} at byte "
                f"{exc.start + 1}{where}: its field names are not text, so every record is quarantined with it "
                "— fix the header's encoding and read the file again")
    return None


_DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


def _delimiter_hint(task: ReadTask, fields: list[str], delimiter: str) -> str:
    """When the header read as one column holding another delimiter: which it looks like, and what to set."""
    if len(fields) != 1:
        return ""
    found = [(fields[0].count(d), d) for d in _DELIMITERS if d != delimiter and d in fields[0]]
    if not found:
        return ""
    d = max(found)[1]
    read_as = f"read with csv_delimiter {json.dumps(delimiter)}"
    if task.spec.csv_delimiter is None:
        read_as = f"read with {json.dumps(delimiter)} (a {'.tsv' if delimiter == chr(9) else '.csv'} file's " \
                  "delimiter while csv_delimiter is unset)"
    fix = f"set csv_delimiter: {json.dumps(d)} for this input"
    return (f"; the header reads as one column, which looks {_DELIMITERS[d]}-separated ({json.dumps(d)} in it) while "
            f"the file is {read_as} — {fix}")


def read_csv(task: ReadTask, chunk_bytes: int, sink: RawStore | None = None) -> Iterator[ReadChunk]:
    return _CsvReader(task, chunk_bytes, sink).chunks()


def csv_problem(task: ReadTask) -> str | None:
    """Why this CSV file would be quarantined whole (broken header, no text column, a repeated column),
    or every record of it (a header that is no UTF-8), from its first lines (for `corpus check`)."""
    r = _CsvReader(task, 1 << 16, None)
    for fields, lines in r.records():
        r._set_header(fields, _record_bytes(lines))
        break
    return r.b.bad[-1]["error"] if r.b.bad else r.header_bad


def csv_header(task: ReadTask) -> list[str]:
    """The field names of the header line ([] when the file has none that parses)."""
    for fields, _lines in _CsvReader(task, 1 << 16, None).records():
        return fields
    return []


def _add_row(
    b: DocBuilder, task: ReadTask, header: list[str], fields: list[str], record: int, where: str, raw: bytes
) -> None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"invalid UTF-8 byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} ({where})"
        b.add_bad(record, "invalid_utf8", msg, raw)
        return
    if len(fields) != len(header):
        msg = f"expected {len(header)} fields, got {len(fields)} ({where})"
        b.add_bad(record, "malformed_row", msg, raw)
        return
    # The names are distinct: a header repeating one is refused (_set_header), as a dict would keep one value.
    rec: dict[str, str | None] = dict(zip(header, fields, strict=True))
    id_key = task.spec.id_key
    if id_key is not None and rec.get(id_key) == "":
        rec[id_key] = None  # an empty id cell means "no id": derive one
    b.add_record(rec, record, raw)
