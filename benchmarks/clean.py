"""Cleaning operators on 2 workers beside plain per-document Python doing the same work.

Families and their plain counterparts (functions below, one document at a time):
  hygiene  normalize_text   ftfy.fix_text (same config) on every document, then re/unicodedata steps
  html     html_to_text     trafilatura.extract called directly (no child process, no time limit)
  c4       c4_lines         the C4 line loop (TFDS clean_page's order) per document
  pii      pii_redact       benchmarks.pii.redact_plain (re.sub with a callback per candidate)
Ours: `Pipeline([op])` with 2 workers over JSONL; its figure is the stage's own time from the catalog
(each shard read, transformed and written; the sum over shards divided by 2 workers), so reading the
input is not counted. Plain: a 2-process pool over the same texts in memory (chunks of 1000).
Corpora are generated (web-like text with mojibake, control characters, odd spaces, C4 boilerplate
lines, citation markers, PII) and cached in benchmarks/_work/clean/. `python -m benchmarks clean
--docs 20000 --families hygiene,pii`. Goal: ours faster than plain for every family except html, whose
work is the extractor's own (ours adds a child process and a time limit; the figure shows their cost).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import re
import shutil
import time
import unicodedata
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchmarks.common import WORK, _web_text, table
from benchmarks.pii import make_docs, redact_plain
from corpus import InputSpec, Pipeline
from corpus.catalog import Catalog
from corpus.operators import Operator
from corpus.stages import boilerplate
from corpus.stages.boilerplate import C4Lines
from corpus.stages.clean import CONTROL, NormalizeText
from corpus.stages.html import HtmlToText
from corpus.stages.normalise import UNICODE_SPACES
from corpus.stages.pii import PiiRedact

# ---------------------------------------------------------------- plain per-document implementations


def hygiene_plain(text: str) -> str:
    """normalize_text's defaults, one document at a time, ftfy on every document."""
    from ftfy import fix_text

    from corpus.stages.clean import _ftfy_config

    text = fix_text(text, _ftfy_config())
    text = re.sub(CONTROL, "", text)
    text = unicodedata.normalize("NFC", text)
    text = re.sub(r"\r\n?|[\x0b\x0c\u2028\u2029\x85]", "\n", text)
    text = re.sub(UNICODE_SPACES, " ", text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def c4_plain(text: str, terminal_punct: bool = False, min_words: int = 0) -> tuple[str, dict[str, int]]:
    """c4_lines, one document at a time: C4's loop over lines (TFDS ``clean_page``), lorem ipsum marked."""
    counts = dict.fromkeys(boilerplate.C4_COUNTERS, 0)
    kept = []
    for raw in text.split("\n"):
        counts["c4_citations_removed"] += len(re.findall(boilerplate.CITATION, raw))
        out = re.sub(boilerplate.CITATION, "", raw)
        line = out.strip()
        lower = line.lower()
        if terminal_punct and (not line.endswith(boilerplate.END_PUNCTUATION) or line.endswith(boilerplate.ELLIPSIS)):
            counts["c4_no_punct_lines"] += 1
        elif len(line.split()) < min_words:
            counts["c4_short_lines"] += 1
        elif boilerplate.LOREM in lower:
            counts["c4_lorem_ipsum_lines"] += 1
            kept.append(out)
        elif boilerplate.JAVASCRIPT in lower:
            counts["c4_javascript_lines"] += 1
        elif any(p in lower for p in boilerplate.POLICY):
            counts["c4_policy_lines"] += 1
        else:
            kept.append(out)
    return "\n".join(kept), counts


def html_plain(html: str) -> str | None:
    import trafilatura

    return trafilatura.extract(html, output_format="txt", deduplicate=False, favor_precision=True,
                               include_comments=False, include_tables=True)


def _plain_chunk(args: tuple[str, list[str]]) -> int:
    fn = {"hygiene": hygiene_plain, "html": html_plain, "c4": c4_plain, "pii": redact_plain}[args[0]]
    for t in args[1]:
        fn(t)
    return len(args[1])


# ---------------------------------------------------------------- corpora

COOKIE = ["This website uses cookies to improve your experience.", "Read our Privacy Policy and Terms of Use.",
          "Please enable JavaScript to view the comments.", "By continuing you agree to our cookie policy."]


def _mojibake(text: str) -> str:
    return text.encode("utf-8").decode("latin-1", errors="replace")


def hygiene_docs(n: int, rng: random.Random) -> list[str]:
    docs = []
    for _ in range(n):
        t = _web_text(rng)
        r = rng.random()
        if r < 0.05:
            t = _mojibake(t)
        elif r < 0.15:
            t = t.replace("\n", "\r\n")
        elif r < 0.2:
            t = t.replace(" ", "\u00a0", 3) + "\x07"
        docs.append(t)
    return docs


def c4_docs(n: int, rng: random.Random) -> list[str]:
    docs = []
    for _ in range(n):
        lines = _web_text(rng).split("\n")
        for _ in range(rng.randint(0, 2)):
            lines.insert(rng.randrange(len(lines) + 1), rng.choice(COOKIE))
        if rng.random() < 0.3:
            lines[0] += "[1]"
        docs.append("\n".join(lines))
    return docs


def html_docs(n: int, rng: random.Random) -> list[str]:
    docs = []
    for i in range(n):
        paras = "".join(f"<p>{p}</p>" for p in _web_text(rng).split("\n") if p)
        docs.append(f"<html><head><title>Page {i}</title></head><body><nav><a href='/'>Home</a> | "
                    f"<a href='/about'>About</a></nav><article><h1>Story {i}</h1>{paras}</article>"
                    f"<footer>Copyright 2024 Example</footer></body></html>")
    return docs


FAMILIES: dict[str, tuple[Callable[[], Operator], Callable[[int, random.Random], list[str]]]] = {
    "hygiene": (NormalizeText, hygiene_docs),
    "html": (HtmlToText, html_docs),
    "c4": (C4Lines, c4_docs),
    "pii": (PiiRedact, lambda n, rng: make_docs(n, seed=rng.randint(0, 1 << 30))),
}


def _corpus(family: str, n: int) -> Path:
    folder = WORK / "clean" / f"{family}-{n}"
    path = folder / "docs.jsonl"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        docs = FAMILIES[family][1](n, random.Random(15))
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            for i, d in enumerate(docs):
                fh.write(json.dumps({"id": str(i), "text": d}) + "\n")
        tmp.rename(path)
    return path


def run_family(family: str, n: int) -> list[dict]:
    path = _corpus(family, n)
    texts = [json.loads(line)["text"] for line in path.read_text().splitlines()]
    mb = sum(len(t.encode()) for t in texts) / 1e6
    out = WORK / "clean" / f"out-{family}"
    shutil.rmtree(out, ignore_errors=True)
    op = FAMILIES[family][0]()
    res = Pipeline([op]).run([InputSpec(source="bench", path=str(path), id_key="id")], out, workers=2, quiet=True,
                             shard_max_bytes=4_000_000)
    (stage_s,) = Catalog(out / "catalog.duckdb", create=False).query(
        "SELECT sum(seconds) FROM unit_stats WHERE run_id = ? AND stage_idx = 1", [res.run_id])[0]
    ours = stage_s / 2
    chunks = [(family, texts[i:i + 1000]) for i in range(0, len(texts), 1000)]
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
        list(pool.map(_plain_chunk, [(family, texts[:1])] * 4))  # start both workers, import their libraries
        t = time.perf_counter()
        assert sum(pool.map(_plain_chunk, chunks)) == len(texts)
        plain = time.perf_counter() - t
    shutil.rmtree(out, ignore_errors=True)
    return [{"family": family, "path": name, "docs/s": f"{n / s:,.0f}", "MB/s": f"{mb / s:.2f}",
             "seconds": f"{s:.2f}", "vs plain": f"{plain / s:.2f}x"}
            for name, s in ((f"{op.name} (2 workers)", ours), ("plain per-document (2 processes)", plain))]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks clean", description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=20000, help="documents per family")
    ap.add_argument("--families", default=",".join(FAMILIES), help=f"comma separated, of {', '.join(FAMILIES)}")
    args = ap.parse_args(argv)
    families = args.families.split(",")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        ap.error(f"unknown family {unknown[0]!r}")
    rows = [r for f in families for r in run_family(f, args.docs)]
    print(table(rows, ["family", "path", "docs/s", "MB/s", "seconds", "vs plain"]))
