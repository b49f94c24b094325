"""The shared trainer: one loop for every plugin, read as a torchtune recipe reads.

``fit`` resumes (or starts), then repeats ``step`` (one optimizer step), ``evaluate`` (validation,
the best model, early stopping) and ``save`` (a resumable checkpoint), and ends by exporting the final
model. What differs between plugins is the ``Task`` they hand over (``corpus.plugins.tasks``).

The loss is the mean over *all units (target tokens) of an optimizer step*: every micro-batch
contributes ``task.loss / N`` where N is ``task.count`` summed over all micro-batches of the step on all
processes. Gradient accumulation and DDP then give exactly the update of one big batch (the common
per-micro-batch mean weighs a short micro-batch's tokens more). A micro-batch with nothing to learn
from is an error, never a silent zero-loss step.

The same code runs under ``torchrun`` (``WORLD_SIZE`` > 1): DDP wrap, each process its slice of
every global batch, rank 0 logs and writes checkpoints.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from corpus.plugins import checkpoint as ckpt
from corpus.plugins.base import TrainConfig, TrainResult, shown
from corpus.plugins.runtime import Runtime
from corpus.plugins.tasks import Task
from corpus.plugins.trainlog import MetricsLog, peak_tflops, write_report
from corpus.progress import Progress
from corpus.writers import write_bytes_atomic

log = logging.getLogger("corpusforge.train")


class EmptyTargetsError(RuntimeError):
    """A micro-batch with nothing to learn from (every label -100): training on it would learn nothing."""


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite: every later step (and checkpoint) would be garbage."""


class ResumeMismatchError(ValueError):
    """The run folder's checkpoint was written with another config."""


class OutOfMemoryError(RuntimeError):
    """A step or an evaluation needed more memory than the device has: the sizes the user chose, said in
    one line (not torch's allocator traceback)."""


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is torch failing to allocate (CUDA's OutOfMemoryError, the CPU allocator's error)."""
    text = str(exc)
    return isinstance(exc, torch.OutOfMemoryError) or isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text.lower())


def check_targets(task: Task, batch: dict[str, torch.Tensor], where: str) -> int:
    n = task.count(batch)
    if n == 0:
        raise EmptyTargetsError(f"{where}: every label in the micro-batch is -100, so it has nothing to learn from. "
                                f"{task.empty_hint}".strip())
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


def parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(parameters, trainable parameters), each tensor once (tied embeddings count once)."""
    unique = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in unique), sum(p.numel() for p in unique if p.requires_grad)


# ---------------------------------------------------------------- resuming


# Keys of every plugin config that may change between a run and its continuation (length, logging,
# bookkeeping); a plugin adds its own (``TrainPlugin.resumable``).
RESUMABLE_CHANGES = ("output", "base_dir", "train.max_steps", "train.epochs", "train.eval_every",
                     "train.eval_batches", "train.save_every", "train.keep_checkpoints", "train.log_every",
                     "train.progress", "train.tensorboard", "train.resume", "train.early_stopping_patience",
                     "train.early_stopping_min_delta", "train.peak_tflops", "train.data_workers")


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d if isinstance(d, str | int | float | bool | type(None)) else json.dumps(d, default=str)}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}"))
    return out


def config_changes(old: dict[str, Any], new: dict[str, Any],
                   resumable: tuple[str, ...] = RESUMABLE_CHANGES) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k) and not k.startswith(resumable)]


# ---------------------------------------------------------------- the trainer

Hook = Callable[[int, dict[str, Any]], None]


