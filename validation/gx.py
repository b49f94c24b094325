"""The one place that talks to Great Expectations (1.x): its engine runs every expectation; this module
keeps it quiet and hands it frames.

* An ephemeral context per process (nothing written to disk, no analytics, no progress bars), made on
  first use: importing GX costs seconds, so nothing imports this module until a suite is loaded.
* Frames go to GX's pandas engine (polars -> Arrow -> pandas, strings Arrow-backed; see ``to_pandas``
  for the types). GX's SQL engine would need SQLAlchemy and a DuckDB dialect, which are not installed;
  Spark is not either (docs/validation.md has the measurements behind the choice).
* Results come back as plain JSON (numpy scalars, NaN, tuples made plain).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import polars as pl

# Row-local map expectations are evaluated per part of the corpus and their counts added up; these map
# expectations look at other rows too (uniqueness, order, the column's distribution), so they see the
# whole corpus at once, like the aggregate and table expectations.
WHOLE_COLUMN_MAPS = frozenset({
    "expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique",
    "expect_column_values_to_be_increasing", "expect_column_values_to_be_decreasing",
    "expect_column_value_z_scores_to_be_less_than", "expect_column_values_to_not_be_outliers",
})
# About the columns and their types: the same answer is required of every part (all must pass).
SCHEMA = frozenset({
    "expect_column_to_exist", "expect_column_type_to_be", "expect_column_values_to_be_of_type",
    "expect_column_values_to_be_in_type_list", "expect_table_columns_to_match_set",
    "expect_table_columns_to_match_ordered_list", "expect_table_column_count_to_equal",
    "expect_table_column_count_to_be_between",
})
# Expectations that need a SQL engine (GX raises on pandas).
SQL_ONLY = frozenset({"expect_query_results_to_match_comparison", "unexpected_rows_expectation"})
# The kwargs that name columns the data must have (table-column expectations name columns to look for).
COLUMN_KWARGS = ("column", "column_A", "column_B", "column_list")
REGEX_KWARGS = ("regex", "regex_list")

_state: dict[str, Any] = {}


def library() -> Any:
    """great_expectations, imported once per process with its loggers kept to warnings."""
    if "gx" not in _state:
        logging.getLogger("great_expectations").setLevel(logging.WARNING)  # it logs at INFO while importing
        try:
            import great_expectations
        except ImportError as exc:  # an optional extra: say which
            raise ExpectationProblem(f"data contracts need Great Expectations ({exc}): "
                                     'pip install "corpusforge[validation]"') from None

        _state["gx"] = great_expectations
    return _state["gx"]


def version() -> str:
    return str(library().__version__)


def _batch_definition() -> Any:
    """A whole-dataframe batch definition of this process's ephemeral context (made once)."""
    if "batch" not in _state:
        g = library()
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(), analytics_enabled=False,
                                   progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False))
        context = g.get_context(mode="ephemeral", project_config=config)
        asset = context.data_sources.add_pandas("corpusforge").add_dataframe_asset("frame")
        _state["batch"] = asset.add_batch_definition_whole_dataframe("whole")
    return _state["batch"]


# ---------------------------------------------------------------- expectations


class ExpectationProblem(ValueError):
    """An expectation GX cannot build (unknown type, bad kwargs); the message names the cause."""


def expectation_class(type_name: str) -> type:
    library()  # first: it quiets GX's loggers before GX imports
    from great_expectations.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.registry import (
        get_expectation_impl,
        list_registered_expectation_implementations,
    )

    try:
        return get_expectation_impl(type_name)
    except ExpectationNotFoundError:
        import difflib

        known = list_registered_expectation_implementations()
        close = difflib.get_close_matches(type_name, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ExpectationProblem(f"unknown expectation type '{type_name}'{hint}; Great Expectations "
                                 f"{version()} has {len(known)}, e.g. expect_column_values_to_not_be_null") from None


def build(entry: dict) -> Any:
    """GX's Expectation for one suite entry ({type, kwargs, meta, notes, severity, ...})."""
    expectation_class(entry["type"])
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    try:
        return ExpectationConfiguration(**entry).to_domain_obj()
    except Exception as exc:  # pydantic's ValidationError lists each bad field over several lines
        raise ExpectationProblem(_fields(exc)) from None


def scope(type_name: str) -> str:
    """'row' (row-local map: each row passes or fails alone), 'schema' (columns and types) or 'corpus'
    (aggregates, uniqueness, table figures: computed over the whole corpus at once)."""
    if type_name in SCHEMA:
        return "schema"
    if type_name in WHOLE_COLUMN_MAPS:
        return "corpus"
    cls = expectation_class(type_name)
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )

    return "row" if issubclass(cls, (ColumnMapExpectation, ColumnPairMapExpectation, MulticolumnMapExpectation)) \
        else "corpus"


