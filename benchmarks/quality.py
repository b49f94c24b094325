"""The four rule sets (Gopher quality, Gopher repetition, C4, FineWeb) against datatrove's filters at their
defaults, on the same realistic documents, 2 workers each: docs/s and the agreement of keep/drop
verdicts per rule set, with the disagreements listed by rule so each can be explained.

Documents: the text files of this machine's ``/usr/share/doc`` (READMEs, changelogs, licences, cut at
blank lines into pieces of at most 8,000 characters), Python's documentation topics (``pydoc_data``),
and web-like pages (``benchmarks.common._web_text``) for the rest. Each worker gets its own half (a
Parquet shard for us, the same texts as JSONL for datatrove, read before the clock starts).

Ours: ``quality_signals`` (the four groups, ``words: datatrove``: words split by spaCy's English rules
as datatrove's tokenizer splits them, ``stages/words.py``; the default whitespace words count "end." as
one word with a letter, so datatrove drops more text for too few alphabetic words) then the four
filters' ``filter`` on every document. datatrove (its own venv, ``benchmarks/_work/dt-venv``: ``pip
install datatrove regex nltk spacy``): every document through ``GopherQualityFilter``,
``GopherRepetitionFilter``, ``C4QualityFilter`` and ``FineWebQualityFilter``, each on its own copy of
the document (C4 rewrites the text), defaults throughout. Both sides judge every document with every
rule set, so the verdicts compare one to one.
Each figure is the best of ``--rounds`` alternated rounds. Measure only when ``uptime`` shows a load
under ~1.5.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import subprocess
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import polars as pl

from benchmarks.common import WORK, _web_text, table

DT_VENV = WORK / "dt-venv"
SETS = ("gopher_quality", "gopher_repetition", "c4", "fineweb")
MAX_CHARS = 8000
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".gz", "README", "copyright", "changelog", "NEWS", "AUTHORS")


def _pieces(text: str) -> list[str]:
    """A text cut at blank lines into pieces of at most MAX_CHARS (a longer paragraph is cut as is)."""
    out, cur = [], ""
    for para in text.split("\n\n"):
        if cur and len(cur) + len(para) + 2 > MAX_CHARS:
            out.append(cur)
            cur = ""
        cur = f"{cur}\n\n{para}" if cur else para
        while len(cur) > MAX_CHARS:
            out.append(cur[:MAX_CHARS])
            cur = cur[MAX_CHARS:]
    if cur.strip():
        out.append(cur)
    return out


def real_texts(limit: int) -> list[str]:
    """Documentation of this machine and Python's: up to `limit` pieces, in a fixed order."""
    import pydoc_data.topics

    texts: list[str] = []
    for key in sorted(pydoc_data.topics.topics):
        texts += _pieces(pydoc_data.topics.topics[key])
    for path in sorted(Path("/usr/share/doc").rglob("*")):
        if len(texts) >= limit:
            break
        if not path.is_file() or not path.name.endswith(TEXT_SUFFIXES) and not path.name.startswith(TEXT_SUFFIXES):
            continue
        try:
            raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
            continue
        if "\x00" not in text and text.strip():
            texts += _pieces(text)
    return texts[:limit]


