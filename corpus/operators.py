"""The operator contract: the one interface every data step implements.

Five kinds, all working on polars DataFrames (one shard at a time, except ``fit`` and ``consume``):

* ``MapOperator.map(df) -> df``: same rows; it may add the columns it declares in ``adds`` and
  rewrite those it declares in ``modifies``, nothing else (a document's own columns, corpus/schema.py,
  are never added, and ``row_id`` and ``source`` never rewritten).
* ``FilterOperator.filter(df) -> Verdict``: a keep mask and a reason per dropped row; the executor
  routes dropped rows to ``rejected/`` with the operator's name and the reason.
* ``GlobalMapOperator`` / ``GlobalFilterOperator``: need a pass over the whole corpus first (dedup):
  ``fit(ctx)`` sees every shard and writes its state into ``ctx.artifacts``; then, in each worker,
  ``load(artifacts)`` once and ``map``/``filter`` per shard, as above.
* ``SinkOperator.consume(ctx)``: reads the whole corpus at its place in the pipeline and writes a side
  output into ``ctx.artifacts`` (a profile, token shards, embeddings); documents pass on unchanged.

Operators are dataclasses: their fields are their parameters (validated from YAML by type), and the
hash of those fields keys resume markers. Columns are declared with their polars types
(``needs``/``adds``, plus ``modifies`` for columns rewritten in place), checked before a run and
again on every output. ``counters`` names added integer or boolean columns that the executor sums
per stage and source into the run catalog (what a cleaner changed, what a filter measured).

A stage that has something to show contributes its own report section (``report``) and catalog
figures (``figures``) from its artifacts: nothing reads another stage's folder by name. A fit that needs
what an earlier sink wrote names it in ``uses`` (the sink's ``publish`` name, e.g. ``embeddings``) and
gets that sink's folder in ``StageContext.side_inputs``; the wiring check refuses a ``uses`` that no
earlier sink publishes, or whose sink read a column that a stage in between rewrites.
"""

from __future__ import annotations

import dataclasses
import dis
import functools
import hashlib
import inspect
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import polars as pl

from corpus.schema import COPY_OF, CORE_COLUMNS, ID, REJECT_REASON, REJECT_STAGE, ROW_ID, SOURCE, TEXT, has_object

Columns = Mapping[str, Any]  # column name -> polars type (None: any type)
PoolMap = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]


@dataclass
class Verdict:
    """What a filter decides for a batch.

    keep: boolean Series, one per row. reason: why a row is dropped (a Series aligned with the rows,
    or one string for all). scores: columns added to every row, kept or dropped (Dolma-style
    attributes, so a threshold can be re-run without recomputing the score); each must be declared
    in the operator's ``adds`` (or in ``modifies``: a filter that rewrites what it keeps). copies:
    extra rows to append after the kept ones (upsampling): the kept frame's columns, each row naming
    a kept row's row_id in ``copy_of_row`` (declared in ``adds``) and carrying a new row_id of its
    own; the executor checks both.
    """

    keep: pl.Series
    reason: pl.Series | str = "filtered"
    scores: dict[str, pl.Series] = field(default_factory=dict)
    copies: pl.DataFrame | None = None


@dataclass(frozen=True)
class StageContext:
    """What ``fit`` and ``consume`` get: the stage's label (``03-minhash_dedup``), its own artifacts
    folder, its input shards (Parquet, the document schema plus earlier stages' columns), and the
    executor's process pool (``pool_map(fn, items)``: results in order)."""

    label: str
    artifacts: Path
    shards: tuple[Path, ...]
    workers: int
    pool_map: PoolMap
    # The folders of earlier sinks' side outputs this stage ``uses``, by publish name (read only).
    side_inputs: Mapping[str, Path] = field(default_factory=dict)


class StopRun(RuntimeError):
    """Raised by a whole-corpus stage (``fit`` or ``consume``) that has decided the run must not go on: a
    validation gate that failed with ``on_fail: stop``. The stage has written its artifacts: the executor
    records its figures and catalog rows and writes the report before the run fails with this message."""


