"""What the first records of an input say about its settings, before and early in a run.

``field_problems``: the config check reads the first records of an input's first files and names the
fields it found when ``text_key``, ``id_key`` or a ``meta_keys`` entry is in none of them ("no field
'text' in the first 100 records of a.jsonl; fields seen: content, url, ts — set text_key").

``QuarantineShare``: a run stops when more than an input's ``max_quarantine_fraction`` of the records
read so far went to quarantine (counted once at least ``MIN_RECORDS`` were read, so one bad line in a
tiny file does not stop it), with the share, the top error kinds and the field problems as the hint.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from corpus.readers.base import InputError, ReadTask
from corpus.readers.fields import NESTED_DEPTH
from corpus.readers.jsonl import JSON_BLANK
from corpus.readers.streams import ByteSource

SAMPLE_RECORDS = 100  # records read per file
SAMPLE_FILES = 4  # files read per input
MIN_RECORDS = 100  # records read from an input before its quarantine share is judged
_SAMPLE_BYTES = 4 << 20  # a JSONL sample stops here even with fewer records (very long lines)


class QuarantineShareError(InputError):
    """Too much of an input went to quarantine early in a run: its settings are likely wrong."""


@dataclass
class FieldSample:
    """The fields of a file's first records, in the order first seen."""

    file: str
    fields: list[str] = field(default_factory=list)
    nested: set[str] = field(default_factory=set)  # dotted paths to the fields of nested objects (a dotted key's)
    records: int = 0  # records sampled (JSONL objects); 0 for a schema (Parquet, CSV header, DuckDB columns)
    lines: int = 0  # JSONL: non-blank lines read
    error: str | None = None  # why the input cannot be read at all (a DuckDB query that fails)

    @property
    def where(self) -> str:
        if self.records or self.lines:
            return f"the first {self.records:,} records of {self.file}"
        return self.file


def sample_fields(task: ReadTask, records: int = SAMPLE_RECORDS) -> FieldSample | None:
    """The fields of a task's first records (None: the file cannot be sampled: the run reports that itself)."""
    sample = FieldSample(task.rel_path)
    if task.format == "jsonl":
        _jsonl_fields(task, records, sample)
    elif task.format == "parquet":
        from corpus.readers.parquet import schema_paths

        try:
            schema = pq.read_schema(task.path)
        except (OSError, pa.ArrowException):
            return None
        sample.fields, sample.nested = schema.names, set(schema_paths(schema))
    elif task.format == "csv":
        from corpus.readers.csv import csv_header

        sample.fields = csv_header(task)
        sample.file = f"the header of {task.rel_path}"
    elif task.format == "text":
        sample.fields = [task.spec.text_key]  # the reader makes each file or line this one field
        sample.file = f"{task.rel_path} (plain text: one field, the text)"
    elif task.format == "duckdb":
        sample.file = "the DuckDB query result"
        columns = _duckdb_columns(task)
        if isinstance(columns, str):
            sample.error = columns
        else:
            sample.fields = columns
    return sample


def _jsonl_fields(task: ReadTask, records: int, sample: FieldSample) -> None:
    seen: dict[str, None] = {}
    size = 0
    buf = b""
    for block in ByteSource(task.path, block_size=1 << 16).blocks():
        buf += block
        size += len(block)
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if not line.strip(JSON_BLANK):
                continue
            sample.lines += 1
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                sample.records += 1
                seen.update(dict.fromkeys(rec))
                sample.nested |= _paths(rec)
            if sample.lines >= records:
                break
        if sample.lines >= records or size >= _SAMPLE_BYTES:
            break
    else:
        if buf.strip(JSON_BLANK) and sample.lines < records:  # a last line without a newline
            sample.lines += 1
            try:
                rec = json.loads(buf)
            except ValueError:
                rec = None
            if isinstance(rec, dict):
                sample.records += 1
                seen.update(dict.fromkeys(rec))
                sample.nested |= _paths(rec)
    sample.fields = list(seen)


def _paths(rec: dict, depth: int = NESTED_DEPTH) -> set[str]:
    """The dotted paths to the fields of a record's nested objects (a few levels deep)."""
    out: set[str] = set()
    for k, v in rec.items():
        if isinstance(v, dict) and depth > 1:
            out |= {f"{k}.{p}" for p in v} | {f"{k}.{p}" for p in _paths(v, depth - 1)}
    return out


def _duckdb_columns(task: ReadTask) -> list[str] | str:
    """The query result's columns, or why there are none (the words the run would stop with)."""
    from corpus.readers.duckdb import open_query

    try:
        con, rel = open_query(task)
    except InputError as exc:
        return str(exc)
    try:
        return list(rel.columns)
    finally:
        con.close()


