"""Text normalisation: one definition, in named levels, for every step that compares texts (exact,
line and near dedup, the tokenize split grouping) and for the document cleaning of ``normalize_text``.

Levels, each coarser than the one before it (texts equal at one level are equal at every later one,
which tests check on random Unicode text):

* ``none``: the text as it is.
* ``exact``: Unicode NFC (canonically equivalent texts are the same text); every whitespace run one
  space, the ends stripped.
* ``loose``: ``exact``, lowercased (final sigma as sigma).
* ``fuzzy``: ``loose`` with Unicode NFKC (full-width forms, ligatures, compatibility characters),
  punctuation and symbols as spaces and every run of digits as "0" (dates, counters, prices).

Document cleaning (``clean_document``, the ``normalize_text`` operator) is not a level: it rewrites
the stored text and keeps its lines (NFC, line endings, trailing spaces, runs of blank lines). It
changes only what ``exact`` ignores, so ``exact`` of a cleaned text equals ``exact`` of the raw one:
exact dedup finds the same copies with or without cleaning first.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np
import polars as pl

Level = Literal["none", "exact", "loose", "fuzzy"]
LEVELS: tuple[str, ...] = ("none", "exact", "loose", "fuzzy")

_PUNCT = r"[\p{P}\p{S}]+"
_DIGITS = r"\p{Nd}+"
# Only runs and non-space whitespace: replacing every single space is 5x slower.
_SPACES = r"\s{2,}|[^\S ]"
_ASCII_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"  # every one is in Unicode's P or S categories
_ASCII_SPACES = (9, 10, 11, 12, 13)  # the ASCII characters of \s besides the space


# The code points that can hold a character with properties: planes 4-13 and 15-16 hold only unassigned
# and private-use code points (no decomposition, no combining class, category C), so lookups skip them.
CHARACTER_RANGES = (range(0xD800), range(0xE000, 0x40000), range(0xE0000, 0xE1000))


@cache
def nfc_unstable_points() -> np.ndarray:
    """The code points that can make a text not in NFC (sorted): those NFC changes on their own,
    combining marks (canonical class not 0), and those that can compose with the character before them
    (the second of a canonical pair; Hangul jamo). A text without any is in NFC already (Unicode's NFC
    quick check, UAX #15): most non-ASCII text is. From this Python's ``unicodedata`` (0.025 s, once
    per process: only CHARACTER_RANGES are looked at)."""
    flagged = set(range(0x1100, 0x1200))  # Hangul jamo: composed algorithmically, not by decomposition()
    for c in (c for r in CHARACTER_RANGES for c in r):
        ch = chr(c)
        if unicodedata.combining(ch):
            flagged.add(c)
            continue
        d = unicodedata.decomposition(ch)
        if d and not d.startswith("<"):  # canonical
            parts = d.split()
            if len(parts) == 2:
                flagged.add(int(parts[1], 16))
            if unicodedata.normalize("NFC", ch) != ch:
                flagged.add(c)
    return np.array(sorted(flagged), np.int64)


@cache
def nfc_unstable() -> str:
    """nfc_unstable_points as a regex class: finding them is far cheaper than a Python string per row."""
    cps = nfc_unstable_points()
    starts = np.flatnonzero(np.diff(cps, prepend=-2) != 1)
    ends = np.append(starts[1:], len(cps)) - 1
    return "[" + "".join(f"\\x{{{cps[a]:x}}}-\\x{{{cps[b]:x}}}" for a, b in zip(starts, ends, strict=True)) + "]"


def unicode_form(s: pl.Series, form: str) -> pl.Series:
    """``s`` in Unicode normal form ``form``. Every form is the identity on ASCII, so only rows with
    other characters are normalised, by Python's ``unicodedata`` (which checks first whether a text is
    normalised already: about 20x polars' ``str.normalize`` on typical text); for NFC, only rows with a
    character of ``nfc_unstable`` (the others are in NFC already)."""
    wide = s.str.len_bytes() != s.str.len_chars()
    if not wide.any():
        return s
    if form == "NFC":
        wide = wide & s.str.contains(nfc_unstable())
        if not wide.any():
            return s
    rows, fixed = [], []
    for i, x in zip(wide.arg_true().to_list(), s.filter(wide).to_list(), strict=True):
        y = unicodedata.normalize(form, x)
        if y is not x:  # the very same object when x was normalised already
            rows.append(i)
            fixed.append(y)
    if not rows:
        return s
    # scatter writes into the Series it is called on: a clone, so the caller's stays as it was
    return s.clone().scatter(rows, pl.Series(fixed, dtype=pl.String))


@dataclass(frozen=True)
class Normalisation:
    """A normalisation level (see the module docstring)."""

    level: Level = "exact"

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"normalisation level must be one of {', '.join(LEVELS)}, got {self.level!r}")

    @property
    def rank(self) -> int:
        """0 for none ... 3 for fuzzy: a higher rank is coarser."""
        return LEVELS.index(self.level)

    @property
    def lowercase(self) -> bool:
        return self.rank >= 2

    @property
    def fuzzy(self) -> bool:
        return self.level == "fuzzy"

    def apply(self, s: pl.Series) -> pl.Series:
        """The normalised texts (nulls become "")."""
        s = s.cast(pl.String).fill_null("")
        if self.level == "none":
            return s
        s = unicode_form(s, "NFKC" if self.fuzzy else "NFC")
        if self.lowercase:
            # Final sigma is the one lowercase mapping that depends on what follows (a space that NFKC
            # or a removed punctuation mark makes); as one letter, lowercase is the same at every level.
            s = s.str.to_lowercase()
            if s.str.contains("\u03c2", literal=True).any():  # finding is 7x cheaper than replacing
                s = s.str.replace_all("\u03c2", "\u03c3", literal=True)
        if self.fuzzy:
            s = s.str.replace_all(_PUNCT, " ").str.replace_all(_DIGITS, "0")
        return s.str.replace_all(_SPACES, " ").str.strip_chars(" ")

    def ascii_table(self) -> np.ndarray:
        """A byte map that does this level on pure-ASCII text, except that whitespace runs stay runs
        and digit runs stay runs of "0" (the MinHash fast path splits words on spaces and collapses
        the zeros itself). Unicode forms are the identity on ASCII. Not for ``none``."""
        if self.level == "none":
            raise ValueError("level 'none' keeps whitespace: it has no ASCII word table")
        lut = np.arange(256, dtype=np.uint8)
        if self.lowercase:
            lut[65:91] += 32
        if self.fuzzy:
            lut[[ord(c) for c in _ASCII_PUNCT]] = 32
            lut[48:58] = 48
        lut[list(_ASCII_SPACES)] = 32
        return lut


# Spaces other than U+0020 (no-break, en/em and the other typographic spaces, ideographic space).
UNICODE_SPACES = r"[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]"


def clean_document(s: pl.Series, nfc: bool = True, max_blank_lines: int = 1, unicode_spaces: bool = False) -> pl.Series:
    """A document's text cleaned in place, its lines kept: NFC (optional), line endings (CR, CRLF, VT, FF,
    NEL, U+2028/9) as "\n", other spaces as " " (optional), no spaces or tabs before a line end, at most
    ``max_blank_lines`` blank lines in a row, ends stripped. Everything it changes is whitespace or
    NFC, which every dedup level ignores."""
    if nfc:
        s = unicode_form(s, "NFC")
    s = s.str.replace_all(r"\r\n?|[\x0b\x0c\u2028\u2029\x85]", "\n")
    if unicode_spaces:
        s = s.str.replace_all(UNICODE_SPACES, " ")
    s = s.str.replace_all(r"[ \t]+\n", "\n")
    s = s.str.replace_all(r"\n{" + str(max_blank_lines + 2) + r",}", "\n" * (max_blank_lines + 1))
    return s.str.strip_chars()
