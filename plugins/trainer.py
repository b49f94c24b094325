"""The shared trainer: one loop for every plugin, nanoGPT-style and readable top to bottom.

A plugin builds a ``Task`` (the model, a resumable train ``BatchIterator``, validation batches and
a ``forward`` that returns logits and aligned labels) and calls ``Trainer(task, cfg, out_dir, rt).fit()``.

The loss is the mean over *all target tokens of an optimizer step*: every micro-batch contributes
``sum(token losses) / N`` where N counts the targets of all micro-batches of the step on all
processes. Gradient accumulation and DDP then give exactly the update of one big batch (the common
per-micro-batch mean weighs a short micro-batch's tokens more). A micro-batch with no target at all
is an error, never a silent zero-loss step.

The same code runs under ``torchrun`` (``WORLD_SIZE`` > 1): DDP wrap, each process its slice of
every global batch, rank 0 logs and writes checkpoints.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from corpus.plugins import checkpoint as ckpt
from corpus.plugins.base import TrainConfig, TrainResult
from corpus.plugins.packing import IGNORE, BatchIterator, count_targets
from corpus.plugins.trainlog import MetricsLog, Progress, log, peak_tflops, write_report


class EmptyTargetsError(RuntimeError):
    """A micro-batch whose labels are all -100: training on it would silently learn nothing."""


class ResumeMismatchError(ValueError):
    """The run folder's checkpoint was written with another config."""


# ---------------------------------------------------------------- runtime: device, processes, seeds


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda"
                                            and torch.cuda.is_bf16_supported())
        seed_everything(cfg.seed)
        return cls(device=device, rank=rank, world=world, bf16=bf16, owns_group=owns)

    def autocast(self) -> Any:
        if not self.bf16:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

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


# ---------------------------------------------------------------- the task a plugin hands the trainer


class Task:
    """What differs between plugins. Subclasses set ``model``, ``train_data`` and override ``forward``."""

    model: torch.nn.Module
    train_data: BatchIterator
    tokenizer: Any = None
    primary_metric = "val_loss"  # shown in the progress line and the report

    def forward(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [B, T, V], labels [B, T] with -100 where there is no target) for a batch on the device."""
        raise NotImplementedError

    def eval_data(self) -> Iterable[dict[str, torch.Tensor]] | None:
        """This process's validation batches for one evaluation, or None without validation data."""
        return None

    def eval_metrics(self, loss: float, accuracy: float) -> dict[str, float]:
        """Extra metrics derived from the validation loss and token accuracy (perplexity, ...)."""
        return {}

    def on_evaluate(self, model: torch.nn.Module) -> dict[str, Any]:
        """Called on rank 0 after each evaluation (sample generations, ...)."""
        return {}

    def tokens_in(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["input_ids"].numel())

    def flops_per_token(self) -> float:
        """Training FLOPs per input token: 6 N (forward 2N + backward 4N, N = matmul parameters)."""
        return 6.0 * matmul_params(ckpt.unwrap(self.model))

    def export(self, model: torch.nn.Module, folder: Path, extra: dict[str, Any]) -> None:
        ckpt.export_pretrained(model, folder, self.tokenizer, extra)


def matmul_params(model: torch.nn.Module) -> int:
    """Parameters that take part in matmuls: all but embedding tables, except an output head tied
    to the input embedding (which is a matmul)."""
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    head = {id(out.weight)} if out is not None and hasattr(out, "weight") else set()
    emb = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    seen: set[int] = set()
    n = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if id(p) not in emb or id(p) in head:
            n += p.numel()
    return n


def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of cross-entropy over target positions (labels != -100)."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE,
                           reduction="sum")


def check_targets(batch: dict[str, torch.Tensor], where: str) -> int:
    n = count_targets(batch)
    if n == 0:
        raise EmptyTargetsError(
            f"{where}: every label in the micro-batch is -100, so it has nothing to learn from. For SFT this "
            "means the assistant mask is empty: check `train_on`, the chat template's assistant turns, and "
            "whether truncation (data.seq_len) cut every reply off.")
    return n


