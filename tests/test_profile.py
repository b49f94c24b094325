"""The profiling engine (stages/profile/) through its public entry points, on corpora whose answers
are known exactly.

Reference values come from plain Python (str methods, the `regex` module's Unicode classes, exact
Jaccard over every pair), not from the engine, so a vectorisation or sampling bug shows up as a
mismatch.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import regex
from helpers import make_jsonl_corpus, read_all, run_cli

from corpus import InputSpec, Pipeline
from corpus.integrity import CorruptFileError
from corpus.registry import get as get_operator
from corpus.stages.dedup_text import word_shingles_ref
from corpus.stages.minhash import MinHashDedup
from corpus.stages.normalise import Normalisation
from corpus.stages.profile import (
    FEATURES,
    LOG_FEATURES,
    QUANTILES,
    SCRIPTS,
    Profile,
    doc_features,
    profile_frames,
    profile_input,
)

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


def _pool_texts(seed: int, n: int, extra: list[str] | None = None) -> list[str]:
    pool = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") * 3
            + list(" .,;:!?'\"()-_/@#%&*+=<>$^|~`") * 2 + list("\n\n\t\r \u00a0\u3000\u2009") + list("éüßñçÉÜ")
            + list("приветМИР") + list("αβγΩ") + list("中文字漢") + list("ひらがな") + list("カタカナー")
            + list("مرحبا") + list("नमस्ते") + list("한국어") + list("…—“”«»¿¡")
            + ["\x01", "\x7f", "\u200b", "\ufffd", "😀", "\u0663", "५"] + (extra or []))
    rng = random.Random(seed)
    texts = ["".join(rng.choice(pool) for _ in range(rng.randint(0, 300))) for _ in range(n)]
    return texts + ["", " ", "\n", "a", "  a  b  ", "x" * 5000, "é" * 9, "ab" * 40, "A B. C, d!"]


def test_kernel_equals_its_plain_python_definition_and_unicode():
    """The compiled pass (classes, words, scripts, sketch, lines) equals scan_ref, character by
    character; its classes mean what the `regex` module's Unicode properties mean; a line it vouches
    is in normal form is left unchanged by Normalisation, and its hash is hash_ref's."""
    from corpus.stages.profile import kernel
    from corpus.stages.profile.lines import LINE_NORM

    # Combining marks, the second of a canonical pair, Hangul jamo, a singleton: NFC changes or composes them.
    texts = _pool_texts(5, 400, extra=["\u0301", "\u0308", "e\u0301", "\u1100", "\u1161", "\u0b3e", "\u212b"])
    texts += ["a\r\nb c\r\n", "x\r", "a \r\n", "\r\n\r", " lead\ntrail \nin  ner\nok line."]
    series = pl.Series(texts, dtype=pl.String)
    got = kernel.scan(series.to_arrow(), int(series.str.count_matches("\n", literal=True).sum()))
    lines = got.lines
    for i, t in enumerate(texts):
        counts, scripts, sketch, want = kernel.scan_ref(t)
        assert {k: int(v[i]) for k, v in got.counts.items()} == counts, i
        assert got.scripts[i].tolist() == scripts, i
        assert [int(v) for v in got.sketch[i] if v != kernel.NONE] == sketch, i
        mine = np.flatnonzero(lines.doc == i)
        spans = [bytes(got.data[lines.lo[j]:lines.hi[j]]).decode() for j in mine]
        assert list(zip(spans, lines.odd[mine].tolist(), lines.terminal[mine].tolist(), strict=True)) == [
            (line, odd, term) for line, _, odd, term in want], i
        for j, (line, norm, odd, _) in zip(mine, want, strict=True):
            # The normal form's hash, characters and bytes (the raw line's figures where odd).
            form = line if odd else norm
            assert (lines.chars[j], lines.size[j]) == (len(form), len(form.encode())), i
            if not odd:
                assert int(lines.hash[j]) == kernel.hash_ref(norm), i
    pairs = [(ln, norm) for t in texts for ln, norm, odd, _ in kernel.scan_ref(t)[3] if not odd]
    assert any(ln != norm for ln, norm in pairs)  # stray whitespace, hashed in its normal form
    raw, norms = zip(*pairs, strict=True)
    assert LINE_NORM.apply(pl.Series(raw, dtype=pl.String)).to_list() == list(norms)
    oracle = {"alpha": r"\p{L}", "digit": r"\p{Nd}", "upper": r"\p{Lu}", "punct": r"\p{P}",
              "space": r"\p{White_Space}", "nonprint": r"(?V1)[\p{C}--[\t\n\r]]", "words": r"[^\p{White_Space}]+"}
    for name, rx in oracle.items():
        assert got.counts[name].tolist() == [len(regex.findall(rx, t)) for t in texts], name
    joined = "".join(texts)
    want = [len(regex.findall(rf"(?V1)[\p{{L}}&&\p{{Script={s}}}]", joined)) for s in SCRIPTS]
    assert got.scripts.sum(axis=0).tolist() == [len(regex.findall(r"\p{L}", joined)) - sum(want), *want]
    docs = ["one two", "alpha  beta\n\n gamma ", ""]
    lines = kernel.scan(pl.Series(docs).to_arrow(), 2).lines
    keys = kernel.join_hashes(lines.doc, np.array([kernel.hash_ref(x) for x in ("one two", "alpha beta", "gamma")],
                                                  np.uint64), np.array([7, 10, 5]), 3)
    assert keys.tolist() == [kernel.hash_ref(" ".join(d.split())) for d in docs[:2]] + [0]


