"""Resumable checkpoints and HF exports.

A checkpoint folder ``checkpoints/step-00000120/`` holds:

* ``model.safetensors``: every parameter and buffer (LoRA adapters included), via safetensors;
* ``optimizer.pt``, ``scheduler.pt``, ``trainer.pt``: state dicts of tensors and primitives only,
  read back with ``torch.load(weights_only=True)``: nothing is unpickled as code;
* ``rng-rank<R>.pt``: each process's python, numpy, torch and CUDA generator states.

It is written under a temporary name and renamed, then ``checkpoints/latest`` is updated: a run
killed mid-save resumes from the previous checkpoint.
"""

from __future__ import annotations

import copy
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model

from corpus.writers import write_bytes_atomic


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


def latest(ckpt_root: Path) -> Path | None:
    marker = ckpt_root / "latest"
    if not marker.is_file():
        return None
    path = ckpt_root / marker.read_text().strip()
    return path if (path / "trainer.pt").is_file() else None


def save_checkpoint(ckpt_root: Path, step: int, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, trainer_state: dict[str, Any], rank: int, world: int, keep: int,
                    barrier: Any) -> Path:
    """Write a checkpoint collectively (rank 0 writes shared state, every rank its RNG)."""
    name = f"step-{step:08d}"
    tmp, final = ckpt_root / f".tmp-{name}", ckpt_root / name
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    torch.save(rng_state(), tmp / f"rng-rank{rank}.pt")
    if rank == 0:
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save({**trainer_state, "world": world}, tmp / "trainer.pt")  # last: its presence marks completeness
    barrier()
    if rank == 0:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        write_bytes_atomic(ckpt_root / "latest", name.encode())
        steps = sorted(p for p in ckpt_root.glob("step-*") if p.is_dir())
        for old in steps[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def load_checkpoint(path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                    rank: int) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and this rank's RNG; returns the trainer state."""
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
    under ``adapter/``). Written beside the target and swapped in, so a reader never sees half a model."""
    model = unwrap(model)
    tmp = folder.with_name(f".tmp-{folder.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    if hasattr(model, "merge_and_unload"):  # a peft model: keep the adapter, export the merged weights
        model.save_pretrained(str(tmp / "adapter"))
        model = copy.deepcopy(model).merge_and_unload()
    model.save_pretrained(str(tmp))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(tmp))
    if extra:
        import json

        write_bytes_atomic(tmp / "corpusforge.json", json.dumps(extra, indent=2, default=str).encode())
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder
