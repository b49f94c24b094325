"""What `corpus ops` shows of an operator: kind, typed columns, parameters with types, defaults and the
comment beside each in the source, and the docstring."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from dataclasses import dataclass
from typing import Any

from corpus.config import hint_name
from corpus.operators import Columns, Operator, SinkOperator, type_name


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str  # "(required)" when there is none
    note: str  # the comment beside the field in the source, if any


def summary(cls: type) -> str:
    """The docstring's first paragraph, on one line."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    return " ".join(doc.split("\n\n")[0].split())


def columns(cls: type[Operator]) -> tuple[Columns, Columns, tuple[str, ...]]:
    """(needs, adds, modifies) with default parameters (some operators derive them from parameters)."""
    try:
        return cls().columns()
    except (TypeError, ValueError):  # a required parameter: the class's own declaration
        return Operator.columns(cls)  # type: ignore[arg-type]


def column_list(cols: Columns) -> str:
    return ", ".join(f"{name}: {type_name(_dtype(t))}" for name, t in cols.items()) or "—"


def _dtype(t: Any) -> Any:
    return t() if isinstance(t, type) else t


def params(cls: type) -> list[Param]:
    hints = typing.get_type_hints(cls)
    notes = _field_comments(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        out.append(Param(f.name, hint_name(hints.get(f.name, Any)), default, notes.get(f.name, "")))
    return out


def _field_comments(cls: type) -> dict[str, str]:
    """field -> the comment on its line in the class body (and the comment lines just above it)."""
    notes: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a subclass's comment wins
        try:
            lines, _ = inspect.getsourcelines(klass)
        except (OSError, TypeError):
            continue
        try:
            tree = ast.parse(textwrap.dedent("".join(lines)))
        except SyntaxError:
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node in body:
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                i = node.lineno - 1
                parts = [_comment(lines[i])]
                while i > 0 and lines[i - 1].strip().startswith("#"):
                    i -= 1
                    parts.insert(0, lines[i].strip().lstrip("#").strip())
                note = " ".join(p for p in parts if p)
                if note:
                    notes[node.target.id] = note
    return notes


def _comment(line: str) -> str:
    """The trailing comment of one line of code ('' if none); a '#' inside a string is not one."""
    import io
    import tokenize

    try:
        for tok in tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline):
            if tok.type == tokenize.COMMENT:
                return tok.string.lstrip("#").strip()
    except (tokenize.TokenError, SyntaxError):
        pass
    return ""


def short(cls: type[Operator], width: int = 100) -> list[str]:
    """A few lines for the listing: name, kind and summary; columns; parameters."""
    needs, adds, modifies = columns(cls)
    cols = f"needs {column_list(needs)}"
    if adds:
        cols += f" · adds {column_list(adds)}"
    if modifies:
        cols += f" · modifies {', '.join(modifies)}"
    ps = ", ".join(f"{p.name}: {p.type} = {p.default}" for p in params(cls)) or "none"
    pad = " " * 4
    return [textwrap.fill(f"{cls.name} ({cls.kind}) — {summary(cls)}", width, subsequent_indent=pad),
            textwrap.fill(cols, width, initial_indent=pad, subsequent_indent=pad * 2),
            textwrap.fill(f"parameters: {ps}", width, initial_indent=pad, subsequent_indent=pad * 2)]


def full(cls: type[Operator], where: str = "") -> tuple[list[str], list[Param]]:
    """Everything about one operator: header lines (docstring, columns) and its parameters."""
    needs, adds, modifies = columns(cls)
    lines = [f"{cls.name} ({cls.kind})" + (f"  {where}" if where else ""), ""]
    lines += inspect.cleandoc(cls.__doc__ or "(no docstring)").splitlines()
    lines += ["", f"needs:     {column_list(needs)}", f"adds:      {column_list(adds)}",
              f"modifies:  {', '.join(modifies) or '—'}"]
    if cls.counters:
        lines.append(f"counters:  {', '.join(cls.counters)} (summed per stage and source into the catalog)")
    if issubclass(cls, SinkOperator) and cls.publish:
        lines.append(f"publishes: OUT/{cls.publish}/")
    if cls.uses:
        lines.append(f"uses:      {', '.join(f'{u}/' for u in cls.uses)} (published by an earlier stage)")
    return lines, params(cls)
