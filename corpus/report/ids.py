"""Report section for the repeated-id check (corpus/ids.py): how many user ids occur more than once,
what the run did about it (on_duplicate_id), and examples with where each occurrence was read. Read from
the catalog tables ``id_check`` and ``repeated_ids``; left out when every id is unique."""

from __future__ import annotations

import duckdb

from corpus.catalog import Catalog
from corpus.report.data import ReportContext
from corpus.report.html import Col, kpis, table
from corpus.report.sections import Rendered, section

OUTCOME = {"keep": "kept (on_duplicate_id: keep)", "reject": "later occurrences rejected (reason duplicate_id)",
           "fail": "run stopped before any stage (on_duplicate_id: fail)"}


@section("repeated_ids", title="Repeated ids", order=55)
def repeated_ids(ctx: ReportContext) -> Rendered | None:
    cat = Catalog(ctx.out / "catalog.duckdb", create=False)
    try:
        check = cat.query("SELECT policy, docs, repeated_ids, later_rows FROM id_check WHERE run_id = ?",
                          [ctx.run.run_id])
        rows = cat.query("""SELECT id, occurrences, occurrence, source, file, row, row_id FROM repeated_ids
                            WHERE run_id = ? ORDER BY min(row_id) OVER (PARTITION BY id), occurrence""",
                         [ctx.run.run_id])
    except duckdb.Error:  # a catalog written before the check existed
        return None
    if not check or not check[0][2]:
        return None  # every id unique (or not checked): nothing to show
    policy, docs, ids, later = check[0]
    figures = {"policy": policy, "docs": docs, "repeated_ids": ids, "later_occurrences": later,
               "examples": [{"id": i, "occurrences": n, "occurrence": k, "source": s, "file": f, "row": r,
                             "row_id": rid} for i, n, k, s, f, r, rid in rows]}
    html = kpis([("Ids checked", f"{docs:,}", "every document's id, after reading"),
                 ("Repeated ids", f"{ids:,}", "ids that occur more than once"),
                 ("Later occurrences", f"{later:,}", OUTCOME.get(policy, policy))])
    html += ('<p class="note">Internal work (dedup, splits) is keyed by each row\'s own identity, so repeated ids '
             'lose nothing; they matter to whoever joins on ids. The first ids repeated, in corpus order:</p>')
    cols = [Col("id"), Col("occurrences", num=True), Col("#", num=True), Col("source"), Col("file:row", cls="wrap")]
    html += table(cols, [[i, n, k, s, f"{f}:{r}"] for i, n, k, s, f, r, _ in rows], sortable=False)
    return Rendered(html, figures)
