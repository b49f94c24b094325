"""The section registry, and the built-in sections about the run: overview, sources, funnel, drop
reasons, quarantine. (Sections from profiles are in distributions.py.)

A section is a function of the `ReportContext` registered with `@section`:

    @section("funnel", title="Pipeline funnel", order=30)
    def funnel(ctx: ReportContext) -> Rendered | str | None:
        ...

It returns None when it does not apply (it is then left out of the page, the nav and report.json),
HTML, or `Rendered(html, figures)`: `figures` (JSON-able) go into report.json under the section's key.
Sections are laid out by `order`, then key. Orders in use: 10-50 run sections here, 60 (dedup clusters)
and 70 (validation) kept for those issues, 80-90 profile sections; plugins default to 100.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from corpus.registry import load_modules
from corpus.report.data import ReportContext
from corpus.report.html import (
    Cell,
    Col,
    badge,
    bytes_cell,
    esc,
    fmt_bytes,
    fmt_int,
    fmt_pct,
    hbar_chart,
    kpis,
    num_cell,
    pct_cell,
    snippet,
    stacked_hbar_chart,
    table,
)
from corpus.stats import READ_STAGE
from corpus.units import est_tokens, plural

log = logging.getLogger(__name__)

# Third-party packages add sections by declaring a module here; importing it registers them.
ENTRY_POINT_GROUP = "corpusforge.report_sections"
_KEY = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class Rendered:
    """A section's output: its HTML and the figures it showed (for report.json)."""

    html: str
    figures: Any = None


Renderer = Callable[[ReportContext], "Rendered | str | None"]


@dataclass(frozen=True)
class Section:
    key: str  # the HTML id and the report.json key
    title: str
    order: int
    render: Renderer


_SECTIONS: dict[str, Section] = {}
_plugins_loaded = False


def register(sec: Section, replace: bool = False) -> None:
    if not _KEY.match(sec.key):
        raise ValueError(f"section key {sec.key!r}: use lowercase letters, digits, '_' or '-'")
    old = _SECTIONS.get(sec.key)
    # Re-registering the same function (a module reloaded) is fine; two sections sharing a key is a bug.
    same = old is not None and (old.render.__module__, old.render.__qualname__) == (
        sec.render.__module__, sec.render.__qualname__)
    if old is not None and not (replace or same):
        raise ValueError(f"report section {sec.key!r} is already registered by {old.render.__module__}")
    _SECTIONS[sec.key] = sec


def section(key: str, *, title: str, order: int = 100, replace: bool = False) -> Callable[[Renderer], Renderer]:
    """Decorator: register `fn(ctx) -> Rendered | str | None` as report section `key`."""

    def deco(fn: Renderer) -> Renderer:
        register(Section(key, title, order, fn), replace=replace)
        return fn

    return deco


def unregister(key: str) -> None:
    _SECTIONS.pop(key, None)


def registered() -> list[Section]:
    _load_plugins()
    return sorted(_SECTIONS.values(), key=lambda s: (s.order, s.key))


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for target, exc in load_modules(ENTRY_POINT_GROUP):  # a broken plugin must not cost the whole report
        log.warning("report: cannot load section plugin %s: %s", target, exc)


# ---------------------------------------------------------------- helpers shared by the sections


def _read_totals(ctx: ReportContext) -> dict:
    for t in ctx.stage_totals():
        if t["stage"] == READ_STAGE:
            return t
    return {"stage": READ_STAGE, "docs_in": 0, "docs_out": 0, "bytes_in": 0, "bytes_out": 0, "seconds": 0.0}


def _final_totals(ctx: ReportContext) -> dict:
    totals = ctx.stage_totals()
    return totals[-1] if totals else _read_totals(ctx)


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def _loc(file: object, line: object) -> str:
    return f"{file}:{line}" if line is not None else str(file)


# ---------------------------------------------------------------- overview