def check_regexes(kwargs: dict) -> None:
    """Patterns are compiled here, so a bad one is a suite error rather than a failure mid-run."""
    for key in REGEX_KWARGS:
        patterns = kwargs.get(key)
        for p in [patterns] if isinstance(patterns, str) else patterns or []:
            try:
                re.compile(p)
            except re.error as exc:
                raise ExpectationProblem(f"{key}: {p!r} is not a valid regular expression ({exc})") from None


def mostly_success(considered: int, unexpected: int, mostly: float) -> bool:
    """GX's own rule for a map expectation's ``mostly``, over counts added up across the corpus."""
    library()
    from great_expectations.expectations.expectation import _mostly_success

    return bool(_mostly_success(considered, unexpected, mostly))


# ---------------------------------------------------------------- frames and runs


def to_pandas(df: pl.DataFrame, nullable: bool = False) -> Any:
    """The frame as GX's pandas engine sees it. ``nullable``: integers, floats and booleans as pandas'
    nullable types, so a column's type name does not depend on whether it holds a null (``int64``
    stays ``int64``): for the schema expectations only, since several of GX's metrics cannot compare
    ``pd.NA``; the others get numpy types (a null integer column is float64 with NaN, as GX expects)."""
    if not nullable:
        return df.to_pandas()
    import pandas as pd
    import pyarrow as pa

    types = {pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
             pa.int64(): pd.Int64Dtype(), pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
             pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype(), pa.float32(): pd.Float32Dtype(),
             pa.float64(): pd.Float64Dtype(), pa.bool_(): pd.BooleanDtype()}
    return df.to_pandas(types_mapper=types.get)


def run(frame: Any, entries: Sequence[tuple[int, dict]], result_format: dict) -> dict[int, dict]:
    """Validate a pandas frame against suite entries ((index, entry) pairs); {index: plain result}:
    success, result (GX's dict, made plain) and error (GX's exception message, or None)."""
    if not entries:
        return {}
    g = library()
    suite = g.ExpectationSuite(name="corpusforge", expectations=[build(e) for _, e in entries])
    for (i, _), exp in zip(entries, suite.expectations, strict=True):
        exp.id = str(i)  # results come back in GX's order: the id says whose each is
    with _no_fingerprint():
        batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
        out = batch.validate(suite, result_format=result_format)
    return {int(r.expectation_config.id): {"success": bool(r.success), "result": plain(r.result),
                                           "error": _exception(r.exception_info)} for r in out.results}


@contextmanager
def _no_fingerprint() -> Iterator[None]:
    """GX hashes every frame under 1 GB (pandas' hash_pandas_object, about 16 MB/s of text) for a batch
    marker that nothing here reads: for our calls only, it is skipped (and put back after)."""
    from great_expectations.execution_engine import pandas_execution_engine as engine

    old = engine.HASH_THRESHOLD
    engine.HASH_THRESHOLD = 0
    try:
        yield
    finally:
        engine.HASH_THRESHOLD = old


def _exception(info: Any) -> str | None:
    """GX's exception_info is one {raised_exception, exception_message} or a dict of them per metric."""
    if not info:
        return None
    found = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for i in found:
        if i.get("raised_exception") or i.get("exception_message"):
            return _one_line(i.get("exception_message") or "failed")
    return None


_WORDS = {"extra fields not permitted": "unknown argument", "field required": "required"}


def _fields(exc: Exception) -> str:
    """A pydantic error as 'field: problem; ...' (the first problem of each field), else its message."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return _one_line(exc)
    first: dict[str, str] = {}
    for e in errors():
        loc = ".".join(str(x) for x in e.get("loc", ())) or "kwargs"
        first.setdefault("kwargs" if loc == "__root__" else loc, _WORDS.get(e.get("msg", ""), e.get("msg", "")))
    return "; ".join(f"{k}: {v}" for k, v in first.items())


def _one_line(exc: Any) -> str:
    return re.sub(r"\s*\n\s*", "; ", str(exc)).strip()


def plain(x: Any) -> Any:
    """JSON-able: numpy and pandas scalars as Python ones, NaN and NA as None, tuples as lists."""
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple | set | frozenset):
        return [plain(v) for v in x]
    if x is None or isinstance(x, bool | int | str):
        return x
    if isinstance(x, float):
        return float(x) if math.isfinite(x) else None
    if hasattr(x, "item") and not hasattr(x, "__len__"):  # numpy scalar
        return plain(x.item())
    if hasattr(x, "tolist"):
        return plain(x.tolist())
    try:
        import pandas as pd

        if x is pd.NA or x is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    if isinstance(x, bytes):
        return x.decode("utf-8", "replace")
    return str(x)
