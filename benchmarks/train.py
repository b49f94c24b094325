"""Pretraining throughput: the trainer beside a bare PyTorch loop on the same model, batches and data.

Bare loop: forward, mean cross-entropy, backward, AdamW step, on micro-batches materialised in
memory beforehand. Ours: ``corpus train pretrain`` (the Trainer: rows read from memory-mapped shards
each step, target counting, global-token normalisation, grad clipping, LR schedule, logging).
Both start from the same seed, so they compute the same updates. Each is timed over the steps after
``--warmup``; runs alternate (bare, ours, bare, ours, ...) and the best of each is kept. Goal: ours
>= 0.95x the bare loop's tokens/s. MFU is 6·N·tok/s over the device's peak (``plugins/trainlog.py``:
a datasheet figure per GPU, a rough guess on CPU).

On CPU the comparison uses one thread (``--threads``) and tokens per CPU-second of the process: on a
machine shared with other jobs wall time swings by several x from run to run, while the CPU time a
single-threaded process spends is what it would take on a core of its own. Wall tokens/s is shown
beside it. On a GPU the figures are wall-clock.

    .venv/bin/python -m benchmarks train                    # defaults: a CPU-sized model
    .venv/bin/python -m benchmarks.train --hidden 1024 --layers 12 --seq 1024 --batch 8   # on a GPU
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from benchmarks.common import WORK, table


def make_tokens(folder: Path, vocab: int, n_docs: int = 3000, seed: int = 0) -> Path:
    """Random-token documents (throughput does not depend on the text), EOD-terminated."""
    from corpus.shards import write_documents

    if (folder / "train.json").exists():
        return folder
    rng = np.random.default_rng(seed)
    docs = [np.append(rng.integers(2, vocab, size=int(rng.integers(50, 800))), 0) for _ in range(n_docs)]
    meta = {"eod_id": 0, "special_token_ids": {"<|endoftext|>": 0, "<|pad|>": 1}, "eod_appended": True}
    write_documents(folder / "train", docs, vocab, meta=meta)
    return folder


def config(args: argparse.Namespace, tokens: Path, out: Path):  # -> PretrainConfig
    from corpus.plugins.base import parse_config
    from corpus.plugins.pretrain import PretrainConfig

    data = {"output": str(out), "samples": {"count": 0},
            "model": {"arch": "llama", "hidden_size": args.hidden, "layers": args.layers, "heads": args.heads},
            "data": {"train": str(tokens / "train"), "seq_len": args.seq},
            "train": {"lr": 3e-4, "max_steps": args.steps, "batch_size": args.batch, "eval_every": 0,
                      "log_every": 10, "progress": False, "tensorboard": False, "warmup_steps": 5,
                      "grad_clip": 1.0, "precision": args.precision}}
    return parse_config(PretrainConfig, data, source="benchmark")


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _rates(tokens: int, start: tuple[float, float], end: tuple[float, float]) -> tuple[float, float]:
    """(tokens per wall second, tokens per CPU second)."""
    return tokens / (end[0] - start[0]), tokens / (end[1] - start[1])


def build(cfg):  # noqa: ANN001, ANN201
    """The pretrain plugin's runtime and task for ``cfg``."""
    from corpus.plugins.pretrain import Pretrain
    from corpus.plugins.runtime import Runtime

    rt = Runtime.create(cfg.train)
    return rt, Pretrain().build(cfg, rt)


def run_ours(cfg, warmup: int) -> tuple[float, float]:  # noqa: ANN001
    """Tokens/s of the Trainer over steps warmup+1 .. steps-1 (the last step also evaluates and saves)."""
    from corpus.plugins.trainer import Trainer

    rt, task = build(cfg)
    marks: dict[int, tuple[float, float]] = {}
    Trainer(task, cfg.train, Path(cfg.output), rt, hooks=[lambda step, _: marks.__setitem__(step, _clock())]).fit()
    steps = cfg.train.max_steps - 1 - warmup
    return _rates(steps * cfg.train.batch_size * cfg.data.seq_len, marks[warmup], marks[cfg.train.max_steps - 1])


