"""Near-duplicate dedup: ours vs the textbook datasketch loop, datatrove's MinHash pipeline and the two
fastest MinHash libraries (rensa, gaoya).

One generated corpus of web-like documents (log-normal lengths, Zipf vocabulary, paragraphs,
boilerplate shared by many pages) with planted near-duplicates (edits, insertions, deletions,
reordering, added boilerplate, exact copies) whose exact Jaccard (word 5-grams after our
normalisation) is the ground truth. Each contender runs in a fresh subprocess, at threshold 0.8:

(a) textbook: one ``datasketch.MinHash`` per document fed shingle by shingle (``update``), one
    ``MinHashLSH`` (128 perms, default weights): query, then insert if no match. Single process.
(b) datatrove: ``MinhashDedupSignature -> Buckets -> Cluster -> Filter`` with its defaults
    (``MinhashConfig()``: 5-grams, 14 x 8 hashes), JSONL in and out, ``LocalPipelineExecutor`` with
    2 workers, installed in its own venv (``benchmarks/_work/dt-venv``: ``pip install datatrove tokenizers
    orjson regex spacy "xxhash<3.5"``: its word tokenizer needs regex and spacy, and datatrove 0.10 hashes
    str, which xxhash 4 refuses; skipped when absent). Only
    ``start_method="fork"`` differs from its defaults (forkserver): so its workers are our children
    and their CPU time and memory are measured.
(c) rensa (Rust): ``RMinHash.from_token_sets`` over word 5-grams made in Python (lowercase,
    punctuation and digits as the textbook loop), 1,000 documents a call, then
    ``RMinHashDeduplicator`` (LSH, candidates checked on the signatures): query, then add. One thread.
(d) gaoya (Rust): ``MinHashStringIndex`` with its own analyzer (lowercased whitespace words,
    5-grams; 128 hashes, bands from its S-curve): query, then insert. One thread. (c) and (d) are contenders, not
    dependencies: ``pip install rensa gaoya`` into .venv (skipped when absent).
(e) ours: ``corpus.Pipeline([MinHashDedup(threshold=0.8)])`` with 2 workers: JSONL in, Parquet out,
    everything included (reading, markers, catalog, the accounting check); and the minhash stage
    alone: its fit (signatures to clusters, wall time) plus its per-shard apply (worker seconds / 2).
    ``--compare-with DIR`` runs (e) also in another checkout with its own .venv (the previous commit),
    back to back on the same corpus.

Per-core figures divide by the cores a contender keeps busy (1 for (a), (c), (d); 2 for the others);
"docs per CPU-s" divides by the CPU time actually used (user + sys of the process and its children),
which the other engineers' load on the shared cores does not inflate.
Recall: planted pairs with J >= 0.85 that end in one cluster. Precision: of all pairs merged into a
cluster, the share whose J is not below 0.7 (both by exact Jaccard). Goal: >= 10x the faster of (a)
and (b) per core, with recall and precision at least the textbook loop's.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
from pathlib import Path

import numpy as np

from benchmarks.common import PEAK_RSS, WORK, measure, measure_in, table

THRESHOLD = 0.8
DT_VENV = WORK / "dt-venv"
CPU = """
def cpu_s():
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime
"""

# ---------------------------------------------------------------- corpus

_COMMON = ("the of and to in a is that for it as was with be by on not he this are or his from at which but "
           "have an they you were her she there been one all we their has would when if so no will more can "
           "who out up about into than them some could time only its new other these two may first then "
           "do any like my now over such our man me even most made after also did many before must through "
           "years where much your way well down should because each just those people how too little state "
           "good very make world still own see men work long get here between both life being under never "
           "day same another know while last might us great old year off come since against go came right "
           "used take three").split()


def _vocab(rng: np.random.Generator, n: int = 40_000) -> tuple[np.ndarray, np.ndarray]:
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    lf = 1 / np.arange(1, 27) ** 0.9
    made = ["".join(rng.choice(letters, size=rng.integers(3, 11), p=lf / lf.sum())) for _ in range(n)]
    words = np.array(_COMMON + made)
    p = 1.0 / np.arange(1, len(words) + 1) ** 1.05
    return words, p / p.sum()


class Writer:
    def __init__(self, rng: np.random.Generator, vocab: tuple[np.ndarray, np.ndarray]):
        self.rng, self.words, self.p = rng, vocab[0], vocab[1]
        self.cp = np.cumsum(self.p)

    def words_(self, n: int) -> list[str]:
        return self.words[np.searchsorted(self.cp, self.rng.random(n) * self.cp[-1])].tolist()

    def sentences(self, n_words: int) -> list[str]:
        w = self.words_(n_words)
        out, i = [], 0
        while i < len(w):
            k = int(self.rng.integers(6, 26))
            s = w[i : i + k]
            if self.rng.random() < 0.3:
                s.insert(int(self.rng.integers(0, len(s))), str(int(self.rng.integers(1, 3000))))
            if len(s) > 8 and self.rng.random() < 0.5:
                s[3] += ","
            text = " ".join(s)
            out.append(text[:1].upper() + text[1:] + str(self.rng.choice([".", ".", ".", "?", "!"])))
            i += k
        return out

    def join(self, sentences: list[str]) -> str:
        paras, i = [], 0
        while i < len(sentences):
            k = int(self.rng.integers(2, 7))
            paras.append(" ".join(sentences[i : i + k]))
            i += k
        return "\n\n".join(paras)

    def length(self) -> int:
        return int(np.clip(self.rng.lognormal(np.log(380), 0.75), 40, 6000))  # words: median 380, mean ~500

    def variant(self, base: list[str], level: float, boiler: list[str]) -> tuple[str, str]:
        """A changed copy of base (its sentences), sized to land near Jaccard `level`."""
        rng = self.rng
        words = " ".join(base).split()
        n = len(words)
        changed = n * (1 - level) / (1 + level)
        kind = str(rng.choice(["edit", "insert", "delete", "reorder", "boilerplate"]))
        if kind == "edit":
            for pos in rng.choice(n, size=max(1, min(n, int(changed / 5))), replace=False):
                words[pos] = self.words_(1)[0]
        elif kind == "insert":
            at = int(rng.integers(0, n))
            words[at:at] = self.words_(max(1, int(2 * changed)))
        elif kind == "delete":
            k = max(1, int(2 * changed * n / (n + 2 * changed)))
            at = int(rng.integers(0, max(1, n - k)))
            del words[at : at + k]
        elif kind == "reorder":
            cut = int(rng.integers(1, max(2, len(base))))
            words = " ".join(base[cut:] + base[:cut]).split()
            for pos in rng.choice(len(words), size=max(0, min(len(words), int(changed / 5) - 2)), replace=False):
                words[pos] = self.words_(1)[0]
        else:
            extra = self.words_(max(0, int(2 * changed) - 60))
            return self.join(boiler + _resplit(words + extra)), kind
        return self.join(_resplit(words)), kind


def _resplit(words: list[str]) -> list[str]:
    return [" ".join(words[i : i + 15]) + "." for i in range(0, len(words), 15)]


def make_corpus(folder: Path, n_docs: int, seed: int = 0, files: int = 8) -> dict:
    """JSONL files of n_docs documents plus truth.json; reused when already there."""
    truth_path = folder / "truth.json"
    if truth_path.exists():
        return json.loads(truth_path.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    w = Writer(rng, _vocab(rng))
    boilers = [w.sentences(int(rng.integers(40, 80))) for _ in range(12)]
    docs: list[str] = []
    bases: list[tuple[int, list[str]]] = []
    planted: list[tuple[int, int, str]] = []
    while len(docs) < n_docs:
        r = rng.random()
        if bases and r < 0.10:  # a near-duplicate of an earlier document
            b, sents = bases[int(rng.integers(0, len(bases)))]
            text, kind = w.variant(sents, float(rng.uniform(0.5, 0.99)), boilers[int(rng.integers(0, 12))])
            planted.append((b, len(docs), kind))
            docs.append(text)
        elif bases and r < 0.11:  # an exact copy
            b, _ = bases[int(rng.integers(0, len(bases)))]
            planted.append((b, len(docs), "copy"))
            docs.append(docs[b])
        else:
            sents = w.sentences(w.length())
            if rng.random() < 0.2:  # site boilerplate, shared by many unrelated pages
                sents = sents + boilers[int(rng.integers(0, 12))][:8]
            if len(bases) < 5000:
                bases.append((len(docs), sents))
            elif rng.random() < 0.05:
                bases[int(rng.integers(0, 5000))] = (len(docs), sents)
            docs.append(w.join(sents))
    order = rng.permutation(n_docs)  # families spread over files
    per = -(-n_docs // files)
    for f in range(files):
        with open(folder / f"part-{f:04d}.jsonl", "w") as fh:
            for i in order[f * per : (f + 1) * per]:
                fh.write(json.dumps({"id": f"doc{i}", "text": docs[i], "url": f"https://example.com/{i}"}) + "\n")
    truth = {"docs": n_docs, "bytes": sum(os.path.getsize(p) for p in folder.glob("*.jsonl")),
             "text_mb": sum(len(d.encode()) for d in docs) / 1e6,
             "planted": [(f"doc{a}", f"doc{b}", k) for a, b, k in planted]}
    truth_path.write_text(json.dumps(truth))
    return truth


# ---------------------------------------------------------------- evaluation


class Truth:
    """Exact Jaccard of word 5-gram sets after our normalisation, computed on demand."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._texts: dict[str, str] | None = None
        self._sets: dict[str, set[bytes]] = {}

    def texts(self) -> dict[str, str]:
        if self._texts is None:
            self._texts = {}
            for p in sorted(self.folder.glob("*.jsonl")):
                for line in open(p):
                    d = json.loads(line)
                    self._texts[d["id"]] = d["text"]
        return self._texts

    def sets(self, ids: list[str]) -> None:
        import polars as pl

        from corpus.stages.dedup_text import word_shingles_ref
        from corpus.stages.normalise import Normalisation

        todo = [i for i in dict.fromkeys(ids) if i not in self._sets]
        if todo:
            norm = Normalisation("fuzzy").apply(pl.Series([self.texts()[i] for i in todo]))
            for i, t in zip(todo, norm.to_list(), strict=True):
                self._sets[i] = set(word_shingles_ref(t, 5))

    def j(self, a: str, b: str) -> float:
        sa, sb = self._sets[a], self._sets[b]
        return len(sa & sb) / len(sa | sb) if sa or sb else 1.0


