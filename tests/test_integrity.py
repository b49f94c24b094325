"""Corruption is detected and never propagated: every reader of a corpus checks its files against the
manifest, and a resumed run redoes damaged work instead of publishing it."""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from helpers import make_jsonl_corpus, run_cli, tree_digest
from test_resume import _config as resume_config

from corpus import InputSpec, MapOperator, Pipeline
from corpus.integrity import CorruptFileError
from corpus.stages.clean import NormalizeText
from corpus.stages.filter import LengthFilter
from corpus.stages.tokenize import tokenize_corpus
from corpus.stages.tokenizer import train_tokenizer


def flip_text_byte(path: Path, keep_mtime: bool = False) -> tuple[str, str]:
    """Flip one bit inside the text column's pages such that the file still decodes (page checksums not
    verified), with one document's text changed: the silent kind of damage. Returns (before, after)."""
    data = path.read_bytes()
    md = pq.ParquetFile(io.BytesIO(data)).metadata
    col = next(md.row_group(0).column(j) for j in range(md.num_columns) if md.schema.column(j).path == "text")
    start = col.dictionary_page_offset or col.data_page_offset
    texts = pq.read_table(io.BytesIO(data), columns=["text"]).column("text").to_pylist()
    st = path.stat()
    for off in range(start + 32, start + col.total_compressed_size):
        bad = bytearray(data)
        bad[off] ^= 0x01
        try:
            got = pq.read_table(io.BytesIO(bytes(bad)), columns=["text"]).column("text").to_pylist()
        except Exception:  # noqa: BLE001 - this flip breaks decoding: look for a silent one
            continue
        if got != texts:
            with open(path, "r+b") as fh:  # in place: the published file and its work copy are one inode
                fh.seek(off)
                fh.write(bytes([bad[off]]))
            if keep_mtime:
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
            return next((a, b) for a, b in zip(texts, got, strict=True) if a != b)
    raise AssertionError(f"no silent flip found in {path}")


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, Path, dict]:
    """A corpus run once; returns (config, its output, digests of data/ and rejected/)."""
    root = tmp_path_factory.mktemp("clean")
    make_jsonl_corpus(root / "in", files=3, docs_per_file=200, seed=5)
    cfg = resume_config(root)  # normalize, length filter, exact dedup; two workers
    res = run_cli("run", str(cfg), "-o", str(root / "out"), "--quiet")
    assert res.returncode == 0, res.stderr
    return cfg, root / "out", _digests(root / "out")


def _digests(out: Path) -> dict:
    return {**tree_digest(out / "data"), **{f"r/{k}": v for k, v in tree_digest(out / "rejected").items()}}