def make_corpus(folder: Path, docs: int, seed: int = 0) -> list[Path]:
    """Two halves, each as Parquet (ours) and JSONL (datatrove); documents interleaved so both halves
    get the same mix. Returns the Parquet paths."""
    rng = random.Random(seed)
    texts = real_texts(docs * 3 // 4)
    texts += [_web_text(rng) for _ in range(docs - len(texts))]
    rng.shuffle(texts)
    df = pl.DataFrame({"id": [f"d{i}" for i in range(docs)], "text": texts, "meta": ["{}"] * docs,
                       "source": ["bench"] * docs, "row_id": list(range(docs))})
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for half in (0, 1):
        part = df.filter(pl.col("row_id") % 2 == half)
        part.write_parquet(folder / f"part-{half}.parquet")
        part.select("id", "text").write_ndjson(folder / f"part-{half}.jsonl")
        paths.append(folder / f"part-{half}.parquet")
    return paths


# ---------------------------------------------------------------- ours


def _our_ops() -> list:
    from corpus.stages.rulesets import C4Filter, FineWebFilter, GopherQualityFilter, GopherRepetitionFilter
    from corpus.stages.signals import QualitySignals

    # words as datatrove's English tokenizer (spaCy's) splits them, as the comparison asks
    return [QualitySignals(groups=["gopher_quality", "gopher_repetition", "c4", "fineweb"], words="datatrove"),
            GopherQualityFilter(), GopherRepetitionFilter(), C4Filter(), FineWebFilter()]


def _ours_job(shard: str) -> tuple[float, dict[str, list]]:
    signals, *filters = _our_ops()
    df = pl.read_parquet(shard)
    for f in filters:  # warm up: the compiled n-gram pass, regexes
        f.filter(signals.map(df.head(20)))
    start = time.perf_counter()
    scored = signals.map(df)
    verdicts = {s: f.filter(scored).reason for s, f in zip(SETS, filters, strict=True)}
    seconds = time.perf_counter() - start
    return seconds, {"id": df["id"].to_list(), **{s: v.to_list() for s, v in verdicts.items()}}


def ours(shards: list[Path]) -> tuple[float, pl.DataFrame]:
    os.environ.setdefault("POLARS_MAX_THREADS", "1")  # one core per worker, as the executor arranges
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(_ours_job, [str(s) for s in shards]))
    return max(r[0] for r in results), pl.concat([pl.DataFrame(r[1], schema={"id": pl.String, **dict.fromkeys(
        SETS, pl.String)}) for r in results])


# ---------------------------------------------------------------- datatrove (in its venv)

DT_SCRIPT = r"""
import json, sys, time
from multiprocessing import get_context

def job(path):
    from datatrove.data import Document
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                            GopherRepetitionFilter)
    filters = {"gopher_quality": GopherQualityFilter(), "gopher_repetition": GopherRepetitionFilter(),
               "c4": C4QualityFilter(), "fineweb": FineWebQualityFilter()}
    docs = [json.loads(line) for line in open(path)]
    def judge(d):
        out = {}
        for name, f in filters.items():
            try:
                r = f.filter(Document(text=d["text"], id=d["id"]))
            except ZeroDivisionError:
                r = (False, "ZeroDivisionError")
            keep, why = (r, None) if isinstance(r, bool) else r
            out[name] = None if keep else (why or "dropped")
        return out
    for d in docs[:20]:  # warm up: the word tokenizer loads on first use
        judge(d)
    start = time.perf_counter()
    verdicts = [dict(id=d["id"], **judge(d)) for d in docs]
    return time.perf_counter() - start, verdicts

if __name__ == "__main__":
    with get_context("spawn").Pool(2) as pool:
        results = pool.map(job, sys.argv[2:])
    with open(sys.argv[1], "w") as fh:
        json.dump({"seconds": max(r[0] for r in results), "verdicts": [v for r in results for v in r[1]]}, fh)
"""


def dt_python() -> Path:
    """The datatrove venv's python (datatrove, regex, nltk, spacy installed), or a clear error."""
    python = DT_VENV / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"no datatrove venv at {DT_VENV}: python -m venv {DT_VENV} && "
                           f"{DT_VENV}/bin/pip install datatrove regex nltk spacy")
    return python


def datatrove(folder: Path) -> tuple[float, pl.DataFrame]:
    python = dt_python()
    out = folder / "datatrove.json"
    script = folder / "dt_filters.py"  # a file: spawned workers import the function from it
    script.write_text(DT_SCRIPT)
    res = subprocess.run([str(python), str(script), str(out), str(folder / "part-0.jsonl"),
                          str(folder / "part-1.jsonl")], capture_output=True, text=True, check=False, timeout=3600)
    if res.returncode:
        raise RuntimeError(res.stderr[-2000:])
    data = json.loads(out.read_text())
    schema = {"id": pl.String, **dict.fromkeys(SETS, pl.String)}
    return data["seconds"], pl.DataFrame(data["verdicts"], schema=schema)