def evaluate(truth: Truth, planted: list, clusters: dict[str, str], max_pairs_per_cluster: int = 400) -> dict:
    """Recall on planted pairs with J >= T + 0.05; precision over pairs merged into one cluster."""
    pairs = [(a, b) for a, b, _ in planted]
    truth.sets([x for p in pairs for x in p])
    pos = [(a, b) for a, b in pairs if truth.j(a, b) >= THRESHOLD + 0.05]
    hit = sum(1 for a, b in pos if a in clusters and clusters.get(a) == clusters.get(b))
    members: dict[str, list[str]] = {}
    for doc, c in clusters.items():
        members.setdefault(c, []).append(doc)
    rng = np.random.default_rng(0)
    merged = []
    for m in members.values():
        m = sorted(m)
        if len(m) * (len(m) - 1) // 2 <= max_pairs_per_cluster:
            merged += list(itertools.combinations(m, 2))
        else:  # a giant cluster: a sample of its pairs
            a, b = rng.integers(0, len(m), (2, 4 * max_pairs_per_cluster))
            merged += list(dict.fromkeys((m[x], m[y]) for x, y in zip(a, b, strict=True) if x < y))[
                :max_pairs_per_cluster]
    truth.sets([x for p in merged for x in p])
    errors = sum(1 for a, b in merged if truth.j(a, b) < THRESHOLD - 0.1)
    return {"recall": hit / max(1, len(pos)), "positives": len(pos), "precision": 1 - errors / max(1, len(merged)),
            "merged_pairs": len(merged), "largest_cluster": max((len(m) for m in members.values()), default=0)}