def _copy_run(clean, tmp_path: Path) -> Path:
    cfg, _, _ = clean
    out = tmp_path / "out"
    res = run_cli("run", str(cfg), "-o", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    return out


def test_a_flipped_byte_is_named_by_every_reader_and_redone_by_a_rerun(clean, tmp_path: Path):
    cfg, _, digests = clean
    out = _copy_run(clean, tmp_path)
    manifest = (out / "manifest.json").read_text()
    shard = sorted((out / "data").glob("*.parquet"))[1]
    before, after = flip_text_byte(shard)
    assert before != after
    name = shard.name

    for args in (["stats", str(out)], ["export", str(out), str(tmp_path / "jsonl")]):
        res = run_cli(*args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert res.stderr.startswith("error:") and name in res.stderr and "Traceback" not in res.stderr
    assert not list((tmp_path / "jsonl").glob(f"{shard.stem}*"))  # the damaged text went nowhere
    res = run_cli("verify", str(out), "--json")
    assert res.returncode == 1
    report = json.loads(res.stdout)
    assert report["ok"] is False and [p["path"] for p in report["problems"]] == [f"data/{name}"]
    with pytest.raises(CorruptFileError, match=name):
        train_tokenizer(out, tmp_path / "bad-tok", kind="bpe", vocab_size=300)
    assert not (tmp_path / "bad-tok" / "tokenizer.json").exists()
    tok = train_tokenizer(clean[1], tmp_path / "tok", kind="bpe", vocab_size=300)
    with pytest.raises(CorruptFileError, match=name):
        tokenize_corpus(out, tok, tmp_path / "tokens", workers=1)
    assert not (tmp_path / "tokens" / "train.bin").exists()

    # a rerun finds the damage, says so, redoes that shard, and publishes exactly the clean corpus
    res = run_cli("run", str(cfg), "-o", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    assert "redoing shard" in res.stderr and name.removesuffix(".parquet") in res.stderr
    assert _digests(out) == digests
    def entries(m: str) -> list:
        return [(s["path"], s["docs"], s["bytes"], s["sha256"]) for s in json.loads(m)["shards"]]

    assert entries((out / "manifest.json").read_text()) == entries(manifest)  # the hashes as first written
    assert run_cli("verify", str(out)).returncode == 0
    assert run_cli("stats", str(out)).returncode == 0


def test_damage_that_keeps_size_and_mtime_is_caught_where_files_are_read(clean, tmp_path: Path):
    cfg, _, digests = clean
    out = _copy_run(clean, tmp_path)
    rejected = sorted((out / "rejected").rglob("*.parquet"))[0]
    shard = sorted((out / "data").glob("*.parquet"))[0]
    flip_text_byte(shard, keep_mtime=True)
    flip_text_byte(rejected, keep_mtime=True)
    res = run_cli("export", str(out), str(tmp_path / "jsonl"))  # hashes each shard as it reads it
    assert res.returncode == 2 and shard.name in res.stderr
    res = run_cli("verify", str(out))
    assert res.returncode == 1 and shard.name in res.stdout and rejected.name in res.stdout
    res = run_cli("run", str(cfg), "-o", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("redoing") == 2
    assert _digests(out) == digests


@dataclass
class PassThrough(MapOperator):
    """Returns its input unchanged: the executor links its output to its input (one inode for both)."""

    name = "pass_through"

    def map(self, df: pl.DataFrame) -> pl.DataFrame:
        return df


def _pipeline_run(tmp_path: Path, out: Path, min_chars: int = 10):
    return Pipeline([NormalizeText(), PassThrough(), LengthFilter(min_chars=min_chars)]).run(
        inputs=[InputSpec(source="web", path=str(tmp_path / "in"))], output=out, workers=1, quiet=True)


def test_damage_is_traced_back_through_linked_stages(tmp_path: Path, caplog):
    make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=120)
    fresh = _pipeline_run(tmp_path, tmp_path / "fresh", min_chars=40)
    out = tmp_path / "out"
    _pipeline_run(tmp_path, out)
    # stage 2 links its output to stage 1's: damage there is damage to both; a changed stage 3 reads it
    linked = sorted((out / "work").glob("02-pass_through-*/shards/*.parquet"))[0]
    assert linked.stat().st_nlink >= 2
    flip_text_byte(linked, keep_mtime=True)
    res = _pipeline_run(tmp_path, out, min_chars=40)
    redone = [r.getMessage() for r in caplog.records if "redoing" in r.getMessage()]
    assert any("through 02-pass_through" in m for m in redone) and any("through 01-normalize_text" in m
                                                                        for m in redone)
    assert res.manifest["content_hash"] == fresh.manifest["content_hash"]
    assert _digests(out) == _digests(tmp_path / "fresh")


def test_a_cut_work_file_is_redone(tmp_path: Path, caplog):
    make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=100)
    out = tmp_path / "out"
    _pipeline_run(tmp_path, out)
    read = sorted((out / "work" / "00-read" / "shards").glob("*.parquet"))[0]
    with open(read, "r+b") as fh:
        fh.truncate(read.stat().st_size // 2)
    again = _pipeline_run(tmp_path, out, min_chars=40)
    assert any("redoing reading" in r.getMessage() for r in caplog.records)
    assert pq.ParquetFile(read).metadata.num_rows > 0  # whole again
    assert again.manifest["content_hash"] == _pipeline_run(tmp_path, tmp_path / "fresh", 40).manifest["content_hash"]


def test_markers_of_an_older_version_are_redone_once(tmp_path: Path, caplog):
    make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=60)
    out = tmp_path / "out"
    first = _pipeline_run(tmp_path, out)
    markers = [p for p in (out / "work").rglob("done/*.json")]
    for p in markers:
        m = json.loads(p.read_text())
        m.pop("files")
        p.write_text(json.dumps(m))
    again = _pipeline_run(tmp_path, out)
    said = [r.getMessage() for r in caplog.records if "without file hashes" in r.getMessage()]
    assert len(said) == 1 and f"{len(markers)} finished units" in said[0]
    assert again.manifest["content_hash"] == first.manifest["content_hash"]
    assert all("files" in json.loads(p.read_text()) for p in markers)
