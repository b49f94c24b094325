"""The profiling engine (stages/profile/) on small corpora whose answers are known exactly.

Reference values come from plain Python (str methods, the `regex` module's Unicode classes), not
from the engine, so a vectorisation bug shows up as a mismatch.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import regex
from helpers import make_jsonl_corpus, read_all

from corpus import InputSpec, Pipeline
from corpus.registry import get as get_operator
from corpus.stages import profile as P
from corpus.stages.profile import FEATURES, Profile, doc_features, profile_frames, profile_input

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
         "upsilon phi chi psi omega river stone cloud bread apple train music garden window").split()
BOILER = "Subscribe to our newsletter today"
CYRILLIC = "Привет мир\nЭто тест: кириллица и цифры 42."
MOJIBAKE = "Caf\u00c3\u00a9 and d\u00e2\u20ac\u2122cole \ufffd end."


def _para(rng: random.Random, n_words: int) -> str:
    lines, words = [], [rng.choice(WORDS) for _ in range(n_words)]
    while words:
        k = rng.randint(4, 12)
        lines.append(" ".join(words[:k]).capitalize() + rng.choice([".", ".", "!", ":", ""]))
        words = words[k:]
    return "\n".join(lines)


def known_corpus() -> pl.DataFrame:
    """Docs with planted duplicates, a boilerplate line, a Cyrillic doc, mojibake, a 100x outlier,
    null and blank text, meta of several types, and a lang column."""
    rng = random.Random(7)
    base = [_para(rng, rng.randint(30, 60)) for _ in range(20)]
    for i in (3, 4, 5, 6, 7, 8):
        base[i] += "\n" + BOILER
    base[9] = BOILER + "\n" + base[9] + "\n" + BOILER  # twice in one doc: counts once
    long_words = [rng.choice(WORDS) for _ in range(200)]
    near = " ".join(long_words)
    long_words[100] = "zebra"
    rows = [(f"w{i}", t, "web") for i, t in enumerate(base)]
    rows += [("w0-copy1", base[0], "web"), ("w0-copy2", base[0], "web"), ("w0-copy3", base[0], "wiki")]
    rows += [("w1-ws", "  " + base[1].replace(" ", "  ", 3).replace("\n", " \n\n", 1) + "\n  ", "web")]
    rows += [("near-a", near, "web"), ("near-b", " ".join(long_words), "web")]
    rows += [("cyr", CYRILLIC, "wiki"), ("moji", MOJIBAKE, "wiki"), ("huge", _para(rng, 4500), "web")]
    rows += [("null", None, "wiki"), ("blank", "  \n\t ", "wiki")]
    metas = []
    for i, (doc_id, _, _) in enumerate(rows):
        m: dict = {"url": f"https://x/{doc_id}"}
        if i % 3 == 0:
            m["n"] = i
        if i % 5 == 0:
            m["tags"] = ["a", "b"]
        if i % 7 == 0:
            m["score"] = 0.5
        metas.append(json.dumps(m))
    metas[-1] = "not json"
    return pl.DataFrame({
        "id": [r[0] for r in rows], "text": [r[1] for r in rows], "source": [r[2] for r in rows],
        "meta": metas, "lang": ["ru" if r[0] == "cyr" else "en" for r in rows],
    })


def norm_lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.split("\n") if line.strip()]


def n_lines(text: str) -> int:
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


@pytest.fixture(scope="module")
def known(tmp_path_factory) -> tuple[pl.DataFrame, dict, Path]:
    df = known_corpus()
    work = tmp_path_factory.mktemp("known")
    # Fed in three frames of different sizes: the streaming merge must not change any figure.
    prof = profile_frames([df.slice(0, 5), df.slice(5, 17), df.slice(22)], "test", work)
    return df, prof, work


# ---------------------------------------------------------------- per-document features


def test_char_classes_match_unicode_regex_oracle():
    pool = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") * 3
            + list(" .,;:!?'\"()-_/@#%&*+=<>$^|~`") * 2 + list("\n\n\t\r \u00a0\u3000\u2009") + list("éüßñçÉÜ")
            + list("приветМИР") + list("αβγΩ") + list("中文字漢") + list("ひらがな") + list("カタカナー")
            + list("مرحبا") + list("नमस्ते") + list("한국어") + list("…—“”«»¿¡")
            + ["\x01", "\x7f", "\u200b", "\ufffd", "😀", "\u0663", "५"])
    rng = random.Random(5)
    texts = ["".join(rng.choice(pool) for _ in range(rng.randint(0, 300))) for _ in range(400)]
    texts += ["", " ", "\n", "a", "  a  b  ", "x" * 5000, "é" * 9]
    scan = P._scan_texts(P._Texts.from_series(pl.Series(texts)), np.zeros(len(texts), np.int64), 1,
                         len(P.SCRIPTS) + 1)
    oracle = {"alpha": r"\p{L}", "digit": r"\p{Nd}", "upper": r"\p{Lu}", "punct": r"\p{P}",
              "space": r"\p{White_Space}", "nonprint": r"(?V1)[\p{C}--[\t\n\r]]", "words": r"[^\p{White_Space}]+"}
    for name, rx in oracle.items():
        want = [len(regex.findall(rx, t)) for t in texts]
        assert scan.counts[name].tolist() == want, name
    joined = "".join(texts)
    want = [len(regex.findall(rf"(?V1)[\p{{L}}&&\p{{Script={s}}}]", joined)) for s in P.SCRIPTS]
    want = [len(regex.findall(r"\p{L}", joined)) - sum(want), *want]
    got = doc_features(pl.DataFrame({"id": [str(i) for i in range(len(texts))], "text": texts,
                                     "source": ["s"] * len(texts)})).scripts[0]
    assert got.tolist() == want


def test_shipped_unicode_table_and_ascii_ranges():
    """The shipped class table is what polars' regex engine gives today, and the kernel's ASCII
    ranges (its vectorised path) say the same as the table."""
    from corpus.stages.profile import chars, textscan

    shipped, fresh = chars.code_point_table(), chars.build_code_point_table()
    assert (shipped.flags == fresh.flags).all() and (shipped.script == fresh.script).all()
    bits = [sum(int(v) << k for k, v in enumerate(textscan._ascii(np.uint8(b)))) for b in range(128)]
    assert bits == fresh.flags[:128].tolist()


def test_fast_kernel_path_equals_character_path():
    """The kernel's block path (branch-free sums, lines hashed straight from the data) gives what its
    character-at-a-time reference path gives, on texts mixing every case: runs of spaces, tabs, CRLF,
    blank lines, non-ASCII letters and whitespace, mojibake pairs, characters across block edges."""
    pool = (list("abcdefghijklmnopqrstuvwxyzABC0123") * 3 + list(" .,;:!?'\"()-") * 2 + list("\n\n\n\t\r   ")
            + list("éüßñçÉÜ") + list("приветМИР") + list("中文字漢") + ["\x01", "\ufffd", "😀", "Ã", "©", "â", "€", "ï",
                                                                    "»", "¿"])
    rng = random.Random(11)
    for extra in ([], ["\u00a0", "\u3000"]):
        texts = ["".join(rng.choice(pool + extra) for _ in range(rng.randint(0, 900))) for _ in range(1500)]
        texts += ["x" * 254 + "é" * 3, " " * 255 + "a", "a" * 255 + "  b", "\n" * 300]
        t = P._Texts.from_series(pl.Series(texts))
        codes = np.arange(len(texts)) % 3
        fast, slow = (P._scan_texts(t, codes, 3, len(P.SCRIPTS) + 1, fast=f) for f in (True, False))
        for name in fast.counts:
            assert (fast.counts[name] == slow.counts[name]).all(), name
        assert (fast.key == slow.key).all() and (fast.scripts == slow.scripts).all()
        for f in ("line_doc", "line_hash", "line_lo", "line_hi", "line_chars"):
            assert (getattr(fast, f) == getattr(slow, f)).all(), f


def test_doc_features_by_hand():
    df = pl.DataFrame({
        "id": ["a", "b", "c", "d"], "source": ["s"] * 4,
        "text": ["Hello world 123.\nHello world 123.\nBye!", "Привет, мир", "  spaced   out\ttext  ", None],
    })
    d = doc_features(df).docs
    a, b, c, n = d.row(0, named=True), d.row(1, named=True), d.row(2, named=True), d.row(3, named=True)
    assert (a["n_chars"], a["bytes"], a["n_words"], a["n_lines"], a["est_tokens"]) == (38, 38, 7, 3, 10)
    assert a["frac_digit"] == pytest.approx(6 / 38) and a["frac_upper"] == pytest.approx(3 / 38)
    assert a["frac_punct"] == pytest.approx(3 / 38) and a["frac_space"] == pytest.approx(6 / 38)
    assert a["dup_line_ratio"] == pytest.approx(1 / 3)  # 3 lines, one repeats an earlier one
    assert a["frac_lines_terminal_punct"] == 1.0
    assert a["mean_word_len"] == pytest.approx((38 - 6) / 7)
    assert (b["n_chars"], b["bytes"], b["n_words"], b["est_tokens"]) == (11, 20, 2, 5)
    assert b["frac_alpha"] == pytest.approx(9 / 11) and b["frac_lines_terminal_punct"] == 0.0
    assert (c["n_words"], c["frac_space"], c["n_lines"]) == (3, pytest.approx(8 / 21), 1)
    assert n["n_chars"] is None and n["frac_alpha"] is None and n["is_null"]
    # Same normalised text (whitespace runs collapsed, lines stripped) -> same key.
    same = doc_features(pl.DataFrame({"id": ["x", "y"], "source": ["s", "s"],
                                      "text": ["a b\nc", "  a \t b \n\n c  \n"]})).docs
    assert same["h"][0] == same["h"][1]


@pytest.mark.parametrize("n_lines", [2, 40, 64, 65, 300])
def test_dup_line_ratio_counts_distinct_lines(n_lines):
    """Repeated lines, in and out of order, below and above the kernel's in-place sort limit."""
    rng = random.Random(n_lines)
    distinct = max(1, n_lines * 2 // 3)
    lines = [f"line number {rng.randrange(distinct)}" for _ in range(n_lines)]
    d = doc_features(pl.DataFrame({"id": ["a"], "source": ["s"], "text": ["\n".join(lines)]})).docs
    assert d["dup_line_ratio"][0] == pytest.approx((n_lines - len(set(lines))) / n_lines)


# ---------------------------------------------------------------- the profile of a known corpus


def test_counts_and_sums(known):
    df, prof, work = known
    o = prof["overall"]
    texts = [t for t in df["text"].to_list() if t is not None]
    assert json.loads((work / "profile.json").read_text()) == prof
    assert prof["format"] == "corpusforge.profile/1" and prof["label"] == "test"
    assert o["docs"] == df.height and o["null_text"] == 1 and o["empty_text"] == 1
    assert o["bytes"] == sum(len(t.encode()) for t in texts)
    assert o["chars"] == sum(len(t) for t in texts)
    assert o["words"] == sum(len(t.split()) for t in texts)
    assert o["lines"] == sum(n_lines(t) for t in texts)
    assert o["est_tokens"] == sum(math.ceil(len(t.encode()) / 4) for t in texts)
    assert o["sources"] == {"web": df.filter(pl.col("source") == "web").height,
                            "wiki": df.filter(pl.col("source") == "wiki").height}
    assert o["languages"] == {"en": df.height - 1, "ru": 1}
    assert o["encoding_error_docs"] == 1


def test_duplicates(known):
    df, prof, _ = known
    texts = [t for t in df["text"].to_list() if t is not None]
    distinct = len({tuple(norm_lines(t)) for t in texts})
    assert prof["overall"]["exact_dup_rate"] == pytest.approx(1 - distinct / len(texts), abs=1e-6)
    # w0 + 3 copies, w1 + its whitespace variant, near-a ~ near-b (one word of 200 changed: Jaccard
    # of their 5-gram sets 0.95); every other pair is below 0.2.
    assert prof["overall"]["near_dup_sample"] == len(texts)
    assert prof["overall"]["near_dup_rate"] == pytest.approx(8 / len(texts), abs=1e-6)
    wiki = prof["by_source"]["wiki"]  # only w0-copy3 there: no duplicate within wiki
    assert wiki["exact_dup_rate"] == 0.0 and wiki["near_dup_rate"] == 0.0


def test_top_lines_count_docs_not_occurrences(known):
    df, prof, _ = known
    seen = Counter()
    for t in df["text"].to_list():
        if t is not None:
            seen.update({ln for ln in norm_lines(t) if len(ln) >= 10})
    want = sorted(((n, ln) for ln, n in seen.items() if n >= 2), key=lambda x: (-x[0], x[1]))[:25]
    assert prof["overall"]["top_lines"] == [{"line": ln, "docs": n} for n, ln in want]
    assert prof["overall"]["top_lines"][0] == {"line": BOILER, "docs": 7}


def test_scripts_and_replacement(known):
    _, prof, _ = known
    letters = Counter()
    for t in known_corpus()["text"].to_list():
        for ch in regex.findall(r"\p{L}", t or ""):
            letters["Cyrillic" if regex.match(r"\p{Script=Cyrillic}", ch) else "Latin"] += 1
    total = sum(letters.values())
    assert prof["overall"]["scripts"] == pytest.approx({k: v / total for k, v in letters.items()}, rel=1e-5)
    cyr = len(regex.findall(r"\p{L}", CYRILLIC))
    wiki_latin = sum(len(regex.findall(r"\p{L}", t)) for t in (MOJIBAKE, known_corpus()["text"][0], "  \n\t "))
    assert prof["by_source"]["wiki"]["scripts"]["Cyrillic"] == pytest.approx(cyr / (cyr + wiki_latin), abs=1e-6)
    rep = prof["overall"]["features"]["frac_replacement"]
    assert rep["max"] == pytest.approx(3 / len(MOJIBAKE), abs=1e-6)  # Ã©, â€, U+FFFD


def test_outlier_planted_long_doc(known):
    _, prof, _ = known
    out = prof["overall"]["outliers"]["n_chars"]
    assert out["count"] >= 1
    top = out["examples"][0]
    assert top["id"] == "huge" and top["source"] == "web" and top["robust_z"] > 3.5
    assert top["value"] == len(known_corpus().filter(pl.col("id") == "huge")["text"][0])
    assert len(top["snippet"]) == 200
    assert set(prof["overall"]["outliers"]) == set(FEATURES)
    assert prof["by_source"]["web"]["outliers"]["n_chars"]["examples"][0]["id"] == "huge"


def test_meta_fields(known):
    df, prof, _ = known
    present, types = Counter(), Counter()
    for m in df["meta"].to_list():
        try:
            obj = json.loads(m)
        except ValueError:
            continue
        for k, v in obj.items():
            present[k] += 1
            types[(k, {str: "string", int: "integer", float: "number", list: "array"}[type(v)])] += 1
    fields = prof["overall"]["meta_fields"]
    assert {k: f["present"] for k, f in fields.items()} == dict(present)
    assert {(k, t): n for k, f in fields.items() for t, n in f["types"].items()} == dict(types)


def test_by_source_adds_up(known):
    _, prof, _ = known
    o, parts = prof["overall"], list(prof["by_source"].values())
    for k in ("docs", "bytes", "chars", "words", "lines", "est_tokens", "null_text", "empty_text",
              "encoding_error_docs"):
        assert o[k] == sum(p[k] for p in parts), k
    assert sum(sum(p["sources"].values()) for p in parts) == o["docs"]
    for f in FEATURES:
        assert sum(sum(p["features"][f]["histogram"]["counts"]) for p in parts) == \
            sum(o["features"][f]["histogram"]["counts"]), f
    for k in o["meta_fields"]:
        assert o["meta_fields"][k]["present"] == sum(p["meta_fields"].get(k, {}).get("present", 0) for p in parts)
    lang = Counter()
    for p in parts:
        lang.update(p["languages"])
    assert dict(lang) == o["languages"]


def test_feature_summaries_are_consistent(known):
    _, prof, _ = known
    o = prof["overall"]
    for f, feat in o["features"].items():
        q = [feat["quantiles"][k] for k in ("p01", "p05", "p25", "p50", "p75", "p95", "p99")]
        assert feat["min"] <= q[0] and q == sorted(q) and q[-1] <= feat["max"], f
        assert feat["min"] <= feat["mean"] <= feat["max"], f
        h = feat["histogram"]
        assert len(h["counts"]) <= 40 and len(h["edges"]) == len(h["counts"]) + 1
        assert h["edges"][0] <= feat["min"] and feat["max"] <= h["edges"][-1], f
        assert h["edges"] == sorted(h["edges"])
        assert h["log"] == (f in P.LOG_FEATURES)
    assert sum(o["features"]["n_chars"]["histogram"]["counts"]) == o["docs"] - o["null_text"]
    assert sum(o["features"]["frac_alpha"]["histogram"]["counts"]) == o["docs"] - o["null_text"]
    # No line at all (the blank doc): no line features.
    assert sum(o["features"]["dup_line_ratio"]["histogram"]["counts"]) == o["docs"] - o["null_text"] - 1


def test_bins_hold_their_values():
    """Every count lands in the bin whose [lo, hi) holds it (or its point bin)."""
    from corpus.stages.profile.histograms import bins

    x = np.concatenate([np.arange(3000), np.random.default_rng(1).integers(0, 1 << 22, 5000)]).astype(np.float64)
    for f in ("n_chars", "n_words", "n_lines", "est_tokens"):
        b = bins(f)
        i = b.index(x)
        assert ((b.lo[i] <= x) & ((x < b.hi[i]) | (b.point[i] & (x == b.lo[i])))).all()


def test_compiled_histograms_match_the_bins():
    """add_values (one compiled pass for every feature; counts below 2**16 binned by a table) counts,
    sums and bins as Bins.index does: NaN skipped, on bin edges, 0 and 1, counts past the table."""
    from corpus.stages.profile.histograms import add_values, bins, int_lut, kernel_tables

    rng = np.random.default_rng(5)
    n = 4000
    vals = {}
    for f in FEATURES:
        b = bins(f)
        if b.log:
            x = np.concatenate([rng.integers(0, 1 << 18, n // 2), b.edges[rng.integers(0, len(b.edges), n // 4)],
                                rng.random(n // 4) * 3]).astype(np.float64)
            x = np.floor(x) if b.integer else x
        else:
            x = np.concatenate([rng.random(n // 2), b.edges[rng.integers(0, len(b.edges), n // 4)],
                                rng.choice([0.0, 1.0], n // 4)])
        x[rng.random(n) < 0.05] = np.nan
        vals[f] = x
    rows = np.sort(rng.choice(n, n // 2, replace=False))
    kinds, edges, offs, n_bins = kernel_tables()
    cnt, sums = np.zeros(len(FEATURES), np.int64), np.zeros(len(FEATURES))
    mins, maxs = np.full(len(FEATURES), np.inf), np.full(len(FEATURES), -np.inf)
    hist = np.zeros((len(FEATURES), int(n_bins.max())), np.int64)
    add_values(np.stack([vals[f] for f in FEATURES]), rows, kinds, edges, offs, n_bins, int_lut(), cnt, sums, mins,
               maxs, hist)
    for i, f in enumerate(FEATURES):
        x = vals[f][rows]
        x = x[~np.isnan(x)]
        b = bins(f)
        assert cnt[i] == len(x) and sums[i] == pytest.approx(x.sum()) and (mins[i], maxs[i]) == (x.min(), x.max())
        assert np.array_equal(hist[i, :n_bins[i]], np.bincount(b.index(x), minlength=len(b.lo))), f


def test_quantiles_close_to_exact():
    rng = random.Random(3)
    lengths = [int(math.exp(rng.gauss(6, 1.2))) + 1 for _ in range(3000)]
    df = pl.DataFrame({"id": [str(i) for i in range(len(lengths))], "source": ["s"] * len(lengths),
                       "text": ["x" * n for n in lengths]})
    acc = P._Acc()
    acc.add_chunk(doc_features(df))
    feat = P._feature(acc.sources["s"], "n_chars")
    for k, q in P.QUANTILES.items():
        exact = float(np.quantile(lengths, q, method="inverted_cdf"))
        assert feat["quantiles"][k] == pytest.approx(exact, rel=0.012), k
    assert feat["min"] == min(lengths) and feat["max"] == max(lengths)


def test_deterministic(known, tmp_path):
    df, prof, _ = known
    again = profile_frames([df], "test", tmp_path)
    assert json.dumps(again) == json.dumps(prof)


def _shingle_set(text: str) -> set[str]:
    w = text.lower().split()
    return {" ".join(w[i:i + 5]) for i in range(len(w) - 4)}


def test_minhash_estimate_and_lsh():
    assert P._lsh_params(0.8, 128) == (9, 13)  # datasketch's MinHashLSH choice for 0.8 / 128 perms
    rng = random.Random(11)
    base = [[rng.choice(WORDS) + str(rng.randint(0, 99)) for _ in range(200)] for _ in range(60)]
    texts, pairs = [], []  # (text index, its near copy's index, words changed)
    for i, words in enumerate(base):
        texts.append(" ".join(words))
        if i < 30:  # a near copy: k of 200 words changed
            k = (1, 4, 12)[i % 3]
            copy = list(words)
            for j in rng.sample(range(200), k):
                copy[j] = "zz" + str(j)
            texts.append(" ".join(copy))
            pairs.append((len(texts) - 2, len(texts) - 1, k))
    raw, sig = P._signatures(texts)
    for a, b, _ in pairs:
        sa, sb = _shingle_set(texts[a]), _shingle_set(texts[b])
        assert P._jaccard(raw[a:a + 1], raw[b:b + 1])[0] == pytest.approx(len(sa & sb) / len(sa | sb), abs=0.08)
    near = P._near_dups(raw, sig)
    strong = [t for a, b, k in pairs if k == 1 for t in (a, b)]  # Jaccard 191/201 = 0.95
    weak = [t for a, b, k in pairs if k == 12 for t in (a, b)]  # about 0.55
    paired = {t for a, b, _ in pairs for t in (a, b)}
    alone = [i for i in range(len(texts)) if i not in paired]
    assert near[strong].all()
    assert not near[weak].any() and not near[alone].any()


# ---------------------------------------------------------------- inputs, corpus folders, the operator


def test_profile_input_counts_quarantine_and_matches_frames(tmp_path):
    folder = tmp_path / "in"
    records = make_jsonl_corpus(folder, files=3, docs_per_file=60, seed=2)
    with open(folder / "part-000.jsonl", "a") as fh:
        fh.write("{broken json\n")
        fh.write(json.dumps({"other": 1}) + "\n")
        fh.write(json.dumps({"text": "   "}) + "\n")
    prof = profile_input([InputSpec(source="web", path=str(folder))], tmp_path / "out", workers=2)
    o = prof["overall"]
    assert prof["label"] == "input" and (tmp_path / "out" / "profile.json").exists()
    assert o["quarantined"] == {"empty_text": 1, "invalid_json": 1, "missing_text": 1}
    assert o["docs"] == records
    assert not (tmp_path / "out" / "_spill").exists()
    # The same documents through the single-process path give the same figures.
    from corpus.readers import plan_tasks, read_task

    frames = [c.docs for t in plan_tasks([InputSpec(source="web", path=str(folder))]) for c in read_task(t)]
    same = profile_frames(frames, "input", tmp_path / "frames")
    o.pop("quarantined")
    assert same["overall"] == o


def test_profile_input_corpus_folder(tmp_path):
    make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=40, seed=4)
    res = Pipeline([]).run(inputs=[InputSpec(source="web", path=str(tmp_path / "in"))], output=tmp_path / "corpus",
                           workers=1, quiet=True)
    prof = profile_input(tmp_path / "corpus", tmp_path / "prof", workers=1)
    assert prof["overall"]["docs"] == res.manifest["docs"]
    assert "quarantined" not in prof["overall"]


def test_operator_in_pipeline(tmp_path):
    assert get_operator("profile") is Profile
    make_jsonl_corpus(tmp_path / "in", files=3, docs_per_file=50, seed=5)
    inputs = [InputSpec(source="web", path=str(tmp_path / "in"))]
    res = Pipeline([Profile()]).run(inputs=inputs, output=tmp_path / "out", workers=2, quiet=True)
    found = list((tmp_path / "out" / "work").glob("01-profile-*/artifacts/profile.json"))
    assert len(found) == 1
    prof = json.loads(found[0].read_text())
    assert prof["label"] == "01-profile" and prof["overall"]["docs"] == res.manifest["docs"]
    assert not (found[0].parent / "_spill").exists()
    plain = Pipeline([]).run(inputs=inputs, output=tmp_path / "plain", workers=1, quiet=True)
    cols = ["id", "text", "source", "meta", "src_file", "src_row"]
    a = read_all(tmp_path / "out" / "data").select(cols).sort("id")
    b = read_all(tmp_path / "plain" / "data").select(cols).sort("id")
    assert plain.manifest["docs"] == res.manifest["docs"] and a.equals(b)


# ---------------------------------------------------------------- the raw JSONL fast path


def _messy_jsonl(folder: Path) -> None:
    """Records the fast path must judge exactly as the reader does: null, numeric, blank, NUL-bearing
    and missing texts (the reader's per-record rules), ids, meta of every JSON type (ints and floats
    mixed, lists, objects, booleans, nulls, a field first seen late), blank lines, CRLF, no final
    newline, a gzip file."""
    import gzip

    rng = random.Random(9)
    bad = [{"other": 1}, {"text": None}, {"text": 5}, {"text": "  \t "}, {"text": "a\u0000b"}, {"text": ""},
           {"text": "true"}, {"text": "[1]"}, {"text": "7", "id": "x"}]
    folder.mkdir(parents=True)
    for f in range(3):
        lines = []
        for i in range(400):
            if i % 37 == 5:
                lines.append(json.dumps(bad[i % len(bad)]))
                continue
            if i % 53 == 7:
                lines.append("")
                continue
            rec = {"text": _para(rng, rng.randint(3, 40)) + rng.choice(["", " \u00e9t\u00e9 \u00a0x", "\tTab  two"]),
                   "id": None if i % 9 == 0 else f"d{f}-{i}", "n": rng.choice([1, 2.5]) if f == 1 else i,
                   "tags": ["a"] * (i % 3), "flag": i % 2 == 0, "gone": None}
            if i % 4 == 0:
                rec["obj"] = {"k": i, "s": "v"}
            if i > 300:
                rec["late"] = "x"
            if f == 0 and i % 50 == 3:  # strings and numbers in one field: that piece takes the polars path
                rec["mix"] = "a" if i % 100 == 3 else 5
            lines.append(json.dumps(rec, ensure_ascii=i % 2 == 0))
        body = ("\r\n" if f == 2 else "\n").join(lines) + ("" if f == 2 else "\n")
        if f == 1:
            with gzip.open(folder / f"part-{f}.jsonl.gz", "wt", encoding="utf-8") as fh:
                fh.write(body)
        else:
            (folder / f"part-{f}.jsonl").write_text(body, encoding="utf-8")


@pytest.mark.parametrize("keys", [{}, {"id_key": "id", "meta_keys": ["n", "tags", "obj", "late", "gone"]}])
def test_fast_jsonl_path_equals_reader_path(tmp_path, monkeypatch, keys):
    """Small chunks (many pieces per file, tails, line numbers across pieces): the fast path gives the
    profile the corpus readers give, record for record, without falling back."""
    from corpus.stages.profile import inputs, rawjsonl

    _messy_jsonl(tmp_path / "in")
    monkeypatch.setattr(inputs, "CHUNK_BYTES", 16 << 10)
    spec = [InputSpec(source="web", path=str(tmp_path / "in"), **keys)]
    fallbacks = []
    fast = inputs._fast_unit

    def counting(*args, **kwargs):
        try:
            return fast(*args, **kwargs)
        except rawjsonl.Fallback:
            fallbacks.append(args[0].rel_path)
            raise

    monkeypatch.setattr(inputs, "_fast_unit", counting)
    polars_pieces = []
    whole = rawjsonl._polars_piece
    monkeypatch.setattr(rawjsonl, "_polars_piece", lambda *a: polars_pieces.append(a[2]) or whole(*a))
    got = profile_input(spec, tmp_path / "fast", workers=2)
    assert fallbacks == []
    # The "mix" field (strings and numbers) sends its pieces to polars, unless meta_keys leaves it out.
    assert bool(polars_pieces) == ("meta_keys" not in keys)
    monkeypatch.setattr(inputs, "usable", lambda task: False)
    want = profile_input(spec, tmp_path / "reader", workers=1)
    assert json.dumps(got) == json.dumps(want)
    o = got["overall"]
    assert sum(o["quarantined"].values()) > 0 and o["meta_fields"]["n"]["types"]
    assert o["docs"] + sum(o["quarantined"].values()) == 3 * 400 - len(range(7, 400, 53)) * 3


def test_chunk_of_several_pieces_is_split_where_a_field_mixes_types(tmp_path, monkeypatch):
    """A chunk is scanned as one buffer, but polars infers a schema per piece: a field that is a
    string in early pieces and a number in later ones mixes only across pieces, so the chunk is
    split and each piece judged alone, as the reader judges it."""
    from corpus.readers import jsonl as reader_jsonl
    from corpus.stages.profile import inputs, rawjsonl

    rng = random.Random(4)
    lines = [json.dumps({"text": _para(rng, rng.randint(3, 12)), "m": "s" if i < 150 else i}) for i in range(300)]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(inputs, "CHUNK_BYTES", 64 << 10)
    monkeypatch.setattr(rawjsonl, "PIECE_BYTES", 2 << 10)
    monkeypatch.setattr(reader_jsonl, "_PIECE", 2 << 10)
    calls = []
    chunk = rawjsonl._chunk
    monkeypatch.setattr(rawjsonl, "_chunk", lambda task, buf, ends, *a: calls.append(len(ends)) or chunk(task, buf,
                                                                                                          ends, *a))
    polars_pieces = []
    whole = rawjsonl._polars_piece
    monkeypatch.setattr(rawjsonl, "_polars_piece", lambda *a: polars_pieces.append(a[2]) or whole(*a))
    spec = [InputSpec(source="s", path=str(tmp_path / "in"))]
    got = profile_input(spec, tmp_path / "fast", workers=1)
    assert max(calls) > 1 and calls.count(1) > 2  # grouped, then split piece by piece
    # Only the piece where the type changes goes to polars (which reads its numbers as strings);
    # scanning the chunk whole would have sent all of it.
    types = got["overall"]["meta_fields"]["m"]["types"]
    assert len(polars_pieces) == 1 and 100 < types["integer"] < 150 and sum(types.values()) == 300
    monkeypatch.setattr(inputs, "usable", lambda task: False)
    assert json.dumps(got) == json.dumps(profile_input(spec, tmp_path / "reader", workers=1))


def test_fast_path_falls_back_per_file(tmp_path, monkeypatch):
    """A line polars refuses sends its file (all of it, from the start) to the reader; the pieces
    already profiled are dropped, so every record is counted once."""
    from corpus.stages.profile import inputs, rawjsonl

    _messy_jsonl(tmp_path / "in")
    monkeypatch.setattr(inputs, "CHUNK_BYTES", 16 << 10)
    with open(tmp_path / "in" / "part-0.jsonl", "a") as fh:
        fh.write("{broken json\n" + json.dumps({"text": "after the break"}) + "\n")
    spec = [InputSpec(source="web", path=str(tmp_path / "in"))]
    got = profile_input(spec, tmp_path / "fast", workers=2, keep_features=True)
    spilled = pl.concat([pl.read_parquet(p) for p in (tmp_path / "fast" / "_spill").glob("feat-*.parquet")])
    assert spilled.height == got["overall"]["docs"] and spilled["id"].n_unique() == spilled.height
    monkeypatch.setattr(inputs, "usable", lambda task: False)
    want = profile_input(spec, tmp_path / "reader", workers=1)
    assert json.dumps(got) == json.dumps(want)
    assert got["overall"]["quarantined"]["invalid_json"] == 1
    # A lone file is parsed ahead in a second thread: the fallback must cross it too.
    one = [InputSpec(source="web", path=str(tmp_path / "in" / "part-0.jsonl"))]
    monkeypatch.setattr(inputs, "usable", rawjsonl.usable)
    alone = profile_input(one, tmp_path / "alone", workers=2)
    monkeypatch.setattr(inputs, "usable", lambda task: False)
    assert json.dumps(alone) == json.dumps(profile_input(one, tmp_path / "alone-reader", workers=1))


def test_threads_do_not_change_the_profile(tmp_path):
    make_jsonl_corpus(tmp_path / "in", files=5, docs_per_file=40, seed=8)
    spec = [InputSpec(source="web", path=str(tmp_path / "in"))]
    one = profile_input(spec, tmp_path / "one", workers=1)
    three = profile_input(spec, tmp_path / "three", workers=3)
    assert json.dumps(one) == json.dumps(three)
    lone = [InputSpec(source="web", path=str(tmp_path / "in" / "part-001.jsonl"))]  # parsed ahead in a thread
    assert json.dumps(profile_input(lone, tmp_path / "l1", workers=1)) == \
        json.dumps(profile_input(lone, tmp_path / "l2", workers=2))


def test_outlier_examples_break_ties_by_id(tmp_path):
    """Ten docs share the largest length: the examples are the five smallest ids, |z| descending."""
    texts = ["w " * 20] * 200 + ["long " * 400] * 10
    ids = [f"a{i:03d}" for i in range(200)] + [f"z{i}" for i in (9, 3, 7, 1, 5, 0, 8, 2, 6, 4)]
    df = pl.DataFrame({"id": ids, "text": texts, "source": ["s"] * len(ids)})
    prof = profile_frames([df.slice(0, 100), df.slice(100)], "t", tmp_path)
    out = prof["overall"]["outliers"]["n_chars"]
    assert out["count"] == 10
    assert [e["id"] for e in out["examples"]] == ["z0", "z1", "z2", "z3", "z4"]


def test_outliers_equal_a_full_pass_over_every_document(tmp_path):
    """Counts and examples (kept while streaming) equal a plain pass over every document's features:
    three sources, many ties (duplicate texts, mostly-zero fractions), shuffled ids, small chunks."""
    from corpus.stages.profile.constants import OUTLIER_EXAMPLES, SNIPPET_CHARS, Z_THRESHOLD
    from corpus.stages.profile.histograms import num, robust_params

    rng = random.Random(3)
    rows = []
    for _ in range(600):
        k = rng.random()
        text = ("x" * rng.randint(1, 4) if k < 0.1 else "Digits 12345 " * rng.randint(1, 30) if k < 0.2
                else _para(rng, rng.choice([5, 5, 20, 40, 400])))
        rows.append((f"d{rng.randrange(10**6):06d}", text, rng.choice(["web", "wiki", "books"])))
    rows += [(f"tie{i}", "same length text " * 300, "web") for i in (5, 2, 8, 1)]
    df = pl.DataFrame({"id": [r[0] for r in rows], "text": [r[1] for r in rows], "source": [r[2] for r in rows]})
    prof = profile_frames([df.slice(i, 97) for i in range(0, df.height, 97)], "t", tmp_path, keep_features=True)
    feats = pl.concat([pl.read_parquet(p) for p in sorted((tmp_path / "_spill").glob("feat-*.parquet"))])
    assert feats.height == df.height
    text_of = dict(zip(df["id"], df["text"], strict=True))
    # The sections' medians and scales as the profiler derives them (its fine histograms).
    acc = P.aggregate.Acc()
    for i in range(0, df.height, 97):
        acc.add_chunk(doc_features(df.slice(i, 97)))
    params = {"": robust_params(acc.overall()), **{s: robust_params(acc.sources[s]) for s in acc.sources}}
    for section, got in [("", prof["overall"]), *prof["by_source"].items()]:
        part = feats if not section else feats.filter(pl.col("source") == section)
        for f in FEATURES:
            med, sc = params[section][f]
            want = []
            if sc is not None:
                for doc_id, src, x in part.select("id", "source", f).rows():
                    if x is not None and not math.isnan(x) and abs((x - med) / sc) > Z_THRESHOLD:
                        z = (x - med) / sc
                        want.append((-abs(z), doc_id, x, src, z))
            want.sort(key=lambda t: t[:4])
            out = got["outliers"][f]
            assert out["count"] == len(want), (section, f)
            assert [(e["id"], e["source"], e["value"], e["robust_z"]) for e in out["examples"]] == \
                [(i, s, num(x), num(z)) for _, i, x, s, z in want[:OUTLIER_EXAMPLES]], (section, f)
            assert all(e["snippet"] == text_of[e["id"]][:SNIPPET_CHARS] for e in out["examples"])
    assert [e["id"] for e in prof["overall"]["outliers"]["n_chars"]["examples"]][:4] == ["tie1", "tie2", "tie5", "tie8"]


def test_minhash_sample_is_the_k_smallest_keys_with_exact_counts():
    """Chunk by chunk, two accumulators sharing bounds (as threads do), merged: the sample is the k
    smallest distinct text keys of all documents, each with its exact number of copies, even for a
    key met again after it became the k-th (the bound admits keys equal to it)."""
    rng = random.Random(5)
    texts = [_para(rng, rng.randint(3, 9)) for _ in range(60)]
    docs = [rng.choice(texts) for _ in range(400)]
    frames = [pl.DataFrame({"id": [f"d{i + j}" for j in range(50)], "text": docs[i:i + 50], "source": "s"})
              for i in range(0, 400, 50)]
    chunks = [doc_features(f) for f in frames]
    keys = np.concatenate([c.key for c in chunks])
    distinct, counts = np.unique(keys, return_counts=True)
    k = 11
    assert counts[k - 1] >= 2 and len(np.unique(chunks[0].key)) >= k  # the k-th key is met again later
    one = P.aggregate.Acc(sample_size=k)
    for ch in chunks:
        one.add_chunk(ch)
    bounds: dict[str, int] = {}
    a, b = P.aggregate.Acc(sample_size=k, bounds=bounds), P.aggregate.Acc(sample_size=k, bounds=bounds)
    for i, ch in enumerate(chunks):
        (a if i % 2 == 0 else b).add_chunk(ch)
    a.merge(b)
    for sample in (one.sources["s"].sample, a.sources["s"].sample):
        assert sample.h.tolist() == distinct[:k].tolist()
        assert sample.n.tolist() == counts[:k].tolist()
    first_text = {}
    for ch, f in zip(chunks, frames, strict=True):
        for key, t in zip(ch.key.tolist(), f["text"].to_list(), strict=True):
            first_text.setdefault(key, t)
    assert all(sample.text[h] == first_text[h] for h in sample.h.tolist())
    assert one.sources["s"].sample.text == sample.text


def test_top_lines_with_a_small_misra_gries_table(tmp_path, monkeypatch):
    """With room for 8 lines per table and hundreds of distinct ones, in small chunks over three
    sources: every line held by more than 1/8 of the counted line occurrences is found, with its
    exact count of docs, overall and per source."""
    from corpus.stages.profile import lines as L

    monkeypatch.setattr(L, "LINE_TABLE", 8)
    rng = random.Random(9)
    heavy = [f"Heavy boilerplate line number {i}" for i in range(3)]
    texts, sources = [], []
    for i in range(300):
        own = [f"unique line {i} {j} {rng.random()}" for j in range(rng.randint(1, 3))]
        extra = [heavy[0]] * (i % 2 == 0) + [heavy[1]] * (i % 3 == 0) + [heavy[2]] * (i % 4 == 0) * 2
        texts.append("\n".join(own + extra + own[:1]))
        sources.append(["a", "b", "c"][i % 3])
    df = pl.DataFrame({"id": [f"d{i}" for i in range(300)], "text": texts, "source": sources})
    prof = profile_frames([df.slice(i, 40) for i in range(0, 300, 40)], "t", tmp_path)
    for section, got in [(None, prof["overall"]), *prof["by_source"].items()]:
        part = df if section is None else df.filter(pl.col("source") == section)
        seen = Counter()
        for t in part["text"].to_list():
            seen.update({ln for ln in norm_lines(t) if len(ln) >= 10})
        total = sum(seen.values())
        found = {e["line"]: e["docs"] for e in got["top_lines"]}
        for ln, n in seen.items():
            if n > total / 8:
                assert found.get(ln) == n, (section, ln)
        assert all(seen[ln] == n for ln, n in found.items())
    assert prof["overall"]["top_lines"][0] == {"line": heavy[0], "docs": 150}


def test_misra_gries_tables_keep_their_guarantee(monkeypatch):
    """Merged chunk by chunk, a table of k entries equals plain Python's Misra-Gries (add the counts,
    take the (k+1)-th largest off each, keep the positive ones), holds every line counted more than
    N/(k+1) times of N, and each estimate lies between the true count minus N/(k+1) and the count."""
    from corpus.stages.profile import lines as L

    k = 10
    monkeypatch.setattr(L, "LINE_TABLE", k)

    def reference(table: dict[int, int], more: dict[int, int]) -> dict[int, int]:
        both = Counter(table) + Counter(more)
        if len(both) <= k:
            return dict(both)
        cut = sorted(both.values(), reverse=True)[k]
        return {x: c - cut for x, c in both.items() if c > cut}

    rng = np.random.default_rng(4)
    true: Counter = Counter()
    table, ref = L.LineTable(), {}
    for _ in range(30):
        draws = np.minimum(rng.zipf(1.3, 200), 10_000).astype(np.uint64)
        h, n = np.unique(draws, return_counts=True)
        chunk = dict(zip(h.tolist(), n.tolist(), strict=True))
        true.update(chunk)
        kept_h, kept_n = L._prune(h, n.astype(np.int64))
        table = table.merge(L.LineTable(kept_h, kept_n, {x: str(x) for x in kept_h.tolist()}))
        ref = reference(ref, reference({}, chunk))
        assert dict(zip(table.h.tolist(), table.n.tolist(), strict=True)) == ref
        assert len(table) <= k and table.h.tolist() == sorted(ref)
    total = sum(true.values())
    assert any(c > total / (k + 1) for c in true.values())
    for x, c in true.items():
        if c > total / (k + 1):
            assert x in ref
    for x, est in ref.items():
        assert true[x] - total / (k + 1) <= est <= true[x]
        assert table.line[x] == str(x)


def test_distinct_texts_counted_by_key_range_equal_one_pass(known, tmp_path, monkeypatch):
    """Past PART_KEYS documents the distinct text keys are counted in passes over disjoint key
    ranges (flat memory): per source and overall, the same counts as one pass."""
    from corpus.stages.profile import spill

    df, prof, _ = known
    monkeypatch.setattr(spill, "PART_KEYS", 4)  # 8 passes over the 30 documents
    again = profile_frames([df.slice(0, 5), df.slice(5, 17), df.slice(22)], "test", tmp_path)
    assert json.dumps(again) == json.dumps(prof)
    assert prof["by_source"]["web"]["exact_dup_rate"] > 0 and prof["overall"]["exact_dup_rate"] > 0


def test_top_lines_are_shown_in_normal_form(tmp_path):
    """A repeated line first met with stray whitespace (doubled, leading, trailing, a tab, a no-break
    space) is shown in its normal form, counted with its clean copies."""
    messy = ["  Share  this page\t today ", "Share this\u00a0page today", "Share this page today"]
    texts = [f"Intro number {i} here.\n{messy[i % 3]}\nBody text {i} follows." for i in range(9)]
    df = pl.DataFrame({"id": [f"d{i}" for i in range(9)], "text": texts, "source": ["s"] * 9})
    prof = profile_frames([df.slice(0, 4), df.slice(4)], "t", tmp_path)
    assert prof["overall"]["top_lines"][0] == {"line": "Share this page today", "docs": 9}


def test_crlf_lines_hash_as_their_normal_form():
    """Windows line ends: each line ends in "\\r", which the normal form strips, so a CRLF document
    has the text key, line count and distinct lines of its LF copy."""
    lf = "First line of the page here.\nSecond line, a bit longer.\nFirst line of the page here.\n"
    df = pl.DataFrame({"id": ["lf", "crlf"], "source": ["s", "s"], "text": [lf, lf.replace("\n", "\r\n")]})
    d = doc_features(df).docs
    assert d["h"][0] == d["h"][1]
    assert d["n_lines"].to_list() == [3, 3] and d["dup_line_ratio"].to_list() == [pytest.approx(1 / 3)] * 2