def test_kernel_vouches_lines_in_nfc_whatever_their_script():
    """A line of non-ASCII characters NFC leaves alone (most text) is not odd (not normalised and hashed
    again), whatever its whitespace (hashed in its normal form in the pass); one holding a character NFC
    changes or composes is."""
    from corpus.stages.profile import kernel

    docs = ["café naïve straße\n привет\u00a0 мир\t東京 γλώσσα\r", "cafe\u0301\n\u1100\u1161 x\n\u212b"]
    lines = kernel.scan(pl.Series(docs).to_arrow(), 3).lines
    assert lines.odd.tolist() == [False, False, True, True, True]
    assert lines.hash[:2].tolist() == [kernel.hash_ref("café naïve straße"), kernel.hash_ref("привет мир 東京 γλώσσα")]
    assert lines.chars[:2].tolist() == [17, 20] and lines.size[:2].tolist() == [20, 39]


def test_kernel_checks_its_bounds():
    """A string cut inside a character at the end of the buffer (Arrow checks offsets, not UTF-8): the
    pass raises (numba's bounds checking is on) instead of reading past the buffer."""
    import pyarrow as pa

    from corpus.stages.profile import kernel

    offsets = pa.py_buffer(np.array([0, 4], np.int64))
    bad = pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(b"abc\xe4"))
    with pytest.raises(IndexError):
        kernel.scan(bad, 0)
    # Offsets that pass the buffer (the walk reads each document as a slice, which would stop short).
    data, offs = np.frombuffer(b"ab\n\n\n", np.uint8), np.array([0, 3, 9], np.int64)  # blank: nothing else reads on
    t = kernel.tables()
    with pytest.raises(IndexError):
        kernel._scan(data, offs, 8, t.lanes, t.ascii_lanes, t.flags, t.script, t.gear, t.ascii_shift, t.ascii_gear,
                     12, kernel.SKETCH, kernel.WINDOW)


def test_sketches_of_near_duplicates_overlap():
    """The sketch keeps what minhash_dedup's normalisation ignores out of the way (case, digits,
    whitespace, punctuation) and near copies share most of it."""
    from corpus.stages.profile import kernel

    rng = random.Random(3)
    words = ["".join(rng.choice("abcdefghij") for _ in range(6)) for _ in range(300)]
    base = " ".join(words)
    variants = [base.upper(), base.replace(" ", "  \n"), base.replace(" ", ", "), base.replace("a", "a7", 1)]
    edited = words.copy()
    edited[150] = "zzzzzz"
    texts = pl.Series([base, *variants, " ".join(edited)])
    sk = kernel.scan(texts.to_arrow(), int(texts.str.count_matches("\n", literal=True).sum())).sketch
    first = set(sk[0].tolist())
    for row in sk[1:4]:
        assert set(row.tolist()) == first
    assert len(first & set(sk[5].tolist())) >= 6


def test_shipped_unicode_table():
    """The shipped class table is what polars' regex engine gives today."""
    from corpus.stages.profile import chars

    shipped, fresh = chars.code_point_table(), chars.build_code_point_table()
    assert (shipped.flags == fresh.flags).all() and (shipped.script == fresh.script).all()


def test_doc_features_by_hand():
    df = pl.DataFrame({
        "id": ["a", "b", "c", "d"], "source": ["s"] * 4,
        "text": ["Hello world 123.\nHello world 123.\nBye!", "Привет, мир", "  spaced   out\ttext  ", None],
    })
    d = doc_features(df)
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
    assert n["n_chars"] is None and n["frac_alpha"] is None and n["null"] and n["h"] is None
    # The exact-duplicate key is exact_dedup's: equal whitespace normal forms, equal keys.
    same = doc_features(pl.DataFrame({"id": ["x", "y", "z"], "source": ["s"] * 3,
                                      "text": ["a b\nc", "  a \t b \n\n c  \n", "A b c"]}))
    assert same["h"][0] == same["h"][1] != same["h"][2]