# ---------------------------------------------------------------- optimizer and schedule


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]  # matrices and embeddings; not biases or norm gains
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    extra = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.betas[0], cfg.betas[1]), eps=cfg.eps, **extra)


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine from 1 down to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def total_steps(cfg: TrainConfig, micro_batches_per_epoch: int) -> int:
    if cfg.max_steps > 0:
        return cfg.max_steps
    return max(1, int(cfg.epochs * micro_batches_per_epoch) // cfg.grad_accum)


# ---------------------------------------------------------------- the loop


Hook = Callable[[int, dict[str, Any]], None]

# Keys that may change between a run and its resumption (length, logging, bookkeeping).
RESUMABLE_CHANGES = ("output", "base_dir", "train.max_steps", "train.epochs", "train.eval_every",
                     "train.eval_batches", "train.save_every", "train.keep_checkpoints", "train.log_every",
                     "train.progress", "train.tensorboard", "train.resume", "train.early_stopping_patience",
                     "train.early_stopping_min_delta", "train.peak_tflops", "samples.")


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d if isinstance(d, str | int | float | bool | type(None)) else json.dumps(d, default=str)}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}"))
    return out


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k) and not k.startswith(RESUMABLE_CHANGES)]


class Trainer:
    def __init__(self, task: Task, cfg: TrainConfig, out_dir: Path, rt: Runtime, *,
                 run_config: dict[str, Any] | None = None, hooks: Sequence[Hook] = ()):
        self.task, self.cfg, self.rt, self.hooks = task, cfg, rt, list(hooks)
        self.out_dir = Path(out_dir)
        self.run_config = run_config or {}
        self.raw_model = task.model.to(rt.device)
        self.model: torch.nn.Module = self.raw_model
        if rt.world > 1:
            ids = [rt.device.index] if rt.device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(self.raw_model, device_ids=ids)
        self.optimizer = make_optimizer(self.raw_model, cfg, rt.device)
        self.total = total_steps(cfg, task.train_data.per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, cfg.warmup_steps, self.total, cfg.min_lr_ratio))
        self.ckpt_root = self.out_dir / "checkpoints"
        self.step = 0
        self.tokens = 0
        self.best: float | None = None
        self.best_step: int | None = None
        self.bad_evals = 0
        self.skipped: list[str] = []  # newer checkpoints passed over at resume, and why

    # ---- state

    def _state(self) -> dict[str, Any]:
        return {"step": self.step, "tokens": self.tokens, "best": self.best, "best_step": self.best_step,
                "bad_evals": self.bad_evals, "data": self.task.train_data.state_dict(), "total": self.total,
                "config": flatten(self.run_config)}

    def _resume(self) -> int | None:
        found, skipped = None, []
        if self.cfg.resume and self.rt.is_main:  # rank 0 checks the files, every rank loads the same one
            path, skipped = ckpt.find_resumable(self.ckpt_root)
            found = None if path is None else path.name
        found, self.skipped = self.rt.broadcast([found, skipped])
        if found is None and self.skipped:  # never start over silently on top of a run's checkpoints
            raise ckpt.CheckpointError(
                f"no usable checkpoint in {self.ckpt_root}: {' | '.join(self.skipped)}. Nothing was deleted: "
                "restore one, or start over with --fresh (train.resume: false), which deletes them")
        path = None if found is None else self.ckpt_root / found
        if path is None:
            if self.rt.is_main:  # a fresh run: nothing of an earlier one may leak into it
                shutil.rmtree(self.ckpt_root, ignore_errors=True)
                shutil.rmtree(self.out_dir / "tensorboard", ignore_errors=True)
            self.rt.barrier()
            torch.manual_seed(self.cfg.seed + 1000 * self.rt.rank)  # distinct dropout per process
            return None
        changed = config_changes(ckpt.read_trainer_state(path).get("config", {}), flatten(self.run_config))
        if changed:
            raise ResumeMismatchError(f"{self.out_dir} holds a checkpoint of a different config (changed: "
                             f"{', '.join(changed[:8])}): use another output folder, or train.resume: false to "
                             "start over there")
        st = ckpt.load_checkpoint(path, model=self.raw_model, optimizer=self.optimizer, scheduler=self.scheduler,
                                  rank=self.rt.rank)
        self.step, self.tokens, self.best, self.best_step = st["step"], st["tokens"], st["best"], st["best_step"]
        self.bad_evals = st["bad_evals"]
        self.task.train_data.load_state_dict(st["data"])
        return self.step

    def _save(self) -> None:
        ckpt.save_checkpoint(self.ckpt_root, self.step, model=self.raw_model, optimizer=self.optimizer,
                             scheduler=self.scheduler, trainer_state=self._state(), rank=self.rt.rank,
                             world=self.rt.world, keep=self.cfg.keep_checkpoints, barrier=self.rt.barrier)

    # ---- evaluation

    def _cuda_devices(self) -> list[torch.device]:
        return [self.rt.device] if self.rt.device.type == "cuda" else []

    @torch.no_grad()
    def evaluate(self) -> dict[str, float] | None:
        batches = self.task.eval_data()
        if batches is None:
            return None
        self.raw_model.eval()
        sums = torch.zeros(3, dtype=torch.float64, device=self.rt.device)  # loss, targets, correct
        with torch.random.fork_rng(devices=self._cuda_devices()):
            for b in batches:
                b = {k: v.to(self.rt.device, non_blocking=True) for k, v in b.items()}
                with self.rt.autocast():
                    logits, labels = self.task.forward(self.raw_model, b)
                    loss = token_loss(logits, labels)
                keep = labels != IGNORE
                sums += torch.stack([loss.double(), keep.sum().double(),
                                     (logits.argmax(-1).eq(labels) & keep).sum().double()])
        self.rt.all_sum(sums)
        self.raw_model.train()
        loss_sum, n, correct = sums.tolist()
        if n == 0:
            return None
        val = {"val_loss": loss_sum / n, "val_acc": correct / n, "val_tokens": int(n)}
        val.update(self.task.eval_metrics(val["val_loss"], val["val_acc"]))
        return val

    # ---- training

    def fit(self) -> TrainResult:
        cfg, rt, task = self.cfg, self.rt, self.task
        self.out_dir.mkdir(parents=True, exist_ok=True)
        resumed = self._resume()
        main = rt.is_main
        logs = MetricsLog(self.out_dir, enabled=main, tensorboard=cfg.tensorboard, resume_step=resumed)
        if main:
            (self.out_dir / "config.json").write_text(json.dumps(self.run_config, indent=2, default=str))
        bar = Progress(self.total, self.step, enabled=main, bar=cfg.progress)
        for why in self.skipped if main else []:
            log.warning("skipped checkpoint %s; kept for inspection", why)
        if resumed is not None:
            bar.message(f"resumed from step {resumed} ({self.ckpt_root / f'step-{resumed:08d}'}: the newest "
                        "checkpoint whose files match its manifest)")
        peak = peak_tflops(rt.device, cfg.peak_tflops) * 1e12 * rt.world
        flops_tok = task.flops_per_token()
        self.raw_model.train()
        stopped_early = False
        last_eval: dict[str, float] = {}
        window_tokens, window_t = 0, time.perf_counter()
        try:
            while self.step < self.total:
                # -- one optimizer step over grad_accum micro-batches
                batches = [next(task.train_data) for _ in range(cfg.grad_accum)]
                n_local = sum(check_targets(b, f"step {self.step + 1}, micro-batch {k}")
                              for k, b in enumerate(batches))
                n_global = rt.all_sum(torch.tensor([n_local], dtype=torch.float64, device=rt.device)).item()
                scale = rt.world / n_global  # DDP averages gradients over processes: undo that, divide by all
                loss_sum = torch.zeros((), dtype=torch.float32, device=rt.device)
                for k, b in enumerate(batches):
                    self.tokens += task.tokens_in(b) * rt.world
                    window_tokens += task.tokens_in(b) * rt.world
                    b = {key: v.to(rt.device, non_blocking=True) for key, v in b.items()}
                    sync = k == len(batches) - 1 or rt.world == 1
                    with nullcontext() if sync else self.model.no_sync():  # type: ignore[operator]
                        with rt.autocast():
                            logits, labels = task.forward(self.model, b)
                            loss = token_loss(logits, labels)
                        (loss * scale).backward()
                    loss_sum += loss.detach().float()
                grad_norm = (torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), cfg.grad_clip)
                             if cfg.grad_clip > 0 else None)
                lr = self.optimizer.param_groups[0]["lr"]  # the rate this step used
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1

                # -- log
                row: dict[str, Any] = {}
                if self.step % cfg.log_every == 0 or self.step == self.total:
                    loss_val = rt.all_sum(loss_sum.double()).item() / n_global
                    elapsed = max(time.perf_counter() - window_t, 1e-9)
                    tok_s = window_tokens / elapsed
                    row = {"loss": loss_val, "lr": lr,
                           "grad_norm": float(grad_norm) if grad_norm is not None else None,
                           "epoch": task.train_data.epochs_done, "tokens": self.tokens,
                           "tokens_per_s": tok_s, "mfu": flops_tok * tok_s / peak if peak else None}
                    logs.write("train", self.step, row)
                    window_tokens, window_t = 0, time.perf_counter()
                    mfu = f" mfu {row['mfu']:.1%}" if row["mfu"] is not None else ""
                    val = f" {task.primary_metric} {last_eval[task.primary_metric]:.4g}" if last_eval else ""
                    bar.update(self.step, f"loss {loss_val:.4f}{val} {tok_s:,.0f} tok/s{mfu}")

                # -- evaluate, keep the best, maybe stop (none of it counts as training throughput)
                paused = time.perf_counter()
                do_eval = (cfg.eval_every and self.step % cfg.eval_every == 0) or self.step == self.total
                if do_eval:
                    metrics = self.evaluate()
                    if metrics is not None:
                        last_eval = metrics
                        extra: dict[str, Any] = {}
                        if main:  # generation must not move the training RNG streams
                            with torch.random.fork_rng(devices=self._cuda_devices()):
                                extra = task.on_evaluate(self.raw_model)
                        logs.write("eval", self.step, {**metrics, **extra})
                        bar.message(f"step {self.step}: " + " ".join(
                            f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float)))
                        if self.best is None or metrics["val_loss"] < self.best - cfg.early_stopping_min_delta:
                            self.best, self.best_step, self.bad_evals = metrics["val_loss"], self.step, 0
                            if main:
                                task.export(self.raw_model, self.out_dir / "best",
                                            {"step": self.step, **metrics, "plugin": self.run_config.get("plugin")})
                        else:
                            self.bad_evals += 1
                        stopped_early = 0 < cfg.early_stopping_patience <= self.bad_evals
                    if main:
                        write_report(self.out_dir, logs, {"plugin": self.run_config.get("plugin"),
                                                          "step": self.step, **last_eval})
                if (cfg.save_every and self.step % cfg.save_every == 0) or (not cfg.save_every and do_eval) \
                        or self.step == self.total or stopped_early:
                    self._save()
                window_t += time.perf_counter() - paused
                for hook in self.hooks:
                    hook(self.step, row)
                if stopped_early:
                    bar.message(f"early stop at step {self.step}: no improvement in {self.bad_evals} evaluations")
                    break
        finally:
            bar.close()
        final_dir = self.out_dir / "final"
        summary = {"plugin": self.run_config.get("plugin"), "steps": self.step, "tokens": self.tokens,
                   "best_val_loss": self.best, "best_step": self.best_step, "stopped_early": stopped_early,
                   **last_eval}
        if main:
            task.export(self.raw_model, final_dir, {"step": self.step, **last_eval,
                                                    "plugin": self.run_config.get("plugin")})
            write_report(self.out_dir, logs, summary)
        logs.close()
        rt.barrier()
        result = TrainResult(out_dir=self.out_dir, steps=self.step, tokens=self.tokens, best_val_loss=self.best,
                             final_metrics=last_eval, final_dir=final_dir,
                             best_dir=self.out_dir / "best" if self.best is not None else None,
                             stopped_early=stopped_early, resumed_from=resumed)
        if main:
            (self.out_dir / "result.json").write_text(json.dumps(result.to_json(), indent=2))
        return result
