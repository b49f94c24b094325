"""The `corpus` CLI end to end, and third-party operators registered through entry points."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import polars as pl
from helpers import make_jsonl_corpus, run_cli, write_config

CONFIG = """\
output: {out}
workers: 2
inputs:
  - source: web
    path: {inp}
pipeline:
  - op: {op}
"""


def test_run_stats_status_export(tmp_path: Path):
    n = make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=60)
    cfg = write_config(tmp_path / "c.yaml", CONFIG.format(out=tmp_path / "out", inp=tmp_path / "in",
                                                         op="exact_dedup"))
    res = run_cli("run", str(cfg))
    assert res.returncode == 0, res.stderr
    assert "Nothing lost" in res.stdout and "exact_duplicate" in res.stdout
    # Off a terminal (a log), each bar's final line is whole: counts, elapsed time and ETA, none cut short.
    bar = next(line for line in res.stderr.splitlines() if line.startswith("read inputs"))
    assert f"{n:,} docs" in bar and bar.endswith("ETA 0:00:00") and "…" not in res.stderr, res.stderr
    stats = run_cli("stats", str(tmp_path / "out"))
    assert stats.returncode == 0 and "01-exact_dedup" in stats.stdout and f"{n:,}" in stats.stdout
    status = run_cli("status", str(tmp_path / "out"))
    assert status.returncode == 0 and "ok" in status.stdout and "00-read" in status.stdout
    exp = run_cli("export", str(tmp_path / "out"), str(tmp_path / "jsonl"), "--compression", ".gz")
    assert exp.returncode == 0, exp.stderr
    shards = len(json.loads((tmp_path / "out" / "manifest.json").read_text())["shards"])
    # Long commands show a bar, as a run does: a shard (or file) a step, with the documents and MB/s
    bar = next(line for line in exp.stderr.splitlines() if line.startswith("export jsonl"))
    assert f"{shards}/{shards}" in bar and "docs" in bar and bar.endswith("ETA 0:00:00"), exp.stderr
    ver = run_cli("verify", str(tmp_path / "out"))
    assert ver.returncode == 0 and "match manifest.json" in ver.stdout, ver.stderr
    assert any(line.startswith("verify") and "ETA 0:00:00" in line for line in ver.stderr.splitlines()), ver.stderr
    exported = pl.concat([pl.read_ndjson(p) for p in sorted((tmp_path / "jsonl").glob("*.jsonl.gz"))])
    kept = pl.read_parquet(tmp_path / "out" / "data" / "*.parquet")
    assert exported["id"].to_list() == kept["id"].to_list()
    (tmp_path / "out" / "report.html").unlink()
    rep = run_cli("report", str(tmp_path / "out"))
    assert rep.returncode == 0 and (tmp_path / "out" / "report.html").stat().st_size > 1000, rep.stderr
    rep = run_cli("report", str(tmp_path / "out"), "--run", "no-such-run")
    assert rep.returncode == 2 and "no run 'no-such-run' in the catalog" in rep.stderr
    stats = run_cli("stats", str(tmp_path / "out"), "--run", "no-such-run")  # was an empty funnel "(?)"
    assert stats.returncode == 2 and "no run 'no-such-run' in the catalog; the latest: " in stats.stderr


def test_status_of_a_folder_that_is_not_an_output(tmp_path: Path):
    res = run_cli("status", str(tmp_path))
    assert res.returncode == 2 and "no run catalog" in res.stderr and "Traceback" not in res.stderr
    # Another command's output says what it is and what to run on it (it said only "not a corpus folder")
    from corpus.shards import write_documents

    write_documents(tmp_path / "tokens" / "train", [[1, 2]], vocab_size=10)
    (tmp_path / "tokens" / "tokenize.json").write_text("{}")
    for cmd in ("verify", "stats"):
        res = run_cli(cmd, str(tmp_path / "tokens"))
        err = " ".join(res.stderr.split())
        assert res.returncode == 2 and f"{tmp_path / 'tokens'} holds token shards (`corpus tokenize`): check them " \
            f"with `corpus shards verify {tmp_path / 'tokens'}/train`" in err, err


def test_third_party_operator_from_entry_point(tmp_path: Path):
    plug = tmp_path / "plug"
    (plug / "shout_op").mkdir(parents=True)
    (plug / "shout_op" / "__init__.py").write_text(textwrap.dedent("""
        from dataclasses import dataclass
        import polars as pl
        from corpus.operators import MapOperator

        @dataclass
        class Shout(MapOperator):
            name = "shout"
            adds = ("loud",)
            suffix: str = "!"

            def map(self, df):
                return df.with_columns((pl.col("text").str.to_uppercase() + self.suffix).alias("loud"))
    """))
    dist = plug / "shout_op-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: shout-op\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[corpusforge.operators]\nshout = shout_op:Shout\n")
    make_jsonl_corpus(tmp_path / "in", files=1, docs_per_file=20)
    cfg = write_config(tmp_path / "c.yaml", CONFIG.format(out=tmp_path / "out", inp=tmp_path / "in", op="shout")
                       + "    suffix: '?!'\n")
    env = {"PYTHONPATH": str(plug)}
    ops = run_cli("ops", env=env)
    assert "shout" in ops.stdout
    res = run_cli("run", str(cfg), "--quiet", env=env)
    assert res.returncode == 0, res.stderr
    df = pl.read_parquet(tmp_path / "out" / "data" / "*.parquet")
    assert (df["loud"] == df["text"].str.to_uppercase() + "?!").all()
    # without the plugin installed, the config is refused with the operator's name
    res = run_cli("run", str(cfg), "--quiet")
    assert res.returncode == 2 and "unknown operator 'shout'" in res.stderr


def test_profile_command(tmp_path: Path):
    n = make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=40)
    (tmp_path / "in" / "part-000.jsonl").open("a").write("{not json\n")
    res = run_cli("profile", str(tmp_path / "in"), "-o", str(tmp_path / "prof"), "-w", "1")  # -o as in `corpus run`
    assert res.returncode == 0, res.stderr
    import json

    prof = json.loads((tmp_path / "prof" / "profile.json").read_text())
    assert prof["overall"]["docs"] == n
    assert sum(prof["overall"]["quarantined"].values()) == 1
    assert f"{n:,}" in res.stdout
    assert "profile: finishing" in res.stderr and f"{n:,} docs" in res.stderr  # the progress bar, as files finish


def test_profile_of_a_configs_inputs_reads_them_as_the_run_does(tmp_path: Path):
    """corpus profile took a path and four settings, so an input read with others (a text file by line, a
    ';' CSV, meta_keys) could not be profiled as the run reads it. --config profiles the config's inputs
    with every setting: the same documents and quarantine as the run's balance."""
    import json

    (tmp_path / "lines.txt").write_text("first line\nsecond line\n\nthird\n")
    (tmp_path / "t.csv").write_text('text;id\nhello there;1\n"two; parts";2\n')
    (tmp_path / "a.jsonl").write_text('{"text": "kept", "k": 1, "drop": 2}\n{not json\n')
    cfg = tmp_path / "c.yaml"
    cfg.write_text("inputs:\n  - {source: lines, path: lines.txt, format: text, text_mode: line}\n"
                   "  - {source: csv, path: t.csv, csv_delimiter: ';', id_key: id}\n"
                   "  - {source: js, path: a.jsonl, meta_keys: [k]}\npipeline: []\nworkers: 1\n")
    res = run_cli("profile", "--config", str(cfg), "-o", str(tmp_path / "prof"), "-w", "1")
    assert res.returncode == 0, res.stderr
    prof = json.loads((tmp_path / "prof" / "profile.json").read_text())
    run = run_cli("run", str(cfg), "-o", str(tmp_path / "out"), "--quiet")
    assert run.returncode == 0, run.stderr
    from corpus.stats import funnel_rows

    *_, balance, _ = funnel_rows(tmp_path / "out")
    assert {s: v["docs"] for s, v in prof["by_source"].items()} == {b[0]: b[2] for b in balance}  # kept
    assert {s: sum((v.get("quarantined") or {}).values()) for s, v in prof["by_source"].items()} == {
        b[0]: b[4] for b in balance}  # quarantined
    assert prof["by_source"]["lines"]["docs"] == 3 and prof["by_source"]["csv"]["docs"] == 2
    assert prof["by_source"]["js"]["meta_fields"] == {"k": {"present": 1, "types": {"integer": 1}}}
    # the config's inputs or a path, not both; neither is an error
    both = run_cli("profile", str(tmp_path / "a.jsonl"), "--config", str(cfg))
    assert both.returncode == 2 and "takes its inputs from the config: drop INPUT" in both.stderr
    none = run_cli("profile")
    assert none.returncode == 2 and "give an INPUT" in none.stderr


