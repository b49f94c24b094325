"""Exact dedup: normalisation options, the kept copy is the first in corpus order across sources and
shards, partitions and workers change nothing, stable digests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from corpus import InputSpec, Pipeline
from corpus.operators import StageContext
from corpus.schema import row_id
from corpus.stages.dedup import ExactDedup
from corpus.stages.dedup_text import digests128
from corpus.writers import write_parquet


def fit_apply(tmp: Path, texts: list[list[str]], op: ExactDedup) -> pl.DataFrame:
    """Fit on shards of the given texts (serially), then apply per shard; returns id, text, duplicate_of."""
    shards = []
    for s, group in enumerate(texts):
        path = tmp / "shards" / f"s{s}.parquet"
        write_parquet(pl.DataFrame({"id": [f"{s}-{i}" for i in range(len(group))], "text": group,
                                    "row_id": [row_id(s, i) for i in range(len(group))]},
                                   schema={"id": pl.String, "text": pl.String, "row_id": pl.Int64}), path)
        shards.append(path)
    (tmp / "fit").mkdir()
    op.fit(StageContext("01-exact_dedup", tmp / "fit", tuple(shards), 1, lambda fn, xs: [fn(x) for x in xs]))
    op.load(tmp / "fit")
    out = []
    for path in shards:
        df = pl.read_parquet(path)
        v = op.filter(df)
        out.append(df.with_columns(v.scores["duplicate_of"], keep=v.keep))
    return pl.concat(out)


@pytest.mark.parametrize(("options", "expect_dropped"), [
    ({}, {"0-1", "0-9"}),  # level exact: whitespace runs, canonically equivalent forms
    ({"normalise": "loose"}, {"0-1", "0-2", "0-9"}),
    ({"normalise": "fuzzy"}, {"0-1", "0-2", "0-3", "0-5", "0-7", "0-9"}),
    ({"normalise": "none"}, set()),
])
def test_normalisation_levels(tmp_path, options, expect_dropped):
    texts = ["Hello world, 2024!", "Hello   world,\n2024!", "hello world, 2024!", "Hello world 2024",
             "Price 10 euros", "Hello world, 1999!", "ＡＢＣ ﬁne", "ABC fine", "Caf\u00e9", "Cafe\u0301"]
    res = fit_apply(tmp_path, [texts], ExactDedup(**options))
    dropped = set(res.filter(~pl.col("keep"))["id"])
    assert dropped == expect_dropped
    assert set(res.filter(~pl.col("keep"))["duplicate_of"]) <= {"0-0", "0-6", "0-8"}


def test_kept_copy_is_first_in_corpus_order_across_shards(tmp_path):
    a = ["x one", "shared text", "y", "shared text"]
    b = ["shared text", "x one", "z"]
    res = fit_apply(tmp_path, [a, b], ExactDedup(partitions=3))
    got = dict(zip(res["id"], res["duplicate_of"], strict=True))
    assert got == {"0-0": None, "0-1": None, "0-2": None, "0-3": "0-1", "1-0": "0-1", "1-1": "0-0", "1-2": None}
    # any frame (here: every shard, reversed) gets its rows' results, matched by row_id
    mixed = pl.concat([pl.read_parquet(p) for p in sorted((tmp_path / "shards").glob("*.parquet"))]).reverse()
    op_apply = ExactDedup(partitions=3)
    op_apply.load(tmp_path / "fit")
    v = op_apply.filter(mixed)
    assert dict(zip(mixed["id"], v.scores["duplicate_of"], strict=True)) == got


def test_empty_and_tiny_shards(tmp_path):
    res = fit_apply(tmp_path, [[], ["a"], [], ["a", ""], [""]], ExactDedup())
    assert dict(zip(res["id"], res["duplicate_of"], strict=True)) == {"1-0": None, "3-0": "1-0", "3-1": None,
                                                                        "4-0": "3-1"}


def test_digest_is_stable():
    d = digests128(pl.Series(["abc", "", "naïve"]))
    want = [hashlib.blake2b(s.encode(), digest_size=16).digest() for s in ["abc", "", "naïve"]]
    assert [r.astype("<u8").tobytes() for r in d] == want
    assert d.dtype == np.uint64 and d.shape == (3, 2)


def _corpus(folder: Path) -> list[InputSpec]:
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    rows_a = [f"document {i % 40} text with words" for i in range(120)]  # 80 repeats
    rows_b = [f"Document {i % 50} text with  words" for i in range(60)]  # overlaps a after lowercase
    for name, rows in (("a", rows_a), ("b", rows_b)):
        for f in range(2):
            with open(folder / name / f"{f}.jsonl", "w") as fh:
                for t in rows[f::2]:
                    fh.write(json.dumps({"text": t}) + "\n")
    return [InputSpec(source="a", path=str(folder / "a")), InputSpec(source="b", path=str(folder / "b"))]


@pytest.mark.parametrize("workers", [1, 2])
def test_pipeline_across_sources(tmp_path, workers):
    inputs = _corpus(tmp_path / "in")
    res = Pipeline([ExactDedup(normalise="loose")]).run(inputs, tmp_path / "out", workers=workers, quiet=True,
                                                    shard_max_bytes=800)
    assert all(b["ok"] for b in res.balance)
    kept = pl.read_parquet(tmp_path / "out" / "data" / "*.parquet")
    rej = pl.read_parquet(tmp_path / "out" / "rejected" / "*" / "*.parquet")
    assert kept.height == 50 and rej.height == 130
    assert set(rej["reject_reason"]) == {"exact_duplicate"} and rej["duplicate_of"].is_in(kept["id"].implode()).all()
    assert kept.filter(pl.col("source") == "b").height == 10  # docs 40..49 exist only in b
    # source a comes first in config order, so its copies are the ones kept
    assert rej.filter(pl.col("source") == "b")["duplicate_of"].str.starts_with("a:").sum() == 50
    fit = next((tmp_path / "out" / "work").glob("01-exact_dedup-*/artifacts"))
    params = json.loads((fit / "params.json").read_text())
    assert params["duplicates"] == 130 and params["groups"] == 40
    assert not list(fit.glob("hashes/*.npy"))  # the partitioned hashes are removed after the fit
