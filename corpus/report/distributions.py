"""Sections drawn from the profiles (docs/profile-format.md) that `profile` stages wrote.

The last profile of the pipeline describes the corpus closest to its final state, so the single-profile
sections show it; with two or more, "Before and after" compares the first with the last. Every section
returns None when the run has no profile, and each reads the profile defensively (`.get`): a field a
profile lacks leaves its part out rather than failing the report.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from corpus.report.data import Profile, ReportContext
from corpus.report.html import (
    AFTER,
    BEFORE,
    Cell,
    Col,
    bytes_cell,
    esc,
    fmt_int,
    fmt_num,
    fmt_pct,
    grouped_hbar_chart,
    hbar_chart,
    histogram_chart,
    kpis,
    needs_log_counts,
    num_cell,
    pct_cell,
    snippet,
    table,
    truncate,
)
from corpus.report.sections import Rendered, section
from corpus.units import est_tokens, flagged_when, plural

# The documented features, in the doc's order; features a newer profile adds follow, sorted.
FEATURES = ("n_chars", "n_words", "n_lines", "est_tokens", "mean_word_len", "frac_alpha", "frac_digit", "frac_upper",
            "frac_punct", "frac_space", "frac_nonprint", "frac_lines_terminal_punct", "dup_line_ratio",
            "frac_replacement")
QUANTILES = ("p01", "p05", "p25", "p50", "p75", "p95", "p99")
SUMMARY = ("docs", "bytes", "chars", "words", "lines", "est_tokens", "null_text", "empty_text", "encoding_error_docs",
           "exact_dup_rate", "near_dup_rate", "near_dup_ci95", "near_dup_sample")
_NOT_COMPARED = ("near_dup_ci95",)  # shown beside its rate
TOP_LANGUAGES = 20


def _last(ctx: ReportContext) -> Profile | None:
    return ctx.profiles[-1] if ctx.profiles else None


def _source_note(p: Profile, ctx: ReportContext) -> str:
    which = "the only profile" if len(ctx.profiles) == 1 else "the last profile"
    return f'<p class="note">From <code>{esc(p.label)}</code> ({which} in the pipeline; {esc(p.stage)}).</p>'


def _features(sec: dict) -> list[str]:
    feats = {k: v for k, v in (sec.get("features") or {}).items() if isinstance(v, dict)}
    return [f for f in FEATURES if f in feats] + sorted(f for f in feats if f not in FEATURES)


def _summary(sec: dict) -> dict:
    s = {k: sec.get(k) for k in SUMMARY}
    if s["bytes"] is not None:  # the one definition (corpus.units), so the overview and the profile agree
        s["est_tokens"] = est_tokens(s["bytes"])
    return s


def _ci(s: dict) -> str:
    """The near-duplicate rate's 95% interval, "a–b", or "" without one."""
    ci = s.get("near_dup_ci95")
    return f"{fmt_pct(ci[0])}–{fmt_pct(ci[1])}" if isinstance(ci, list) and len(ci) == 2 else ""


def _near_cell(s: dict) -> Cell:
    ci = _ci(s)
    return Cell(fmt_pct(s["near_dup_rate"]) + (f" ({ci})" if ci else ""), s["near_dup_rate"],
                f"95% confidence interval {ci}" if ci else None)


def _summary_cells(s: dict) -> list[object]:
    return [num_cell(s["docs"]), bytes_cell(s["bytes"]), num_cell(s["words"]), num_cell(s["est_tokens"]),
            num_cell(s["empty_text"]), num_cell(s["null_text"]), num_cell(s["encoding_error_docs"]),
            pct_cell(s["exact_dup_rate"]), _near_cell(s)]


_SUMMARY_COLS = [Col("docs", True), Col("text", True), Col("words", True), Col("est. tokens", True),
                 Col("empty text", True), Col("null text", True), Col("encoding errors", True),
                 Col("exact dup rate", True), Col("near dup rate", True)]


# ---------------------------------------------------------------- summary


