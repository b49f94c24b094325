"""Text normalisation levels: what each one equates, each coarser than the one before (on random
Unicode text, against a plain-Python reference), document cleaning changes only what ``exact``
ignores, and the ASCII byte table equals the polars path."""

from __future__ import annotations

import random
import re
import unicodedata

import numpy as np
import polars as pl
import pytest

from corpus.stages.dedup_text import doc_shingles, shingle_batch
from corpus.stages.normalise import (
    CHARACTER_RANGES,
    LEVELS,
    Normalisation,
    clean_document,
    nfc_unstable_points,
    unicode_form,
)

# Characters where the steps could interact: whitespace of every kind, combining marks, compatibility
# forms that NFKC turns into spaces, letters or digits, case pairs with odd mappings, digits of other
# scripts, punctuation and symbols, control characters that are not whitespace.
ALPHABET = list("aAbBzZ09 ,.!?-'\"$%()") + [
    "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\u00a0", "\u1680", "\u2000", "\u2009", "\u2028",
    "\u3000", "\u0301", "\u0308", "\u00a8", "\u00b4", "e\u0301", "\u00e9", "\u212b", "\u00c5", "\ufb01", "\uff21",
    "\uff10", "\u2460", "\u00b2", "\u2126", "\u212a", "\u0130", "\u01c5", "\u1e9e", "\u00df", "\u216b", "\u210c",
    "\u0663", "\u0967", "\u00bd", "\u2014", "\u20ac", "\u00a9", "\u2122", "\u3002", "\u4e2d", "\u0394", "\u03c3",
    "\u03a3", "\u0649", "\ufdfa", "\u3300",
]


# Unicode White_Space (what \s means in polars' regexes); str.isspace would add \x1c-\x1f
WHITE_SPACE = set("\t\n\x0b\x0c\r \x85\u00a0\u1680\u2028\u2029\u202f\u205f\u3000")
WHITE_SPACE |= {chr(c) for c in range(0x2000, 0x200B)}


def random_texts(n: int, seed: int = 0, max_len: int = 12) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(ALPHABET, k=rng.randint(0, max_len))) for _ in range(n)]


def reference(text: str, level: str) -> str:
    """The levels in plain Python (re with Unicode classes spelled out), independent of polars."""
    if level == "none":
        return text
    text = unicodedata.normalize("NFKC" if level == "fuzzy" else "NFC", text)
    if level in ("loose", "fuzzy"):
        text = text.lower().replace("\u03c2", "\u03c3")
    if level == "fuzzy":
        text = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text)
        text = re.sub(r"\d+", "0", text)  # str patterns: \d is Unicode Nd
    text = "".join(" " if c in WHITE_SPACE else c for c in text)
    return re.sub(" +", " ", text).strip(" ")


@pytest.mark.parametrize("level", LEVELS)
def test_each_level_equals_a_plain_reference(level):
    texts = random_texts(3000, seed=1)
    got = Normalisation(level).apply(pl.Series(texts)).to_list()
    assert got == [reference(t, level) for t in texts]


def test_levels_are_nested():
    """A coarser level is a function of a finer one's output: texts equal at one level are equal at
    every later one (so tokenize's grouping at fuzzy never splits what exact dedup equates)."""
    texts = pl.Series(random_texts(5000, seed=2))
    out = {lv: Normalisation(lv).apply(texts) for lv in LEVELS}
    for i, fine in enumerate(LEVELS):
        for coarse in LEVELS[i + 1 :]:
            again = Normalisation(coarse).apply(out[fine])
            assert again.to_list() == out[coarse].to_list(), (fine, coarse)
    # and each is idempotent
    for lv in LEVELS:
        assert Normalisation(lv).apply(out[lv]).to_list() == out[lv].to_list()


def test_what_each_level_equates():
    pairs = {
        "exact": [("a  b\n", "a b"), ("e\u0301", "\u00e9"), ("x\u00a0y", "x y")],
        "loose": [("Hello World", "hello world"), ("\u0130", "i\u0307")],
        "fuzzy": [("Hello, world! 2024", "hello world 1999"), ("\uff21\uff22\uff23 \ufb01ne", "abc fine"),
                  ("\u2460", "7")],
    }
    for i, level in enumerate(LEVELS[1:], 1):
        norm = Normalisation(level)
        for lv, examples in pairs.items():
            for a, b in examples:
                same = norm.apply(pl.Series([a])).item() == norm.apply(pl.Series([b])).item()
                assert same == (LEVELS.index(lv) <= i), (level, a, b)
    assert Normalisation("none").apply(pl.Series(["a  b", None])).to_list() == ["a  b", ""]
    with pytest.raises(ValueError, match="one of none, exact, loose, fuzzy"):
        Normalisation("lower")  # type: ignore[arg-type]