@dataclass(frozen=True)
class StageView:
    """A finished stage as the report sees it: label, parameters, artifacts folder (read only), its
    counters as the catalog summed them (source -> counter -> total), its drops (reason -> source ->
    documents) and a few rejected rows per reason (reason -> rows: id, source, snippet, scores)."""

    label: str
    params: dict
    artifacts: Path
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    drops: dict[str, dict[str, int]] = field(default_factory=dict)
    examples: dict[str, list[dict]] = field(default_factory=dict)


class Operator:
    """Base of all operators. Subclasses are dataclasses and set ``name`` and their columns."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    needs: ClassVar[Columns] = {"text": pl.String}
    adds: ClassVar[Columns] = {}
    modifies: ClassVar[tuple[str, ...]] = ()
    counters: ClassVar[tuple[str, ...]] = ()
    # Side outputs of earlier sinks (their ``publish`` names) this stage's fit reads: StageContext.side_inputs.
    uses: ClassVar[tuple[str, ...]] = ()
    # A fit or consume that keeps per-unit markers in its artifacts and checks them itself: the executor
    # keeps its artifacts after a killed run and calls it again on a finished one (it redoes only what is
    # missing or damaged) instead of starting it over or skipping it.
    resumes_itself: ClassVar[bool] = False
    # Parameters that name input sources (a list of names, or a mapping keyed by them): each name is
    # checked against the run's inputs before it starts (a misspelt source would match no document).
    source_params: ClassVar[tuple[str, ...]] = ()
    # Bump when the operator's behaviour changes, so old cached outputs are not reused: its key is its name,
    # parameters and version (its code only when defined in __main__, main_code), so editing an imported
    # operator's code alone reruns nothing.
    version: ClassVar[str] = "1"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__post_init__")
        if own is not None:  # the parameters' types first: a range check comparing "5" with 0 was a bare TypeError
            @functools.wraps(own)
            def checked(self: Operator, *args: Any) -> None:
                from corpus.config import param_problems

                problems = param_problems(self)
                if problems:
                    raise TypeError("; ".join(problems))
                own(self, *args)

            cls.__post_init__ = checked  # type: ignore[attr-defined]

    def params(self) -> dict[str, Any]:
        if dataclasses.is_dataclass(self):
            return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        return {}

    def config_key(self) -> str:
        key = {"op": self.name, "version": self.version, "params": self.params()}
        code = main_code(type(self))
        if code is not None:
            key["code"] = code
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=_json_value).encode()).hexdigest()

    def columns(self) -> tuple[Columns, Columns, tuple[str, ...]]:
        """(needs, adds, modifies) of this instance: the class's, unless its parameters change them.
        A plain sequence of names declares columns of any type."""
        return _as_columns(self.needs), _as_columns(self.adds), tuple(self.modifies)

    def column_problems(self, have: Columns, earlier: Sequence[Operator] = ()) -> list[str]:
        """What this operator's parameters say against the columns at its place in the pipeline (``have``:
        name -> polars type, None where unknown; ``earlier``: the operators before it, which made them):
        lines naming each problem. The wiring check calls it, so a parameter that cannot apply to a column
        (a numeric bound on a string, a language its langid stage cannot label) is refused before a run."""
        return []

    def setup(self) -> None:
        """Called once per worker before the first batch (load models, compile regexes)."""

    def sample_problem(self, source: str, text: pl.Series) -> str | None:
        """What an input's first documents (``text``, as the readers read them) say against this operator,
        before a run (`corpus check`): a line naming the problem, or None."""
        return None

    @classmethod
    def figures(cls, artifacts: Path) -> dict[str, float]:
        """Numbers from this stage's artifacts for the run catalog (``stage_figures``)."""
        return {}

    @classmethod
    def catalog_rows(cls, artifacts: Path) -> dict[str, list[dict]]:
        """Rows for the run catalog's stage tables (table -> rows; ``corpus.catalog.STAGE_TABLES`` lists
        the tables and their columns) from this stage's artifacts."""
        return {}

    @classmethod
    def report(cls, stages: list[StageView]) -> Any:
        """This operator's report section over all its stages in the run (in pipeline order):
        ``corpus.report.Rendered``, HTML, or None for no section."""
        return None

    report_title: ClassVar[str] = ""
    report_order: ClassVar[int] = 60


