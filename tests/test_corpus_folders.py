"""What every command says of a corpus folder it cannot use: an edited manifest.json, a name that is not UTF-8,
a run interrupted before it published anything."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from corpus.cli import main
from corpus.errors import PathNameError, check_path_name
from corpus.integrity import CorruptFileError
from corpus.manifest import read_manifest
from corpus.readers import InputError, InputSpec, plan_tasks

CONFIG = """output: {out}
workers: 1
inputs:
  - source: s
    path: {inputs}
    id_key: id
pipeline:
  - op: normalize_text
"""


def _docs(path: Path, n: int = 60) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": f"alpha beta gamma delta doc {i} " * 5}) + "\n"
                            for i in range(n)))
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, Path]:
    """(a corpus folder run once, a tokenizer trained on it)."""
    from corpus.stages.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("small")
    _docs(root / "docs.jsonl")
    (root / "small.yaml").write_text(CONFIG.format(out=root / "out", inputs=root / "docs.jsonl"))
    assert main(["run", str(root / "small.yaml"), "--quiet"]) == 0
    train_tokenizer(root / "out", root / "tok", kind="bpe", vocab_size=300)
    return root / "out", root / "tok"


def _copy(small, dest: Path) -> Path:
    shutil.copytree(small[0], dest)
    (dest / ".lock").unlink(missing_ok=True)
    return dest


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    return " ".join(err.split())  # one message, however the console wrapped it


def _manifest(small) -> dict:
    return json.loads((small[0] / "manifest.json").read_text())


def _no_sha(m: dict) -> dict:
    for s in m["shards"]:
        s.pop("sha256")
    return m


EDITED = {
    "a list": ([], "a JSON list, not an object"),
    "no shards": ({}, 'no "shards" list'),
    "a shard without sha256": (_no_sha, 'shards[0] (data/s-00000-00000.parquet) has no "sha256"'),
    "shards not a list": (lambda m: {**m, "shards": {}}, 'no "shards" list'),
    "a shard not an object": (lambda m: {**m, "shards": ["data/x.parquet"]}, "shards[0] is str, not an object"),
    "docs as text": (lambda m: {**m, "docs": "300"}, 'no "docs" count'),
}


@pytest.mark.parametrize("case", list(EDITED))
def test_an_edited_manifest_is_named_in_one_line_by_every_reader(small, tmp_path: Path, capsys, case: str):
    """[] gave AttributeError (verify, tokenize) and TypeError (export) tracebacks, {} a KeyError 'shards' in
    export, a shard without sha256 a KeyError in verify, export and tokenize."""
    out = _copy(small, tmp_path / "m")
    edit, says = EDITED[case]
    (out / "manifest.json").write_text(json.dumps(edit(_manifest(small)) if callable(edit) else edit))
    for args in (["verify", str(out)], ["verify", str(out), "--json"], ["export", str(out), str(tmp_path / "e")],
                 ["export", str(out), str(tmp_path / "h"), "--format", "hf"],
                 ["tokenize", str(out), "--tokenizer", str(small[1]), "-o", str(tmp_path / "t")],
                 ["stats", str(out)], ["report", str(out)]):
        assert main(args) == 2, args
        msg = _error(capsys)
        assert msg.startswith(f"error: {out}/manifest.json: {says}"), (args, msg)
        assert "rerunning the pipeline on this folder writes it again" in msg
    with pytest.raises(CorruptFileError, match="not a manifest as corpusforge writes it"):
        read_manifest(out)


def test_the_manifest_a_run_writes_passes_the_shape_check(small, tmp_path: Path, capsys):
    assert main(["verify", str(small[0])]) == 0
    assert read_manifest(small[0])["docs"] == 60


# ------------------------------------------------------------------ names that are not UTF-8

BAD = os.fsdecode(b"c\xff")  # the name as Python holds it: the byte as a lone surrogate


def test_an_input_file_named_in_bytes_that_are_not_utf8_is_refused_when_planned(tmp_path: Path, capsys):
    """The run aborted reading it: "'utf-8' codec can't encode character '\\udcff' ... surrogates not
    allowed"; `corpus check` said ok."""
    _docs(tmp_path / "in" / "good.jsonl")
    _docs(tmp_path / "in" / f"bad{BAD}.jsonl")
    cfg = tmp_path / "b.yaml"
    cfg.write_text(CONFIG.format(out=tmp_path / "out", inputs=tmp_path / "in"))
    says = f"input 's': {tmp_path}/in/badc\\xff.jsonl: the name is not valid UTF-8"
    for args in (["check", str(cfg)], ["run", str(cfg)]):
        assert main(args) == 2, args
        msg = _error(capsys)
        assert says in msg and "rename it" in msg, msg
    with pytest.raises(InputError, match="not valid UTF-8"):
        plan_tasks([InputSpec(source="s", path=str(tmp_path / "in"))])
    assert not (tmp_path / "out" / "catalog.duckdb").exists()  # refused before anything ran


