"""The ``profile`` operator: a sink that profiles the corpus at its place into ``profile.json``."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from corpus.operators import SinkOperator, StageContext

from .aggregate import Acc
from .constants import NEAR_DUP_SAMPLE, check_sample
from .inputs import Job, Unit, run_job
from .spill import done, fresh_spill
from .summary import finish, write_profile


@dataclass
class Profile(SinkOperator):
    """Profiles the corpus at its place in the pipeline into ``profile.json`` in its artifacts folder
    (format: docs/profile-format.md); documents pass on unchanged. ``near_dup_sample``: documents
    sampled per section for the near-duplicate rate."""

    name = "profile"
    needs = {"id": pl.String, "text": pl.String, "source": pl.String}

    near_dup_sample: int = NEAR_DUP_SAMPLE
    keep_features: bool = False  # keep the per-doc features Parquet files in fit/_spill

    def __post_init__(self) -> None:
        check_sample(self.near_dup_sample)

    def consume(self, ctx: StageContext) -> dict:
        spill = fresh_spill(ctx.artifacts)
        units = [Unit(i, shard=str(p)) for i, p in enumerate(ctx.shards)]
        # The executor's pool returns all results at once: a few jobs per worker bounds their number.
        n_jobs = min(len(units), max(1, ctx.workers) * 4)
        groups = [tuple(units[i::n_jobs]) for i in range(n_jobs)] if n_jobs else []
        jobs = [Job(g, str(spill), self.near_dup_sample) for g in groups]
        acc = Acc(sample_size=self.near_dup_sample)
        try:
            for part in ctx.pool_map(run_job, jobs):
                acc.merge(part)
            profile = finish(acc, spill, ctx.label, quarantine=False)
            write_profile(profile, ctx.artifacts)
        finally:
            done(spill, self.keep_features)
        return {"docs": profile["overall"]["docs"]}
