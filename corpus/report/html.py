"""HTML building blocks of the report: escaping, number formats, sortable tables, inline SVG charts,
and the page shell with its inline CSS and JS.

Everything here returns markup as a string. Every piece of data goes through `esc` (documents hold
arbitrary text), and nothing refers to the network: the page must open offline, from a file, years
later. Charts are SVG computed here, so they need no script to draw.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Okabe-Ito: distinguishable with the common forms of colour blindness, and in grey print.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")
BAR = PALETTE[0]
BEFORE, AFTER = "#999999", PALETTE[0]


# Bidirectional controls (LRE..RLO, LRI..PDI, LRM/RLM, ALM) reorder the text around them: an id
# "rtl-\u202eevil" reads "rtl-live". Data text shows them as \uXXXX, as the quarantine preview does.
BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def visible(text: str) -> str:
    """Data text with its bidirectional controls shown as \\uXXXX escapes, so it reads as it is."""
    return BIDI_CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def esc(x: object) -> str:
    """The one escaping path for text on the page: HTML-escaped, bidi controls made visible."""
    return html.escape(visible("" if x is None else str(x)), quote=True)


# ---------------------------------------------------------------- numbers


def fmt_int(n: float | None) -> str:
    return "—" if n is None else f"{int(n):,}"


def fmt_num(x: float | None) -> str:
    """A float for reading, not for copying: about three significant digits, thousands separated."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if isinstance(x, int):
        return f"{x:,}"
    a = abs(x)
    if a == 0:
        return "0"
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"  # "9.00", never "9.000" (nine thousand to many readers)
    if a >= 0.001:
        return f"{x:.3f}"  # fractions (frac_*) share one look: 0.500, 0.125
    return f"{x:.2e}"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "—"
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:,.2f} {unit}"
    return f"{int(n):,} B"


def fmt_pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{100 * x:.{digits}f}%"


def truncate(text: str | None, n: int) -> str:
    if text is None:
        return ""
    return text if len(text) <= n else text[: n - 1] + "…"


# ---------------------------------------------------------------- tables


@dataclass(frozen=True)
class Cell:
    """A table cell: `text` is shown (escaped), `sort` orders it, `title` is its tooltip.
    `markup` replaces `text` with ready, already-escaped HTML (a badge, a link inside the page)."""

    text: str = ""
    sort: float | str | None = None
    title: str | None = None
    markup: str | None = None


@dataclass(frozen=True)
class Col:
    name: str
    num: bool = False  # right-aligned, sorted as a number
    cls: str = ""  # extra class on every cell of the column ("snip" wraps long text)


def num_cell(x: float | None, fmt: Callable[[float | None], str] | None = None, title: str | None = None) -> Cell:
    if fmt is None:
        fmt = fmt_int if isinstance(x, int) else fmt_num
    return Cell(fmt(x), x if x is not None else None, title)


def bytes_cell(n: int | None) -> Cell:
    return Cell(fmt_bytes(n), n, None if n is None else f"{n:,} bytes")


def pct_cell(x: float | None) -> Cell:
    return Cell(fmt_pct(x), x)


def _cell(value: object) -> Cell:
    if isinstance(value, Cell):
        return value
    if isinstance(value, bool) or value is None:
        return Cell("—" if value is None else ("yes" if value else "no"))
    if isinstance(value, int | float):
        return num_cell(value)
    return Cell(str(value))


def _td(cell: Cell, col: Col, tag: str = "td") -> str:
    classes = " ".join(c for c in ("num" if col.num else "", col.cls) if c)
    attrs = f' class="{classes}"' if classes else ""
    if cell.sort is not None:
        attrs += f' data-v="{esc(cell.sort)}"'
    if cell.title:
        attrs += f' title="{esc(cell.title)}"'
    body = cell.markup if cell.markup is not None else esc(cell.text)
    return f"<{tag}{attrs}>{body}</{tag}>"


