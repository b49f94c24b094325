"""The fields each input file holds, and schema drift across the files of one source.

Readers note, per file, every top-level field of its records with the JSON-ish type of its values
(``int``, ``float``, ``string``, ``bool``, ``object``, ``array``, or a typed column's own type such as
``binary`` or ``datetime``) and how many records have it non-null: typed frames by their column types
(JSONL pieces by the types polars gives their columns, so one piece mixing numbers and strings in a
field notes ``string``, though each record's meta keeps its own values), records on the per-record path
by their values. The executor keeps them in each read
marker and compares the files of a source with its first file (``drift``): a field that file has
and a later one lacks is *missing*, one a later file adds is *extra*, one whose types differ is
*retyped*. Nothing is coerced or dropped for it: a missing field is absent from ``meta``, an extra one
lands in ``meta``, and every value keeps its own type there; the drift is recorded in the catalog
(``source_fields``), reported, and logged as one warning line per source.

A field holding objects (JSON objects, struct columns) also notes the fields inside them, as dotted paths
relative to it with their non-null row counts (``nested``; a few levels deep, as ``corpus check`` samples),
so a dotted ``id_key`` no record has is warned about (``unused_keys``). Where they are unknown (a marker
written before they were noted, too many of them) the key is given the benefit of the doubt.

Only parsed records are counted: a file that noted no field (every record quarantined before it was
parsed, invalid UTF-8 or JSON, or records without a non-null field) has no schema to compare and is left
out of ``drift``, so it is neither reported as missing every field nor taken as its source's reference.
Field names are written to the catalog and to warnings through ``shown_name``: a JSON key may be a lone
surrogate (``"\\udc00"``), which is no UTF-8 text: DuckDB refuses it, and the run would stop there.
"""

from __future__ import annotations

from typing import Any

import polars as pl

FieldStats = dict[str, dict[str, Any]]  # field -> {"types": [..], "rows": n[, "nested": {path: n}]}
NESTED_DEPTH = 4  # the parts of a dotted path noted, the top-level field's included (corpus check's too)
NESTED_MAX = 256  # nested paths noted per field and file: past it they are left unknown (an object keyed by ids, say)


def shown_name(name: str) -> str:
    """A field name as the catalog and warnings hold it: a lone surrogate (not UTF-8 text) as its escape
    (``\\udc00``, as JSON writes it), every other character as it is."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def value_type(value: Any) -> str:
    """The type name of a decoded record value (None is no value and has no type)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, bytes | bytearray | memoryview):
        return "binary"
    return type(value).__name__.lower()


def dtype_type(dtype: pl.DataType) -> str | None:
    """The same names for a typed column (None for an all-null column: no values, no type)."""
    if dtype == pl.Null:
        return None
    if dtype.is_integer():
        return "int"
    if dtype.is_float():
        return "float"
    if dtype in (pl.String, pl.Categorical, pl.Enum) or isinstance(dtype, pl.Categorical | pl.Enum):
        return "string"
    if dtype == pl.Boolean:
        return "bool"
    if isinstance(dtype, pl.Struct):
        return "object"
    if isinstance(dtype, pl.List | pl.Array):
        return "array"
    return str(dtype.base_type()).lower()


def _struct_width(dtype: pl.Struct, depth: int) -> int:
    """How many fields a struct type has, ``depth`` parts deep at most."""
    return sum(1 + (_struct_width(f.dtype, depth - 1) if isinstance(f.dtype, pl.Struct) and depth > 1 else 0)
               for f in dtype.fields)


def _struct_counts(column: pl.Series, depth: int) -> dict[str, int]:
    """The dotted paths to a struct column's fields, ``depth`` parts deep at most, with their non-null rows.
    Unnested by position: pl.col().struct.field() would read a field named '*' or '^...$' as a pattern."""
    out = {}
    for inner in column.struct.unnest().iter_columns():  # a null struct's fields are null too
        n = inner.len() - inner.null_count()
        if n:
            out[inner.name] = n
            if isinstance(inner.dtype, pl.Struct) and depth > 1:
                out |= {f"{inner.name}.{p}": k for p, k in _struct_counts(inner, depth - 1).items()}
    return out


