"""Threshold rules over columns, and the generic rule filter (``rule_filter``).

A rule checks one column: ``min``/``max`` bounds (inclusive unless ``min_exclusive``/``max_exclusive``),
set membership (``in`` / ``not_in``) and what a null does (``on_null``: keep or drop). A filter holds
rules in order; a document is dropped by the first rule it fails, with the reason
``<set>:<rule><failed bound>`` (``gopher_quality:mean_word_length>10``, ``language:lang=de``) and the
value that failed in the ``rule_value`` column (numbers; a set rule's value is in its reason). The
reason names the bound, not the value, so the catalog and the report count drops per rule.

The generic filter combines conditions with ``all`` (and), ``any`` (or) and ``not``, each a structured
mapping read from YAML (never ``eval``):

    - op: rule_filter
      name: my_rules
      rules:
        - {name: long_enough, column: n_words, min: 50}
        - {name: english, column: lang, in: [en]}
        - name: clean_or_short        # a condition that must hold
          any:
            - {column: gopher_hash_ratio, max: 0.05}
            - {column: n_words, max: 200}

Evaluation is one polars expression per rule over the batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import polars as pl

from corpus.operators import Columns, FilterOperator, Operator, StageView, Verdict

RULE_VALUE = "rule_value"
_LEAF_KEYS = {"column", "min", "max", "min_exclusive", "max_exclusive", "in", "not_in", "on_null"}
_RULE_KEYS = _LEAF_KEYS | {"name", "all", "any", "not", "enabled"}


def fmt(x: Any) -> str:
    """A bound or value as a reason shows it: 10 not 10.0, 0.12 as written, true/false in YAML's words."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, float):
        if math.isfinite(x) and x == int(x) and abs(x) < 1e15:
            return str(int(x))
        return f"{x:.6g}"
    return str(x)


@dataclass(frozen=True)
class Rule:
    """One column check. ``keep`` holds when the value lies within the bounds and the sets."""

    name: str
    column: str
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False  # keep only value > min (else >= min)
    max_exclusive: bool = False  # keep only value < max (else <= max)
    isin: tuple = ()  # keep only these values (empty: any)
    not_in: tuple = ()  # drop these values
    on_null: Literal["keep", "drop"] = "keep"

    def checks(self) -> list[tuple[pl.Expr, pl.Expr | str]]:
        """(fails, reason suffix) per check, in order: null, min, max, in, not in."""
        c = pl.col(self.column)
        out: list[tuple[pl.Expr, pl.Expr | str]] = []
        if self.on_null == "drop":
            out.append((c.is_null(), "=null"))
        if self.min is not None:
            out.append(((c <= self.min) if self.min_exclusive else (c < self.min),
                        ("<=" if self.min_exclusive else "<") + fmt(self.min)))
        if self.max is not None:
            out.append(((c >= self.max) if self.max_exclusive else (c > self.max),
                        (">=" if self.max_exclusive else ">") + fmt(self.max)))
        if self.isin:
            out.append((c.is_in(list(self.isin)).not_(), pl.lit("=") + _as_text(c)))
        if self.not_in:
            out.append((c.is_in(list(self.not_in)), pl.lit("=") + _as_text(c)))
        return [(fails.fill_null(False), why) for fails, why in out]

    def describe(self) -> str:
        parts = []
        if self.min is not None:
            parts.append((">" if self.min_exclusive else ">=") + " " + fmt(self.min))
        if self.max is not None:
            parts.append(("<" if self.max_exclusive else "<=") + " " + fmt(self.max))
        if self.isin:
            parts.append("in [" + ", ".join(fmt(v) for v in self.isin) + "]")
        if self.not_in:
            parts.append("not in [" + ", ".join(fmt(v) for v in self.not_in) + "]")
        if self.on_null == "drop":
            parts.append("not null")
        return f"{self.column} " + " and ".join(parts) if parts else f"{self.column} (no check)"


def _as_text(c: pl.Expr) -> pl.Expr:
    return pl.when(c.is_null()).then(pl.lit("null")).otherwise(c.cast(pl.String))


