"""The `corpus` command line."""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from corpus.config import ConfigError, load_config
from corpus.units import plural

EXAMPLES = """examples:
  corpus run examples/quickstart.yaml            run a pipeline (resumes if interrupted)
  corpus check examples/quickstart.yaml          check a config without running it
  corpus validate out/quickstart --suite examples/suites/quickstart.json   check data against a contract
  corpus validate suggest out/quickstart --out suite.json   propose a contract from a trusted corpus
  corpus status out/quickstart                   progress of the latest run
  corpus stats out/quickstart                    funnel per stage and source
  corpus report out/quickstart                   rewrite the HTML data quality report
  corpus profile examples/data/web --text-key content   profile raw input
  corpus export out/quickstart out/hf --format hf --columns id,text   a HF datasets folder
  corpus quarantine export out/quickstart out/fix   give back the quarantined records' bytes
  corpus verify out/quickstart                   check every file of a corpus against its manifest
  corpus search out/quickstart "query text" -k 10   nearest documents (needs an `embed` stage)
  corpus dedup explain --semantic out/quickstart    semantic duplicates removed at several thresholds
  corpus ops                                     list operators (built-in and plugins)
  corpus quality train --positive good.jsonl --negative bad.jsonl --out models/q   a fastText classifier
  corpus train pretrain examples/train/pretrain.yaml   train a model (plugins: corpus train list)
"""


