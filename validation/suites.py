"""Expectation suites: Great Expectations' own JSON format, read and checked before anything runs.

A suite file is what ``ExpectationSuite.to_json_dict()`` writes (and what GX users keep in version
control)::

    {"name": "web-documents",
     "meta": {"kind": "documents"},
     "expectations": [
       {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "text"}},
       {"type": "expect_column_proportion_of_unique_values_to_be_between",
        "kwargs": {"column": "text_hash", "min_value": 0.95}, "severity": "warning"}]}

Every expectation is built by GX here, one at a time, so a bad one is an error naming the file, its
position and the cause (GX itself logs an unknown type and drops it from the suite). Regular
expressions are compiled too. Columns are checked against the data when it is known (``missing``).

corpusforge reads three keys of ``meta``: the suite's ``kind`` (``documents``, the default, or
``tokens``), and per expectation ``scope: corpus`` (a share, not a rule per row: never quarantines rows)
and, in token suites, ``table: files`` (see validation/tokens.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corpus.owner import refuse_foreign_file
from corpus.validation import gx
from corpus.writers import write_bytes_atomic

KINDS = ("documents", "tokens")
SEVERITIES = ("critical", "warning", "info")
# What GX's ExpectationConfiguration takes; "id" and rendering state are dropped (ids are ours per run).
ENTRY_KEYS = ("type", "kwargs", "meta", "notes", "description", "severity")
IGNORED_KEYS = ("id", "rendered_content", "success_on_last_run", "expectation_context")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SuiteError(ValueError):
    """A suite that cannot be used as it is: the message names the file, the expectation and the cause."""


@dataclass(frozen=True)
class Suite:
    """A checked suite: its entries are plain dicts GX builds again in each process."""

    name: str
    path: str
    sha256: str
    kind: str
    entries: tuple[dict, ...]

    def label(self, i: int) -> str:
        """``type(columns)``, numbered when two expectations would read the same."""
        own = _label(self.entries[i])
        if sum(_label(e) == own for e in self.entries) > 1:
            return f"{own} #{i + 1}"
        return own

    def severity(self, i: int) -> str:
        return str(self.entries[i].get("severity") or "critical")

    def scope(self, i: int) -> str:
        """'row', 'schema' or 'corpus' (see gx.scope); ``meta.scope: corpus`` makes a map expectation one."""
        if (self.entries[i].get("meta") or {}).get("scope") == "corpus":
            return "corpus"
        return gx.scope(self.entries[i]["type"])

    def where(self, i: int) -> str:
        return f"{self.path}: expectations[{i}] ({self.entries[i]['type']})"

    def columns(self, i: int, known: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Columns expectation i reads: its column kwargs, and those of ``known`` its row_condition names."""
        e = self.entries[i]
        kwargs = e.get("kwargs") or {}
        cols = [kwargs[k] for k in ("column", "column_A", "column_B") if isinstance(kwargs.get(k), str)]
        cols += [c for c in kwargs.get("column_list") or [] if isinstance(c, str)]
        if isinstance(kwargs.get("row_condition"), str):
            cols += [w for w in _WORD.findall(kwargs["row_condition"]) if w in known]
        return list(dict.fromkeys(cols))

    def required(self, i: int, known: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Columns the data must have for expectation i to run at all: a schema expectation's column is
        what it looks for (its absence is that expectation's failure, not an error)."""
        return [] if self.scope(i) == "schema" else self.columns(i, known)


def _label(e: dict) -> str:
    kwargs = e.get("kwargs") or {}
    cols = [kwargs[k] for k in ("column", "column_A", "column_B") if isinstance(kwargs.get(k), str)]
    cols += [str(c) for c in kwargs.get("column_list") or []]
    return f"{e['type']}({', '.join(cols)})" if cols else e["type"]


def load_suite(path: str | Path) -> Suite:
    """Read and check a suite file; SuiteError naming the problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SuiteError(f"cannot read suite {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise SuiteError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    return parse_suite(data, str(path), hashlib.sha256(raw).hexdigest())


def parse_suite(data: Any, path: str = "<suite>", sha256: str = "") -> Suite:
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: expected a JSON object with 'name' and 'expectations', got {type(data).__name__}")
    if "expectation_suite_name" in data:
        raise SuiteError(f"{path}: a Great Expectations 0.x suite ('expectation_suite_name'); version 1 names it "
                         "'name' and each expectation's 'expectation_type' is 'type'")
    exps = data.get("expectations")
    if not isinstance(exps, list):
        raise SuiteError(f"{path}: 'expectations' must be a list of {{\"type\": ..., \"kwargs\": {{...}}}} objects")
    meta = data.get("meta") or {}
    kind = meta.get("kind", "documents") if isinstance(meta, dict) else "documents"
    if kind not in KINDS:
        raise SuiteError(f"{path}: meta.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    entries = tuple(_entry(e, f"{path}: expectations[{i}]") for i, e in enumerate(exps))
    if not entries:
        raise SuiteError(f"{path}: the suite has no expectations")
    return Suite(str(data.get("name") or Path(path).stem), path, sha256, kind, entries)


def _entry(e: Any, where: str) -> dict:
    if not isinstance(e, dict) or not isinstance(e.get("type"), str):
        hint = " ('expectation_type' is 'type' in Great Expectations 1.x)" if isinstance(e, dict) and \
            "expectation_type" in e else ""
        raise SuiteError(f"{where}: expected an object with 'type' and 'kwargs'{hint}")
    where = f"{where} ({e['type']})"
    unknown = sorted(set(e) - set(ENTRY_KEYS) - set(IGNORED_KEYS))
    if unknown:
        raise SuiteError(f"{where}: unknown key(s) {unknown}; an expectation has {', '.join(ENTRY_KEYS)}")
    if not isinstance(e.get("kwargs", {}), dict):
        raise SuiteError(f"{where}: 'kwargs' must be an object")
    entry = {k: e[k] for k in ENTRY_KEYS if e.get(k) is not None}
    entry.setdefault("kwargs", {})
    if entry.get("severity", "critical") not in SEVERITIES:
        raise SuiteError(f"{where}: severity must be one of {', '.join(SEVERITIES)}, got {entry['severity']!r}")
    if entry["type"] in gx.SQL_ONLY:
        raise SuiteError(f"{where}: needs a SQL engine; corpusforge runs Great Expectations' pandas engine")
    try:
        gx.check_regexes(entry["kwargs"])
        gx.build(entry)
    except gx.ExpectationProblem as exc:
        raise SuiteError(f"{where}: {exc}") from None
    meta = entry.get("meta") or {}
    if meta.get("scope") not in (None, "corpus"):
        raise SuiteError(f"{where}: meta.scope may only be 'corpus', got {meta['scope']!r}")
    return json.loads(json.dumps(entry))  # plain JSON from here on (what workers and the catalog get)


def missing(suite: Suite, indexes: list[int], columns: set[str] | frozenset[str], where: str,
            derived: dict[str, str] | None = None) -> None:
    """SuiteError if one of the expectations ``indexes`` needs a column the data does not have (naming
    the expectation, the column and what there is). ``derived``: columns computed on demand -> the
    column they are computed from."""
    derived = derived or {}
    have = set(columns) | {d for d, src in derived.items() if src in columns}
    for i in indexes:
        for col in suite.required(i, have):
            if col not in have:
                import difflib

                close = difflib.get_close_matches(col, sorted(have), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise SuiteError(f"{suite.where(i)}: column {col!r}{hint} is not in {where} "
                                 f"(columns: {', '.join(sorted(have))})")


def write_suite(path: Path, name: str, kind: str, entries: list[dict], notes: str = "") -> dict:
    """Write a suite in GX's JSON format (checked by building it, as load_suite would)."""
    refuse_foreign_file(Path(path))
    suite = gx.library().ExpectationSuite(name=name, expectations=[gx.build(e) for e in entries],
                                     meta={"kind": kind}, notes=notes or None)
    data = suite.to_json_dict()
    data.pop("id", None)
    for e in data["expectations"]:
        e.pop("id", None)
    write_bytes_atomic(Path(path), (json.dumps(gx.plain(data), indent=2) + "\n").encode())
    return data
