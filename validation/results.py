"""The words for a results document (engine.validate's): one line per failure, a summary to read, and
the rows of the catalog's ``validation`` table."""

from __future__ import annotations

import json
from typing import Any

from corpus.units import plural

DOMAIN_KWARGS = ("column", "column_A", "column_B", "column_list", "batch_id")
SHOWN = 120  # characters of a value in a line of text


def short(v: Any, n: int = SHOWN) -> str:
    s = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
    return s if len(s) <= n else s[: n - 3] + "..."


def expected(r: dict) -> str:
    """The expectation's own parameters (what it asks for), without the columns it names."""
    return ", ".join(f"{k}={short(v, 60)}" for k, v in r["kwargs"].items() if k not in DOMAIN_KWARGS) or "-"


def observed(r: dict) -> str:
    """What was found: unexpected rows of the rows considered, or the observed value."""
    if r.get("unexpected_count") is not None:
        considered = (r.get("element_count") or 0) - (r.get("missing_count") or 0)
        pct = r.get("unexpected_percent")
        return f"{r['unexpected_count']:,} of {considered:,} rows unexpected" + (f" ({pct:.2f}%)" if pct else "")
    return short(r.get("observed"))


def example_text(x: dict) -> str:
    who = f"id {x['id']!r}" if x.get("id") is not None else f"row_id {x.get('row_id')}"
    return f"{who}: {short(x.get('value'), 80)}"


def failure_line(r: dict, examples: int = 2) -> str:
    shown = "; ".join(example_text(x) for x in r.get("examples", [])[:examples])
    return (f"{r['label']}: {observed(r)}, expected {expected(r)}" + (f" (e.g. {shown})" if shown else ""))


def describe(doc: dict, stage: str = "", one_line: bool = True) -> str:
    """'suite X failed N of M expectations: ...' (critical failures, then warnings)."""
    bad = [r for r in doc["expectations"] if not r["success"]]
    crit = [r for r in bad if r["severity"] == "critical"]
    where = f"{stage}: " if stage else ""
    head = (f"{where}suite {doc['suite']!r} ({doc['path']}): {len(crit)} of {len(doc['expectations'])} expectations "
            f"failed over {doc['rows']:,} rows")
    lines = [failure_line(r) for r in crit] + [f"[{r['severity']}] {failure_line(r)}" for r in bad if r not in crit]
    return head + (": " + "; ".join(lines) if one_line else "".join(f"\n  {x}" for x in lines))


def text_summary(doc: dict) -> str:
    """What `corpus validate` prints: one line per expectation, then the verdict."""
    out = [f"suite {doc['suite']!r} ({doc['path']}) on {doc['input']}: {doc['rows']:,} rows, "
           f"{len(doc['expectations'])} expectations, {doc['seconds']:.1f} s ({doc['engine']})"]
    for r in doc["expectations"]:
        mark = "ok  " if r["success"] else ("FAIL" if r["severity"] == "critical" else "warn")
        line = f"  {mark} {r['label']}: {observed(r)}"
        if not r["success"]:
            line += f"; expected {expected(r)}"
            line += "".join(f"\n         {example_text(x)}" for x in r.get("examples", [])[:3])
        out.append(line)
    n_bad = len(doc["failed"])
    out.append(f"passed: {len(doc['expectations']) - n_bad - len(doc['warnings'])} of {len(doc['expectations'])}"
               + (f" ({plural(len(doc['warnings']), 'warning')})" if doc["warnings"] else "")
               if doc["success"] else f"FAILED: {plural(n_bad, 'critical expectation')}: {', '.join(doc['failed'])}")
    return "\n".join(out)


def catalog_rows(doc: dict) -> list[dict]:
    """One row per expectation for the catalog's ``validation`` table."""
    return [{"suite": doc["suite"], "suite_sha256": doc.get("sha256"), "expectation_index": r["index"],
             "expectation": r["label"], "type": r["type"], "kwargs": json.dumps(r["kwargs"], default=str),
             "severity": r["severity"], "scope": r["scope"], "success": r["success"],
             "observed": json.dumps(r.get("observed"), default=str), "element_count": r.get("element_count"),
             "unexpected_count": r.get("unexpected_count"), "unexpected_percent": r.get("unexpected_percent"),
             "examples": json.dumps(r.get("examples", []), default=str), "action": doc.get("action"),
             "quarantined": (doc.get("quarantined_by") or {}).get(r["label"], 0)}
            for r in doc["expectations"]]
