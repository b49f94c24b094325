"""Shard iteration (corpus/frames.py): every way of cutting a shard gives exactly its rows, in order,
against a plain whole-file read; row ranges read only the row groups they need."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from corpus import frames


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    rng = random.Random(0)
    n = 1000
    df = pl.DataFrame({"text": ["x" * rng.randint(0, 300) if i % 97 else None for i in range(n)],
                       "id": [f"d{i}" for i in range(n)], "n": list(range(n))})
    path = tmp_path_factory.mktemp("frames") / "shard.parquet"
    df.write_parquet(path, row_group_size=128)  # 8 row groups, the last one short
    assert pq.ParquetFile(path).num_row_groups == 8
    return path, df


def _rows(tables) -> list[int]:
    return [x for t in tables for x in t.column("n").to_pylist()]


@pytest.mark.parametrize("cut", [{}, {"batch_rows": 50}, {"batch_rows": 1000}, {"batch_bytes": 2000},
                                 {"batch_bytes": 1}])
@pytest.mark.parametrize("rows", [None, (0, 1000), (5, 6), (100, 700), (127, 129), (990, 5000), (300, 300)])
def test_every_cut_gives_exactly_the_rows_in_order(shard, cut, rows):
    path, df = shard
    start, stop = rows or (0, df.height)
    got = list(frames.batches(path, ["text", "n"], rows=rows, **cut))
    assert _rows(got) == list(range(start, min(stop, df.height)))
    assert all(t.column_names == ["text", "n"] for t in got)
    if "batch_rows" in cut:
        assert all(t.num_rows <= cut["batch_rows"] for t in got)
    if "batch_bytes" in cut:  # a batch holds less than batch_bytes of text besides its first value
        for t in got:
            sizes = [len(s or "") for s in t.column("text").to_pylist()]
            assert sum(sizes[1:]) < cut["batch_bytes"]
    out = pl.concat(list(frames.frames(path, ["text", "n"], rows=rows, **cut)) or [df.clear().select("text", "n")])
    assert out.equals(df.select("text", "n").slice(start, max(0, min(stop, df.height) - start)))


def test_row_groups_by_default_and_ranges_read_only_their_groups(shard, monkeypatch):
    path, _ = shard
    assert [t.num_rows for t in frames.batches(path, ["n"])] == [128] * 7 + [104]
    read: list[int] = []
    real = pq.ParquetFile.read_row_group
    monkeypatch.setattr(pq.ParquetFile, "read_row_group",
                        lambda self, g, *a, **k: read.append(g) or real(self, g, *a, **k))
    assert _rows(frames.batches(path, ["n"], rows=(130, 260))) == list(range(130, 260))
    assert read == [1, 2]


def test_columns_optional_and_missing(shard):
    path, _ = shard
    (t,) = list(frames.batches(path, ["id"], optional=["n", "cluster_id"], rows=(0, 3)))
    assert t.column_names == ["id", "n"]
    with pytest.raises(ValueError, match=r"shard\.parquet has no column 'cluster_id'"):
        next(frames.batches(path, ["text", "cluster_id"]))
    with pytest.raises(ValueError, match="not both"):
        next(frames.batches(path, ["text"], batch_rows=5, batch_bytes=5))


def test_take_and_column(shard):
    path, df = shard
    rows = np.array([999, 3, 500, 3, 128])
    got = frames.take(path, ["id", "n"], rows)
    assert got["n"].to_list() == rows.tolist() and got["id"].to_list() == [f"d{r}" for r in rows]
    assert frames.take(path, ["id"], []).height == 0
    assert frames.column(path, "id").to_list() == df["id"].to_list()