@section("profile", title="Corpus profile", order=80)
def profile_summary(ctx: ReportContext) -> Rendered | None:
    p = _last(ctx)
    if p is None:
        return None
    s = _summary(p.overall)
    figures = {"profile": p.label, "stage": p.stage, "overall": s,
               "by_source": {src: _summary(sec) for src, sec in sorted(p.by_source.items())}}
    sample = (f"would minhash_dedup drop: {fmt_int(s['near_dup_sample'])} sampled docs checked against all"
              if s["near_dup_sample"] else "share minhash_dedup would drop")
    if _ci(s):
        sample += f"; 95% CI {_ci(s)}"
    cards = kpis([
        ("Documents", fmt_int(s["docs"]), None),
        ("Est. tokens", fmt_int(s["est_tokens"]), "text bytes (UTF-8) / 4"),
        ("Words", fmt_int(s["words"]), f"{fmt_int(s['lines'])} lines"),
        ("Empty or null text", fmt_int((s["empty_text"] or 0) + (s["null_text"] or 0)), None),
        ("Encoding errors", fmt_int(s["encoding_error_docs"]), "docs with U+FFFD or mojibake"),
        ("Exact duplicates", fmt_pct(s["exact_dup_rate"]), "1 - distinct / docs"),
        ("Near duplicates", fmt_pct(s["near_dup_rate"]), sample),
    ])
    rows = [[src] + _summary_cells(v) for src, v in figures["by_source"].items()]
    body = _source_note(p, ctx) + cards
    if rows:
        body += "<h3>Per source</h3>" + table([Col("source")] + _SUMMARY_COLS, rows, [["all"] + _summary_cells(s)])
    return Rendered(body, figures)


# ---------------------------------------------------------------- features


def _counts(values: list) -> list:
    """A count's values (chars, words, lines: all whole) as ints, which read as counts (24, not 24.0;
    1, not 1.00); a feature with a fractional value keeps them as they are."""
    if all(isinstance(v, int | float) and float(v).is_integer() for v in values):
        return [int(v) for v in values]
    return values


def _quantile_row(name: str, f: dict) -> list[object]:
    q = f.get("quantiles") or {}
    values = _counts([f.get("min"), *(q.get(k) for k in QUANTILES), f.get("max")])
    return [name, num_cell(f.get("mean")), *(num_cell(v) for v in values)]  # the mean keeps its digits


def _hist(f: dict, title: str, x_label: str = "", **kw: Any) -> str:
    h = f.get("histogram") or {}
    return histogram_chart(h.get("edges") or [], h.get("counts") or [], title, x_label=x_label,
                           log=bool(h.get("log")), **kw)


def _hist_max(*feats: dict) -> int | None:
    return max((max((f.get("histogram") or {}).get("counts") or [0]) for f in feats), default=None) or None


@section("features", title="Document features", order=81)
def features(ctx: ReportContext) -> Rendered | None:
    p = _last(ctx)
    if p is None or not _features(p.overall):
        return None
    feats = p.overall["features"]
    names = _features(p.overall)
    cols = [Col("feature"), Col("mean", True), Col("min", True), *(Col(q, True) for q in QUANTILES), Col("max", True)]
    charts = "".join(_hist(feats[n], n, x_label=n) for n in names)
    srcs = sorted(p.by_source)
    medians = {src: {n: ((sec.get("features") or {}).get(n) or {}).get("quantiles", {}).get("p50")
                     for n in names} for src, sec in p.by_source.items()}
    body = (_source_note(p, ctx) + "<h3>Quantiles</h3>" + table(cols, [_quantile_row(n, feats[n]) for n in names])
            + f'<h3>Histograms</h3><div class="charts">{charts}</div>')
    if len(srcs) > 1:
        mcols = [Col("feature"), Col("all", True)] + [Col(s, True) for s in srcs]
        mrows = [[n, *(num_cell(v) for v in _counts([(feats[n].get("quantiles") or {}).get("p50"),
                                                      *(medians[s].get(n) for s in srcs)]))] for n in names]
        body += "<h3>Medians per source</h3>" + table(mcols, mrows)
    return Rendered(body, {"profile": p.label, "features": {n: feats[n] for n in names}, "median_by_source": medians})


# ---------------------------------------------------------------- mixes


def _top(d: dict | None, n: int) -> list[tuple[str, float]]:
    items = sorted((d or {}).items(), key=lambda kv: (-(kv[1] or 0), kv[0]))
    if len(items) <= n:
        return [(k, v or 0) for k, v in items]
    return [(k, v or 0) for k, v in items[:n]] + [("(other)", sum(v or 0 for _, v in items[n:]))]


@section("mix", title="Scripts, languages, sources", order=82)
def mix(ctx: ReportContext) -> Rendered | None:
    p = _last(ctx)
    if p is None:
        return None
    o = p.overall
    scripts, langs = _top(o.get("scripts"), 12), _top(o.get("languages"), TOP_LANGUAGES)
    srcs = _top(o.get("sources"), 30)
    if not (scripts or langs or srcs):
        return None
    charts = []
    if scripts:
        charts.append(hbar_chart(scripts, "Script mix (share of letters)", fmt=fmt_pct, width=500, label_w=120))
    if langs:
        charts.append(hbar_chart(langs, "Languages (documents)", width=500, label_w=120))
    if srcs:
        charts.append(hbar_chart(srcs, "Sources (documents)", width=500, label_w=120))
    note = "" if o.get("languages") is not None else '<p class="note">No language mix: no lang column yet.</p>'
    figures = {"profile": p.label, **{k: o.get(k) for k in ("scripts", "languages", "sources")}}
    return Rendered(_source_note(p, ctx) + f'<div class="charts">{"".join(charts)}</div>' + note, figures)