def _count_object(value: dict, into: dict[str, int], prefix: str, depth: int) -> None:
    """Counts the dotted paths to a decoded object's non-null fields, ``depth`` parts deep at most."""
    for k, v in value.items():
        if v is not None:
            path = prefix + k
            into[path] = into.get(path, 0) + 1
            if depth > 1 and isinstance(v, dict):
                _count_object(v, into, path + ".", depth - 1)


def nested_of(s: dict[str, Any]) -> dict[str, int] | None:
    """A field's nested paths and their row counts: {} when it held no object, None when unknown."""
    if "nested" in s:
        return s["nested"]
    return None if "object" in s["types"] else {}


class FieldCounter:
    """Accumulates one file's fields (a DocBuilder holds one per chunk; chunks merge with ``merge``)."""

    def __init__(self) -> None:
        self.types: dict[str, set[str]] = {}
        self.rows: dict[str, int] = {}
        self.nested: dict[str, dict[str, int] | None] = {}  # None: past NESTED_MAX, unknown

    def _add_nested(self, name: str, counts: dict[str, int]) -> None:
        have = self.nested.setdefault(name, {})
        if have is None:
            return
        for path, n in counts.items():
            have[path] = have.get(path, 0) + n
        if len(have) > NESTED_MAX:
            self.nested[name] = None

    def frame(self, df: pl.DataFrame, skip: set[str]) -> None:
        for name, dtype in df.schema.items():
            t = None if name in skip else dtype_type(dtype)
            if t is not None:
                self.types.setdefault(name, set()).add(t)
                self.rows[name] = self.rows.get(name, 0) + df.height - df[name].null_count()
            if t == "object" and isinstance(dtype, pl.Struct):
                if _struct_width(dtype, NESTED_DEPTH - 1) > NESTED_MAX:
                    self.nested[name] = None
                else:
                    self._add_nested(name, _struct_counts(df[name], NESTED_DEPTH - 1))

    def record(self, rec: dict[str, Any]) -> None:
        for name, value in rec.items():
            if value is not None:
                self.types.setdefault(name, set()).add(value_type(value))
                self.rows[name] = self.rows.get(name, 0) + 1
                if isinstance(value, dict):
                    have = self.nested.setdefault(name, {})
                    if have is not None:
                        _count_object(value, have, "", NESTED_DEPTH - 1)
                        if len(have) > NESTED_MAX:
                            self.nested[name] = None

    def stats(self) -> FieldStats:
        out: FieldStats = {}
        for k in sorted(self.types):
            out[k] = {"types": sorted(self.types[k]), "rows": self.rows[k]}
            nested = self.nested.get(k, {})
            if "object" in self.types[k] and nested is not None:  # left out: unknown (nested_of)
                out[k]["nested"] = dict(sorted(nested.items()))
        return out


def merge(into: FieldStats, more: FieldStats) -> FieldStats:
    for name, s in more.items():
        have = into.setdefault(name, {"types": [], "rows": 0})
        mine, theirs = nested_of(have), nested_of(s)
        have["types"] = sorted(set(have["types"]) | set(s["types"]))
        have["rows"] += s["rows"]
        have.pop("nested", None)
        if mine is not None and theirs is not None and "object" in have["types"]:
            both = {p: mine.get(p, 0) + theirs.get(p, 0) for p in {*mine, *theirs}}
            if len(both) <= NESTED_MAX:
                have["nested"] = dict(sorted(both.items()))
    return into


