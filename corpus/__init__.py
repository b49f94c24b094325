"""corpusforge core: documents, readers, writers, operators, pipelines, executors, catalog, CLI."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

# Loaded on first use (PEP 562): a worker process imports corpus.work, and with it this package, and
# should not pay for the executor, its catalog (DuckDB) and the stages it never runs.
_EXPORTS = {
    "FilterOperator": "corpus.operators",
    "GlobalFilterOperator": "corpus.operators",
    "GlobalMapOperator": "corpus.operators",
    "InputSpec": "corpus.readers",
    "LocalExecutor": "corpus.executor",
    "MapOperator": "corpus.operators",
    "Operator": "corpus.operators",
    "Pipeline": "corpus.pipeline",
    "RunResult": "corpus.executor",
    "SinkOperator": "corpus.operators",
    "StageContext": "corpus.operators",
    "Verdict": "corpus.operators",
}

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


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'corpus' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
