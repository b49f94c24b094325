"""A run writes only into a folder that is new, empty or its own, and deletes only what a run writes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import make_jsonl_corpus, run_cli, tree_digest, write_config

from corpus import InputSpec, Pipeline
from corpus.owner import MARKER, ForeignFilesError, check_output, is_own
from corpus.stages.filter import LengthFilter

FOREIGN = {"data/important.txt": "x", "rejected/notes.txt": "y", "work/myproject/main.c": "z"}


def _plant(out: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)


def _run(tmp_path: Path, out: Path):
    return Pipeline([LengthFilter(min_chars=10)]).run(
        inputs=[InputSpec(source="web", path=str(tmp_path / "in"))], output=out, workers=1, quiet=True)


def test_a_folder_it_did_not_create_is_refused_and_left_alone(tmp_path: Path):
    make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=50)
    out = tmp_path / "out"
    _plant(out, FOREIGN)
    cfg = write_config(tmp_path / "c.yaml", f"inputs:\n  - source: web\n    path: {tmp_path / 'in'}\n")
    res = run_cli("run", str(cfg), "-o", str(out), "--quiet")
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("error:") and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert all(rel in res.stderr for rel in FOREIGN) and "Traceback" not in res.stderr
    # nothing deleted, nothing written: not even the lock or a catalog
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == set(FOREIGN)


def test_foreign_files_in_its_own_folder_are_refused_before_any_work(tmp_path: Path):
    make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=50)
    out = tmp_path / "out"
    _run(tmp_path, out)
    assert (out / MARKER).is_file()
    before = tree_digest(out / "data")
    _plant(out, FOREIGN | {"data/web-00000-00000.parquet.bak": "b", "quarantine/mine.parquet": "q"})
    with pytest.raises(ForeignFilesError) as err:
        _run(tmp_path, out)
    for rel in [*FOREIGN, "data/web-00000-00000.parquet.bak", "quarantine/mine.parquet"]:
        assert rel in str(err.value)
        assert (out / rel).exists()
    assert tree_digest(out / "data") == before
    # moved out, the same run goes ahead; files beside the run's folders were never in the way
    for rel in [*FOREIGN, "data/web-00000-00000.parquet.bak", "quarantine/mine.parquet"]:
        (out / rel).unlink()
    (out / "notes.md").write_text("my notes")
    assert all(b["ok"] for b in _run(tmp_path, out).balance)
    assert (out / "notes.md").read_text() == "my notes"


def test_new_empty_and_earlier_output_folders_are_accepted(tmp_path: Path):
    make_jsonl_corpus(tmp_path / "in", files=1, docs_per_file=30)
    (tmp_path / "empty").mkdir()
    _run(tmp_path, tmp_path / "empty")
    _run(tmp_path, tmp_path / "new" / "nested")
    # an output written before folders were marked: every file in it is a run's own, so it is adopted
    (tmp_path / "empty" / MARKER).unlink()
    check_output(tmp_path / "empty")
    (tmp_path / "empty" / "data" / "keep.txt").write_text("mine")
    with pytest.raises(ForeignFilesError, match="data/keep.txt"):
        check_output(tmp_path / "empty")
    killed = tmp_path / "killed"  # stopped after taking the lock, before marking the folder
    killed.mkdir()
    (killed / ".lock").write_text("123")
    (killed / f".tmp-123-{MARKER}").write_text("{")
    _run(tmp_path, killed)
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ForeignFilesError, match="exists and is not a folder"):
        _run(tmp_path, tmp_path / "file")


def test_a_run_killed_mid_publish_resumes_in_its_own_folder(tmp_path: Path):
    """The states a kill inside publish leaves: staging half built, a published folder already removed."""
    make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=80)
    out = tmp_path / "out"
    _run(tmp_path, out)
    clean = {**tree_digest(out / "data"), **tree_digest(out / "rejected")}
    staging = out / ".publish"
    shutil.copytree(out / "data", staging / "data", copy_function=os.link)
    (staging / "rejected" / "01-length_filter").mkdir(parents=True)
    first = next((out / "data").glob("*.parquet"))
    os.link(first, staging / "rejected" / "01-length_filter" / f".tmp-123-{first.name}")
    shutil.rmtree(out / "data")
    assert all(b["ok"] for b in _run(tmp_path, out).balance)
    assert {**tree_digest(out / "data"), **tree_digest(out / "rejected")} == clean
    assert not staging.exists()


def test_own_name_patterns():
    own = ["manifest.json", ".lock", MARKER, "catalog.duckdb", "catalog.duckdb.wal", "data/web-00000-00001.parquet",
           "data/.tmp-42-web-00000-00001.parquet", "rejected/02-length_filter/a_b-00003-00000.parquet",
           "quarantine/web-00007.parquet", ".publish/data/web-00000-00000.parquet",
           "work/00-read/done/00003.json", "work/00-read/shards/web-00003-00000.parquet",
           "work/01-exact_dedup-0123456789ab/done/web-00003-00000.json",
           "work/01-exact_dedup-0123456789ab/artifacts/buckets/part-1.npy"]
    foreign = ["data/important.txt", "data/web.parquet", "rejected/notes.txt", "work/myproject/main.c",
               "work/00-read/notes.txt", "work/01-exact_dedup-0123456789ab/main.c", "quarantine/mine.parquet",
               "data/sub/web-00000-00000.parquet", "work/01-exact_dedup-xyz/done/a.json"]
    assert [p for p in own if not is_own(p)] == []
    assert [p for p in foreign if is_own(p)] == []


def test_the_sink_folders_are_looked_up_once(tmp_path: Path, monkeypatch):
    """managed_by under a run's output imported every registered operator (about a second) on each call."""
    from corpus import owner, registry

    (tmp_path / MARKER).write_text("{}")
    calls = []
    get = registry.get
    monkeypatch.setattr(registry, "get", lambda *a, **k: calls.append(1) or get(*a, **k))
    owner._publish_folders.cache_clear()
    try:
        assert owner.managed_by(tmp_path / "tokens" / "x") == (tmp_path, "tokens")
        assert owner.managed_by(tmp_path / "mine") is None and owner.managed_by(tmp_path / "other" / "y") is None
        assert len(calls) == len(registry.names())  # each operator imported once, not once per call
    finally:
        owner._publish_folders.cache_clear()


def test_an_output_that_is_a_file_is_refused_alike_everywhere(tmp_path: Path):
    """export, a run's output check and the tokenizer commands share owner.require_folder."""
    from corpus.export import ExportError, check_dest
    from corpus.owner import require_folder

    (tmp_path / "f.jsonl").write_text("mine")
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    for path in (tmp_path / "f.jsonl", tmp_path / "gone"):
        says = f"{path} exists and is not a folder"
        with pytest.raises(ForeignFilesError, match=f"^{says}$"):
            check_output(path)
        with pytest.raises(ExportError, match=f"^{says}$"):
            check_dest(tmp_path / "corpus", path)
        with pytest.raises(ValueError, match=f"^{says}$"):
            require_folder(path)
    assert (tmp_path / "f.jsonl").read_text() == "mine"
    require_folder(tmp_path / "new")
    require_folder(tmp_path)
