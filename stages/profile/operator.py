"""The ``profile`` operator: a pipeline stage that profiles the corpus at its place and passes it on."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from corpus.operators import FitContext, GlobalOperator

from .aggregate import Acc
from .constants import NEAR_DUP_SAMPLE
from .inputs import Job, Unit, run_job
from .spill import done, fresh_spill
from .summary import finish, write_profile


def _stage_label(workdir: Path) -> str:
    """`01-profile` from the stage folder `01-profile-<12 hex>` holding the fit folder."""
    name = workdir.parent.name
    m = re.match(r"^(.*)-[0-9a-f]{12}$", name)
    return m.group(1) if m else name


@dataclass
class Profile(GlobalOperator):
    """Profiles the corpus at its place in the pipeline into ``fit/profile.json``; documents pass
    through unchanged. ``near_dup_sample``: documents sampled per section for the near-duplicate rate."""

    name = "profile"
    needs = ("id", "text", "source")
    adds = ()
    apply_kind = "map"

    near_dup_sample: int = NEAR_DUP_SAMPLE
    keep_features: bool = False  # keep the per-doc features Parquet files in fit/_spill

    def fit(self, ctx: FitContext) -> None:
        spill = fresh_spill(ctx.workdir)
        units = [Unit(i, shard=str(p)) for i, p in enumerate(ctx.shards)]
        # The executor's pool returns all results at once: a few jobs per worker bounds their number.
        n_jobs = min(len(units), max(1, ctx.workers) * 4)
        groups = [tuple(units[i::n_jobs]) for i in range(n_jobs)] if n_jobs else []
        jobs = [Job(g, str(spill), self.near_dup_sample) for g in groups]
        acc = Acc(sample_size=self.near_dup_sample)
        try:
            for part in ctx.pool_map(run_job, jobs):
                acc.merge(part)
            profile = finish(acc, spill, _stage_label(ctx.workdir), quarantine=False)
            write_profile(profile, ctx.workdir)
        finally:
            done(spill, self.keep_features)

    def load(self, workdir: Path) -> None:
        """Nothing to load: the profile is a report, not state for apply."""

    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        return df
