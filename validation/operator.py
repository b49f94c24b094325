"""The ``validate`` stage: a data contract (a Great Expectations suite) as a gate anywhere in a pipeline.

It is a global filter: its fit validates the whole corpus at its place (validation/engine.py: row rules
per shard on the pool, corpus figures over the whole corpus) and writes ``results.json``; then, per
``on_fail``, when a critical expectation fails:

* ``stop`` (default): the run stops (``StopRun``) after the results reach the catalog and the report;
  a rerun validates again (nothing downstream ran);
* ``warn``: a warning line, and the documents pass on;
* ``quarantine``: the rows that failed a row-level expectation go to ``rejected/NN-validate/`` with the
  expectation as reason (found by ``row_id``), so the balance still holds; a failed expectation that
  names no rows (a share, a column type, a duplicate rate) cannot be met by moving rows, and stops the run.

Expectations of severity ``warning`` or ``info`` are reported and never act.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl

from corpus.operators import GlobalFilterOperator, StageContext, StageView, StopRun, Verdict
from corpus.schema import ROW_ID, TEXT

ON_FAIL = ("stop", "warn", "quarantine")
RESULTS = "results.json"
QUARANTINE = "quarantine.parquet"
log = logging.getLogger(__name__)


@dataclass
class Validate(GlobalFilterOperator):
    """Check the documents at this point against a Great Expectations suite: stop, warn or quarantine."""

    name = "validate"
    needs = {ROW_ID: pl.Int64}
    version = "1"
    report_title = "Data contracts"
    report_order = 70

    suite: str = ""  # a GX suite (JSON) file, relative to the working directory
    on_fail: Literal["stop", "warn", "quarantine"] = "stop"
    examples: int = 5  # example rows kept per failed expectation

    def __post_init__(self) -> None:
        from corpus.validation.suites import load_suite

        if not self.suite:
            raise ValueError("validate needs 'suite': a Great Expectations suite file (JSON)")
        if self.on_fail not in ON_FAIL:
            raise ValueError(f"on_fail must be one of {', '.join(ON_FAIL)}, got {self.on_fail!r}")
        if self.examples < 0:
            raise ValueError(f"examples must be >= 0, got {self.examples}")
        self._suite = load_suite(self.suite)
        if self._suite.kind != "documents":
            raise ValueError(f"{self.suite}: a {self._suite.kind} suite; a validate stage checks documents "
                             "(token shards: corpus validate PREFIX --suite FILE)")

    def config_key(self) -> str:
        import hashlib

        # The suite's content, not only its path: an edited suite validates again.
        return hashlib.sha256(f"{super().config_key()}|{self._suite.sha256}".encode()).hexdigest()

    def columns(self) -> tuple[dict, dict, tuple[str, ...]]:
        """The columns the suite needs (any type: the suite judges types); derived ones need the text."""
        from corpus.validation.documents import derived_columns

        derived = derived_columns()
        s = self._suite
        cols = {c for i in range(len(s.entries)) for c in s.required(i)}
        needs: dict[str, Any] = {c: None for c in sorted(cols) if c not in derived}
        if cols & set(derived):
            needs.setdefault(TEXT, None)
        return {**needs, ROW_ID: pl.Int64}, {}, ()

    def fit(self, ctx: StageContext) -> None:
        from corpus.validation.documents import shards_table
        from corpus.validation.engine import REJECTS, names_rows, rejected_rows, validate
        from corpus.validation.results import describe

        suite = self._suite
        doc = validate(suite, [shards_table(list(ctx.shards))], ctx.pool_map, ctx.artifacts,
                       rejects=self.on_fail == "quarantine", examples=self.examples)
        failed = [r for r in doc["expectations"] if not r["success"] and r["severity"] == "critical"]
        action = "passed"
        quarantined: dict[str, int] = {}
        if failed:
            action = {"stop": "stopped", "warn": "warned", "quarantine": "quarantined"}[self.on_fail]
            if self.on_fail == "quarantine" and any(not names_rows(suite, r["index"]) for r in failed):
                action = "stopped"
            if action == "quarantined":
                rows = rejected_rows(ctx.artifacts, {r["index"] for r in failed})
                labels = {r["index"]: r["label"] for r in failed}
                table = rows.select(ROW_ID, pl.col("expectation").replace_strict(labels, return_dtype=pl.String)
                                    .alias("reason"))
                table.write_parquet(ctx.artifacts / QUARANTINE)
                quarantined = dict(table["reason"].value_counts().iter_rows())
        shutil.rmtree(ctx.artifacts / REJECTS, ignore_errors=True)  # what load needs is in QUARANTINE now
        doc.update(input=ctx.label, stage=ctx.label, on_fail=self.on_fail, action=action,
                   quarantined=sum(quarantined.values()), quarantined_by=quarantined)
        (ctx.artifacts / RESULTS).write_text(json.dumps(doc, indent=2, default=str))
        if action == "stopped":
            why = (" (quarantine cannot meet an expectation that names no rows)"
                   if self.on_fail == "quarantine" else "")
            raise StopRun(f"{describe(doc, ctx.label)}; on_fail: {self.on_fail}{why}: the run stops here (see "
                          "the report's Data contracts section; rerun after fixing the data or the suite)")
        if failed:
            what = f"{doc['quarantined']:,} rows quarantined" if action == "quarantined" else "documents pass on"
            log.warning("%s (on_fail: %s: %s)", describe(doc, ctx.label), self.on_fail, what)
        elif doc["warnings"]:
            log.warning("%s", describe(doc, ctx.label))

    def load(self, artifacts: Path) -> None:
        path = artifacts / QUARANTINE
        self._rejects = pl.read_parquet(path) if path.exists() else None

    def filter(self, df: pl.DataFrame) -> Verdict:
        if self._rejects is None or self._rejects.height == 0:
            return Verdict(keep=pl.Series([True] * df.height, dtype=pl.Boolean))
        reason = df.select(ROW_ID).join(self._rejects, on=ROW_ID, how="left", maintain_order="left")["reason"]
        return Verdict(keep=reason.is_null(), reason=reason.fill_null(""))

    # ------------------------------------------------------------ what the run keeps of it

    @staticmethod
    def results(artifacts: Path) -> dict | None:
        try:
            return json.loads((artifacts / RESULTS).read_text())
        except (OSError, ValueError):
            return None

    @classmethod
    def figures(cls, artifacts: Path) -> dict[str, float]:
        doc = cls.results(artifacts)
        if doc is None:
            return {}
        return {"expectations": len(doc["expectations"]), "failed": len(doc["failed"]),
                "warnings": len(doc["warnings"]), "passed": float(doc["success"]),
                "quarantined": doc.get("quarantined", 0)}

    @classmethod
    def catalog_rows(cls, artifacts: Path) -> dict[str, list[dict]]:
        from corpus.validation.results import catalog_rows

        doc = cls.results(artifacts)
        return {"validation": catalog_rows(doc)} if doc else {}

    @classmethod
    def report(cls, stages: list[StageView]) -> Any:
        from corpus.validation.report import render

        return render([(st.label, cls.results(st.artifacts)) for st in stages])