def _shown(fields: Sequence[str], limit: int = 20) -> str:
    return ", ".join(fields[:limit]) + (", ..." if len(fields) > limit else "") if fields else "none"


def field_problems(tasks: Sequence[ReadTask], files: int = SAMPLE_FILES) -> list[str]:
    """What the first records of the first ``files`` files of one input say against its settings
    (``text_key``, ``id_key``, ``meta_keys``): one line per problem, without the input's name."""
    if not tasks:
        return []
    spec = tasks[0].spec
    # A file with nothing to read (empty, or not the compression its name says: the run quarantines it as
    # unreadable) says nothing about the settings.
    samples = [s for t in tasks[:files] if (s := sample_fields(t)) is not None and (s.fields or s.lines or s.error)]
    problems = [s.error for s in samples if s.error]
    samples = [s for s in samples if not s.error]
    not_json = [s for s in samples if s.lines and not s.records]
    if not_json:
        s = not_json[0]
        problems.append(f"none of the first {s.lines:,} lines of {s.file} is a JSON object — is the format right?")
    samples = [s for s in samples if s not in not_json]
    wanted = [("text_key", spec.text_key)]
    if spec.id_key is not None:
        wanted.append(("id_key", spec.id_key))
    wanted += [("meta_keys", k) for k in spec.meta_keys or []]
    for setting, key in wanted:
        nested_ok = setting != "meta_keys"  # text_key and id_key may name a nested field (doc.body)
        lacking = [s for s in samples if key not in s.fields and not (nested_ok and key in s.nested)]
        if not lacking:
            continue
        s = lacking[0]
        more = f" (and {len(lacking) - 1} more of the {len(samples)} files read)" if len(lacking) > 1 else ""
        fix = f"set {setting}" if setting != "meta_keys" else "check meta_keys"
        head = key.split(".")[0]
        if "." in key and head in s.fields and not nested_ok:  # meta_keys are top-level fields
            fix += f" to top-level fields; {head!r} is kept in meta whole when meta_keys names it"
        problems.append(f"no field {key!r} in {s.where}{more}; fields seen: {_shown(s.fields)} — {fix}")
    return problems


class QuarantineShare:
    """Records read and quarantined per input, as a run goes; ``check`` stops it when an input's share
    passes its ``max_quarantine_fraction``."""

    def __init__(self, tasks: Sequence[ReadTask]) -> None:
        self.tasks: dict[str, list[ReadTask]] = {}
        for t in tasks:
            self.tasks.setdefault(t.spec.source, []).append(t)
        self.seen: dict[str, int] = {}
        self.kinds: dict[str, dict[str, int]] = {}

    def add(self, source: str, seen: int, kinds: dict[str, int]) -> None:
        self.seen[source] = self.seen.get(source, 0) + seen
        acc = self.kinds.setdefault(source, {})
        for kind, n in kinds.items():
            acc[kind] = acc.get(kind, 0) + n

    def check(self, source: str, where: str = "", final: bool = False) -> None:
        """Raise QuarantineShareError when ``source`` is over its limit (``where``: a file, when the
        counts are that file's alone). ``final``: every record of the source has been read; an input of
        fewer than MIN_RECORDS is then judged too, when none of its records was kept and its settings name
        a field its records lack (a wrong text_key kept nothing, and the run looked like a success)."""
        tasks = self.tasks[source]
        limit = tasks[0].spec.max_quarantine_fraction
        seen, kinds = self.seen.get(source, 0), self.kinds.get(source, {})
        bad = sum(kinds.values())
        if bad <= limit * seen:
            return
        small = seen < MIN_RECORDS
        if small and not (final and bad == seen):
            return
        hints = field_problems(tasks)
        if small and not hints:
            return  # a few bad records in a small input: its data, not its settings
        top = ", ".join(f"{k} {n:,}" for k, n in _top(kinds.items(), 3))
        hints = hints or [
            "see what went wrong with `corpus quarantine list OUT`; if this input is expected to be that bad, "
            "raise its max_quarantine_fraction (1 never stops)"]
        which = f"its {seen:,}" if final else f"the first {seen:,}"
        raise QuarantineShareError(
            f"input {source!r}{where}: {bad:,} of {which} records quarantined ({bad / seen:.1%}), over its "
            f"max_quarantine_fraction {limit:g} ({top}): " + "; ".join(hints))


def _top(items: Iterable[tuple[str, int]], n: int) -> list[tuple[str, int]]:
    return sorted(items, key=lambda kv: (-kv[1], kv[0]))[:n]
