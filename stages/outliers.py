"""Outliers and noise: thresholds derived from the data with robust statistics, per source.

``outlier_filter`` is a global filter. Its fit reads the chosen numeric ``features`` of every document
and, per source (``per_source``), computes the median and the median absolute deviation (``method:
mad``: flag |x - median| / (1.4826 MAD) > ``k``, default 3.5, Iglewicz and Hoaglin's modified z-score)
or the quartiles (``iqr``: flag x outside [Q1 - k IQR, Q3 + k IQR], default k 1.5, Tukey's fences).
A feature without spread (MAD or IQR 0: most values equal) gets no thresholds: nothing is an outlier.
A source with fewer than ``min_docs`` documents takes the thresholds of all sources together. The
thresholds and the number of documents each would flag are written to ``artifacts/thresholds.json``,
shown in the report and printed for review by ``corpus quality outliers CONFIG --dry-run`` before
anything is dropped; ``report_only: true`` keeps every document and only marks them (``outlier``).

A document is dropped by the first feature (in the order given) that it passes, with the reason
``outlier:<feature><<low>`` or ``>high`` and the value in ``rule_value``. Nulls are never outliers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from corpus.operators import Columns, GlobalFilterOperator, Operator, StageContext, StageView, Verdict
from corpus.schema import DOC_SCHEMA, SOURCE
from corpus.stages.rules import RULE_VALUE, fmt
from corpus.units import plural

THRESHOLDS = "thresholds.json"
ALL = "(all sources)"
MAD_SCALE = 1.4826  # MAD of a normal distribution is 0.6745 sigma: 1 / 0.6745


def fit_thresholds(frame: pl.LazyFrame, features: list[str], method: str, k: float, per_source: bool,
                   min_docs: int, sides: str) -> dict[str, dict[str, dict]]:
    """source -> feature -> {low, high, n, center, spread} over a frame of SOURCE and the features."""
    groups = {ALL: frame}
    if per_source:
        for src in frame.select(pl.col(SOURCE).unique()).collect()[SOURCE].to_list():
            groups[src] = frame.filter(pl.col(SOURCE) == src)
    out: dict[str, dict[str, dict]] = {}
    for src, g in groups.items():
        stats = {}
        for f in features:
            x = pl.col(f).cast(pl.Float64)
            if method == "mad":
                med = g.select(x.median()).collect().item()
                mad = g.select((x - med).abs().median()).collect().item() if med is not None else None
                center, spread = med, (mad or 0.0) * MAD_SCALE
                low, high = (None, None) if not spread else (med - k * spread, med + k * spread)
            else:
                quartiles = g.select(x.quantile(0.25, "linear").alias("q1"), x.quantile(0.75, "linear").alias("q3"))
                q1, q3 = quartiles.collect().row(0)
                center, spread = (q1, (q3 - q1) if q1 is not None else None)
                low, high = (None, None) if not spread else (q1 - k * spread, q3 + k * spread)
            n = g.select(x.count()).collect().item()
            stats[f] = {"n": n, "center": center, "spread": spread,
                        "low": low if sides in ("both", "low") else None,
                        "high": high if sides in ("both", "high") else None}
        out[src] = stats
    if per_source:
        for src in [s for s in out if s != ALL]:
            if min(v["n"] for v in out[src].values()) < min_docs:
                out[src] = {f: dict(v, borrowed=True) for f, v in out[ALL].items()}  # too few: all sources'
    return out


def flag(df: pl.DataFrame, features: list[str], thresholds: dict[str, dict[str, dict]], per_source: bool
         ) -> tuple[pl.Series, pl.Series]:
    """(reason, value) per row: the first feature outside its source's thresholds, or nulls."""
    rows = []
    for src, stats in thresholds.items():
        if (src == ALL) == per_source and len(thresholds) > 1:
            continue
        row: dict[str, Any] = {SOURCE: src}
        for f in features:
            for side in ("low", "high"):
                b = stats[f][side]
                row[f"_{side}_{f}"], row[f"_{side}_text_{f}"] = b, None if b is None else fmt(float(f"{b:.4g}"))
        rows.append(row)
    key = pl.col(SOURCE) if per_source else pl.lit(ALL)
    bounds = pl.DataFrame(rows, schema={SOURCE: pl.String, **{c: t for f in features for side in ("low", "high")
                                                               for c, t in ((f"_{side}_{f}", pl.Float64),
                                                                            (f"_{side}_text_{f}", pl.String))}})
    t = df.select(key.alias(SOURCE), *(pl.col(f).cast(pl.Float64) for f in features))
    t = t.join(bounds, on=SOURCE, how="left", maintain_order="left")
    reason: Any = None
    value: Any = None
    for f in features:
        x = pl.col(f)
        for side, why in (("low", "<"), ("high", ">")):
            bound = pl.col(f"_{side}_{f}")
            fails = ((x < bound) if side == "low" else (x > bound)).fill_null(False)
            r = pl.lit(f"outlier:{f}{why}") + pl.col(f"_{side}_text_{f}")
            reason = pl.when(fails).then(r) if reason is None else reason.when(fails).then(r)
            value = pl.when(fails).then(x) if value is None else value.when(fails).then(x)
    out = t.select(reason.otherwise(pl.lit(None, pl.String)).alias("reason"),
                   value.otherwise(pl.lit(None, pl.Float64)).alias("value"))
    return out["reason"], out["value"]


