"""Dedup keys its work by row identity (row_id), never by the user's id: ids that repeat across files,
shards and sources change nothing about what is kept, clusters are named by the kept row, and the
split grouping in tokenize follows clusters, not ids."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import polars as pl
import pytest
from dedup_reference import line_dedup, near_kept, norm
from helpers import read_all
from test_dedup_property import make_corpus

from corpus import InputSpec, Pipeline
from corpus.stages.dedup import ExactDedup
from corpus.stages.dedup_lines import LineDedup
from corpus.stages.minhash import MinHashDedup
from corpus.stages.tokenize import group_keys


def _write(folder: Path, texts: list[str], files: int = 2) -> None:
    """Files of equal length whose ids restart at r0 in every file (as row numbers do)."""
    folder.mkdir(parents=True)
    per = -(-len(texts) // files)
    for f in range(files):
        with open(folder / f"f{f}.jsonl", "w") as fh:
            for k, t in enumerate(texts[f * per : (f + 1) * per]):
                fh.write(json.dumps({"id": f"r{k}", "text": t}) + "\n")


def _run(op, inputs: list[InputSpec], out: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    res = Pipeline([op]).run(inputs, out, workers=1, quiet=True, shard_max_bytes=2000)
    assert all(b["ok"] for b in res.balance)
    rej = list((out / "rejected").glob("*/*.parquet"))
    return (read_all(out / "data").sort("row_id"),
            read_all(out / "rejected").sort("row_id") if rej else pl.DataFrame())


OPS = {"exact": lambda: ExactDedup(), "near": lambda: MinHashDedup(threshold=0.8), "lines": lambda: LineDedup()}


@pytest.mark.parametrize("kind", list(OPS))
def test_corpus_copied_twice_keeps_what_one_copy_keeps(tmp_path, kind):
    texts = make_corpus(random.Random(3))
    _write(tmp_path / "a", texts)
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # the same files again: same ids, same texts
    unique = "a document found nowhere else in either copy of this corpus at all"
    with open(tmp_path / "b" / "f1.jsonl", "a") as fh:
        fh.write(json.dumps({"id": "r0", "text": unique}) + "\n")  # its id is everywhere, its text nowhere
    spec = {s: InputSpec(source=s, path=str(tmp_path / s), id_key="id") for s in "ab"}
    one, _ = _run(OPS[kind](), [spec["a"]], tmp_path / "one")
    two, rej = _run(OPS[kind](), [spec["a"], spec["b"]], tmp_path / "two")
    cols = ["id", "text", "src_file", "src_row"]
    assert two.filter(source="a").select(cols).equals(one.select(cols))  # copy a keeps what it keeps alone
    b = two.filter(source="b")
    if kind == "lines":  # every line of copy b is repeated in copy a: only the unique document is left whole
        assert b["text"].to_list() == line_dedup(texts + texts + [unique])[len(texts):]
        return
    assert b.select("id", "text").rows() == [("r0", unique)]  # the unique document is never a duplicate
    assert rej.height == len(texts) * 2 + 1 - two.height
    # each removed copy names a different, kept row with its text; the user id alone would be ambiguous
    assert (rej["duplicate_of_row"] != rej["row_id"]).all()
    kept = two.select(pl.col("row_id").alias("duplicate_of_row"), pl.col("id").alias("kept_id"),
                      pl.col("text").alias("kept_text"))
    pairs = rej.join(kept, on="duplicate_of_row", how="left")
    assert pairs["kept_id"].null_count() == 0 and (pairs["kept_id"] == pairs["duplicate_of"]).all()
    if kind == "exact":
        assert all(norm(a, False) == norm(b, False) for a, b in pairs.select("kept_text", "text").rows())


def test_cluster_id_is_the_kept_row_and_splits_group_by_it(tmp_path):
    rng = random.Random(5)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda omicron sigma omega".split()

    def doc() -> str:
        return " ".join(rng.choice(words) for _ in range(60))

    base, other, third = doc(), doc(), doc()
    for name, rows in (("x", [("same", base), ("same", other)]), ("y", [("same", third), ("k", base + " tail")])):
        (tmp_path / "in").mkdir(exist_ok=True)
        with open(tmp_path / "in" / f"{name}.jsonl", "w") as fh:
            for i, t in rows:
                fh.write(json.dumps({"id": i, "text": t}) + "\n")
    kept, rej = _run(MinHashDedup(), [InputSpec(source="s", path=str(tmp_path / "in"), id_key="id")], tmp_path / "o")
    assert kept["text"].to_list() == [base, other, third] and rej["text"].to_list() == [base + " tail"]
    # three documents called "same", three clusters, each named by its own row; the copy names base's row
    assert kept["cluster_id"].to_list() == kept["row_id"].to_list()
    assert rej["cluster_id"].to_list() == [kept["row_id"][0]] == rej["duplicate_of_row"].to_list()
    assert kept["cluster_size"].to_list() == [2, 1, 1]
    keys = group_keys(kept["text"].to_list(), kept["cluster_id"].to_list())
    assert len(set(keys)) == 3  # documents that share an id do not share a split group


def test_saved_index_with_repeated_ids(tmp_path):
    rng = random.Random(11)
    old = make_corpus(rng)
    _write(tmp_path / "old", old)
    kept_old, _ = _run(MinHashDedup(index_out=str(tmp_path / "idx")), [InputSpec("old", str(tmp_path / "old"),
                                                                                id_key="id")], tmp_path / "o1")
    assert kept_old["text"].to_list() == [t for t, k in zip(old, near_kept(old, 0.8), strict=True) if k]
    # a new batch with the same ids: copies of old documents (caught by the index) and new ones
    batch = [t + " appended" for t in rng.sample(old, 6)] + make_corpus(random.Random(12))
    _write(tmp_path / "new", batch)
    op = MinHashDedup(index=str(tmp_path / "idx"))
    kept, rej = _run(op, [InputSpec("new", str(tmp_path / "new"), id_key="id")], tmp_path / "o2")
    everything = kept_old["text"].to_list() + batch
    want = near_kept(everything, 0.8)[kept_old.height:]
    assert kept["text"].to_list() == [t for t, k in zip(batch, want, strict=True) if k]
    # a copy of an indexed document names it by user id only: its row belongs to another run
    in_index = rej.filter(pl.col("cluster_id") < 0)
    assert in_index.height >= 6 and in_index["duplicate_of_row"].is_null().all()
    assert in_index["duplicate_of"].is_in(kept_old["id"].implode()).all()
    here = rej.filter(pl.col("cluster_id") >= 0)
    assert (here["duplicate_of_row"] == here["cluster_id"]).all()


@pytest.mark.parametrize("policy", ["keep", "reject"])
def test_no_documents_at_all(tmp_path, policy):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text('{"text": ""}\nnot json\n')  # both quarantined: no shard at all
    for name, make in OPS.items():
        res = Pipeline([make()]).run([InputSpec("s", str(tmp_path / "in"))], tmp_path / name, workers=1, quiet=True,
                                     on_duplicate_id=policy)
        assert res.balance == [{"source": "s", "input": 2, "kept": 0, "rejected": 0, "quarantined": 2, "blank": 0,
                                "ok": True}]