# ---------------------------------------------------------------- repeated lines


@section("top_lines", title="Top repeated lines", order=83)
def top_lines(ctx: ReportContext) -> Rendered | None:
    p = _last(ctx)
    lines = (p.overall.get("top_lines") or []) if p else []
    if p is None or not lines:
        return None
    docs = p.overall.get("docs") or 0
    rows = [[Cell(truncate(ln.get("line"), 200), title=ln.get("line")), ln.get("docs"),
             pct_cell(ln.get("docs", 0) / docs if docs else None)] for ln in lines]
    body = (_source_note(p, ctx)
            + '<p class="note">Lines found in two or more documents: boilerplate, navigation, templates.</p>'
            + table([Col("line", cls="snip"), Col("docs", True), Col("% of docs", True)], rows))
    return Rendered(body, {"profile": p.label, "top_lines": lines})


# ---------------------------------------------------------------- outliers


@section("outliers", title="Outliers", order=84)
def outliers(ctx: ReportContext) -> Rendered | None:
    p = _last(ctx)
    found = {k: v for k, v in ((p.overall.get("outliers") or {}) if p else {}).items() if v and v.get("count")}
    if p is None or not found:
        return None
    docs = p.overall.get("docs") or 0
    fmts = {k: _fmt_apart(v) for k, v in found.items()}
    summary = table([Col("feature"), Col("outlier docs", True), Col("% of docs", True), Col("flagged when")],
                    [[k, v["count"], pct_cell(v["count"] / docs if docs else None), _flagged_when(v, fmts[k])]
                     for k, v in found.items()])
    rule = p.overall.get("outlier_rule") or "more than 3.5 robust z-scores (median / MAD) from the median"
    parts = [_source_note(p, ctx), f'<p class="note">Outliers: {esc(rule)}.</p>', summary]
    ex_cols = [Col("id", cls="wrap"), Col("source"), Col("value", True), Col("robust z", True),
               Col("text", cls="snip")]
    for k, v in found.items():
        rows = [[e.get("id"), e.get("source"), num_cell(e.get("value"), fmts[k]), num_cell(e.get("robust_z")),
                 Cell(markup=snippet(e.get("snippet")))] for e in v.get("examples") or []]
        if rows:
            parts.append(f'<details class="examples"><summary><b>{esc(k)}</b> — '
                         f'{plural(v["count"], "doc")}</summary>'
                         + table(ex_cols, rows, sortable=False) + "</details>")
    return Rendered("".join(parts), {"profile": p.label, "rule": rule, "outliers": found})


def _flagged_when(v: dict, fmt: Callable[[float | None], str] = fmt_num) -> str:
    lo, hi = v.get("low"), v.get("high")
    if lo is None or hi is None:
        return "—"
    return flagged_when(lo, hi, fmt)


def _sig(x: float | None, decimals: int = 0) -> str:
    """`x` with 3 significant digits, or `decimals` decimals where that is more (fmt_num's look otherwise:
    thousands separated, very small values in e-notation)."""
    if x is None or isinstance(x, int) or not math.isfinite(x) or x == 0:
        return fmt_num(x)
    e = math.floor(math.log10(abs(x)))
    places = max(2 - e, decimals)
    return f"{x:.{places + e}e}" if e < -4 else f"{x:,.{places}f}"


def _fmt_apart(v: dict) -> Callable[[float | None], str]:
    """A formatter for one feature's bounds and flagged values, with 3 significant digits or more decimals
    where a value would print equal to a bound it is not: fmt_num's "> 0.007" beside a flagged 0.007
    (bound 0.00659, value 0.00677) read as a document inside the bound."""
    bounds = [b for b in (v.get("low"), v.get("high")) if isinstance(b, int | float)]
    values = [e["value"] for e in v.get("examples") or [] if isinstance(e.get("value"), int | float)]
    decimals = 0
    for decimals in range(20):
        shown = {b: _sig(b, decimals) for b in bounds}
        if all(_sig(x, decimals) != t for b, t in shown.items() for x in [*values, *bounds] if x != b):
            break
    return lambda x: _sig(x, decimals)


# ---------------------------------------------------------------- meta fields


