"""Word splitting against datatrove's: the quality benchmark's documents split by datatrove's English
``split_into_words`` (spaCy's tokenizer, tokens stripped, empty ones dropped) and by our
``quality_signals(words: datatrove)``, the differing tokens counted by class, and the Gopher
repetition verdicts compared three ways (ours; datatrove's filter on our words; datatrove's own).

A development tool (not a speed figure): ``python -m benchmarks quality_tokens [--docs 600] [--show 30]``;
the corpus (``benchmarks.quality.make_corpus``) is kept in ``benchmarks/_work/quality-tokens-N``.
Token disagreement is what moves the verdicts near a bound, so it is the figure to drive down; ours
against "datatrove's filter on our words" isolates the repetition arithmetic from the words.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import subprocess
from collections import Counter

import polars as pl

from benchmarks.common import WORK, table
from benchmarks.quality import dt_python, make_corpus

# Classes of a differing stretch of text, first match wins (checked on the text both sides cover).
CLASSES = [
    ("url", re.compile(r"://|www\.|\w@\w")),
    ("table border / punctuation run", re.compile(r"^[^\w\s]{3,}$|[-=+|*#~]{3,}")),
    ("contraction / apostrophe", re.compile(r"\w['\u2019]\w|['\u2019](?:s|S|ll|re|ve|d|m|t)\b")),
    ("underscore", re.compile(r"_")),
    ("slash", re.compile(r"/")),
    ("digit hyphen (dates, ranges)", re.compile(r"\d-|-\d")),
    ("hyphen", re.compile(r"-")),
    ("dot", re.compile(r"\.")),
    ("colon", re.compile(r":")),
    ("brackets / quotes", re.compile(r"[()\[\]{}<>\"'`]")),
    ("other", re.compile(r"")),
]

DT_SCRIPT = r"""
import json, sys
from datatrove.data import Document
from datatrove.pipeline.filters import GopherRepetitionFilter
import datatrove.pipeline.filters.gopher_repetition_filter as rep
from datatrove.utils.text import split_into_words

ours = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    ours[r["id"]] = r["words"]
f = GopherRepetitionFilter()
out = open(sys.argv[2], "w")
import spacy
nlp = spacy.blank("en")
chunks = set(k for k in nlp.tokenizer.rules if k.split() == [k])
for path in sys.argv[3:]:
    for line in open(path):
        chunks.update(json.loads(line)["text"].split())
for c in sorted(chunks):
    out.write(json.dumps({"chunk": c, "tokens": [t.text for t in nlp.tokenizer(c)]}) + "\n")
for path in sys.argv[3:]:
    for line in open(path):
        d = json.loads(line)
        words = split_into_words(d["text"])
        def verdict(ws):
            rep.split_into_words = lambda text, language=None: ws
            r = f.filter(Document(text=d["text"], id=d["id"]))
            return None if r is True else r[1]
        out.write(json.dumps({"id": d["id"], "dt": words, "rep_dt": verdict(words),
                              "rep_dt_on_ours": verdict(ours[d["id"]])}) + "\n")
"""


def classify(text: str) -> str:
    return next(name for name, pat in CLASSES if pat.search(text))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=600)
    ap.add_argument("--show", type=int, default=30, help="most frequent differing stretches to list")
    args = ap.parse_args(argv)
    from corpus.stages.rulesets import GopherRepetitionFilter
    from corpus.stages.signals import QualitySignals, datatrove_words
    from corpus.stages.words import SEP, split_chunks

    python = dt_python()
    folder = WORK / f"quality-tokens-{args.docs}"
    if not (folder / "part-1.jsonl").exists():
        make_corpus(folder, args.docs)
    df = pl.concat([pl.read_parquet(folder / f"part-{h}.parquet") for h in (0, 1)])
    ours_words = datatrove_words(df["text"])
    ours_path = folder / "ours.jsonl"
    pl.DataFrame({"id": df["id"], "words": ours_words}).write_ndjson(ours_path)
    script, out = folder / "dt_tokens.py", folder / "dt_tokens.jsonl"
    script.write_text(DT_SCRIPT)
    subprocess.run([str(python), str(script), str(ours_path), str(out),
                    *(str(folder / f"part-{h}.jsonl") for h in (0, 1))], check=True)
    rows = list(map(json.loads, out.read_text().splitlines()))
    dt = {r["id"]: r for r in rows if "id" in r}
    chunk_rows = [r for r in rows if "chunk" in r]
    mine = split_chunks(pl.Series([r["chunk"] for r in chunk_rows], dtype=pl.String)).str.split(SEP).to_list()
    bad = [(r["chunk"], r["tokens"], m) for r, m in zip(chunk_rows, mine, strict=True)
           if [t for t in r["tokens"] if t.strip()] != m]
    print(f"distinct whitespace chunks (the corpus's and spaCy's special cases): {len(chunk_rows):,}, "
          f"split differently: {len(bad):,}")
    for c, want, got in bad[:args.show]:
        print(f"  {c[:50]!r}: spaCy {want[:8]} ours {got[:8]}")
    verdict_ours = GopherRepetitionFilter().filter(
        QualitySignals(groups=["gopher_repetition"], words="datatrove").map(df)).reason.to_list()

    by_class: Counter[str] = Counter()
    stretches: Counter[tuple[str, str]] = Counter()
    total_dt = total_diff = docs_equal = 0
    verdicts = Counter()
    for doc_id, ours, v_ours in zip(df["id"].to_list(), ours_words.to_list(), verdict_ours, strict=True):
        theirs = dt[doc_id]["dt"]
        total_dt += len(theirs)
        diff = 0
        ops = difflib.SequenceMatcher(None, ours, theirs, autojunk=False).get_opcodes()
        for tag, a1, a2, b1, b2 in ops:
            if tag == "equal":
                continue
            n = max(a2 - a1, b2 - b1)
            diff += n
            key = (" ".join(ours[a1:a2]), " ".join(theirs[b1:b2]))
            stretches[key] += 1
            by_class[classify("".join(theirs[b1:b2]) or "".join(ours[a1:a2]))] += n
        total_diff += diff
        docs_equal += diff == 0
        r = dt[doc_id]
        verdicts["ours vs datatrove"] += (v_ours is None) == (r["rep_dt"] is None)
        verdicts["ours vs datatrove's filter on our words"] += (v_ours is None) == (r["rep_dt_on_ours"] is None)
        verdicts["(docs with equal words) ours vs datatrove"] += diff == 0 and (v_ours is None) == (r["rep_dt"] is None)
    n = df.height
    print(f"{n} documents, {total_dt:,} datatrove tokens; differing tokens: {total_diff:,} "
          f"({total_diff / total_dt:.3%}); documents with identical words: {docs_equal}")
    print(table([{"class": c, "tokens": f"{k:,}"} for c, k in by_class.most_common()], ["class", "tokens"]))
    print("\nGopher repetition keep/drop agreement:")
    rows = [{"pair": p, "agree": f"{k}/{docs_equal if p.startswith('(') else n}"} for p, k in verdicts.items()]
    print(table(rows, ["pair", "agree"]))
    print(f"\nmost frequent differing stretches (ours -> datatrove), {args.show}:")
    for (a, b), k in stretches.most_common(args.show):
        print(f"{k:6d}  {a[:60]!r} -> {b[:60]!r}")


if __name__ == "__main__":
    main()