def test_every_command_that_writes_an_output_takes_dash_o():
    """`corpus run -o` names the output; the commands that wrote theirs with --out alone refused -o."""
    import argparse

    from corpus.cli import build_parser

    def sub(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
        choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
        return choices[name]

    for path in (["run"], ["profile"], ["validate"], ["tokenizer", "train"], ["tokenize"], ["shards"],
                 ["quality", "train"]):
        parser = build_parser()
        for name in path:
            parser = sub(parser, name)
        dash_o = [a for a in parser._actions if "-o" in a.option_strings]
        assert dash_o and dash_o[0].dest in ("out", "output"), path


def test_workers_mean_the_same_everywhere(tmp_path: Path):
    """-w and workers= take 0 (one per core) or more in every command and API; anything else is refused
    by name (a negative count used to run in one process, or profile's 0 in one thread)."""
    import os

    import pytest

    from corpus.executor import LocalExecutor
    from corpus.stages.profile import profile_input
    from corpus.work import resolve_workers

    assert resolve_workers(0) == (os.cpu_count() or 1) and resolve_workers(3) == 3
    for bad in (-1, "2", 1.5, True):
        with pytest.raises(ValueError, match="workers must be 0 \\(one per core\\) or more"):
            resolve_workers(bad)  # type: ignore[arg-type]
    assert LocalExecutor(workers=0).workers == os.cpu_count()
    make_jsonl_corpus(tmp_path / "in", files=1, docs_per_file=5)
    for cmd in (["profile", str(tmp_path / "in")], ["run", str(tmp_path / "c.yaml")]):
        res = run_cli(*cmd, "-w", "-3")
        assert res.returncode == 2 and "-w/--workers: expected 0 (one per core) or more, got '-3'" in res.stderr
    with pytest.raises(ValueError, match="exists and is not a folder"):
        profile_input(tmp_path / "in", tmp_path / "in" / "part-000.jsonl", workers=0)
    assert profile_input(tmp_path / "in", tmp_path / "prof", workers=0)["overall"]["docs"] == 5


def test_tokenizer_tokenize_and_shard_tools(tmp_path: Path):
    make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=80)
    cfg = write_config(tmp_path / "c.yaml", CONFIG.format(out=tmp_path / "out", inp=tmp_path / "in",
                                                         op="exact_dedup"))
    assert run_cli("run", str(cfg), "--quiet").returncode == 0
    tok, tokens = tmp_path / "tok", tmp_path / "tokens"
    res = run_cli("tokenizer", "train", str(tmp_path / "out"), "--out", str(tok), "--vocab-size", "400")
    assert res.returncode == 0, res.stderr
    res = run_cli("tokenize", str(tmp_path / "out"), "--tokenizer", str(tok), "--out", str(tokens), "-w", "1")
    assert res.returncode == 0, res.stderr
    res = run_cli("shards", "verify", str(tokens / "train"), str(tokens / "test"), "--tokenizer", str(tok))
    assert res.returncode == 0 and "2 shard sets verified" in res.stdout, res.stdout + res.stderr
    res = run_cli("shards", "merge", str(tokens / "train"), str(tokens / "test"), "--out", str(tokens / "all"))
    assert res.returncode == 0, res.stderr
    (tokens / "all.idx").write_bytes((tokens / "all.idx").read_bytes()[:-8])  # corrupt the index
    res = run_cli("shards", "verify", str(tokens / "all"))
    assert res.returncode == 1 and "all" in res.stdout
    res = run_cli("tokenize", str(tmp_path / "out"), "--tokenizer", str(tok), "--out", str(tokens), "--split", "1,1,1")
    assert res.returncode == 2 and "--split" in res.stderr and "Traceback" not in res.stderr


