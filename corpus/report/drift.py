"""Report section for schema drift across the files of one source (corpus/readers/fields.py): per
source, how many files and fields it has, and every file whose fields differ from the source's first
file (missing, extra or retyped). Read from the catalog tables ``source_fields`` and ``schema_drift``;
left out when no source drifts."""

from __future__ import annotations

import duckdb

from corpus.catalog import Catalog
from corpus.report.data import ReportContext
from corpus.report.html import Col, esc, kpis, table
from corpus.report.sections import Rendered, section

KINDS = {"missing": "in the first file, absent here", "extra": "absent from the first file, present here",
         "retyped": "values of another type than in the first file"}


@section("schema_drift", title="Schema drift", order=57)
def schema_drift(ctx: ReportContext) -> Rendered | None:
    cat = Catalog(ctx.out / "catalog.duckdb", create=False)
    try:
        drift = cat.query("""SELECT source, reference, file, field, kind, reference_types, file_types FROM schema_drift
                             WHERE run_id = ? ORDER BY source, file, kind, field""", [ctx.run.run_id])
        shape = cat.query("""SELECT source, count(DISTINCT file), count(DISTINCT field) FROM source_fields
                             WHERE run_id = ? GROUP BY source ORDER BY source""", [ctx.run.run_id])
    except duckdb.Error:  # a catalog written before fields were recorded
        return None
    if not drift:
        return None
    files = {s: (f, n) for s, f, n in shape}
    figures: dict[str, dict] = {}
    for src, ref, file, fld, kind, ref_t, file_t in drift:
        f = figures.setdefault(src, {"reference": ref, "files": files.get(src, (0, 0))[0],
                                     "fields": files.get(src, (0, 0))[1], "drift": []})
        f["drift"].append({"file": file, "field": fld, "kind": kind, "reference_types": ref_t, "file_types": file_t})
    parts = [kpis([("Sources drifting", f"{len(figures):,}", "of " + f"{len(files):,} with fields recorded"),
                   ("Files differing", f"{len({(s, d['file']) for s, f in figures.items() for d in f['drift']}):,}",
                    "from their source's first file"),
                   ("Fields involved", f"{len({(s, d['field']) for s, f in figures.items() for d in f['drift']}):,}",
                    "missing, extra or retyped")]),
             '<p class="note">Each file is compared with the first file of its source. Nothing was coerced or '
             'dropped: a missing field is absent from <code>meta</code>, an extra one is kept there, and every '
             "value keeps its own type.</p>"]
    cols = [Col("file", cls="wrap"), Col("field"), Col("drift"), Col("types in the first file"), Col("types here")]
    for src, f in figures.items():
        rows = [[d["file"], d["field"], d["kind"], d["reference_types"] or "", d["file_types"] or ""]
                for d in f["drift"]]
        parts.append(f"<h3>{esc(src)}</h3><p class=\"note\">{f['files']:,} files, {f['fields']:,} fields; first "
                     f"file {esc(f['reference'])}. " + "; ".join(f"{k}: {v}" for k, v in KINDS.items()) + ".</p>"
                     + table(cols, rows))
    return Rendered("".join(parts), figures)