@pytest.mark.parametrize("n_lines", [2, 40, 64, 65, 300])
def test_dup_line_ratio_counts_distinct_lines(n_lines):
    """Repeated lines, in and out of order."""
    rng = random.Random(n_lines)
    distinct = max(1, n_lines * 2 // 3)
    lines = [f"line number {rng.randrange(distinct)}" for _ in range(n_lines)]
    d = doc_features(pl.DataFrame({"id": ["a"], "source": ["s"], "text": ["\n".join(lines)]}))
    assert d["dup_line_ratio"][0] == pytest.approx((n_lines - len(set(lines))) / n_lines)


def test_crlf_lines_count_as_their_normal_form():
    """Windows line ends: each line ends in "\\r", which the normal form strips, so a CRLF document
    has the text key, line count and distinct lines of its LF copy."""
    lf = "First line of the page here.\nSecond line, a bit longer.\nFirst line of the page here.\n"
    d = doc_features(pl.DataFrame({"id": ["lf", "crlf"], "source": ["s", "s"], "text": [lf, lf.replace("\n", "\r\n")]}))
    assert d["h"][0] == d["h"][1]
    assert d["n_lines"].to_list() == [3, 3] and d["dup_line_ratio"].to_list() == [pytest.approx(1 / 3)] * 2


def test_figures_of_a_large_document_are_exact(tmp_path):
    """A document of 2,000,001 characters: its n_chars (max, min, every quantile) is Python's len, not
    2,000,000 (figures were rounded to 6 significant digits, whole numbers included)."""
    rng = random.Random(2)
    text = " ".join(rng.choice(WORDS) for _ in range(400_000))[:2_000_000] + "é"
    assert len(text) == 2_000_001
    prof = profile_frames([pl.DataFrame({"id": ["big"], "text": [text], "source": ["s"]})], "t", tmp_path)
    feat = prof["overall"]["features"]["n_chars"]
    assert feat["max"] == feat["min"] == len(text) == prof["overall"]["chars"]
    assert set(feat["quantiles"].values()) == {len(text)}
    assert prof["overall"]["features"]["n_words"]["max"] == len(text.split())
    assert prof["overall"]["features"]["est_tokens"]["max"] == -(-len(text.encode()) // 4)


# ---------------------------------------------------------------- the profile of a known corpus


def test_counts_and_sums(known):
    df, prof, work = known
    o = prof["overall"]
    texts = [t for t in df["text"].to_list() if t is not None]
    assert json.loads((work / "profile.json").read_text()) == prof
    assert prof["format"] == "corpusforge.profile/2" and prof["label"] == "test"
    assert not (work / "_spill").exists()
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
    distinct = len({" ".join(t.split()) for t in texts})  # exact_dedup's whitespace normal form
    assert prof["overall"]["exact_dup_rate"] == pytest.approx(1 - distinct / len(texts), abs=1e-6)
    # Documents with an earlier near duplicate: w0-copy1..3 (w0), w1-ws (w1), near-b (near-a: one word
    # of 200 changed, Jaccard of their 5-gram sets 0.95); every other pair is below 0.2. The sample is
    # the whole corpus: the rate is exact, its interval a point.
    o = prof["overall"]
    assert o["near_dup_sample"] == len(texts)
    assert o["near_dup_rate"] == pytest.approx(5 / len(texts), abs=1e-6)
    assert o["near_dup_ci95"] == [o["near_dup_rate"]] * 2
    web = prof["by_source"]["web"]
    assert web["near_dup_rate"] == pytest.approx(4 / 26, abs=1e-6)  # w0-copy3 is in wiki
    wiki = prof["by_source"]["wiki"]  # w0-copy3's partner is in web: no duplicate within wiki
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
    huge = len(known_corpus().filter(pl.col("id") == "huge")["text"][0])
    assert out["count"] >= 1 and out["high"] < huge
    top = out["examples"][0]
    assert top["id"] == "huge" and top["source"] == "web" and top["robust_z"] > 3.5
    assert top["value"] == huge
    assert len(top["snippet"]) == 200
    assert set(prof["overall"]["outliers"]) == set(FEATURES)
    assert prof["by_source"]["web"]["outliers"]["n_chars"]["examples"][0]["id"] == "huge"
    assert "robust z" in prof["overall"]["outlier_rule"]


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
        assert h["log"] == (f in LOG_FEATURES)
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


def test_quantiles_close_to_exact(tmp_path):
    rng = random.Random(3)
    lengths = [int(math.exp(rng.gauss(6, 1.2))) + 1 for _ in range(3000)]
    df = pl.DataFrame({"id": [str(i) for i in range(len(lengths))], "source": ["s"] * len(lengths),
                       "text": ["x" * n for n in lengths]})
    feat = profile_frames([df], "t", tmp_path)["overall"]["features"]["n_chars"]
    for k, q in QUANTILES.items():
        exact = float(np.quantile(lengths, q, method="inverted_cdf"))
        assert feat["quantiles"][k] == pytest.approx(exact, rel=0.012), k
    assert feat["min"] == min(lengths) and feat["max"] == max(lengths)


def test_deterministic(known, tmp_path):
    df, prof, _ = known
    again = profile_frames([df], "test", tmp_path)
    assert json.dumps(again) == json.dumps(prof)


def test_top_lines_are_shown_in_normal_form(tmp_path):
    """A repeated line first met with stray whitespace (doubled, leading, trailing, a tab, a no-break
    space) is shown in its normal form, counted with its clean copies."""
    messy = ["  Share  this page\t today ", "Share this\u00a0page today", "Share this page today"]
    texts = [f"Intro number {i} here.\n{messy[i % 3]}\nBody text {i} follows." for i in range(9)]
    df = pl.DataFrame({"id": [f"d{i}" for i in range(9)], "text": texts, "source": ["s"] * 9})
    prof = profile_frames([df.slice(0, 4), df.slice(4)], "t", tmp_path)
    assert prof["overall"]["top_lines"][0] == {"line": "Share this page today", "docs": 9}


def test_top_lines_equal_a_plain_count_when_many_tie(tmp_path):
    """More lines tie at the last place shown than there are places: the shown ones are a plain count's
    (documents holding each line, then the line's normal form), across sources and chunks, with their
    texts in normal form and from the right documents (the texts are looked up only at the end)."""
    from corpus.stages.profile.constants import TOP_LINES

    rng = random.Random(9)
    pool = [f"Repeated line {_letters(rng)} {i} é\u0301" if i % 5 == 0 else f"Repeated  line {_letters(rng)} {i}"
            for i in range(3 * TOP_LINES)]
    texts, sources = [], []
    for d in range(60):
        held = rng.sample(pool, 12)
        texts.append(f"Unique line of document {d}.\n" + "\n".join(held))
        sources.append("ab"[d % 2])
    df = pl.DataFrame({"id": [str(i) for i in range(60)], "text": texts, "source": sources})
    prof = profile_frames([df.slice(0, 25), df.slice(25)], "t", tmp_path)

    def plain(docs: list[str]) -> list[dict]:
        normal = [{unicodedata.normalize("NFC", " ".join(x.split())) for x in t.split("\n")} for t in docs]
        n = Counter(ln for lines in normal for ln in lines)
        ranked = sorted(((c, ln) for ln, c in n.items() if c >= 2), key=lambda x: (-x[0], x[1]))[:TOP_LINES]
        return [{"line": ln, "docs": c} for c, ln in ranked]

    assert prof["overall"]["top_lines"] == plain(texts)
    for s in "ab":
        assert prof["by_source"][s]["top_lines"] == plain([t for t, x in zip(texts, sources, strict=True) if x == s])


def test_line_texts_are_cut_from_their_documents_batch_by_batch():
    """Each candidate's line comes from its own document's bytes (non-ASCII before it), in normal form,
    however many documents are fetched at a time; the documents are fetched once each."""
    from corpus.stages.profile.lines import line_texts

    docs = {7: "héllo\n  Second   line\u00a0here \nthird", 9: "only  line", 12: "x\ncafe\u0301 au lait"}
    fetched: list[int] = []

    def fetch(orders: np.ndarray) -> dict[int, str]:
        fetched.extend(orders.tolist())
        return {int(o): docs[int(o)] for o in orders}

    spans = [(12, 2, 17), (7, 7, 29), (9, 0, 10), (7, 0, 6), (7, 7, 29)]
    cands = pl.DataFrame(spans, schema={"order": pl.Int64, "lo": pl.Int64, "hi": pl.Int64}, orient="row")
    want = {(7, 0, 6): "héllo", (7, 7, 29): "Second line here", (9, 0, 10): "only line", (12, 2, 17): "café au lait"}
    for batch in (1, 2, 256):
        fetched.clear()
        got = line_texts(cands, fetch, batch)
        assert {(o, lo, hi): ln for o, lo, hi, ln in got.rows()} == want
        assert sorted(fetched) == [7, 9, 12]
    assert line_texts(cands.clear(), fetch).height == 0


# ---------------------------------------------------------------- the near-duplicate rate against the truth


def _letters(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))


def planted_corpus(seed: int, clusters: int, singles: int) -> list[str]:
    """Documents of random words (no two documents share a 5-gram by chance), and clusters of a base
    with variants that change 1 to 4 of its words (Jaccard of their 5-gram sets about 0.95 to 0.7,
    so pairs fall either side of 0.8), shuffled."""
    rng = random.Random(seed)
    docs = []
    for _ in range(clusters):
        base = [_letters(rng) for _ in range(rng.randint(100, 200))]
        docs.append(" ".join(base).capitalize() + ".")
        for _ in range(rng.randint(1, 4)):
            words = list(base)
            for j in rng.sample(range(len(words)), rng.randint(1, 4)):
                words[j] = _letters(rng)
            docs.append(" ".join(words).capitalize() + ".")
    docs += [" ".join(_letters(rng) for _ in range(rng.randint(20, 200))) for _ in range(singles)]
    rng.shuffle(docs)
    return docs


def share_dropped(docs: list[str], threshold: float = 0.8) -> float:
    """The truth: the share of documents whose cluster (connected by exact Jaccard >= threshold of
    minhash_dedup's word 5-gram sets, its normalisation) holds an earlier document, over every pair
    of documents that share a word."""
    op = MinHashDedup()
    norm = Normalisation(op.normalise)
    texts = norm.apply(pl.Series(docs)).to_list()
    sets = [set(word_shingles_ref(t, op.ngram)) for t in texts]
    by_word: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        for w in set(t.split()):
            by_word.setdefault(w, []).append(i)
    root = list(range(len(docs)))

    def find(i: int) -> int:
        while root[i] != i:
            i = root[i]
        return i

    for i in range(len(docs)):
        for j in {j for w in set(texts[i].split()) for j in by_word[w] if j < i}:
            if sets[i] and len(sets[i] & sets[j]) >= threshold * len(sets[i] | sets[j]):
                a, b = find(i), find(j)
                root[max(a, b)] = min(a, b)  # a cluster's root is its first document
    return sum(find(i) != i for i in range(len(docs))) / len(docs)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_near_dup_rate_holds_the_truth_in_its_interval(tmp_path, seed):
    """A corpus ten times larger than the sample: the estimate checks sampled documents against the
    whole corpus, so the true share (exact Jaccard over all pairs) and the share minhash_dedup
    drops both lie in the reported 95% interval; the within-sample estimate fell far below."""
    docs = planted_corpus(seed, clusters=500, singles=1300)
    (tmp_path / "in").mkdir()
    with open(tmp_path / "in" / "a.jsonl", "w") as fh:
        for d in docs:
            fh.write(json.dumps({"text": d}) + "\n")
    spec = [InputSpec(source="s", path=str(tmp_path / "in"))]
    o = profile_input(spec, tmp_path / "prof", workers=2, sample_size=300)["overall"]
    truth = share_dropped(docs)
    res = Pipeline([MinHashDedup()]).run(inputs=spec, output=tmp_path / "run", workers=1, quiet=True)
    dropped = 1 - res.manifest["docs"] / len(docs)
    lo, hi = o["near_dup_ci95"]
    assert o["near_dup_sample"] == 300 and len(docs) >= 10 * 300
    assert 0.15 < truth < 0.5
    assert lo <= truth <= hi and lo <= dropped <= hi, (truth, dropped, o["near_dup_rate"], lo, hi)
    assert hi - lo < 0.12


def test_near_dup_rate_of_a_section_sampled_whole_is_what_minhash_dedup_drops(tmp_path):
    """Sampled whole, the rate is exact: the share minhash_dedup drops (its LSH misses included, which
    the all-pairs truth does not have), and the interval is that point."""
    docs = planted_corpus(3, clusters=40, singles=60)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    spec = [InputSpec(source="s", path=str(tmp_path / "in"))]
    res = Pipeline([MinHashDedup()]).run(inputs=spec, output=tmp_path / "run", workers=1, quiet=True)
    df = pl.DataFrame({"id": [str(i) for i in range(len(docs))], "text": docs, "source": ["s"] * len(docs)})
    o = profile_frames([df.slice(0, 50), df.slice(50)], "t", tmp_path / "p")["overall"]
    assert o["near_dup_sample"] == len(docs)
    assert o["near_dup_rate"] == pytest.approx(1 - res.manifest["docs"] / len(docs), abs=1e-6)
    assert o["near_dup_ci95"] == [o["near_dup_rate"]] * 2
    assert abs(o["near_dup_rate"] - share_dropped(docs)) < 0.03


# ---------------------------------------------------------------- outliers on realistic distributions


def realistic_docs(seed: int, n: int) -> list[str]:
    """Web-like documents: lognormal lengths, lines of 5-15 words, digits in 60% of documents, a quarter
    with repeated lines, a few in capitals, a few tiny ones."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        words = [_letters(rng) for _ in range(max(1, min(20_000, int(math.exp(rng.gauss(5, 1.0))))))]
        if rng.random() < 0.6:
            words = [str(rng.randint(0, 10 ** rng.randint(1, 5))) if rng.random() < 0.04 else w for w in words]
        lines = []
        while words:
            k = rng.randint(5, 15)
            lines.append(" ".join(words[:k]).capitalize() + rng.choice([".", ".", ".", "!", "?", ":", ""]))
            words = words[k:]
        if rng.random() < 0.25:
            lines += rng.choices(lines, k=rng.randint(1, max(1, len(lines) // 3)))
        text = "\n".join(lines)
        docs.append(text.upper() if rng.random() < 0.01 else text)
    return docs


def _scale(f: str):  # noqa: ANN202
    if f in LOG_FEATURES:
        return np.log1p, np.expm1
    e = 1e-3
    return (lambda x: np.log((x + e) / (1 - x + e))), (lambda y: ((1 + e) * np.exp(y) - e) / (1 + np.exp(y)))


@pytest.mark.slow
def test_outliers_flag_a_few_percent_of_realistic_documents(tmp_path):
    """On web-like documents every feature flags at most 2.5% of them, per source and overall; the
    bounds are the rule computed in plain numpy (robust z on the log / logit scale, capped at the
    1% most extreme a side) up to the fine histograms' resolution, and the counts are exactly the
    documents outside the bounds."""
    docs = realistic_docs(4, 4000)
    src = ["a" if i % 3 else "b" for i in range(len(docs))]
    df = pl.DataFrame({"id": [f"d{i}" for i in range(len(docs))], "text": docs, "source": src})
    prof = profile_frames([df.slice(i, 700) for i in range(0, df.height, 700)], "t", tmp_path)
    feats = doc_features(df)
    for section, sec in [("", prof["overall"]), *prof["by_source"].items()]:
        part = feats if not section else feats.filter(pl.col("source") == section)
        for f in FEATURES:
            out = sec["outliers"][f]
            x = part[f].drop_nulls().to_numpy()
            assert out["count"] <= 0.025 * len(x) + 1, (section, f, out["count"])
            assert out["count"] == int(((x < out["low"]) | (x > out["high"])).sum()), (section, f)
            t, inv = _scale(f)
            m = float(np.median(t(x)))
            sigma = 1.4826 * float(np.median(np.abs(t(x) - m)))
            for q, k in ((0.1, 2.5631), (0.01, 4.6527)):
                if sigma <= 1e-12:
                    sigma = float(t(np.quantile(x, 1 - q)) - t(np.quantile(x, q))) / k
            share = max(0.01, 5 / len(x))
            lo_z, hi_z = (inv(m - 3.5 * sigma), inv(m + 3.5 * sigma)) if sigma > 1e-12 else (np.median(x),) * 2
            low = max(0.0, min(lo_z, np.quantile(x, share)))
            high = max(hi_z, np.quantile(x, 1 - share))
            tol = 0.03 * (high - low) + (0.002 if f not in LOG_FEATURES else 0.0)
            assert out["low"] == pytest.approx(low, rel=0.03, abs=tol), (section, f)
            assert out["high"] == pytest.approx(min(high, 1.0) if f not in LOG_FEATURES else high, rel=0.03,
                                                abs=tol), (section, f)
    assert prof["overall"]["outliers"]["frac_upper"]["count"] >= 0.8 * sum(d.isupper() for d in docs)


def test_outlier_examples_break_ties_by_corpus_order(tmp_path):
    """Ten docs share the largest length: all are flagged, the examples are the five earliest."""
    texts = ["w " * 20] * 1200 + ["long " * 400] * 10
    ids = [f"a{i:04d}" for i in range(1200)] + [f"z{i}" for i in (9, 3, 7, 1, 5, 0, 8, 2, 6, 4)]
    df = pl.DataFrame({"id": ids, "text": texts, "source": ["s"] * len(ids)})
    prof = profile_frames([df.slice(0, 1100), df.slice(1100)], "t", tmp_path)
    out = prof["overall"]["outliers"]["n_chars"]
    assert out["count"] == 10
    assert [e["id"] for e in out["examples"]] == ["z9", "z3", "z7", "z1", "z5"]


def test_outlier_examples_equal_a_full_pass_over_every_document(tmp_path):
    """Counts and examples (kept while streaming) equal a plain pass over every document's features
    against the reported bounds: three sources, many ties, small chunks."""
    rng = random.Random(3)
    rows = []
    for _ in range(600):
        k = rng.random()
        text = ("x" * rng.randint(1, 4) if k < 0.1 else "Digits 12345 " * rng.randint(1, 30) if k < 0.2
                else _para(rng, rng.choice([5, 5, 20, 40, 400])))
        rows.append((f"d{rng.randrange(10**6):06d}", text, rng.choice(["web", "wiki", "books"])))
    rows += [(f"tie{i}", "same length text " * 30_000, "web") for i in (5, 2, 8, 1)]
    df = pl.DataFrame({"id": [r[0] for r in rows], "text": [r[1] for r in rows], "source": [r[2] for r in rows]})
    prof = profile_frames([df.slice(i, 97) for i in range(0, df.height, 97)], "t", tmp_path)
    feats = doc_features(df).with_row_index("pos")
    text_of = dict(zip(df["id"], df["text"], strict=True))
    for section, got in [("", prof["overall"]), *prof["by_source"].items()]:
        part = feats if not section else feats.filter(pl.col("source") == section)
        for f in FEATURES:
            out = got["outliers"][f]
            t = _scale(f)[0]
            flagged = part.filter((pl.col(f) < out["low"]) | (pl.col(f) > out["high"]))
            assert out["count"] == flagged.height, (section, f)
            p50 = got["features"][f]["quantiles"]["p50"]
            m = t(p50) if p50 is not None else 0.0  # the section's median, as the profile has it
            want = sorted(flagged.select("pos", "id", "source", f).rows(), key=lambda r: (-abs(t(r[3]) - m), r[0]))
            assert [(e["id"], e["source"]) for e in out["examples"]] == [(r[1], r[2]) for r in want[:5]], (section, f)
            assert all(e["snippet"] == text_of[e["id"]][:200] for e in out["examples"])
    assert [e["id"] for e in prof["overall"]["outliers"]["n_chars"]["examples"]][:4] == ["tie5", "tie2", "tie8", "tie1"]


# ---------------------------------------------------------------- inputs, corpus folders, the operator


def messy_folder(folder: Path) -> None:
    """Everything the readers judge: malformed JSON, invalid UTF-8, missing / null / non-string / empty
    / whitespace text, NUL bytes, a non-object, a BOM, CRLF line ends, blank lines, no final newline,
    a gzip file, a huge document and one over max_doc_bytes."""
    import gzip

    rng = random.Random(9)
    folder.mkdir(parents=True)
    good = [json.dumps({"text": _para(rng, rng.randint(3, 40)), "id": f"r{i}", "n": i}) for i in range(300)]
    bad = ["{broken json", json.dumps({"other": 1}), json.dumps({"text": None}), json.dumps({"text": 5}),
           json.dumps({"text": ""}), json.dumps({"text": "  \t "}), json.dumps({"text": "a\u0000b"}), "[1, 2]",
           json.dumps({"text": "x" * 3000, "id": "xs"})]
    lines = good[:100] + bad + [""] * 3 + good[100:150]
    (folder / "a.jsonl").write_bytes("\n".join(lines).encode() + b"\n" + b'{"text": "caf\xe9 latin-1"}\n')
    (folder / "b.jsonl").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(good[150:200]).encode() + b"\r\n\r\n")
    with gzip.open(folder / "c.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(good[200:]))  # no final newline
    huge = " ".join(rng.choice(WORDS) for _ in range(300_000))
    (folder / "d.jsonl").write_text(json.dumps({"text": huge, "id": "huge"}) + "\n" + good[0] + "\n")


def test_profile_reads_what_a_run_reads(tmp_path):
    """A profile and a run with no operators agree on every record: the documents, and the records
    quarantined, by kind (the profiler reads raw input through the corpus readers only)."""
    messy_folder(tmp_path / "in")
    spec = [InputSpec(source="m", path=str(tmp_path / "in"), id_key="id", max_doc_bytes=2000)]
    o = profile_input(spec, tmp_path / "prof", workers=2)["overall"]
    res = Pipeline([]).run(inputs=spec, output=tmp_path / "run", workers=1, quiet=True)
    quarantine = pl.concat([pl.read_parquet(p) for p in (tmp_path / "run" / "quarantine").glob("*.parquet")])
    assert o["docs"] == res.manifest["docs"]
    assert o["quarantined"] == dict(quarantine.group_by("kind").len().sort("kind").rows())
    assert sum(o["quarantined"].values()) >= 8
    data = read_all(tmp_path / "run" / "data")
    assert o["chars"] == int(data["text"].str.len_chars().sum())
    assert o["bytes"] == int(data["text"].str.len_bytes().sum())


def test_profile_input_matches_frames(tmp_path):
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
    raw = profile_input([InputSpec(source="web", path=str(tmp_path / "in"))], tmp_path / "raw", workers=1)
    for k in ("near_dup_rate", "exact_dup_rate", "chars", "top_lines"):
        assert prof["overall"][k] == raw["overall"][k], k
    # A shard changed since the run wrote it (same size, other bytes) is named, not profiled.
    shard = tmp_path / "corpus" / res.manifest["shards"][0]["path"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=f"{shard}: content changed since it was written"):
        profile_input(tmp_path / "corpus", tmp_path / "prof2", workers=1)
    assert not (tmp_path / "prof2").exists()


def test_a_second_profile_into_the_same_folder_is_refused(tmp_path):
    """Two profiles into one folder: the second deleted the first's spill as it started (both then reported
    success, from each other's files). It is refused now, and the first's files are left alone."""
    from corpus.lock import LockedError, RunLock

    make_jsonl_corpus(tmp_path / "in", files=1, docs_per_file=20)
    out = tmp_path / "prof"
    with RunLock(out):  # a profile under way
        (out / "_spill").mkdir()
        (out / "_spill" / "feat-000000-00000.parquet").write_bytes(b"its file")
        with pytest.raises(LockedError, match=f"is writing {out}"):
            profile_input(tmp_path / "in", out, workers=1)
        assert (out / "_spill" / "feat-000000-00000.parquet").read_bytes() == b"its file"
    assert profile_input(tmp_path / "in", out, workers=1)["overall"]["docs"] == 20


def test_operator_in_pipeline(tmp_path):
    assert get_operator("profile") is Profile
    make_jsonl_corpus(tmp_path / "in", files=3, docs_per_file=50, seed=5)
    inputs = [InputSpec(source="web", path=str(tmp_path / "in"))]
    res = Pipeline([Profile()]).run(inputs=inputs, output=tmp_path / "out", workers=2, quiet=True)
    found = list((tmp_path / "out" / "work").glob("01-profile-*/artifacts/profile.json"))
    assert len(found) == 1
    prof = json.loads(found[0].read_text())
    assert prof["label"] == "01-profile" and prof["overall"]["docs"] == res.manifest["docs"]
    assert prof["overall"]["near_dup_rate"] > 0  # make_jsonl_corpus plants exact copies
    assert not (found[0].parent / "_spill").exists()
    # The report shows the interval beside the near-duplicate rate, and the outlier rule and bounds.
    report = json.loads((tmp_path / "out" / "report.json").read_text())["sections"]
    lo, hi = prof["overall"]["near_dup_ci95"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert f"95% CI {100 * lo:.1f}%–{100 * hi:.1f}%" in html
    assert report["outliers"]["figures"]["rule"] == prof["overall"]["outlier_rule"]
    assert "flagged when" in html
    # The overview lists the profile stage in the pipeline (a sink: no funnel rows of its own).
    assert report["overview"]["figures"]["pipeline"] == ["00-read", "01-profile"]
    assert "Pipeline: 00-read → 01-profile." in html
    plain = Pipeline([]).run(inputs=inputs, output=tmp_path / "plain", workers=1, quiet=True)
    cols = ["id", "text", "source", "meta", "src_file", "src_row"]
    a = read_all(tmp_path / "out" / "data").select(cols).sort("id")
    b = read_all(tmp_path / "plain" / "data").select(cols).sort("id")
    assert plain.manifest["docs"] == res.manifest["docs"] and a.equals(b)


def test_threads_do_not_change_the_profile(tmp_path):
    make_jsonl_corpus(tmp_path / "in", files=5, docs_per_file=40, seed=8)
    spec = [InputSpec(source="web", path=str(tmp_path / "in"))]
    one = profile_input(spec, tmp_path / "one", workers=1)
    three = profile_input(spec, tmp_path / "three", workers=3)
    assert json.dumps(one) == json.dumps(three)


def test_a_big_file_is_profiled_in_parts_as_if_read_whole(tmp_path):
    """One big file is read in parts on every thread, as a run reads it (it used to be one thread's), and its
    profile is the same as read whole: the same documents, ids and orders, so the same figures, near
    duplicates, top lines and examples (the reader's pieces are 8 MiB: 20 MB make 2 parts or more)."""
    import shutil

    make_jsonl_corpus(tmp_path / "small", files=1, docs_per_file=4000, seed=3)
    one = (tmp_path / "small" / "part-000.jsonl").read_bytes()
    with open(tmp_path / "big.jsonl", "wb") as fh:  # copies of the same records: near and exact duplicates
        while fh.tell() < 20 << 20:
            fh.write(one)
    shutil.rmtree(tmp_path / "small")
    from corpus.readers import plan_tasks
    from corpus.readers.plan import split_tasks
    from corpus.stages.profile.constants import CHUNK_BYTES

    assert len(split_tasks(plan_tasks(tmp_path / "big.jsonl"), 1 << 20, CHUNK_BYTES)[0]) >= 2
    whole = profile_input(tmp_path / "big.jsonl", tmp_path / "whole", workers=2, split_bytes=0)
    parts = profile_input(tmp_path / "big.jsonl", tmp_path / "parts", workers=2, split_bytes=1 << 20)
    assert whole["overall"]["docs"] > 20_000 and whole["overall"]["exact_dup_rate"] > 0.5
    assert json.dumps(parts) == json.dumps(whole)


def test_a_missing_input_leaves_nothing_behind(tmp_path):
    from corpus.readers import InputError

    with pytest.raises(InputError, match="does not exist"):
        profile_input([InputSpec(source="x", path=str(tmp_path / "nope"))], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("the user's")
    with pytest.raises(InputError):
        profile_input([InputSpec(source="x", path=str(tmp_path / "nope"))], tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["keep.txt"]


def test_profile_command(tmp_path):
    """`corpus profile`: --id-key shows the records' own ids, quarantine counts by kind, the outlier
    rule and bounds, the default output folder (printed); a missing path: one error line, no folder."""
    messy_folder(tmp_path / "in")
    res = run_cli("profile", str(tmp_path / "in"), "--id-key", "id", "-w", "1", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "in-profile"
    assert str(out) in res.stdout and (out / "profile.json").exists() and not (out / "_spill").exists()
    prof = json.loads((out / "profile.json").read_text())
    ids = {e["id"] for f in prof["overall"]["outliers"].values() for e in f["examples"]}
    assert "huge" in ids and all(i.startswith("r") or i in ("huge", "xs") for i in ids)  # the records' own
    table = res.stdout[res.stdout.index("Quarantined"):]
    for kind, n in prof["overall"]["quarantined"].items():
        assert re.search(rf"{kind}\s+│\s+{n}\s", table), kind
    assert "robust z" in res.stdout and "flagged when" in res.stdout
    # A count's bounds are the whole numbers that flag the same documents, written out in full.
    outliers = prof["overall"]["outliers"]
    for f in ("n_chars", "n_words", "n_lines", "est_tokens"):
        assert all(isinstance(outliers[f][side], int) for side in ("low", "high")), outliers[f]
    rng = random.Random(3)  # long documents: bounds of five digits and more
    (tmp_path / "long").mkdir()
    (tmp_path / "long" / "a.jsonl").write_text("".join(
        json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(2000, 6000)))}) + "\n"
        for _ in range(200)) + json.dumps({"text": "w " * 60_000}) + "\n")
    res = run_cli("profile", str(tmp_path / "long"), "-w", "1", cwd=tmp_path)
    long = json.loads((tmp_path / "long-profile" / "profile.json").read_text())["overall"]
    high = long["outliers"]["n_chars"]["high"]
    assert high >= 10_000 and f"> {high:,}" in res.stdout and "e+0" not in res.stdout, res.stdout
    bad = run_cli("profile", str(tmp_path / "missing"), cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "does not exist" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "missing-profile").exists()


# ---------------------------------------------------------------- bounded memory: Misra-Gries, key ranges


def test_misra_gries_tables_keep_their_guarantee():
    """Merged chunk by chunk, a table of k entries equals plain Python's Misra-Gries (add the counts,
    take the (k+1)-th largest off each, keep the positive ones), holds every line counted more than
    N/(k+1) times of N, and each estimate lies between the true count minus N/(k+1) and the count."""
    from corpus.stages.profile.lines import LineTable

    k = 10

    def reference(table: dict[int, int], more: dict[int, int]) -> dict[int, int]:
        both = Counter(table) + Counter(more)
        if len(both) <= k:
            return dict(both)
        cut = sorted(both.values(), reverse=True)[k]
        return {x: c - cut for x, c in both.items() if c > cut}

    rng = np.random.default_rng(4)
    true: Counter = Counter()
    table, ref = LineTable(capacity=k), {}
    for _ in range(30):
        draws = np.minimum(rng.zipf(1.3, 200), 10_000).astype(np.uint64)
        h, n = np.unique(draws, return_counts=True)
        chunk = dict(zip(h.tolist(), n.tolist(), strict=True))
        true.update(chunk)
        counts = pl.DataFrame({"h": h, "n": n.astype(np.int64), "row": np.arange(len(h))})
        where = lambda rows, h=h: np.stack([h[rows]] * 3, 1).astype(np.int64)  # noqa: E731
        table = table.merge(LineTable.of(counts, where, capacity=k))
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
        assert table.where[table.h.tolist().index(x)].tolist() == [x] * 3  # where travels with its line


def test_distinct_texts_counted_by_key_range_equal_one_pass(known, tmp_path):
    """Past part_keys documents the distinct text keys are counted in passes over disjoint key ranges
    (flat memory): per source and overall, the same counts as one pass."""
    from corpus.stages.profile.spill import distinct_texts

    df, prof, _ = known
    profile_frames([df], "test", tmp_path, keep_features=True)
    files = sorted((tmp_path / "_spill").glob("feat-*.parquet"))
    assert files and not list((tmp_path / "_spill").glob("text-*"))
    one = distinct_texts(files, ["web", "wiki"], df.height)
    assert distinct_texts(files, ["web", "wiki"], df.height, part_keys=4) == one
    assert one[1] == round((1 - prof["overall"]["exact_dup_rate"]) * (df.height - 1))


def test_spilled_texts_come_back_by_order_whatever_file_holds_them(tmp_path):
    """The near-duplicate check and the top lines read texts back by order from the spill (memory-mapped
    Arrow files): every order asked for that was spilled comes back with its own text, from any file, in
    any order within a file; orders never spilled are simply absent."""
    from types import SimpleNamespace

    from corpus.stages.profile.spill import Spill, text_fetch

    rng = random.Random(3)
    texts = {}
    for unit in range(3):
        spill = Spill(tmp_path, unit)
        for _ in range(2):
            orders = [(unit << 40) + rng.randrange(1 << 30) for _ in range(50)]
            if unit == 1:
                rng.shuffle(orders)  # not sorted within this file
            body = [f"doc {o} " + "é" * rng.randrange(5) for o in orders]
            texts.update(zip(orders, body, strict=True))
            docs = pl.DataFrame({"order": orders}, schema={"order": pl.Int64})
            empty = pl.DataFrame(schema={"source": pl.String, "h": pl.UInt64, "n": pl.Int64})
            spill.write(SimpleNamespace(docs=docs, text=pl.Series(body), arrow=pl.Series(body).to_arrow(),
                                        lines=SimpleNamespace(counts=empty)))
    fetch = text_fetch(tmp_path)
    asked = rng.sample(sorted(texts), 120) + [5, (1 << 40) + 7]  # two orders never spilled
    fds = len(os.listdir("/proc/self/fd"))
    assert fetch(np.array(asked)) == {o: texts[o] for o in asked if o in texts}
    assert fetch(np.array([], np.int64)) == {}
    assert len(os.listdir("/proc/self/fd")) == fds  # no file held open (a big corpus spills thousands)


def test_a_negative_near_duplicate_sample_is_refused(tmp_path):
    """sample_size -5 (or the operator's near_dup_sample) gave a near-duplicate rate of 0.5 on any corpus; 0
    means no estimate."""
    make_jsonl_corpus(tmp_path / "in", files=1, docs_per_file=20)
    with pytest.raises(ValueError, match="near_dup_sample must be 0 \\(no near-duplicate estimate\\) or more"):
        profile_input(tmp_path / "in", tmp_path / "prof", workers=1, sample_size=-5)
    assert not (tmp_path / "prof").exists()
    with pytest.raises(ValueError, match="got -1"):
        Profile(near_dup_sample=-1)
    none = profile_input(tmp_path / "in", tmp_path / "prof", workers=1, sample_size=0)
    assert none["overall"]["near_dup_rate"] is None