def check_switch(spec: Mapping[str, Any], key: str, where: str) -> None:
    """A true/false key must be a YAML boolean: "false" or 0 would read as true (or be taken as on)."""
    if key in spec and not isinstance(spec[key], bool):
        raise ValueError(f"{where}: {key} must be true or false, got {type(spec[key]).__name__} {spec[key]!r}")


def rule_enabled(spec: Mapping[str, Any], where: str) -> bool:
    check_switch(spec, "enabled", where)
    return spec.get("enabled", True)


def rule_from_mapping(name: str, spec: Mapping[str, Any], where: str) -> Rule:
    """A Rule from YAML keys (column, min, max, min_exclusive, max_exclusive, in, not_in, on_null)."""
    unknown = sorted(set(spec) - _LEAF_KEYS - {"name", "enabled"})
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(_LEAF_KEYS)}")
    if not isinstance(spec.get("column"), str) or not spec["column"]:
        raise ValueError(f"{where}: 'column' must name a column")
    for key in ("min", "max"):
        v = spec.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise ValueError(f"{where}: {key} must be a number, got {v!r}")
        # polars orders NaN above every number: min .nan would drop every document, max .nan none
        if isinstance(v, float) and math.isnan(v):
            raise ValueError(f"{where}: {key} is NaN, not a bound (as min it would drop every document, as max "
                             f"it would drop none); give a number")
    for key in ("in", "not_in"):
        if key in spec and not isinstance(spec[key], list):
            raise ValueError(f"{where}: {key} must be a list of values, got {spec[key]!r}")
    for key in ("min_exclusive", "max_exclusive"):
        check_switch(spec, key, where)
    if spec.get("on_null", "keep") not in ("keep", "drop"):
        raise ValueError(f"{where}: on_null must be 'keep' or 'drop', got {spec['on_null']!r}")
    if spec.get("min") is not None and spec.get("max") is not None and spec["max"] < spec["min"]:
        raise ValueError(f"{where}: max ({spec['max']}) is below min ({spec['min']})")
    if (spec.get("min") is None and spec.get("max") is None and not spec.get("in") and not spec.get("not_in")
            and spec.get("on_null", "keep") == "keep"):  # it would keep every document: a mistake, not a rule
        raise ValueError(f"{where}: checks nothing (column {spec['column']!r} with no min, max, in or not_in, "
                         f"nulls kept); give min, max, in, not_in or on_null: drop")
    return Rule(name, spec["column"], spec.get("min"), spec.get("max"), spec.get("min_exclusive", False),
                spec.get("max_exclusive", False), tuple(spec.get("in", ())), tuple(spec.get("not_in", ())),
                spec.get("on_null", "keep"))


# ---------------------------------------------------------------- conditions (and / or / not)


@dataclass(frozen=True)
class Condition:
    """A condition tree: a leaf Rule, or ``all``/``any`` of conditions, or ``not`` of one. ``holds``
    is true where a document satisfies it (a leaf: passes its rule)."""

    leaf: Rule | None = None
    op: Literal["all", "any", "not", "leaf"] = "leaf"
    parts: tuple[Condition, ...] = ()

    def holds(self) -> pl.Expr:
        if self.leaf is not None:
            fails = [f for f, _ in self.leaf.checks()]
            return pl.any_horizontal(fails).not_() if fails else pl.lit(True)
        exprs = [p.holds() for p in self.parts]
        if self.op == "all":
            return pl.all_horizontal(exprs)
        if self.op == "any":
            return pl.any_horizontal(exprs)
        return exprs[0].not_()

    def columns(self) -> set[str]:
        if self.leaf is not None:
            return {self.leaf.column}
        return set().union(*(p.columns() for p in self.parts))


def condition_from_mapping(spec: Any, where: str) -> Condition:
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: a condition is a mapping (column/min/max/in/not_in, or all/any/not), "
                         f"got {spec!r}")
    combos = [k for k in ("all", "any", "not") if k in spec]
    if len(combos) > 1 or (combos and "column" in spec):
        raise ValueError(f"{where}: use one of column, all, any, not per condition")
    if not combos:
        if "enabled" in spec:  # it would be ignored here: only a whole rule can be switched off
            raise ValueError(f"{where}: enabled switches a whole rule, not a condition inside one")
        return Condition(leaf=rule_from_mapping(str(spec.get("name", spec.get("column"))), spec, where))
    key = combos[0]
    body = spec[key]
    if key == "not":
        return Condition(op="not", parts=(condition_from_mapping(body, f"{where}.not"),))
    if not isinstance(body, list) or not body:
        raise ValueError(f"{where}.{key}: a non-empty list of conditions")
    return Condition(op=key, parts=tuple(condition_from_mapping(b, f"{where}.{key}[{i}]")
                                         for i, b in enumerate(body)))