def test_an_output_folder_named_in_bytes_that_are_not_utf8_is_refused(tmp_path: Path, capsys):
    _docs(tmp_path / "docs.jsonl")
    cfg = tmp_path / "o.yaml"
    cfg.write_text(CONFIG.format(out=tmp_path / "out", inputs=tmp_path / "docs.jsonl"))  # YAML is UTF-8: -o
    assert main(["run", str(cfg), "-o", str(tmp_path / f"out{BAD}")]) == 2
    assert f"{tmp_path}/outc\\xff: the name is not valid UTF-8" in _error(capsys)
    with pytest.raises(InputError, match=r"output folder: .*outc\\xff: the name is not valid UTF-8"):
        plan_tasks([InputSpec(source="s", path=str(tmp_path / "docs.jsonl"))], output=tmp_path / f"out{BAD}")


def test_a_corpus_folder_named_in_bytes_that_are_not_utf8_is_named_by_every_command(small, tmp_path: Path, capsys):
    """status, stats, report: RuntimeError std::bad_cast tracebacks (duckdb.connect); verify, export, tokenize:
    a codec error naming no file."""
    out = _copy(small, tmp_path / BAD)
    for args in (["status", str(out)], ["stats", str(out)], ["report", str(out)], ["verify", str(out)],
                 ["export", str(out), str(tmp_path / "e")],
                 ["tokenize", str(out), "--tokenizer", str(small[1]), "-o", str(tmp_path / "t")]):
        assert main(args) == 2, args
        msg = _error(capsys)
        assert f"{tmp_path}/c\\xff" in msg and "the name is not valid UTF-8" in msg and "rename it" in msg, (args, msg)


def test_check_path_name_is_one_message_for_every_path():
    check_path_name("plain/é")
    with pytest.raises(PathNameError, match=r"^where: a/c\\xff: the name is not valid UTF-8 .* rename it"):
        check_path_name(f"a/{BAD}", "where")
    with pytest.raises(InputError):
        check_path_name(Path(BAD), error=InputError)


def test_every_path_argument_named_in_bytes_that_are_not_utf8_is_refused(small, tmp_path: Path, capsys):
    """A tokenizer folder so named was "not a tokenizer.json the tokenizers library reads"; quarantine list
    read nothing. Needs corpus.errors.check_path_args(vars(args)) in cli.run_command before the command."""
    out = _copy(small, tmp_path / BAD)
    tok = shutil.copytree(small[1], tmp_path / f"tok{BAD}")
    for args in (["tokenize", str(small[0]), "--tokenizer", str(tok), "-o", str(tmp_path / "t")],
                 ["quarantine", "list", str(out)]):
        assert main(args) == 2, args
        assert "the name is not valid UTF-8" in _error(capsys), args


# ------------------------------------------------------------------ a run interrupted before it published

def test_a_run_folder_with_nothing_published_says_so(small, tmp_path: Path, capsys):
    """A run killed before its first publish leaves its marker, catalog and work/; verify, export and
    tokenize called it "not a corpusforge corpus folder"."""
    out = _copy(small, tmp_path / "k")
    (out / "manifest.json").unlink()
    shutil.rmtree(out / "data")
    for args in (["verify", str(out)], ["export", str(out), str(tmp_path / "e")],
                 ["tokenize", str(out), "--tokenizer", str(small[1]), "-o", str(tmp_path / "t")]):
        assert main(args) == 2, args
        msg = _error(capsys)
        assert "a run's output folder with nothing published yet" in msg and "run it again to finish" in msg, msg
    plain = tmp_path / "plain"
    plain.mkdir()
    assert main(["verify", str(plain)]) == 2
    assert "not a corpusforge corpus folder" in _error(capsys)