# ---------------------------------------------------------------- comparison


def compare(ours_v: pl.DataFrame, theirs: pl.DataFrame) -> tuple[list[dict], list[dict]]:
    """Agreement of keep/drop per rule set, and the disagreements by (our reason, datatrove's)."""
    both = ours_v.join(theirs, on="id", suffix="_dt")
    rows, diffs = [], []
    for s in SETS:
        a, b = both[s], both[f"{s}_dt"]
        same = (a.is_null() == b.is_null())
        rows.append({"rule set": s, "docs": f"{both.height:,}", "ours drops": f"{a.is_not_null().sum():,}",
                     "datatrove drops": f"{b.is_not_null().sum():,}", "agreement": f"{same.mean():.2%}",
                     "goal": ">= 98%"})
        pairs = Counter(zip(a.filter(~same).fill_null("kept").to_list(), b.filter(~same).fill_null("kept").to_list(),
                            strict=True))
        ids = both.filter(~same)
        for (ours_r, dt_r), n in pairs.most_common():
            example = ids.filter((pl.col(s).fill_null("kept") == ours_r)
                                 & (pl.col(f"{s}_dt").fill_null("kept") == dt_r))
            diffs.append({"rule set": s, "ours": ours_r, "datatrove": dt_r, "docs": n,
                          "e.g.": example["id"][0]})
    return rows, diffs


def run(docs: int, rounds: int, folder: Path) -> tuple[list[dict], list[dict], list[dict]]:
    shutil.rmtree(folder, ignore_errors=True)
    shards = make_corpus(folder, docs)
    mb = sum(pl.read_parquet(s)["text"].str.len_bytes().sum() for s in shards) / 1e6
    t_ours = t_dt = float("inf")
    verdicts_ours = verdicts_dt = None
    for _ in range(rounds):  # alternated, best of each: a busy machine slows one round, not a side
        t, verdicts_ours = ours(shards)
        t_ours = min(t_ours, t)
        t, verdicts_dt = datatrove(folder)
        t_dt = min(t_dt, t)
    speed = [{"side": "ours (signals + 4 filters)", "workers": 2, "docs": f"{docs:,}", "MB": f"{mb:.1f}",
              "docs/s": f"{docs / t_ours:,.0f}", "docs/s per core": f"{docs / t_ours / 2:,.0f}",
              "MB/s": f"{mb / t_ours:.2f}"},
             {"side": "datatrove (4 filters, defaults)", "workers": 2, "docs": f"{docs:,}", "MB": f"{mb:.1f}",
              "docs/s": f"{docs / t_dt:,.0f}", "docs/s per core": f"{docs / t_dt / 2:,.0f}",
              "MB/s": f"{mb / t_dt:.2f}"}]
    speed.append({"side": "speed-up", "docs/s": f"{t_dt / t_ours:.1f}x (goal >= 10x)"})
    agree, diffs = compare(verdicts_ours, verdicts_dt)
    return speed, agree, diffs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=6000, help="documents (documentation pieces, then web-like pages)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help=f"keep the corpus in {WORK}/quality (to look at examples)")
    args = ap.parse_args(argv)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"machine: {os.cpu_count()} cores; {load}")
    folder = WORK / "quality"
    speed, agree, diffs = run(args.docs, args.rounds, folder)
    print(table(speed, ["side", "workers", "docs", "MB", "docs/s", "docs/s per core", "MB/s"]))
    print("\nkeep/drop agreement per rule set (each set judges every document):")
    print(table(agree, ["rule set", "docs", "ours drops", "datatrove drops", "agreement", "goal"]))
    print("\ndisagreements by rule (ours, datatrove's reason; 'kept' = not dropped):")
    print(table(diffs, ["rule set", "ours", "datatrove", "docs", "e.g."]) if diffs else "none")
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
