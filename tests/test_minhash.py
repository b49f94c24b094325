"""MinHash-LSH near-dup dedup: compatibility with datasketch, accuracy on planted near-duplicates
against exact Jaccard ground truth, determinism across runs and worker counts, incremental dedup."""

from __future__ import annotations

import itertools
import json
import random
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from datasketch import MinHash

from corpus import InputSpec, Pipeline
from corpus.stages.dedup_index import components, reduce_edges
from corpus.stages.dedup_text import (
    Permutations,
    char_shingles_ref,
    shingle_batch,
    shingle_hash32_ref,
    signatures,
    word_shingles_ref,
)
from corpus.stages.lsh_params import explain, s_curve
from corpus.stages.minhash import MinHashDedup, bucket_pairs
from corpus.stages.normalise import Normalisation

THRESHOLD = 0.8
NORM = Normalisation("fuzzy")


# ---------------------------------------------------------------- corpus with planted near-duplicates


def _vocab(rng: random.Random, n: int = 6000) -> tuple[list[str], list[float]]:
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10))) for _ in range(n)]
    return words, [1.0 / (i + 1) ** 0.9 for i in range(n)]  # Zipf-like, as real text


def _sentences(rng: random.Random, vocab: tuple[list[str], list[float]], n_words: int) -> list[str]:
    words = rng.choices(*vocab, k=n_words)
    out, i = [], 0
    while i < len(words):
        k = rng.randint(6, 20)
        s = " ".join(words[i : i + k])
        out.append(s[:1].upper() + s[1:] + rng.choice([".", ".", "!", "?", ";"]))
        i += k
    return out


def _join(sentences: list[str]) -> str:
    paras = [" ".join(sentences[i : i + 4]) for i in range(0, len(sentences), 4)]
    return "\n\n".join(paras)


def _variant(rng: random.Random, vocab, base: list[str], level: float, boiler: str) -> str:
    """A copy of base (a list of sentences) changed by one kind of edit, sized to land near `level`."""
    words = " ".join(base).split()
    n = len(words)
    kind = rng.choice(["edit", "insert", "delete", "reorder", "boilerplate"])
    changed = n * (1 - level) / (1 + level)  # shingles to change for Jaccard ~ level
    if kind == "edit":  # scattered word substitutions: each touches up to 5 shingles
        for pos in rng.sample(range(n), max(1, int(changed / 5))):
            words[pos] = rng.choices(*vocab)[0]
        return _join(_resplit(words))
    if kind == "insert":
        at = rng.randrange(n)
        words[at:at] = rng.choices(*vocab, k=max(1, int(2 * changed)))
        return _join(_resplit(words))
    if kind == "delete":
        k = max(1, int(2 * changed * n / (n + 2 * changed)))
        at = rng.randrange(max(1, n - k))
        del words[at : at + k]
        return _join(_resplit(words))
    if kind == "reorder":  # swap blocks of sentences, then edit to reach the level
        s = list(base)
        cut = rng.randrange(1, len(s))
        s = s[cut:] + s[:cut]
        w = " ".join(s).split()
        for pos in rng.sample(range(len(w)), max(0, int(changed / 5) - 2)):
            w[pos] = rng.choices(*vocab)[0]
        return _join(_resplit(w))
    extra = max(1, int(2 * changed))  # boilerplate (shared by many documents) plus a few own words
    return boiler + "\n\n" + _join(_resplit(words + rng.choices(*vocab, k=max(0, extra - len(boiler.split())))))


def _resplit(words: list[str]) -> list[str]:
    return [" ".join(words[i : i + 12]) + "." for i in range(0, len(words), 12)]


