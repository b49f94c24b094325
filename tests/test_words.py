"""Words as datatrove's English word tokenizer splits them (stages/words.py). Each expected split is what
spaCy's English rules give (``spacy.blank("en")``, checked with spaCy 3.8 where datatrove runs it),
written out here so the tests run without spaCy."""

import polars as pl
import pytest

from corpus.stages.signals import datatrove_words
from corpus.stages.words import SEP, _chunk_tokens, split_chunks

CASES = {
    # slashes: an infix only between a letter or digit and a letter; a leading "/" is no prefix
    "debian/rules": ["debian", "/", "rules"],
    "/etc/profile": ["/etc", "/", "profile"],
    "a/1": ["a/1"],
    "and/or": ["and/or"],  # special cases
    "w/o": ["w/o"],
    # hyphens: between digits (dates, ranges), or between a letter or digit and a letter
    "2021-05-15": ["2021", "-", "05", "-", "15"],
    "64-bit": ["64", "-", "bit"],
    "command-line": ["command", "-", "line"],
    "bash-5.2": ["bash-5.2"],
    "-p": ["-p"],
    "--enable": ["--enable"],
    "--": ["--"],
    # table borders: hyphens and "|" are no affixes; "+" is a prefix unless a digit follows
    "----+----": ["----+----"],
    "|---|": ["|---|"],
    "+----+": ["+", "----+"],
    "+0100": ["+0100"],
    "+x": ["+", "x"],
    # contractions and possessives: special cases, and the "'s" suffix
    "don't": ["do", "n't"],
    "doesn't.": ["does", "n't", "."],
    "can't": ["ca", "n't"],
    "it's": ["it", "'s"],
    "(it's": ["(", "it", "'s"],
    "I'm": ["I", "'m"],
    "they're": ["they", "'re"],
    "John's": ["John", "'s"],
    "object\u2019s": ["object", "\u2019s"],
    "l'Opera": ["l'Opera"],
    "cannot": ["can", "not"],
    "id.": ["i", "d."],  # "id" is "i" "d", then "d" "." spell the special case "d."
    "Wed,": ["We", "d", ","],
    # neighbouring tokens that spell an emoticon merge: "):" "[:" ":)"
    "f(x):": ["f(x", "):"],
    "x):": ["x", "):"],
    "lst[:]": ["lst", "[:", "]"],
    ":)": [":)"],
    "8)": ["8)"],
    "postfatal:().": ["postfatal", ":()", "."],  # the longest first
    # stripping stops where the rest is a special case: "(" then ":)", not "(:" then ")"
    "(:)": ["(", ":)"],
    "'''": ["'", "''"],
    # underscores: a prefix and a suffix, never an infix
    "__init__": ["_", "_", "init", "_", "_"],
    "snake_case": ["snake_case"],
    # URLs stay whole once their affixes are off
    "https://x.org/a?b=1.": ["https://x.org/a?b=1", "."],
    "(www.example.com)": ["(", "www.example.com", ")"],
    "foo@bar.com": ["foo@bar.com"],
    "README.md": ["README.md"],
    # full stops: a suffix after a digit, a lower-case letter, punctuation or two capitals; specials
    "end.": ["end", "."],
    "x.": ["x."],
    "A.": ["A."],
    "USA.": ["USA", "."],
    "U.S.": ["U.S."],
    "Inc.": ["Inc."],
    "e.g.,": ["e.g.", ","],
    "e.g..": ["e.g", ".."],
    "i.e.": ["i.e."],
    "3.14.": ["3.14", "."],
    "1.5": ["1.5"],
    "a.b": ["a.b"],
    "end.The": ["end", ".", "The"],
    "x...y": ["x", "...", "y"],
    "...": ["..."],
    # units and currencies after a number
    "10km.": ["10", "km", "."],
    "100%": ["100", "%"],
    "5pm": ["5", "pm"],
    "$5": ["$", "5"],
    # letters and digits: one token unless a unit follows the last digit
    "94d364f157f0": ["94d364f157f0"],
    "v8": ["v8"],
    "abc5m": ["abc5", "m"],
    "5K.": ["5K."],
    # one affix on letters: off, and the letters may be a special case
    "Wed.": ["We", "d."],
    "dogs'": ["dogs", "'"],
    "'tis": ["'", "tis"],
    "'Cause,": ["'Cause", ","],
    "upstream:": ["upstream", ":"],
    # quotes and brackets
    "'quoted'": ["'", "quoted", "'"],
    '"double"': ['"', "double", '"'],
    "(see": ["(", "see"],
    "a,b": ["a", ",", "b"],
    "C++": ["C++"],
}


def test_each_chunk_splits_as_spacy_english_does():
    got = split_chunks(pl.Series(list(CASES))).str.split(SEP).to_list()
    wrong = {c: (want, g) for (c, want), g in zip(CASES.items(), got, strict=True) if want != g}
    assert not wrong


def test_texts_split_per_document_at_any_whitespace():
    texts = ["See e.g., the  shell's\n\nman page (bash-5.2):", "", "  \n ", "debian/rules\t2021-05-15"]
    assert datatrove_words(pl.Series(texts)).to_list() == [
        ["See", "e.g.", ",", "the", "shell", "'s", "man", "page", "(", "bash-5.2", "):"],
        [], [],
        ["debian", "/", "rules", "2021", "-", "05", "-", "15"],
    ]


@pytest.mark.parametrize("chunk", ["Wed", "cannot", "e.g.,", "f(x):"])
def test_a_chunk_splits_the_same_alone_and_among_others(chunk):
    """Work is done once per distinct chunk and joined back: the order of a batch changes nothing."""
    alone = datatrove_words(pl.Series([chunk])).to_list()[0]
    among = datatrove_words(pl.Series([f"x {chunk} {chunk} y", chunk])).to_list()
    assert among == [["x", *alone, *alone, "y"], alone]


def test_chunks_sharing_a_hash_never_take_each_other_s_tokens():
    flat = pl.Series(["don't", "a/b", "don't", None])
    colliding = pl.Series([7, 7, 7, None], dtype=pl.UInt64)  # as if "don't" and "a/b" hashed alike
    assert _chunk_tokens(flat, colliding) is None
    tokens = _chunk_tokens(flat, flat)
    assert tokens.to_list() == [["do", "n't"], ["a", "/", "b"], ["do", "n't"], None]
    assert _chunk_tokens(flat, flat.hash(seed=0)).to_list() == tokens.to_list()


def test_a_null_or_empty_text_has_no_words():
    from corpus.stages.signals import datatrove_words

    got = datatrove_words(pl.Series(["", "  \n", None, "it's"], dtype=pl.String)).to_list()
    assert got == [[], [], [], ["it", "'s"]]
