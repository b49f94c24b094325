"""Repeated user ids: found after reading, reported, and handled as ``on_duplicate_id`` says.

Every row carries a ``row_id`` unique by construction and all internal work is keyed by it, so a
repeated user id (the same file twice, ids that restart in every file, two sources sharing ids) loses
nothing; but a user who joins on ids needs to know. After reading and before any stage, `RepeatedIds`
finds every id seen earlier in corpus order with the exact-dedup engine over the id column (blake2b-128
digests per shard on the executor's pool, grouped one partition at a time: bounded memory); every
reported row is checked against its first occurrence's id exactly. Derived ids (no ``id_key``) need no
reading when the inputs prove them unique (``derived_unique``): the check then records none found. Then,
per ``on_duplicate_id``:

* ``keep`` (default): the rows stay; a warning line says how many ids repeat, with examples;
* ``reject``: a first stage ``duplicate_id`` keeps the first occurrence in corpus order and rejects
  the later ones (reason ``duplicate_id``, in ``rejected/`` and the balance like any stage's drops;
  ``id_first_row`` holds the kept occurrence's row_id);
* ``fail``: the run stops before any stage, with an error listing examples.

Whatever the policy, the counts and examples (source, file, row) go into the run catalog (tables
``id_check`` and ``repeated_ids``) and the report's "Repeated ids" section.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from corpus.operators import GlobalFilterOperator, StageContext, Verdict
from corpus.readers import ReadTask
from corpus.schema import ROW_BITS
from corpus.stages.dedup import find_copies
from corpus.stages.dedup_index import KEPT_COLUMNS, RESULTS, RESULTS_JSON, ResultLookup, write_json
from corpus.units import plural

POLICIES = ("keep", "reject", "fail")
SUMMARY = "summary.json"
EXAMPLE_IDS, EXAMPLE_ROWS = 10, 5  # ids shown, and occurrences shown per id


class DuplicateIdError(ValueError):
    """on_duplicate_id: fail, and some id occurs more than once."""


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"on_duplicate_id must be one of {', '.join(POLICIES)}, got {policy!r}")
    return policy


@dataclass
class RepeatedIds(GlobalFilterOperator):
    """Find ids that occur more than once; as a stage, reject every occurrence after the first."""

    name = "duplicate_id"
    needs = {"id": pl.String, "row_id": pl.Int64}
    adds = {"id_first_row": pl.Int64}
    version = "1"

    partitions: int = 0  # digest partitions (0: sized so each holds ~64 MB of records)
    derived: bool = False  # every id is derived and proven unique (derived_unique): nothing to read

    def fit(self, ctx: StageContext) -> None:
        t0 = time.perf_counter()
        if self.derived:
            write_json(ctx.artifacts / RESULTS_JSON, [])  # no result files: every row_id looks up none
            docs = sum(pq.ParquetFile(p).metadata.num_rows for p in ctx.shards)
            counts = {"groups": 0, "duplicates": 0, "docs": docs}
        else:
            counts = find_copies(ctx, "id", None, self.partitions, same_id=True)
        write_json(ctx.artifacts / SUMMARY, {"ids": counts["groups"], "rows": counts["duplicates"],
                                             "docs": counts["docs"], "examples": _examples(ctx.artifacts),
                                           "seconds": time.perf_counter() - t0})

    def load(self, artifacts: Path) -> None:
        self._lookup = ResultLookup(artifacts, KEPT_COLUMNS)

    def filter(self, df: pl.DataFrame) -> Verdict:
        first = self._lookup.join(df)["kept_row"].alias("id_first_row")
        return Verdict(keep=first.is_null(), reason="duplicate_id", scores={"id_first_row": first})


def derived_unique(tasks: list[ReadTask]) -> bool:
    """Are the ids unique by construction? When no input names an ``id_key``, every id is derived,
    ``<source>:<file>:<row>`` (corpus/readers/jsonl.py ``DocBuilder``), and a file's rows are distinct.
    A row is digits, so the text up to an id's last ``:`` names its file: ids are unique when those
    prefixes are (a source or file name with a ``:`` in it could make two files share one)."""
    if any(t.spec.id_key is not None for t in tasks):
        return False
    files = {t.index: f"{t.spec.source}:{t.rel_path}:" for t in tasks}  # a big file's parts share one
    return len(set(files.values())) == len(files)


def _examples(workdir: Path) -> list[dict]:
    """The first EXAMPLE_IDS repeated ids in corpus order (row_id order), each with its first
    EXAMPLE_ROWS occurrences (row_ids) and how many there are. One results file in memory at a time."""
    files = [workdir / RESULTS / e["file"] for e in json.loads((workdir / RESULTS_JSON).read_text())]
    firsts: list[int] = []
    for f in files:
        kept = pl.read_parquet(f, columns=["kept_row"])["kept_row"].unique().sort().head(EXAMPLE_IDS)
        firsts = sorted(set(firsts) | set(kept.to_list()))[:EXAMPLE_IDS]
    if not firsts:
        return []
    rows = (pl.scan_parquet(files).filter(pl.col("kept_row").is_in(firsts))
            .group_by("kept_row").agg(pl.col("kept_id").first(), pl.col("row_id").sort(), pl.len())
            .sort("kept_row").collect())
    return [{"id": r["kept_id"], "occurrences": r["len"] + 1,
             "rows": [r["kept_row"], *r["row_id"][: EXAMPLE_ROWS - 1]]} for r in rows.iter_rows(named=True)]


def locate(row_id: int, files: dict[int, tuple[str, str]]) -> dict:
    """Where a row was read: {source, file, row, row_id}, from its row_id and {input file number:
    (source, file)} (the read markers)."""
    source, file = files.get(row_id >> ROW_BITS, ("?", "?"))
    return {"source": source, "file": file, "row": row_id & ((1 << ROW_BITS) - 1), "row_id": row_id}


def located(summary: dict, markers: list[dict]) -> list[dict]:
    """The summary's examples with each occurrence's source, file and row."""
    files = {m["task"]: (m["source"], m["file"]) for m in markers}
    return [{"id": e["id"], "occurrences": e["occurrences"], "at": [locate(r, files) for r in e["rows"]]}
            for e in summary.get("examples", [])]


def describe(summary: dict, examples: list[dict], policy: str, one_line: bool = False) -> str:
    """What was found and what happens to it, with examples: on one line (a warning: three of them),
    or one example per line after the first."""
    occur = "occurs" if summary["ids"] == 1 else "occur"
    head = (f"{plural(summary['ids'], 'id')} {occur} more than once ({plural(summary['rows'], 'later occurrence')} "
            f"among {plural(summary['docs'], 'document')})")
    what = {"keep": "kept (on_duplicate_id: keep; 'reject' drops the later occurrences, 'fail' stops the run)",
            "reject": "the later occurrences are rejected (on_duplicate_id: reject)",
            "fail": "on_duplicate_id: fail stops the run before any stage (set keep or reject to go on)"}[policy]
    shown = []
    for e in examples:
        at = ", ".join(f"{a['source']} {a['file']}:{a['row']}" for a in e["at"])
        more = f" and {e['occurrences'] - len(e['at'])} more" if e["occurrences"] > len(e["at"]) else ""
        shown.append(f"id {e['id']!r} {e['occurrences']} times: {at}{more}")
    if one_line:
        return f"{head}, e.g. {'; '.join(shown[:3])}; {what}"
    return f"{head}; {what}" + "".join(f"\n  {x}" for x in shown)