class MapOperator(Operator):
    kind = "map"

    def map(self, df: pl.DataFrame) -> pl.DataFrame:
        raise NotImplementedError(_missing(self, "map"))


class FilterOperator(Operator):
    kind = "filter"

    def filter(self, df: pl.DataFrame) -> Verdict:
        raise NotImplementedError(_missing(self, "filter"))


class _Fitted:
    """What the two global kinds add: a fit over the corpus, then its state loaded in each worker."""

    def fit(self, ctx: StageContext) -> None:
        raise NotImplementedError(_missing(self, "fit"))

    def load(self, artifacts: Path) -> None:
        raise NotImplementedError(_missing(self, "load"))


class GlobalMapOperator(_Fitted, MapOperator):
    kind = "global_map"


class GlobalFilterOperator(_Fitted, FilterOperator):
    kind = "global_filter"


class SinkOperator(Operator):
    kind = "sink"
    # The folder of the output folder where the executor exposes the artifacts (e.g. "tokens"), if any.
    publish: ClassVar[str | None] = None

    def consume(self, ctx: StageContext) -> dict:
        """Read ``ctx.shards``, write into ``ctx.artifacts``; returns a JSON-able summary."""
        raise NotImplementedError(_missing(self, "consume"))

    @classmethod
    def published_problems(cls, folder: Path) -> list[tuple[str, str]]:
        """(file relative to ``folder``, problem) for what the sink published into ``folder``, checked against
        its own records (sizes, sha256): `corpus verify` checks a run's side outputs with it."""
        return []


FITTED = (GlobalMapOperator, GlobalFilterOperator)

# What each kind must define: method -> (the base holding its stub, what the method does).
_REQUIRED: dict[str, tuple[type, str]] = {
    "map": (MapOperator, "map(df) returns the frame with its declared columns added or rewritten"),
    "filter": (FilterOperator, "filter(df) returns a Verdict: a keep mask and a reason per dropped row"),
    "fit": (_Fitted, "fit(ctx) reads the whole corpus and writes its state into ctx.artifacts"),
    "load": (_Fitted, "load(artifacts) reads that state back in each worker, before map or filter"),
    "consume": (SinkOperator, "consume(ctx) reads the whole corpus and writes its side output"),
}


def _json_value(value: Any) -> Any:
    """A parameter json cannot write: a set by its sorted items (its order changes with PYTHONHASHSEED),
    anything else by its str."""
    if isinstance(value, set | frozenset):
        return sorted(value, key=lambda v: json.dumps(v, sort_keys=True, default=_json_value))
    return str(value)


def _missing(op: Any, method: str) -> str:
    return f"{type(op).__name__} defines no {method}(), which a {op.kind} operator must: {_REQUIRED[method][1]}"


def method_problems(op: Operator) -> list[str]:
    """The methods its kind needs that an operator's class does not define (each a line)."""
    return [_missing(op, m) for m, (base, _) in _REQUIRED.items()
            if isinstance(op, base) and getattr(type(op), m) is getattr(base, m)]


