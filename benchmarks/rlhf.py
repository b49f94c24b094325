"""RLHF throughput: our reward-model and DPO steps beside bare PyTorch loops, and our PPO steps.

Defaults are the issue's setting: a tiny Llama (h256, 4 layers, vocab 8k), batch 8, length 256, on
CPU, one thread, figures per CPU-second of the process (wall time swings with the other jobs on a
shared machine; see benchmarks/train.py). Runs alternate (bare, ours, bare, ours, ...); the best of
each and the median ratio of adjacent pairs are shown.

* reward model: ours = ``corpus train reward``'s task under the shared Trainer (Plackett-Luce / BT loss,
  pooling at the last real token, accuracy bookkeeping, clipping, schedule) on pairs of 256-token
  sequences; bare = a plain loop, ``AutoModelForSequenceClassification`` forward on chosen and rejected
  together, ``-logsigmoid(r_c - r_r).mean()``, backward, AdamW. Goal: ours >= 0.95x bare (TRL 1.16's
  RewardTrainer: 0.78x on this CPU, measured by the issue's author).
* DPO: ours = the dpo plugin's task; bare = policy forward on chosen + rejected, reference forward
  without grad, sigmoid DPO loss, backward, AdamW. Goal >= 0.95x (TRL 1.16's DPOTrainer: 0.62x).
* PPO: ours = the ppo plugin end to end (prompts of 224 tokens, 32 sampled tokens with the KV cache,
  a reward model of the same size, reference, 4 PPO epochs over each rollout of 8); TRL = TRL 1.12.0's
  PPOTrainer (``benchmarks/trl_ppo.py``, run by its own venv ``benchmarks/_work/trl-venv``, never the
  project's) on the same policy and reward weights, prompts, batch, epochs, precision and threads, with
  a value model of the reward model's size. They alternate (TRL, ours, TRL, ours, ...); samples per CPU
  second of each process over the iterations after the first (wall beside it). Goal: ours >= 2x TRL.
  ``--precision bf16`` runs both updates under bf16 autocast (ours: ``train.precision: bf16``);
  ``--no-trl`` shows the issue's quoted TRL figure (3.3 samples/s wall) instead of running TRL.

    .venv/bin/python -m benchmarks rlhf                              # the issue's sizes
    .venv/bin/python -m benchmarks rlhf --hidden 64 --layers 2 --seq 64 --steps 8 --repeats 1 --vocab 1024
    .venv/bin/python -m benchmarks rlhf --only ppo                   # fp32, ours and TRL paired
    .venv/bin/python -m benchmarks rlhf --only ppo --precision bf16
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

from benchmarks.common import WORK, table

TRL_PPO = {"samples/s": 3.3, "s/step": 2.45}  # TRL 1.12.0 PPOTrainer as quoted by the issue (not measured here)


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _rate(n: float, start: tuple[float, float], end: tuple[float, float]) -> tuple[float, float]:
    return n / (end[0] - start[0]), n / (end[1] - start[1])


class Rows:
    """Rows in memory, indexed by the trainer's (epoch, index) keys."""

    def __init__(self, rows: list[dict[str, Any]]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        return self.rows[key[1]]


def train_config(steps: int, batch: int) -> Any:
    from corpus.plugins.base import TrainConfig

    return TrainConfig(lr=1e-4, max_steps=steps, batch_size=batch, eval_every=0, log_every=10, progress=False,
                       tensorboard=False, warmup_steps=2, grad_clip=1.0, weight_decay=0.0)


def llama(args: argparse.Namespace, objective: str) -> Any:
    import torch

    from corpus.plugins.models import ModelConfig, SpecialIds, build_model

    torch.manual_seed(0)
    m = ModelConfig(arch="llama", hidden_size=args.hidden, layers=args.layers, heads=args.heads)
    model = build_model(m, objective, args.vocab, args.seq + 64, SpecialIds(eos=0, pad=1))
    model.config.pad_token_id = 1
    return model


def sequences(args: argparse.Namespace, n: int, seed: int) -> Any:
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randint(2, args.vocab, (n, args.seq), generator=g)


def time_trainer(task: Any, cfg: Any, out: Path, warmup: int, per_step: int) -> tuple[float, float]:
    """Rows per wall second and per CPU second of the Trainer over the steps after ``warmup``."""
    from corpus.plugins.runtime import Runtime
    from corpus.plugins.trainer import Trainer

    rt = Runtime.create(cfg)
    marks: dict[int, tuple[float, float]] = {}
    shutil.rmtree(out, ignore_errors=True)
    Trainer(task, cfg, out, rt, hooks=[lambda step, _: marks.__setitem__(step, _clock())]).fit()
    shutil.rmtree(out, ignore_errors=True)
    last = cfg.max_steps - 1  # the last step also exports
    return _rate((last - warmup) * per_step, marks[warmup], marks[last])


def time_bare(step: Any, batches: list[Any], warmup: int, per_step: int) -> tuple[float, float]:
    t0 = _clock()
    for i, b in enumerate(batches[:-1]):
        if i == warmup:
            t0 = _clock()
        step(b)
    return _rate((len(batches) - 1 - warmup) * per_step, t0, _clock())


# ---------------------------------------------------------------- reward model


def reward_pair(args: argparse.Namespace, repeats: int) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    import torch
    import torch.nn.functional as F

    from corpus.plugins.reward import RewardLoss, RewardTask

    n = args.batch * args.steps
    chosen, rejected = sequences(args, n, 1), sequences(args, n, 2)
    rows = [{"ids": [chosen[i], rejected[i]], "ranks": torch.tensor([1, 2]), "margin": torch.tensor(0.0),
             "aspects": torch.zeros(0, 2)} for i in range(n)]
    cfg = train_config(args.steps, args.batch)
    out = []
    for _ in range(repeats):
        model = llama(args, "reward")
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
        batches = [torch.cat([chosen[i:i + args.batch], rejected[i:i + args.batch]])
                   for i in range(0, n, args.batch)]

        def step(ids: torch.Tensor, model: Any = model, opt: Any = opt) -> None:
            r = model(input_ids=ids).logits.squeeze(-1)
            loss = -F.logsigmoid(r[:args.batch] - r[args.batch:]).mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        bare = time_bare(step, batches, args.warmup, args.batch)
        task = RewardTask(llama(args, "reward"), Rows(rows), None, loss=RewardLoss(margin=False), heads=[],
                          weights=[1.0], pad_id=1, shuffle=False)
        out.append((bare, time_trainer(task, cfg, WORK / "rlhf-rm", args.warmup, args.batch)))
    return out


# ---------------------------------------------------------------- DPO


def dpo_pair(args: argparse.Namespace, repeats: int) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    import copy

    import torch

    from corpus.plugins import rl_math as M
    from corpus.plugins.dpo import DPOSettings, DPOTask

    n, half = args.batch * args.steps, args.seq // 2
    chosen, rejected = sequences(args, n, 3), sequences(args, n, 4)
    rejected[:, :half] = chosen[:, :half]  # one prompt, two responses

    def labels(ids: torch.Tensor) -> torch.Tensor:
        lab = torch.full_like(ids, -100)
        lab[:, half - 1:-1] = ids[:, half:]
        return lab

    lc, lr = labels(chosen), labels(rejected)
    ones = torch.ones(args.seq, dtype=torch.long)
    rows = [{"chosen_input_ids": chosen[i], "chosen_labels": lc[i], "chosen_attention_mask": ones,
             "rejected_input_ids": rejected[i], "rejected_labels": lr[i], "rejected_attention_mask": ones}
            for i in range(n)]
    cfg = train_config(args.steps, args.batch)
    out = []
    for _ in range(repeats):
        policy = llama(args, "causal")
        ref = copy.deepcopy(policy).eval().requires_grad_(False)
        opt = torch.optim.AdamW(policy.parameters(), lr=1e-4, weight_decay=0.0)
        b = args.batch
        batches = [(torch.cat([chosen[i:i + b], rejected[i:i + b]]), torch.cat([lc[i:i + b], lr[i:i + b]]))
                   for i in range(0, n, b)]

        def step(batch: tuple[torch.Tensor, torch.Tensor], policy: Any = policy, ref: Any = ref, opt: Any = opt,
                 b: int = b) -> None:
            ids, lab = batch
            lp = M.token_logprobs(policy(input_ids=ids).logits, lab).sum(1)
            with torch.no_grad():
                rp = M.token_logprobs(ref(input_ids=ids).logits, lab).sum(1)
            loss = M.dpo_loss(lp[:b], lp[b:], rp[:b], rp[b:], 0.1)[0].mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        bare = time_bare(step, batches, args.warmup, b)
        model = llama(args, "causal")
        task = DPOTask(model, Rows(rows), None, reference=copy.deepcopy(model), settings=DPOSettings(), pad_id=1,
                       shuffle=False)
        out.append((bare, time_trainer(task, cfg, WORK / "rlhf-dpo", args.warmup, b)))
    return out


# ---------------------------------------------------------------- PPO


def ppo_setup(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """A tokenizer, a policy export, a reward-model export and a prompt file under benchmarks/_work."""
    import random

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from corpus.plugins.chat import chat_template
    from corpus.plugins.checkpoint import export_pretrained
    from corpus.plugins.models import load_tokenizer
    from corpus.plugins.rlhf_data import PairEncoder
    from corpus.stages.tokenizer import SPECIAL_TOKENS, save_tokenizer

    root = WORK / f"rlhf-ppo-{args.hidden}-{args.layers}-{args.vocab}"
    prompts = root / f"prompts-{args.seq - 32}.jsonl"
    if prompts.is_file():
        return root / "policy", root / "reward", prompts
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(6000)]
    texts = [" ".join(rng.choice(words) for _ in range(60)) for _ in range(3000)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=args.vocab, special_tokens=list(SPECIAL_TOKENS),
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       show_progress=False))
    save_tokenizer(tok, root / "tokenizer")
    hf_tok = load_tokenizer(root / "tokenizer")
    export_pretrained(llama(args, "causal"), root / "policy", hf_tok)
    export_pretrained(llama(args, "reward"), root / "reward", hf_tok, {"reward": {"heads": ["reward"],
                                                                                  "weights": [1.0]}})
    # prompts of at most seq - 32 tokens as the policy sees them (chat template included), so that the
    # reward model reads the same prompt as the policy (and as TRL's reward model) and nothing is cut
    enc, budget, texts = PairEncoder(hf_tok, chat_template(hf_tok), args.seq), args.seq - 32, []
    for _ in range(400):
        ws = [rng.choice(words) for _ in range(args.seq)]
        while len(enc.prompt(" ".join(ws))) > budget:
            ws = ws[:-max(1, (len(enc.prompt(" ".join(ws))) - budget) // 3)]
        texts.append(" ".join(ws))
    prompts.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts))
    return root / "policy", root / "reward", prompts