def table(cols: Sequence[Col], rows: Sequence[Sequence[object]], foot: Sequence[Sequence[object]] = (),
          sortable: bool = True, caption: str | None = None) -> str:
    """A table; header clicks sort it (see SCRIPT). Footer rows (totals) stay put when sorting."""
    head = "".join(
        f'<th scope="col"{" class=num" if c.num else ""}>{esc(c.name)}</th>' for c in cols)
    body = "".join("<tr>" + "".join(_td(_cell(v), c) for v, c in zip(r, cols, strict=True)) + "</tr>" for r in rows)
    tfoot = ""
    if foot:
        tfoot = "<tfoot>" + "".join(
            "<tr>" + "".join(_td(_cell(v), c) for v, c in zip(r, cols, strict=True)) + "</tr>" for r in foot
        ) + "</tfoot>"
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    cls = ' class="sortable"' if sortable else ""
    return (f'<div class="tablewrap"><table{cls}>{cap}<thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody>{tfoot}</table></div>")


def kpis(items: Sequence[tuple[str, str, str | None]]) -> str:
    """Headline figures as cards: (label, value, note)."""
    cards = "".join(
        f'<div class="kpi"><div class="kpi-label">{esc(label)}</div><div class="kpi-value">{esc(value)}</div>'
        + (f'<div class="kpi-note">{esc(note)}</div>' if note else "") + "</div>"
        for label, value, note in items)
    return f'<div class="kpis">{cards}</div>'


def badge(text: str, good: bool) -> str:
    return f'<span class="badge {"ok" if good else "bad"}">{esc(text)}</span>'


def snippet(text: str | None) -> str:
    return f'<pre class="snippet">{esc(text)}</pre>'


# ---------------------------------------------------------------- charts



def _svg(width: int, height: int, title: str, body: str) -> str:
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{esc(title)}"><title>{esc(title)}</title>{body}</svg>')


def _text(x: float, y: float, s: str, anchor: str = "start", cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{c}>{esc(s)}</text>'


def _label(s: str, label_w: int) -> str:
    return truncate(s, max(8, label_w // 7))  # ~7 px per character at 12 px


def _legend(series: Sequence[str], colors: Sequence[str], x: float, y: float) -> str:
    out, cx = [], x
    for name, color in zip(series, colors, strict=False):
        label = truncate(name, 24)
        out.append(f'<rect x="{cx:.1f}" y="{y - 10:.1f}" width="10" height="10" fill="{color}"/>'
                   + _text(cx + 14, y, label))
        cx += 24 + 7 * len(label)
    return "".join(out)


def hbar_chart(items: Sequence[tuple[str, float]], title: str, fmt: Callable[[float], str] = fmt_int,
               width: int = 720, color: str = BAR, label_w: int = 200, groups: Sequence[str] | None = None) -> str:
    """Horizontal bars, one per (label, value), longest scale = largest value. `groups` (one per item, e.g.
    its stage) draws a heading above each run of items sharing one, so that the labels keep only what
    tells the bars apart (a drop reason), instead of a shared prefix cut short; tooltips give both."""
    if not items:
        return ""
    row, top = 22, 26
    heads = [g if groups is not None and (i == 0 or g != groups[i - 1]) else None
             for i, g in enumerate(groups or [None] * len(items))]
    height = top + row * (len(items) + sum(h is not None for h in heads)) + 8
    vmax = max((v for _, v in items), default=0) or 1
    plot = width - label_w - 90
    parts = [_text(4, 15, title, cls="ctitle")]
    y = top
    for i, (label, v) in enumerate(items):
        if heads[i] is not None:
            parts.append(_text(4, y + 15, _label(str(heads[i]), width - 8), cls="group"))
            y += row
        w = max(0.0, plot * v / vmax)
        full = f"{groups[i]} · {label}" if groups is not None else label
        parts.append(
            f'<g><title>{esc(full)}: {esc(fmt(v))}</title>'
            + _text(label_w - 6, y + 15, _label(label, label_w), "end")
            + f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="{color}"/>'
            + _text(label_w + w + 4, y + 15, fmt(v), cls="val") + "</g>")
        y += row
    return _svg(width, height, title, "".join(parts))


def stacked_hbar_chart(rows: Sequence[tuple[str, Sequence[float]]], series: Sequence[str], title: str,
                       fmt: Callable[[float], str] = fmt_int, width: int = 720, label_w: int = 200,
                       totals: Sequence[float] | None = None) -> str:
    """One horizontal bar per row, split into `series` segments (e.g. kept/rejected/quarantined).
    `totals`: each row's figure as shown beside its bar, where it is not the sum of its segments (an
    estimate made of the total, such as est. tokens, differs from the sum of per-segment estimates)."""
    if not rows:
        return ""
    shown = list(totals) if totals is not None else [sum(vals) for _, vals in rows]
    row, top = 24, 44
    height = top + row * len(rows) + 8
    vmax = max((sum(vals) for _, vals in rows), default=0) or 1
    plot = width - label_w - 90
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(series))]
    parts = [_text(4, 15, title, cls="ctitle"), _legend(series, colors, label_w, 34)]
    for i, (label, vals) in enumerate(rows):
        y = top + i * row
        x = float(label_w)
        parts.append(f'<g><title>{esc(label)}: {esc(fmt(shown[i]))}</title>'
                     + _text(label_w - 6, y + 16, _label(label, label_w), "end") + "</g>")
        for name, v, color in zip(series, vals, colors, strict=True):
            w = plot * v / vmax
            if w > 0:
                parts.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="{color}">'
                             f"<title>{esc(label)} · {esc(name)}: {esc(fmt(v))}</title></rect>")
            x += w
        parts.append(_text(x + 4, y + 16, fmt(shown[i]), cls="val"))
    return _svg(width, height, title, "".join(parts))


def grouped_hbar_chart(labels: Sequence[str], series: dict[str, Sequence[float]], title: str,
                       fmt: Callable[[float], str] = fmt_int, width: int = 720, label_w: int = 200,
                       colors: Sequence[str] | None = None) -> str:
    """Side-by-side bars: for each label, one thin bar per series (e.g. before and after)."""
    if not labels:
        return ""
    names = list(series)
    colors = list(colors or [PALETTE[i % len(PALETTE)] for i in range(len(names))])
    bar, gap, top = 10, 8, 44
    group = bar * len(names) + gap
    height = top + group * len(labels) + 8
    vmax = max((v for vals in series.values() for v in vals), default=0) or 1
    plot = width - label_w - 90
    parts = [_text(4, 15, title, cls="ctitle"), _legend(names, colors, label_w, 34)]
    for i, label in enumerate(labels):
        y0 = top + i * group
        parts.append(_text(label_w - 6, y0 + bar * len(names) / 2 + 4, _label(label, label_w), "end"))
        for j, (name, color) in enumerate(zip(names, colors, strict=True)):
            v = series[name][i]
            w = max(0.0, plot * v / vmax)
            y = y0 + j * bar
            parts.append(f'<g><title>{esc(label)} · {esc(name)}: {esc(fmt(v))}</title>'
                         f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar - 1}" fill="{color}"/>'
                         + _text(label_w + w + 4, y + bar - 1, fmt(v), cls="val small") + "</g>")
    return _svg(width, height, title, "".join(parts))


