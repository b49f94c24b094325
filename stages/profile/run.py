"""Entry points: profile frames in this process, or raw inputs / a corpus folder in parallel."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl

from corpus.lock import RunLock
from corpus.manifest import require_intact
from corpus.owner import refuse_managed, require_folder
from corpus.progress import Progress
from corpus.readers import Inputs, InputSpec, plan_tasks
from corpus.readers.plan import SPLIT_BYTES, number_lines, split_tasks
from corpus.work import resolve_workers

from .aggregate import Acc
from .constants import CHUNK_BYTES, NEAR_DUP_SAMPLE, check_sample
from .features import chunk_features
from .inputs import Unit, run_units, slices, unit_bytes
from .spill import Spill, done, fresh_spill
from .summary import finish, write_profile


def profile_frames(frames: Iterable[pl.DataFrame], label: str, workdir: Path,
                   sample_size: int = NEAR_DUP_SAMPLE, keep_features: bool = False) -> dict:
    """Profile document frames (columns id, text, source; optional meta, lang), streaming, in this
    process; a document's place in the corpus is its place in the frames. Writes
    ``workdir/profile.json`` and returns the profile."""
    workdir = Path(workdir)
    spill_dir = fresh_spill(workdir)
    try:
        acc = Acc(sample_size=sample_size)
        spill = Spill(spill_dir, 0)
        start = 0
        for df in frames:
            for part in slices(df, CHUNK_BYTES):
                if part.height == 0:
                    continue
                ch = chunk_features(part, np.arange(start, start + part.height, dtype=np.int64))
                start += part.height
                acc.add_chunk(ch)
                spill.write(ch)
        profile = finish(acc, spill_dir, label, quarantine=False)
        write_profile(profile, workdir)
    finally:
        done(spill_dir, keep_features)
    return profile


def profile_input(inputs: Inputs, out: Path, workers: int = 2,
                  sample_size: int = NEAR_DUP_SAMPLE, keep_features: bool = False,
                  base_dir: Path | None = None, split_bytes: int = SPLIT_BYTES, progress: Progress | None = None
                  ) -> dict:
    """Profile raw inputs (InputSpecs or paths, as ``Pipeline.run`` takes them; read by the corpus readers,
    quarantined records counted by kind) or a corpus folder (one with manifest.json), files/shards in
    parallel on threads (``workers`` cores' worth, 0: one per core; run_units); a file over ``split_bytes``
    is read in parts, as a run reads it (0: never). Writes ``out/profile.json``; a bad input raises before
    anything is written. ``progress``: shows a bar advanced as each file or part is done (``corpus profile``);
    started once the input is planned (a bad input: its error line alone), closed at the end."""
    out = Path(out)
    refuse_managed(out)
    workers = resolve_workers(workers)
    check_sample(sample_size)
    require_folder(out)
    units, quarantine = _units(inputs, base_dir, out, split_bytes)
    made = not out.exists()
    with RunLock(out):  # one writer per folder: a second profile into it would delete this one's spill
        return _profile_units(units, quarantine, out, made, workers, sample_size, keep_features, progress)


def _profile_units(units: list[Unit], quarantine: bool, out: Path, made: bool, workers: int, sample_size: int,
                   keep_features: bool, progress: Progress | None) -> dict:
    spill = fresh_spill(out)
    ok = False
    try:
        each = None
        if progress is not None:
            progress.start()
            bar = progress.add("profile", total=len(units), unit="input MB/s")

            def each(u: Unit, a: Acc) -> None:
                progress.advance(bar, docs=sum(s.counts["docs"] for s in a.sources.values()), nbytes=unit_bytes(u))

        acc = run_units(units, spill, workers, sample_size, each)
        if progress is not None:
            progress.log("profile: finishing (near duplicates, top lines, outliers)")
        profile = finish(acc, spill, "input", quarantine)
        write_profile(profile, out)
        ok = True
    finally:
        if progress is not None:
            progress.close()
        done(spill, keep_features and ok)
        if not ok and made:
            shutil.rmtree(out, ignore_errors=True)  # we made it and it holds nothing of use
    return profile


def _units(inputs: Inputs, base_dir: Path | None, out: Path, split_bytes: int) -> tuple[list[Unit], bool]:
    """(units, whether records can be quarantined): a corpus folder's shards, or the inputs' files."""
    if isinstance(inputs, str | os.PathLike) and (Path(inputs) / "manifest.json").is_file():
        # Checked against its manifest first (sizes, and hashes of shards touched since): a damaged
        # shard is named, never profiled as if it were the corpus.
        shards = require_intact(Path(inputs))["shards"]
        return [Unit(i, shard=str(Path(inputs) / s["path"])) for i, s in enumerate(shards)], False
    # A big file is read in parts, as a run reads it (corpus/readers/plan.py), so that every thread
    # shares it; a part's documents keep their row ids, so the profile is the same as read whole.
    parts, _ = split_tasks(plan_tasks(inputs, base_dir, output=out), split_bytes, CHUNK_BYTES)
    parts, _ = number_lines(parts, {}, set())
    return [Unit(i, task=t) for i, t in enumerate(parts)], True


def warm_up() -> None:
    """Compile (or load from numba's cache) the profiling kernel, on a two-record file, so the first
    profile does not pay for it (`make setup` runs this once after installing)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "warm.jsonl"
        path.write_text('{"text": "Warm up the kernel.\\nA second line."}\n{"text": "caf\\u00e9 \\u00a0 x"}\n')
        profile_input([InputSpec(source="warm", path=str(path))], Path(tmp) / "out", workers=1)