def main_code(cls: type) -> str | None:
    """A key of the code of an operator class defined in ``__main__`` (a notebook, a script), or None.

    Resuming keys a stage by its parameters and ``version``; an operator being written in a notebook changes
    its code between runs, and a rerun into the same folder kept the old output. So the class joins the key,
    source or not (a notebook cell, ``python -``, ``python -c`` have none): every attribute in the ``__dict__``
    of the class and of its bases defined in ``__main__`` (functions by their code objects, nested code and
    defaults included; staticmethod, classmethod, property, cached_property, lru_cache and partial unwrapped;
    other values by a stable repr, dataclass instances field by field, sets sorted), and the module-level
    names its functions read (the names of their ``LOAD_GLOBAL``/``LOAD_NAME`` instructions, not attribute
    names, found in ``__main__``'s globals: a constant by value, a function defined in ``__main__`` by its
    code, in turn). Only the user's code is walked: a library wrapper (Operator's ``checked``, a decorator)
    or a method dataclasses generate is keyed by name and by what it wraps, not by the names it reads. A
    value with no stable repr or str (one showing its memory address) keys by its type only: changing it
    alone reruns nothing; bump ``version``."""
    own = [c for c in cls.__mro__ if c.__module__ == "__main__"]
    if not own:
        return None
    import sys

    module = sys.modules.get("__main__")
    globs = vars(module) if module is not None else {}
    walk = _Walk({getattr(m, "__file__", None) for m in list(sys.modules.values()) if m is not module} - {None})
    h = hashlib.sha256()
    for c in own:
        h.update(f"class {c.__qualname__}".encode())
        for name, value in sorted(vars(c).items()):
            if name in ("__dict__", "__weakref__", "__module__", "__doc__", "__annotations__"):
                continue
            h.update(name.encode() + b"=" + walk.key(value))
        h.update(repr(getattr(c, "__annotations__", {})).encode())
        h.update(repr([b.__qualname__ + "@" + b.__module__ for b in c.__bases__]).encode())
    done: set[str] = set()
    while walk.names:  # the module-level names read, and those their own functions read
        name = next(iter(walk.names))
        walk.names.pop(name)
        if name in done or name not in globs:
            continue
        done.add(name)
        value = globs[name]
        if isinstance(value, type) or inspect.ismodule(value):
            if getattr(value, "__module__", None) == "__main__" and isinstance(value, type) and value is not cls:
                h.update(f"global {name}=class {value.__qualname__}".encode())  # a helper class: its methods
                for k, v in sorted(vars(value).items()):
                    if k not in ("__dict__", "__weakref__", "__module__", "__doc__"):
                        h.update(k.encode() + b"=" + walk.key(v))
            continue  # an imported module or class is keyed by its `version`, not here
        if callable(value) and getattr(value, "__module__", "__main__") != "__main__":
            continue  # an imported function
        h.update(f"global {name}=".encode() + walk.key(value))
    return h.hexdigest()


_READS = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})