def test_ctrl_c_says_resume_only_where_a_rerun_resumes(monkeypatch, capsys, tmp_path: Path):
    """Ctrl-C said "rerun the same command to resume" after every command; a profile or an export starts
    over. (The commands are stood in for by ones interrupted at once: the handler is what is tested.)"""
    from corpus import cli

    def interrupted(args, console):
        raise KeyboardInterrupt

    for name in ("_cmd_run", "_cmd_profile"):
        monkeypatch.setattr(cli, name, interrupted)
    assert cli.main(["run", str(tmp_path / "c.yaml")]) == 130
    assert "interrupted: rerun the same command to resume" in capsys.readouterr().err
    assert cli.main(["profile", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "resume" not in err, err


def test_a_config_read_from_a_pipe_resolves_paths_against_the_working_folder(tmp_path: Path):
    """`corpus run /dev/stdin` (or `<(...)`): relative paths resolved against the "folder" of the pipe,
    /proc/PID/fd, so no input was ever found. They resolve against the working folder now."""
    import subprocess
    import sys

    n = make_jsonl_corpus(tmp_path / "in", files=1, docs_per_file=5)
    config = "output: out\ninputs:\n  - source: web\n    path: in\npipeline: []\n"

    def corpus(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "corpus", *args], input=config, capture_output=True, text=True,
                              cwd=tmp_path, timeout=120)

    res = corpus("check", "/dev/stdin")
    assert res.returncode == 0 and "ok: 1 input (1 file), 0 operators" in res.stdout, res.stderr
    res = corpus("run", "/dev/stdin", "--quiet")
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["docs"] == n


def test_empty_columns_and_negative_counts_are_refused(tmp_path: Path):
    """`export --columns ""` said "no column(s) [] in this corpus"; `validate --examples -1` was taken."""
    res = run_cli("export", str(tmp_path / "corpus"), str(tmp_path / "dest"), "--columns", " , ")
    assert res.returncode == 2 and "error: --columns: name at least one column" in res.stderr, res.stderr
    res = run_cli("validate", str(tmp_path), "--suite", "s.json", "--examples", "-1")
    assert res.returncode == 2 and "argument --examples: expected 0 or more, got '-1'" in res.stderr, res.stderr


def test_status_counts_a_finished_sinks_units(tmp_path: Path):
    """`corpus status` showed a finished run's sink as never run ("05-profile │ sink │ 0/44 │ 0"): it counted
    done/*.json, and a sink marks only its end, in _done.json. All its units are done now, and its docs in
    are what the stage before passed on."""
    from corpus import InputSpec, Pipeline
    from corpus.stages.filter import LengthFilter
    from corpus.stages.profile.operator import Profile
    from corpus.stats import status_rows

    make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=40)
    res = Pipeline([LengthFilter(min_words=4), Profile()]).run(
        inputs=[InputSpec(source="web", path=str(tmp_path / "in"))], output=tmp_path / "out", workers=1, quiet=True)
    (_, status, *_), rows = status_rows(res.output)
    assert status == "ok"
    (_, _, _, units, done, docs_in), (*_, sink_units, sink_done, sink_docs) = rows[1:]
    assert rows[2][1:3] == ("02-profile", "sink") and sink_units > 0
    assert (sink_done, sink_docs) == (sink_units, sum(b["kept"] for b in res.balance)) and done == units


