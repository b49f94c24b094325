"""The data quality report of a run: `OUT/report.html` (self-contained, opens offline) and
`OUT/report.json` (the same figures, for machines).

    from corpus.report import write_report
    html_path, json_path = write_report(Path("out/quickstart"))

The page is a list of sections from a registry (`corpus.report.sections`): add one with
`@section(key, title=..., order=...)`; see docs/report.md.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from corpus.operators import Operator
from corpus.report import distributions as _distributions  # noqa: F401  (registers the profile sections)
from corpus.report import drift as _drift  # noqa: F401  (registers the schema-drift section)
from corpus.report import ids as _ids  # noqa: F401  (registers the repeated-id section)
from corpus.report.data import ReportContext, gather
from corpus.report.html import esc, page
from corpus.report.sections import Rendered, Section, register, registered, section, unregister
from corpus.writers import finite_json, write_bytes_atomic

__all__ = ["REPORT_FORMAT", "Rendered", "ReportContext", "Section", "build_report", "register", "registered",
           "section", "unregister", "write_report"]

REPORT_FORMAT = "corpusforge.report/1"
log = logging.getLogger(__name__)


def build_report(out: Path, run_id: str | None = None) -> tuple[str, dict]:
    """The report's HTML and JSON figures for run `run_id` (default: the latest) of output folder `out`."""
    ctx = gather(Path(out), run_id)
    parts: list[str] = []
    nav: list[tuple[str, str]] = []
    sections: dict[str, dict] = {}
    errors: list[dict] = []
    for sec in sorted(registered() + _stage_sections(ctx), key=lambda s: (s.order, s.key)):
        try:
            result = sec.render(ctx)
        except Exception as exc:
            # One broken section (a plugin's, a profile field of an unexpected shape) must not cost the
            # rest of the report; the failure is shown in its place and listed in report.json.
            log.exception("report section %r failed", sec.key)
            msg = f"{type(exc).__name__}: {exc}"
            errors.append({"section": sec.key, "error": msg})
            result = Rendered(f'<div class="error">This section failed: {esc(msg)}</div>')
        if result is None:
            continue
        if isinstance(result, str):
            result = Rendered(result)
        if not result.html.strip():
            continue  # nothing to show: leave it out rather than render an empty heading
        nav.append((sec.key, sec.title))
        parts.append(f'<section class="rs" id="{esc(sec.key)}"><h2>{esc(sec.title)}</h2>{result.html}</section>')
        sections[sec.key] = {"title": sec.title, "order": sec.order, "figures": result.figures}
    figures = {
        "format": REPORT_FORMAT,
        "output": str(ctx.out),
        "run_id": ctx.run.run_id,
        "status": ctx.run.status,
        "warnings": ctx.warnings,
        "errors": errors,
        "sections": sections,
    }
    title = f"Data quality report — {ctx.out.name}"
    subtitle = f"run {ctx.run.run_id} · {ctx.run.status} · {ctx.run.started or ''} · {ctx.out}"
    return page(title, subtitle, nav, "".join(parts)), finite_json(figures)


def _stage_sections(ctx: ReportContext) -> list[Section]:
    """One section per operator of the run that shows something (``Operator.report``), over its
    stages in pipeline order: the operator reads its own artifacts."""
    from corpus import registry

    by_op: dict[str, list] = {}
    for name, view in ctx.stage_views():
        by_op.setdefault(name, []).append(view)
    out = []
    for name, views in by_op.items():
        try:
            cls = registry.get(name)
        except registry.UnknownOperator:
            continue  # an operator defined in a script, not registered: it has no section
        if cls.report.__func__ is Operator.report.__func__:  # type: ignore[attr-defined]
            continue
        title = cls.report_title or name
        out.append(Section(f"stage-{name}", title, cls.report_order,
                           lambda _ctx, cls=cls, views=views: cls.report(views)))
    return out


def write_report(out: Path, run_id: str | None = None) -> tuple[Path, Path]:
    """Write `out/report.html` and `out/report.json` atomically; returns their paths."""
    out = Path(out)
    html_text, figures = build_report(out, run_id)
    html_path, json_path = out / "report.html", out / "report.json"
    write_bytes_atomic(json_path, json.dumps(figures, indent=2, ensure_ascii=False, allow_nan=False,
                                             default=str).encode())
    write_bytes_atomic(html_path, html_text.encode())
    return html_path, json_path