def make_corpus(seed: int = 0, families: int = 70, singles: int = 300) -> tuple[list[str], list[list[int]]]:
    """Texts, and the families (lists of indices) of planted near-duplicates."""
    rng = random.Random(seed)
    vocab = _vocab(rng)
    boilers = [" ".join(_sentences(rng, vocab, 40)) for _ in range(3)]
    texts: list[str] = []
    fams: list[list[int]] = []
    levels = [0.97, 0.93, 0.9, 0.87, 0.85, 0.82, 0.78, 0.72, 0.65, 0.55, 0.4]
    for _ in range(families):
        base = _sentences(rng, vocab, rng.randint(120, 400))
        fam = [len(texts)]
        texts.append(_join(base))
        for level in rng.sample(levels, rng.randint(1, 4)):
            fam.append(len(texts))
            texts.append(_variant(rng, vocab, base, level, rng.choice(boilers)))
        if rng.random() < 0.2:  # an exact copy
            fam.append(len(texts))
            texts.append(texts[fam[0]])
        fams.append(fam)
    for _ in range(singles):  # unrelated documents, some sharing boilerplate with the variants
        body = _join(_sentences(rng, vocab, rng.randint(60, 400)))
        texts.append(rng.choice(boilers) + "\n\n" + body if rng.random() < 0.3 else body)
    order = list(range(len(texts)))
    rng.shuffle(order)  # families scattered over files and shards
    where = {old: new for new, old in enumerate(order)}
    return [texts[i] for i in order], [sorted(where[i] for i in f) for f in fams]


def shingle_sets(texts: list[str], k: int = 5) -> list[set[bytes]]:
    norm = NORM.apply(pl.Series(texts)).to_list()
    return [set(word_shingles_ref(t, k)) for t in norm]