def components(pairs: list[tuple[str, str]]) -> dict[str, str]:
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in list(parent)}


# ---------------------------------------------------------------- contenders

TEXTBOOK = PEAK_RSS + CPU + """
import glob, re, time
from datasketch import MinHash, MinHashLSH
PUNCT, DIGITS = re.compile(r"[^\\w\\s]+"), re.compile(r"\\d+")
t = time.perf_counter()
lsh = MinHashLSH(threshold={threshold}, num_perm=128)
pairs, n, nbytes = [], 0, 0
for f in sorted(glob.glob({folder!r} + "/*.jsonl")):
    for line in open(f):
        d = json.loads(line)
        n += 1
        nbytes += len(d["text"].encode())
        words = DIGITS.sub("0", PUNCT.sub(" ", d["text"].lower())).split()
        m = MinHash(num_perm=128)
        for i in range(max(1, len(words) - 4)):
            m.update(" ".join(words[i:i + 5]).encode())
        hits = lsh.query(m)
        if hits:
            pairs.append((d["id"], sorted(hits)[0]))
        else:
            lsh.insert(d["id"], m)
dt = time.perf_counter() - t
json.dump(pairs, open({result!r}, "w"))
print(json.dumps({{"seconds": dt, "cpu_s": cpu_s(), "peak_rss_mb": peak_mb(), "docs": n, "text_mb": nbytes / 1e6}}))
"""

