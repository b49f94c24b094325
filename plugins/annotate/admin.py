"""The admin page: progress per annotator, then agreement, bias flags and the least agreed items from
the shared aggregation (``corpus.plugins.preferences.aggregate``), in the report's page shell (its
CSP allows only the report's own script; every value goes through ``esc``)."""

from __future__ import annotations

from corpus.plugins.annotate.store import Store
from corpus.plugins.preferences import aggregate, preference_report_html
from corpus.report import html as H

CSP = "frame-ancestors 'none'"  # the page's own meta CSP (corpus.report.html.page) restricts the rest


def progress_html(store: Store) -> str:
    ov = store.overview()
    problems = sum(ov["load_problems"].values())
    parts = [H.kpis([
        ("Items", H.fmt_int(ov["items"]), f"{H.fmt_int(ov['complete'])} with {ov['per_item']}+ labels"),
        ("Labels", H.fmt_int(ov["labels"]), f"{ov['per_item']} wanted per item"),
        ("Annotators", H.fmt_int(len(ov["annotators"])), None),
        ("Load problems", H.fmt_int(problems), ", ".join(f"{k}: {v}" for k, v in ov["load_problems"].items())
         or None),
    ])]
    cols = [H.Col("annotator"), H.Col("labelled", num=True), H.Col("skipped", num=True), H.Col("open", num=True),
            H.Col("last label")]
    rows = [[a["name"], H.num_cell(a["labelled"]), H.num_cell(a["skipped"]), H.num_cell(a["open"]), a["last"]]
            for a in ov["annotators"]]
    parts.append(H.table(cols, rows))
    parts.append('<p><a href="/admin/export.jsonl" download="rankings.jsonl">Download the labels</a> '
                 "(Ranking JSONL; <code>corpus annotate export</code> writes it too, and pairs). "
                 '<a href="/admin/annotators">Add an annotator</a>.</p>')
    return "\n".join(parts)


def admin_page(store: Store) -> tuple[str, str]:
    """(HTML, Content-Security-Policy header) of the admin page."""
    prefs = store.preferences()
    agreement = (preference_report_html(aggregate(prefs)) if prefs
                 else "<p>No labels yet: agreement and bias appear once annotators have ranked items.</p>")
    body = (f'<section id="progress"><h2>Progress</h2>{progress_html(store)}</section>'
            f'<section id="agreement"><h2>Agreement and bias</h2>{agreement}</section>')
    nav = [("progress", "Progress"), ("agreement", "Agreement and bias")]
    return H.page("Annotation admin", f"project {store.folder.name}", nav, body), CSP
