"""What a new user meets in the first hour (issue: the first hour): each fix held by a test."""

from __future__ import annotations

import json

import polars as pl
from helpers import run_cli


def _tiny_corpus(folder):
    from corpus import InputSpec, Pipeline

    src = folder / "in"
    src.mkdir(parents=True)
    texts = [f"document number {i} about rivers and stones and bread" for i in range(40)]
    pl.DataFrame({"text": texts}).write_ndjson(src / "a.jsonl")
    Pipeline([]).run(inputs=[InputSpec(source="a", path=str(src))], output=folder / "out", workers=1, quiet=True)
    return folder / "out"


def test_tokenizer_train_refuses_a_missing_or_empty_corpus(tmp_path):
    missing = run_cli("tokenizer", "train", str(tmp_path / "nope"), "--out", str(tmp_path / "tok"))
    assert missing.returncode == 2 and "no corpus at" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = run_cli("tokenizer", "train", str(tmp_path / "empty"), "--out", str(tmp_path / "tok"))
    assert empty.returncode == 2 and "holds no corpus" in empty.stderr
    assert not (tmp_path / "tok" / "tokenizer.json").exists()


def test_tokenizer_train_warns_when_the_vocabulary_is_smaller_than_asked(tmp_path):
    out = _tiny_corpus(tmp_path)
    r = run_cli("tokenizer", "train", str(out), "--out", str(tmp_path / "tok"), "--vocab-size", "8000")
    assert r.returncode == 0, r.stderr
    assert "fewer than the 8000 asked" in r.stderr
    cfg = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())["corpusforge"]
    assert cfg["vocab_size"] == 8000 and cfg["trained_vocab_size"] < 8000 and cfg["documents"] == 40


def test_benchmark_options_are_parsed_before_anything_runs():
    import subprocess
    import sys

    from helpers import ROOT

    def bench(*args):
        return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=60)

    h = bench("ingest", "--help")
    assert h.returncode == 0 and "--sizes" in h.stdout
    top = bench("--help")
    assert top.returncode == 0 and "ingest" in top.stdout and "profile" in top.stdout
    bad = bench("ingest", "nope")
    assert bad.returncode != 0 and "unknown benchmark 'nope'" in bad.stderr
    assert bench("ingest", "--bogus").returncode != 0
