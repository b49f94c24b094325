"""``corpus rlhf CONFIG``: the command of the RLHF cycle (rlhf.py), apart from it so that building the
CLI's parser imports nothing of the cycle's (its data, report and training modules)."""

from __future__ import annotations

from typing import Any

HELP = "run RLHF rounds: sample, rank, train a reward model, PPO or DPO, evaluate (`rlhf config.yaml`)"


def add_rlhf_parser(subparsers: Any) -> Any:
    """Wired into ``corpus/cli.py`` with one call, as ``corpus train`` is."""
    p = subparsers.add_parser("rlhf", help=HELP, description=HELP)
    p.add_argument("config", help="YAML config of the cycle")
    p.add_argument("-o", "--output", help="run folder (overrides the config's `output`)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set rounds=3 (repeatable)")
    p.add_argument("--check", action="store_true", help="validate the config and exit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log lines (as corpus train -q)")
    p.set_defaults(fn=cmd_rlhf, resumes=True)
    return p


def cmd_rlhf(args: Any, console: Any) -> int:
    from corpus.config import ConfigError
    from corpus.lock import LockedError
    from corpus.plugins.base import MissingInputError, PluginInputError, missing_inputs, shown
    from corpus.plugins.checkpoint import CheckpointError
    from corpus.plugins.rlhf import load_cycle_config, run_cycle
    from corpus.plugins.trainer import OutOfMemoryError, ResumeMismatchError

    cfg = load_cycle_config(args.config, args.output, args.set)
    if args.check:
        missing = missing_inputs(cfg)
        if missing:
            raise ConfigError([f"{args.config}: {m}" for m in missing])
        console.print(f"ok: rlhf config {args.config} -> {cfg.output}")
        return 0
    if args.quiet:  # the rounds' runs take the cycle's train section
        import logging

        logging.getLogger("corpusforge.train").setLevel(logging.WARNING)
        cfg.train.progress = False
    console.print(f"corpus rlhf {args.config}: {cfg.rounds} rounds of {cfg.method} into {shown(cfg.output)}")
    try:
        summary = run_cycle(cfg)
    except (PluginInputError, MissingInputError, LockedError, CheckpointError, ResumeMismatchError,
            OutOfMemoryError) as exc:
        raise ConfigError([str(exc)]) from exc
    for r in summary["rounds"]:
        console.print(f"round {r['round']}: win rate {r['win_rate']:.2f} against the previous policy "
                      f"(reward {r['reward_new']:.3f} vs {r['reward_previous']:.3f})")
    console.print(f"done: policy in {shown(summary['policy'])}")
    return 0
