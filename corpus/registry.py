"""Things found by name through entry points: operators (``corpusforge.operators``), training plugins
(``corpusforge.plugins``) and report-section modules (``corpusforge.report_sections``).

Built-ins are declared in our own pyproject.toml exactly as a third-party package declares its own,
so there is one way to register anything. A wrong name gets the same error everywhere, with a
did-you-mean and the known names; an entry point that fails to import, or points at the wrong kind
of thing, is named with its target instead of a traceback. ``load_object`` is the one loader of a
function a config names itself (``module:function``: a judge, a reward, an HTML extractor).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from collections.abc import Callable, Iterable
from functools import cached_property
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corpus.operators import Operator


class UnknownName(KeyError):
    """A name no entry point has, or one whose entry point is broken."""

    def __str__(self) -> str:  # KeyError's own would quote the message
        return str(self.args[0])


def suggest(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or ""."""
    if isinstance(name, bool):  # `on: id` in YAML: the key is True
        return (" (YAML reads an unquoted key on, off, yes or no as true or false: write it in quotes, "
                "as in 'on': ...)")
    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def load_object(spec: str, base: Path | None = None) -> Any:
    """What a config names as ``module:name`` or ``file.py:name`` (relative to ``base``): trusted code, as a
    plugin is. ImportError, AttributeError or ValueError say what is missing."""
    module, sep, name = str(spec).rpartition(":")
    if not sep or not module or not name:
        raise ValueError("expected 'module:name' or 'file.py:name'")
    if module.endswith(".py"):
        path = Path(module) if base is None or Path(module).is_absolute() else Path(base) / module
        found = importlib.util.spec_from_file_location(f"corpusforge_fn_{path.stem}", path)
        if found is None or found.loader is None or not path.is_file():
            raise ImportError(f"no Python file at {path}")
        mod = importlib.util.module_from_spec(found)
        found.loader.exec_module(mod)
    else:
        mod = importlib.import_module(module)
    return getattr(mod, name)


class Registry:
    """The entry points of one group, by name. ``what`` names the kind in messages ("operator");
    ``base`` (called on first use, so importing the registry stays cheap) is the class every entry
    must subclass, with a ``name`` equal to its entry point's."""

    def __init__(self, group: str, what: str, base: Callable[[], type], error: type[UnknownName] = UnknownName):
        self.group, self.what, self.base, self.error = group, what, base, error

    @cached_property
    def entries(self) -> dict[str, EntryPoint]:
        return {ep.name: ep for ep in entry_points(group=self.group)}

    def names(self) -> list[str]:
        return sorted(self.entries)

    def get(self, name: str) -> Any:
        eps = self.entries
        if name not in eps:
            raise self.error(f"unknown {self.what} '{name}'{suggest(name, eps)}; known: {', '.join(sorted(eps))}")
        ep = eps[name]
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin should say which one, not crash with a traceback
            raise self.error(f"{self.what} '{name}' ({ep.value}) failed to import: {exc}") from exc
        base = self.base()
        if not (isinstance(obj, type) and issubclass(obj, base)):
            raise self.error(f"entry point '{name}' ({ep.value}) is not a subclass of {base.__name__}")
        if obj.name != name:
            raise self.error(f"entry point '{name}' ({ep.value}) points at a class named '{obj.name}'")
        return obj


def load_modules(group: str) -> list[tuple[str, Exception]]:
    """Import every module an entry point of ``group`` names (importing one registers what it holds);
    returns (target, error) of those that failed, so one broken plugin costs only itself."""
    failed = []
    for ep in entry_points(group=group):
        try:
            ep.load()
        except Exception as exc:
            failed.append((ep.value, exc))
    return failed


# ---------------------------------------------------------------- operators


class UnknownOperator(UnknownName):
    pass


def _operator_base() -> type:
    from corpus.operators import Operator

    return Operator


OPERATORS = Registry("corpusforge.operators", "operator", _operator_base, UnknownOperator)


def names() -> list[str]:
    """The registered operators' names."""
    return OPERATORS.names()


def get(name: str) -> type[Operator]:
    """The operator class registered as ``name``; UnknownOperator (with a suggestion) otherwise."""
    return OPERATORS.get(name)


def where(name: str) -> str:
    """Where an operator comes from (its entry point: module:Class)."""
    ep = OPERATORS.entries.get(name)
    return ep.value if ep is not None else ""