# A non-empty bin drawn under this share of the tallest is invisible on a linear axis.
LOG_COUNTS_BELOW = 0.02


def needs_log_counts(*counts: Sequence[int]) -> bool:
    """Would a linear count axis hide a non-empty bin (a feature concentrated near zero with a tail)?
    Several histograms drawn on one scale are decided together."""
    values = [c for cs in counts for c in cs]
    nonzero = [c for c in values if c > 0]
    return bool(nonzero) and min(nonzero) < LOG_COUNTS_BELOW * max(nonzero)


def histogram_chart(edges: Sequence[float], counts: Sequence[int], title: str, x_label: str = "",
                    log: bool = False, width: int = 320, height: int = 190, color: str = BAR,
                    ymax: int | None = None, log_counts: bool | None = None) -> str:
    """Bars of equal width per bin (log-spaced bins stay readable); the x axis names the edges.
    `ymax` puts several histograms on one scale (before/after side by side). `log_counts`: a log count
    axis (log(1 + count)), so a tail beside one tall bin stays visible; None decides by `needs_log_counts`."""
    if not counts or len(edges) != len(counts) + 1:
        return ""
    left, right, top, bottom = 48, 12, 22, 38
    pw, ph = width - left - right, height - top - bottom
    cmax = ymax or max(counts) or 1
    if log_counts is None:
        log_counts = needs_log_counts(counts)

    def scale(c: float) -> float:
        return math.log1p(c) / math.log1p(cmax) if log_counts else c / cmax

    bw = pw / len(counts)
    parts = [_text(left, 14, _label(title, width - left), cls="ctitle")]
    parts.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" class="axis"/>'
                 f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" class="axis"/>')
    parts.append(_text(left - 4, top + 8, fmt_int(cmax), "end", "tick")
                 + _text(left - 4, top + ph, "0", "end", "tick"))
    if log_counts:
        mid = 10 ** round(math.log10(cmax) / 2) if cmax >= 100 else None  # one tick between 0 and the top
        if mid is not None:
            parts.append(_text(left - 4, top + ph * (1 - scale(mid)) + 4, fmt_int(mid), "end", "tick"))
    for i, c in enumerate(counts):
        h = ph * scale(c)
        x = left + i * bw
        # Every bin gets a full-height hover target, so near-empty bins still show their tooltip.
        parts.append(f'<g><title>[{esc(fmt_num(edges[i]))}, {esc(fmt_num(edges[i + 1]))}): {c:,} docs</title>'
                     f'<rect x="{x:.1f}" y="{top}" width="{bw:.1f}" height="{ph}" fill="transparent"/>'
                     f'<rect x="{x + 0.5:.1f}" y="{top + ph - h:.1f}" width="{max(bw - 1, 0.5):.1f}" '
                     f'height="{h:.1f}" fill="{color}"/></g>')
    mid = len(counts) // 2
    for i, anchor in ((0, "start"), (mid, "middle"), (len(counts), "end")):
        parts.append(_text(left + i * bw, top + ph + 14, fmt_num(edges[i]), anchor, "tick"))
    axis = x_label + (" (log-spaced bins)" if log else "")
    parts.append(_text(left + pw / 2, height - 4, axis, "middle", "axis-label"))
    parts.append(f'<text transform="translate(12 {top + ph / 2:.1f}) rotate(-90)" text-anchor="middle" '
                 f'class="axis-label">{"docs (log scale)" if log_counts else "docs"}</text>')
    return _svg(width, height, title, "".join(parts))