@dataclass
class OutlierFilter(GlobalFilterOperator):
    """Drop documents far from their source's typical values of the chosen ``features`` (robust
    statistics, thresholds fitted on the data, printed by ``corpus quality outliers CONFIG --dry-run``;
    ``report_only`` marks them in ``outlier`` and drops nothing). See the module docstring."""

    name = "outlier_filter"
    needs = {SOURCE: pl.String}
    adds = {"outlier": pl.String, RULE_VALUE: pl.Float64}
    report_title = "Outliers"
    report_order = 63

    features: list[str] = field(default_factory=lambda: ["n_words"])
    method: Literal["mad", "iqr"] = "mad"
    k: float | None = None  # mad: 3.5; iqr: 1.5
    sides: Literal["both", "low", "high"] = "both"
    per_source: bool = True
    min_docs: int = 30
    report_only: bool = False

    def __post_init__(self) -> None:
        if not self.features:
            raise ValueError("features: name at least one numeric column (e.g. n_words from quality_signals)")
        # A document's own columns are its identity and provenance, not measurements (source was also
        # selected twice with the source key: a polars DuplicateError in the fit).
        core = [f"{f!r} ({DOC_SCHEMA[f]})" for f in self.features if f in DOC_SCHEMA]
        if core:
            raise ValueError(f"features: {', '.join(core)} {'is a column' if len(core) == 1 else 'are columns'} every "
                             f"document has, not a numeric feature; name columns an earlier stage adds (e.g. n_words "
                             f"from quality_signals)")
        twice = sorted({f for f in self.features if self.features.count(f) > 1})
        if twice:
            raise ValueError(f"features: {', '.join(map(repr, twice))} named more than once")
        if self.k is not None and self.k <= 0:
            raise ValueError("k must be positive")
        self._thresholds: dict | None = None

    @property
    def k_value(self) -> float:
        return self.k if self.k is not None else (3.5 if self.method == "mad" else 1.5)

    def columns(self) -> tuple[Columns, Columns, tuple[str, ...]]:
        # Features are any numeric type (Int64, Float64, UInt32...): needs compare one exact type, so the
        # numeric check is column_problems'.
        return {SOURCE: pl.String, **dict.fromkeys(self.features)}, dict(self.adds), ()

    def column_problems(self, have: Columns, earlier: Sequence[Operator] = ()) -> list[str]:
        """Features that are not numeric columns at the stage's place: refused before a run, where the fit
        stopped with a polars error (or this operator's own) after the stages before it had run."""
        out = []
        for f in self.features:
            dtype = have.get(f)
            if dtype is not None and not dtype.is_numeric():
                out.append(f"features: {f!r} is {dtype}, not a numeric column (thresholds are fitted on numbers; "
                           f"e.g. n_words from quality_signals)")
        return out

    def compute(self, shards: list[Path]) -> dict:
        frame = pl.scan_parquet([str(s) for s in shards]).select(SOURCE, *self.features)
        bad = [f for f, t in frame.collect_schema().items() if f != SOURCE and not t.is_numeric()]
        if bad:
            raise ValueError(f"outlier_filter: feature(s) {bad} are not numeric columns")
        th = fit_thresholds(frame, self.features, self.method, self.k_value, self.per_source, self.min_docs,
                            self.sides)
        flagged: dict[str, dict[str, int]] = {}
        for shard in shards:
            df = pl.read_parquet(shard, columns=[SOURCE, *self.features])
            reason, _ = flag(df, self.features, th, self.per_source)
            counts = df.select(SOURCE).with_columns(reason.alias("r")).drop_nulls("r").group_by(SOURCE, "r").len()
            for src, r, n in counts.iter_rows():
                flagged.setdefault(src, {})[r] = flagged.get(src, {}).get(r, 0) + n
        return {"method": self.method, "k": self.k_value, "features": self.features, "per_source": self.per_source,
                "report_only": self.report_only, "thresholds": th, "flagged": flagged}

    def fit(self, ctx: StageContext) -> dict:
        result = self.compute(list(ctx.shards))
        (ctx.artifacts / THRESHOLDS).write_text(json.dumps(result, indent=2))
        return {"flagged": sum(n for by in result["flagged"].values() for n in by.values())}

    def load(self, artifacts: Path) -> None:
        self._thresholds = json.loads((artifacts / THRESHOLDS).read_text())["thresholds"]

    def filter(self, df: pl.DataFrame) -> Verdict:
        if self._thresholds is None:
            raise ValueError("outlier_filter: not fitted")
        reason, value = flag(df, self.features, self._thresholds, self.per_source)
        # Typed: [True] * 0 alone is a null-typed Series, which an empty shard's verdict cannot use.
        keep = pl.Series([True] * df.height, dtype=pl.Boolean) if self.report_only else reason.is_null()
        return Verdict(keep=keep, reason=reason, scores={"outlier": reason.alias("outlier"),
                                                         RULE_VALUE: value.alias(RULE_VALUE)})

    @classmethod
    def report(cls, stages: list[StageView]) -> Any:
        from corpus.report.sections import Rendered

        parts, figures = [], {}
        for st in stages:
            try:
                result = json.loads((st.artifacts / THRESHOLDS).read_text())
            except (OSError, ValueError):
                continue
            parts.append(f"<h3>{st.label}</h3>" + thresholds_html(result))
            figures[st.label] = result
        return Rendered("".join(parts), figures) if parts else None


