"""JSONL reader, and the record checks every reader shares.

Hot path: a chunk of whole lines is parsed by ``pl.read_ndjson`` and checked with vectorised
expressions; only the rows those checks flag (or every line of a piece polars refuses) are
re-parsed one by one with ``json.loads``, which decides their exact fate. The vectorised checks
are a *superset* of the per-record rules, so both paths agree on every record's fate, id and text.

A dotted ``text_key`` or ``id_key`` (``doc.body``) names a nested field (``lookup``; a field with that
very name wins): the hot path reads it from the struct column polars made (``DocBuilder.lift``), and
meta leaves it out of its object (an object left empty goes too, per record).

``meta`` holds the record's other fields as a JSON object (keys sorted at every level, null or
absent top-level fields left out): each value as the record wrote it (same JSON value and type on
both paths, whatever records share its piece; a float's digits may be spelt 1.5e-05 or 0.000015).
polars unifies a field's type across a piece (1 -> 1.0 beside a float, [1, 2] -> "[1, 2]" beside a
string, null members for keys other records' objects have), so the hot path flags every value such a
unification could have made (``_changed``; a string only where the piece writes its key with another
type somewhere, ``_mixed_keys``) and those records take the per-record path. The id field is checked
alike (its number's text as json.loads and str give it): every id polars read as a float, too. A lone
high surrogate escape, which polars reads as NUL, sends its record there too.

A corpusforge document read back (another run's output or export) keeps its meta: a ``meta`` field
holding a string that is a JSON object gives its members to meta (a record's own field of the same
name wins), and when the record also has the document columns source, src_file, src_row and row_id,
those (and copy_of_row) are dropped: the new run sets its own. ``merged_meta`` holds the rule.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import polars as pl

from corpus.readers.base import ReadChunk, ReadTask, derived_id
from corpus.readers.fields import FieldCounter, value_type
from corpus.readers.streams import ByteSource, FilePieces, LineChunker, newlines, prefetch
from corpus.schema import (
    COPY_OF,
    DOC_SCHEMA,
    META,
    RAW_FILE,
    RAW_LINE,
    RAW_ROW,
    ROW_BITS,
    ROW_ID,
    SOURCE,
    SRC_FILE,
    SRC_ROW,
    empty_docs,
    quarantine_frame,
)
from corpus.writers import finite_json

if TYPE_CHECKING:
    from corpus.quarantine import RawStore

# Lines holding only these bytes are blank: not records (polars skips exactly these too).
JSON_BLANK = b" \t\r"
_BLANK_START = frozenset(JSON_BLANK)

# Python's str.isspace() set, so the vectorised "only whitespace" test equals `not text.strip()`.
_WS_CLASS = (
    r"[\t\n\x0B\x0C\r\x1C-\x1F \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}"
    r"\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]"
)
BLANK_TEXT_RE = rf"^{_WS_CLASS}*$"
# polars silently turns a non-string value in a string column into text (5 -> "5", {"a":1} ->
# '{"a": 1}'); any text that could be such a conversion is re-checked from the original line.
RECHECK_TEXT_RE = rf"(?s)^(?:{_WS_CLASS}*|-?[0-9][0-9.eE+\-]*|-?inf|NaN|nan|true|false|\{{.*\}}|\[.*\])$"
# A meta value polars may have made from a non-string one of another type in the piece (a number as
# it writes numbers, a bool, an object or array as its text); a string column's others are as written.
STRINGIFIED_RE = r"(?s)^(?:-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|-?inf|NaN|nan|true|false|\{.*\}|\[.*\])$"
# The end of a key written with an escape (any key holding one: after its last escape no quote or
# backslash comes before the closing quote, and only a key's closing quote is followed by a colon).
_ESCAPED_KEY_RE = r'\\(?:u[0-9a-fA-F]{4}|["\\/bfnrt])[^"\\]*"\s*:'
# A document's meta as a field: JSON text that may hold an object (merged_meta decides).
OBJECT_TEXT_RE = r"^[ \t\n\r]*\{"
# The document columns a corpusforge document read back drops (merged_meta): the new run sets its own.
BOOKKEEPING = (SOURCE, SRC_FILE, SRC_ROW, ROW_ID)

# Below this size a piece polars refuses is read line by line instead of split further.
_SPLIT_MIN = 256 << 10
_PIECE = 8 << 20
_ROW = "\x00row"  # scratch column name no JSON key can collide with in practice


# fields.value_type's names of JSON's types, as JSON says them (a user reads "got null", not "got NoneType").
_JSON_NAMES = {"bool": "boolean", "int": "number", "float": "number", "string": "string", "object": "object",
               "array": "array"}


def type_name(value: Any) -> str:
    """A parsed value's type as JSON names it (a typed column's other types by their class)."""
    if value is None:
        return "null"
    return _JSON_NAMES.get(value_type(value)) or type(value).__name__


def _first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # polars keeps the first of duplicated keys; json.loads would keep the last.
    out: dict[str, Any] = {}
    for k, v in pairs:
        out.setdefault(k, v)
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(s: str) -> float:
    value = float(s)
    if math.isinf(value):
        raise ValueError(f"number {s[:40]} is out of range")
    return value


def json_default(value: Any) -> Any:
    """Values JSON lacks (typed Parquet/DuckDB columns): bytes as hex, like the vectorised path."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