# ---------------------------------------------------------------- evaluation


def evaluate(df: pl.DataFrame, prefix: str, items: list[Rule | tuple[str, Condition]]) -> Verdict:
    """Apply rules in order: the first one a row fails gives its reason (``prefix:rule...``) and its
    ``rule_value``. An item is a Rule or a named Condition (reason ``prefix:name`` when it fails)."""
    reason: pl.Expr = pl.lit(None, pl.String)
    value: pl.Expr = pl.lit(None, pl.Float64)
    chain_r: Any = None
    chain_v: Any = None
    # Columns of a type unknown before the run (declared as any type) are checked on the batch itself:
    # polars would fail on the comparison with a message naming neither the rule nor the column.
    problems = type_problems(items, df.schema)
    if problems:
        raise ValueError(f"{prefix}: " + "; ".join(problems))
    for item in items:
        if isinstance(item, Rule):
            numeric = _numeric(df, item.column)
            for fails, why in item.checks():
                r = pl.lit(f"{prefix}:{item.name}") + (pl.lit(why) if isinstance(why, str) else why)
                v = pl.col(item.column).cast(pl.Float64) if numeric else pl.lit(None, pl.Float64)
                chain_r = pl.when(fails).then(r) if chain_r is None else chain_r.when(fails).then(r)
                chain_v = pl.when(fails).then(v) if chain_v is None else chain_v.when(fails).then(v)
        else:
            name, cond = item
            fails = cond.holds().fill_null(False).not_()
            r = pl.lit(f"{prefix}:{name}")
            chain_r = pl.when(fails).then(r) if chain_r is None else chain_r.when(fails).then(r)
            chain_v = (pl.when(fails).then(pl.lit(None, pl.Float64)) if chain_v is None
                       else chain_v.when(fails).then(pl.lit(None, pl.Float64)))
    if chain_r is not None:
        reason = chain_r.otherwise(pl.lit(None, pl.String))
        value = chain_v.otherwise(pl.lit(None, pl.Float64))
    out = df.select(reason.cast(pl.String).alias("reason"), value.cast(pl.Float64).alias(RULE_VALUE))
    why = out["reason"]
    return Verdict(keep=why.is_null(), reason=why, scores={RULE_VALUE: out[RULE_VALUE]})


def _numeric(df: pl.DataFrame, column: str) -> bool:
    return column in df.columns and df.schema[column].is_numeric()


# ---------------------------------------------------------------- bounds against column types


def _kind(dtype: Any) -> str | None:
    """What a rule can compare a column of this type with: numbers, strings, booleans, or nothing."""
    if dtype.is_numeric():
        return "number"
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "string"
    if dtype == pl.Boolean:
        return "boolean"
    return None


def _value_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    return "number" if isinstance(v, int | float) else "string" if isinstance(v, str) else type(v).__name__


def rule_type_problem(name: str, rule: Rule, dtype: Any) -> str | None:
    """Why ``rule`` (of the rule called ``name``) cannot apply to its column of type ``dtype``, or None.
    polars refuses to compare a string column with a number (or a number column with a string) only
    when a batch is evaluated: checked here, the config is refused before a run."""
    if dtype is None:
        return None
    where = f"rule {name!r}: column {rule.column!r} is {dtype}"
    kind = _kind(dtype)
    for key, bound in (("min", rule.min), ("max", rule.max)):
        if bound is not None and kind != "number":
            return f"{where}, but {key} {fmt(bound)} is a number (min/max need a numeric column)"
    for key, values in (("in", rule.isin), ("not_in", rule.not_in)):
        for v in values:
            if v is not None and _value_kind(v) != kind:
                return (f"{where}, but {key} holds {v!r} (a {_value_kind(v)})" + (
                    f"; give {kind}s" if kind else "; rules compare numbers, strings or booleans"))
    return None