def test_stats_lists_tied_drop_reasons_in_one_order(tmp_path: Path):
    """Reasons dropping as many documents each (lang=et: 1; lang=el: 1) came out in the hash
    aggregate's order, which changed from one `corpus stats` to the next; ties are by reason now."""
    import random

    from corpus import InputSpec, Pipeline
    from corpus.catalog import Catalog
    from corpus.stages.filter import LengthFilter
    from corpus.stats import funnel_rows

    make_jsonl_corpus(tmp_path / "in", files=1, docs_per_file=5)
    res = Pipeline([LengthFilter(min_words=1)]).run(inputs=[InputSpec(source="web", path=str(tmp_path / "in"))],
                                                    output=tmp_path / "out", workers=1, quiet=True)
    cat = Catalog(res.output / "catalog.duckdb", create=False)
    run_id = cat.latest_run()
    reasons = [f"language:lang={i:03d}" for i in range(60)]
    random.Random(3).shuffle(reasons)
    with cat.connect() as con:
        con.executemany("INSERT INTO drops VALUES (?, 1, '01-x', ?, 'web', ?, ?)",
                        [[run_id, f"u{i}", r, 2 if i == 7 else 1] for i, r in enumerate(reasons)])
    _, funnel, *_ = funnel_rows(res.output)
    drops = next(r["drops"] for r in funnel if r["drops"])
    assert drops == [f"{reasons[7]}: 2"] + [f"{r}: 1" for r in sorted(set(reasons) - {reasons[7]})]