@section("meta", title="Meta fields", order=85)
def meta_fields(ctx: ReportContext) -> Rendered | None:
    p = _last(ctx)
    fields = (p.overall.get("meta_fields") or {}) if p else {}
    if p is None or not fields:
        return None
    docs = p.overall.get("docs") or 0
    rows = [[name, f.get("present"), pct_cell(f.get("present", 0) / docs if docs else None),
             ", ".join(f"{t}: {n:,}" for t, n in sorted((f.get("types") or {}).items(), key=lambda kv: -kv[1]))]
            for name, f in sorted(fields.items())]
    body = (_source_note(p, ctx)
            + table([Col("field"), Col("present", True), Col("% of docs", True), Col("types")], rows))
    return Rendered(body, {"profile": p.label, "meta_fields": fields})


# ---------------------------------------------------------------- before / after


def _change(a: float | None, b: float | None) -> Cell:
    if a is None or b is None:
        return Cell("—")
    if not a:
        # "new" (from nothing) is the largest change: the page's sort reads "Infinity" as such (no data-v
        # sorted it as -Infinity, below every decrease)
        return Cell("—") if not b else Cell("new", "Infinity")
    r = (b - a) / a
    return Cell(f"{r:+.1%}", r)


@section("compare", title="Before and after", order=90)
def compare(ctx: ReportContext) -> Rendered | None:
    if len(ctx.profiles) < 2:
        return None
    first, last = ctx.profiles[0], ctx.profiles[-1]
    a, b = first.overall, last.overall
    la, lb = f"before ({first.label})", f"after ({last.label})"
    sa, sb = _summary(a), _summary(b)
    rows = []
    for k in (k for k in SUMMARY if k not in _NOT_COMPARED):
        rate = k.endswith("_rate")
        diff = None if sa[k] is None or sb[k] is None else sb[k] - sa[k]
        shown = "—" if diff is None else (f"{100 * diff:+.2f} pp" if rate else fmt_num(diff))
        rows.append([k, num_cell(sa[k], fmt_pct if rate else fmt_num), num_cell(sb[k], fmt_pct if rate else fmt_num),
                     Cell(shown, diff), _change(sa[k], sb[k])])
    parts = [f'<p class="note">Before: <code>{esc(first.label)}</code> ({esc(first.stage)}); after: '
             f'<code>{esc(last.label)}</code> ({esc(last.stage)}).</p>',
             table([Col("figure"), Col(la, True), Col(lb, True), Col("difference", True), Col("change", True)], rows)]
    # Side-by-side bars for the mixes: the same labels, one bar per profile.
    for key, title, fmt in (("sources", "Sources (documents)", fmt_int), ("scripts", "Script mix", fmt_pct),
                            ("languages", "Languages (documents)", fmt_int)):
        da, db = a.get(key) or {}, b.get(key) or {}
        larger = {k: max(da.get(k) or 0, db.get(k) or 0) for k in set(da) | set(db)}
        labels = [k for k, _ in _top(larger, 15) if k != "(other)"]
        if labels:
            series = {la: [da.get(k) or 0 for k in labels], lb: [db.get(k) or 0 for k in labels]}
            parts.append(grouped_hbar_chart(labels, series, f"{title}: before and after", fmt=fmt,
                                            colors=[BEFORE, AFTER]))
    feats = [n for n in _features(a) if n in _features(b)]
    qrows, pairs = [], []
    for n in feats:
        fa, fb = a["features"][n], b["features"][n]
        qa, qb = fa.get("quantiles") or {}, fb.get("quantiles") or {}
        values = _counts([q.get(k) for k in ("p05", "p50", "p95") for q in (qa, qb)])
        qrows.append([n, num_cell(fa.get("mean")), num_cell(fb.get("mean")), *(num_cell(v) for v in values)])
        counts = [(f.get("histogram") or {}).get("counts") or [] for f in (fa, fb)]
        # one scale, linear or log for both: the bars compare directly
        same = {"ymax": _hist_max(fa, fb), "width": 236, "log_counts": needs_log_counts(*counts)}
        pairs.append(f'<div class="pair"><h4>{esc(n)}</h4>{_hist(fa, "before", n, color=BEFORE, **same)}'
                     f'{_hist(fb, "after", n, color=AFTER, **same)}</div>')
    if feats:
        qcols = [Col("feature")] + [Col(f"{s} {w}", True) for s in ("mean", "p05", "p50", "p95")
                                    for w in ("before", "after")]
        parts.append("<h3>Features</h3>" + table(qcols, qrows) + f'<div class="charts">{"".join(pairs)}</div>')
    figures = {"before": {"profile": first.label, "stage": first.stage, "summary": sa},
               "after": {"profile": last.label, "stage": last.stage, "summary": sb},
               "features": {n: {"before": a["features"][n].get("quantiles"), "after": b["features"][n].get("quantiles")}
                            for n in feats}}
    return Rendered("".join(parts), figures)