class _Walk:
    """One main_code walk: the keys of values, the module-level names the user's code reads (``names``, in
    the order met), and the functions and containers on the way (a value met again, or inside itself)."""

    def __init__(self, library_files: set[str]) -> None:
        self.library = library_files  # the files of imported modules: their code is not the user's
        self.names: dict[str, None] = {}
        self.done: set[int] = set()  # functions keyed already (they live as long as the walk)
        self.open: set[int] = set()  # containers being keyed (a list holding itself)

    def code(self, code: Any) -> bytes:
        """A code object's bytes, names and constants (nested code in turn); the global names it reads are
        noted (``co_names`` also holds attribute and method names: ``m.start()`` is not a global ``start``)."""
        parts = [code.co_code, repr(code.co_names).encode(), repr(code.co_varnames).encode()]
        self.names.update(dict.fromkeys(i.argval for i in dis.get_instructions(code) if i.opname in _READS))
        for const in code.co_consts:  # a frozenset constant (x in {"a", "b"}) by its sorted items
            parts.append(self.code(const) if inspect.iscode(const) else self.key(const))
        return b"\x00".join(parts)

    def users(self, code: Any) -> bool:
        """Is this the user's code, not a library's or one dataclasses generated (its __init__, __repr__)?"""
        return code.co_filename not in self.library and not code.co_qualname.startswith("__create_fn__.")

    def key(self, value: Any) -> bytes:
        """A deterministic key of one class attribute or module-level value (see main_code)."""
        if id(value) in self.done or id(value) in self.open:
            return b"<seen>"
        if isinstance(value, staticmethod | classmethod):
            return b"method:" + self.key(value.__func__)
        if isinstance(value, property):
            return b"property:" + b"|".join(self.key(f) for f in (value.fget, value.fset, value.fdel))
        if isinstance(value, functools.cached_property):
            return b"cached_property:" + self.key(value.func)
        if isinstance(value, functools.partial):
            return b"partial:" + self.key(value.func) + self.key((value.args, value.keywords))
        code = getattr(value, "__code__", None)
        if inspect.iscode(code):
            self.done.add(id(value))
            cells = []  # a closure's values (Operator wraps a __post_init__: the user's own is in a cell)
            for cell in getattr(value, "__closure__", None) or ():
                try:
                    cells.append(cell.cell_contents)
                except ValueError:  # an empty cell
                    cells.append(None)
            if not self.users(code):  # a wrapper: what it wraps (the user's function in a cell), not its names
                return (f"wraps:{code.co_qualname}@{getattr(value, '__module__', '')}".encode() + self.key(cells)
                        + self.key(getattr(value, "__wrapped__", None)))
            defaults = (getattr(value, "__defaults__", None), getattr(value, "__kwdefaults__", None))
            return b"code:" + self.code(code) + self.key(defaults) + self.key(cells)
        wrapped = getattr(value, "__wrapped__", None)
        if callable(value) and callable(wrapped) and not isinstance(value, type):  # functools.lru_cache, cache
            self.done.add(id(value))
            return f"wrapped:{type(value).__qualname__}:".encode() + self.key(wrapped)
        if isinstance(value, list | tuple | set | frozenset | dict) or _instance(value):
            self.open.add(id(value))
            try:
                return self._container(value)
            finally:
                self.open.discard(id(value))
        try:
            text = repr(value)
            if _ADDRESS.search(text):  # pl.Expr: an address and a cut-short text; its str is whole
                text = str(value)
        except Exception:  # a repr that fails: its type only, as below
            text = " at 0x0"
        if _ADDRESS.search(text):  # no stable repr: its type only (document says so)
            return f"<{type(value).__module__}.{type(value).__qualname__}>".encode()
        return text.encode()

    def _container(self, value: Any) -> bytes:
        if isinstance(value, set | frozenset):  # by sorted keys: a set's order changes with PYTHONHASHSEED
            return type(value).__name__.encode() + b"{" + b",".join(sorted(self.key(v) for v in value)) + b"}"
        if isinstance(value, list | tuple):
            return type(value).__name__.encode() + b"[" + b",".join(self.key(v) for v in value) + b"]"
        if isinstance(value, dict):
            return b"dict{" + b",".join(sorted(self.key(k) + b":" + self.key(v) for k, v in value.items())) + b"}"
        if isinstance(value, dataclasses.Field):  # its default and factory (its repr shows addresses)
            return b"field:" + self.key((value.name, repr(value.type), value.default, value.default_factory,
                                         value.init, value.repr, value.compare, value.kw_only))
        fields = [(f.name, getattr(value, f.name, None)) for f in dataclasses.fields(value)]
        return f"{type(value).__module__}.{type(value).__qualname__}(".encode() + self.key(fields) + b")"


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _instance(value: Any) -> bool:
    """A dataclass instance (walked field by field: its repr holds sets in hash order) or a Field."""
    return isinstance(value, dataclasses.Field) or (dataclasses.is_dataclass(value) and not isinstance(value, type))


def is_global(op: Operator) -> bool:
    """Does the stage need the whole corpus before it runs (fit or consume)?"""
    return isinstance(op, (*FITTED, SinkOperator))


def chain_key(parent: str, op: Operator) -> str:
    """A stage's key: its own config and everything upstream, so a change invalidates only what follows."""
    return hashlib.sha256(f"{parent}|{op.config_key()}".encode()).hexdigest()


# ---------------------------------------------------------------- column checks


# Columns of the document schema that no operator may add or rewrite (the others, ``CORE_COLUMNS``, only
# by declaring them in ``modifies``: every row has them, so none is ever added).
FIXED: dict[str, str] = {ROW_ID: "the row's identity (dedup results, rejected rows and copies are keyed by it)",
                         SOURCE: "the input the row came from (every record is accounted for per source)"}
# Columns the executor owns beside the document's: it writes them and reads them back, so no operator may
# add or rewrite them. ``reject_stage`` and ``reject_reason`` say in rejected/ which stage dropped a row and
# why; ``copy_of_row`` tells an upsampled copy from its original (the balance counts originals only). The one
# exception: a filter that makes copies (upsampling, ``Verdict.copies``) adds ``copy_of_row`` as Int64, and
# the executor checks it names a kept row.
INTERNAL: dict[str, str] = {
    REJECT_STAGE: "the executor's record of the stage that dropped a row (rejected/)",
    REJECT_REASON: "the executor's record of why a row was dropped (rejected/)",
    COPY_OF: "the executor's mark of an upsampled copy (only a filter returning Verdict.copies adds it, as Int64)",
}


