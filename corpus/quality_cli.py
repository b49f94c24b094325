"""`corpus quality ...`: train a fastText classifier, list the rule-set presets, review outlier thresholds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def add_quality_parser(sub: argparse._SubParsersAction) -> None:
    from corpus.cli import workers_arg  # corpus.cli imports this module when it builds its parser

    q = sub.add_parser("quality", help="quality tools: train a classifier, list rule presets, review outliers")
    qs = q.add_subparsers(dest="action", required=True, metavar="ACTION")

    t = qs.add_parser("train", help="train a fastText text classifier; held-out precision, recall, F1, ROC AUC")
    t.add_argument("--positive", nargs="*", default=[], help="files/folders of positive examples (label hq)")
    t.add_argument("--negative", nargs="*", default=[], help="files/folders of negative examples (label lq)")
    t.add_argument("--labelled", nargs="*", default=[], help="files/folders with a label column")
    t.add_argument("--label-column", default="label", help="the label column of --labelled files")
    t.add_argument("--query", help="a DuckDB query returning columns text and label")
    t.add_argument("--text-key", default="text", help="the text column of the files")
    t.add_argument("--positive-label", default="hq")
    t.add_argument("--negative-label", default="lq")
    t.add_argument("-o", "--out", required=True, help="model folder: model.bin and metrics.json")
    t.add_argument("--epoch", type=int, default=10)
    t.add_argument("--lr", type=float, default=0.5)
    t.add_argument("--word-ngrams", type=int, default=2)
    t.add_argument("--dim", type=int, default=64)
    t.add_argument("--bucket", type=int, default=200_000, help="hash buckets for word n-grams (model size)")
    t.add_argument("--holdout", type=float, default=0.1, help="share of each label held out for the metrics")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--keep-case", action="store_true", help="do not lower-case the texts")
    t.add_argument("--json", action="store_true", help="print metrics.json")
    t.set_defaults(fn=_cmd_train)

    p = qs.add_parser("presets", help="the rule-set presets with their published thresholds")
    p.add_argument("name", nargs="?", help="one preset (gopher_quality, gopher_repetition, c4, fineweb, ...)")
    p.set_defaults(fn=_cmd_presets)

    o = qs.add_parser("outliers", help="fit a config's outlier_filter stages and print their thresholds")
    o.add_argument("config", help="a pipeline config with an outlier_filter stage")
    o.add_argument("--dry-run", action="store_true", help="print the thresholds and would-be drops, drop nothing "
                                                         "(the only mode: `corpus run` applies them)")
    o.add_argument("-w", "--workers", type=workers_arg, default=2, help="workers (default 2; 0: one per core)")
    o.add_argument("--json", action="store_true")
    o.set_defaults(fn=_cmd_outliers)


def _cmd_train(args: argparse.Namespace, console: Console) -> int:
    from corpus.progress import Progress
    from corpus.stages.classifier import TrainConfig, load_examples, train

    out = Path(args.out)
    # a file there (or above it) is an OSError from mkdir that does not name the flag
    file = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if file is not None:
        where = "" if file == out else f" is under {file}, which"
        raise ValueError(f"--out {args.out}{where} is a file; give a folder")
    df = load_examples(args.positive, args.negative, args.labelled, args.query, args.text_key, args.label_column,
                       args.positive_label, args.negative_label)
    cfg = TrainConfig(epoch=args.epoch, lr=args.lr, word_ngrams=args.word_ngrams, dim=args.dim, bucket=args.bucket,
                      holdout=args.holdout, seed=args.seed, lowercase=not args.keep_case,
                      positive_label=args.positive_label)
    card = train(df, out, cfg, progress=Progress(bars=False))
    if args.json:
        console.print_json(json.dumps(card))
        return 0
    m, ex = card["held_out"], card["examples"]
    console.print(f"trained on {ex['train']:,} examples, held out {ex['held_out']:,} ({ex['unique']:,} distinct of "
                  f"{ex['total']:,}); labels {', '.join(f'{k}: {v:,}' for k, v in ex['per_label'].items())}",
                  highlight=False)
    table = Table(title="held-out metrics")
    for c in ("label", "precision", "recall", "F1", "support"):
        table.add_column(c, justify="left" if c == "label" else "right")
    for lab, v in m["per_label"].items():
        table.add_row(lab, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", f"{v['support']:,}")
    console.print(table)
    line = f"accuracy {m['accuracy']:.3f}, macro F1 {m['macro_f1']:.3f}"
    if "roc_auc" in m:
        auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
        line += f"; {m['positive_label']}: precision {m['precision']:.3f}, recall {m['recall']:.3f}, " \
                f"F1 {m['f1']:.3f}, ROC AUC {auc}"
    console.print(line, highlight=False)
    console.print(f"[green]saved[/]: {Path(args.out) / 'model.bin'} and metrics.json", highlight=False)
    return 0


def _cmd_presets(args: argparse.Namespace, console: Console) -> int:
    from corpus.registry import suggest
    from corpus.stages.rulesets import PRESETS

    names = [args.name] if args.name else list(PRESETS)
    for name in names:
        if name not in PRESETS:
            raise ValueError(f"no preset {name!r}{suggest(name, PRESETS)}; presets: {', '.join(PRESETS)}")
        for version, rules in PRESETS[name].items():
            table = Table(title=f"{name} (rules_version {version})")
            table.add_column("rule")
            table.add_column("keeps")
            for r in rules:
                table.add_row(r.name, escape(r.describe()))
            console.print(table)
    return 0


def _cmd_outliers(args: argparse.Namespace, console: Console) -> int:
    from corpus.stages.outliers import review

    return review(args.config, args.workers, console, as_json=args.json)