@section("overview", title="Overview", order=10)
def overview(ctx: ReportContext) -> Rendered:
    read, final = _read_totals(ctx), _final_totals(ctx)
    # Input records only, as the balance counts them: sampling's copies a later stage dropped are no input.
    rejected = sum(ctx.rejected_records().values())
    copies_dropped = sum(ctx.dropped_copies.values())
    quarantined = sum(q["docs"] for q in ctx.quarantine)
    blank = sum(b["blank"] for b in ctx.balance)
    balanced = bool(ctx.balance) and all(b["ok"] for b in ctx.balance)
    m = ctx.manifest or {}
    figures = {
        "run": {"run_id": ctx.run.run_id, "status": ctx.run.status, "started": ctx.run.started,
                "finished": ctx.run.finished, "error": ctx.run.error, "workers": ctx.run.workers},
        "pipeline": ctx.pipeline,
        "sources": ctx.sources,
        "input": {"records": read["docs_in"], "docs": read["docs_out"], "bytes": read["bytes_out"],
                  "est_tokens": est_tokens(read["bytes_out"]), "file_bytes": read["bytes_in"]},
        "output": {"docs": final["docs_out"], "bytes": final["bytes_out"], "est_tokens": est_tokens(final["bytes_out"]),
                   "shards": len(m.get("shards", [])), "parquet_bytes": m.get("bytes"), "published": bool(m)},
        "rejected": rejected,
        "copies_dropped": copies_dropped,
        "quarantined": quarantined,
        "blank_lines": blank,
        "balance": ctx.balance,
        "balanced": balanced,
    }
    parts = [f'<div class="warn">{esc(w)}</div>' for w in ctx.warnings]
    if ctx.run.error:
        parts.append(f'<div class="error"><b>The run failed:</b> {esc(ctx.run.error)}</div>')
    records = read["docs_in"]
    copies = sum(ctx.copies.values())
    originals = final["docs_out"] - copies  # what is kept of the input records; copies come beside them
    kept_note = f"of {records:,} input records ({fmt_pct(_ratio(originals, records))})"
    if copies:
        kept_note = f"{originals:,} {kept_note} and {copies:,} copies from sampling"
    on_disk = f"{fmt_bytes(m.get('bytes'))} of Parquet on disk"
    if not m:  # a failed run: its last stage's output, never published
        kept_note += "; not published"
        on_disk = "nothing published"
    figures["output"]["copies"] = copies
    parts.append(kpis([
        ("Run status", ctx.run.status, f"finished {ctx.run.finished}" if ctx.run.finished else "not finished"),
        ("Documents kept", fmt_int(final["docs_out"]), kept_note),
        ("Text kept (UTF-8)", fmt_bytes(final["bytes_out"]),
         f"of {fmt_bytes(read['bytes_out'])} read; {on_disk}"),
        ("Est. tokens kept", fmt_int(est_tokens(final["bytes_out"])),
         f"of {fmt_int(est_tokens(read['bytes_out']))} read (text bytes / 4)"),
        ("Sources", fmt_int(len(ctx.sources)), ", ".join(ctx.sources)),
        ("Rejected", fmt_int(rejected), "input records dropped by an operator, with a reason"
         + (f"; and {copies_dropped:,} copies from sampling dropped" if copies_dropped else "")),
        ("Quarantined", fmt_int(quarantined), "could not be read as documents"),
        ("Nothing lost", "yes" if balanced else ("no" if ctx.balance else "not checked"),
         "input = kept + rejected + quarantined + blank lines"),
        ("Blank lines", fmt_int(blank), "skipped: not records"),
    ]))
    parts.append(_note(f"Run {ctx.run.run_id}, started {ctx.run.started}, workers: {ctx.run.workers}. Pipeline: "
                       + " → ".join(ctx.pipeline)
                       + f". Input files: {fmt_bytes(read['bytes_in'])} as stored (compressed files count "
                         "compressed); text sizes are UTF-8 bytes."))
    if ctx.balance:
        extra = ["copies"] if copies else []  # only runs that up-sample have copies to show
        cols = [Col("source"), Col("input", True), Col("kept", True), Col("rejected", True),
                Col("quarantined", True), Col("blank lines", True), Col("adds up"), *(Col(c, True) for c in extra)]
        rows = [[b["source"], b["input"], b["kept"], b["rejected"], b["quarantined"], b["blank"],
                 Cell("yes" if b["ok"] else "NO", markup=badge("yes" if b["ok"] else "NO", b["ok"])),
                 *(b[c] for c in extra)] for b in ctx.balance]
        foot = [["total"] + [sum(b[k] for b in ctx.balance)
                             for k in ("input", "kept", "rejected", "quarantined", "blank")]
                + [Cell(markup=badge("yes" if balanced else "NO", balanced))]
                + [sum(b[c] for b in ctx.balance) for c in extra]]
        caption = "Counted on disk at the end of the run"
        if copies:
            caption += "; kept counts originals, and sampling's copies are kept beside them"
        parts.append("<h3>Nothing lost: every input record is accounted for</h3>"
                     + table(cols, rows, foot, caption=caption))
    return Rendered("".join(parts), figures)


