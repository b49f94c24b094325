"""corpusforge core: documents, readers, writers, operators, pipelines, executors, catalog, CLI."""

from corpus.executor import LocalExecutor, RunResult
from corpus.operators import (
    FilterOperator,
    GlobalFilterOperator,
    GlobalMapOperator,
    MapOperator,
    Operator,
    SinkOperator,
    StageContext,
    Verdict,
)
from corpus.pipeline import Pipeline
from corpus.readers import InputSpec

__all__ = [
    "FilterOperator",
    "GlobalFilterOperator",
    "GlobalMapOperator",
    "InputSpec",
    "LocalExecutor",
    "MapOperator",
    "Operator",
    "Pipeline",
    "RunResult",
    "SinkOperator",
    "StageContext",
    "Verdict",
]
