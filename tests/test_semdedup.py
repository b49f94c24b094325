"""Semantic dedup on synthetic vectors (no model): the greedy rule against a plain reference, the keep
rules, the threshold sweep from one fit, identical results across worker counts, the wiring through
the contract, and clear errors for missing or damaged vectors."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from corpus.executor import PipelineError, worker_pool
from corpus.integrity import CorruptFileError
from corpus.operators import StageContext, ensure_columns
from corpus.schema import DOC_SCHEMA
from corpus.stages.clean import NormalizeText
from corpus.stages.embed import EMBEDDING, LISTING, Embed, write_store
from corpus.stages.semdedup import SemanticDedup, greedy
from corpus.writers import write_parquet

DIM = 16


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def reference(vectors: np.ndarray, order: list[int], threshold: float) -> dict[int, tuple[int, float]]:
    """The rule in plain Python: in priority order, a document goes when its most similar kept document
    (the first among equals) is at or above the threshold. {doc: (kept doc it names or itself, best sim)}."""
    kept: list[int] = []
    out = {}
    for i in order:
        sims = [(float(vectors[i] @ vectors[j]), -pos, j) for pos, j in enumerate(kept)]
        best = max(sims) if sims else None
        if best is not None and best[0] >= threshold:
            out[i] = (best[2], best[0])
        else:
            out[i] = (i, best[0] if best else float("nan"))
            kept.append(i)
    return out


def corpus_vectors(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors with planted near copies at known cosines (some chained), and their lengths."""
    rng = np.random.default_rng(seed)
    base = _unit(rng.standard_normal((n, DIM)))
    for i in range(0, n, 4):  # every 4th document gets near copies at a spread of similarities
        for j, noise in ((i + 1, 0.15), (i + 2, 0.35), (i + 3, 0.6)):
            if j < n:
                base[j] = _unit(base[i] + noise * rng.standard_normal(DIM))
    lengths = rng.integers(10, 500, n)
    return base.astype(np.float32), lengths


