"""Quality signals (stages/signals.py): every column equals the plain per-document Python reference
(benchmarks/enrich_plain.py, written the way datatrove's filters are) on hand-made documents, a few
values are checked by hand, and the operator keeps the contract in a pipeline."""

from __future__ import annotations

import json
import math
import random
import sys

import polars as pl
import pytest
from helpers import ROOT, read_all

from corpus import InputSpec, Pipeline
from corpus.operators import output_problem
from corpus.stages.filter import LengthFilter
from corpus.stages.signals import GROUPS, PY_WS, QualitySignals

sys.path.insert(0, str(ROOT))
from benchmarks.enrich_plain import signals as plain_signals  # noqa: E402

HAND_MADE = [
    "Hello world. This is a test.\nHello world. This is a test.\n\n\nNew para here!",
    "x",
    "- a b c\n- a b c\n\u2022 bullet...\nend\u2026",
    "the cat and the dog that have with to of be\n#tag #tag ... \u2026 (the) The",
    "lorem ipsum dolor sit amet.\nfunction() { return 1; } is code.\nWe use cookies on this site.\n"
    "Enable javascript now please.\nA fine line [1] here. Another one! Yes.",
    "a b c d e a b c d e a b c d e",
    "one two three four five one two three four five one two three four five six",
    "  \t lead and trail  \r\nwindows\rold mac\x0bvt\u2028ls\u2029ps\x85nel\n",
    "\u00dcn\u00efc\u00f6d\u00e9 w\u00f6rds \u2014 \u00abquotes\u00bb \u6771\u4eac \u4e2d\u6587, done.",
    "a\n\nb\n\na\n\nb\n\n\n\n",
    "word\x1fglued\u00a0nbsp\u3000ideographic space",
    "Short.\n" * 5 + "A much longer line that goes on and on. " * 8,
    "x" * 1001 + " is a very long word. Then a normal line follows here.\nAnother fine sentence. Two here!",
    '"Quoted line ends with a quote."\nIt\'s fine, isn\'t it?\' Yes.\nNo end punctuation here',
    "\n\n\n",
    "# # # ...\n... ... \u2026",
]
URLS = ["http://www.Example.COM:80/x", "https://user@a.b.co.uk./p?q", "http://10.0.0.1/x", "http://[::1]:8/",
        "ftp://localhost/", "nourl", "HTTPS://WWW.Wiki.org", 42, None]


def _random_docs(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    vocab = "the of and to a in is x y z foo bar baz qux . ... # - \u2022 lorem ipsum { javascript".split()
    docs = []
    for _ in range(n):
        lines = [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 15)))
                 + rng.choice(["", ".", "!", "...", "\u2026", '"', "?'"]) for _ in range(rng.randint(1, 12))]
        docs.append(rng.choice(["\n", "\n\n", "\n\n\n", "\r\n"]).join(lines))
    return docs


def _frame(texts: list[str]) -> pl.DataFrame:
    metas = [json.dumps({"url": URLS[i % len(URLS)]} if URLS[i % len(URLS)] is not None else {})
             for i in range(len(texts))]
    return pl.DataFrame({"id": [f"d{i}" for i in range(len(texts))], "text": texts, "meta": metas})


def _same(got: object, want: object) -> bool:
    if isinstance(want, float) and isinstance(got, float):
        return math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-15)
    return got == want


def test_whitespace_is_pythons():
    assert set(PY_WS) == {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}


def test_every_signal_equals_the_plain_reference():
    texts = HAND_MADE + _random_docs(300)
    df = _frame(texts)
    out = QualitySignals().map(df)
    assert output_problem(QualitySignals(), df, out) is None
    columns = [c for g in GROUPS.values() for c in g]
    mismatches = []
    for row in out.iter_rows(named=True):
        want = plain_signals(row["text"], row["meta"])
        assert set(want) == set(columns)
        mismatches += [(row["id"], c, row[c], want[c]) for c in columns if not _same(row[c], want[c])]
    assert not mismatches, mismatches[:10]


