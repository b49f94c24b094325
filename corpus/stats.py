"""What `corpus status` and `corpus stats` show, read from the run catalog."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
from rich.console import Console
from rich.table import Table

from corpus.catalog import Catalog
from corpus.lock import holder_alive
from corpus.schema import COPY_OF
from corpus.units import mb
from corpus.work import whole_stage_done

READ_STAGE = "00-read"
STOPPED = "stopped"  # a run the catalog calls running whose process is gone (shown_status)
SIZES = ("MB = 10^6 bytes. input: the files as stored (.gz/.zst count compressed); "
         "text: UTF-8 bytes of the documents' texts.")


def _catalog(out: Path) -> Catalog:
    return Catalog(Path(out) / "catalog.duckdb", create=False)


def shown_status(out: Path, cat: Catalog, run_id: str, status: str) -> str:
    """The status a run is shown with, the same in `corpus status`, `corpus stats` and the report: the
    catalog's, except that a run it still calls running is "stopped" once its process is gone (SIGKILL,
    OOM, a crash leave no one to record the end). It is gone when a later run has started in the folder
    (one run at a time holds it) or when the process that holds the folder's lock is dead."""
    if status != "running":
        return status
    later = cat.query("SELECT 1 FROM runs WHERE started > (SELECT started FROM runs WHERE run_id = ?) LIMIT 1",
                      [run_id])
    return STOPPED if later or holder_alive(out) is False else status


def status_rows(out: Path) -> tuple[tuple, list[tuple]]:
    """The latest run and, per stage, (idx, stage, kind, units, units done, docs in). Progress comes from
    the work markers, not the catalog: a running run buffers its counters and holds the catalog briefly."""
    cat = _catalog(out)
    with cat.session():
        run = cat.query("SELECT run_id, status, started, finished, error FROM runs ORDER BY started DESC LIMIT 1")
        if not run:
            raise FileNotFoundError(f"{out}: the catalog has no runs yet")
        stages = cat.query("SELECT stage_idx, stage, kind, key, units FROM stages WHERE run_id = ? ORDER BY stage_idx",
                           [run[0][0]])
        run[0] = (run[0][0], shown_status(out, cat, run[0][0], run[0][1]), *run[0][2:])
    rows = []
    passed = 0  # docs the stage before passed on (out of its finished units)
    for idx, stage, kind, key, units in stages:
        folder = Path(out) / "work" / ("00-read" if idx == 0 else f"{stage}-{key[:12]}")
        if kind == "sink":
            # A sink consumes the whole corpus at once and marks only its end (_done.json), passing every
            # document on: done, all of its units are, and its docs in are what the stage before passed on.
            finished = whole_stage_done(folder, key)
            rows.append((idx, stage, kind, units, units if finished else 0, passed if finished else 0))
            continue
        done = docs = passed = 0
        for marker in (folder / "done").glob("*.json"):
            try:
                m = json.loads(marker.read_bytes())
            except ValueError:
                continue
            done += 1
            docs += m["seen"] if idx == 0 else sum(v["docs"] for v in m["in"].values())
            passed += m["docs"] if idx == 0 else sum(v["docs"] for v in m["out"].values())
        rows.append((idx, stage, kind, units, done, docs))
    return run[0], rows


def funnel_rows(out: Path, run_id: str | None = None, cat: Catalog | None = None
                ) -> tuple[str, list[dict], list[tuple], list[tuple], list[tuple]]:
    """Per stage and source: docs/bytes in and out and top drop reasons; quarantine by kind; balance."""
    cat = cat or _catalog(out)
    latest = cat.latest_run()
    if latest is None:
        dry = cat.query("SELECT count(*) FROM runs")[0][0]  # latest_run passes over dry runs
        only = "a dry run, which publishes" if dry == 1 else f"{dry} dry runs, which publish"
        raise FileNotFoundError(f"{out}: the catalog has no runs yet" + (
            f" (only {only} nothing: `corpus run CONFIG` makes the corpus)" if dry else ""))
    if run_id is not None and not cat.query("SELECT 1 FROM runs WHERE run_id = ?", [run_id]):
        # An empty funnel "of run nope (?)" read like a run that did nothing.
        known = [r for (r,) in cat.query("SELECT run_id FROM runs ORDER BY started DESC LIMIT 5")]
        raise FileNotFoundError(f"{out}: no run {run_id!r} in the catalog; the latest: {', '.join(known)}")
    run_id = run_id or latest
    rows = cat.query(
        """SELECT stage_idx, stage, source, sum(docs_in), sum(docs_out), sum(bytes_in), sum(bytes_out), sum(seconds)
           FROM unit_stats WHERE run_id = ? GROUP BY ALL ORDER BY stage_idx, source""",
        [run_id],
    )
    drops = cat.query(
        """SELECT stage_idx, source, reason, sum(docs) AS n FROM drops WHERE run_id = ?
           GROUP BY ALL ORDER BY stage_idx, source, n DESC, reason""",  # ties: the same order every time
        [run_id],
    )
    reasons: dict[tuple, list[str]] = {}
    for idx, src, reason, n in drops:
        reasons.setdefault((idx, src), []).append(f"{reason}: {n:,}")
    funnel = [
        {"stage": st, "source": src, "docs_in": di, "docs_out": do, "bytes_in": bi, "bytes_out": bo,
         "seconds": sec, "drops": reasons.get((idx, src), [])}
        for idx, st, src, di, do, bi, bo, sec in rows
    ]
    quarantine = cat.query(
        "SELECT source, kind, sum(docs) FROM quarantine WHERE run_id = ? GROUP BY ALL ORDER BY source, kind", [run_id])
    # Catalogs written before blank lines and copies were counted lack those columns (read-only here: no ALTER).
    has = {c for (c,) in cat.query("SELECT column_name FROM information_schema.columns WHERE table_name = 'balance'")}
    balance = cat.query(
        f"SELECT source, input, kept, rejected, quarantined, ok, {'blank' if 'blank' in has else '0'}, "
        f"{'coalesce(copies, 0)' if 'copies' in has else '0'} FROM balance WHERE run_id = ? ORDER BY source", [run_id])
    runs = [(shown_status(out, cat, run_id, status), error)
            for status, error in cat.query("SELECT status, error FROM runs WHERE run_id = ?", [run_id])]
    return run_id, funnel, quarantine, balance, runs


