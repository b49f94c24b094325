"""Resumable checkpoints and HF exports.

A checkpoint folder ``checkpoints/step-00000120/`` holds:

* ``model.safetensors``: every parameter and buffer (LoRA adapters included), via safetensors;
* ``optimizer.pt``, ``scheduler.pt``, ``trainer.pt``: state dicts of tensors and primitives only,
  read back with ``torch.load(weights_only=True)``: nothing is unpickled as code;
* ``rng-rank<R>.pt``: each process's python, numpy, torch and CUDA generator states;
* ``manifest.json``, written last: every file's size and sha256. Its presence means complete.

It is written under a temporary name and renamed, then ``checkpoints/latest`` is updated (for people;
resume does not trust it). Resume takes the newest checkpoint whose files match their manifest
(``find_resumable``), says which and why it skipped newer ones, and deletes nothing: a run killed
mid-save, a missing file or flipped bytes only cost the steps since the previous good checkpoint.
Pruning (``keep``) counts only complete checkpoints. Exported HF folders (``final/``, ``best/``) carry
the same manifest, checked when a model or tokenizer is loaded from them (``check_export``).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model

from corpus.manifest import file_sha256
from corpus.owner import MARKER, ForeignFilesError, folder_hint, refuse_managed, require_folder
from corpus.writers import naming, write_bytes_atomic

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "corpusforge.files/1"
REQUIRED = ("model.safetensors", "optimizer.pt", "scheduler.pt", "trainer.pt")
log = logging.getLogger("corpusforge.train")


class CheckpointError(ValueError):
    """No usable checkpoint to resume from, or an exported model folder that does not match its manifest."""


# ---------------------------------------------------------------- file manifests


def write_manifest(folder: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """List every file under ``folder`` with its size and sha256 in ``folder/manifest.json``. Call it
    last: the manifest's presence says the folder is complete."""
    files = {p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    manifest = {"format": MANIFEST_FORMAT, **(extra or {}), "files": files}
    write_bytes_atomic(folder / MANIFEST, json.dumps(manifest, indent=2).encode())
    return manifest


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest, or None when it has none of ours."""
    try:
        m = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) and m.get("format") == MANIFEST_FORMAT and isinstance(m.get("files"), dict) \
        else None


def folder_errors(folder: Path, required: tuple[str, ...] = (), hashes: bool = True) -> list[str]:
    """What is wrong with ``folder`` against its manifest (empty: intact): no manifest (an incomplete
    folder), required files it does not list, missing or resized files (a stat each), then, with
    ``hashes``, files whose sha256 differs."""
    m = read_manifest(folder)
    if m is None:
        return [f"no {MANIFEST}: incomplete (a save that did not finish, or from before manifests)"]
    files: dict[str, dict[str, Any]] = m["files"]
    errors = [f"{name} is not in its {MANIFEST}" for name in required if name not in files]
    for name, rec in files.items():
        f = folder / name
        if not f.is_file():
            errors.append(f"{name} is missing")
        elif f.stat().st_size != rec["bytes"]:
            errors.append(f"{name} has {f.stat().st_size} bytes, its {MANIFEST} records {rec['bytes']}")
    if errors or not hashes:
        return errors
    return [f"{name}: sha256 differs from its {MANIFEST} (corrupt)" for name, rec in files.items()
            if file_sha256(folder / name) != rec["sha256"]]


_checked: dict[Path, tuple | None] = {}  # folders found intact, by the state of their files: hash each once


def check_export(folder: Path) -> None:
    """Check an exported model folder (``final/``, ``best/``) against its manifest before loading it;
    CheckpointError naming the damaged files. A folder without our manifest (a model from elsewhere)
    is loaded unchecked."""
    folder = Path(folder).resolve()
    m = read_manifest(folder)
    if m is None:
        return
    try:
        state = tuple((n, (folder / n).stat().st_size, (folder / n).stat().st_mtime_ns) for n in sorted(m["files"]))
    except OSError:
        state = None
    if state is not None and _checked.get(folder) == state:
        return
    errors = folder_errors(folder)
    if errors:
        raise CheckpointError(f"{folder} does not match its {MANIFEST}: {'; '.join(errors)}; export it again "
                              "(or use another checkpoint)")
    _checked[folder] = state


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _load(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def read_trainer_state(path: Path) -> dict[str, Any]:
    return _load(path / "trainer.pt")


def find_resumable(ckpt_root: Path) -> tuple[Path | None, list[str]]:
    """The newest checkpoint whose files all match its manifest, and why each newer one was skipped
    ('step-00000006: trainer.pt is missing'). Nothing is deleted."""
    skipped = []
    for path in sorted((p for p in ckpt_root.glob("step-*") if p.is_dir()), reverse=True):
        errors = folder_errors(path, REQUIRED)
        if not errors:
            return path, skipped
        skipped.append(f"{path.name}: {'; '.join(errors[:3])}" + (f" (+{len(errors) - 3} more)" if len(errors) > 3
                                                                   else ""))
    return None, skipped


def _step(path: Path) -> int:
    return int(path.name.removeprefix("step-"))


def prune(ckpt_root: Path, keep: int, step: int) -> None:
    """Keep the newest ``keep`` complete checkpoints up to ``step``. Incomplete ones and any newer than
    ``step`` (left by an earlier attempt, so skipped as invalid when this run resumed) are not counted:
    a valid checkpoint is never deleted to make room for them."""
    done = [p for p in sorted(ckpt_root.glob("step-*")) if p.is_dir() and _step(p) <= step
            and not folder_errors(p, REQUIRED, hashes=False)]
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(ckpt_root: Path, step: int, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, trainer_state: dict[str, Any], rank: int, world: int, keep: int,
                    barrier: Any) -> Path:
    """Write a checkpoint collectively (rank 0 writes shared state, every rank its RNG)."""
    name = f"step-{step:08d}"
    tmp, final = ckpt_root / f".tmp-{name}", ckpt_root / name
    with naming(final):  # a full disk: "no space left on device writing .../step-N", not a torch traceback
        _save_checkpoint(tmp, final, ckpt_root, name, step, model=model, optimizer=optimizer, scheduler=scheduler,
                         trainer_state=trainer_state, rank=rank, world=world, keep=keep, barrier=barrier)
    return final


def _save_checkpoint(tmp: Path, final: Path, ckpt_root: Path, name: str, step: int, *, model: torch.nn.Module,
                     optimizer: torch.optim.Optimizer, scheduler: Any, trainer_state: dict[str, Any], rank: int,
                     world: int, keep: int, barrier: Any) -> None:
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    torch.save(rng_state(), tmp / f"rng-rank{rank}.pt")
    if rank == 0:
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save({**trainer_state, "world": world}, tmp / "trainer.pt")
    barrier()
    if rank == 0:
        write_manifest(tmp, {"step": step, "world": world})  # last, once every rank's files are there
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        write_bytes_atomic(ckpt_root / "latest", name.encode())
        prune(ckpt_root, keep, step)
    barrier()


def load_checkpoint(path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                    rank: int) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and this rank's RNG; returns the trainer state. ``path`` must
    have passed ``folder_errors`` (``find_resumable`` does that)."""
    missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint {path} does not match the model: missing {sorted(missing)[:5]}, "
                         f"unexpected {sorted(unexpected)[:5]}")
    optimizer.load_state_dict(_load(path / "optimizer.pt"))
    scheduler.load_state_dict(_load(path / "scheduler.pt"))
    state = _load(path / "trainer.pt")
    rng = path / f"rng-rank{rank}.pt"
    if rng.is_file():
        set_rng_state(_load(rng))
    return state


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def export_pretrained(model: torch.nn.Module, folder: Path, tokenizer: Any = None,
                      extra: dict[str, Any] | None = None) -> Path:
    """Save in HF format (config.json, model.safetensors, tokenizer files) so that
    ``AutoModelFor*.from_pretrained(folder)`` loads it. A LoRA model is saved merged (its adapter too,
    under ``adapter/``). Written beside the target, with a manifest of its files last, and swapped in, so
    a reader never sees half a model."""
    with naming(folder):  # a full disk: "no space left on device writing FOLDER", not a safetensors traceback
        return _export(unwrap(model), folder, tokenizer, extra)


