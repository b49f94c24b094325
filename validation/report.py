"""The report's "Data contracts" section: for each `validate` stage of the run, its suite's verdict, what
the gate did, and every expectation with its observed value (failures first, with example rows).
Read from the stages' own ``results.json`` (written by ``Validate.fit``)."""

from __future__ import annotations

from corpus.report.html import Cell, Col, badge, esc, kpis, table
from corpus.report.sections import Rendered
from corpus.validation.results import example_text, expected, observed

ACTIONS = {"passed": "every critical expectation held: documents pass on",
           "warned": "on_fail: warn: documents pass on",
           "quarantined": "on_fail: quarantine: failing rows moved to rejected/",
           "stopped": "the run stopped here"}


def render(stages: list[tuple[str, dict | None]]) -> Rendered | None:
    parts, figures = [], {}
    for label, doc in stages:
        if doc is None:
            continue
        bad = [r for r in doc["expectations"] if not r["success"]]
        parts.append(f"<h3>{esc(label)}: suite {esc(doc['suite'])}</h3>" + kpis([
            ("Verdict", "passed" if doc["success"] else "failed", ACTIONS.get(doc.get("action", ""), "")),
            ("Expectations", f"{len(doc['expectations']):,}",
             f"{len(doc['failed'])} critical failed, {len(doc['warnings'])} warnings"),
            ("Rows checked", f"{doc['rows']:,}", f"in {doc['seconds']:.1f} s, {doc['engine']}"),
            ("Quarantined", f"{doc.get('quarantined', 0):,}", "rows moved to rejected/ by this gate"),
        ]))
        rows = []
        for r in sorted(doc["expectations"], key=lambda r: (r["success"], r["index"])):
            state = badge("passed", True) if r["success"] else badge(
                "failed" if r["severity"] == "critical" else r["severity"], False)
            shown = "\n".join(example_text(x) for x in r.get("examples", []))
            rows.append([Cell(markup=state, sort=int(r["success"])), Cell(r["label"], title=r.get("notes") or None),
                         r["scope"], observed(r), expected(r),
                         Cell(markup=f'<pre class="snippet">{esc(shown)}</pre>' if shown else "")])
        cols = [Col("result"), Col("expectation", cls="wrap"), Col("scope"), Col("observed", cls="wrap"),
                Col("expected", cls="wrap"), Col("examples", cls="snip")]
        parts.append(table(cols, rows))
        figures[label] = {"suite": doc["suite"], "path": doc["path"], "success": doc["success"],
                          "action": doc.get("action"), "rows": doc["rows"], "quarantined": doc.get("quarantined", 0),
                          "failed": doc["failed"], "warnings": doc["warnings"],
                          "expectations": [{k: r.get(k) for k in ("label", "success", "severity", "observed",
                                                                  "unexpected_count", "unexpected_percent")}
                                           for r in doc["expectations"]]}
        if bad:
            figures[label]["examples"] = {r["label"]: r.get("examples", []) for r in bad}
    if not parts:
        return None
    return Rendered("".join(parts), figures)
