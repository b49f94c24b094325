"""Reader contract: an input spec expands into read tasks (one per file); a task yields chunks.

Every record of an input ends up either as a row of ``ReadChunk.docs`` (DOC_SCHEMA) or as a row of
``ReadChunk.bad`` (QUARANTINE_SCHEMA, with file, line, raw bytes and error kind). ``ReadChunk.seen``
counts the records the reader met in that chunk, so the executor can check ``seen == len(docs) +
len(bad)``; ``ReadChunk.blank`` counts the blank lines it skipped (they are not records, but they are
input: a file's lines = records + blank lines for JSONL and text read by line).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, TypeAlias

import polars as pl

FORMATS = ("jsonl", "parquet", "csv", "text", "duckdb")


class InputError(Exception):
    """A configured input cannot be read at all (missing path, nothing matches a glob, bad option)."""


@dataclass(frozen=True)
class InputSpec:
    """One configured input (a `inputs:` entry in YAML)."""

    source: str
    path: str | list[str] | None = None  # file, folder (all files below), glob, or a list of these
    format: str | None = None  # inferred from the extension when None
    text_key: str = "text"  # dotted (doc.body): a nested field, unless a field has that very name
    id_key: str | None = None  # None: id = "<source>:<relative path>:<row>"; may be dotted as text_key
    meta_keys: list[str] | None = None  # None: every other field goes to meta
    meta_rename: dict[str, str] = field(default_factory=dict)  # input field -> its name in meta
    # May the text field hold a JSON array or object (chat `messages`)? It is then kept as its JSON text
    # (for the chat_template operator to render); else such a record is quarantined as non_string_text.
    text_json: bool = False
    text_mode: str = "file"  # text format: "file" (one doc per file) or "line" (one doc per line)
    query: str | None = None  # duckdb: the SQL query
    database: str | None = None  # duckdb: database file (None: in-memory, query may read files)
    csv_delimiter: str | None = None  # None: a tab for a .tsv file, else ","
    # May a quoted CSV value span lines? true: yes (RFC 4180); false: no, a quote still open at the end
    # of a line makes that line malformed; "auto": yes, unless the lines after the first read as
    # records of their own (see corpus/readers/csv.py).
    csv_multiline: bool | Literal["auto"] = "auto"
    max_doc_bytes: int = 64 << 20  # larger texts are quarantined as too_large
    # A run stops when more than this share of the records read so far was quarantined (judged from
    # corpus.readers.check.MIN_RECORDS records on): a wrong text_key or format, not bad data. 1: never.
    max_quarantine_fraction: float = 0.5


Inputs: TypeAlias = InputSpec | str | os.PathLike[str] | Sequence[InputSpec | str | os.PathLike[str]]


def as_specs(inputs: Inputs) -> list[InputSpec]:
    """What a run or a profile reads, as InputSpecs: a spec, a path (a file, folder or glob, its source
    named after it as ``corpus profile`` names one), or a list of these."""
    items = [inputs] if isinstance(inputs, InputSpec | str | os.PathLike) else inputs
    if hasattr(inputs, "columns") or hasattr(inputs, "schema"):  # a polars/pandas frame or an Arrow table
        raise InputError(f"inputs: a {type(inputs).__name__} in memory is not read directly: write it as Parquet "
                         "(df.write_parquet('docs.parquet')) and pass that path, so a run can resume from it and "
                         "account for its every record")
    if not isinstance(items, Sequence):
        raise InputError(f"inputs: expected an InputSpec, a path or a list of them, got {type(inputs).__name__}")
    from corpus.config import param_problems  # config reads InputSpecs from YAML: imported here, not at the top

    specs = []
    for i, x in enumerate(items):
        if isinstance(x, InputSpec):
            x = _fspaths(x)
            problems = param_problems(x)  # what a config's loader would refuse (text_key=5 failed deep in a reader)
            if problems:
                raise InputError(f"inputs[{i}] (source {x.source!r}): " + "; ".join(problems))
            specs.append(x)
        elif isinstance(x, str | os.PathLike):
            spec = InputSpec(source=Path(x).name or "input", path=os.fspath(x))
            object.__setattr__(spec, _PATH_NAMED, True)
            specs.append(spec)
        else:
            raise InputError(f"inputs[{i}]: expected an InputSpec or a path, got {type(x).__name__} ({x!r:.60})")
    return specs


_PATH_NAMED = "_named_after_path"  # as_specs made this spec of a plain path, and named it after it


def is_path_named(spec: InputSpec) -> bool:
    """Whether as_specs made ``spec`` of a plain path (its source is the file or folder name)."""
    return getattr(spec, _PATH_NAMED, False)


def _fspaths(spec: InputSpec) -> InputSpec:
    """The spec with pathlib paths as strings, as a config gives them."""
    p = spec.path
    if isinstance(p, os.PathLike):
        return replace(spec, path=os.fspath(p))
    if isinstance(p, list | tuple) and any(isinstance(q, os.PathLike) for q in p):
        return replace(spec, path=[os.fspath(q) if isinstance(q, os.PathLike) else q for q in p])
    return spec


def derived_id(source: str, rel_path: str, row: int | str) -> str:
    """The id a record without one gets: ``SOURCE:FILE:ROW`` (FILE relative to the input's root, ROW its
    1-based line or row). ``row=""`` gives the prefix the row number is appended to (a column expression)."""
    return f"{source}:{rel_path}:{row}"


@dataclass(frozen=True)
class ReadTask:
    """One unit of reading: one file of an input (or the whole DuckDB query), or one part of a big file
    (corpus/readers/plan.py ``split_tasks``): a byte range of whole lines, or a run of Parquet row groups."""

    spec: InputSpec
    path: str  # absolute file path, or "duckdb:<db or :memory:>"
    rel_path: str  # path relative to the input's root: used in derived ids, stable if the data moves
    format: str
    index: int  # position of this task's file in the run's task list (stable ordering; row_id's high bits)
    part: int | None = None  # which part of its file (None: the whole file)
    start: int = 0  # a part: its first byte (JSONL, text) or row group (Parquet)
    end: int | None = None  # ... and the byte or row group after its last (None: the file's end)
    first_row: int = 1  # the file's line (JSONL, text) or row (Parquet) number of the part's first

    @property
    def unit(self) -> str:
        """The unit's name: its markers' and shard prefix's (``00003``, or ``00003-p0001`` for a part)."""
        return f"{self.index:05d}" if self.part is None else f"{self.index:05d}-p{self.part:04d}"


@dataclass
class ReadChunk:
    docs: pl.DataFrame
    bad: pl.DataFrame
    seen: int
    bytes_read: int = 0  # input bytes consumed (compressed size for .gz/.zst), for MB/s
    blank: int = 0  # blank lines skipped (not records)
    extra: dict = field(default_factory=dict)