def emptied_stages(funnel: list[dict]) -> list[str]:
    """A line for each stage (after reading) that received documents and passed none on (``funnel``: the
    rows of funnel_rows): almost always a parameter that does not fit the data, such as a language code in
    the wrong case or an HTML extractor given plain text."""
    totals: dict[str, list] = {}
    for r in funnel:
        if r["stage"] == READ_STAGE:
            continue
        t = totals.setdefault(r["stage"], [0, 0, 0, []])
        t[0] += r["docs_in"]
        t[1] += r["docs_out"]
        if r["docs_in"] > t[2]:  # the reasons of its largest source
            t[2], t[3] = r["docs_in"], r["drops"]
    return [f"{stage} passed on none of the {docs_in:,} documents it received"
            + (f" (e.g. {'; '.join(drops[:3])})" if drops else "") + ": check its parameters against the data"
            for stage, (docs_in, docs_out, _, drops) in totals.items() if docs_in and not docs_out]


def final_text_bytes(out: Path, run_id: str) -> int:
    """Text bytes (UTF-8) of the documents the run kept: the last stage's output, from the catalog."""
    cat = _catalog(out)
    with cat.session():
        rows = cat.query("SELECT sum(bytes_out) FROM unit_stats WHERE run_id = ? AND stage_idx = "
                         "(SELECT max(stage_idx) FROM unit_stats WHERE run_id = ?)", [run_id, run_id])
    return int(rows[0][0] or 0) if rows else 0


def print_status(out: Path, console: Console) -> None:
    (run_id, status, started, finished, error), stages = status_rows(out)
    if status == STOPPED:
        status = "stopped (its process is gone: killed or crashed; rerun the same command to resume)"
    console.print(f"run [bold]{run_id}[/] — {status}, started {started:%Y-%m-%d %H:%M:%S}"
                  + (f", finished {finished:%H:%M:%S}" if finished else ""))
    if error:
        console.print(f"[red]error:[/] {error}")
    t = Table("stage", "kind", "units done", "docs in")
    for _idx, stage, kind, units, done, docs in stages:
        t.add_row(stage, kind, f"{done}/{units}", f"{docs:,}")
    console.print(t)


def print_balance(balance: list[tuple], console: Console) -> None:
    copies = any(row[7] for row in balance)  # only runs that up-sample have copies to show
    t = Table("source", "input", "kept", "rejected", "quarantined", "blank lines", "adds up",
              *(["copies (beside)"] if copies else []),
              title="Nothing lost: input = kept + rejected + quarantined + blank lines",
              caption="kept: originals; sampling's copies are kept beside them" if copies else None,
              caption_justify="left")
    for src, inp, kept, rej, quar, ok, blank, n_copies in balance:
        t.add_row(src, f"{inp:,}", f"{kept:,}", f"{rej:,}", f"{quar:,}", f"{blank:,}",
                  "[green]yes[/]" if ok else "[red]NO[/]", *([f"{n_copies:,}"] if copies else []))
    console.print(t)


def print_stats(out: Path, console: Console, run_id: str | None = None) -> None:
    run_id, funnel, quarantine, balance, runs = funnel_rows(out, run_id)
    status = runs[0][0] if runs else "?"
    # The read stage meets the input files as stored; every stage after it, document texts.
    t = Table("stage", "source", "docs in", "docs out", "kept %", "input MB", "text MB in", "text MB out", "drops",
              title=f"Funnel of run {run_id} ({status})", caption=SIZES, caption_justify="left")
    for r in funnel:
        pct = 100.0 * r["docs_out"] / r["docs_in"] if r["docs_in"] else 0.0
        read = r["stage"] == READ_STAGE
        t.add_row(r["stage"], r["source"], f"{r['docs_in']:,}", f"{r['docs_out']:,}", f"{pct:.1f}",
                  mb(r["bytes_in"]) if read else "", "" if read else mb(r["bytes_in"]), mb(r["bytes_out"]),
                  "; ".join(r["drops"][:4]))
    console.print(t)
    if quarantine:
        q = Table("source", "error kind", "records", title="Quarantined records")
        for src, kind, n in quarantine:
            q.add_row(src, kind, f"{n:,}")
        console.print(q)
    if balance:
        print_balance(balance, console)


def count_by_source(files: list[Path], copies: bool = False) -> dict[str, int]:
    """Rows per source in these Parquet files: originals, or (copies=True) the copies upsampling made."""
    if not files:
        return {}
    rel = [str(f) for f in files]
    cols = [d[0] for d in duckdb.execute("SELECT * FROM read_parquet(?, union_by_name = true) LIMIT 0",
                                         [rel]).description]
    if COPY_OF not in cols:
        if copies:
            return {}
        where = ""
    else:
        where = f"WHERE {COPY_OF} IS {'NOT ' if copies else ''}NULL"
    rows = duckdb.execute(
        f"SELECT source, count(*) FROM read_parquet(?, union_by_name = true) {where} GROUP BY source", [rel]
    ).fetchall()
    return {s: int(n) for s, n in rows}