# ---------------------------------------------------------------- per source


@section("sources", title="Sources", order=20)
def sources(ctx: ReportContext) -> Rendered | None:
    if not ctx.sources:
        return None
    final = ctx.final_stage
    balance = {b["source"]: b for b in ctx.balance}
    rejected = ctx.rejected_records()  # input records: copies dropped are counted beside them
    copies_dropped = ctx.dropped_copies
    quarantined: dict[str, int] = {}
    for q in ctx.quarantine:
        quarantined[q["source"]] = quarantined.get(q["source"], 0) + q["docs"]
    copies = ctx.copies
    figures = []
    for src in ctx.sources:
        read = ctx.funnel_row(READ_STAGE, src) or {}
        last = (ctx.funnel_row(final, src) if final else None) or {}
        b = balance.get(src, {})
        figures.append({
            "source": src, "input": b.get("input", read.get("docs_in", 0)) - b.get("blank", 0),
            "quarantined": quarantined.get(src, 0), "rejected": rejected.get(src, 0),
            # originals, as the overview counts them: a failed run's last output holds sampling's copies too
            "kept": b.get("kept", last.get("docs_out", 0) - copies.get(src, 0)), "bytes_read": read.get("bytes_out", 0),
            "bytes_kept": last.get("bytes_out", 0), "est_tokens_kept": est_tokens(last.get("bytes_out", 0)),
            "copies_dropped": copies_dropped.get(src, 0),
        })
    total_tokens = est_tokens(sum(f["bytes_kept"] for f in figures))  # of the total, like the overview
    for f in figures:
        f["token_share"] = _ratio(f["est_tokens_kept"], total_tokens)
    extra = bool(copies_dropped)  # only runs that drop sampling's copies have them to show
    cols = [Col("source"), Col("input records", True), Col("quarantined", True), Col("rejected", True),
            Col("kept", True), Col("kept %", True), *([Col("copies dropped", True)] if extra else []),
            Col("text read", True), Col("text kept", True), Col("est. tokens kept", True),
            Col("share of tokens", True)]
    rows = [[f["source"], f["input"], f["quarantined"], f["rejected"], f["kept"],
             pct_cell(_ratio(f["kept"], f["input"])), *([f["copies_dropped"]] if extra else []),
             bytes_cell(f["bytes_read"]), bytes_cell(f["bytes_kept"]), f["est_tokens_kept"],
             pct_cell(f["token_share"])] for f in figures]
    tot = {k: sum(f[k] for f in figures) for k in ("input", "quarantined", "rejected", "kept", "bytes_read",
                                                    "bytes_kept", "copies_dropped")}
    foot = [["total", tot["input"], tot["quarantined"], tot["rejected"], tot["kept"],
             pct_cell(_ratio(tot["kept"], tot["input"])), *([tot["copies_dropped"]] if extra else []),
             bytes_cell(tot["bytes_read"]), bytes_cell(tot["bytes_kept"]), total_tokens,
             pct_cell(1.0 if total_tokens else None)]]
    chart = stacked_hbar_chart([(f["source"], [f["kept"], f["rejected"], f["quarantined"]]) for f in figures],
                               ["kept", "rejected", "quarantined"], "Input records per source, by outcome")
    return Rendered(f'<div class="charts">{chart}</div>' + table(cols, rows, foot), figures)


# ---------------------------------------------------------------- funnel