DATATROVE = PEAK_RSS + CPU + """
import glob, gzip, os, time
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers.jsonl import JsonlWriter
W = {work!r}
files = len(glob.glob({folder!r} + "/*.jsonl"))
config = MinhashConfig()
t = time.perf_counter()
s1 = LocalPipelineExecutor(pipeline=[JsonlReader({folder!r}, glob_pattern="*.jsonl"),
                                     MinhashDedupSignature(output_folder=W + "/sigs", config=config)],
                           tasks=files, workers=2, logging_dir=W + "/logs/1", start_method="fork")
s2 = LocalPipelineExecutor(pipeline=[MinhashDedupBuckets(input_folder=W + "/sigs", output_folder=W + "/buckets",
                                                         config=config)],
                           tasks=config.num_buckets, workers=2, logging_dir=W + "/logs/2", depends=s1,
                           start_method="fork")
s3 = LocalPipelineExecutor(pipeline=[MinhashDedupCluster(input_folder=W + "/buckets", output_folder=W + "/remove",
                                                         config=config, save_cluster_id=True)],
                           tasks=1, logging_dir=W + "/logs/3", depends=s2, start_method="fork")
s4 = LocalPipelineExecutor(pipeline=[JsonlReader({folder!r}, glob_pattern="*.jsonl"),
                                     MinhashDedupFilter(input_folder=W + "/remove", load_cluster_ids=True,
                                                        exclusion_writer=JsonlWriter(W + "/removed")),
                                     JsonlWriter(W + "/kept")],
                           tasks=files, workers=2, logging_dir=W + "/logs/4", depends=s3,
                           start_method="fork")
s4.run()
dt = time.perf_counter() - t
clusters = {{}}
for p in glob.glob(W + "/kept/*") + glob.glob(W + "/removed/*"):
    for line in gzip.open(p, "rt"):
        d = json.loads(line)
        c = d.get("metadata", {{}}).get("minhash_cluster_id")
        if c is not None and c != -1:  # -1: in no cluster
            clusters[d["id"]] = str(c)
json.dump(clusters, open({result!r}, "w"))
print(json.dumps({{"seconds": dt, "cpu_s": cpu_s(), "peak_rss_mb": peak_mb()}}))
"""

