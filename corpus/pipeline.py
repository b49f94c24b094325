"""The Python pipeline API: a list of operators, checked, then run by an executor.

    from corpus import Pipeline, InputSpec
    from corpus.stages.filter import LengthFilter

    Pipeline([LengthFilter(min_chars=50)]).run(
        inputs=[InputSpec(source="web", path="data/web/*.jsonl.gz", text_key="content")],
        output="out/web",
    )
"""

from __future__ import annotations

from pathlib import Path

from corpus.config import load_config, param_problems
from corpus.executor import SPLIT_BYTES, Executor, LocalExecutor, PipelineError, RunResult
from corpus.operators import Operator, ensure_columns
from corpus.readers import Inputs
from corpus.schema import DOC_SCHEMA


class Pipeline:
    def __init__(self, ops: list[Operator]):
        if not isinstance(ops, list | tuple):
            raise TypeError(f"Pipeline takes a list of operators, as in Pipeline([ExactDedup()]); got "
                            f"{type(ops).__name__}")
        bad = [f"{o.__name__} (a class: write {o.__name__}())" if isinstance(o, type)
               else f"dict (a YAML pipeline entry: corpus.registry.get({o['op']!r})(...) makes that operator, "
                    "Pipeline.from_yaml reads a whole config)" if isinstance(o, dict) and isinstance(o.get("op"), str)
               else type(o).__name__ for o in ops if not isinstance(o, Operator)]
        if bad:
            raise TypeError(f"Pipeline takes Operator instances, got {', '.join(bad)}")
        problems = [p for o in ops for p in param_problems(o)]  # what a config's loader would refuse
        if problems:
            raise TypeError("operator parameters:\n  " + "\n  ".join(problems))
        self.ops = list(ops)

    def check(self) -> None:
        """Raise PipelineError if an operator needs a column nothing before it provides."""
        errors = ensure_columns(self.ops, DOC_SCHEMA)
        if errors:
            raise PipelineError("pipeline wiring:\n  " + "\n  ".join(errors))

    def run(
        self,
        inputs: Inputs,
        output: str | Path,
        workers: int = 0,
        shard_max_bytes: int = 128 << 20,
        quiet: bool = False,
        base_dir: str | Path | None = None,
        on_duplicate_id: str = "keep",
        executor: Executor | None = None,
        split_bytes: int = SPLIT_BYTES,
    ) -> RunResult:
        """Run the pipeline. inputs: InputSpecs, or paths (files, folders, globs: each a source named after
        it, every option at its default), or one of these. on_duplicate_id: what happens to a user id seen
        more than once (keep, with a warning; reject the later occurrences; or fail before any stage): see
        corpus/ids.py. executor: what runs it (default: ``LocalExecutor`` of ``workers`` processes;
        ``RayExecutor(address=...)`` for Ray: then its own workers, quiet, on_duplicate_id and split_bytes
        settings apply). split_bytes: input files over this are read in parts, several workers sharing a
        file (0: never; corpus/readers/plan.py)."""
        self.check()
        if executor is None:
            executor = LocalExecutor(workers=workers, quiet=quiet, on_duplicate_id=on_duplicate_id,
                                     split_bytes=split_bytes)
        return executor.run(self.ops, inputs, output, shard_max_bytes, Path(base_dir) if base_dir else None)

    @classmethod
    def from_yaml(cls, path: str | Path) -> tuple[Pipeline, dict]:
        """The pipeline of a YAML run config, and the rest of the config as run() keyword arguments."""
        cfg = load_config(path)
        kwargs = {"inputs": cfg.inputs, "output": cfg.output, "workers": cfg.workers,
                  "shard_max_bytes": cfg.shard_max_bytes, "base_dir": cfg.base_dir,
                  "on_duplicate_id": cfg.on_duplicate_id, "split_bytes": cfg.split_bytes}
        if cfg.executor != "local":
            kwargs["executor"] = cfg.make_executor()
        return cls(cfg.pipeline), kwargs