def _export(model: torch.nn.Module, folder: Path, tokenizer: Any, extra: dict[str, Any] | None) -> Path:
    tmp = folder.with_name(f".tmp-{folder.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    if hasattr(model, "merge_and_unload"):  # a peft model: keep the adapter, export the merged weights
        model.save_pretrained(str(tmp / "adapter"))
        model = copy.deepcopy(model).merge_and_unload()
    model.save_pretrained(str(tmp))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(tmp))
    if extra:
        write_bytes_atomic(tmp / "corpusforge.json", json.dumps(extra, indent=2, default=str).encode())
    write_manifest(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


# ---------------------------------------------------------------- the run folder's own files

# What a training run writes at the top of its folder (trainer, report, data stats, the preference
# plugins' report and quarantine, a parallel sweep trial's log); folders are judged below.
RUN_FILES = frozenset({".lock", "metrics.jsonl", "curves.svg", "report.md", "config.json", "result.json",
                       "data_stats.json", "log.txt", "preferences.html", "preferences.json", "quarantine.parquet"})
RUN_MARKS = ("config.json", "metrics.jsonl", "data_stats.json", "result.json", "preferences.json")  # a run began
_STEP = re.compile(r"(\.tmp-)?step-\d{8}")
_CKPT_FILE = re.compile(r"model\.safetensors|optimizer\.pt|scheduler\.pt|trainer\.pt|rng-rank\d+\.pt|manifest\.json")


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if not p.is_dir() or p.is_symlink())


