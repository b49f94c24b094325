"""Per-source sampling weights: down-sample some sources, up-sample others, seeded and deterministic.

A document of a source with weight ``w`` appears ``floor(w)`` times, plus once more with probability
``w - floor(w)``: 0.25 keeps about a quarter of the documents, 1 all of them once, 2.5 every document
twice and half of them three times. The draw is a hash of the seed and the document's ``row_id``, so it
does not depend on shards, workers or reruns. A document drawn zero times is rejected with reason
``sampled_out`` (nothing is lost: it is in ``rejected/``). Extra appearances are copies appended to
the shard: each has its own ``row_id`` and names its original's in ``copy_of_row`` (null on
originals); ``sample_copies`` (a counter, on the originals) says how many copies a document got. The
balance counts originals only; copies are reported beside it.

A copy's row_id is ``((base * k + task) << 40) | row`` for copy ``k`` of row ``(task << 40) | row``,
where ``base`` exceeds every input file number of the run (found by ``fit``): unique by construction.
Put sampling after deduplication: copies are exact duplicates by design.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import polars as pl

from corpus.operators import GlobalFilterOperator, StageContext, StageView, Verdict
from corpus.schema import COPY_OF, ROW_BITS, ROW_ID, SOURCE, copy_marks

REASON = "sampled_out"
STATE = "sample.json"
_TASK_BITS = 63 - ROW_BITS  # row_id is a non-negative Int64
_ROW = 1 << ROW_BITS
_MIX1, _MIX2, _GOLDEN = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0x9E3779B97F4A7C15


def uniform(row_id: pl.Expr, seed: int) -> pl.Expr:
    """A uniform draw in [0, 1) per row: splitmix64 of (row_id, seed), the top 53 bits."""
    u64 = pl.UInt64
    x = row_id.cast(u64) + pl.lit((seed * _GOLDEN + _GOLDEN) % 2**64, u64)
    x = (x ^ (x // 2**30)) * pl.lit(_MIX1, u64)
    x = (x ^ (x // 2**27)) * pl.lit(_MIX2, u64)
    x = x ^ (x // 2**31)
    return (x // 2**11).cast(pl.Float64) / float(2**53)


@dataclass
class Sample(GlobalFilterOperator):
    """Per-source sampling weights (0 drops a source, 0.3 keeps about 30%, 2.5 up-samples), seeded:
    dropped documents are rejected as ``sampled_out``; copies carry ``copy_of_row``."""

    name = "sample"
    version = "1"
    adds = {COPY_OF: pl.Int64, "sample_copies": pl.Int64}
    needs = {SOURCE: pl.String, ROW_ID: pl.Int64}
    counters = ("sample_copies",)
    report_title: ClassVar[str] = "Sampling"
    report_order: ClassVar[int] = 64
    source_params = ("weights",)

    weights: dict[str, float] = field(default_factory=dict)  # source -> weight; others get `default`
    default: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        bad = {k: v for k, v in {**self.weights, "default": self.default}.items()
               if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v) or v < 0}
        if bad:
            raise ValueError(f"weights must be finite numbers >= 0, got {bad}")
        self._base = 0

    def weight(self, source: str) -> float:
        return float(self.weights.get(source, self.default))

    def fit(self, ctx: StageContext) -> dict:
        stats = (pl.scan_parquet(list(ctx.shards)).select(
            (pl.col(ROW_ID).max() // _ROW).alias("task"), pl.col(SOURCE).unique().implode().alias("sources"))
            .collect()) if ctx.shards else None
        base = int(stats["task"][0]) + 1 if stats is not None and stats["task"][0] is not None else 1
        sources = sorted(stats["sources"][0].to_list()) if stats is not None else []
        copies = max([math.ceil(self.weight(s)) - 1 for s in sources] + [0])
        if base * (copies + 1) > 1 << _TASK_BITS:
            raise ValueError(f"sample: {base} input files x {copies + 1} appearances do not fit a row_id "
                             f"(at most {1 << _TASK_BITS}); lower the largest weight")
        unknown = sorted(set(self.weights) - set(sources))
        state = {"base": base, "sources": sources, "unknown_sources": unknown,
                 "weights": {s: self.weight(s) for s in sources}, "seed": self.seed}
        (ctx.artifacts / STATE).write_text(json.dumps(state, indent=2))
        return state

    def load(self, artifacts: Path) -> None:
        self._base = json.loads((artifacts / STATE).read_text())["base"]

    def filter(self, df: pl.DataFrame) -> Verdict:
        weights = {k: float(v) for k, v in self.weights.items()}  # polars types the mapping by its first value
        w = pl.col(SOURCE).replace_strict(weights, default=float(self.default), return_dtype=pl.Float64)
        times = (w.floor() + (uniform(pl.col(ROW_ID), self.seed) < w - w.floor()).cast(pl.Float64)).cast(pl.Int64)
        n = df.select(times.alias("n")).to_series()
        keep = n > 0
        # a copy made by an earlier sample stage stays one (and its copies name the same original)
        earlier = copy_marks(df)
        scores = {COPY_OF: earlier, "sample_copies": (n - 1).clip(lower_bound=0).alias("sample_copies")}
        return Verdict(keep=keep, reason=REASON, scores=scores, copies=self._copies(df, n, scores))

    def _copies(self, df: pl.DataFrame, n: pl.Series, scores: dict[str, pl.Series]) -> pl.DataFrame | None:
        more = df.with_columns(**scores).filter(n > 1).with_columns(_n=n.filter(n > 1))
        if more.height == 0:
            return None
        rid = pl.col(ROW_ID)
        copies = more.with_columns(pl.int_ranges(1, pl.col("_n")).alias("_k")).explode("_k")
        task, row = rid // _ROW, rid % _ROW
        columns = df.columns + [c for c in (COPY_OF, "sample_copies") if c not in df.columns]
        return copies.with_columns(
            ((pl.lit(self._base, pl.Int64) * pl.col("_k") + task) * _ROW + row).alias(ROW_ID),
            pl.coalesce(pl.col(COPY_OF), rid).alias(COPY_OF), pl.lit(0, pl.Int64).alias("sample_copies"),
        ).select(columns)

    @classmethod
    def report(cls, stages: list[StageView]) -> Any:
        """Each source's weight, documents in, sampled out, kept and copies, from the stage's own folders."""
        from corpus.report.html import Col, table
        from corpus.report.sections import Rendered

        parts, figures = [], {}
        for st in stages:
            out = st.artifacts.parent
            try:
                state = json.loads((st.artifacts / STATE).read_text())
            except (OSError, ValueError):
                continue
            kept = _per_source(out / "shards", f"count(*) FILTER (WHERE {COPY_OF} IS NULL) AS kept, "
                                               f"count(*) FILTER (WHERE {COPY_OF} IS NOT NULL) AS copies")
            dropped = _per_source(out / "rejected", "count(*) AS sampled_out")
            rows, fig = [], {}
            for src in state["sources"]:
                k, d = kept.get(src, {}), dropped.get(src, {})
                fig[src] = {"weight": state["weights"][src], "kept": k.get("kept", 0), "copies": k.get("copies", 0),
                            "sampled_out": d.get("sampled_out", 0)}
                f = fig[src]
                rows.append([src, f["weight"], f["kept"] + f["sampled_out"], f["sampled_out"], f["kept"], f["copies"],
                             f["kept"] + f["copies"]])
            cols = [Col("source"), Col("weight", True), Col("docs in", True), Col("sampled out", True),
                    Col("kept", True), Col("copies", True), Col("docs out", True)]
            note = f"seed {state['seed']}"
            if state["unknown_sources"]:
                note += f"; weights given for sources not in the corpus: {', '.join(state['unknown_sources'])}"
            parts.append(f"<h3>{st.label}</h3><p class=\"note\">{note}. Copies name their original in "
                         f"{COPY_OF}.</p>" + table(cols, rows))
            figures[st.label] = {"seed": state["seed"], "sources": fig}
        return Rendered("".join(parts), figures) if parts else None


def _per_source(folder: Path, aggregates: str) -> dict[str, dict[str, int]]:
    import duckdb

    files = [str(p) for p in sorted(folder.glob("*.parquet"))]
    if not files:
        return {}
    con = duckdb.connect()
    try:
        cur = con.execute(f"SELECT source, {aggregates} FROM read_parquet(?, union_by_name = true) GROUP BY source",
                          [files])
        names = [d[0] for d in cur.description]
        return {r[0]: dict(zip(names[1:], r[1:], strict=True)) for r in cur.fetchall()}
    finally:
        con.close()