# The two fastest MinHash libraries (Rust), one thread each, streaming as the textbook loop does (query,
# then insert when nothing matched), each with its own shingling and the same threshold.
RENSA = PEAK_RSS + CPU + """
import os
os.environ["RAYON_NUM_THREADS"] = "1"
import glob, re, time
from rensa import RMinHash, RMinHashDeduplicator
PUNCT, DIGITS = re.compile(r"[^\\w\\s]+"), re.compile(r"\\d+")
t = time.perf_counter()
dedup = RMinHashDeduplicator(threshold={threshold}, num_perm=128, use_lsh=True)
pairs, n, nbytes, batch = [], 0, 0, []

def flush():
    sets = []
    for d in batch:
        words = DIGITS.sub("0", PUNCT.sub(" ", d["text"].lower())).split()
        sets.append([" ".join(words[i:i + 5]) for i in range(max(1, len(words) - 4))])
    for d, m in zip(batch, RMinHash.from_token_sets(sets, num_perm=128, seed=42)):
        hits = dedup.get_duplicates(m)
        if hits:
            pairs.append((d["id"], sorted(hits)[0]))
        else:
            dedup.add(d["id"], m)
    batch.clear()

for f in sorted(glob.glob({folder!r} + "/*.jsonl")):
    for line in open(f):
        d = json.loads(line)
        n += 1
        nbytes += len(d["text"].encode())
        batch.append(d)
        if len(batch) == 1000:
            flush()
flush()
dt = time.perf_counter() - t
json.dump(pairs, open({result!r}, "w"))
print(json.dumps({{"seconds": dt, "cpu_s": cpu_s(), "peak_rss_mb": peak_mb(), "docs": n, "text_mb": nbytes / 1e6}}))
"""

GAOYA = PEAK_RSS + CPU + """
import os
os.environ["RAYON_NUM_THREADS"] = "1"
import glob, time
from gaoya.minhash import MinHashStringIndex
t = time.perf_counter()
# word 5-grams of whitespace tokens, lowercased (gaoya's own analyzer); bands x rows from its S-curve
index = MinHashStringIndex(32, {threshold}, None, None, 128, "word", True, (5, 5))
pairs, ids, n = [], [], 0
for f in sorted(glob.glob({folder!r} + "/*.jsonl")):
    for line in open(f):
        d = json.loads(line)
        hits = index.query(d["text"])
        if hits:
            pairs.append((d["id"], ids[min(hits)]))
        else:
            index.insert_document(len(ids), d["text"])
            ids.append(d["id"])
        n += 1
dt = time.perf_counter() - t
json.dump(pairs, open({result!r}, "w"))
print(json.dumps({{"seconds": dt, "cpu_s": cpu_s(), "peak_rss_mb": peak_mb(), "docs": n, "index": str(index)}}))
"""

OURS = PEAK_RSS + CPU + """
import glob, time
import duckdb
import polars as pl
from corpus import InputSpec, Pipeline
from corpus.stages.minhash import MinHashDedup
t = time.perf_counter()
res = Pipeline([MinHashDedup(threshold={threshold})]).run(
    inputs=[InputSpec(source="bench", path={folder!r}, id_key="id")], output={out!r}, workers=2, quiet=True)
dt = time.perf_counter() - t
cpu, peak = cpu_s(), peak_mb()
assert all(b["ok"] for b in res.balance), res.balance
cols = ["id", "cluster_id", "cluster_size"]
frame = pl.concat([pl.scan_parquet({out!r} + "/data/*.parquet").select(cols).collect(),
                   pl.scan_parquet({out!r} + "/rejected/*/*.parquet").select(cols).collect()])
big = frame.filter(pl.col("cluster_size") > 1)
json.dump(dict(zip(big["id"].to_list(), big["cluster_id"].to_list())), open({result!r}, "w"))
stage = glob.glob({out!r} + "/work/01-minhash_dedup-*")[0]
fit = json.load(open(stage + "/artifacts/params.json"))
fit_s = json.load(open(stage + "/_done.json"))["seconds"]
# the per-shard apply (join of the fit's results, shards written): worker seconds, over 2 workers
apply_s = duckdb.connect({out!r} + "/catalog.duckdb", read_only=True).execute(
    "SELECT sum(seconds) FROM unit_stats WHERE stage LIKE '%minhash_dedup'").fetchone()[0] / 2
print(json.dumps({{"seconds": dt, "cpu_s": cpu, "peak_rss_mb": peak, "steps": fit["seconds"], "fit_s": fit_s,
                  "apply_s": apply_s, "candidates": fit["candidate_pairs"], "verified": fit["verified_pairs"]}}))
"""


