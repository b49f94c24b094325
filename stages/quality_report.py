"""The report section of the rule filters (rule sets, rule_filter, language and bad-words filters): per
stage, each rule with its check, its drops per source and example documents with the failing value."""

from __future__ import annotations

import logging

from corpus.operators import StageView
from corpus.report.html import Cell, Col, esc, hbar_chart, num_cell, snippet, table
from corpus.report.sections import Rendered
from corpus.stages.rules import RULE_VALUE, Rule, fmt

log = logging.getLogger(__name__)
EXAMPLES = 2


def _rules_of(view: StageView) -> tuple[str, list[tuple[str, str]]]:
    """(reason prefix, [(rule, check)]) of the stage's operator, rebuilt from its parameters."""
    from corpus import registry

    name = view.label.split("-", 1)[1] if "-" in view.label else view.label
    try:
        op = registry.get(name)(**view.params)
    except (registry.UnknownOperator, TypeError, ValueError) as exc:
        log.warning("report: cannot rebuild %s from its parameters: %s", view.label, exc)
        return name, []
    prefix = op.prefix() if hasattr(op, "prefix") else name
    items = op.active_rules() if hasattr(op, "active_rules") else []
    rows = [(i.name, i.describe()) if isinstance(i, Rule) else (i[0], "condition") for i in items]
    return prefix, rows


def _rule_of(reason: str, prefix: str, names: list[str]) -> str:
    for n in sorted(names, key=len, reverse=True):
        head = f"{prefix}:{n}"
        if reason == head or (reason.startswith(head) and reason[len(head)] in "<>="):
            return n
    return reason


def rules_section(stages: list[StageView]) -> Rendered | None:
    parts, figures = [], {}
    for view in stages:
        prefix, rules = _rules_of(view)
        names = [n for n, _ in rules]
        sources = sorted({s for by in view.drops.values() for s in by})
        per_rule: dict[str, dict[str, int]] = {n: {} for n in names}
        reasons_of: dict[str, list[str]] = {}
        for reason, by_source in view.drops.items():
            rule = _rule_of(reason, prefix, names)
            acc = per_rule.setdefault(rule, {})
            for s, n in by_source.items():
                acc[s] = acc.get(s, 0) + n
            reasons_of.setdefault(rule, []).append(reason)
        checks = dict(rules)
        rows = []
        for rule, by_source in per_rule.items():
            total = sum(by_source.values())
            examples = [ex for r in reasons_of.get(rule, []) for ex in view.examples.get(r, [])][:EXAMPLES]
            shown = "".join(
                f"<div>{esc(ex['id'])} ({esc(ex['source'])}"
                + (f", value {esc(fmt(ex['scores'][RULE_VALUE]))}" if RULE_VALUE in ex.get("scores", {}) else "")
                + f"): {snippet(ex['snippet'])}</div>" for ex in examples)
            rows.append([rule, checks.get(rule, "(not in the current rules)"), num_cell(total),
                         *(num_cell(by_source.get(s, 0)) for s in sources), Cell(markup=shown)])
        cols = [Col("rule"), Col("keeps", cls="wrap"), Col("dropped", num=True),
                *(Col(s, num=True) for s in sources), Col("examples", cls="snip")]
        chart = hbar_chart([(r[0], sum(per_rule[r[0]].values())) for r in rows], "documents dropped per rule "
                           "(the first rule a document fails)")
        parts.append(f"<h3>{esc(view.label)}</h3><div class=\"charts\">{chart}</div>" + table(cols, rows))
        figures[view.label] = {"rules": {r: {"check": checks.get(r), "dropped": sum(per_rule[r].values()),
                                             "by_source": per_rule[r]} for r in per_rule}}
    return Rendered("".join(parts), figures) if parts else None
