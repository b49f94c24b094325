"""``corpus train``: run a training plugin or a sweep from a YAML config.

The CLI owner wires it with one call in ``corpus/cli.py``::

    from corpus.plugins.cli import add_train_parser
    add_train_parser(sub)            # sub = the `corpus` subparsers

which adds ``corpus train PLUGIN config.yaml`` and ``corpus train sweep sweep.yaml``. The same
command runs standalone (``python -m corpus.plugins.cli sft config.yaml``), which is what ``torchrun``
launches for multi-GPU training::

    torchrun --nproc_per_node 8 -m corpus.plugins.cli pretrain examples/train/pretrain.yaml
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from corpus import plugins
from corpus.config import ConfigError
from corpus.plugins.base import MissingInputError, PluginInputError, missing_inputs, output_overlap, shown

HELP = "train a model: `train PLUGIN config.yaml` (plugins: pretrain, sft, ...) or `train sweep sweep.yaml`"


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` command to an argparse subparsers object; dispatches through ``fn(args, console)``."""
    t = subparsers.add_parser("train", help=HELP, description=HELP)
    _arguments(t)
    t.set_defaults(fn=cmd_train, resumes=True)
    return t


def _arguments(t: argparse.ArgumentParser) -> None:
    t.add_argument("plugin", help="a training plugin (`list` shows them) or 'sweep'")
    t.add_argument("config", nargs="?", help="YAML config of the plugin (or of the sweep)")
    t.add_argument("-o", "--output", help="run folder (overrides the config's `output`)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.lr=1e-4 (repeatable)")
    t.add_argument("--max-steps", type=int, metavar="N",
                   help="train N optimizer steps (overrides train.max_steps and epochs; a sweep: every trial)")
    t.add_argument("--check", action="store_true", help="validate the config and exit")
    t.add_argument("--fresh", action="store_true", help="start over even if the run folder has a checkpoint")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar or log lines")


class _Out:
    """The console protocol cmd_train needs (rich's Console fits it)."""

    def print(self, *args: Any, **_: Any) -> None:
        print(*args)


def cmd_train(args: argparse.Namespace, console: Any) -> int:
    """Run ``corpus train``; ConfigError propagates (the caller prints it with file and line)."""
    if args.plugin == "list":
        for name in plugins.names():
            doc = (plugins.get(name).__doc__ or "").strip().splitlines()
            console.print(f"{name}: {doc[0] if doc else ''}")
        return 0
    if not args.config:
        raise ConfigError([f"corpus train {args.plugin}: give the YAML config file"])
    if args.quiet:
        logging.getLogger("corpusforge.train").setLevel(logging.WARNING)
    elif not args.check and int(os.environ.get("RANK", "0")) == 0:  # torch takes seconds to import: say so
        console.print(f"corpus train {args.plugin} {args.config}: loading PyTorch and the data...")
    if args.max_steps is not None and args.max_steps < 1:
        raise ConfigError([f"--max-steps {args.max_steps}: give a number of steps >= 1"])
    if args.plugin == "sweep":
        from corpus.plugins.sweep import load_sweep, run_sweep

        if args.output or args.set or args.fresh:
            raise ConfigError(["corpus train sweep: --output, --set and --fresh apply to plugin runs; "
                               "set `output` and `space` in the sweep file"])

        if args.check:
            _, _, _, params = load_sweep(args.config)
            console.print(f"ok: {len(params)} trials")
            return 0
        from corpus.lock import LockedError

        try:
            summary = run_sweep(args.config, max_steps=args.max_steps)
        except LockedError as exc:
            raise ConfigError([str(exc)]) from exc
        for t in summary["trials"]:
            loss = "failed" if t["best_val_loss"] is None else f"{t['best_val_loss']:.4f}"
            console.print(f"trial {t['trial']:3d}  val_loss {loss}  {t['params']}" + (f"  {t['error']}" if t["error"]
                                                                                       else ""))
        if summary.get("best_config"):
            console.print(f"best: trial {summary['best']['trial']} -> {summary['best_config']}")
            return 0
        # Exit 1 says only that something failed: say what, and where the trials' errors are.
        out = Path(summary["trials"][0]["out"]).parent if summary["trials"] else None
        where = f" ({shown(out / 'sweep.json')} lists them)" if out is not None else ""
        print(f"error: no trial of the sweep finished with a validation loss: each one's error is above{where}; "
              "no best.yaml was written", file=sys.stderr)
        return 1
    from corpus.lock import LockedError
    from corpus.owner import ForeignFilesError
    from corpus.plugins.checkpoint import CheckpointError
    from corpus.plugins.trainer import DivergedError, EmptyTargetsError, OutOfMemoryError, ResumeMismatchError
    from corpus.shards import ShardError

    try:
        sets = list(args.set) + (["train.resume=false"] if args.fresh else [])
        if args.max_steps is not None:
            sets.append(f"train.max_steps={args.max_steps}")
        cfg = plugins.load_config(args.plugin, args.config, args.output, sets)
        if args.check:
            missing = missing_inputs(cfg)
            if missing:
                raise ConfigError([f"{args.config}: {m}" for m in missing])
            overlap = output_overlap(cfg)
            if overlap:
                raise ConfigError([overlap])
            console.print(f"ok: {args.plugin} config {args.config} -> {cfg.output}")
            return 0
        if args.quiet:
            cfg.train.progress = False
        result = plugins.run(args.plugin, cfg)
    except (plugins.UnknownPlugin, PluginInputError, MissingInputError, EmptyTargetsError, ResumeMismatchError,
            LockedError, CheckpointError, ShardError, DivergedError, ForeignFilesError, OutOfMemoryError) as exc:
        raise ConfigError([str(exc)]) from exc  # the user's to fix: a message, not a traceback
    best = f", best val_loss {result.best_val_loss:.4f} (that model: {shown(result.best_dir)})" \
        if result.best_val_loss is not None and result.best_dir is not None else ""
    console.print(f"done: {result.steps} steps, {result.tokens:,} tokens{best}; model in {shown(result.final_dir)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m corpus.plugins.cli``), used by torchrun and by parallel sweeps."""
    from corpus.cli import run_command

    p = argparse.ArgumentParser(prog="python -m corpus.plugins.cli", description=HELP)
    _arguments(p)
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    p.set_defaults(resumes=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_command(cmd_train, args, _Out())  # the errors `corpus train` says in one line, said so here


if __name__ == "__main__":
    sys.exit(main())
