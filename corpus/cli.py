"""The `corpus` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from rich.console import Console

from corpus.config import ConfigError, load_config

EXAMPLES = """examples:
  corpus run examples/quickstart.yaml            run a pipeline (resumes if interrupted)
  corpus validate examples/quickstart.yaml       check a config without running it
  corpus status out/quickstart                   progress of the latest run
  corpus stats out/quickstart                    funnel per stage and source
  corpus report out/quickstart                   rewrite the HTML data quality report
  corpus profile examples/data/web --text-key content   profile raw input
  corpus export out/quickstart out/jsonl         write the corpus as JSONL
  corpus ops                                     list operators (built-in and plugins)
  corpus train pretrain examples/train/pretrain.yaml   train a model (plugins: corpus train list)
"""


def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    from corpus.executor import LocalExecutor
    from corpus.stats import print_stats

    cfg = load_config(args.config, output=args.output)
    workers = args.workers if args.workers is not None else cfg.workers
    executor = LocalExecutor(workers=workers, quiet=args.quiet)
    result = executor.run(cfg.pipeline, cfg.inputs, cfg.output, cfg.shard_max_bytes, cfg.base_dir)
    if not args.quiet:
        print_stats(result.output, console, result.run_id)
    m = result.manifest
    console.print(f"[green]done[/]: {m['docs']:,} documents in {len(m['shards'])} shards, "
                  f"{m['bytes'] / 1e6:,.2f} MB -> {result.output}/data")
    return 0


def _cmd_validate(args: argparse.Namespace, console: Console) -> int:
    from corpus.pipeline import Pipeline
    from corpus.readers import plan_tasks

    cfg = load_config(args.config)
    Pipeline(cfg.pipeline).check()
    tasks = plan_tasks(cfg.inputs, cfg.base_dir)
    console.print(f"[green]ok[/]: {len(cfg.inputs)} inputs ({len(tasks)} files), {len(cfg.pipeline)} operators: "
                  + " -> ".join(op.name for op in cfg.pipeline))
    return 0


def _cmd_status(args: argparse.Namespace, console: Console) -> int:
    from corpus.stats import print_status

    print_status(Path(args.output), console)
    return 0


def _cmd_stats(args: argparse.Namespace, console: Console) -> int:
    from corpus.stats import print_stats

    print_stats(Path(args.output), console, args.run)
    return 0


def _cmd_profile(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    from corpus.readers import InputSpec
    from corpus.stages.profile import OUTLIER_RULE, profile_input

    target = Path(args.input)
    if (target / "manifest.json").is_file():
        inputs: list[InputSpec] | Path = target
    else:
        inputs = [InputSpec(source=args.source or target.name or "input", path=args.input, format=args.format,
                            text_key=args.text_key, id_key=args.id_key)]
    out = Path(args.out) if args.out else Path.cwd() / f"{target.resolve().name or 'input'}-profile"
    console.print(f"profiling {args.input} into {out}")
    prof = profile_input(inputs, out, workers=args.workers)
    t = Table("source", "docs", "quarantined", "MB", "est. tokens", "median chars", "exact dup",
              "near dup (95% CI)", "enc. errors", title=f"Profile of {args.input}")
    for name, sec in [("all", prof["overall"]), *prof["by_source"].items()]:
        med = sec["features"]["n_chars"]["quantiles"]["p50"] if sec["docs"] else 0
        quarantined = sum((sec.get("quarantined") or {}).values())
        t.add_row(name, f"{sec['docs']:,}", f"{quarantined:,}", f"{sec['bytes'] / 1e6:,.2f}",
                  f"{sec['est_tokens']:,}", f"{med or 0:,.0f}", _pct(sec["exact_dup_rate"]), _near(sec),
                  f"{sec['encoding_error_docs']:,}")
    console.print(t)
    kinds = sorted(prof["overall"].get("quarantined") or {})
    if kinds:
        srcs = list(prof["by_source"])
        qt = Table("kind", *srcs, title="Quarantined records (by kind)")
        for k in kinds:
            qt.add_row(k, *(f"{(prof['by_source'][s].get('quarantined') or {}).get(k, 0):,}" for s in srcs))
        console.print(qt)
    o = prof["overall"]
    ot = Table("feature", "outliers", "% of docs", "flagged when", title="Outliers", caption=f"rule: {OUTLIER_RULE}")
    for f, v in o["outliers"].items():
        if v["count"]:
            ot.add_row(f, f"{v['count']:,}", _pct(v["count"] / o["docs"]), f"< {v['low']:,.4g} or > {v['high']:,.4g}")
    if ot.row_count:
        console.print(ot)
    console.print(f"[green]profile[/]: {out / 'profile.json'}")
    return 0


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.1%}"


def _near(sec: dict) -> str:
    ci = sec.get("near_dup_ci95")
    if sec.get("near_dup_rate") is None:
        return "—"
    return _pct(sec["near_dup_rate"]) + (f" ({ci[0]:.1%}–{ci[1]:.1%})" if ci else "")


def _cmd_tokenizer_train(args: argparse.Namespace, console: Console) -> int:
    from corpus.stages.tokenizer import import_tokenizer, train_tokenizer

    if args.from_path:
        out = import_tokenizer(Path(args.from_path), Path(args.out))
    else:
        out = train_tokenizer(Path(args.corpus), Path(args.out), kind=args.kind, vocab_size=args.vocab_size,
                              min_frequency=args.min_frequency, max_docs=args.max_docs)
    console.print(f"[green]tokenizer[/]: {out} (loads with PreTrainedTokenizerFast.from_pretrained)")
    return 0


def _cmd_tokenize(args: argparse.Namespace, console: Console) -> int:
    from corpus.stages.tokenize import tokenize_corpus

    split = tuple(float(x) for x in args.split.split(","))
    if len(split) != 3 or abs(sum(split) - 1.0) > 1e-6 or min(split) < 0:
        raise ValueError(f"--split must be three non-negative fractions adding up to 1, got {args.split}")
    summary = tokenize_corpus(Path(args.corpus), Path(args.tokenizer), Path(args.out), workers=args.workers,
                              split=split, seed=args.seed)  # type: ignore[arg-type]
    console.print_json(data=summary)
    return 0


def _cmd_shards(args: argparse.Namespace, console: Console) -> int:
    from corpus import shards

    if args.action == "inspect":
        console.print_json(data=shards.inspect(args.prefix[0], tokenizer=args.tokenizer, samples=args.samples))
        return 0
    if args.action == "verify":
        errors = []
        for prefix in args.prefix:
            errors += [f"{prefix}: {e}" for e in shards.verify(prefix, tokenizer=args.tokenizer)]
        for e in errors:
            console.print(f"[red]{e}[/]")
        if not errors:
            console.print(f"[green]ok[/]: {len(args.prefix)} shard set(s) verified")
        return 1 if errors else 0
    if not args.out:
        raise ValueError("shards merge needs --out PREFIX")
    console.print_json(data=shards.merge(args.prefix, args.out))
    return 0


def _cmd_dedup_explain(args: argparse.Namespace, console: Console) -> int:
    from corpus.stages.lsh_params import explain

    if not 0.0 < args.threshold < 1.0:
        raise ValueError(f"--threshold must lie strictly between 0 and 1, got {args.threshold}")
    console.print(explain(args.threshold, num_perm=args.num_perm, fp_weight=args.fp_weight,
                          fn_weight=args.fn_weight, bands=args.bands, rows=args.rows), highlight=False)
    return 0


def _cmd_report(args: argparse.Namespace, console: Console) -> int:
    from corpus.report import write_report

    html, js = write_report(Path(args.output), args.run)
    console.print(f"[green]report[/]: {html} (figures: {js})")
    return 0


def _cmd_ops(args: argparse.Namespace, console: Console) -> int:
    from corpus import registry

    for name in registry.names():
        try:
            cls = registry.get(name)
        except registry.UnknownOperator as exc:  # one broken plugin must not hide the others
            console.print(f"[red]{name}[/] (unavailable) {exc}")
            continue
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        console.print(f"[bold]{name}[/] ({cls.kind}) needs {list(cls.needs)} adds {list(cls.adds)}  {doc}")
    return 0


def _cmd_export(args: argparse.Namespace, console: Console) -> int:
    import polars as pl

    from corpus.manifest import read_manifest
    from corpus.writers import write_jsonl

    src = Path(args.output)
    manifest = read_manifest(src)
    dest = Path(args.dest)
    for shard in manifest["shards"]:
        name = Path(shard["path"]).name.removesuffix(".parquet") + ".jsonl" + args.compression
        write_jsonl(pl.read_parquet(src / shard["path"]), dest / name)
    console.print(f"[green]exported[/] {manifest['docs']:,} documents to {dest}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="corpus", description="corpusforge: prepare text corpora and train language models on them.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run a pipeline from a YAML config (resumes an interrupted run)")
    r.add_argument("config", help="YAML run config")
    r.add_argument("-o", "--output", help="output folder (overrides the config's `output`)")
    r.add_argument("-w", "--workers", type=int, help="worker processes (default: config, else one per core)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bars or tables")
    r.set_defaults(fn=_cmd_run)

    v = sub.add_parser("validate", help="check a config (keys, operators, wiring, input paths) without running")
    v.add_argument("config")
    v.set_defaults(fn=_cmd_validate)

    s = sub.add_parser("status", help="progress of the latest run in an output folder")
    s.add_argument("output")
    s.set_defaults(fn=_cmd_status)

    st = sub.add_parser("stats", help="funnel per stage and source, drops by reason, quarantine, balance")
    st.add_argument("output")
    st.add_argument("--run", help="run id (default: the latest)")
    st.set_defaults(fn=_cmd_stats)

    pf = sub.add_parser("profile", help="profile an input (file, folder, glob) or a corpus folder")
    pf.add_argument("input", help="reader input (JSONL/Parquet/CSV/text/glob/folder) or a corpus folder")
    pf.add_argument("--out", help="folder for profile.json (default: ./<input name>-profile)")
    pf.add_argument("--format", choices=["jsonl", "parquet", "csv", "text"], help="input format (default: by ext.)")
    pf.add_argument("--text-key", default="text", help="field holding the text (default: text)")
    pf.add_argument("--id-key", help="field holding the record's id (default: derived source:file:row)")
    pf.add_argument("--source", help="source name (default: the input's name)")
    pf.add_argument("-w", "--workers", type=int, default=2)
    pf.set_defaults(fn=_cmd_profile)

    tk = sub.add_parser("tokenizer", help="train a tokenizer on a corpus, or import one from a local path")
    tks = tk.add_subparsers(dest="action", required=True, metavar="ACTION")
    tt = tks.add_parser("train", help="train byte-level BPE or Unigram (HF tokenizers) on a corpus folder")
    tt.add_argument("corpus", nargs="?", help="a corpus folder (manifest.json + data/)")
    tt.add_argument("--out", required=True, help="tokenizer folder to write (HF format)")
    tt.add_argument("--kind", choices=["bpe", "unigram"], default="bpe")
    tt.add_argument("--vocab-size", type=int, default=32000)
    tt.add_argument("--min-frequency", type=int, default=2)
    tt.add_argument("--max-docs", type=int, help="train on at most this many documents")
    tt.add_argument("--from", dest="from_path", help="import tokenizer.json or a tokenizer folder instead")
    tt.set_defaults(fn=_cmd_tokenizer_train)

    tz = sub.add_parser("tokenize", help="tokenize a corpus into Megatron .bin/.idx shards per split")
    tz.add_argument("corpus", help="a corpus folder (manifest.json + data/)")
    tz.add_argument("--tokenizer", required=True, help="tokenizer folder or tokenizer.json")
    tz.add_argument("--out", required=True, help="output folder for {train,validation,test}.bin/.idx")
    tz.add_argument("--split", default="0.8,0.1,0.1", help="train,validation,test fractions")
    tz.add_argument("--seed", type=int, default=0)
    tz.add_argument("-w", "--workers", type=int, default=2)
    tz.set_defaults(fn=_cmd_tokenize)

    sh = sub.add_parser("shards", help="inspect, verify or merge tokenized .bin/.idx shard sets")
    sh.add_argument("action", choices=["inspect", "verify", "merge"])
    sh.add_argument("prefix", nargs="+", help="shard set prefix(es), e.g. out/tokens/train")
    sh.add_argument("--tokenizer", help="tokenizer, to decode samples and check ids")
    sh.add_argument("--samples", type=int, default=1, help="inspect: documents to decode")
    sh.add_argument("--out", help="merge: output prefix")
    sh.set_defaults(fn=_cmd_shards)

    dd = sub.add_parser("dedup", help="dedup tools: `dedup explain` prints the MinHash S-curve of a threshold")
    dds = dd.add_subparsers(dest="action", required=True, metavar="ACTION")
    de = dds.add_parser("explain", help="bands x rows for a Jaccard threshold and P(caught) against Jaccard")
    de.add_argument("--threshold", type=float, default=0.8)
    de.add_argument("--num-perm", type=int, default=128)
    de.add_argument("--fp-weight", type=float, default=0.1)
    de.add_argument("--fn-weight", type=float, default=0.9)
    de.add_argument("--bands", type=int, default=0, help="fix bands (with --rows) instead of optimising")
    de.add_argument("--rows", type=int, default=0)
    de.set_defaults(fn=_cmd_dedup_explain)

    from corpus.plugins.cli import add_train_parser

    add_train_parser(sub)  # corpus train PLUGIN config.yaml | corpus train sweep sweep.yaml | corpus train list

    rp = sub.add_parser("report", help="(re)write the HTML + JSON data quality report of a run")
    rp.add_argument("output", help="a run's output folder")
    rp.add_argument("--run", help="run id (default: the latest)")
    rp.set_defaults(fn=_cmd_report)

    o = sub.add_parser("ops", help="list the operators available to pipelines")
    o.set_defaults(fn=_cmd_ops)

    e = sub.add_parser("export", help="write a corpus folder's documents as JSONL")
    e.add_argument("output", help="corpus folder (a run's output)")
    e.add_argument("dest", help="destination folder")
    e.add_argument("--compression", choices=["", ".gz", ".zst"], default=".zst")
    e.set_defaults(fn=_cmd_export)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=False)
    if not console.is_terminal:  # piped or captured: don't squeeze tables into 80 columns
        console = Console(stderr=False, width=160)
    err = Console(stderr=True)
    if not err.is_terminal:
        err = Console(stderr=True, width=160)
    logging.basicConfig(level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
                        format="%(levelname)s %(message)s")
    from corpus.executor import LostRecordsError, PipelineError
    from corpus.lock import LockedError
    from corpus.readers import InputError
    from corpus.registry import UnknownOperator
    from corpus.work import OperatorError

    expected = (ValueError, ConfigError, PipelineError, LockedError, InputError, UnknownOperator, FileNotFoundError,
                LostRecordsError, OperatorError)
    try:
        return args.fn(args, console)
    except expected as exc:
        if args.debug:
            raise
        msg = "\n  ".join(exc.errors) if isinstance(exc, ConfigError) else str(exc)
        err.print(f"[bold red]error:[/] {msg}", highlight=False)
        return 2
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: rerun the same command to resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
