"""corpusforge core: documents, readers, writers, operators, pipelines, executors, catalog, CLI."""

from corpus.executor import LocalExecutor, RunResult
from corpus.operators import FilterOperator, FitContext, GlobalOperator, MapOperator, Operator, Verdict
from corpus.pipeline import Pipeline
from corpus.readers import InputSpec

__all__ = [
    "FilterOperator",
    "FitContext",
    "GlobalOperator",
    "InputSpec",
    "LocalExecutor",
    "MapOperator",
    "Operator",
    "Pipeline",
    "RunResult",
    "Verdict",
]