def run_bare(cfg, warmup: int) -> tuple[float, float, float]:  # noqa: ANN001
    """(wall tokens/s, CPU tokens/s, training FLOPs per token) of a plain loop on the same model and batches."""
    import torch
    import torch.nn.functional as F

    from corpus.plugins.data import TrainLoader
    from corpus.plugins.tasks import matmul_params

    rt, task = build(cfg)
    model = task.model.to(rt.device).train()
    rows = TrainLoader(task.train, cfg.train.batch_size, seed=cfg.train.seed)
    batches = [{k: v.to(rt.device) for k, v in next(rows).items()} for _ in range(cfg.train.max_steps)]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, betas=(0.9, 0.95), weight_decay=0.1,
                            **({"fused": True} if rt.device.type == "cuda" else {}))
    sync = torch.cuda.synchronize if rt.device.type == "cuda" else (lambda: None)
    t0 = _clock()
    for i, b in enumerate(batches[:-1]):
        if i == warmup:
            sync()
            t0 = _clock()
        with rt.autocast():
            logits = model(input_ids=b["input_ids"], position_ids=b["position_ids"], use_cache=False).logits
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), b["labels"].view(-1), ignore_index=-100)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    loss.item()
    sync()
    steps = len(batches) - 1 - warmup
    wall, cpu = _rates(steps * cfg.train.batch_size * cfg.data.seq_len, t0, _clock())
    return wall, cpu, 6.0 * matmul_params(model)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks train")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--precision", default="auto")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from corpus.plugins.runtime import Runtime
    from corpus.plugins.trainlog import peak_tflops

    tokens = make_tokens(WORK / f"train-tokens-{args.vocab}", args.vocab)
    out = WORK / "train-run"
    cfg = config(args, tokens, out)
    device = Runtime.create(cfg.train).device
    cpu = device.type == "cpu"
    bare: list[tuple[float, float]] = []
    ours: list[tuple[float, float]] = []
    for _ in range(args.repeats):
        wall, per_cpu, flops_tok = run_bare(cfg, args.warmup)
        bare.append((wall, per_cpu))
        shutil.rmtree(out, ignore_errors=True)
        ours.append(run_ours(cfg, args.warmup))
    shutil.rmtree(out, ignore_errors=True)
    peak = peak_tflops(device, cfg.train.peak_tflops) * 1e12
    where = f"cpu, {torch.get_num_threads()} thread(s)" if cpu else torch.cuda.get_device_name(device)
    model = f"llama h{args.hidden} L{args.layers}, {flops_tok / 6 / 1e6:.1f}M matmul params"
    key = 1 if cpu else 0  # the figure compared: tokens per CPU second on CPU, per wall second on GPU
    rows = []
    for name, vals in (("bare PyTorch loop", bare), ("corpus train pretrain", ours)):
        best = max(v[key] for v in vals)
        rows.append({"path": name, "model": model, "batch x seq": f"{args.batch} x {args.seq}",
                     "tokens/s": f"{best:,.0f}", "MFU": f"{flops_tok * best / peak:.1%}",
                     "runs": " ".join(f"{v[key]:,.0f}" for v in vals),
                     "wall tokens/s": f"{max(v[0] for v in vals):,.0f}", "_best": best})
    ratios = sorted(o[key] / b[key] for b, o in zip(bare, ours, strict=True))  # run pairs, adjacent in time
    rows[1]["vs bare"] = (f"{rows[1]['_best'] / rows[0]['_best']:.3f}x best/best, "
                          f"{ratios[len(ratios) // 2]:.3f}x median pair (goal >= 0.95x)")
    basis = "tokens per CPU second (1 process)" if cpu else "tokens per wall second"
    print(f"device: {where}; tokens/s = {basis}; MFU against {peak / 1e12:.2f} TFLOPS (assumed peak)")
    print(table(rows, ["path", "model", "batch x seq", "tokens/s", "MFU", "runs", "wall tokens/s", "vs bare"]))


if __name__ == "__main__":
    main()