def scatter_chart(xs: Sequence[float], ys: Sequence[float], groups: Sequence[str], title: str,
                  labels: Sequence[tuple[float, float, str]] = (), width: int = 460, height: int = 400,
                  max_groups: int = len(PALETTE) - 1) -> str:
    """Points in [0, 1] x [0, 1] coloured by group: the most frequent ``max_groups`` get a colour each, the
    rest share grey as "(other)". ``labels`` (x, y, text) are drawn over the points (cluster numbers).
    Each group is one path of round dots, so thousands of points stay a small page."""
    if not xs:
        return ""
    counts: dict[str, int] = {}
    for g in groups:
        counts[g] = counts.get(g, 0) + 1
    named = sorted(counts, key=lambda g: (-counts[g], g))[:max_groups]
    colour = {g: PALETTE[i] for i, g in enumerate(named)}
    legend = [f"{g} ({counts[g]:,})" for g in named]
    if len(counts) > len(named):
        legend.append(f"(other) ({sum(n for g, n in counts.items() if g not in colour):,})")
    colours = [colour[g] for g in named] + [PALETTE[-1]]
    rows = _legend_rows(legend, colours, width - 8)
    left, top, size = 8, 24 + 16 * len(rows), min(width - 16, height - 32 - 16 * len(rows))
    paths: dict[str, list[str]] = {}
    for x, y, g in zip(xs, ys, groups, strict=True):
        paths.setdefault(colour.get(g, PALETTE[-1]), []).append(f"M{left + x * size:.1f} {top + (1 - y) * size:.1f}h0")
    parts = [_text(4, 15, title, cls="ctitle")]
    parts += [_legend(row_names, row_colours, 8, 34 + 16 * i) for i, (row_names, row_colours) in enumerate(rows)]
    parts.append(f'<rect x="{left}" y="{top}" width="{size}" height="{size}" fill="none" class="frame"/>')
    for c in colours[::-1]:  # grey under the named groups
        if c in paths:
            parts.append(f'<path d="{"".join(paths[c])}" stroke="{c}" stroke-width="4" stroke-linecap="round" '
                         'stroke-opacity="0.7"/>')
    for x, y, text in labels:
        parts.append(_text(left + x * size, top + (1 - y) * size + 4, text, "middle", "maplabel"))
    return _svg(width, top + size + 6, title, "".join(parts))