def _leaves(item: Rule | tuple[str, Condition]) -> list[tuple[str, Rule]]:
    """(the rule's name, leaf) for each column check of a rule or a named condition."""
    if isinstance(item, Rule):
        return [(item.name, item)]
    name, cond = item
    out: list[tuple[str, Rule]] = []
    stack = [cond]
    while stack:
        c = stack.pop()
        if c.leaf is not None:
            out.append((name, c.leaf))
        stack.extend(reversed(c.parts))
    return out


def type_problems(items: list[Rule | tuple[str, Condition]], have: Mapping[str, Any]) -> list[str]:
    """Each rule checked against the types of the columns it names (those ``have`` knows)."""
    out = []
    for item in items:
        for name, leaf in _leaves(item):
            p = rule_type_problem(name, leaf, have.get(leaf.column))
            if p and p not in out:
                out.append(p)
    return out


# ---------------------------------------------------------------- the generic operator


class RuleReport:
    """The report section every rule filter shares: each rule, its check, drops per source, examples.
    Put it first among the bases, so its ``report`` wins over the operator base's."""

    report_order = 62
    reason_prefix: ClassVar[str] = ""  # what every reason of the filter starts with, before ':'

    def prefix(self) -> str:
        return self.reason_prefix

    @classmethod
    def report(cls, stages: list[StageView]) -> Any:
        from corpus.stages.quality_report import rules_section

        return rules_section(stages)


@dataclass
class RuleFilter(RuleReport, FilterOperator):
    """Keep documents that pass every rule: min/max bounds and set membership on any column, and
    conditions combined with all/any/not (see the module docstring). The first rule a document fails
    drops it, with reason ``<name>:<rule><bound>`` and the failing number in ``rule_value``."""

    name = "rule_filter"
    needs = {}  # columns(): those the rules name
    adds = {RULE_VALUE: pl.Float64}

    rules: list[dict] = field(default_factory=list)
    label: str = "rules"  # the prefix of every reason

    def __post_init__(self) -> None:
        if not self.rules:
            raise ValueError("rules: give at least one rule")
        self._items = parse_rules(self.rules, "rules")

    def columns(self) -> tuple[Columns, Columns, tuple[str, ...]]:
        cols: set[str] = set()
        for item in self._items:
            cols |= {item.column} if isinstance(item, Rule) else item[1].columns()
        return dict.fromkeys(sorted(cols)), dict(self.adds), ()

    def prefix(self) -> str:
        return self.label

    def column_problems(self, have: Columns, earlier: Sequence[Operator] = ()) -> list[str]:
        return type_problems(self._items, have)

    def active_rules(self) -> list[Rule | tuple[str, Condition]]:
        return list(self._items)

    def filter(self, df: pl.DataFrame) -> Verdict:
        return evaluate(df, self.label, self._items)

    report_title = "Rule filter"


def parse_rules(specs: list[Any], where: str) -> list[Rule | tuple[str, Condition]]:
    items: list[Rule | tuple[str, Condition]] = []
    names: set[str] = set()
    for i, spec in enumerate(specs):
        w = f"{where}[{i}]"
        if not isinstance(spec, Mapping):
            raise ValueError(f"{w}: a rule is a mapping, got {spec!r}")
        unknown = sorted(set(spec) - _RULE_KEYS)
        if unknown:
            raise ValueError(f"{w}: unknown key(s) {unknown}; known: {sorted(_RULE_KEYS)}")
        if "name" in spec and (not isinstance(spec["name"], str) or not spec["name"]):
            raise ValueError(f"{w}: name must be a string, got {spec['name']!r}")
        if not rule_enabled(spec, w):
            continue
        name = str(spec.get("name") or spec.get("column") or f"rule{i}")
        if name in names:
            raise ValueError(f"{w}: two rules named {name!r}")
        names.add(name)
        w = f"{w} (rule {name!r})"  # the errors below name the rule, not only its place in the list
        if any(k in spec for k in ("all", "any", "not")):
            items.append((name, condition_from_mapping({k: v for k, v in spec.items()
                                                        if k not in ("name", "enabled")}, w)))
        else:
            items.append(rule_from_mapping(name, spec, w))
    return items
