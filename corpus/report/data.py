"""Gather the report's figures from an output folder: the run catalog (through corpus.stats), example
rows from rejected/ and quarantine/, and the profiles the `profile` operator wrote into work/.

`ReportContext` is what every section receives. The catalog figures are read once up front (they are
small); examples are read lazily, only if a section asks for them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb

from corpus.catalog import Catalog
from corpus.integrity import problem
from corpus.manifest import read_manifest
from corpus.operators import StageView
from corpus.quarantine import raw_blocks
from corpus.schema import CORE_COLUMNS, REJECT_REASON, REJECT_STAGE
from corpus.stats import READ_STAGE, count_by_source, emptied_stages, funnel_rows
from corpus.work import stage_dir as stage_folder
from corpus.work import whole_stage_done

log = logging.getLogger(__name__)

EXAMPLES_PER_REASON = 3
SNIPPET_CHARS = 300
RAW_PREVIEW_BYTES = 240


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    status: str
    started: str | None
    finished: str | None
    error: str | None
    workers: int | None
    config: dict


@dataclass(frozen=True)
class Profile:
    """One profile.json; `stage` is its work folder name (e.g. `01-profile-3fa2...`)."""

    idx: int
    stage: str
    path: Path
    data: dict

    @property
    def label(self) -> str:
        return str(self.data.get("label") or self.stage)

    @property
    def overall(self) -> dict:
        o = self.data.get("overall")
        return o if isinstance(o, dict) else {}

    @property
    def by_source(self) -> dict[str, dict]:
        return {k: v for k, v in (self.data.get("by_source") or {}).items() if isinstance(v, dict)}


@dataclass
class ReportContext:
    """Everything a section may use. Figures come from the catalog of `run_id`; rejected/, quarantine/
    and work/ hold the files of the latest run (`examples_current` tells whether that is this one)."""

    out: Path
    run: RunInfo
    stages: list[dict]  # idx, stage, kind, params, units
    funnel: list[dict]  # per stage and source: stage, source, docs_in/out, bytes_in/out, seconds
    drops: list[dict]  # stage_idx, stage, source, reason, docs
    quarantine: list[dict]  # source, kind, docs
    balance: list[dict]  # source, input (records + blank lines), kept (originals), rejected, quarantined, blank,
    #                      copies (sampling's, kept beside the originals), ok
    manifest: dict | None
    profiles: list[Profile]
    examples_current: bool
    example_units: dict[str, list[str]] = field(default_factory=dict)  # stage -> shards worth reading
    warnings: list[str] = field(default_factory=list)
    counters: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # stage -> source -> counter
    damaged: frozenset[str] = frozenset()  # rejected/quarantine files unlike the manifest: no examples read
    reached: frozenset[str] | None = None  # stages the run got to (None: all); the others' artifacts are not its own

    # ------------------------------------------------------------ derived figures

    @property
    def sources(self) -> list[str]:
        return sorted({r["source"] for r in self.funnel} | {b["source"] for b in self.balance})

    @property
    def stage_labels(self) -> list[str]:
        """Stages in pipeline order, the read stage first; only those with recorded work."""
        seen = {r["stage"] for r in self.funnel}
        ordered = [s["stage"] for s in self.stages if s["stage"] in seen]
        return ordered + sorted(seen - set(ordered))

    @property
    def pipeline(self) -> list[str]:
        """Every stage in pipeline order, the read stage first: sinks (a profile) too, which pass documents
        on without funnel rows of their own."""
        ordered = [s["stage"] for s in sorted(self.stages, key=lambda s: s["idx"])]
        return ordered + [s for s in self.stage_labels if s not in ordered]

    def stage_totals(self) -> list[dict]:
        """Per stage, summed over sources: docs/bytes in and out, dropped docs."""
        totals: dict[str, dict] = {}
        for r in self.funnel:
            t = totals.setdefault(r["stage"], {"stage": r["stage"], "docs_in": 0, "docs_out": 0, "bytes_in": 0,
                                               "bytes_out": 0, "seconds": 0.0})
            for k in ("docs_in", "docs_out", "bytes_in", "bytes_out"):
                t[k] += int(r[k] or 0)
            t["seconds"] += float(r["seconds"] or 0)
        return [totals[s] for s in self.stage_labels]

    def stage_views(self) -> list[tuple[str, StageView]]:
        """(operator name, view) of every stage of the run after reading, in pipeline order: what an
        operator's own report section gets (its artifacts folder, never another stage's)."""
        out = []
        for s in self.stages:
            if s["idx"] == 0 or (self.reached is not None and s["stage"] not in self.reached):
                continue
            name = s["stage"].split("-", 1)[1]
            folder = stage_folder(self.out / "work", s["idx"], name, s["key"] or "")
            drops: dict[str, dict[str, int]] = {}
            for d in self.drops:
                if d["stage"] == s["stage"]:
                    drops.setdefault(d["reason"], {})[d["source"]] = d["docs"]
            examples = ({r: rows for (st, r), rows in self.rejected_examples.items() if st == s["stage"]}
                        if drops else {})
            out.append((name, StageView(s["stage"], s["params"] or {}, folder / "artifacts",
                                        self.counters.get(s["stage"], {}), drops, examples)))
        return out

    @property
    def copies(self) -> dict[str, int]:
        """Per source, the copies up-sampling (`sample`) put beside the originals in the output. A finished
        run counted them on disk (balance); a failed one has no balance, so they come from the funnel: what
        each stage passed on beyond what it received and kept (out - in + rejected). Without this, a failed
        run that up-samples counted its copies as kept originals (kept > input)."""
        if self.balance:
            return {b["source"]: b["copies"] for b in self.balance if b["copies"]}
        gone = self.dropped_copies  # made, then dropped by a later stage: not beside the originals any more
        rejected: dict[tuple[str, str], int] = {}
        for d in self.drops:
            rejected[(d["stage"], d["source"])] = rejected.get((d["stage"], d["source"]), 0) + d["docs"]
        made: dict[str, int] = {}
        for r in self.funnel:
            if r["stage"] == READ_STAGE:
                continue
            n = int(r["docs_out"] or 0) - int(r["docs_in"] or 0) + rejected.get((r["stage"], r["source"]), 0)
            if n > 0:
                made[r["source"]] = made.get(r["source"], 0) + n
        left = {s: n - gone.get(s, 0) for s, n in made.items()}
        return {s: n for s, n in left.items() if n > 0}

    @property
    def dropped_copies(self) -> dict[str, int]:
        """Per source, sampling's copies that a later stage dropped (exact_dedup after up-sampling). The drops
        table counts every rejected row, copies too; the balance counts only originals (rows without
        copy_of_row) as rejected, so the difference is the copies. A failed run has no balance: its stages'
        rejected rows in work/ are counted instead."""
        if not self.balance:
            return self._rejected_copies_on_disk
        dropped: dict[str, int] = {}
        for d in self.drops:
            dropped[d["source"]] = dropped.get(d["source"], 0) + d["docs"]
        out = {b["source"]: dropped.get(b["source"], 0) - b["rejected"] for b in self.balance}
        return {s: n for s, n in out.items() if n > 0}

    def rejected_records(self) -> dict[str, int]:
        """Per source, the input records an operator rejected: the balance's count (originals only) for a
        finished run, else every drop (a failed run has no balance to tell copies apart)."""
        if self.balance:
            return {b["source"]: b["rejected"] for b in self.balance}
        rejected: dict[str, int] = {}
        for d in self.drops:
            rejected[d["source"]] = rejected.get(d["source"], 0) + d["docs"]
        copies = self.dropped_copies
        return {s: n - copies.get(s, 0) for s, n in rejected.items()}

    @cached_property
    def _rejected_copies_on_disk(self) -> dict[str, int]:
        """Per source, the rows with copy_of_row in the rejected/ files of the stages the run reached (work/)."""
        files = []
        for s in self.stages:
            if s["idx"] == 0 or (self.reached is not None and s["stage"] not in self.reached):
                continue
            folder = stage_folder(self.out / "work", s["idx"], s["stage"].split("-", 1)[-1], s["key"] or "")
            files += sorted((folder / "rejected").glob("*.parquet"))
        out: dict[str, int] = {}
        for f in files:  # one at a time: a damaged file is passed over, the others still counted
            try:
                rows = count_by_source([f], copies=True)
            except duckdb.Error as exc:  # a damaged file: its copies are not told apart, as before
                log.warning("report: cannot read %s: %s", f, exc)
                continue
            for src, n in rows.items():
                out[src] = out.get(src, 0) + n
        return out

    def funnel_row(self, stage: str, source: str) -> dict | None:
        for r in self.funnel:
            if r["stage"] == stage and r["source"] == source:
                return r
        return None

    @property
    def final_stage(self) -> str | None:
        labels = self.stage_labels
        return labels[-1] if labels else None

    # ------------------------------------------------------------ examples (read lazily)

    @cached_property
    def rejected_examples(self) -> dict[tuple[str, str], list[dict]]:
        """(stage label, reason) -> up to EXAMPLES_PER_REASON example rows."""
        return read_rejected_examples(self.out, self.example_units or None, skip=self.damaged)

    @cached_property
    def quarantine_examples(self) -> dict[str, list[dict]]:
        """error kind -> up to EXAMPLES_PER_REASON quarantined records."""
        return read_quarantine_examples(self.out, skip=self.damaged)


# ---------------------------------------------------------------- gathering


def gather(out: Path, run_id: str | None = None) -> ReportContext:
    out = Path(out)
    cat = Catalog(out / "catalog.duckdb", create=False)
    with cat.session():  # one connection for all the report's queries
        return _gather(out, run_id, cat)


def _gather(out: Path, run_id: str | None, cat: Catalog) -> ReportContext:
    run_id, funnel, quarantine, balance, shown = funnel_rows(out, run_id, cat)
    runs = cat.query("SELECT run_id, status, started, finished, error, workers, config FROM runs WHERE run_id = ?",
                     [run_id])
    if not runs:
        raise FileNotFoundError(f"{out}: no run {run_id!r} in the catalog")
    rid, _, started, finished, error, workers, config = runs[0]
    # "stopped", not "running", for a run whose process is gone: as `corpus status` says (funnel_rows' status)
    run = RunInfo(rid, shown[0][0], _ts(started), _ts(finished), error, workers, _json(config))
    stages = [{"idx": i, "stage": s, "kind": k, "key": key, "params": _json(p), "units": u}
              for i, s, k, key, p, u in cat.query(
        "SELECT stage_idx, stage, kind, key, params, units FROM stages WHERE run_id = ? ORDER BY stage_idx", [run_id])]
    # stats.funnel_rows gives drop reasons as display strings; the report needs the numbers per stage.
    drops = [{"stage_idx": i, "stage": s, "source": src, "reason": r, "docs": int(n)} for i, s, src, r, n in cat.query(
        """SELECT stage_idx, stage, source, reason, sum(docs) FROM drops WHERE run_id = ?
           GROUP BY ALL ORDER BY stage_idx, source, reason""", [run_id])]
    # Examples come from a few shards known (from the catalog) to hold each reason: reading every rejected
    # row of a large run to show three of them would cost minutes at the end of each run.
    example_units: dict[str, list[str]] = {}
    for stage, unit in cat.query(
            """SELECT stage, unit FROM (
                 SELECT stage, reason, source, unit,
                        row_number() OVER (PARTITION BY stage, reason, source ORDER BY unit) AS k
                 FROM drops WHERE run_id = ? AND docs > 0)
               QUALIFY row_number() OVER (PARTITION BY stage, reason ORDER BY k, source) <= ?
               ORDER BY stage, unit""", [run_id, EXAMPLES_PER_REASON]):
        if unit not in example_units.setdefault(stage, []):
            example_units[stage].append(unit)
    counters: dict[str, dict[str, dict[str, int]]] = {}
    for stage, source, counter, total in cat.query(
            "SELECT stage, source, counter, sum(value) FROM stage_counters WHERE run_id = ? GROUP BY ALL ORDER BY ALL",
            [run_id]):
        counters.setdefault(stage, {}).setdefault(source, {})[counter] = int(total)
    latest = cat.latest_run()
    reached = _reached(out, cat, run, stages, latest == run_id)
    try:
        manifest = read_manifest(out)
    except (FileNotFoundError, json.JSONDecodeError):
        manifest = None
    warnings: list[str] = []
    if latest != run_id:
        warnings.append(f"this report is for run {run_id}, not the latest ({latest}): the example documents, "
                        "profiles and stage sections come from the files on disk, which belong to the latest run")
    if len(reached) < len(stages):
        left = [s["stage"] for s in stages if s["stage"] not in reached]
        warnings.append(f"run {run_id} ({run.status}) did not reach {', '.join(left)}: "
                        f"{'its' if len(left) == 1 else 'their'} sections are left out")
    warnings += emptied_stages(funnel)
    profiles = find_profiles(out, [s for s in stages if s["stage"] in reached], warnings)
    damaged = damaged_files(out, manifest, warnings)
    if manifest is not None and manifest.get("run_id") != run_id:  # data/ holds another run's corpus
        if latest == run_id:
            warnings.append(f"run {run_id} published nothing ({run.status}): data/ still holds the corpus of run "
                            f"{manifest.get('run_id')}")
        manifest = None
    return ReportContext(
        out=out,
        run=run,
        stages=stages,
        reached=reached,
        funnel=[{k: r[k] for k in ("stage", "source", "docs_in", "docs_out", "bytes_in", "bytes_out", "seconds")}
                for r in funnel],
        drops=drops,
        quarantine=[{"source": s, "kind": k, "docs": int(n)} for s, k, n in quarantine],
        balance=[{"source": s, "input": i, "kept": k, "rejected": r, "quarantined": q, "blank": int(b or 0),
                  "copies": int(c or 0), "ok": bool(ok)} for s, i, k, r, q, ok, b, c in balance],
        manifest=manifest,
        profiles=profiles,
        examples_current=latest == run_id,
        example_units=example_units,
        warnings=warnings,
        counters=counters,
        damaged=damaged,
    )


def _reached(out: Path, cat: Catalog, run: RunInfo, stages: list[dict], latest: bool) -> frozenset[str]:
    """The stages a run got to. A finished run got to all; one that stopped, failed or is still running,
    to each stage up to the last one it recorded work for, and (the latest run, whose files are on disk)
    each whole-corpus stage whose done marker is there. The others never ran in this run, so what their
    folders hold (an earlier or a later run's clusters, profile...) is not this run's."""
    if run.status == "ok":
        return frozenset(s["stage"] for s in stages)
    last = max((int(i) for (i,) in cat.query(
        """SELECT stage_idx FROM unit_stats WHERE run_id = ? UNION SELECT stage_idx FROM stage_figures WHERE run_id = ?
           UNION SELECT stage_idx FROM drops WHERE run_id = ? UNION SELECT stage_idx FROM stage_counters
           WHERE run_id = ?""", [run.run_id] * 4)), default=-1)

    def done(s: dict) -> bool:  # a sink records no work of its own: its marker tells (written when it ends)
        folder = stage_folder(out / "work", s["idx"], s["stage"].split("-", 1)[-1], s["key"] or "")
        return s["idx"] > 0 and whole_stage_done(folder, s["key"] or "")

    return frozenset(s["stage"] for s in stages if s["idx"] <= last or (latest and done(s)))


def damaged_files(out: Path, manifest: dict | None, warnings: list[str] | None = None) -> frozenset[str]:
    """The rejected and quarantine files that differ from the manifest (sizes; a hash where the mtime
    moved): their examples are left out, each named in a warning, rather than DuckDB's error on the lot."""
    bad = set()
    for key in ("rejected", "quarantine"):
        for entry in (manifest or {}).get(key, []):
            path = out / entry["path"]
            why = problem(path, entry, full=False) if path.exists() else "missing"
            if why:
                bad.add(str(path))
                _warn(warnings, f"{entry['path']}: {why}; its examples are left out (`corpus verify {out}` lists "
                                "every problem)")
    return frozenset(bad)


def profile_format() -> str:
    """The profile.json format this report reads: the one the profile operator writes (imported only when
    a run has a profile stage; the profiling package is heavy)."""
    from corpus.stages.profile.constants import FORMAT

    return FORMAT


def find_profiles(out: Path, stages: list[dict], warnings: list[str] | None = None) -> list[Profile]:
    """The profile.json of each `profile` stage of the run (its artifacts folder, found from the
    catalog's stages like every stage's view), in pipeline order."""
    found = []
    for s in stages:
        name = s["stage"].split("-", 1)[1] if "-" in s["stage"] else ""
        if s["idx"] == 0 or name != "profile":
            continue
        folder = stage_folder(out / "work", s["idx"], name, s["key"] or "")
        path = folder / "artifacts" / "profile.json"
        if not path.exists():
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            _warn(warnings, f"{path.relative_to(out)}: unreadable profile ({exc}); skipped")
            continue
        got = data.get("format") if isinstance(data, dict) else None
        if got != profile_format():  # another version's fields differ (a /1 has no features): never half-read
            _warn(warnings, f"{path.relative_to(out)}: profile format {got!r}, not {profile_format()!r} (the one "
                            "this report reads); skipped")
            continue
        found.append(Profile(int(s["idx"]), folder.name, path, data))
    return found


def read_rejected_examples(out: Path, units: dict[str, list[str]] | None = None, per_reason: int = EXAMPLES_PER_REASON,
                           chars: int = SNIPPET_CHARS, skip: frozenset[str] = frozenset()
                           ) -> dict[tuple[str, str], list[dict]]:
    """Example rows per (stage, reason) from rejected/<stage>/; only the shards in `units` when given, none
    of the files in `skip`."""
    result: dict[tuple[str, str], list[dict]] = {}
    root = out / "rejected"
    for stage_dir in sorted(root.iterdir()) if root.exists() else []:
        if units is None:
            files = sorted(str(p) for p in stage_dir.glob("*.parquet"))
        else:
            files = [str(p) for u in units.get(stage_dir.name, []) if (p := stage_dir / f"{u}.parquet").exists()]
        files = [f for f in files if f not in skip]
        if not files:
            continue
        con = duckdb.connect()
        try:
            cols = [c for c, *_ in con.execute("DESCRIBE SELECT * FROM read_parquet(?, union_by_name = true)",
                                               [files]).fetchall()]
            # Operators' score columns (n_words, duplicate_of, ...) explain a drop: keep them.
            extra = [c for c in cols if c not in CORE_COLUMNS and c not in (REJECT_STAGE, REJECT_REASON)]
            select_extra = "".join(f", {_ident(c)}" for c in extra)
            # Cut the text before the window, so only snippets are held; pick round-robin over sources so
            # one big source doesn't supply every example.
            rows = con.execute(
                f"""SELECT {REJECT_REASON}, id, source, src_file, src_row, snip, n_chars, meta{select_extra}
                    FROM (SELECT *, row_number() OVER (PARTITION BY {REJECT_REASON}, source
                                                       ORDER BY src_file, src_row, id) AS k
                          FROM (SELECT * EXCLUDE (text), left(text, ?) AS snip, length(text) AS n_chars
                                FROM read_parquet(?, union_by_name = true)))
                    QUALIFY row_number() OVER (PARTITION BY {REJECT_REASON} ORDER BY k, source) <= ?
                    ORDER BY {REJECT_REASON}, k, source""",
                [chars, files, per_reason]).fetchall()
        except duckdb.Error as exc:
            log.warning("report: cannot read examples from %s: %s", stage_dir, exc)
            continue
        finally:
            con.close()
        for reason, doc_id, source, src_file, src_row, snip, n_chars, meta, *vals in rows:
            scores = {c: _scalar(v) for c, v in zip(extra, vals, strict=True) if v is not None}
            result.setdefault((stage_dir.name, str(reason)), []).append({
                "id": doc_id, "source": source, "file": src_file, "row": src_row, "chars": n_chars,
                "snippet": _clip(snip, n_chars, chars), "meta": _clip(meta, len(meta or ""), 200), "scores": scores,
            })
    return result


def read_quarantine_examples(out: Path, per_kind: int = EXAMPLES_PER_REASON, preview: int = RAW_PREVIEW_BYTES,
                             skip: frozenset[str] = frozenset()) -> dict[str, list[dict]]:
    qdir = out / "quarantine"
    files = sorted(str(p) for p in qdir.glob("*.parquet") if str(p) not in skip)
    if not files:
        return {}
    con = duckdb.connect()
    try:
        rows = con.execute(
            """SELECT kind, source, file, line, error, raw_head, raw_bytes, raw_file
               FROM (SELECT kind, source, file, line, error, raw[1:?] AS raw_head, raw_bytes, raw_file
                     FROM read_parquet(?, union_by_name = true))
               QUALIFY row_number() OVER (PARTITION BY kind ORDER BY source, file, line) <= ?
               ORDER BY kind, source, file, line""",
            [preview, files, per_kind]).fetchall()
    except duckdb.Error as exc:
        log.warning("report: cannot read quarantine examples: %s", exc)
        return {}
    finally:
        con.close()
    result: dict[str, list[dict]] = {}
    for kind, source, file, line, error, head, nbytes, raw_file in rows:
        if raw_file:  # the record's bytes are in a side file: its first block is enough
            row = {"file": file, "line": line, "raw_file": raw_file}
            try:
                head = next(raw_blocks(qdir, row), b"")[:preview]
            except ValueError as exc:
                log.warning("report: %s", exc)
        result.setdefault(str(kind), []).append({
            "source": source, "file": file, "line": line, "error": _clip(error, len(error or ""), 300),
            "raw_preview": raw_preview(bytes(head or b"")), "raw_bytes": nbytes,
            "raw_truncated": (nbytes or 0) > preview,
        })
    return result


def raw_preview(raw: bytes) -> str:
    """Bytes as readable text: valid UTF-8 as is, invalid bytes and control characters as \\xNN escapes
    (a NUL or a stray 0xff is the very thing a reader of the report needs to see)."""
    return "".join(_visible(c) for c in raw.decode("utf-8", errors="backslashreplace"))


def _visible(c: str) -> str:
    if c in "\n\t" or c.isprintable():
        return c
    return f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}"


# ---------------------------------------------------------------- helpers


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _clip(text: str | None, full_len: int | None, n: int) -> str:
    if text is None:
        return ""
    text = text[:n]
    return text + "…" if (full_len or 0) > n else text


def _scalar(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 4)
    if isinstance(v, int | bool) or v is None:
        return v
    return _clip(str(v), len(str(v)), 120)


def _json(s: str | None) -> dict:
    try:
        v = json.loads(s) if s else {}
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {"value": v}


def _ts(t: Any) -> str | None:
    return None if t is None else t.isoformat(sep=" ", timespec="seconds")


def _warn(warnings: list[str] | None, msg: str) -> None:
    log.warning("report: %s", msg)
    if warnings is not None:
        warnings.append(msg)