def workers_arg(text: str) -> int:
    """-w/--workers of every command: 0 (one per core) or more."""
    from corpus.work import resolve_workers

    try:
        return resolve_workers(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 0 (one per core) or more, got {text!r}") from None


def count_arg(text: str) -> int:
    """A count option: 0 or more."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text!r}")
    return n


def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    from corpus.stats import final_text_bytes, print_stats
    from corpus.units import mb

    cfg = load_config(args.config, output=args.output)
    if args.address and (args.executor or cfg.executor) != "ray":
        raise ValueError("--address names a Ray cluster: use it with --executor ray (or `executor: ray`)")
    executor = cfg.make_executor(args.workers, args.quiet, args.executor, args.address)
    result = executor.run(cfg.pipeline, cfg.inputs, cfg.output, cfg.shard_max_bytes, cfg.base_dir)
    if not args.quiet:
        print_stats(result.output, console, result.run_id)
    m = result.manifest
    text = final_text_bytes(result.output, result.run_id)
    console.print(f"[green]done[/]: {plural(m['docs'], 'document')} ({mb(text)} MB of text, UTF-8) in "
                  f"{plural(len(m['shards']), 'shard')} ({mb(m['bytes'])} MB of Parquet on disk) "
                  f"-> {result.output}/data", highlight=False)
    return 0


def _cmd_check(args: argparse.Namespace, console: Console) -> int:
    from corpus.config import check_inputs
    from corpus.pipeline import Pipeline
    from corpus.readers import InputError

    cfg = load_config(args.config)
    Pipeline(cfg.pipeline).check()
    # A run would quarantine such files or records and go on; before a run they are config mistakes.
    files, problems = check_inputs(cfg)
    if problems:
        raise InputError("\n  ".join(problems))
    ops = plural(len(cfg.pipeline), "operator")
    if cfg.pipeline:
        ops += ": " + " -> ".join(op.name for op in cfg.pipeline)
    console.print(f"[green]ok[/]: {plural(len(cfg.inputs), 'input')} ({plural(files, 'file')}), {ops}",
                  highlight=False)
    return 0


def _cmd_validate(args: argparse.Namespace, console: Console) -> int:
    """`corpus validate INPUT --suite FILE` (exit 1 when a critical expectation fails) and
    `corpus validate suggest INPUT [--out FILE]`."""
    from corpus.progress import Progress
    from corpus.validation import suggest_suite, validate_input
    from corpus.validation.results import text_summary

    if args.input[0] == "suggest":
        if len(args.input) != 2:
            raise ValueError("usage: corpus validate suggest INPUT [--out FILE]: profile a trusted corpus (or token "
                             "shards) and write a suite to review")
        target = args.input[1]
        out = Path(args.out or f"{Path(target).name or 'corpus'}.suite.json")
        suite = suggest_suite(target, out, workers=args.workers, progress=Progress())
        console.print(f"[green]suite[/]: {out} ({len(suite['expectations'])} expectations proposed from {target}; "
                      "review every bound, then check data with `corpus validate INPUT --suite "
                      f"{out}`)", highlight=False, soft_wrap=True)
        return 0
    if len(args.input) != 1:
        raise ValueError(f"corpus validate takes one INPUT, got {len(args.input)}: {' '.join(args.input)}")
    target = args.input[0]
    if not args.suite:
        if target.endswith((".yaml", ".yml")):
            raise ValueError(f"{target}: corpus validate checks data against a suite; to check a pipeline config, "
                             f"run `corpus check {target}`")
        raise ValueError("corpus validate INPUT needs --suite FILE (a Great Expectations suite; "
                         "`corpus validate suggest INPUT` proposes one)")
    doc = validate_input(target, args.suite, workers=args.workers, examples=args.examples, progress=Progress())
    if args.json:
        import json

        print(json.dumps(doc, indent=2, default=str))
    else:
        console.print(text_summary(doc), highlight=False, markup=False, soft_wrap=True)
    return 0 if doc["success"] else 1


def _cmd_status(args: argparse.Namespace, console: Console) -> int:
    from corpus.stats import print_status

    print_status(Path(args.output), console)
    return 0


def _cmd_stats(args: argparse.Namespace, console: Console) -> int:
    from corpus.manifest import require_intact
    from corpus.stats import print_stats

    out = Path(args.output)
    if (out / "manifest.json").is_file():  # a finished run: its figures describe these files
        require_intact(out)
    print_stats(out, console, args.run)
    return 0


def _bound_text(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:,.4g}"  # a count's bound whole (.4g wrote 48211 as 4.821e+04)


def _cmd_profile(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    from corpus.progress import Progress
    from corpus.readers import InputSpec
    from corpus.stages.profile import OUTLIER_RULE, profile_input
    from corpus.units import flagged_when

    base_dir = None
    if args.config is not None:
        given = [f for f, v in (("INPUT", args.input), ("--format", args.format), ("--id-key", args.id_key),
                                ("--source", args.source), ("--text-key", args.text_key != "text" or None)) if v]
        if given:
            raise ConfigError([f"corpus profile --config takes its inputs from the config: drop {', '.join(given)}"])
        out = Path(args.out) if args.out else Path.cwd() / f"{Path(args.config).stem}-profile"
        cfg = load_config(args.config, output=out)  # checked as `corpus run` checks it (its output is not ours)
        inputs: list[InputSpec] | Path = cfg.inputs
        base_dir, what = cfg.base_dir, f"the inputs of {args.config}"
    elif args.input is None:
        raise ConfigError(["corpus profile: give an INPUT (file, folder, glob or corpus folder) or --config"])
    else:
        target, what = Path(args.input), args.input
        if (target / "manifest.json").is_file():
            inputs = target
        else:
            inputs = [InputSpec(source=args.source or target.name or "input", path=args.input, format=args.format,
                                text_key=args.text_key, id_key=args.id_key)]
        out = Path(args.out) if args.out else Path.cwd() / f"{target.resolve().name or 'input'}-profile"
    console.print(f"profiling {what} into {out}")
    prof = profile_input(inputs, out, workers=args.workers, base_dir=base_dir, progress=Progress())
    t = Table("source", "docs", "quarantined", "MB", "est. tokens", "median chars", "exact dup",
              "near dup (95% CI)", "enc. errors", title=f"Profile of {what}")
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
            ot.add_row(f, f"{v['count']:,}", _pct(v["count"] / o["docs"]),
                       flagged_when(v["low"], v["high"], _bound_text))
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
    from corpus.progress import Progress
    from corpus.stages.tokenizer import import_tokenizer, train_tokenizer

    if args.from_path:
        out = import_tokenizer(Path(args.from_path), Path(args.out))
    elif not args.corpus:
        raise ValueError("corpus tokenizer train: give a corpus folder (or --from a tokenizer to import)")
    else:
        out = train_tokenizer(Path(args.corpus), Path(args.out), kind=args.kind, vocab_size=args.vocab_size,
                              min_frequency=args.min_frequency, max_docs=args.max_docs, progress=Progress())
    console.print(f"[green]tokenizer[/]: {out} (loads with PreTrainedTokenizerFast.from_pretrained)")
    return 0


def _cmd_tokenize(args: argparse.Namespace, console: Console) -> int:
    from corpus.stages.tokenize import tokenize_corpus

    try:
        split = tuple(float(x) for x in args.split.split(","))
    except ValueError:
        split = ()
    # nan passed every comparison (abs(nan - 1) > 1e-6 is False) and reached tokenize.json
    if len(split) != 3 or not all(0 <= x <= 1 for x in split) or abs(sum(split) - 1.0) > 1e-6:
        raise ValueError(f"--split must be three fractions in [0, 1] adding up to 1, got {args.split}")
    start = time.perf_counter()
    # pool_map=None: its pool starts after the corpus and tokenizer are checked, with at most a worker a piece
    summary = tokenize_corpus(Path(args.corpus), Path(args.tokenizer), Path(args.out), workers=args.workers,
                              split=split, seed=args.seed, pool_map=None)
    seconds = time.perf_counter() - start
    if args.json:
        console.print_json(data={**summary, "seconds": seconds})
        return 0
    _print_tokenized(summary, seconds, console)
    return 0


def _print_tokenized(summary: dict, seconds: float, console: Console) -> None:
    from rich.table import Table

    from corpus.stages.tokenize import SPLITS

    splits = {s: summary["splits"][s] for s in SPLITS if s in summary["splits"]}
    docs, tokens = (sum(v[k] for v in splits.values()) for k in ("documents", "tokens"))
    t = Table("split", "documents", "tokens", "tokens / doc", "shard set (.bin + .idx + .json)",
              title=f"Tokenized with {summary['tokenizer']} (vocabulary {summary['vocab_size']:,}, {summary['dtype']})",
              caption=f"from {summary['shards']:,} corpus shards in {summary['pieces']:,} pieces",
              caption_justify="left")
    for name, v in splits.items():
        t.add_row(name, f"{v['documents']:,}", f"{v['tokens']:,}", f"{v['tokens'] / max(v['documents'], 1):,.1f}",
                  v["prefix"])
    t.add_row("total", f"{docs:,}", f"{tokens:,}", f"{tokens / max(docs, 1):,.1f}", "", style="bold")
    console.print(t)
    if summary.get("resumed"):
        console.print("[green]done[/]: already tokenized (nothing to do)")
    else:
        resumed = summary.get("resumed_pieces", 0)
        console.print(f"[green]done[/]: {tokens:,} tokens in {seconds:,.1f} s ({tokens / max(seconds, 1e-9):,.0f} "
                      f"tokens/s{f', {resumed} of the pieces resumed' if resumed else ''})", highlight=False)


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
            console.print(f"[red]{escape(e)}[/]", highlight=False, soft_wrap=True)  # one line each, however long
        if not errors:
            console.print(f"[green]ok[/]: {plural(len(args.prefix), 'shard set')} verified")
        return 1 if errors else 0
    if args.action == "leakage":
        return _shards_leakage(args, console)
    if not args.out:
        raise ValueError("shards merge needs --out PREFIX")
    from corpus.owner import refuse_foreign_file, refuse_managed

    # the tokenize sink merges into its own artifacts: checked here, not in merge (nor into a run's OUT/tokens/)
    refuse_managed(Path(args.out))
    for suffix in (".bin", ".idx", ".json"):  # never over a split `corpus tokenize` wrote (its tokenize.json holds
        refuse_foreign_file(Path(f"{args.out}{suffix}"))  # the figures a rerun trusts)
    console.print_json(data=shards.merge(args.prefix, args.out))
    return 0


def _shards_leakage(args: argparse.Namespace, console: Console) -> int:
    import json

    from corpus.progress import Progress
    from corpus.stages.decontam import leakage

    if len(args.prefix) < 2:
        raise ValueError("shards leakage needs the training set and at least one held-out set: TRAIN VALID [TEST]")
    result = leakage(args.prefix[0], args.prefix[1:], n=args.ngram, progress=Progress())
    if args.json:
        console.print(json.dumps(result), highlight=False, soft_wrap=True)
    leaked = False
    for prefix, r in result["splits"].items():
        leaked |= bool(r["sharing_ngrams"] or r["identical_to_train"])
        if not args.json:
            color = "red" if r["sharing_ngrams"] or r["identical_to_train"] else "green"
            console.print(f"[{color}]{prefix}[/]: {r['sharing_ngrams']:,} of {r['documents']:,} documents share a "
                          f"{args.ngram}-token n-gram with {args.prefix[0]}, {r['identical_to_train']:,} are identical "
                          "to a training document" + "".join(f"; e.g. document {e['document']} ~ training document "
                                                             f"{e['train_document']}" for e in r["examples"][:2]),
                          highlight=False)
    return 1 if leaked else 0


def _cmd_dedup_explain(args: argparse.Namespace, console: Console) -> int:
    from corpus.stages.lsh_params import explain

    if args.semantic:
        return _semantic_explain(args, console)
    console.print(explain(args.threshold, num_perm=args.num_perm, fp_weight=args.fp_weight,
                          fn_weight=args.fn_weight, bands=args.bands, rows=args.rows), highlight=False)
    return 0


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{what} must be numbers separated by commas, got {text!r}") from None


def _semantic_explain(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    from corpus.executor import worker_pool
    from corpus.stages.semdedup import explain_corpus

    thresholds = _floats(args.thresholds, "--thresholds")
    if not thresholds or any(not -1.0 < t <= 1.0 for t in thresholds):
        raise ValueError(f"--thresholds must be cosine similarities in (-1, 1], got {args.thresholds}")
    with worker_pool(args.workers) as pool_map:
        res = explain_corpus(Path(args.semantic), thresholds, clusters=args.clusters, keep=args.keep,
                             score_column=args.score_column or "", seed=args.seed, workers=args.workers,
                             pool_map=pool_map)  # type: ignore[arg-type]
    if args.json:
        console.print_json(data=res)
        return 0
    examples = {e["threshold"]: e["pairs"] for e in res["examples"]}
    t = Table("cosine >=", "removed", "of docs", "e.g. dropped  <-  kept (cosine)",
              title=f"semantic_dedup on {res['corpus']}: {res['docs']:,} documents, {res['clusters']:,} clusters, "
                    f"keep {res['keep']}")
    for row in res["sweep"]:
        pair = (examples.get(row["threshold"]) or [None])[0]
        eg = (f"{_clip(pair['dropped']['snippet'])}  <-  {_clip(pair['kept']['snippet'])} ({pair['similarity']:.3f})"
              if pair else "")
        t.add_row(f"{row['threshold']:.3f}", f"{row['removed']:,}", f"{row['removed'] / max(res['docs'], 1):.1%}",
                  escape(eg))
    console.print(t)
    console.print("Each example is dropped at its threshold but kept at the next one up. Set the stage's "
                  "`threshold` to the row you want; nothing was dropped.", highlight=False)
    for stage in res.get("already", []):  # counts of what is left: explain the corpus before the stage instead
        console.print(f"This corpus's pipeline ran semantic_dedup already ({stage['stage']}, threshold "
                      f"{stage.get('threshold')}): the counts are of the documents it kept. To choose its threshold, "
                      "explain the output of a run whose pipeline ends at `embed`.", highlight=False)
    return 0


def _clip(text: str | None, n: int = 60) -> str:
    one = " ".join((text or "").split())
    return one if len(one) <= n else one[: n - 1] + "…"


def _cmd_search(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    from corpus.executor import worker_pool
    from corpus.stages.embed_search import describe, search

    queries = [args.query] if args.query else []
    if args.queries:
        lines = Path(args.queries).read_text(encoding="utf-8").splitlines()
        queries += [line.strip() for line in lines if line.strip()]
    if not queries:
        raise ValueError("corpus search: give a query, or --queries FILE (one query per line)")
    with worker_pool(args.workers) as pool_map:
        hits = describe(Path(args.corpus), search(Path(args.corpus), queries, args.k, pool_map))  # type: ignore[arg-type]
    if args.json:
        console.print_json(data=[{"query": q, "hits": h} for q, h in zip(queries, hits, strict=True)])
        return 0
    for q, found in zip(queries, hits, strict=True):
        t = Table("#", "cosine", "id", "source", "status", "text", title=f"nearest to: {_clip(q, 100)}")
        for h in found:
            t.add_row(str(h["rank"]), f"{h['score']:.3f}", escape(str(h["id"])), escape(str(h["source"] or "")),
                      escape(h["status"]), escape(_clip(h["text"], 90)))
        console.print(t)
    return 0


def _cmd_report(args: argparse.Namespace, console: Console) -> int:
    from corpus.report import write_report

    html, js = write_report(Path(args.output), args.run)
    console.print(f"[green]report[/]: {html} (figures: {js})")
    return 0


def _cmd_ops(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    from corpus import opdoc, registry

    if args.name:
        cls = registry.get(args.name)
        head, params = opdoc.full(cls, registry.where(args.name))
        console.print("\n".join(head), highlight=False, markup=False)
        t = Table("parameter", "type", "default", "note", title=f"Parameters of {cls.name}", title_justify="left")
        for p in params:
            t.add_row(p.name, escape(p.type), escape(p.default), escape(p.note))
        console.print(t if params else "parameters: none")
        return 0
    for name in registry.names():
        try:
            cls = registry.get(name)
        except registry.UnknownOperator as exc:  # one broken plugin must not hide the others
            console.print(f"[red]{name}[/] (unavailable) {escape(str(exc))}")
            continue
        console.print("\n".join(opdoc.short(cls, min(console.width, 120))), highlight=False, markup=False)
    console.print("\n`corpus ops NAME`: one operator in full (docstring, columns, each parameter with its note)")
    return 0


def _cmd_export(args: argparse.Namespace, console: Console) -> int:
    from corpus.export import export
    from corpus.progress import Progress

    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns is not None else None
    if columns == []:
        raise ValueError("--columns: name at least one column (e.g. --columns id,text), or leave it out for all")
    if args.compression is not None and args.format != "jsonl":  # parquet shards are zstd inside; hf is Arrow
        raise ValueError(f"--compression applies to --format jsonl only, not {args.format}")
    compression = ".zst" if args.compression is None else args.compression
    done = export(Path(args.output), Path(args.dest), args.format, columns, compression, progress=Progress())
    console.print(f"[green]exported[/] {done.docs:,} documents ({', '.join(done.columns)}) as {done.format} "
                  f"to {done.dest}", highlight=False)
    return 0


def _cmd_quarantine(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    from corpus import quarantine

    if args.action == "list":
        df = quarantine.summary(Path(args.output))
        t = Table("source", "file", "error kind", "records", "raw bytes", "in side files",
                  title=f"Quarantine of {args.output}", caption_justify="left",
                  caption="raw bytes: the records as the reader met them (decompressed), kept whole")
        for src, file, kind, n, nbytes, side in df.iter_rows():
            t.add_row(src, file, kind, f"{n:,}", f"{nbytes:,}", f"{side:,}")
        console.print(t)
        console.print(f"{plural(int(df['records'].sum()), 'quarantined record')} in "
                      f"{plural(df['file'].n_unique(), 'file')}")
        return 0
    done = quarantine.export(Path(args.output), Path(args.dest), source=args.source, kind=args.kind)
    for e in done:
        where = str(e.path) if e.path else "-"
        console.print(f"{e.source}/{e.file}: {plural(e.records, 'record')}, {plural(e.bytes, 'byte')} -> {where}"
                      + (f" ({e.note})" if e.note else ""), highlight=False)
    console.print(f"[green]exported[/] {plural(sum(e.records for e in done), 'quarantined record')} "
                  f"from {plural(sum(1 for e in done if e.path), 'file')} to {args.dest}")
    return 0
def _cmd_verify(args: argparse.Namespace, console: Console) -> int:
    from corpus.manifest import check_corpus, read_manifest
    from corpus.progress import Progress, entries_bar

    out = Path(args.output)
    manifest = read_manifest(out)
    listed = [e for k in ("shards", "rejected", "quarantine") for e in manifest.get(k, [])]
    with entries_bar(Progress(), "verify", listed) as done:
        problems = check_corpus(out, manifest, level="full", each=done)
    files = len(listed)
    if args.json:
        console.print_json(data={"ok": not problems, "files": files,
                                 "problems": [{"path": p, "problem": w} for p, w in problems]})
    else:
        for path, why in problems:
            console.print(f"[red]bad[/] {escape(str(out / path))}: {escape(why)}", highlight=False, soft_wrap=True)
        if not problems:
            console.print(f"[green]ok[/]: {files} files of {out} match manifest.json", highlight=False)
    return 1 if problems else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="corpus", description="corpusforge: prepare text corpora and train language models on them.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run a pipeline from a YAML config (resumes an interrupted run)")
    r.add_argument("config", help="YAML run config")
    r.add_argument("-o", "--output", help="output folder (overrides the config's `output`)")
    r.add_argument("-w", "--workers", type=workers_arg, help="worker processes (default: config, else one per core)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bars or tables")
    r.add_argument("--executor", choices=("local", "ray"),
                   help="how units run: a local process pool, or Ray tasks (default: the config's, else local)")
    r.add_argument("--address", help="--executor ray: the cluster to join ('auto', 'host:port'); default: the "
                   "config's ray.address, else RAY_ADDRESS, else a local cluster of -w CPUs (docs/ray.md)")
    r.set_defaults(fn=_cmd_run, resumes=True)

    c = sub.add_parser("check", help="check a config (keys, operators, wiring, input paths) without running")
    c.add_argument("config")
    c.set_defaults(fn=_cmd_check)

    v = sub.add_parser("validate", help="check data against a Great Expectations suite (exit 1 when it fails); "
                                        "`validate suggest INPUT` proposes a suite from a trusted corpus")
    v.add_argument("input", nargs="+", metavar="INPUT",
                   help="a corpus folder, Parquet/JSONL files (file, folder, glob) or token shards (a prefix or a "
                        "folder); or `suggest INPUT`")
    v.add_argument("--suite", help="the suite (GX JSON) to check against")
    v.add_argument("--json", action="store_true", help="print the results document (for CI)")
    v.add_argument("-o", "--out", help="suggest: the suite file to write (default: <input name>.suite.json)")
    v.add_argument("--examples", type=count_arg, default=5, help="example rows per failed expectation")
    v.add_argument("-w", "--workers", type=workers_arg, default=2,
                   help="workers at most (default 2; 0: one per core): one per 128 MB of files, since each "
                        "worker's start costs seconds; a smaller input is checked in this process")
    v.set_defaults(fn=_cmd_validate)

    s = sub.add_parser("status", help="progress of the latest run in an output folder")
    s.add_argument("output")
    s.set_defaults(fn=_cmd_status)

    st = sub.add_parser("stats", help="funnel per stage and source, drops by reason, quarantine, balance")
    st.add_argument("output")
    st.add_argument("--run", help="run id (default: the latest)")
    st.set_defaults(fn=_cmd_stats)

    pf = sub.add_parser("profile", help="profile an input (file, folder, glob) or a corpus folder")
    pf.add_argument("input", nargs="?", help="reader input (JSONL/Parquet/CSV/text/glob/folder) or a corpus folder")
    pf.add_argument("--config", help="profile a run config's inputs, read exactly as `corpus run` reads them "
                                     "(every input setting: text_mode, csv_delimiter, meta_keys...)")
    pf.add_argument("-o", "--out", help="folder for profile.json (default: ./<input name>-profile)")
    pf.add_argument("--format", choices=["jsonl", "parquet", "csv", "text"], help="input format (default: by ext.)")
    pf.add_argument("--text-key", default="text", help="field holding the text (default: text)")
    pf.add_argument("--id-key", help="field holding the record's id (default: derived source:file:row)")
    pf.add_argument("--source", help="source name (default: the input's name)")
    pf.add_argument("-w", "--workers", type=workers_arg, default=2, help="workers (default 2; 0: one per core)")
    pf.set_defaults(fn=_cmd_profile)

    tk = sub.add_parser("tokenizer", help="train a tokenizer on a corpus, or import one from a local path")
    tks = tk.add_subparsers(dest="action", required=True, metavar="ACTION")
    tt = tks.add_parser("train", help="train byte-level BPE or Unigram (HF tokenizers) on a corpus folder")
    tt.add_argument("corpus", nargs="?", help="a corpus folder (manifest.json + data/)")
    tt.add_argument("-o", "--out", required=True, help="tokenizer folder to write (HF format)")
    tt.add_argument("--kind", choices=["bpe", "unigram"], default="bpe")
    tt.add_argument("--vocab-size", type=int, default=32000)
    tt.add_argument("--min-frequency", type=int, default=2)
    tt.add_argument("--max-docs", type=int, help="train on at most this many documents")
    tt.add_argument("--from", dest="from_path", help="import tokenizer.json or a tokenizer folder instead")
    tt.set_defaults(fn=_cmd_tokenizer_train)
    ti = tks.add_parser("import", help="import a local tokenizer (tokenizer.json or an HF tokenizer folder): "
                                       "the same as train --from")
    ti.add_argument("from_path", metavar="PATH", help="tokenizer.json, or a folder holding one")
    ti.add_argument("-o", "--out", required=True, help="tokenizer folder to write (HF format)")
    ti.set_defaults(fn=_cmd_tokenizer_train, corpus=None)

    tz = sub.add_parser("tokenize", help="tokenize a corpus into Megatron .bin/.idx shards per split")
    tz.add_argument("corpus", help="a corpus folder (manifest.json + data/)")
    tz.add_argument("--tokenizer", required=True, help="tokenizer folder or tokenizer.json")
    tz.add_argument("-o", "--out", required=True, help="output folder for {train,validation,test}.bin/.idx")
    tz.add_argument("--split", default="0.8,0.1,0.1", help="train,validation,test fractions")
    tz.add_argument("--seed", type=int, default=0)
    tz.add_argument("-w", "--workers", type=workers_arg, default=2, help="workers (default 2; 0: one per core)")
    tz.add_argument("--json", action="store_true", help="print the summary as JSON (tokenize.json + seconds)")
    tz.set_defaults(fn=_cmd_tokenize, resumes=True)
    # `--split -0.5,1,0.5` was "expected one argument": a value starting with a number (or .5, inf, nan) after a
    # minus sign is a value, not an option (argparse's own test only takes plain negative numbers), so
    # _cmd_tokenize gives its range message
    tz._negative_number_matcher = re.compile(r"^-(\d|\.\d|inf|nan)", re.IGNORECASE)

    sh = sub.add_parser("shards", help="inspect, verify, merge tokenized .bin/.idx shard sets, or check "
                                               "them for leakage between splits")
    sh.add_argument("action", choices=["inspect", "verify", "merge", "leakage"])
    sh.add_argument("prefix", nargs="+", help="shard set prefix(es), e.g. out/tokens/train (leakage: TRAIN first)")
    sh.add_argument("--ngram", type=int, default=13, help="leakage: token n-gram length")
    sh.add_argument("--json", action="store_true", help="leakage: print the figures as JSON")
    sh.add_argument("--tokenizer", help="tokenizer, to decode samples and check ids")
    sh.add_argument("--samples", type=int, default=1, help="inspect: documents to decode")
    sh.add_argument("-o", "--out", help="merge: output prefix")
    sh.set_defaults(fn=_cmd_shards)

    dd = sub.add_parser("dedup", help="dedup tools: `dedup explain` prints the MinHash S-curve of a threshold, "
                                      "or with --semantic what semantic dedup removes at several thresholds")
    dds = dd.add_subparsers(dest="action", required=True, metavar="ACTION")
    de = dds.add_parser("explain", help="bands x rows for a Jaccard threshold and P(caught) against Jaccard; "
                                        "--semantic CORPUS: documents removed at each cosine threshold")
    de.add_argument("--semantic", metavar="CORPUS", help="a corpus folder with embeddings/ (an `embed` stage)")
    de.add_argument("--thresholds", default="0.8,0.85,0.9,0.95", help="--semantic: cosine thresholds to count")
    de.add_argument("--clusters", type=int, default=0, help="--semantic: k-means clusters (0: automatic)")
    de.add_argument("--keep", choices=["first", "longest", "score"], default="first", help="--semantic: keep rule")
    de.add_argument("--score-column", help="--semantic with --keep score: the column whose highest value is kept")
    de.add_argument("--seed", type=int, default=0, help="--semantic: k-means seed")
    de.add_argument("-w", "--workers", type=workers_arg, default=2, help="--semantic: workers (0: one per core)")
    de.add_argument("--json", action="store_true", help="--semantic: print the counts and examples as JSON")
    de.add_argument("--threshold", type=float, default=0.8)
    de.add_argument("--num-perm", type=int, default=128)
    de.add_argument("--fp-weight", type=float, default=0.1)
    de.add_argument("--fn-weight", type=float, default=0.9)
    de.add_argument("--bands", type=int, default=0, help="fix bands (with --rows) instead of optimising")
    de.add_argument("--rows", type=int, default=0)
    de.set_defaults(fn=_cmd_dedup_explain)

    se = sub.add_parser("search", help="nearest documents to a query in a corpus's embeddings (an `embed` stage)")
    se.add_argument("corpus", help="a corpus folder with embeddings/ (or an embeddings folder)")
    se.add_argument("query", nargs="?", help="query text")
    se.add_argument("-k", type=int, default=10, help="hits per query (default: 10)")
    se.add_argument("--queries", help="a text file of queries, one per line (e.g. an evaluation set)")
    se.add_argument("--json", action="store_true", help="print [{query, hits: [{rank, score, id, ...}]}]")
    se.add_argument("-w", "--workers", type=workers_arg, default=1, help="workers (default 1; 0: one per core)")
    se.set_defaults(fn=_cmd_search)

    from corpus.plugins.cli import add_train_parser

    add_train_parser(sub)  # corpus train PLUGIN config.yaml | corpus train sweep sweep.yaml | corpus train list

    from corpus.quality_cli import add_quality_parser

    add_quality_parser(sub)  # corpus quality train | presets | outliers CONFIG --dry-run
    from corpus.plugins.rlhf_cli import add_rlhf_parser

    add_rlhf_parser(sub)  # corpus rlhf config.yaml: rounds of sampling, ranking, reward model, PPO/DPO

    from corpus.plugins.annotate.cli import add_annotate_parser

    add_annotate_parser(sub)  # corpus annotate serve|add-annotator|load|export|status PROJECT ...

    rp = sub.add_parser("report", help="(re)write the HTML + JSON data quality report of a run")
    rp.add_argument("output", help="a run's output folder")
    rp.add_argument("--run", help="run id (default: the latest)")
    rp.set_defaults(fn=_cmd_report)

    o = sub.add_parser("ops", help="list the operators available to pipelines (`ops NAME`: one in full)")
    o.add_argument("name", nargs="?", help="an operator: show its docstring, columns and parameters in full")
    o.set_defaults(fn=_cmd_ops)

    q = sub.add_parser("quarantine", help="list quarantined records, or export their exact bytes to fix and re-read")
    qs = q.add_subparsers(dest="action", required=True, metavar="ACTION")
    ql = qs.add_parser("list", help="quarantined records per source, file and error kind")
    ql.add_argument("output", help="a run's output folder")
    ql.set_defaults(fn=_cmd_quarantine)
    qe = qs.add_parser("export", help="write each input file's quarantined records back in its own format")
    qe.add_argument("output", help="a run's output folder")
    qe.add_argument("dest", help="destination folder (DEST/<source>/<file>)")
    qe.add_argument("--source", help="only this source")
    qe.add_argument("--kind", help="only this error kind (e.g. invalid_json)")
    qe.set_defaults(fn=_cmd_quarantine)

    e = sub.add_parser("export", help="write a corpus folder's documents as JSONL, Parquet or a HF datasets folder")
    e.add_argument("output", help="corpus folder (a run's output)")
    e.add_argument("dest", help="destination folder")
    e.add_argument("--format", choices=["jsonl", "parquet", "hf"], default="jsonl",
                   help="jsonl (default), parquet, or hf: a folder datasets.load_from_disk opens")
    e.add_argument("--columns", help="comma-separated columns to export, in order (default: all)")
    e.add_argument("--compression", choices=["", ".gz", ".zst"],
                   help="--format jsonl: '' (none), .gz or .zst (default .zst)")
    e.set_defaults(fn=_cmd_export)

    vf = sub.add_parser("verify", help="check every file of a corpus folder against manifest.json (full hashes)")
    vf.add_argument("output", help="corpus folder (a run's output)")
    vf.add_argument("--json", action="store_true", help="print {ok, files, problems: [{path, problem}]}")
    vf.set_defaults(fn=_cmd_verify)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=False)
    if not console.is_terminal:  # piped or captured: don't squeeze tables into 80 columns
        console = Console(stderr=False, width=160)
    logging.basicConfig(level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
                        format="%(levelname)s %(message)s")
    return run_command(args.fn, args, console)


def run_command(fn: Any, args: argparse.Namespace, console: Any) -> int:
    """``fn(args, console)``, with the errors a user fixes said in one line on stderr, ``error: ...``
    (exit 2), never a traceback (``args.debug``: raised as they are). The one error-printing path of
    ``corpus`` and of ``python -m corpus.plugins.cli`` (torchrun, parallel sweep trials)."""
    err = Console(stderr=True)
    if not err.is_terminal:
        err = Console(stderr=True, width=160)
    debug = getattr(args, "debug", False)
    import duckdb

    from corpus.errors import (
        WorkerDiedError,
        check_path_args,
        describe_duckdb_error,
        describe_os_error,
        described,
        raised_in_stage,
        with_notes,
    )
    from corpus.executor import LostRecordsError, PipelineError
    from corpus.integrity import CorruptFileError
    from corpus.lock import LockedError
    from corpus.operators import StopRun
    from corpus.readers import InputError
    from corpus.registry import UnknownOperator
    from corpus.work import OperatorError

    # OSError: the environment (disk full, read-only or missing folder), said in one line with its file.
    expected = (ValueError, ConfigError, PipelineError, LockedError, InputError, UnknownOperator, OSError,
                LostRecordsError, OperatorError, CorruptFileError, WorkerDiedError, duckdb.Error, StopRun)
    try:
        check_path_args(vars(args))  # a name in bytes that are not UTF-8, before any command reads it
        return fn(args, console)
    except expected as exc:
        if debug:
            raise
        if isinstance(exc, ConfigError):
            msg = "\n  ".join(exc.errors)
        elif isinstance(exc, OSError):
            msg = describe_os_error(exc, getattr(args, "resumes", False))
        elif isinstance(exc, duckdb.Error):
            msg = describe_duckdb_error(exc)
        elif isinstance(exc, KeyError) and exc.args:
            msg = str(exc.args[0])  # str() of a KeyError is its repr, in quotes
        else:
            msg = str(exc)
        msg = with_notes(msg, exc)
        err.print(f"[bold red]error:[/] {escape(msg)}", highlight=False, soft_wrap=True)  # one line, however long
        return 2
    except KeyboardInterrupt:
        # Only the commands that keep finished work (markers, checkpoints) resume; the others start over.
        err.print("[yellow]interrupted[/]" + (": rerun the same command to resume" if getattr(args, "resumes", False)
                                              else ""))
        return 130
    except Exception as exc:
        if debug:
            raise
        hint = _missing_extra(exc)
        if hint is None and raised_in_stage(exc):
            # An operator's own error of a type not expected above (a plugin's RuntimeError, a polars
            # error): the catalog's one line (type, message, stage, unit), the traceback on request.
            hint = f"{described(exc)}; --debug shows the traceback"
        if hint is None:
            raise
        err.print(f"[bold red]error:[/] {escape(hint)}", highlight=False, soft_wrap=True)
        return 2


CPU_TORCH = "https://download.pytorch.org/whl/cpu"


def _missing_extra(exc: BaseException) -> str | None:
    """'needs torch from the train extra: pip install ...' when exc comes from a module of an extra
    that this install lacks (a plain `pip install corpusforge` is the data toolkit alone)."""
    import re
    from importlib.metadata import PackageNotFoundError, requires

    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, ModuleNotFoundError):
        seen = seen.__cause__ or seen.__context__
    if seen is None or not seen.name:
        return None
    module = seen.name.split(".")[0].lower().replace("_", "-")
    try:
        reqs = requires("corpusforge") or []
    except PackageNotFoundError:
        return None
    for req in reqs:
        dist = re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower().replace("_", "-")
        extra = re.search(r'extra == "([^"]+)"', req)
        if extra and extra.group(1) not in ("all", "dev") and (dist == module or dist.startswith(module + "-")):
            name = extra.group(1)
            cpu = f" (a machine without a GPU: add --extra-index-url {CPU_TORCH})" if name == "train" else ""
            return (f"this needs {dist}, from the {name!r} extra, which this install lacks: "
                    f"pip install 'corpusforge[{name}]'{cpu}")
    return None


if __name__ == "__main__":
    sys.exit(main())