def _as_columns(cols: Columns | Sequence[str]) -> Columns:
    return cols if isinstance(cols, Mapping) else dict.fromkeys(cols)


def type_name(dtype: Any) -> str:
    return "any" if dtype is None else str(dtype)


def ensure_columns(ops: Iterable[Operator], available: Columns) -> list[str]:
    """Check each operator's declared columns against what is available at that point (names and
    types); returns the problems. ``available``: the input's columns (the document schema)."""
    have = {k: _dtype(v) for k, v in available.items()}
    errors: list[str] = []
    published: dict[str, tuple[str, set[str]]] = {}  # side output -> (its sink, the columns it read)
    stale: dict[str, str] = {}  # side output -> the later stage that rewrites a column it was made from
    ops = list(ops)
    for i, op in enumerate(ops):
        errors += [f"pipeline[{i}] {type(op).__name__}: {p}" for p in name_problems(op)]
        needs, adds, modifies = op.columns()
        where = f"pipeline[{i}] '{op.name}'"
        for name in op.uses:
            if name not in published:
                errors.append(f"{where} uses the side output {name}/, which no earlier sink publishes "
                              f"(put the stage that publishes it before this one)")
            elif name in stale:
                errors.append(f"{where} uses {name}/ from {published[name][0]}, but {stale[name]} rewrites a "
                              f"column it was made from in between")
        for col, want in needs.items():
            if col not in have:
                errors.append(f"{where} needs column {col!r} ({type_name(want)}) that neither the input nor an "
                              f"earlier operator provides (available: {sorted(have)})")
            elif not _compatible(have[col], _dtype(want)):
                errors.append(f"{where} needs column {col!r} as {type_name(want)}, but it is {type_name(have[col])}")
        errors += [f"{where}: {p}" for p in op.column_problems(dict(have), ops[:i])]
        for col in modifies:
            if col in FIXED:
                errors.append(f"{where} modifies column {col!r}, {FIXED[col]}: no operator may rewrite it")
            elif col in INTERNAL:
                errors.append(f"{where} modifies column {col!r}, {INTERNAL[col]}: no operator may rewrite it "
                              f"(name the column otherwise)")
            elif col not in have:
                errors.append(f"{where} modifies column {col!r}, which does not exist at that point")
        rewrites = set(modifies)
        for col, dtype in adds.items():
            if col in FIXED:
                errors.append(f"{where} adds column {col!r}, {FIXED[col]}: no operator may add or rewrite it")
            elif col in INTERNAL and not (col == COPY_OF and isinstance(op, FilterOperator)
                                          and _dtype(dtype) == pl.Int64()):
                errors.append(f"{where} adds column {col!r}, {INTERNAL[col]}: no operator may add or rewrite it "
                              f"(name the column otherwise)")
            elif has_object(_dtype(dtype)):
                errors.append(f"{where} adds column {col!r} as {type_name(_dtype(dtype))}: Python objects cannot "
                              f"be written to Parquet (give it a polars type: String, a number, List, Struct)")
            elif col in CORE_COLUMNS:
                errors.append(f"{where} adds column {col!r}, a column every document has: an operator that "
                              f"rewrites it declares it in `modifies`")
            elif col in have and not _compatible(have[col], _dtype(dtype)):
                errors.append(f"{where} adds column {col!r} as {type_name(dtype)}, but an earlier stage made it "
                              f"{type_name(have[col])}")
            if col in have:
                rewrites.add(col)  # the same operator run twice adds its columns again: it rewrites them
            have[col] = _dtype(dtype)
        errors += [f"{where}: {p}" for p in method_problems(op)]
        for name, (_, read) in published.items():
            if read & rewrites and name not in stale:
                stale[name] = where
        publish = getattr(op, "publish", None)
        if publish:
            published[publish] = (where, set(needs))
            stale.pop(publish, None)
    return errors


def name_problems(op: Operator) -> list[str]:
    """What is wrong with an operator's ``name``: it labels its stage (``01-<name>``) and names its folders
    (work/, rejected/) and its rows' reject_stage, so it is a plain name, as the registry's are."""
    from corpus.owner import NAME

    name = op.name
    if not isinstance(name, str) or not name:
        return ["the operator has no name: set one on the class (name = \"my_filter\"), letters, digits, "
                "'_', '.' and '-'; it labels the stage, its folders and its rejected rows"]
    if not re.fullmatch(NAME, name):
        return [f"name {name!r} is not an operator name: use letters, digits, '_', '.' and '-' (it names the "
                f"stage's folders, work/NN-<name>-.../ and rejected/NN-<name>/)"]
    return []