class Trainer:
    def __init__(self, task: Task, cfg: TrainConfig, out_dir: Path, rt: Runtime, *, name: str = "",
                 run_config: dict[str, Any] | None = None, resumable: Sequence[str] = (), hooks: Sequence[Hook] = ()):
        self.task, self.cfg, self.rt, self.name, self.hooks = task, cfg, rt, name, list(hooks)
        self.out_dir = Path(out_dir)
        self.run_config = run_config or {}
        self.resumable = RESUMABLE_CHANGES + tuple(resumable)
        self.raw_model = task.model.to(rt.device)
        self.model: torch.nn.Module = self.raw_model
        if rt.world > 1:
            ids = [rt.device.index] if rt.device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(self.raw_model, device_ids=ids)
        task.start(rt, cfg)
        self.optimizer = make_optimizer(self.raw_model, cfg, rt.device)
        self.total = total_steps(cfg, task.batches_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, cfg.warmup_steps, self.total, cfg.min_lr_ratio))
        self.ckpt_root = self.out_dir / "checkpoints"
        self.global_step, self.tokens = 0, 0
        self.best: float | None = None
        self.best_step: int | None = None
        self.bad_evals, self.stopped_early = 0, False
        self.last_eval: dict[str, float] = {}
        self.skipped: list[str] = []  # newer checkpoints passed over at resume, and why
        self._window = [0, 0.0]  # tokens and seconds spent in step() since the last log line

    # ---- the loop

    def fit(self) -> TrainResult:
        resumed = self.resume()
        self.begin(resumed)
        try:
            while self.global_step < self.total and not self.stopped_early:
                try:
                    row = self.step()
                    evaluating = self.due(self.cfg.eval_every)
                    if evaluating:
                        self.evaluate()
                except RuntimeError as exc:
                    if out_of_memory(exc):
                        raise self.memory_error(exc) from exc
                    raise
                if (self.due(self.cfg.save_every) if self.cfg.save_every else evaluating) or self.stopped_early:
                    self.save()
                for hook in self.hooks:
                    hook(self.global_step, row)
        finally:
            self.progress.close()
        return self.finish(resumed)

    def memory_error(self, exc: BaseException) -> OutOfMemoryError:
        """What to change when a step ran out of memory: the micro-batch's rows and their length."""
        cfg = self.cfg
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return OutOfMemoryError(
            f"step {self.global_step + 1}: out of memory on {self.rt.device} with micro-batches of {cfg.batch_size} "
            f"rows of {self.row_tokens:,} tokens (attention grows with the square of the row length): lower "
            f"train.batch_size (raise train.grad_accum to keep the batch) or data.seq_len ({first[:200]})")

    def due(self, every: int) -> bool:
        """Every ``every`` steps (0: never), and at the last step."""
        return bool(every and self.global_step % every == 0) or self.global_step == self.total

    def step(self) -> dict[str, Any]:
        """One optimizer step over ``grad_accum`` micro-batches; returns the metrics row when it logs one."""
        cfg, rt, task = self.cfg, self.rt, self.task
        t0 = time.perf_counter()
        batches = task.next_batches(cfg.grad_accum)
        n_local = sum(check_targets(task, b, f"step {self.global_step + 1}, micro-batch {k}")
                      for k, b in enumerate(batches))
        n_global = rt.all_sum(torch.tensor([n_local], dtype=torch.float64, device=rt.device)).item()
        scale = rt.world / n_global  # DDP averages gradients over processes: undo that, divide by all
        loss_sum = torch.zeros((), dtype=torch.float32, device=rt.device)
        tokens = 0
        for k, b in enumerate(batches):
            tokens += task.tokens_in(b) * rt.world
            sync = k == len(batches) - 1 or rt.world == 1
            with nullcontext() if sync else self.model.no_sync():  # type: ignore[operator]
                with rt.autocast():
                    loss = task.loss(self.model, rt.to_device(b))
                (loss * scale).backward()
            loss_sum += loss.detach().float()
        # Checked every step, before the update and on every process alike (one sync per step): a
        # diverged run must stop, not finish with NaN weights and get ranked by a sweep.
        loss_val = rt.all_sum(loss_sum.double()).item() / n_global
        if not math.isfinite(loss_val):
            raise DivergedError(f"step {self.global_step + 1}: the training loss is {loss_val} (the run diverged: "
                                "lower train.lr or raise train.warmup_steps)")
        grad_norm = (torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), cfg.grad_clip)
                     if cfg.grad_clip > 0 else None)
        lr = self.optimizer.param_groups[0]["lr"]  # the rate this step used
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.global_step += 1
        self.tokens += tokens
        self._window[0] += tokens
        if not (self.global_step == 1 or self.due(cfg.log_every)):
            self._window[1] += time.perf_counter() - t0
            return {}
        self._window[1] += time.perf_counter() - t0
        (tokens, seconds), self._window = self._window, [0, 0.0]
        tok_s = tokens / max(seconds, 1e-9)
        row = {"loss": loss_val, "lr": lr, "grad_norm": float(grad_norm) if grad_norm is not None else None,
               "epoch": task.epochs_done, "tokens": self.tokens, "tokens_per_s": tok_s,
               "mfu": self.flops_per_token * tok_s / self.peak if self.peak else None, **task.step_metrics()}
        self.logs.write("train", self.global_step, row)
        metric = task.primary_metric
        val = f" {metric} {self.last_eval[metric]:.4g}" if metric in self.last_eval else ""
        mfu = f" mfu {row['mfu']:.1%}" if row["mfu"] is not None else ""
        self.progress.update(self.bar, self.global_step, f"loss {loss_val:.4f}{val} {tok_s:,.0f} tok/s{mfu}")
        return row

    @torch.no_grad()
    def evaluate(self) -> dict[str, float] | None:
        """Validation on every process (None without validation data); keeps the best model, counts
        evaluations without improvement, shows the task's samples. The RNG streams are untouched."""
        rt, task, model = self.rt, self.task, self.raw_model
        batches = task.eval_batches()
        if batches is None:
            return None
        model.eval()
        keys = list(task.eval_keys)
        sums = torch.zeros(len(keys), dtype=torch.float64, device=rt.device)
        with torch.random.fork_rng(devices=rt.cuda_devices()):
            for b in batches:
                with rt.autocast():
                    got = task.eval_sums(model, rt.to_device(b))
                sums += torch.stack([got[k].double() for k in keys])
            rt.all_sum(sums)
            metrics = task.metrics(dict(zip(keys, sums.tolist(), strict=True)))
            extra = task.samples(model) if metrics and rt.is_main else {}
        model.train()
        if not metrics:
            return None
        self.last_eval = metrics
        self.logs.write("eval", self.global_step, {**metrics, **extra})
        self.progress.log(f"step {self.global_step}: " + " ".join(
            f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float)))
        val = metrics["val_loss"]
        if not math.isfinite(val):  # never the best model; counts as an evaluation without improvement
            log.warning("step %d: val_loss is %s", self.global_step, val)
        if math.isfinite(val) and (self.best is None or val < self.best - self.cfg.early_stopping_min_delta):
            self.best, self.best_step, self.bad_evals = val, self.global_step, 0
            if rt.is_main:
                task.export(model, self.out_dir / "best", {"step": self.global_step, **metrics, "plugin": self.name})
        else:
            self.bad_evals += 1
        if 0 < self.cfg.early_stopping_patience <= self.bad_evals:
            self.stopped_early = True
            self.progress.log(f"early stop at step {self.global_step}: no improvement in {self.bad_evals} evaluations")
        if rt.is_main:
            write_report(self.out_dir, self.logs, {"plugin": self.name, "step": self.global_step, **metrics})
        return metrics

    def save(self) -> None:
        """A resumable checkpoint of this step (every process takes part)."""
        ckpt.save_checkpoint(self.ckpt_root, self.global_step, model=self.raw_model, optimizer=self.optimizer,
                             scheduler=self.scheduler, trainer_state=self.state(), rank=self.rt.rank,
                             world=self.rt.world, keep=self.cfg.keep_checkpoints, barrier=self.rt.barrier)

    # ---- state

    def state(self) -> dict[str, Any]:
        return {"step": self.global_step, "tokens": self.tokens, "best": self.best, "best_step": self.best_step,
                "bad_evals": self.bad_evals, "data": self.task.state_dict(), "total": self.total,
                # a rerun of a finished run must neither train on past an early stop nor forget its metrics
                "stopped_early": self.stopped_early, "last_eval": self.last_eval,
                "config": flatten(self.run_config)}

    def resume(self) -> int | None:
        """Continue from the newest intact checkpoint (the step it was taken at), or start afresh (None)."""
        found, skipped = None, []
        if self.cfg.resume and self.rt.is_main:  # rank 0 checks the files, every rank loads the same one
            path, skipped = ckpt.find_resumable(self.ckpt_root)
            found = None if path is None else path.name
        found, self.skipped = self.rt.broadcast([found, skipped])
        if found is None and self.skipped:  # never start over silently on top of a run's checkpoints
            raise ckpt.CheckpointError(
                f"no usable checkpoint in {self.ckpt_root}: {' | '.join(self.skipped)}. Nothing was deleted: "
                "restore one, or start over with --fresh (train.resume: false), which deletes them")
        if found is None:
            if self.rt.is_main:  # a fresh run: nothing of an earlier one may leak into it (all of it the
                # run's own: TrainPlugin.run refused a folder holding anything else); a run without
                # validation data never rewrites best/, so the old run's must go too
                for name in ("checkpoints", "tensorboard", "best", "final"):
                    shutil.rmtree(self.out_dir / name, ignore_errors=True)
                (self.out_dir / "result.json").unlink(missing_ok=True)
            self.rt.barrier()
            torch.manual_seed(self.cfg.seed + 1000 * self.rt.rank)  # distinct dropout per process
            return None
        path = self.ckpt_root / found
        saved = ckpt.read_trainer_state(path)
        old_config = saved.get("config", {})
        theirs, ours = old_config.get("plugin"), flatten(self.run_config).get("plugin")
        if theirs and ours and theirs != ours:  # not "a different config": every key of another plugin differs
            raise ResumeMismatchError(f"{shown(self.out_dir)} holds another plugin's run, {theirs} (checkpoints of "
                                      f"`corpus train {theirs}`), not {ours}: use another output folder, or --fresh "
                                      "(train.resume: false) to delete that run and start over there")
        changed = config_changes(old_config, flatten(self.run_config), self.resumable)
        if changed:
            raise ResumeMismatchError(f"{self.out_dir} holds a checkpoint of a different config (changed: "
                                      f"{', '.join(changed[:8])}): use another output folder, or train.resume: "
                                      "false to start over there")
        done = int(saved.get("step", 0))
        if done > self.total:  # it trained nothing, showed 30/10 steps and said "done: 30 steps"
            asked = ("train.max_steps, --max-steps" if self.cfg.max_steps > 0 else
                     f"train.epochs {self.cfg.epochs:g} of this data, as train.max_steps is 0")
            more = "more steps" if self.cfg.max_steps > 0 else "more epochs (or train.max_steps)"
            raise ResumeMismatchError(
                f"{shown(self.out_dir)} holds a run already at step {done}, past the {self.total} steps asked "
                f"({asked}): its model is {shown(self.out_dir / 'final')}. Ask for {more} to train on, or use "
                "another output folder (or --fresh, which deletes that run) for a shorter run")
        st = ckpt.load_checkpoint(path, model=self.raw_model, optimizer=self.optimizer, scheduler=self.scheduler,
                                  rank=self.rt.rank)
        self.global_step, self.tokens, self.best, self.best_step = st["step"], st["tokens"], st["best"], st["best_step"]
        self.bad_evals = st["bad_evals"]
        self.stopped_early, self.last_eval = st.get("stopped_early", False), st.get("last_eval", {})
        self.task.load_state_dict(st["data"])
        return self.global_step

    # ---- start and end

    def begin(self, resumed: int | None) -> None:
        """Metrics log, progress display and the start banner."""
        main, cfg = self.rt.is_main, self.cfg
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.row_tokens = self.task.tokens_in(self.task.collate_fn([self.task.train[(0, 0)]]))  # one row's
        self.logs = MetricsLog(self.out_dir, enabled=main, tensorboard=cfg.tensorboard, resume_step=resumed)
        if main:
            write_bytes_atomic(self.out_dir / "config.json",
                               json.dumps(self.run_config, indent=2, default=str).encode())
        self.progress = Progress(quiet=not main, bars=cfg.progress, logger=log).start()
        for why in self.skipped if main else []:
            log.warning("skipped checkpoint %s; kept for inspection", why)
        for line in self.banner() if main else []:
            self.progress.log(line)
        if resumed is not None:
            self.progress.log(f"resumed from step {resumed} ({shown(self.ckpt_root / f'step-{resumed:08d}')}: the "
                              "newest checkpoint whose files match its manifest)")
        self.peak = peak_tflops(self.rt.device, cfg.peak_tflops) * 1e12 * self.rt.world
        self.flops_per_token = self.task.flops_per_token()
        self.raw_model.train()
        self.bar = self.progress.add("step", total=self.total, completed=self.global_step)

    def banner(self) -> list[str]:
        """What is about to happen: the model's size, tokens per step, steps, where the models go."""
        cfg, rt, task, model = self.cfg, self.rt, self.task, self.raw_model
        n, trainable = parameters(model)
        kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        size = f"{n:,} parameters" + (f" ({trainable:,} trained)" if trainable != n else "")
        where = f"{rt.device}" + (" bf16" if rt.bf16 else "") + (f" x {rt.world} processes" if rt.world > 1 else "")
        row = self.row_tokens
        rows = cfg.batch_size * cfg.grad_accum * rt.world
        epochs = self.total * cfg.grad_accum / task.batches_per_epoch
        every = cfg.save_every or cfg.eval_every
        return [f"{self.name or 'training'}: {kind}, {size}, on {where}",
                f"{self.total:,} steps of {rows * row:,} tokens ({cfg.batch_size} rows x {row} tokens x "
                f"{cfg.grad_accum} accumulated x {rt.world} processes): {self.total * rows * row:,} tokens, "
                f"{epochs:.2f} epochs",
                f"checkpoints: {shown(self.ckpt_root)}/ ({f'every {every} steps and ' if every else ''}at the end); "
                f"best model: {shown(self.out_dir / 'best')}/; final model: {shown(self.out_dir / 'final')}/"]

    def finish(self, resumed: int | None) -> TrainResult:
        """Export the final model, write the report and result.json."""
        main, final_dir = self.rt.is_main, self.out_dir / "final"
        summary = {"plugin": self.name, "steps": self.global_step, "tokens": self.tokens, "best_val_loss": self.best,
                   "best_step": self.best_step, "stopped_early": self.stopped_early, **self.last_eval}
        if main:
            self.task.export(self.raw_model, final_dir, {"step": self.global_step, **self.last_eval,
                                                         "plugin": self.name})
            write_report(self.out_dir, self.logs, summary)
        self.logs.close()
        self.rt.barrier()
        result = TrainResult(out_dir=self.out_dir, steps=self.global_step, tokens=self.tokens, best_val_loss=self.best,
                             final_metrics=self.last_eval, final_dir=final_dir,
                             best_dir=self.out_dir / "best" if self.best is not None else None,
                             stopped_early=self.stopped_early, resumed_from=resumed)
        if main:
            write_bytes_atomic(self.out_dir / "result.json", json.dumps(result.to_json(), indent=2).encode())
        return result
