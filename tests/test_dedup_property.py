"""Property-style test: whatever the user ids look like (unique, repeated within a file, repeated
across files and sources), exact, near and line dedup keep exactly what a plain reference dedup over
the texts keeps (dedup_reference.py). Seeded random corpora; no hypothesis (not installed)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl
import pytest
from dedup_reference import exact_kept, line_dedup, near_kept
from helpers import read_all

from corpus import InputSpec, Pipeline
from corpus.stages.dedup import ExactDedup
from corpus.stages.dedup_lines import LineDedup
from corpus.stages.minhash import MinHashDedup

WORDS = [w + s for w in ("river stone cloud bread apple train music garden window paper lamp road field coat "
                         "shell glass mirror candle orchard harbour ledger violin island winter").split()
         for s in ("", "s", "ed")]
HEADERS = ["subscribe to our weekly newsletter today", "all rights reserved by the example company",
           "read more stories like this one below"]
THRESHOLD = 0.8


def _line(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12)))


def _variant(rng: random.Random, text: str) -> str:
    """A copy: exact, with other whitespace, in other case, or near (a word or two appended: J > 0.9)."""
    kind = rng.choice(["exact", "space", "case", "near", "near"])
    if kind == "space":
        return "  " + text.replace(" ", "  ", 3) + " "
    if kind == "case":
        return text.upper()
    if kind == "near":
        return text + " " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 2)))
    return text


def make_corpus(rng: random.Random) -> list[str]:
    """Families (a document of several lines, sometimes under a shared header line, and copies of it)
    and loners. Pairs are either near (J > 0.9) or far (J < 0.3), so LSH finds every pair that counts."""
    texts: list[str] = []
    for _ in range(rng.randint(25, 45)):
        if texts and rng.random() < 0.35:
            texts.append(_variant(rng, rng.choice(texts)))
            continue
        lines = [_line(rng) for _ in range(rng.randint(5, 9))]
        if rng.random() < 0.4:
            lines.insert(0, rng.choice(HEADERS))
        texts.append("\n".join(lines))
    return texts


def write_inputs(rng: random.Random, folder: Path, texts: list[str]) -> list[InputSpec]:
    """Two sources of one to three files each, in corpus order, with ids that are unique, drawn from a
    small pool (repeated within a file, across files and sources), or restart in every file (as row
    numbers do), often in files of equal length."""
    pool = [f"id{k}" for k in range(rng.randint(1, 4))]
    style = rng.choice(["unique", "pool", "per_file", "mixed"])
    cut = rng.randint(1, len(texts) - 1) if rng.random() < 0.5 else len(texts) // 2
    specs, start = [], 0
    for source, part in (("a", texts[:cut]), ("b", texts[cut:])):
        files = min(len(part), rng.randint(1, 3))
        if rng.random() < 0.5:
            bounds = [len(part) * f // files for f in range(1, files)]
        else:
            bounds = sorted(rng.sample(range(1, len(part)), files - 1)) if files > 1 else []
        (folder / source).mkdir(parents=True)
        for f, (lo, hi) in enumerate(zip([0, *bounds], [*bounds, len(part)], strict=True)):
            with open(folder / source / f"f{f}.jsonl", "w") as fh:
                for k in range(lo, hi):
                    pick = rng.choice(["unique", "pool", "per_file"]) if style == "mixed" else style
                    doc_id = {"unique": f"u{start + k}", "pool": rng.choice(pool), "per_file": f"r{k - lo}"}[pick]
                    fh.write(json.dumps({"id": doc_id, "text": part[k]}) + "\n")
        specs.append(InputSpec(source=source, path=str(folder / source), id_key="id"))
        start += len(part)
    return specs


def _outcome(out: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(every row in corpus order with a ``kept`` flag, the kept rows)."""
    kept = read_all(out / "data")
    rejected = list((out / "rejected").glob("*/*.parquet"))
    rows = pl.concat([kept.with_columns(kept=pl.lit(True))]
                     + ([read_all(out / "rejected").with_columns(kept=pl.lit(False))] if rejected else []),
                     how="diagonal_relaxed")
    return rows.sort("source", "src_file", "src_row"), kept.sort("source", "src_file", "src_row")


@pytest.mark.parametrize("seed", range(8))
def test_dedup_equals_plain_reference_whatever_the_ids(tmp_path, seed):
    rng = random.Random(seed)
    texts = make_corpus(rng)
    inputs = write_inputs(rng, tmp_path / "in", texts)
    shard_bytes = rng.choice([1500, 4000, 1 << 20])  # many shards per file, or one
    workers = 2 if seed == 0 else 1
    ops = {"exact": ExactDedup(partitions=rng.randint(1, 3)),
           "near": MinHashDedup(threshold=THRESHOLD, partitions=rng.randint(1, 3)),
           "lines": LineDedup(partitions=rng.randint(1, 3))}
    got = {}
    for name, op in ops.items():
        res = Pipeline([op]).run(inputs, tmp_path / name, workers=workers, quiet=True, shard_max_bytes=shard_bytes)
        assert all(b["ok"] for b in res.balance), res.balance
        got[name] = _outcome(tmp_path / name)

    rows, _ = got["exact"]
    assert rows["text"].to_list() == texts  # corpus order as written
    assert rows["kept"].to_list() == exact_kept(texts)
    rows, _ = got["near"]
    assert rows["kept"].to_list() == near_kept(texts, THRESHOLD)
    _, kept = got["lines"]
    assert kept["text"].to_list() == line_dedup(texts)
    # a removed copy names a different row (its kept copy), never itself
    for name in ("exact", "near"):
        rows, _ = got[name]
        dropped = rows.filter(~pl.col("kept"))
        assert (dropped["duplicate_of_row"] != dropped["row_id"]).all()
        assert dropped["duplicate_of_row"].is_in(rows.filter("kept")["row_id"].implode()).all()