def _legend_rows(names: Sequence[str], colors: Sequence[str], width: int) -> list[tuple[list[str], list[str]]]:
    """Legend entries wrapped into rows that fit the width (as _legend lays them out)."""
    rows: list[tuple[list[str], list[str]]] = [([], [])]
    used = 0
    for name, color in zip(names, colors, strict=False):
        w = 24 + 7 * len(truncate(name, 24))
        if rows[-1][0] and used + w > width:
            rows.append(([], []))
            used = 0
        rows[-1][0].append(name)
        rows[-1][1].append(color)
        used += w
    return rows


# ---------------------------------------------------------------- page

CSS = """
:root { --fg: #1d232b; --muted: #5b6673; --line: #d9dee4; --bg: #ffffff; --panel: #f5f7f9; --accent: #0072B2;
  --ok: #1a7f37; --bad: #c62828; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: var(--bg); line-height: 1.45;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header.top { border-bottom: 1px solid var(--line); background: var(--panel); }
header.top .inner { max-width: 1320px; margin: 0 auto; padding: 14px 24px; }
header.top h1 { font-size: 20px; margin: 0 0 2px; }
header.top .sub { color: var(--muted); }
.layout { max-width: 1320px; margin: 0 auto; padding: 0 24px; display: grid;
  grid-template-columns: 210px minmax(0, 1fr); gap: 28px; }
nav.toc { position: sticky; top: 0; align-self: start; max-height: 100vh; overflow-y: auto; padding: 18px 0; }
nav.toc ol { list-style: none; margin: 0; padding: 0; }
nav.toc a { display: block; padding: 4px 8px; border-radius: 4px; color: var(--fg); text-decoration: none; }
nav.toc a:hover { background: var(--panel); color: var(--accent); }
main { min-width: 0; padding-bottom: 30vh; }
section.rs { padding-top: 8px; border-bottom: 1px solid var(--line); padding-bottom: 18px; }
section.rs > h2 { font-size: 18px; margin: 18px 0 10px; scroll-margin-top: 10px; }
h3 { font-size: 15px; margin: 16px 0 8px; }
h4 { font-size: 13px; margin: 12px 0 6px; color: var(--muted); }
p.note { color: var(--muted); margin: 6px 0; }
.kpis { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 10px; margin: 8px 0 14px; }
.kpi { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; }
.kpi-label { color: var(--muted); font-size: 12px; }
.kpi-value { font-size: 18px; font-weight: 600; font-variant-numeric: tabular-nums; }
.kpi-note { color: var(--muted); font-size: 12px; }
.tablewrap { overflow-x: auto; margin: 6px 0 12px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
caption { text-align: left; color: var(--muted); padding: 4px 0; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--panel); font-weight: 600; vertical-align: bottom; }
th.num, td.num { text-align: right; }
td.num { white-space: nowrap; }
tfoot td { font-weight: 600; border-top: 2px solid var(--line); }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th:hover { color: var(--accent); }
table.sortable th::after { content: " \\2195"; color: #b0b8c1; font-weight: 400; }
table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; color: var(--accent); }
table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; color: var(--accent); }
td.snip { min-width: 340px; max-width: 600px; }
td.wrap { max-width: 260px; overflow-wrap: anywhere; }
pre.snippet { margin: 0; white-space: pre-wrap; word-break: break-word; font: 12px/1.4 ui-monospace,
  SFMono-Regular, Menlo, Consolas, monospace; background: var(--panel); padding: 4px 6px; border-radius: 4px;
  max-height: 9.5em; overflow: auto; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 12px; font-weight: 600; }
.badge.ok { background: #e6f4ea; color: var(--ok); }
.badge.bad { background: #fdecea; color: var(--bad); }
.warn { background: #fff4e5; border: 1px solid #f0c36d; border-radius: 6px; padding: 8px 12px; margin: 8px 0; }
.error { background: #fdecea; border: 1px solid #e0a1a1; border-radius: 6px; padding: 8px 12px; }
.charts { display: flex; flex-wrap: wrap; gap: 12px 18px; margin: 8px 0; }
.pair { display: grid; grid-template-columns: auto auto; gap: 0 6px; border: 1px solid var(--line);
  border-radius: 6px; padding: 6px; }
.pair > h4 { grid-column: 1 / -1; margin: 0 0 2px; }
svg.chart { max-width: 100%; height: auto; font-size: 12px; fill: var(--fg); }
svg.chart .val, svg.chart .tick { fill: var(--muted); font-size: 11px; }
svg.chart .small { font-size: 9px; }
svg.chart .ctitle { font-weight: 600; }
svg.chart .group { font-weight: 600; fill: var(--muted); }
svg.chart .axis-label { fill: var(--muted); font-size: 11px; }
svg.chart line.axis { stroke: #9aa4ae; stroke-width: 1; }
svg.chart .frame { stroke: var(--line); }
svg.chart .maplabel { font-weight: 700; font-size: 13px; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
details.examples { margin: 4px 0 12px; }
details.examples > summary { cursor: pointer; color: var(--accent); }
@media print { nav.toc { display: none; } .layout { display: block; } }
"""