def source_problems(ops: Iterable[Operator], sources: Sequence[str]) -> list[tuple[int, str]]:
    """Source names in the operators' ``source_params`` that no input has: (the operator's place, problem)."""
    from corpus.registry import suggest

    errors = []
    for i, op in enumerate(ops):
        for param in op.source_params:
            unknown = [str(n) for n in getattr(op, param) or () if n not in sources]
            errors += [(i, f"pipeline[{i}] '{op.name}': {param} names the source {n!r}, which no input has"
                           f"{suggest(n, sources)}; sources: {', '.join(sources)}") for n in unknown]
    return errors


def _dtype(t: Any) -> Any:
    if t is None:
        return None
    return t() if isinstance(t, type) else t


def _compatible(have: Any, want: Any) -> bool:
    return have is None or want is None or have == want


def output_problem(op: Operator, before: pl.DataFrame, after: pl.DataFrame) -> str | None:
    """What is wrong with an operator's output frame against its declaration, or None.

    The output has the input's columns plus the declared adds; added columns have their declared
    types; untouched columns keep theirs (a modified one too), and their values unless declared in
    ``modifies`` (``row_id`` and ``source`` always, whatever the declaration says)."""
    _, adds, modifies = op.columns()
    missing = [c for c in before.columns if c not in after.columns]
    if missing:
        return f"operator '{op.name}' dropped column(s) {missing}"
    undeclared = [c for c in after.columns if c not in before.columns and c not in adds]
    if undeclared:
        return f"operator '{op.name}' added undeclared column(s) {undeclared} (declare them in `adds`)"
    absent = [c for c in adds if c not in after.columns]
    if absent:
        return f"operator '{op.name}' declares it adds {absent} but its output lacks them"
    for c, t in adds.items():
        want = _dtype(t)
        if want is not None and after.schema[c] != want:
            return f"operator '{op.name}' adds {c!r} as {after.schema[c]}, declared {want}"
    objects = [c for c in after.columns if has_object(after.schema[c])]
    if objects:  # to_arrow() makes them fixed_size_binary[8]: memory addresses, different every run
        return (f"operator '{op.name}' returned column(s) {objects} holding Python objects "
                f"({', '.join(str(after.schema[c]) for c in objects)}), which cannot be written to Parquet: "
                "give them a polars type (String, a number, List, Struct)")
    added = {c for c in adds if c not in CORE_COLUMNS}  # a document's own columns are never added: checked
    for c in before.columns:
        if c not in added and after.schema[c] != before.schema[c]:
            return f"operator '{op.name}' changed the type of {c!r} from {before.schema[c]} to {after.schema[c]}"
    # Values too: the wiring check trusts `modifies` (a sink's `uses`), so an undeclared rewrite is a
    # broken contract. Unchanged columns share their buffers: about 10 ms per 100 MB of text.
    free = (added | set(modifies)) - set(FIXED)
    for c in (TEXT, ID):  # readers quarantine a null text; dedup took every null one for one document
        if c in free and c in after.columns and after[c].null_count() > before[c].null_count():
            n = after[c].null_count() - before[c].null_count()
            return (f"operator '{op.name}' set {c!r} to null in {n} of {after.height} rows: every document has "
                    f"{'a text' if c == TEXT else 'an id'} (an empty string \"\" is a text; a filter drops a "
                    "document)")
    changed = [c for c in before.columns if c not in free and not after[c].equals(before[c])]
    if ROW_ID in changed:
        return f"operator '{op.name}' reordered or replaced rows (their row_id changed): a map keeps its rows, in order"
    if SOURCE in changed:
        return f"operator '{op.name}' rewrote column {SOURCE!r}, {FIXED[SOURCE]}: no operator may rewrite it"
    if changed:
        return f"operator '{op.name}' rewrote column(s) {changed} without declaring them in `modifies`"
    return None