@section("funnel", title="Pipeline funnel", order=30)
def funnel(ctx: ReportContext) -> Rendered | None:
    totals = ctx.stage_totals()
    if not totals:
        return None
    kinds = {s["stage"]: s["kind"] for s in ctx.stages}
    rejected: dict[str, int] = {}
    for d in ctx.drops:
        rejected[d["stage"]] = rejected.get(d["stage"], 0) + d["docs"]
    figures = []
    for t in totals:
        by_source = {}
        for src in ctx.sources:
            r = ctx.funnel_row(t["stage"], src)
            if r:
                by_source[src] = {"docs_in": r["docs_in"], "docs_out": r["docs_out"], "bytes_in": r["bytes_in"],
                                  "bytes_out": r["bytes_out"], "est_tokens_out": est_tokens(r["bytes_out"])}
        # Read: the records not read as documents (quarantined). Later stages: the rows they rejected, and
        # beside them the copies a stage appended (sampling), so that out = in - dropped + copies.
        dropped = t["docs_in"] - t["docs_out"] if t["stage"] == READ_STAGE else rejected.get(t["stage"], 0)
        figures.append({**t, "kind": kinds.get(t["stage"]), "dropped": dropped,
                        "copies": t["docs_out"] - t["docs_in"] + dropped,
                        "kept_frac": _ratio(t["docs_out"], t["docs_in"]), "est_tokens_out": est_tokens(t["bytes_out"]),
                        "by_source": by_source})
    srcs = ctx.sources
    docs_chart = stacked_hbar_chart(
        [(f["stage"], [f["by_source"].get(s, {}).get("docs_out", 0) for s in srcs]) for f in figures], srcs,
        "Documents kept after each stage, by source")
    tok_chart = stacked_hbar_chart(
        [(f["stage"], [f["by_source"].get(s, {}).get("est_tokens_out", 0) for s in srcs]) for f in figures], srcs,
        "Estimated tokens kept after each stage, by source",
        totals=[f["est_tokens_out"] for f in figures])  # of the stage's total bytes, as the tables say
    copies = any(f["copies"] for f in figures)  # only runs that up-sample have copies to show
    cols = [Col("stage"), Col("kind"), Col("docs in", True), Col("docs out", True), Col("dropped", True),
            *([Col("copies", True)] if copies else []), Col("kept %", True), Col("text out", True),
            Col("est. tokens out", True), Col("unit seconds", True)]
    rows = [[f["stage"], f["kind"] or "", f["docs_in"], f["docs_out"], f["dropped"], *([f["copies"]] if copies else []),
             pct_cell(f["kept_frac"]), bytes_cell(f["bytes_out"]), f["est_tokens_out"], num_cell(f["seconds"])]
            for f in figures]
    reasons: dict[tuple[str, str], list[str]] = {}
    for d in sorted(ctx.drops, key=lambda d: -d["docs"]):
        reasons.setdefault((d["stage"], d["source"]), []).append(f"{d['reason']}: {d['docs']:,}")
    src_cols = [Col("stage"), Col("source"), Col("docs in", True), Col("docs out", True), Col("kept %", True),
                Col("text out", True), Col("est. tokens out", True), Col("drops")]
    src_rows = [[r["stage"], r["source"], r["docs_in"], r["docs_out"], pct_cell(_ratio(r["docs_out"], r["docs_in"])),
                 bytes_cell(r["bytes_out"]), est_tokens(r["bytes_out"]),
                 "; ".join(reasons.get((r["stage"], r["source"]), []))] for r in ctx.funnel]
    body = (f'<div class="charts">{docs_chart}{tok_chart}</div>'
            + _note(f"{READ_STAGE}: docs in = input records, docs out = records read as documents; its bytes in are "
                    "the input files as stored. Est. tokens = text bytes / 4. Unit seconds add up the time of every "
                    "unit of work, across workers.")
            + "<h3>Per stage</h3>" + table(cols, rows)
            + "<h3>Per stage and source</h3>" + table(src_cols, src_rows))
    return Rendered(body, figures)


# ---------------------------------------------------------------- drop reasons


