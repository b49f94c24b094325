"""Where a training run executes: the device, the processes of a torchrun job, seeds and precision."""

from __future__ import annotations

import os
import random
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from corpus.plugins.base import PluginInputError, TrainConfig


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def deterministic_kernels() -> None:
    """Deterministic kernels where torch has them (a warning where it has not). torch's public switch also
    sets its compiler's flag, importing torch._inductor for it: 2.5 s of every training command's start on
    torch 2.13, for a compiler no plugin calls. The kernels' switch beneath it is set alone, unless the
    compiler is loaded already (then its flag is set too)."""
    if "torch._inductor" in sys.modules or not hasattr(torch._C, "_set_deterministic_algorithms"):
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch._C._set_deterministic_algorithms(True, warn_only=True)


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1
    bf16: bool = False
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def create(cls, cfg: TrainConfig) -> Runtime:
        """Pick the device, join the process group under torchrun, seed everything, set determinism."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():  # was an AttributeError deep in torch
            why = "this PyTorch is built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise PluginInputError(f"train.device {cfg.device!r}: {why}; use 'auto' (a GPU when there is one) or 'cpu'")
        want_cuda = cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())
        if want_cuda and cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # must precede the first cuBLAS call
        if cfg.device == "auto":
            device = torch.device(f"cuda:{local}" if want_cuda else "cpu")
        else:
            device = torch.device(cfg.device)
            if device.type == "cuda" and device.index is None:
                device = torch.device(f"cuda:{local}")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        owns = False
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            owns = True
        rank = dist.get_rank() if world > 1 else 0
        if cfg.deterministic:
            deterministic_kernels()
            torch.backends.cudnn.benchmark = False
        bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda"
                                            and torch.cuda.is_bf16_supported())
        seed_everything(cfg.seed)
        return cls(device=device, rank=rank, world=world, bf16=bf16, owns_group=owns)

    def autocast(self) -> Any:
        if not self.bf16:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def cuda_devices(self) -> list[torch.device]:
        """The devices whose RNG ``torch.random.fork_rng`` must save besides the CPU's."""
        return [self.device] if self.device.type == "cuda" else []

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process (plain data: strings, lists)."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
