"""Join an external table (CSV, Parquet, JSON: anything DuckDB reads) onto the documents by a key.

    - op: join
      table: licences.csv            # domain,licence
      key: domain                    # the table's key column
      doc_key: url_domain            # the documents' key: a column (id, source, url_domain...) or meta.<field>
      add: [licence]                 # columns added to every document (default: all but the key)

The table is read through DuckDB (types sniffed from CSV, kept from Parquet) once, in ``fit``, and
checked before any document is touched: a missing file, key or column is a one-line error. Keys
compare as text. A key the table holds more than once is *ambiguous*: ``on_duplicate: fail`` (the
default) stops the run naming examples, ``reject`` rejects the documents with that key as
``join_ambiguous_key``. A document whose key is null or not in the table is *missing*:
``on_missing: reject`` (default) rejects it as ``join_missing_key``, ``keep`` keeps it with null
columns, ``fail`` stops the run before any shard is written, naming examples. No document is ever
dropped silently; the fit's counts (``summary.json``) go to the catalog and the report.

The stage's key covers the table's bytes (sha256), so editing the table reruns the join on resume.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import polars as pl

from corpus.integrity import file_sha256
from corpus.operators import Columns, GlobalFilterOperator, StageContext, StageView, Verdict
from corpus.readers.plan import is_glob
from corpus.schema import META
from corpus.units import plural

MISSING, AMBIGUOUS = "join_missing_key", "join_ambiguous_key"
ON_MISSING = ("reject", "keep", "fail")
ON_DUPLICATE = ("fail", "reject")
TABLE, SUMMARY, EXAMPLES = "table.parquet", "summary.json", 5
_KEY, _HIT = "\x00key", "\x00hit"


class JoinError(ValueError):
    """The table or the keys make the join impossible as configured (one line, with examples)."""


@dataclass
class Join(GlobalFilterOperator):
    """Add columns from an external table (CSV/Parquet, read by DuckDB) by key; ambiguous or missing
    keys are an error or a reject reason (``join_ambiguous_key``, ``join_missing_key``), never a drop."""

    name = "join"
    version = "1"
    needs = {"id": pl.String}  # the default doc_key; columns() gives each instance's own
    report_title: ClassVar[str] = "Joined tables"
    report_order: ClassVar[int] = 66

    table: str = ""
    key: str = ""
    doc_key: str = "id"  # a document column, or meta.<field> ("on" would read as true in YAML)
    add: list[str] | None = None  # the table's columns to add (default: all but the key)
    prefix: str = ""  # prepended to the added columns' names
    on_missing: str = "reject"
    on_duplicate: str = "fail"

    def __post_init__(self) -> None:
        if not self.table or not self.key:
            raise ValueError("join needs 'table' (a CSV or Parquet file) and 'key' (its key column)")
        if self.on_missing not in ON_MISSING:
            raise ValueError(f"on_missing must be one of {ON_MISSING}, got {self.on_missing!r}")
        if self.on_duplicate not in ON_DUPLICATE:
            raise ValueError(f"on_duplicate must be one of {ON_DUPLICATE}, got {self.on_duplicate!r}")
        self._schema: dict[str, pl.DataType] | None = None
        self._lookup: pl.DataFrame | None = None
        self._ambiguous: pl.Series | None = None

    # ------------------------------------------------------------ the table

    def files(self) -> list[Path]:
        found = sorted(glob.glob(self.table)) if is_glob(self.table) else [self.table]
        paths = [Path(p) for p in found if Path(p).is_file()]
        if not paths:
            raise JoinError(f"join: table {self.table!r} does not exist (or matches no file)")
        return paths

    def read(self, limit: int | None = None) -> pl.DataFrame:
        files = [str(p) for p in self.files()]
        con = duckdb.connect()
        try:
            sql = f"SELECT * FROM {_reader(files[0])}(?)" + ("" if limit is None else f" LIMIT {int(limit)}")
            return pl.from_arrow(con.sql(sql, params=[files]).to_arrow_table())  # type: ignore[return-value]
        except duckdb.Error as exc:
            raise JoinError(f"join: cannot read table {self.table!r}: {str(exc).splitlines()[0]}") from None
        finally:
            con.close()

    def schema(self) -> dict[str, pl.DataType]:
        """The added columns and their types (from the table's header or footer)."""
        if self._schema is None:
            have = self.read(limit=0).schema
            if self.key not in have:
                raise JoinError(f"join: table {self.table!r} has no key column {self.key!r} (columns: {list(have)})")
            wanted = self.add if self.add is not None else [c for c in have if c != self.key]
            absent = [c for c in wanted if c not in have]
            if absent:
                raise JoinError(f"join: table {self.table!r} has no column(s) {absent} (columns: {list(have)})")
            self._schema = {self.prefix + c: have[c] for c in wanted}
        return self._schema

    def columns(self) -> tuple[Columns, Columns, tuple[str, ...]]:
        needs = {META if self.doc_key.startswith("meta.") else self.doc_key: None}
        return needs, self.schema(), ()

    def config_key(self) -> str:
        """Parameters and the table's bytes: an edited table reruns the join."""
        import hashlib

        digests = [file_sha256(p) for p in self.files()]
        return hashlib.sha256((super().config_key() + "|" + ",".join(digests)).encode()).hexdigest()

    def doc_keys(self) -> pl.Expr:
        if self.doc_key.startswith("meta."):
            return pl.col(META).str.json_path_match("$[" + json.dumps(self.doc_key[5:]) + "]")
        return pl.col(self.doc_key).cast(pl.String)

    # ------------------------------------------------------------ fit, load, filter

    def fit(self, ctx: StageContext) -> dict:
        schema = self.schema()
        table = self.read()
        keys = table[self.key].cast(pl.String)
        counts = pl.DataFrame({"k": keys}).group_by("k").len()
        ambiguous = counts.filter(pl.col("len") > 1).sort("k")["k"]
        if ambiguous.len() and self.on_duplicate == "fail":
            raise JoinError(f"join: table {self.table!r} has {plural(ambiguous.len(), 'key')} in more than one row, "
                            f"e.g. {ambiguous.head(EXAMPLES).to_list()} (on_duplicate: reject rejects their documents)")
        lookup = table.with_columns(keys.alias(_KEY)).filter(~pl.col(_KEY).is_in(ambiguous.implode())
                                                            & pl.col(_KEY).is_not_null())
        lookup = lookup.select(pl.col(_KEY), *[pl.col(c[len(self.prefix):]).alias(c) for c in schema])
        lookup.write_parquet(ctx.artifacts / TABLE)
        pl.DataFrame({"k": ambiguous}).write_parquet(ctx.artifacts / "ambiguous.parquet")
        docs = (pl.scan_parquet(list(ctx.shards)).select(self.doc_keys().alias("k")).collect()
                if ctx.shards else pl.DataFrame({"k": []}, schema={"k": pl.String}))
        missing = docs.filter(pl.col("k").is_null() | ~pl.col("k").is_in(keys.implode()))
        amb_docs = docs.filter(pl.col("k").is_in(ambiguous.implode()))
        if missing.height and self.on_missing == "fail":
            examples = missing["k"].unique(maintain_order=True).head(EXAMPLES).to_list()
            have = "has" if missing.height == 1 else "have"
            raise JoinError(f"join: {plural(missing.height, 'document')} {have} a key ({self.doc_key}) that table "
                            f"{self.table!r} lacks, e.g. {examples} (on_missing: reject or keep lets the run go on)")
        summary = {"table": self.table, "table_rows": table.height, "keys": counts.height,
                   "ambiguous_keys": ambiguous.len(), "ambiguous_examples": ambiguous.head(EXAMPLES).to_list(),
                   "docs": docs.height, "docs_missing": missing.height, "docs_ambiguous": amb_docs.height,
                   "missing_examples": missing["k"].unique(maintain_order=True).head(EXAMPLES).to_list(),
                   "doc_key": self.doc_key, "key": self.key, "columns": list(schema), "on_missing": self.on_missing,
                   "on_duplicate": self.on_duplicate}
        (ctx.artifacts / SUMMARY).write_text(json.dumps(summary, indent=2, default=str))
        return summary

    def load(self, artifacts: Path) -> None:
        self._lookup = pl.read_parquet(artifacts / TABLE).with_columns(pl.lit(True).alias(_HIT))
        self._ambiguous = pl.read_parquet(artifacts / "ambiguous.parquet")["k"]

    def filter(self, df: pl.DataFrame) -> Verdict:
        assert self._lookup is not None and self._ambiguous is not None
        keyed = df.select(self.doc_keys().alias(_KEY))
        joined = keyed.join(self._lookup, on=_KEY, how="left", maintain_order="left")
        ambiguous = joined[_KEY].is_in(self._ambiguous.implode()).fill_null(False)
        missing = joined[_HIT].is_null() & ~ambiguous
        reason = pl.DataFrame({"a": ambiguous, "m": missing}).select(
            pl.when("a").then(pl.lit(AMBIGUOUS)).when("m").then(pl.lit(MISSING)).otherwise(None)).to_series()
        # Derived from the masks, not a Python list: an empty shard's [True] * 0 is a null-typed Series.
        keep = ~ambiguous & ~missing if self.on_missing == "reject" else ~ambiguous
        scores = {c: joined[c].cast(t) for c, t in self.schema().items()}
        return Verdict(keep=keep, reason=reason, scores=scores)

    @classmethod
    def figures(cls, artifacts: Path) -> dict[str, float]:
        try:
            s = json.loads((artifacts / SUMMARY).read_text())
        except (OSError, ValueError):
            return {}
        return {k: s[k] for k in ("table_rows", "ambiguous_keys", "docs_missing", "docs_ambiguous")}

    @classmethod
    def report(cls, stages: list[StageView]) -> Any:
        from corpus.report.html import Col, table
        from corpus.report.sections import Rendered

        rows, figures = [], {}
        for st in stages:
            try:
                s = json.loads((st.artifacts / SUMMARY).read_text())
            except (OSError, ValueError):
                continue
            figures[st.label] = s
            rows.append([st.label, s["table"], f"{s['doc_key']} = {s['key']}", ", ".join(s["columns"]), s["table_rows"],
                         s["ambiguous_keys"], s["docs"], s["docs_missing"], s["on_missing"], s["docs_ambiguous"]])
        if not rows:
            return None
        cols = [Col("stage"), Col("table", cls="wrap"), Col("match"), Col("columns added", cls="wrap"),
                Col("table rows", True), Col("ambiguous keys", True), Col("docs", True), Col("missing key", True),
                Col("missing keys are"), Col("ambiguous key", True)]
        note = ('<p class="note">Missing: the document\'s key is null or not in the table; ambiguous: the table '
                "holds the key more than once. Rejected documents are in rejected/ with reason "
                f"{MISSING} or {AMBIGUOUS}.</p>")
        return Rendered(note + table(cols, rows), figures)


def _reader(path: str) -> str:
    low = path.lower()
    if low.endswith((".parquet", ".pq")):
        return "read_parquet"
    if low.endswith((".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz")):
        return "read_json_auto"
    return "read_csv"
