"""The report section of a cleaning operator: what each of its stages changed, per kind and source,
from the counters the catalog summed (``StageView.counters``)."""

from __future__ import annotations

from corpus.operators import StageView
from corpus.report.html import Col, esc, hbar_chart, num_cell, table
from corpus.report.sections import Rendered


def counters_section(stages: list[StageView], labels: dict[str, str], what: str) -> Rendered | None:
    """One block per stage: a bar per counter (all sources) and a table per source. ``labels``: counter
    column -> how the report names it, in display order; ``what``: the unit of the bars."""
    parts, figures = [], {}
    for st in stages:
        if not st.counters:
            continue
        sources = sorted(st.counters)
        totals = {c: sum(st.counters[s].get(c, 0) for s in sources) for c in labels}
        rows = [[s, *(num_cell(st.counters[s].get(c, 0)) for c in labels)] for s in sources]
        foot = [["all sources", *(num_cell(totals[c]) for c in labels)]] if len(sources) > 1 else []
        cols = [Col("source"), *(Col(label, num=True) for label in labels.values())]
        chart = hbar_chart([(labels[c], totals[c]) for c in labels], f"{what}, all sources")
        parts.append(f"<h3>{esc(st.label)}</h3><div class=\"charts\">{chart}</div>" + table(cols, rows, foot))
        figures[st.label] = {"totals": totals, "by_source": {s: dict(st.counters[s]) for s in sources}}
    return Rendered("".join(parts), figures) if parts else None
