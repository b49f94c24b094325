"""The profile itself: the merged aggregates plus the spill's exact figures, as ``profile.json``."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl

from corpus.writers import write_bytes_atomic

from .aggregate import Acc, SourceAcc
from .constants import FEATURES, FORMAT, OTHER_SCRIPT, SCRIPTS
from .histograms import feature_summary, num
from .lines import line_texts, top_candidates, top_lines
from .meta import meta_types
from .neardup import Estimate, estimate
from .outliers import RULE, outliers
from .spill import distinct_texts, features, line_counts, text_fetch


def _section(acc: SourceAcc, sources: dict[str, int], has_lang: bool, distinct: int, near: Estimate,
             lines: list[dict], outl: dict[str, dict], quarantine: bool) -> dict:
    c = acc.counts
    letters = int(acc.scripts.sum())
    names = (*SCRIPTS, OTHER_SCRIPT)
    order = list(range(len(SCRIPTS) + 1))
    scripts = {names[i - 1] if i else OTHER_SCRIPT: num(acc.scripts[i] / letters)
               for i in order[1:] + [0] if letters and acc.scripts[i]}
    texts = c["docs"] - c["null_text"]
    meta = sorted(acc.meta.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    out = {
        **{k: int(c[k]) for k in ("docs", "bytes", "chars", "words", "lines", "est_tokens", "null_text",
                                   "empty_text")},
        "features": {f: feature_summary(acc, f) for f in FEATURES},
        "scripts": scripts,
        "encoding_error_docs": int(c["encoding_error_docs"]),
        "languages": (dict(sorted(acc.langs.items(), key=lambda kv: (-kv[1], kv[0]))) if has_lang else None),
        "sources": sources,
        "meta_fields": {k: {"present": int(sum(t.values())),
                            "types": dict(sorted(t.items(), key=lambda kv: (-kv[1], kv[0])))} for k, t in meta},
        "exact_dup_rate": num(1 - distinct / texts) if texts else None,
        **near.fields(),
        "top_lines": lines,
        "outlier_rule": RULE,
        "outliers": outl,
    }
    if quarantine:
        out["quarantined"] = dict(sorted(acc.quarantined.items()))
    return out


def finish(acc: Acc, spill: Path, label: str, quarantine: bool) -> dict:
    """The profile of everything merged into acc, whose documents were spilled into `spill`."""
    feats, lines = features(spill), sorted(spill.glob("lines-*.arrow"))
    names = sorted(acc.sources)
    overall = acc.overall()
    samples = {"": overall.picks.order}
    if len(names) > 1:
        samples.update({s: acc.sources[s].picks.order for s in names})
    docs = {"": overall.counts["docs"] - overall.counts["null_text"],
            **{s: acc.sources[s].counts["docs"] - acc.sources[s].counts["null_text"] for s in names}}
    fetch = text_fetch(spill)  # the near-duplicate check's, then the top lines' (one after the other)
    with ThreadPoolExecutor(3, thread_name_prefix="profile-finish") as pool:  # independent reads of the spill
        near_f = pool.submit(estimate, samples, docs, feats, fetch)
        meta_f = pool.submit(meta_types, feats)
        outl_f = pool.submit(outliers, feats, acc, overall)
        per_src, total = distinct_texts(feats, names, overall.counts["docs"])
        # Top lines: candidates from the Misra-Gries tables, exact counts from the spilled counts.
        cands = pl.concat([overall.lines.frame()] + [acc.sources[s].lines.frame() for s in names])
        counts = line_counts(lines, cands.unique("h", keep="first"))
        outl, near = outl_f.result(), near_f.result()
        acc.add_meta(meta_f.result())
    overall = acc.overall()  # again, with the meta fields
    if len(names) == 1:
        near[names[0]] = near[""]
    # The lines each section can show, then their documents' texts in one read of the spill.
    tops = {s: top_candidates(counts.filter(pl.col("source") == s)) for s in names}
    tops[""] = top_candidates(counts.group_by("h").agg(pl.col("docs").sum(), pl.col("order", "lo", "hi").first()))
    texts = line_texts(pl.concat([t.select("order", "lo", "hi") for t in tops.values()]), fetch)
    by_source = {}
    for s in names:
        sa = acc.sources[s]
        by_source[s] = _section(sa, {s: sa.counts["docs"]}, acc.has_lang, per_src.get(s, 0), near[s],
                                top_lines(tops[s], texts), outl[s], quarantine)
    sources = {s: acc.sources[s].counts["docs"] for s in names}
    overall_sec = _section(overall, sources, acc.has_lang, total, near[""], top_lines(tops[""], texts), outl[""],
                           quarantine)
    return {"format": FORMAT, "label": label, "overall": overall_sec, "by_source": by_source}


def write_profile(profile: dict, workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(workdir / "profile.json", json.dumps(profile, indent=2, ensure_ascii=False).encode())