def threshold_rows(result: dict) -> list[list[Any]]:
    """[source, feature, center, spread, low, high, flagged low, flagged high] per source and feature."""
    rows = []
    for src, stats in result["thresholds"].items():
        if result["per_source"] and src == ALL and len(result["thresholds"]) > 1:
            continue
        by = result["flagged"].get(src, {}) if src != ALL else {
            r: n for d in result["flagged"].values() for r, n in d.items()}
        for f, s in stats.items():
            lo = sum(n for r, n in by.items() if r.startswith(f"outlier:{f}<"))
            hi = sum(n for r, n in by.items() if r.startswith(f"outlier:{f}>"))
            src_name = src + (" (all sources': too few documents)" if s.get("borrowed") else "")
            rows.append([src_name, f, s["center"], s["spread"], s["low"], s["high"], s["n"], lo, hi])
    return rows


def thresholds_html(result: dict) -> str:
    from corpus.report.html import Col, esc, num_cell, table

    method = "median +- k x 1.4826 MAD" if result["method"] == "mad" else "quartiles +- k x IQR"
    cols = [Col("source"), Col("feature"), Col("median" if result["method"] == "mad" else "Q1", num=True),
            Col("spread", num=True), Col("low", num=True), Col("high", num=True), Col("documents", num=True),
            Col("below", num=True), Col("above", num=True)]
    rows = [[r[0], r[1], *(num_cell(v) for v in r[2:])] for r in threshold_rows(result)]
    mode = "marked only (report_only)" if result["report_only"] else "dropped"
    return f"<p>{esc(method)}, k = {fmt(result['k'])}; documents outside are {mode}.</p>" + table(cols, rows)


def review(config: str, workers: int, console: Any, as_json: bool = False) -> int:
    """``corpus quality outliers CONFIG --dry-run``: run the stages before the config's first
    outlier_filter (resumable: ``corpus run`` reuses them), fit it on their output and print the
    thresholds and what they would flag. Nothing is dropped."""
    from rich.table import Table

    from corpus.config import load_config
    from corpus.executor import LocalExecutor

    cfg = load_config(config)
    at = next((i for i, op in enumerate(cfg.pipeline) if isinstance(op, OutlierFilter)), None)
    if at is None:
        raise ValueError(f"{config}: no outlier_filter stage in its pipeline")
    op: OutlierFilter = cfg.pipeline[at]  # type: ignore[assignment]
    # The stages before it, into the config's own work/ (a later `corpus run` resumes them), publishing
    # nothing: a dry run after a full run once replaced its corpus with theirs.
    result = LocalExecutor(workers=workers, quiet=True).run(cfg.pipeline[:at], cfg.inputs, cfg.output,
                                                            cfg.shard_max_bytes, cfg.base_dir, stages_only=True)
    shards = result.shards
    review_result = op.compute(shards)
    if as_json:
        console.print_json(json.dumps(review_result))
        return 0
    table = Table(title=f"outlier_filter (pipeline[{at}]): {op.method}, k = {fmt(op.k_value)}, "
                        f"fitted on the {plural(len(shards), 'shard')} its stage reads")
    for c in ("source", "feature", "median" if op.method == "mad" else "Q1", "spread", "low", "high", "docs",
              "below", "above"):
        table.add_column(c, justify="left" if c in ("source", "feature") else "right")
    for r in threshold_rows(review_result):
        table.add_row(r[0], r[1], *("-" if v is None else fmt(float(f"{v:.4g}")) if isinstance(v, float) else f"{v:,}"
                                    for v in r[2:]))
    console.print(table)
    total = sum(n for by in review_result["flagged"].values() for n in by.values())
    console.print(f"dry run: {total:,} documents would be {'marked' if op.report_only else 'dropped'}; nothing was "
                  f"dropped. `corpus run {config}` applies it (the stages before it are done and resume).",
                  highlight=False)
    return 0