MISSING = object()  # lookup: the record has no such field


def path_of(key: str | None) -> list[str] | None:
    """A dotted key's parts ("doc.body" -> ["doc", "body"]), None for a plain one."""
    return key.split(".") if key and "." in key else None


def lookup(rec: dict[str, Any], key: str) -> Any:
    """A record's value for ``key``: its field of that very name, else, for a dotted key, the nested
    field the dots name (``doc.body``: the ``body`` of the object in ``doc``); MISSING when neither."""
    if key in rec:
        return rec[key]
    parts = path_of(key)
    if parts is None:
        return MISSING
    value: Any = rec
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def without(rec: dict[str, Any], parts: list[str]) -> dict[str, Any]:
    """The record without the nested field ``parts`` names (for meta: the text is not kept twice); an
    object left empty goes too."""
    head = parts[0]
    if head not in rec:
        return rec
    out = dict(rec)
    if len(parts) == 1:
        del out[head]
    elif isinstance(out[head], dict):
        inner = without(out[head], parts[1:])
        if inner:
            out[head] = inner
        else:
            del out[head]
    return out


def _wildcard(name: str) -> bool:
    """pl.col() and struct.field() read these names as wildcards (a nested one makes polars panic)."""
    return name == "*" or (name.startswith("^") and name.endswith("$"))


def _name_inside(dtype: pl.DataType, test: Callable[[str], bool]) -> bool:
    """Whether a key of an object inside values of this type passes ``test``."""
    if isinstance(dtype, pl.Struct):
        return any(test(f.name) or _name_inside(f.dtype, test) for f in dtype.fields)
    return isinstance(dtype, pl.List | pl.Array) and _name_inside(dtype.inner, test)


def _has_nul(name: str) -> bool:
    return "\x00" in name


def _has_struct(dtype: pl.DataType) -> bool:
    if isinstance(dtype, pl.Struct):
        return True
    return isinstance(dtype, pl.List | pl.Array) and _has_struct(dtype.inner)