def write_corpus(folder: Path, vectors: np.ndarray, lengths: np.ndarray, shards: int = 3,
                 files: int = 4) -> tuple[list[Path], Path]:
    """Shards (id, text, source, row_id, quality) and an embeddings store whose files cut the rows
    elsewhere than the shards do (rows are matched by row_id)."""
    n = len(vectors)
    row_ids = (np.arange(n) // 50 << 40) | (np.arange(n) % 50 + 1)  # two input files' worth of row ids
    ids = [f"d{i}" for i in range(n)]
    texts = ["x" * int(k) for k in lengths]
    frame = pl.DataFrame({"id": ids, "text": texts, "source": ["s"] * n, "row_id": row_ids,
                          "quality": (np.arange(n) % 7).astype(np.float64)})
    paths = []
    for k, part in enumerate(np.array_split(np.arange(n), shards)):
        p = folder / "shards" / f"s-{k:05d}-00000.parquet"
        write_parquet(frame[part.tolist()], p)
        paths.append(p)
    store = folder / "store"
    write_store(store, row_ids, ids, vectors, files=files)
    return paths, store


def _in_process(fn, items):
    return [fn(x) for x in items]


def fit_and_apply(tmp: Path, op: SemanticDedup, shards: list[Path], store: Path, workers: int = 1,
                  pool_map=_in_process) -> pl.DataFrame:
    """Fit, then filter every shard: all rows with keep and the added columns, in corpus order. The fit
    folder is op.fitted."""
    tmp.mkdir(parents=True, exist_ok=True)
    fit = Path(tempfile.mkdtemp(prefix="fit-", dir=tmp))
    op.fitted = fit
    op.fit(StageContext("01-semantic_dedup", fit, tuple(shards), workers, pool_map, {"embeddings": store}))
    op.load(fit)
    frames = []
    for s in shards:
        df = pl.read_parquet(s)
        v = op.filter(df)
        frames.append(df.with_columns(keep=v.keep, reason=pl.lit(v.reason), **v.scores))
    return pl.concat(frames)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("semdedup")
    vectors, lengths = corpus_vectors()
    shards, store = write_corpus(tmp, vectors, lengths)
    return tmp, vectors, lengths, shards, store


def test_greedy_equals_the_plain_rule_across_blocks():
    rng = np.random.default_rng(3)
    vectors, _ = corpus_vectors(60, seed=3)
    order = rng.permutation(60)
    thresholds = [0.5, 0.8, 0.95]
    # a block of a few rows: similarities are computed in many pieces and must not change the answer
    for block in (64 << 20, 4 * 60 * 7):
        for t, (kept_of, best) in zip(thresholds, greedy(vectors[order], thresholds, block_bytes=block), strict=True):
            ref = reference(vectors, list(order), t)
            got = {int(order[i]): (int(order[kept_of[i]]), float(best[i])) for i in range(60)}
            assert {d: k for d, (k, _) in got.items()} == {d: k for d, (k, _) in ref.items()}
            for d, (_, s) in ref.items():
                assert np.isnan(s) and np.isnan(got[d][1]) or abs(got[d][1] - s) < 1e-5


@pytest.mark.parametrize("keep", ["first", "longest", "score"])
def test_fit_drops_by_the_rule_and_names_the_kept_document(synthetic, keep):
    tmp, vectors, lengths, shards, store = synthetic
    op = SemanticDedup(threshold=0.8, clusters=1, keep=keep, score_column="quality" if keep == "score" else "")
    out = fit_and_apply(tmp, op, shards, store)
    n = len(vectors)
    quality = np.arange(n) % 7
    order = {"first": list(range(n)), "longest": sorted(range(n), key=lambda i: (-lengths[i], i)),
             "score": sorted(range(n), key=lambda i: (-quality[i], i))}[keep]
    ref = reference(vectors, order, 0.8)
    dropped = out.filter(~pl.col("keep"))
    assert 10 < dropped.height < n // 2
    assert set(dropped["id"]) == {f"d{i}" for i, (k, _) in ref.items() if k != i}
    assert set(dropped["reason"]) == {"semantic_duplicate"}
    for r in dropped.iter_rows(named=True):
        k, s = ref[int(r["id"][1:])]
        assert r["semantic_duplicate_of"] == f"d{k}" and abs(r["semantic_similarity"] - s) < 1e-5
        assert r["semantic_similarity"] >= 0.8
        kept_row = out.filter(pl.col("id") == f"d{k}")
        assert kept_row["keep"][0] and r["semantic_duplicate_of_row"] == kept_row["row_id"][0]
    kept = out.filter(pl.col("keep"))
    assert kept["semantic_duplicate_of"].is_null().all() and kept["semantic_duplicate_of_row"].is_null().all()
    assert (kept["semantic_similarity"].drop_nulls() < 0.8).all()
    assert kept["semantic_similarity"].null_count() == 1  # only the first in priority has nothing before it


def test_one_fit_counts_every_threshold_as_separate_runs_would(synthetic):
    tmp, _, _, shards, store = synthetic
    op = SemanticDedup(threshold=0.9, clusters=3, sweep=[0.6, 0.75, 0.9])
    fit_and_apply(tmp, op, shards, store)
    params = json.loads((op.fitted / "params.json").read_text())
    for row in params["sweep"]:
        alone = fit_and_apply(tmp, SemanticDedup(threshold=row["threshold"], clusters=3, sweep=[]), shards, store)
        assert row["removed"] == alone.filter(~pl.col("keep")).height
    assert params["removed"] == params["sweep"][-1]["removed"] and params["clusters"] == 3
    # examples: each dropped at its threshold with a cosine below the next threshold up
    bands = {e["threshold"]: e["pairs"] for e in params["examples"]}
    assert bands[0.6] and all(0.6 <= p["similarity"] < 0.75 for p in bands[0.6])
    assert all(p["dropped"]["id"] and p["kept"]["id"] for b in bands.values() for p in b)


def test_identical_across_worker_counts(synthetic):
    tmp, _, _, shards, store = synthetic
    one = fit_and_apply(tmp, SemanticDedup(threshold=0.7, clusters=4), shards, store)
    with worker_pool(2) as pool_map:
        two = fit_and_apply(tmp, SemanticDedup(threshold=0.7, clusters=4), shards, store, 2, pool_map)
    assert one.equals(two)
    assert one["semantic_cluster"].n_unique() == 4


def test_wiring_needs_an_embed_stage_before_and_the_same_text():
    embed, sem = Embed(map_sample=0), SemanticDedup()
    assert ensure_columns([embed, sem], DOC_SCHEMA) == []
    errors = ensure_columns([sem], DOC_SCHEMA)
    assert len(errors) == 1 and "uses the side output embeddings/, which no earlier sink publishes" in errors[0]
    errors = ensure_columns([embed, NormalizeText(), sem], DOC_SCHEMA)
    assert len(errors) == 1 and "'normalize_text' rewrites a column it was made from" in errors[0]
    assert ensure_columns([NormalizeText(), embed, sem], DOC_SCHEMA) == []
    with pytest.raises(ValueError, match="score_column"):
        SemanticDedup(keep="score")
    from corpus import Pipeline

    with pytest.raises(PipelineError, match="no earlier sink publishes"):
        Pipeline([sem]).check()


def test_missing_or_damaged_vectors_are_named(tmp_path):
    vectors, lengths = corpus_vectors(40)
    shards, store = write_corpus(tmp_path, vectors, lengths, shards=2, files=2)
    listing = json.loads((store / LISTING).read_text())
    first = store / listing["files"][0]["file"]
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=r"vectors/00000.parquet: content changed"):
        fit_and_apply(tmp_path, SemanticDedup(clusters=1), shards, store)
    # a store that lacks some rows: the shard is named
    listing["files"] = listing["files"][1:]
    (store / LISTING).write_text(json.dumps(listing))
    with pytest.raises(ValueError, match=r"s-00000-00000.parquet: 20 rows have no vector"):
        fit_and_apply(tmp_path / "b", SemanticDedup(clusters=1), shards, store)


def test_an_empty_corpus_fits(tmp_path):
    shards, store = write_corpus(tmp_path, np.zeros((0, DIM), np.float32), np.zeros(0, int), shards=1, files=1)
    out = fit_and_apply(tmp_path, SemanticDedup(), shards, store)
    assert out.height == 0 and EMBEDDING not in out.columns