def test_values_by_hand():
    text = "a b c d e a b c d e a b c d e"  # 15 words, 29 characters
    r = QualitySignals(groups=["counts", "gopher_repetition"]).map(_frame([text])).row(0, named=True)
    assert (r["n_words"], r["n_chars"], r["n_lines"], r["est_tokens"]) == (15, 29, 1, 8)
    # "a b" occurs 3 times: 3 characters each
    assert r["gopher_top_2gram_frac"] == pytest.approx(9 / 29)
    # 5-grams a..e at 0-4 are new; the one at 5 repeats (+5 chars, jump to 10), the one at 10 repeats (+5)
    assert r["gopher_dup_5gram_frac"] == pytest.approx(10 / 29)
    # 6-grams: 0-4 new ("abcdea".."eabcde"), 5 repeats 0 (+6, jump to 11); 11 is past the last (9)
    assert r["gopher_dup_6gram_frac"] == pytest.approx(6 / 29)
    c4 = ("Lorem ipsum dolor sit amet.\nThis line has three words at least. Yes it does!\n"
          "Please enable JavaScript to continue.\nRead our privacy policy now.\nno punctuation at the end\n"
          "See the result [1] here.")
    r = QualitySignals(groups=["c4"]).map(_frame([c4])).row(0, named=True)
    # kept: the second line (2 sentences) and the last (its citation removed); lorem ipsum seen
    assert (r["c4_lines_kept"], r["c4_sentences"], r["c4_lorem_ipsum"], r["c4_curly_bracket"]) == (2, 3, True, False)
    r = QualitySignals(groups=["c4"], c4_terminal_punct=False).map(_frame([c4])).row(0, named=True)
    assert r["c4_lines_kept"] == 3  # the line without end punctuation is kept too
    fw = "Line one.\nline two\n\nLine one.\n"
    r = QualitySignals(groups=["fineweb", "counts"]).map(_frame([fw])).row(0, named=True)
    assert r["fineweb_line_punct_frac"] == pytest.approx(2 / 3)  # of the 3 non-blank lines, as datatrove
    assert r["fineweb_dup_line_char_frac"] == pytest.approx(9 / (len(fw) - 4))
    assert r["fineweb_newline_word_ratio"] == pytest.approx(4 / 6)


def test_url_columns():
    out = QualitySignals(groups=["url"]).map(_frame(["t"] * len(URLS)))
    got = list(zip(out["url_domain"], out["url_tld"], strict=True))
    assert got == [("example.com", "com"), ("a.b.co.uk", "uk"), ("10.0.0.1", None), ("::1", None),
                   ("localhost", None), (None, None), ("wiki.org", "org"), (None, None), (None, None)]
    by_id = QualitySignals(groups=["url"], url_field="id").map(
        pl.DataFrame({"id": ["https://docs.python.org/3/"], "text": ["t"], "meta": ["{}"]}))
    assert by_id["url_domain"].to_list() == ["docs.python.org"]


def test_groups_choose_the_columns_and_the_declaration_holds():
    df = _frame(["One two three.", "Four five."])
    op = QualitySignals(groups=["counts", "fineweb"])
    out = op.map(df)
    assert set(out.columns) - set(df.columns) == set(GROUPS["counts"]) | set(GROUPS["fineweb"])
    assert output_problem(op, df, out) is None
    needs, _, _ = op.columns()
    assert "meta" not in needs  # no url group: no meta needed
    empty = op.map(df.clear())
    assert empty.height == 0 and output_problem(op, df.clear(), empty) is None
    with pytest.raises(ValueError, match="unknown"):
        QualitySignals(groups=["gopher", "counts"])


def test_recomputed_columns_replace_earlier_ones_and_match_length_filter():
    df = _frame(["a b\u00a0c d\x1fe", "one"])
    verdict = LengthFilter().filter(df)
    scored = df.with_columns(**verdict.scores)
    out = QualitySignals(groups=["counts"]).map(scored)
    assert out.columns.count("n_words") == 1
    assert out["n_words"].to_list() == verdict.scores["n_words"].to_list() == [len(t.split()) for t in df["text"]]


def test_pipeline_writes_signals(tmp_path):
    src = tmp_path / "in.jsonl"
    docs = [{"text": t, "url": f"https://site{i % 3}.org/p{i}"} for i, t in enumerate(HAND_MADE[:8])]
    src.write_text("".join(json.dumps(d) + "\n" for d in docs))
    Pipeline([QualitySignals()]).run([InputSpec(source="web", path=str(src))], tmp_path / "out", workers=1)
    data = read_all(tmp_path / "out" / "data")
    assert data.height == 8
    assert data.schema["gopher_dup_5gram_frac"] == pl.Float64 and data.schema["c4_lorem_ipsum"] == pl.Boolean
    assert sorted(set(data["url_domain"])) == ["site0.org", "site1.org", "site2.org"]
    for row in data.iter_rows(named=True):
        want = plain_signals(row["text"], row["meta"])
        assert all(_same(row[c], want[c]) for c in want)