def _sorted_expr(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """The value with the keys of its objects sorted at every level, as the per-record path writes them
    (json.dumps sort_keys): polars' struct fields come in the piece's order of first appearance."""
    if isinstance(dtype, pl.Struct):
        fields = sorted(dtype.fields, key=lambda f: f.name)
        if not fields:
            return expr
        inner = [_sorted_expr(expr.struct.field(f.name), f.dtype).alias(f.name) for f in fields]
        return pl.when(expr.is_not_null()).then(pl.struct(inner))
    if isinstance(dtype, pl.List | pl.Array) and _has_struct(dtype.inner):
        as_list = expr.cast(pl.List(dtype.inner)) if isinstance(dtype, pl.Array) else expr
        return as_list.list.eval(_sorted_expr(pl.element(), dtype.inner))
    return expr


def _changed(
    expr: pl.Expr, dtype: pl.DataType, mixed: set[str] | None = None, name: str | None = None
) -> pl.Expr | None:
    """Where a (non-null) value of a column polars' JSON reader made may differ from what the record
    wrote, because polars unified the field's type across the piece (None: nowhere): a float that is
    integral (an int beside floats), a string that could be another value's text, and inside objects
    and arrays those and any null (a key only other records' objects have), and a string holding NUL
    (polars' reading of a lone surrogate escape, which the per-record path keeps). Other types are exact.
    ``mixed``: the keys the piece writes with a non-string value somewhere (``_mixed_keys``; None: any
    key may be); a string field ``name`` not among them is as written. A list's strings have no key."""
    if dtype == pl.String:
        # polars reads a lone high surrogate escape as NUL (the per-record path keeps the escape)
        nul = expr.str.contains("\x00", literal=True)
        if mixed is not None and name is not None and name not in mixed:
            return nul
        return nul | expr.str.contains(STRINGIFIED_RE)
    if dtype.is_float():
        return expr.floor() == expr
    if dtype.is_integer() or dtype in (pl.Boolean, pl.Null):
        return None
    if isinstance(dtype, pl.Struct):
        parts = []
        for f in dtype.fields:
            member = expr.struct.field(f.name)
            inner = _changed(member, f.dtype, mixed, f.name)
            parts.append(member.is_null() if inner is None else member.is_null() | inner)
        return pl.any_horizontal(parts) if parts else None
    if isinstance(dtype, pl.List):
        inner = _changed(pl.element(), dtype.inner, mixed)
        each = pl.element().is_null() if inner is None else pl.element().is_null() | inner
        return expr.list.eval(each).list.any()
    return pl.lit(True)


def _string_keys(name: str, dtype: pl.DataType, out: set[str]) -> None:
    """The keys of ``name``'s value, itself included, whose values polars read as strings (in objects,
    also objects in arrays)."""
    if dtype == pl.String:
        out.add(name)
    elif isinstance(dtype, pl.Struct):
        for f in dtype.fields:
            _string_keys(f.name, f.dtype, out)
    elif isinstance(dtype, pl.List | pl.Array) and _has_struct(dtype.inner):  # (a list's strings have no key)
        _string_keys(name, dtype.inner, out)


def _mixed_keys(raw: bytes, keys: set[str]) -> set[str] | None:
    """Those of ``keys`` the piece ``raw`` writes with a non-string, non-null value somewhere (at any
    depth): only their string values can be another type's text. None when a key in the piece is
    written with an escape (its name in the bytes is not the one polars reads: every key counts)."""
    if not keys:
        return set()
    alternation = "|".join(pl.escape_regex(k) for k in sorted(keys))
    pattern = rf'"({alternation})"\s*:\s*[^"\sn]|{_ESCAPED_KEY_RE}'
    text = pl.Series([raw], dtype=pl.Binary).cast(pl.String, strict=False)
    if text.null_count():
        return None
    try:
        hits = text.str.extract_all(pattern).explode().drop_nulls().unique().to_list()
    except pl.exceptions.ComputeError:  # too many keys for one regex: every key counts
        return None
    found = set()
    for hit in hits:
        if hit.startswith("\\"):
            return None
        found.add(hit[1 : hit.rindex('"')])
    return found


def _without_expr(expr: pl.Expr, dtype: pl.Struct, paths: list[list[str]]) -> pl.Expr | None:
    """A struct column without the nested fields ``paths`` name (each relative to it), as ``without``
    leaves a record, keys sorted (``_sorted_expr``); None when no field is left."""
    fields = []
    for f in sorted(dtype.fields, key=lambda f: f.name):
        inner = [p[1:] for p in paths if p[0] == f.name]
        if not inner:
            fields.append(_sorted_expr(expr.struct.field(f.name), f.dtype).alias(f.name))
        elif all(inner) and isinstance(f.dtype, pl.Struct):  # a path into this field: keep the rest of it
            rest = _without_expr(expr.struct.field(f.name), f.dtype, inner)
            if rest is not None:
                fields.append(rest.alias(f.name))
    if not fields:
        return None
    return pl.when(expr.is_not_null()).then(pl.struct(fields))


# Made once: json.dumps and json.loads with options build a new encoder or decoder on every call.
_META_KW: dict[str, Any] = {"separators": (",", ":"), "default": json_default, "allow_nan": False, "sort_keys": True}
_META_TEXT = json.JSONEncoder(ensure_ascii=False, **_META_KW)
_META_ASCII = json.JSONEncoder(**_META_KW)
_TEXT_JSON = json.JSONEncoder(ensure_ascii=False, default=json_default, allow_nan=False)
# A document's meta text was written by json (no repeated keys): no first-wins hook, which doubles the time.
_OBJECT_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _encode_meta(items: dict[str, Any]) -> str:
    try:
        text = _META_TEXT.encode(items)
    except ValueError:  # NaN or infinity in a typed column: null, as polars writes them on the hot path
        items = finite_json(items)
        text = _META_TEXT.encode(items)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # unpaired surrogate escapes: keep them escaped
        text = _META_ASCII.encode(items)
    return text


def _encode_text(value: list | dict) -> str:
    """A text_json list or object as its JSON text; NaN and infinity (typed Parquet or DuckDB columns)
    as null, as in meta: JSON has neither."""
    try:
        return _TEXT_JSON.encode(value)
    except ValueError:
        return _TEXT_JSON.encode(finite_json(value))


def _object_of(text: str) -> dict[str, Any] | None:
    """The JSON object a string holds (NaN, Infinity and out-of-range numbers refused), else None."""
    if not text.lstrip(" \t\n\r").startswith("{"):
        return None
    try:
        value = _OBJECT_DECODER.decode(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


class DocBuilder:
    """Collects the documents and quarantine rows of one chunk of one task.

    ``sink``: where records larger than max_doc_bytes keep their bytes (a side file); without one
    (profiling, tests) they stay in the frame.
    """

    def __init__(self, task: ReadTask, sink: RawStore | None = None) -> None:
        spec = task.spec
        self.source = spec.source
        self.rel = task.rel_path
        self.row_base = task.index << ROW_BITS
        self.text_key = spec.text_key
        self.text_json = spec.text_json
        self.id_key = spec.id_key
        self.meta_keys = sorted(set(spec.meta_keys)) if spec.meta_keys is not None else None
        self.rename = dict(spec.meta_rename)  # input field -> its name in meta
        # a field named like a rename target (and not renamed itself) -> the field renamed to it: a record
        # with both would have two values for one meta key
        self.clashes = {new: old for old, new in self.rename.items() if new not in self.rename}
        # Dotted keys: a field of that very name, else the nested field they name (``lookup``)
        self.paths = {k: p for k in (self.text_key, self.id_key) if (p := path_of(k)) is not None}
        self.lifted: dict[str, list[str]] = {}  # the dotted keys ``lift`` made columns of, in this frame
        self.fields = FieldCounter()  # the file's fields and their types (schema drift, corpus/readers/fields.py)
        self.max_bytes = spec.max_doc_bytes
        self.frames: list[pl.DataFrame] = []
        self.rows: list[tuple[str, str, str, int]] = []  # per-record path: id, text, meta, row
        self.bad: list[dict] = []
        self.seen = 0
        self.blank = 0
        self.sink = sink
        self.header: bytes | None = None  # CSV: the header line, kept with each quarantined record
        whole = task.format == "text" and spec.text_mode == "file"
        self.unit = RAW_FILE if whole else RAW_ROW if task.format in ("parquet", "duckdb") else RAW_LINE

    # ----- per-record path -------------------------------------------------------------
    def derived_id(self, row: int) -> str:
        return derived_id(self.source, self.rel, row)

    def add_bad(self, row: int, kind: str, error: str, raw: bytes, unit: str | None = None,
                stored: dict | None = None) -> None:
        """One quarantined record with its bytes whole (``stored``: already in a side file)."""
        if stored is None and self.sink is not None and len(raw) > self.max_bytes:
            stored = self.sink.put(row, [raw])
        self.bad.append({"source": self.source, "file": self.rel, "line": row, "kind": kind, "error": error,
                         "raw_unit": unit or self.unit, "header": self.header, **(stored or {"raw": raw})})

    def add_line(self, line: bytes, row: int) -> None:
        """One non-blank JSONL line (without its newline), classified exactly."""
        raw = line[:-1] if line.endswith(b"\r") else line
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = raw[exc.start]
            self.add_bad(row, "invalid_utf8", f"invalid UTF-8 byte 0x{bad:02x} at byte {exc.start + 1}", raw)
            return
        try:
            rec = json.loads(
                s, object_pairs_hook=_first_wins, parse_constant=_reject_constant, parse_float=_finite_float
            )
        except json.JSONDecodeError as exc:
            self.add_bad(row, "invalid_json", f"{exc.msg}: line {exc.lineno} column {exc.colno}", raw)
            return
        except (ValueError, RecursionError) as exc:
            msg = "nesting too deep" if isinstance(exc, RecursionError) else str(exc)
            self.add_bad(row, "invalid_json", msg, raw)
            return
        if not isinstance(rec, dict):
            self.add_bad(row, "not_an_object", f"expected a JSON object, got {type_name(rec)}", raw)
            return
        self.add_record(rec, row, raw)

    def add_record(self, rec: dict[str, Any], row: int, raw: bytes) -> None:
        """A parsed record: becomes a document or one quarantine row."""
        self.fields.record(rec)
        key = self.text_key
        text = lookup(rec, key)
        if text is MISSING:
            self.add_bad(row, "missing_text", f"no field {key!r}", raw)
            return
        if text is None:
            self.add_bad(row, "null_text", f"text field {key!r} is null", raw)
            return
        if self.text_json and isinstance(text, list | dict):
            if not text:
                self.add_bad(row, "empty_text", f"text field {key!r} is an empty {type_name(text)}", raw)
                return
            text = _encode_text(text)
        if not isinstance(text, str):
            self.add_bad(row, "non_string_text", f"text field {key!r} is {type_name(text)}, expected string", raw)
            return
        if "\x00" in text:
            self.add_bad(row, "nul_bytes", f"text field {key!r} contains NUL bytes", raw)
            return
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            self.add_bad(row, "invalid_utf8", f"text field {key!r} contains an unpaired surrogate", raw)
            return
        if size > self.max_bytes:
            self.add_bad(row, "too_large", f"text is {size} bytes, over the {self.max_bytes} byte limit", raw)
            return
        if not text.strip():
            what = "empty" if not text else "only whitespace"
            self.add_bad(row, "empty_text", f"text field {key!r} is {what}", raw)
            return
        doc_id = self.derived_id(row)
        value = lookup(rec, self.id_key) if self.id_key is not None else None
        if value is not None and value is not MISSING:
            if isinstance(value, dict | list):
                msg = f"id field {self.id_key!r} is {type_name(value)}, expected a scalar"
                self.add_bad(row, "malformed_row", msg, raw)
                return
            doc_id = ("true" if value else "false") if isinstance(value, bool) else str(value)
            try:
                doc_id.encode("utf-8")
            except UnicodeEncodeError:
                self.add_bad(row, "invalid_utf8", f"id field {self.id_key!r} contains an unpaired surrogate", raw)
                return
        meta, clash = self.meta_of(rec, [parts for k, parts in self.paths.items() if k not in rec])
        if clash is not None:
            self.add_bad(row, "malformed_row", clash, raw)
            return
        self.rows.append((doc_id, text, meta, row))

    def meta_of(self, rec: dict[str, Any], nested: list[list[str]]) -> tuple[str, str | None]:
        """A record's meta as JSON text, and why the record is malformed (a rename clash) else None.
        ``nested``: the paths of a nested text or id, not kept again in meta."""
        for parts in nested:
            rec = without(rec, parts)
        keys = self.meta_keys if self.meta_keys is not None else sorted(rec)
        skip = (self.text_key, self.id_key)
        inner, gone = self.merged_meta(rec, keys)
        if gone:
            keys = [k for k in keys if k not in gone]
        meta = {self.rename.get(k, k): rec[k] for k in keys if k not in skip and rec.get(k) is not None}
        if self.rename:
            clash = [k for k in keys if k in self.clashes and k not in skip and rec.get(k) is not None
                     and rec.get(self.clashes[k]) is not None and self.clashes[k] in keys]
            if clash:
                return "", f"field {self.clashes[clash[0]]!r} is renamed to {clash[0]!r}, which the record has too"
        if inner:  # the record's own fields win over its document meta's members
            meta = {**{k: v for k, v in inner.items() if v is not None}, **meta}
        return _encode_meta(meta), None

    def merged_meta(self, rec: dict[str, Any], keys: list[str]) -> tuple[dict[str, Any] | None, set[str]]:
        """A corpusforge document read back: the members of its meta, from a ``meta`` field that goes to
        meta under its own name and holds a string that is a JSON object, and the fields it leaves out of
        meta: ``meta`` itself, and when the record has every document column in BOOKKEEPING (but the text
        and id fields), those and copy_of_row (unless renamed: asked for). A ``meta`` holding anything else
        is a field as any other (None, no fields). On the hot path ``add_frame`` applies it to the rows
        ``_merge_rows`` picks."""
        value = rec.get(META)
        if not isinstance(value, str) or not self._meta_merges(keys):
            return None, set()
        inner = _object_of(value)
        if inner is None:
            return None, set()
        gone = {META}
        if all(rec.get(k) is not None for k in BOOKKEEPING if k not in (self.text_key, self.id_key)):
            gone |= {k for k in (*BOOKKEEPING, COPY_OF) if k not in self.rename}
        return inner, gone

    def _meta_merges(self, fields: list[str]) -> bool:
        """Whether a ``meta`` field among ``fields`` goes to meta under its own name (merged_meta)."""
        return META in fields and META not in (self.text_key, self.id_key) and META not in self.rename

    # ----- vectorised path -------------------------------------------------------------
    def lift(self, df: pl.DataFrame) -> pl.DataFrame:
        """The frame with a column for each dotted key whose nested field its struct columns hold (a
        column of that very name is used as it is); a key they do not hold stays absent, so every row
        takes the per-record path, which says which records lack it."""
        self.lifted = {}
        cols = []
        for k, parts in self.paths.items():
            if k in df.columns:
                continue
            expr, dtype = pl.col(parts[0]), df.schema.get(parts[0])
            for part in parts[1:]:
                inner = {f.name: f.dtype for f in dtype.fields} if isinstance(dtype, pl.Struct) else {}
                if part not in inner:
                    break
                expr, dtype = expr.struct.field(part), inner[part]
            else:
                cols.append(expr.alias(k))
                self.lifted[k] = parts
        return df.with_columns(cols) if cols else df

    def flags(self, df: pl.DataFrame, coerced: bool, raw: bytes | None = None) -> pl.Series | None:
        """Rows that need the per-record path (None: none). ``coerced``: df came from polars'
        JSON reader, whose string columns may hold converted non-string values; ``raw``: the piece
        it read (its keys tell which string fields can hold such values)."""
        key = self.text_key
        # Wildcard names (top-level or nested in objects) take the per-record path.
        odd = any(_wildcard(c) or _name_inside(t, _wildcard) for c, t in df.schema.items())
        odd = odd or any(c in self.clashes for c in df.columns)  # a possible rename clash: checked per record
        if odd or key not in df.columns or df.schema[key] != pl.String:
            return pl.Series([True] * df.height, dtype=pl.Boolean)
        t = pl.col(key)
        expr = (
            t.is_null()
            | t.str.contains("\x00", literal=True)
            | (t.str.len_bytes() > self.max_bytes)
            | t.str.contains(RECHECK_TEXT_RE if coerced else BLANK_TEXT_RE)
        )
        id_key = self.id_key if self.id_key is not None and self.id_key in df.columns else None
        if id_key is not None and (df.schema[id_key].is_nested() or df.schema[id_key] == pl.Object):
            return pl.Series([True] * df.height, dtype=pl.Boolean)
        if not coerced:
            flags = df.select(expr.fill_null(False)).to_series()
            return flags if flags.any() else None
        # Values polars' type unification may have changed, taken from the line: each field's check,
        # kept apart so that a field whose strings look like another type's text is checked again
        # against the piece's bytes (_mixed_keys), which only then are searched.
        cols = self._meta_columns(df)
        # a nested id's key in the piece is its last part
        named = {c: c for c in cols} | ({id_key: self.lifted.get(id_key, [id_key])[-1]} if id_key else {})

        def check(c: str, mixed: set[str] | None) -> pl.Expr | None:
            dtype = df.schema[c]
            if _has_nul(c) or _name_inside(dtype, _has_nul):  # a key with a lone surrogate escape (_changed)
                return pl.col(c).is_not_null()
            # An id as the record wrote it: a float column may hold ints (1 -> 1.0, 2**64 -> 1.8e+19);
            # polars' integer columns (up to Int128) are exact.
            changed = pl.lit(True) if c == id_key and dtype.is_float() else _changed(pl.col(c), dtype, mixed, named[c])
            # (a null field is left out of meta: nothing to change)
            return None if changed is None else (pl.col(c).is_not_null() & changed).fill_null(False)

        checks = {c: e for c in named if (e := check(c, None)) is not None}
        out = df.select(expr.fill_null(False).alias("text"), *[e.alias(str(i)) for i, e in enumerate(checks.values())])
        parts = dict(zip(checks, out.get_columns()[1:], strict=True))
        suspect = [c for c, hit in parts.items() if hit.any()]
        keys: set[str] = set()
        for c in suspect:
            _string_keys(named[c], df.schema[c], keys)
        mixed = _mixed_keys(raw, keys) if raw is not None and keys else None
        if mixed is not None:
            again = {c: e for c in suspect if (e := check(c, mixed)) is not None}
            for c in suspect:
                parts.pop(c)
            if again:
                found = df.select(*[e.alias(str(i)) for i, e in enumerate(again.values())])
                parts.update(zip(again, found.get_columns(), strict=True))
        flags = out.get_column("text")
        for part in parts.values():
            flags = flags | part
        return flags if flags.any() else None

    def add_frame(self, df: pl.DataFrame, rows: pl.Series) -> None:
        """Rows that passed every check (rows: their 1-based row/line numbers)."""
        if df.height == 0:
            return
        df = df.with_columns(rows.cast(pl.Int64).alias(_ROW))
        row = pl.col(_ROW)
        derived = pl.concat_str([pl.lit(derived_id(self.source, self.rel, "")), row.cast(pl.String)])
        doc_id = derived
        if self.id_key is not None and self.id_key in df.columns:
            doc_id = pl.coalesce(pl.col(self.id_key).cast(pl.String), derived)
        docs = df.select(
            doc_id.alias("id"),
            pl.col(self.text_key).alias("text"),
            pl.lit(self.source, dtype=pl.String).alias("source"),
            self._meta_expr(df).alias("meta"),
            pl.lit(self.rel, dtype=pl.String).alias("src_file"),
            row.alias("src_row"),
            (row + self.row_base).alias("row_id"),
        )
        merge = self._merge_rows(df)
        if merge is not None:  # corpusforge documents: their meta, from the frame's values (exact here)
            cols = [c for c in df.columns if c not in (_ROW, self.text_key, *self.lifted)]
            nested = list(self.lifted.values())
            metas = [self.meta_of(rec, nested)[0] for rec in df.filter(merge).select(cols).to_dicts()]
            docs = docs.with_columns(docs["meta"].scatter(merge.arg_true(), metas))
        self.frames.append(docs)
        self.fields.frame(df, {_ROW, *self.lifted})

    def _merge_rows(self, df: pl.DataFrame) -> pl.Series | None:
        """The rows whose meta field may be a document's (``merged_meta`` decides), None when none."""
        if not self._meta_merges(self._meta_columns(df)) or df.schema[META] not in (pl.String, pl.Categorical, pl.Enum):
            return None
        rows = df.select(pl.col(META).cast(pl.String).str.contains(OBJECT_TEXT_RE).fill_null(False)).to_series()
        return rows if rows.any() else None

    def _meta_columns(self, df: pl.DataFrame) -> list[str]:
        skip = {self.text_key, self.id_key, _ROW}
        if self.meta_keys is not None:
            return [k for k in self.meta_keys if k in df.columns and k not in skip]
        return sorted(c for c in df.columns if c not in skip)

    def _meta_expr(self, df: pl.DataFrame) -> pl.Expr:
        cols = self._meta_columns(df)
        cols = [c for c in cols if df.schema[c] != pl.Null]  # all-null columns: absent everywhere
        if not cols:
            return pl.lit("{}", dtype=pl.String)
        exprs = {}
        for c in sorted(cols, key=lambda c: self.rename.get(c, c)):  # meta's keys sorted as named there
            # polars cannot write Binary as JSON; hex keeps it lossless and readable.
            e = pl.col(c).bin.encode("hex") if df.schema[c] == pl.Binary else _sorted_expr(pl.col(c), df.schema[c])
            inside = [p[1:] for p in self.lifted.values() if p[0] == c]
            if inside:  # a nested text or id is not kept again in meta
                rest = _without_expr(pl.col(c), df.schema[c], inside)  # type: ignore[arg-type]
                if rest is None:
                    continue
                e = rest
            exprs[c] = e.alias(self.rename.get(c, c))
        if not exprs:
            return pl.lit("{}", dtype=pl.String)
        cols = list(exprs)
        if all(df[c].null_count() == 0 for c in cols):
            return pl.struct(list(exprs.values())).struct.json_encode()
        # A null (or absent) field is left out, as the per-record path does, so a record's meta
        # does not depend on which other records share its chunk.
        parts = [
            pl.when(e.is_not_null()).then(pl.struct(e).struct.json_encode().str.strip_prefix("{").str.strip_suffix("}"))
            for e in exprs.values()
        ]
        return pl.concat_str([pl.lit("{"), pl.concat_str(parts, separator=",", ignore_nulls=True), pl.lit("}")])

    # ----- output ----------------------------------------------------------------------
    def finish(self, bytes_read: int = 0) -> ReadChunk:
        frames = list(self.frames)
        if self.rows:
            ids, texts, metas, rows = zip(*self.rows, strict=True)
            frames.append(
                pl.DataFrame(
                    {
                        "id": ids,
                        "text": texts,
                        "source": [self.source] * len(ids),
                        "meta": metas,
                        "src_file": [self.rel] * len(ids),
                        "src_row": rows,
                        "row_id": [self.row_base + r for r in rows],
                    },
                    schema=DOC_SCHEMA,
                )
            )
        if not frames:
            docs = empty_docs()
        elif len(frames) == 1:
            docs = frames[0]
        else:
            docs = pl.concat(frames, how="vertical", rechunk=False)
            if self.rows:  # per-record rows were appended last: restore file order
                docs = docs.sort("src_row")
        bad = quarantine_frame(sorted(self.bad, key=lambda r: r["line"]))
        return ReadChunk(docs=docs, bad=bad, seen=self.seen, bytes_read=bytes_read, blank=self.blank,
                         extra={"fields": self.fields.stats()})


# ----- JSONL ----------------------------------------------------------------------------
def jsonl_piece_bytes(chunk_bytes: int) -> int:
    """The size of the pieces polars parses: a part of a big file starts where a piece would (a piece
    decides which of its records take the per-record path, and so how a float in their meta is spelt:
    the same pieces give the same meta, byte for byte)."""
    return min(chunk_bytes, _PIECE)


def read_jsonl(task: ReadTask, chunk_bytes: int, sink: RawStore | None = None) -> Iterator[ReadChunk]:
    # Parse in pieces of at most _PIECE: buffers of 32 MiB and more are mmap-ed afresh by malloc
    # on every allocation, and the page faults cost more than the extra polars calls.
    piece_bytes = jsonl_piece_bytes(chunk_bytes)
    src: ByteSource | FilePieces
    chunker: LineChunker | FilePieces
    if FilePieces.usable(task.path):  # each piece read whole, no join
        src = chunker = FilePieces(task.path, piece_bytes, start=task.start, end=task.end)
    else:
        src = ByteSource(task.path, block_size=piece_bytes, start=task.start, end=task.end)
        chunker = LineChunker(src, piece_bytes)
    lines_before = task.first_row - 1  # a part of a big file starts at its own line
    reported = 0
    pending = 0
    b = DocBuilder(task, sink)

    def counted() -> Iterator[tuple[bytes, int]]:
        for piece in chunker:
            yield piece, newlines(piece)

    for piece, n_lines in prefetch(counted()):
        _parse(b, piece, lines_before + 1, n_lines)
        lines_before += n_lines
        pending += len(piece)
        if pending >= chunk_bytes:
            yield b.finish(src.consumed - reported)
            reported, pending, b = src.consumed, 0, DocBuilder(task, sink)
    tail = chunker.tail
    if src.truncated or src.error:
        kind = "truncated_file" if src.truncated else "unreadable_file"
        msg = "compressed stream ends early; this partial record was cut" if src.truncated else src.error
        b.seen += 1
        b.add_bad(lines_before + 1, kind, msg or kind, tail)
    elif tail:
        _parse(b, tail, lines_before + 1)
    if b.seen or b.blank or src.consumed > reported:
        yield b.finish(src.consumed - reported)


def _parse(b: DocBuilder, buf: bytes, first_line: int, n_lines: int | None = None) -> None:
    """Parse a piece of whole lines (first line numbered first_line) into b.

    n_lines: the piece's number of lines, when the caller has already counted them.
    """
    try:
        df = pl.read_ndjson(buf, infer_schema_length=None)
    except (Exception, pl.exceptions.PanicException):
        df = None
    rows = None
    if df is not None:
        if n_lines is None:
            n_lines = buf.count(b"\n") + (0 if buf.endswith(b"\n") else 1)
        rows = row_lines(buf, df.height, first_line, n_lines)
    if df is None or rows is None:
        # Split around the bad spot so one broken line does not send the whole chunk to the
        # per-line path.
        mid = buf.find(b"\n", len(buf) // 2)
        if len(buf) > _SPLIT_MIN and 0 <= mid < len(buf) - 1:
            head = buf[: mid + 1]
            _parse(b, head, first_line)
            _parse(b, buf[mid + 1 :], first_line + head.count(b"\n"))
        else:
            _per_line(b, buf, first_line)
        return
    b.seen += df.height
    b.blank += n_lines - df.height
    df = b.lift(df)
    flags = b.flags(df, coerced=True, raw=buf)
    if flags is None:
        b.add_frame(df, rows)
        return
    b.add_frame(df.filter(~flags), rows.filter(~flags))
    lines = buf.split(b"\n")
    for row in rows.filter(flags).to_list():
        b.add_line(lines[row - first_line], row)


def row_lines(buf: bytes, height: int, first_line: int, n_lines: int) -> pl.Series | None:
    """Line number of each parsed row, or None when rows and non-blank lines disagree."""
    if height == n_lines:  # no blank lines: row i is line first_line + i
        return pl.int_range(first_line, first_line + height, dtype=pl.Int64, eager=True)
    lines = buf.split(b"\n")
    if buf.endswith(b"\n"):
        lines.pop()
    idx = [i for i, ln in enumerate(lines) if ln and (ln[0] not in _BLANK_START or ln.strip(JSON_BLANK))]
    if len(idx) != height:
        return None
    return pl.Series(idx, dtype=pl.Int64) + first_line


def _per_line(b: DocBuilder, buf: bytes, first_line: int) -> None:
    lines = buf.split(b"\n")
    if buf.endswith(b"\n"):
        lines.pop()
    for i, ln in enumerate(lines):
        if ln.strip(JSON_BLANK):
            b.seen += 1
            b.add_line(ln, first_line + i)
        else:
            b.blank += 1
