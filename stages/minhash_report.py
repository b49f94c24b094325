"""The `minhash_dedup` stage's report section: the S-curve of the chosen parameters and the largest
clusters with examples, from each stage's artifacts (``params.json``, ``clusters.json``: written by
``MinHashDedup.fit``, their fields documented in docs/report.md)."""

from __future__ import annotations

import json

from corpus.operators import StageView
from corpus.report.html import Cell, Col, esc, fmt_num, hbar_chart, histogram_chart, kpis, num_cell, snippet, table
from corpus.report.sections import Rendered

TOP_CLUSTERS, EXAMPLES = 10, 3


def _fits(stages: list[StageView]) -> list[tuple[str, dict, dict]]:
    found = []
    for st in stages:
        try:
            params = json.loads((st.artifacts / "params.json").read_text())
            clusters = json.loads((st.artifacts / "clusters.json").read_text())
        except (OSError, ValueError):
            continue
        found.append((st.label, params, clusters))
    return found


def render(stages: list[StageView]) -> Rendered | None:
    fits = _fits(stages)
    if not fits:
        return None
    parts, figures = [], {}
    for stage, params, clusters in fits:
        p = params["params"]
        curve = params["s_curve"]
        parts.append(f"<h3>{esc(stage)}</h3>" + kpis([
            ("Threshold", fmt_num(p["threshold"]), f"Jaccard of {p['ngram']}-{p['unit']} shingles"),
            ("Bands x rows", f"{params['bands']} x {params['rows']}", f"of {p['num_perm']} hashes"),
            ("Clusters", f"{params['clusters']:,}", f"{params['docs_in_clusters']:,} documents in them"),
            ("Removed", f"{params['removed']:,}", f"of {params['docs']:,} documents"),
            ("Candidate pairs", f"{params['candidate_pairs']:,}", f"{params['verified_pairs']:,} verified"),
        ]))
        charts = hbar_chart([(f"J = {j:.2f}", prob) for j, prob in curve if j >= 0.4],
                            "P(pair becomes a candidate) against Jaccard (S-curve)", fmt=lambda v: f"{v:.3f}")
        hist = params.get("candidate_jaccard_hist") or []
        if hist and sum(hist):
            edges = [i / len(hist) for i in range(len(hist) + 1)]
            charts += histogram_chart(edges, hist, "Jaccard of candidate pairs", x_label="Jaccard")
        parts.append(f'<div class="charts">{charts}</div>')
        rows = []
        for k, c in enumerate(clusters.get("top", [])[:TOP_CLUSTERS], 1):
            for ex in c["examples"][:EXAMPLES]:
                # ids may repeat: where the document was read tells copies apart
                where = f"{ex['source']} {ex['file']}:{ex['row']}" if ex.get("file") else "saved index"
                rows.append([k, num_cell(c["size"]), ex["id"], where, "kept" if ex["kept"] else "removed",
                             num_cell(ex["jaccard_estimate"]), Cell(markup=snippet(ex["snippet"]))])
        if rows:
            cols = [Col("cluster", num=True), Col("size", num=True), Col("id"), Col("read from", cls="wrap"),
                    Col("outcome"), Col("est. Jaccard", num=True), Col("text", cls="snip")]
            parts.append("<h4>Largest clusters, with examples</h4>" + table(cols, rows))
        figures[stage] = {"bands": params["bands"], "rows": params["rows"], "s_curve": curve,
                          "clusters": params["clusters"], "removed": params["removed"],
                          "top_clusters": [{"cluster_id": c["cluster_id"], "size": c["size"]}
                                           for c in clusters.get("top", [])]}
    return Rendered("".join(parts), figures)