def _not_listed(folder: Path, fallback: re.Pattern[str] | None = None) -> list[Path]:
    """Files of an export or checkpoint folder its manifest does not list (without a manifest, an
    unfinished save: those ``fallback`` does not name)."""
    m = read_manifest(folder)
    listed = set(m["files"]) | {MANIFEST} if m is not None else None
    return [p for p in _files(folder) if (p.relative_to(folder).as_posix() not in listed if listed is not None
                                           else fallback is None or not fallback.fullmatch(p.name))]


def foreign_run_files(out: Path) -> list[str]:
    """Files in a training run's folder that no run wrote, relative to it: a run replaces or deletes its
    checkpoints/, tensorboard/, best/ and final/ (and its reports), so anything else there would be lost."""
    found: list[Path] = []
    if not any((out / name).is_file() for name in RUN_MARKS) and not (out / "checkpoints").is_dir():
        # no run has started here: a report.md or a best/ of someone else's is not the run's to replace
        return [p.relative_to(out).as_posix() for p in _files(out)
                if p.name not in (".lock", "log.txt") and not p.name.startswith(".tmp-")]
    for entry in sorted(out.iterdir()):
        name = entry.name
        if entry.is_symlink() or entry.is_file():
            if name not in RUN_FILES and not name.startswith(".tmp-"):  # write_bytes_atomic's temp files
                found.append(entry)
        elif name == "tensorboard":
            found += [p for p in _files(entry) if not p.name.startswith("events.out.tfevents.")]
        elif name == "checkpoints":
            for sub in sorted(entry.iterdir()):
                if sub.is_dir() and not sub.is_symlink() and _STEP.fullmatch(sub.name):
                    found += _not_listed(sub, _CKPT_FILE)
                elif sub.name != "latest" and not sub.name.startswith(".tmp-"):
                    found += _files(sub) if sub.is_dir() and not sub.is_symlink() else [sub]
        elif name in ("best", "final", ".tmp-best", ".tmp-final"):
            found += _not_listed(entry)
        else:
            found += _files(entry) or [entry]
    return [p.relative_to(out).as_posix() for p in found]


def check_run_folder(out: Path) -> None:
    """Refuse (ForeignFilesError) an output folder a training run may not write into: inside a corpus
    output or another command's folder (token shards, a tokenizer, a profile...), or holding files no run
    wrote, which its checkpoints, exports and reports would replace or delete (corpus/owner.py's rule)."""
    out = Path(os.path.abspath(out))
    refuse_managed(out)
    for folder in (out, *out.parents):
        hint = folder_hint(folder)
        if (folder / MARKER).is_file() or hint and not (folder / "metrics.jsonl").is_file():
            raise ForeignFilesError(f"output folder {out}: {folder} is another command's output"
                                    f"{hint or ' (a corpus: corpus run)'}; train into a folder of its own")
    require_folder(out, ForeignFilesError)
    if not out.is_dir():
        return
    foreign = foreign_run_files(out)
    if foreign:
        more = f" and {len(foreign) - 12} more" if len(foreign) > 12 else ""
        raise ForeignFilesError(f"output folder {out} holds files no training run wrote, which a run would replace "
                                f"or delete: {', '.join(foreign[:12])}{more}; move them out, or train into another "
                                "folder")
