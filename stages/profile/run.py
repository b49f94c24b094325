"""Entry points: profile frames in this process, or raw inputs / a corpus folder in parallel."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import polars as pl

from corpus.manifest import read_manifest
from corpus.readers import InputSpec, plan_tasks

from .aggregate import Acc
from .constants import CHUNK_BYTES, NEAR_DUP_SAMPLE
from .inputs import Unit, add_frame, run_units, slices
from .spill import Spill, done, fresh_spill
from .summary import finish, write_profile


def profile_frames(frames: Iterable[pl.DataFrame], label: str, workdir: Path,
                   sample_size: int = NEAR_DUP_SAMPLE, keep_features: bool = False) -> dict:
    """Profile document frames (columns id, text, source; optional meta, lang), streaming, in this
    process. Writes ``workdir/profile.json`` and returns the profile."""
    workdir = Path(workdir)
    spill_dir = fresh_spill(workdir)
    acc = Acc(sample_size=sample_size)
    spill = Spill(spill_dir, 0)
    for df in frames:
        for part in slices(df, CHUNK_BYTES):
            add_frame(acc, spill, part)
    profile = finish(acc, spill_dir, label, quarantine=False)
    write_profile(profile, workdir)
    done(spill_dir, keep_features)
    return profile


def profile_input(inputs: list[InputSpec] | Path | str, out: Path, workers: int = 2,
                  sample_size: int = NEAR_DUP_SAMPLE, keep_features: bool = False,
                  base_dir: Path | None = None) -> dict:
    """Profile raw inputs (quarantined records counted by kind) or a corpus folder (one with
    manifest.json), files/shards in parallel on `workers` threads. Writes ``out/profile.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spill = fresh_spill(out)
    quarantine = True
    if isinstance(inputs, str | Path):
        root = Path(inputs)
        if (root / "manifest.json").is_file():
            manifest = read_manifest(root)
            units = [Unit(i, shard=str(root / s["path"])) for i, s in enumerate(manifest["shards"])]
            quarantine = False
        else:
            units = [Unit(t.index, task=t) for t in plan_tasks([InputSpec(source=root.name or "input",
                                                                          path=str(root))], base_dir)]
    else:
        units = [Unit(t.index, task=t) for t in plan_tasks(list(inputs), base_dir)]
    acc = run_units(units, spill, workers, sample_size)
    profile = finish(acc, spill, "input", quarantine)
    write_profile(profile, out)
    done(spill, keep_features)
    return profile


def warm_up() -> None:
    """Compile (or load from numba's cache) every profiling kernel, on a two-record file: the first
    compile takes about a minute, so `make setup` runs this once after installing."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "warm.jsonl"
        path.write_text('{"text": "Warm up the kernels.\\nA second line."}\n{"text": "caf\\u00e9 \\u00a0 x"}\n')
        profile_input([InputSpec(source="warm", path=str(path))], Path(tmp) / "out", workers=1)