def drift(markers: list[dict]) -> list[dict]:
    """Per source with more than one file: each later file's missing, extra and retyped fields against
    the source's first file (read markers in corpus order; files read before fields were noted, and
    files that noted none, are left out). Only files that differ are listed."""
    by_source: dict[str, list[dict]] = {}
    for m in markers:
        # No field noted: no record was parsed (all quarantined before), so no schema to compare.
        if m.get("fields"):
            by_source.setdefault(m["source"], []).append(m)
    out = []
    for source, files in by_source.items():
        ref = files[0]
        base = ref["fields"]
        for m in files[1:]:
            fields = m["fields"]
            missing = sorted(set(base) - set(fields))
            extra = sorted(set(fields) - set(base))
            retyped = {k: {"reference": base[k]["types"], "file": fields[k]["types"]}
                       for k in sorted(set(base) & set(fields)) if base[k]["types"] != fields[k]["types"]}
            if missing or extra or retyped:
                out.append({"source": source, "reference": ref["file"], "file": m["file"], "missing": missing,
                            "extra": extra, "retyped": retyped})
    return out


def describe(found: list[dict]) -> list[str]:
    """One line per source with drift, for the run's warning."""
    lines = []
    for source in dict.fromkeys(d["source"] for d in found):
        mine = [d for d in found if d["source"] == source]
        parts = []
        for kind in ("missing", "extra"):
            names = sorted({shown_name(f) for d in mine for f in d[kind]})
            if names:
                n = sum(1 for d in mine if d[kind])
                parts.append(f"{kind} {', '.join(names[:5])}{' ...' if len(names) > 5 else ''} in {n} file(s)")
        retyped = sorted({shown_name(f) for d in mine for f in d["retyped"]})
        if retyped:
            ex = next(d for d in mine if d["retyped"])
            k = next(iter(ex["retyped"]))
            t = ex["retyped"][k]
            parts.append(f"retyped {', '.join(retyped[:5])} (e.g. {shown_name(k)}: {'/'.join(t['reference'])} in "
                         f"{ex['reference']}, {'/'.join(t['file'])} in {ex['file']})")
        lines.append(f"schema drift in source {source!r} against its first file {mine[0]['reference']}: "
                     + "; ".join(parts) + " (nothing was coerced or dropped; see the report)")
    return lines


def unused_keys(specs: list[Any], markers: list[dict]) -> list[str]:
    """Settings that named a field no record of their input has, from what was read (not a sample):
    ``id_key`` (every document then gets a derived id) and ``meta_keys`` entries. One line each."""
    lines = []
    for spec in specs:
        seen: FieldStats = {}
        read = [m["fields"] for m in markers if m["source"] == spec.source and m.get("fields") is not None]
        for f in read:
            merge(seen, f)
        if not read or not seen:
            continue
        shown = ", ".join(shown_name(k) for k in sorted(seen)[:12]) + (" ..." if len(seen) > 12 else "")
        if spec.id_key is not None and has_field(seen, spec.id_key) is False:
            lines.append(f"input {spec.source!r}: no record has the field {spec.id_key!r} that id_key names, so every "
                         f"document got a derived id ({spec.source}:FILE:LINE); fields: {shown} — check id_key")
        for key in [k for k in spec.meta_keys or [] if k not in seen]:  # meta_keys name top-level fields only
            head = key.split(".")[0]
            hint = (f" to top-level fields; {head!r} is kept in meta whole when meta_keys names it"
                    if "." in key and head in seen else "")
            lines.append(f"input {spec.source!r}: no record has the field {key!r} that meta_keys names; fields: "
                         f"{shown} — check meta_keys{hint}")
    return lines


def has_field(seen: FieldStats, key: str) -> bool | None:
    """Whether some record read has ``key`` as the readers look it up (``lookup``: a field of that very name,
    else the nested field a dotted key names); None when the figures cannot tell (nested paths unknown, or
    deeper than NESTED_DEPTH)."""
    if key in seen:
        return True
    head, _, rest = key.partition(".")
    if not rest or head not in seen:
        return False
    nested = nested_of(seen[head])
    if nested is None:
        return None
    parts = rest.split(".")
    if len(parts) < NESTED_DEPTH:
        return nested.get(rest, 0) > 0
    return None if nested.get(".".join(parts[:NESTED_DEPTH - 1]), 0) > 0 else False  # deeper than noted