def test_clean_document_changes_only_what_exact_ignores():
    texts = random_texts(3000, seed=3, max_len=20)
    series = pl.Series(texts)
    cleaned = clean_document(series, nfc=True, max_blank_lines=1)
    exact = Normalisation("exact")
    assert exact.apply(cleaned).to_list() == exact.apply(series).to_list()
    assert series.to_list() == texts  # the caller's Series is left as it was
    doc = "Caf\u0065\u0301  \r\nline two \t\r\n\n\n\nlast\n"
    assert clean_document(pl.Series([doc])).item() == "Caf\u00e9\nline two\n\nlast"
    assert clean_document(pl.Series([doc]), nfc=False, max_blank_lines=0).item() == "Cafe\u0301\nline two\nlast"


@pytest.mark.parametrize("level", ["exact", "loose", "fuzzy"])
def test_ascii_fast_path_equals_the_polars_path(level):
    rng = random.Random(4)
    ascii_alphabet = [chr(c) for c in range(32, 127)] + ["\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "00", "  "]
    texts = ["".join(rng.choices(ascii_alphabet, k=rng.randint(0, 60))) for _ in range(2000)]
    texts += ["abc d\u00e9f 12,5 x", "1 2 3", "", "0"]  # mixed: some rows take each path
    norm = Normalisation(level)
    fast = doc_shingles(pl.Series(texts), norm, 3)
    slow = shingle_batch(norm.apply(pl.Series(texts)), 3)
    assert np.array_equal(fast.offsets, slow.offsets) and np.array_equal(fast.hashes, slow.hashes)


def test_split_grouping_is_at_least_as_coarse_as_every_dedup_level():
    """Tokenize groups documents by their text at the coarsest level, so no copy exact dedup would
    find (at any level) lands in another split than its original."""
    from corpus.stages.tokenize import group_keys

    texts = random_texts(4000, seed=5, max_len=8)
    keys = group_keys(texts)
    for level in LEVELS:
        normal = Normalisation(level).apply(pl.Series(texts)).to_list()
        first: dict[str, bytes] = {}
        for n, k in zip(normal, keys, strict=True):
            assert first.setdefault(n, k) == k, level
    assert group_keys(["Hello, world! 2024", "hello world 1999", "other"])[:2] == group_keys(["hello world 0"] * 2)
    assert len(set(group_keys(["a b", "a c", "ab"]))) == 3


def test_nfc_skips_only_texts_already_in_nfc():
    """unicode_form sends to unicodedata only texts holding an nfc_unstable_points character; on texts
    made of the characters that take part in composition (both halves of every canonical pair,
    combining marks, Hangul jamo and syllables) mixed with others, it equals unicodedata's NFC."""
    pairs = [unicodedata.decomposition(chr(c)).split() for c in range(0x110000)]
    parts = {int(x, 16) for p in pairs if p and not p[0].startswith("<") for x in p}
    parts |= {c for c in range(0x110000) if unicodedata.combining(chr(c))} | set(range(0x1100, 0x1200))
    pool = [chr(c) for c in sorted(parts)] + [chr(c) for c in range(0xAC00, 0xAC60)] + list("aé東 ")
    rng = random.Random(3)
    texts = ["".join(rng.choice(pool) for _ in range(rng.randint(1, 4))) for _ in range(100_000)]
    texts += ["".join(chr(rng.randrange(0x3000)) for _ in range(3)) for _ in range(20_000)]
    assert unicode_form(pl.Series(texts), "NFC").to_list() == [unicodedata.normalize("NFC", t) for t in texts]
    stable = np.setdiff1d(np.arange(0x3000), nfc_unstable_points())
    assert all(unicodedata.is_normalized("NFC", chr(c)) for c in stable)
    # nfc_unstable_points looks only at CHARACTER_RANGES: nothing outside them composes or decomposes.
    outside = np.setdiff1d(np.arange(0x110000), np.concatenate([np.arange(r.start, r.stop) for r in CHARACTER_RANGES]))
    assert len(outside) > 800_000
    assert not any(unicodedata.combining(chr(c)) or unicodedata.decomposition(chr(c)) for c in outside.tolist())