@section("drops", title="Drop reasons", order=40)
def drops(ctx: ReportContext) -> Rendered | None:
    if not ctx.drops:
        return None
    groups: dict[tuple[int, str, str], dict[str, int]] = {}
    for d in ctx.drops:
        groups.setdefault((d["stage_idx"], d["stage"], d["reason"]), {})[d["source"]] = d["docs"]
    stage_in = {t["stage"]: t["docs_in"] for t in ctx.stage_totals()}
    figures = []
    for (_idx, stage, reason), by_src in sorted(groups.items()):
        n = sum(by_src.values())
        figures.append({"stage": stage, "reason": reason, "docs": n,
                        "frac_of_stage_input": _ratio(n, stage_in.get(stage, 0)), "by_source": by_src,
                        "examples": ctx.rejected_examples.get((stage, reason), [])})
    srcs = ctx.sources
    # The stage as a heading above its reasons: "stage · reason" labels were cut to the stage alone.
    chart = hbar_chart([(f["reason"], f["docs"]) for f in figures], "Dropped documents by reason", width=780,
                       label_w=330, groups=[f["stage"] for f in figures])
    cols = ([Col("stage"), Col("reason"), Col("docs", True), Col("% of stage input", True)]
            + [Col(s, True) for s in srcs])
    rows = [[f["stage"], f["reason"], f["docs"], pct_cell(f["frac_of_stage_input"])]
            + [f["by_source"].get(s, 0) for s in srcs] for f in figures]
    parts = [f'<div class="charts">{chart}</div>', table(cols, rows), "<h3>Examples</h3>"]
    if not ctx.examples_current:
        parts.append(_note("Examples are read from rejected/, which holds the latest run's rows."))
    for f in figures:
        parts.append(f'<details class="examples" open><summary>{esc(f["stage"])} · <b>{esc(f["reason"])}</b> — '
                     f'{plural(f["docs"], "doc")}</summary>{_doc_examples(f["examples"])}</details>')
    return Rendered("".join(parts), figures)


def _doc_examples(examples: list[dict]) -> str:
    if not examples:
        return _note("No example rows on disk for this reason.")
    cols = [Col("id", cls="wrap"), Col("source"), Col("file:row", cls="wrap"), Col("chars", True),
            Col("scores", cls="wrap"), Col("text", cls="snip")]
    rows = [[e["id"], e["source"], _loc(e["file"], e["row"]), e["chars"],
             Cell(markup="<br>".join(esc(f"{k}={v}") for k, v in e["scores"].items())),
             Cell(markup=snippet(e["snippet"]))]
            for e in examples]
    return table(cols, rows, sortable=False)


# ---------------------------------------------------------------- quarantine


@section("quarantine", title="Quarantine", order=50)
def quarantine(ctx: ReportContext) -> Rendered | None:
    if not ctx.quarantine:
        return None
    kinds: dict[str, dict[str, int]] = {}
    for q in ctx.quarantine:
        kinds.setdefault(q["kind"], {})[q["source"]] = kinds.get(q["kind"], {}).get(q["source"], 0) + q["docs"]
    figures = [{"kind": k, "records": sum(by.values()), "by_source": by, "examples": ctx.quarantine_examples.get(k, [])}
               for k, by in sorted(kinds.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))]
    srcs = sorted({q["source"] for q in ctx.quarantine})
    chart = hbar_chart([(f["kind"], f["records"]) for f in figures], "Quarantined records by error kind")
    cols = [Col("error kind"), Col("records", True)] + [Col(s, True) for s in srcs]
    rows = [[f["kind"], f["records"]] + [f["by_source"].get(s, 0) for s in srcs] for f in figures]
    parts = [f'<div class="charts">{chart}</div>',
             _note("Records the readers could not turn into documents. Their bytes are kept whole in "
                   "quarantine/ (over max_doc_bytes in quarantine/raw/); `corpus quarantine export` gives them back."),
             table(cols, rows), "<h3>Examples</h3>"]
    ex_cols = [Col("source"), Col("file:line", cls="wrap"), Col("error", cls="wrap"), Col("raw bytes", True),
               Col("raw (preview)", cls="snip")]
    for f in figures:
        rows = [[e["source"], _loc(e["file"], e["line"]), e["error"], e["raw_bytes"],
                 Cell(markup=snippet(e["raw_preview"] + ("…" if e["raw_truncated"] else "")))] for e in f["examples"]]
        body = table(ex_cols, rows, sortable=False) if rows else _note("No example records on disk for this kind.")
        parts.append(f'<details class="examples" open><summary><b>{esc(f["kind"])}</b> — '
                     f'{plural(f["records"], "record")}</summary>{body}</details>')
    return Rendered("".join(parts), figures)