def _row(name: str, cores: int, r: dict, truth: dict, ev: dict, seconds: float | None = None) -> dict:
    docs, mb = truth["docs"], truth["text_mb"]
    s = r["seconds"] if seconds is None else seconds
    return {"docs": f"{docs:,}", "contender": name, "seconds": f"{s:.1f}",
            "docs/s": f"{docs / s:,.0f}", "MB/s": f"{mb / s:.2f}",
            "docs/s/core": f"{docs / s / cores:,.0f}", "docs/CPU-s": f"{docs / r['cpu_s']:,.0f}",
            "peak RSS MB": f"{r['peak_rss_mb']:.0f}", "recall": f"{ev['recall']:.3f}",
            "precision": f"{ev['precision']:.3f}", "_per_core": docs / s / cores,
            "_per_cpu": docs / r["cpu_s"], "_ev": ev}


BASELINES = {"textbook": "(a) textbook datasketch, 1 process", "datatrove": "(b) datatrove MinHash, 2 workers"}
LIBRARIES = {"rensa": "(c) rensa RMinHashDeduplicator, 1 thread", "gaoya": "(d) gaoya MinHashStringIndex, 1 thread"}


def _contenders(n: int, folder: Path, result: Path, truth: Truth, meta: dict, skip: set[str]) -> list[dict]:
    rows = []
    if "textbook" not in skip:
        r = measure(TEXTBOOK.format(threshold=THRESHOLD, folder=str(folder), result=str(result)))
        ev = evaluate(truth, meta["planted"], components([tuple(p) for p in json.loads(result.read_text())]))
        rows.append(_row(BASELINES["textbook"], 1, r, meta, ev))
    if "datatrove" not in skip:
        work = WORK / f"dt-run-{n}"
        shutil.rmtree(work, ignore_errors=True)
        try:
            r = measure_in(DT_VENV / "bin" / "python", DATATROVE.format(
                folder=str(folder), work=str(work), result=str(result)))
            ev = evaluate(truth, meta["planted"], json.loads(result.read_text()))
            rows.append(_row(BASELINES["datatrove"], 2, r, meta, ev))
        except (RuntimeError, FileNotFoundError) as exc:
            last = (str(exc).strip().splitlines() or [""])[-1]  # the exception itself, not the traceback's top
            print(f"datatrove skipped: {last[:300]} (its venv: {DT_VENV})")
        shutil.rmtree(work, ignore_errors=True)
    for key, code in (("rensa", RENSA), ("gaoya", GAOYA)):
        if key not in skip:
            try:
                r = measure(code.format(threshold=THRESHOLD, folder=str(folder), result=str(result)))
            except RuntimeError as exc:
                if f"No module named '{key}'" not in str(exc):
                    raise
                print(f"{key} skipped: not installed (pip install {key})")
                continue
            ev = evaluate(truth, meta["planted"], components([tuple(p) for p in json.loads(result.read_text())]))
            rows.append(_row(LIBRARIES[key], 1, r, meta, ev))
    return rows