# Sort on header click (Enter/Space too). Footer rows (totals) are in <tfoot> and stay in place.
SCRIPT = """
(function () {
  "use strict";
  function key(cell, num) {
    var v = cell ? cell.getAttribute("data-v") : null;
    if (v === null) { v = cell ? cell.textContent.trim() : ""; }
    if (num) { var f = parseFloat(v); return isNaN(f) ? -Infinity : f; }
    return v.toLowerCase();
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    if (!table.tHead || !table.tBodies.length) { return; }
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.tabIndex = 0;
      function sort() {
        var num = th.classList.contains("num");
        var cur = th.getAttribute("aria-sort");
        var asc = cur ? cur !== "ascending" : !num;  // numbers: largest first on the first click
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[col], num), y = key(b.cells[col], num);
          return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); }
      });
    });
  });
})();
"""


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def page(title: str, subtitle: str, nav: Sequence[tuple[str, str]], body: str) -> str:
    """The whole document. The CSP lets only this exact script run and forbids every fetch: even if some
    data escaped escaping, it could neither execute nor phone home."""
    csp = (f"default-src 'none'; script-src {_csp_hash(SCRIPT)}; style-src 'unsafe-inline'; img-src data:; "
           "base-uri 'none'; form-action 'none'")
    links = "".join(f'<li><a href="#{esc(key)}">{esc(name)}</a></li>' for key, name in nav)
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f'<header class="top"><div class="inner"><h1>{esc(title)}</h1><div class="sub">{esc(subtitle)}</div>'
        "</div></header>"
        f'<div class="layout"><nav class="toc" aria-label="Sections"><ol>{links}</ol></nav>'
        f"<main>{body}</main></div><script>{SCRIPT}</script></body></html>\n"
    )
