"""The operator contract: the one interface every data step implements.

Three kinds, all working on polars DataFrames (one shard, or a slice of one, at a time):

* ``MapOperator.map(df) -> df``: same rows, added or changed columns.
* ``FilterOperator.filter(df) -> Verdict``: a keep mask and a reason per dropped row; the executor
  routes dropped rows to ``rejected/`` with the operator's name and the reason.
* ``GlobalOperator``: needs a pass over the whole corpus first (dedup, tokenizer training, profiling):
  ``fit(ctx)`` sees every shard and writes its state to ``ctx.workdir``; ``load(workdir)`` then
  ``apply(df)`` run per shard in the workers, as a map (returns a df) or a filter (returns a Verdict).

Operators are dataclasses: their fields are their parameters (validated from YAML by type), and the
hash of those fields keys resume markers. Each declares the columns it ``needs`` and ``adds`` so a
pipeline is checked before it runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
import pyarrow.parquet as pq


@dataclass
class Verdict:
    """What a filter decides for a batch.

    keep: boolean Series, one per row. reason: why a row is dropped (a Series aligned with the rows,
    or one string for all). scores: columns added to every row, kept or dropped (Dolma-style
    attributes, so a threshold can be re-run without recomputing the score).
    """

    keep: pl.Series
    reason: pl.Series | str = "filtered"
    scores: dict[str, pl.Series] = field(default_factory=dict)


class Operator:
    """Base of all operators. Subclasses are dataclasses and set ``name``, ``needs`` and ``adds``."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ("text",)
    adds: ClassVar[tuple[str, ...]] = ()
    # Bump when the operator's behaviour changes, so old cached outputs are not reused.
    version: ClassVar[str] = "1"

    def params(self) -> dict[str, Any]:
        if dataclasses.is_dataclass(self):
            return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        return {}

    def config_key(self) -> str:
        blob = json.dumps(
            {"op": self.name, "version": self.version, "params": self.params()},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def setup(self) -> None:
        """Called once per worker before the first batch (load models, compile regexes)."""

    def describe(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{self.name}({args})"


class MapOperator(Operator):
    kind = "map"

    def map(self, df: pl.DataFrame) -> pl.DataFrame:
        raise NotImplementedError


class FilterOperator(Operator):
    kind = "filter"

    def filter(self, df: pl.DataFrame) -> Verdict:
        raise NotImplementedError


@dataclass
class FitContext:
    """What a global operator's ``fit`` gets: the stage's input shards, a folder for its state,
    and a way to run work on the executor's process pool."""

    shards: list[Path]
    workdir: Path
    workers: int
    pool_map: Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]

    def iter_frames(self, columns: Sequence[str] | None = None) -> Iterator[tuple[int, pl.DataFrame]]:
        """(shard index, frame) for every row group of every shard, in order."""
        for i, path in enumerate(self.shards):
            pf = pq.ParquetFile(path)
            for rg in range(pf.num_row_groups):
                table = pf.read_row_group(rg, columns=list(columns) if columns else None)
                yield i, pl.from_arrow(table)  # type: ignore[misc]


class GlobalOperator(Operator):
    kind = "global"
    # How apply() behaves per shard once fitted: "map" returns a DataFrame, "filter" a Verdict.
    apply_kind: ClassVar[str] = "filter"

    def fit(self, ctx: FitContext) -> None:
        raise NotImplementedError

    def load(self, workdir: Path) -> None:
        raise NotImplementedError

    def apply(self, df: pl.DataFrame) -> pl.DataFrame | Verdict:
        raise NotImplementedError


OPERATOR_KINDS = ("map", "filter", "global")


def chain_key(parent: str, op: Operator) -> str:
    """A stage's key: its own config and everything upstream, so a change invalidates only what follows."""
    return hashlib.sha256(f"{parent}|{op.config_key()}".encode()).hexdigest()


def ensure_columns(ops: Iterable[Operator], available: Iterable[str]) -> list[str]:
    """Check each operator's needs against the columns available at that point. Returns errors."""
    have = set(available)
    errors: list[str] = []
    for i, op in enumerate(ops):
        missing = [c for c in op.needs if c not in have]
        if missing:
            errors.append(
                f"pipeline[{i}] '{op.name}' needs column(s) {missing} that neither the input nor an "
                f"earlier operator provides (available: {sorted(have)})"
            )
        have.update(op.adds)
    return errors