def ppo_ours(args: argparse.Namespace) -> tuple[float, float]:
    """(samples per wall second, per CPU second) of whole PPO iterations: a rollout of ``batch`` prompts and
    4 epochs of updates over it, timed over the iterations after the first."""
    from corpus import plugins
    from corpus.plugins.base import parse_config

    policy, reward, prompts = ppo_setup(args)
    out = WORK / "rlhf-ppo-run"
    shutil.rmtree(out, ignore_errors=True)
    epochs, iters = 4, max(3, args.steps // 4)
    cfg = parse_config(plugins.get("ppo").config_class, {
        "output": str(out), "model": {"from_pretrained": str(policy)},
        "data": {"prompts": str(prompts), "validation_fraction": 0.0, "max_prompt_len": args.seq - 32},
        "ppo": {"reward_model": str(reward), "rollout_batch": args.batch, "epochs": epochs, "max_new_tokens": 32,
                "temperature": 1.0},
        "train": {"lr": 1e-5, "max_steps": epochs * iters + 1, "batch_size": args.batch, "eval_every": 0,
                  "log_every": 100, "progress": False, "tensorboard": False, "warmup_steps": 0,
                  "precision": args.precision}}, source="benchmark")
    marks: dict[int, tuple[float, float]] = {}
    plugins.get("ppo")().run(cfg, hooks=(lambda step, _: marks.__setitem__(step, _clock()),))
    shutil.rmtree(out, ignore_errors=True)
    # steps 1..4 are iteration 1 (its rollout happens in step 1); time iterations 2..iters
    return _rate((iters - 1) * args.batch, marks[epochs], marks[epochs * iters])


TRL_VENV = WORK / "trl-venv"


def ppo_trl(args: argparse.Namespace) -> dict[str, Any]:
    """TRL 1.12.0's PPOTrainer in its own venv (``benchmarks/trl_ppo.py``) on the same policy and reward
    exports and the same prompts, rendered and cut as the plugin does."""
    import subprocess

    from corpus.plugins.chat import chat_template
    from corpus.plugins.models import load_tokenizer
    from corpus.plugins.rlhf_data import PairEncoder, read_prompts

    python = TRL_VENV / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"no TRL venv at {TRL_VENV}: python3 -m venv {TRL_VENV} && {TRL_VENV}/bin/pip install "
                           f"torch==2.13.0 && {TRL_VENV}/bin/pip install trl==1.12.0")
    policy, reward, prompts = ppo_setup(args)
    tok = load_tokenizer(policy)
    enc = PairEncoder(tok, chat_template(tok), args.seq - 32)
    iters = max(3, args.steps // 4)
    ids = [enc.prompt(t)[-(args.seq - 32):] for t in read_prompts(prompts)[:args.batch * iters]]
    spec, out = WORK / "trl-ppo-spec.json", WORK / "trl-ppo-out.json"
    spec.write_text(json.dumps({"policy": str(policy), "reward": str(reward), "prompts": ids, "batch": args.batch,
                                "iterations": iters, "epochs": 4, "response_length": 32, "threads": args.threads,
                                "bf16": args.precision == "bf16"}))
    out.unlink(missing_ok=True)
    res = subprocess.run([str(python), "-P", str(Path(__file__).with_name("trl_ppo.py")), str(spec), str(out)],
                         capture_output=True, text=True, check=False, timeout=3600)
    if res.returncode or not out.is_file():
        raise RuntimeError(f"TRL's PPO failed: {res.stderr[-3000:]}")
    got = json.loads(out.read_text())
    if got["precision"] != ("bf16" if args.precision == "bf16" else "no"):
        raise RuntimeError(f"TRL ran with precision {got['precision']!r}, not {args.precision}")
    return got


def ppo_table(args: argparse.Namespace, model: str) -> str:
    """TRL and ours alternating (TRL, ours, TRL, ours, ...), each on the same prompts, precision and threads:
    the best of each and the median ratio of the pairs, per CPU second (the pairing's measure on a shared
    machine) and wall."""
    pairs = []
    for _ in range(args.repeats):
        trl = {"samples/s": TRL_PPO["samples/s"]} if args.no_trl else ppo_trl(args)
        pairs.append((trl, ppo_ours(args)))
    ours_cpu, ours_wall = max(o[1] for _, o in pairs), max(o[0] for _, o in pairs)
    trl_wall = max(t["samples/s"] for t, _ in pairs)
    row = {"what": f"ppo {args.precision}", "model": model,
           "rollout x prompt + response": f"{args.batch} x {args.seq - 32} + 32, 4 epochs",
           "ours samples/s (CPU; wall)": f"{ours_cpu:.2f}; {ours_wall:.2f}",
           "ours s/iteration (CPU)": f"{args.batch / ours_cpu:.2f}"}
    if args.no_trl:
        row |= {"TRL 1.12 samples/s": f"{trl_wall:.2f} wall (the issue's figure, not run here)",
                "ours / TRL": f"{ours_wall / trl_wall:.2f}x (wall)"}
    else:
        trl_cpu = max(t["cpu samples/s"] for t, _ in pairs)
        ratios = sorted(o[1] / t["cpu samples/s"] for t, o in pairs)
        row |= {"TRL 1.12 samples/s (CPU; wall)": f"{trl_cpu:.2f}; {trl_wall:.2f} (measured, paired)",
                "ours / TRL (CPU)": f"{ours_cpu / trl_cpu:.2f}x best, {ratios[len(ratios) // 2]:.2f}x median pair "
                                    f"(wall {ours_wall / trl_wall:.2f}x)"}
    row["goal"] = ">= 2x"
    return table([row], list(row))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks rlhf")
    p.add_argument("--only", default="rm,dpo,ppo", help="which of rm, dpo, ppo (comma-separated)")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="PPO's (and TRL's) precision")
    p.add_argument("--no-trl", action="store_true", help="PPO: show the issue's TRL figure instead of running TRL")
    args = p.parse_args(argv)
    args.which = args.only.split(",")

    import torch

    from corpus.plugins.models import quiet_transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    quiet_transformers()
    model = f"llama h{args.hidden} L{args.layers} vocab {args.vocab}"
    print(f"cpu, {torch.get_num_threads()} thread(s); rows/s per CPU second of the process (wall beside it)")
    rows = []
    for name, fn, goal, trl in (("rm", reward_pair, 0.95, "TRL 1.16 RewardTrainer 0.78x"),
                                ("dpo", dpo_pair, 0.95, "TRL 1.16 DPOTrainer 0.62x")):
        if name not in args.which:
            continue
        pairs = fn(args, args.repeats)
        bare, ours = max(b[1] for b, _ in pairs), max(o[1] for _, o in pairs)
        ratios = sorted(o[1] / b[1] for b, o in pairs)
        rows.append({"what": name, "model": model, "batch x seq": f"{args.batch} x {args.seq}",
                     "bare rows/s": f"{bare:,.2f}", "ours rows/s": f"{ours:,.2f}",
                     "ours / bare": f"{ours / bare:.3f}x best, {ratios[len(ratios) // 2]:.3f}x median pair",
                     "goal": f">= {goal}x ({trl})",
                     "wall rows/s (bare, ours)": f"{max(b[0] for b, _ in pairs):,.2f}, "
                                                 f"{max(o[0] for _, o in pairs):,.2f}"})
    if rows:
        print(table(rows, list(rows[0])))
    if "ppo" in args.which:
        print(ppo_table(args, model))

if __name__ == "__main__":
    main()