def _ours(n: int, folder: Path, result: Path, truth: Truth, meta: dict, checkout: Path | None) -> list[dict]:
    """Two rows: the whole run, and the minhash stage alone (its fit plus its per-shard apply)."""
    out = WORK / f"dedup-out-{n}"
    shutil.rmtree(out, ignore_errors=True)
    code = OURS.format(threshold=THRESHOLD, folder=str(folder), out=str(out), result=str(result))
    r = measure(code) if checkout is None else measure_in(checkout / ".venv" / "bin" / "python", code, checkout)
    shutil.rmtree(out, ignore_errors=True)
    ev = evaluate(truth, meta["planted"], json.loads(result.read_text()))
    name = "corpusforge" if checkout is None else f"corpusforge at {checkout}"
    whole = _row(f"(e) {name}, whole run, 2 workers", 2, r, meta, ev)
    stage = _row(f"(e) {name}, minhash stage alone", 2, r, meta, ev, seconds=r["fit_s"] + r["apply_s"])
    stage["docs/CPU-s"] = ""  # CPU time is the whole run's
    whole["steps"] = (f"fit {r['fit_s']:.1f}s (" + ", ".join(f"{k} {v:.1f}s" for k, v in r["steps"].items())
                      + f"), apply {r['apply_s']:.1f}s")
    return [whole, stage]


def _versus(row: dict, others: list[dict]) -> str:
    if not others:
        return ""
    best = max(others, key=lambda x: x["_per_core"])
    best_cpu = max(others, key=lambda x: x["_per_cpu"])
    return (f"{row['_per_core'] / best['_per_core']:.1f}x per core, "
            f"{row['_per_cpu'] / best_cpu['_per_cpu']:.1f}x per CPU-s")


def run(sizes: list[int], baselines_at: set[int], skip: set[str], checkout: Path | None = None) -> list[dict]:
    rows = []
    for n in sizes:
        folder = WORK / f"dedup-{n}"
        meta = make_corpus(folder, n)
        truth = Truth(folder)
        result = WORK / f"dedup-result-{n}.json"
        others = _contenders(n, folder, result, truth, meta, skip) if n in baselines_at else []
        ours = _ours(n, folder, result, truth, meta, None)
        if checkout is not None:  # the same figure from another checkout, back to back
            ours += _ours(n, folder, result, truth, meta, checkout)
        for row in ours[::2]:
            row["vs baselines"] = _versus(row, [x for x in others if x["contender"] in BASELINES.values()])
            row["vs libraries"] = _versus(row, [x for x in others if x["contender"] in LIBRARIES.values()])
        rows += others + ours
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,200000", help="corpus sizes in documents, comma separated")
    ap.add_argument("--baselines-at", default="20000", help="sizes at which (a) to (d) run too")
    ap.add_argument("--skip", default="", help="comma separated: textbook, datatrove, rensa, gaoya")
    ap.add_argument("--compare-with", type=Path, default=None,
                    help="another checkout with its own .venv (e.g. the previous commit): (e) runs there too")
    args = ap.parse_args(argv)
    load = os.getloadavg()
    rows = run([int(s) for s in args.sizes.split(",")], {int(s) for s in args.baselines_at.split(",") if s},
               set(filter(None, args.skip.split(","))), args.compare_with)
    print(f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores; "
          f"after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(table(rows, ["docs", "contender", "seconds", "docs/s", "MB/s", "docs/s/core", "docs/CPU-s",
                       "peak RSS MB", "recall", "precision", "vs baselines", "vs libraries"]))
    for r in rows:
        ev = r["_ev"]
        extra = f"; {r['steps']}" if "steps" in r else ""
        print(f"  {r['docs']} {r['contender']}: {ev['positives']} planted pairs with J >= {THRESHOLD + 0.05:.2f}, "
              f"{ev['merged_pairs']} merged pairs checked, largest cluster {ev['largest_cluster']}{extra}")
    print("goal: the whole run >= 10x the faster of (a) and (b) per core, recall and precision at least (a)'s; "
          "(c) and (d) are the fastest libraries, for reference.")


if __name__ == "__main__":
    main()
