"""Operators by name, discovered through the ``corpusforge.operators`` entry-point group.

Built-in operators are declared in our own pyproject.toml the same way a third-party package
declares its own, so there is one way to register an operator.
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib.metadata import EntryPoint, entry_points

from corpus.operators import Operator

GROUP = "corpusforge.operators"


class UnknownOperator(KeyError):
    pass


@cache
def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def names() -> list[str]:
    return sorted(_entry_points())


def get(name: str) -> type[Operator]:
    eps = _entry_points()
    if name not in eps:
        close = difflib.get_close_matches(name, list(eps), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UnknownOperator(f"unknown operator '{name}'{hint}; known: {', '.join(sorted(eps))}")
    try:
        cls = eps[name].load()
    except Exception as exc:  # a broken plugin should say which one, not crash with a traceback
        raise UnknownOperator(f"operator '{name}' ({eps[name].value}) failed to import: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Operator)):
        raise UnknownOperator(f"entry point '{name}' ({eps[name].value}) is not an Operator subclass")
    if cls.name != name:
        raise UnknownOperator(f"entry point '{name}' points at an operator named '{cls.name}'")
    return cls


def where(name: str) -> str:
    """Where an operator comes from (its entry point: module:Class)."""
    ep = _entry_points().get(name)
    return ep.value if ep is not None else ""