def jac(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def write_inputs(folder: Path, texts: list[str], files: int = 3) -> list[InputSpec]:
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        with open(folder / f"part-{f}.jsonl", "w") as fh:
            for i in range(f, len(texts), files):
                fh.write(json.dumps({"id": f"d{i}", "text": texts[i]}) + "\n")
    return [InputSpec(source="web", path=str(folder), id_key="id")]


def run(tmp: Path, inputs: list[InputSpec], op: MinHashDedup, workers: int, name: str):
    res = Pipeline([op]).run(inputs, tmp / name, workers=workers, quiet=True, shard_max_bytes=150_000)
    assert all(b["ok"] for b in res.balance), res.balance
    return res, _read(sorted((tmp / name / "data").glob("*.parquet"))), _read(
        sorted((tmp / name / "rejected").glob("*/*.parquet")))


def _read(files: list[Path]) -> pl.DataFrame:
    cols = {"id": pl.String, "row_id": pl.Int64, "cluster_id": pl.Int64, "cluster_size": pl.Int64,
            "duplicate_of": pl.String, "duplicate_of_row": pl.Int64}
    return pl.concat([pl.read_parquet(p) for p in files]) if files else pl.DataFrame(schema=cols)


# ---------------------------------------------------------------- compatibility with datasketch


@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
@pytest.mark.parametrize("hash_fn", ["fast", "sha1"])
@pytest.mark.parametrize(("unit", "k"), [("word", 5), ("char", 5), ("word", 3)])
def test_signatures_equal_datasketch(scheme, hash_fn, unit, k):
    rng = random.Random(3)
    words, _ = _vocab(rng, 300)
    texts = [" ".join(rng.choices(words, k=rng.randint(0, 40))) for _ in range(25)]
    texts += ["Ünïcode — full-width ＡＢＣ 中文字 test, ok?", "x", "", "a b c d", "y" * 80 + " " + "z" * 70]
    norm = NORM.apply(pl.Series(texts))
    sig = signatures(shingle_batch(norm, k, unit, hash_fn), Permutations.make(64, 11, scheme))
    for d, t in enumerate(norm.to_list()):
        if hash_fn == "fast":  # same permutations, our shingle hash given to datasketch
            m = MinHash(64, seed=11, scheme=scheme, hashfunc=lambda b, u=unit: shingle_hash32_ref(b, u))
        else:  # datasketch's defaults: sha1_hash32 over the shingle's bytes
            m = MinHash(64, seed=11, scheme=scheme)
        for s in word_shingles_ref(t, k) if unit == "word" else char_shingles_ref(t, k):
            m.update(s if isinstance(s, bytes) else s.encode())
        assert np.array_equal(m.hashvalues.astype(np.uint64), sig[d].astype(np.uint64)), (d, t)


def test_shingle_sets_match_reference():
    texts, _ = make_corpus(seed=5, families=5, singles=5)
    norm = NORM.apply(pl.Series(texts))
    sh = shingle_batch(norm, 5).unique_sorted()
    for d, t in enumerate(norm.to_list()):
        want = sorted({shingle_hash32_ref(s) for s in word_shingles_ref(t, 5)})
        assert sh.hashes[sh.offsets[d] : sh.offsets[d + 1]].tolist() == want


# ---------------------------------------------------------------- parameters, buckets, components


def test_s_curve_and_explain():
    b, r, table = s_curve(0.8, 128, 0.1, 0.9)
    assert b * r <= 128 and (b, r) == (14, 9)  # datasketch's optimiser with these weights
    p = dict(table)
    assert p[0.0] == 0.0 and p[1.0] == 1.0 and all(x <= y for x, y in itertools.pairwise(p.values()))
    assert p[0.85] > 0.95 and p[0.5] < 0.05
    text = explain(0.8)
    assert "bands=14 x rows=9" in text and "◀ threshold" in text and "█" in text
    assert s_curve(0.7, 256, bands=20, rows=10)[:2] == (20, 10)
    # `corpus dedup explain --bands 7` used the optimiser's without a word; 7 x 30 of 128 was drawn as a curve.
    # The stage and the command share one check.
    with pytest.raises(ValueError, match="give both bands and rows"):
        explain(0.8, bands=7)
    with pytest.raises(ValueError, match="bands x rows = 210 exceeds num_perm = 128"):
        explain(0.8, bands=7, rows=30)
    with pytest.raises(ValueError, match="bands x rows = 210 exceeds num_perm = 128"):
        MinHashDedup(bands=7, rows=30)


@pytest.mark.parametrize("args,says", [
    (["--num-perm", "2000"], "num_perm = 2000 is too many hashes for the bands x rows optimiser (at most 1024): "
                             "give bands and rows"),  # 2,000,000: 7.28 TiB
    (["--num-perm", "2000000", "--bands", "2", "--rows", "2"], "num_perm must be at most 16384"),
    (["--num-perm", "-5"], "num_perm must be a whole number >= 2, got -5"),  # "bands x rows = 0 ..."
    (["--num-perm", "1"], "num_perm must be a whole number >= 2, got 1"),
    (["--num-perm", "1", "--bands", "1", "--rows", "1"], "num_perm must be a whole number >= 2, got 1"),
    (["--fn-weight", "nan"], "fp_weight and fn_weight must be finite, >= 0 and not both 0, got 0.1, nan"),
    (["--fp-weight", "inf"], "fp_weight and fn_weight must be finite, >= 0 and not both 0, got inf, 0.9"),
    (["--fp-weight", "-1"], "got -1.0, 0.9"),
    (["--fp-weight", "0", "--fn-weight", "0"], "got 0.0, 0.0"),
    (["--threshold", "1"], "threshold must lie strictly between 0 and 1, got 1.0"),
])
def test_dedup_explain_and_the_stage_refuse_the_same_out_of_range_settings(args: list[str], says: str, capsys):
    """`dedup explain --num-perm 2000000` died of a numpy ArrayMemoryError, --fn-weight nan drew a 1 x 1 band
    plan; the stage and the command share lsh_params' one check (check_params)."""
    from corpus.cli import main

    args = ["--threshold", "0.8", *args] if "--threshold" not in args else args
    assert main(["dedup", "explain", *args]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("error: ") and says in err, err
    kinds = {"threshold": float, "fp_weight": float, "fn_weight": float}
    params = {k: kinds.get(k, int)(v) for a, v in zip(args[::2], args[1::2], strict=True)
              if (k := a.removeprefix("--").replace("-", "_"))}
    with pytest.raises(ValueError, match=re.escape(says)):
        MinHashDedup(**params)


def test_the_num_perm_bound_applies_only_where_the_optimiser_runs(capsys):
    """2048 hashes with bands and rows given never run the optimiser (they were refused by a bound meant for
    it); weights above 1 and numpy floats are fine (only their ratio matters)."""
    from corpus.cli import main
    from corpus.stages.lsh_params import optimal_bands_rows

    stage = MinHashDedup(num_perm=2048, bands=256, rows=8)
    with pytest.raises(ValueError, match="num_perm must be at most 16384"):  # a typo ran out of memory mid-run
        MinHashDedup(num_perm=10**9, bands=2, rows=2)
    assert stage.band_rows() == (256, 8)
    assert main(["dedup", "explain", "--threshold", "0.8", "--num-perm", "2048", "--bands", "256",
                 "--rows", "8"]) == 0
    assert "bands=256 x rows=8" in capsys.readouterr().out
    assert MinHashDedup(num_perm=1024).num_perm == 1024
    assert MinHashDedup(fp_weight=1, fn_weight=9).band_rows() == optimal_bands_rows(0.8, 128, 0.1, 0.9)
    assert optimal_bands_rows(0.8, 128, np.float32(0.5), np.float32(0.5)) == optimal_bands_rows(0.8, 128, 0.5, 0.5)


def test_optimiser_equals_datasketch():
    from datasketch.lsh import _optimal_param

    from corpus.stages.lsh_params import optimal_bands_rows

    for t, n, w in itertools.product([0.5, 0.7, 0.8, 0.9], [64, 128], [(0.5, 0.5), (0.1, 0.9), (0.3, 0.7)]):
        assert optimal_bands_rows(t, n, *w) == _optimal_param(t, n, *w), (t, n, w)


def test_bucket_pairs_small_and_large():
    key = np.array([1, 1, 1, 2, 3, 3] + [9] * 40, dtype=np.uint64)
    doc = np.array([4, 7, 9, 1, 2, 5] + list(range(100, 140)), dtype=np.int64)
    pairs = {tuple(p) for p in bucket_pairs(key, doc, all_pairs_max=10).tolist()}
    assert {(4, 7), (4, 9), (7, 9), (2, 5)} <= pairs
    big = {p for p in pairs if p[0] >= 100}
    assert len(big) == 39 + 38  # star to the first, plus each to its predecessor
    nodes, root = components(*np.array(sorted(pairs)).T)
    assert dict(zip(nodes.tolist(), root.tolist(), strict=True))[139] == 100


def test_components_reduce_then_merge_equals_direct():
    rng = np.random.default_rng(0)
    u, v = rng.integers(0, 500, 400), rng.integers(0, 500, 400)
    direct = dict(zip(*[a.tolist() for a in components(u, v)], strict=True))
    parts = [reduce_edges(u[i::3], v[i::3]) for i in range(3)]  # per partition, then merged
    merged = np.concatenate(parts)
    via = dict(zip(*[a.tolist() for a in components(merged[:, 0], merged[:, 1])], strict=True))
    assert all(via.get(n, n) == r for n, r in direct.items())


# ---------------------------------------------------------------- accuracy and determinism


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("minhash")
    texts, fams = make_corpus()
    inputs = write_inputs(tmp / "in", texts)
    runs = {w: run(tmp, inputs, MinHashDedup(threshold=THRESHOLD), w, f"out-w{w}") for w in (1, 2)}
    return tmp, texts, fams, inputs, runs


def _clusters(kept: pl.DataFrame, rej: pl.DataFrame) -> dict[str, int]:
    both = pl.concat([kept.select("id", "cluster_id"), rej.select("id", "cluster_id")])
    return dict(zip(both["id"].to_list(), both["cluster_id"].to_list(), strict=True))


def test_accuracy_on_planted_near_duplicates(corpus):
    _, texts, fams, _, runs = corpus
    _, kept, rej = runs[1]
    sets = shingle_sets(texts)
    cluster = _clusters(kept, rej)
    same = [(a, b) for f in fams for a, b in itertools.combinations(f, 2)]
    truth = {(a, b): jac(sets[a], sets[b]) for a, b in same}
    positives = [p for p, j in truth.items() if j >= THRESHOLD + 0.05]
    found = [p for p in positives if cluster[f"d{p[0]}"] == cluster[f"d{p[1]}"]]
    recall = len(found) / len(positives)
    members: dict[int, list[int]] = {}
    for doc_id, c in cluster.items():
        members.setdefault(c, []).append(int(doc_id[1:]))
    merged = [(a, b) for m in members.values() if len(m) > 1 for a, b in itertools.combinations(sorted(m), 2)]
    errors = [(a, b) for a, b in merged if jac(sets[a], sets[b]) < THRESHOLD - 0.1]
    precision = 1 - len(errors) / max(1, len(merged))
    levels = np.histogram(list(truth.values()), bins=[0, 0.5, 0.7, 0.8, 0.85, 0.9, 1.01])[0]
    print(f"\nplanted pairs by J {levels.tolist()}; recall {recall:.3f} on {len(positives)} pairs with "
          f"J >= {THRESHOLD + 0.05}; precision {precision:.3f} on {len(merged)} merged pairs")
    assert len(positives) >= 60 and len(merged) >= 60
    assert recall >= 0.95
    assert precision >= 0.95
    # every removed document is within the threshold of some member of its cluster (its verified edge);
    # with the kept copy itself only transitively (connected components), so report how often not
    far = 0
    for r in rej.iter_rows(named=True):
        doc = sets[int(r["id"][1:])]
        assert max(jac(doc, sets[m]) for m in members[r["cluster_id"]] if f"d{m}" != r["id"]) >= THRESHOLD
        far += jac(doc, sets[int(r["duplicate_of"][1:])]) < THRESHOLD - 0.1
    print(f"removed {rej.height}; of them {far} have J < {THRESHOLD - 0.1:.2f} with the kept copy (chained)")


def test_rejected_rows_carry_reason_cluster_and_kept_id(corpus):
    tmp, texts, _, _, runs = corpus
    res, kept, rej = runs[1]
    assert res.balance[0]["input"] == len(texts) == kept.height + rej.height
    assert rej.height > 50 and set(rej["reject_reason"]) == {"near_duplicate"}
    assert set(rej["reject_stage"]) == {"minhash_dedup"}
    # the cluster is named by its kept row's identity; duplicate_of is that row's user id
    assert (rej["duplicate_of_row"] == rej["cluster_id"]).all()
    kept_of = rej.join(kept.select(pl.col("row_id").alias("duplicate_of_row"), pl.col("id").alias("kept_id")),
                       on="duplicate_of_row", how="left")
    assert kept_of.height == rej.height and (kept_of["kept_id"] == kept_of["duplicate_of"]).all()
    # the kept copy is the first of its cluster in corpus order, and sizes add up
    order = {f"d{i}": k for k, i in enumerate(sorted(range(len(texts)), key=lambda i: (i % 3, i)))}
    assert all(order[r["duplicate_of"]] < order[r["id"]] for r in rej.iter_rows(named=True))
    sizes = pl.concat([kept.select("cluster_id", "cluster_size"), rej.select("cluster_id", "cluster_size")])
    counted = sizes.group_by("cluster_id").agg(pl.len(), pl.col("cluster_size").first())
    assert (counted["len"] == counted["cluster_size"]).all()
    singles = kept.filter(pl.col("cluster_size") == 1)
    assert (singles["cluster_id"] == singles["row_id"]).all() and kept["duplicate_of"].is_null().all()
    assert kept["duplicate_of_row"].is_null().all()
    fit = next((tmp / "out-w1" / "work").glob("01-minhash_dedup-*/artifacts"))
    params = json.loads((fit / "params.json").read_text())
    assert params["bands"] * params["rows"] <= 128 and len(params["s_curve"]) == 21
    assert params["removed"] == rej.height and params["verified_pairs"] <= params["candidate_pairs"]
    top = json.loads((fit / "clusters.json").read_text())["top"]
    assert 0 < len(top) <= 20 and top[0]["size"] == kept["cluster_size"].max()
    assert top[0]["examples"][0]["kept"] and top[0]["examples"][0]["snippet"]


def test_identical_across_runs_and_worker_counts(corpus):
    tmp, _, _, inputs, runs = corpus
    cols = ["id", "cluster_id", "cluster_size", "duplicate_of", "duplicate_of_row"]

    def frame(kept, rej):
        return pl.concat([kept.select(cols), rej.select(cols)]).sort("id")

    one, two = frame(*runs[1][1:]), frame(*runs[2][1:])
    assert one.equals(two)
    _, kept, rej = run(tmp, inputs, MinHashDedup(threshold=THRESHOLD, partitions=5), 1, "out-again")
    assert frame(kept, rej).equals(one)  # a rerun, with other partition counts, says the same


# ---------------------------------------------------------------- incremental / cross-corpus


def test_incremental_against_saved_index(tmp_path):
    rng = random.Random(9)
    vocab = _vocab(rng, 3000)
    old = [_join(_sentences(rng, vocab, 150)) for _ in range(40)]
    a = write_inputs(tmp_path / "a", old, files=2)
    _, kept_a, _ = run(tmp_path, a, MinHashDedup(index_out=str(tmp_path / "idx")), 1, "out-a")
    assert kept_a.height == 40 and (tmp_path / "idx" / "index.json").exists()

    # a new batch: near copies of old documents, and new ones (one with a near copy of its own)
    fresh = [_join(_sentences(rng, vocab, 150)) for _ in range(10)]
    near_old = [t.replace(".", ",", 1) + " appended words here" for t in old[:8]]
    batch = near_old + fresh + [fresh[0] + " tail"]
    b = write_inputs(tmp_path / "b", batch, files=1)
    op = MinHashDedup(index=str(tmp_path / "idx"), index_out=str(tmp_path / "idx2"))
    _, kept_b, rej_b = run(tmp_path, b, op, 1, "out-b")
    old_ids = set(kept_a["id"])
    by_id = dict(zip(rej_b["id"], rej_b["duplicate_of"], strict=True))
    assert all(by_id[f"d{i}"] in old_ids for i in range(8))  # dropped as near-dups of the indexed docs
    assert by_id[f"d{len(batch) - 1}"] == "d8" and kept_b.height == 10
    meta = json.loads((tmp_path / "idx2" / "index.json").read_text())
    assert sum(p["docs"] for p in meta["parts"]) == 50  # the old index's parts plus this batch's kept

    # the grown index catches the batch's new documents too; a mismatched setup is refused
    _, kept_c, rej_c = run(tmp_path, b, MinHashDedup(index=str(tmp_path / "idx2")), 1, "out-c")
    assert kept_c.height == 0 and rej_c.height == len(batch)
    with pytest.raises(ValueError, match="other parameters"):
        run(tmp_path, b, MinHashDedup(index=str(tmp_path / "idx2"), ngram=3), 1, "out-d")


def test_index_without_shingle_sets_falls_back_to_signature_estimate(tmp_path):
    rng = random.Random(4)
    vocab = _vocab(rng, 3000)
    old = [_join(_sentences(rng, vocab, 200)) for _ in range(20)]
    a = write_inputs(tmp_path / "a", old, files=1)
    run(tmp_path, a, MinHashDedup(verify=False, index_out=str(tmp_path / "idx")), 1, "out-a")
    assert not list((tmp_path / "idx").glob("*.sh.npy"))
    batch = [old[0] + " one more sentence at the end.", _join(_sentences(rng, vocab, 200))]
    b = write_inputs(tmp_path / "b", batch, files=1)
    _, kept, rej = run(tmp_path, b, MinHashDedup(index=str(tmp_path / "idx")), 1, "out-b")
    assert rej["id"].to_list() == ["d0"] and rej["duplicate_of"].to_list() == ["d0"] and kept.height == 1
