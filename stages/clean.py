"""Cleaning operators: text in, text out, same rows."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

import polars as pl

from corpus.operators import MapOperator, StageView

# C0 and C1 control characters (tab, line feed, vertical tab, form feed and carriage return are
# whitespace, handled below), DEL, zero-width space, word joiner, a byte order mark inside the text,
# and the noncharacters U+FFFE/U+FFFF.
CONTROL = r"[\x00-\x08\x0e-\x1f\x7f-\x9f\u200b\u2060\ufeff\ufffe\uffff]"
# Spaces other than U+0020 (no-break, en/em and the other typographic spaces, ideographic space).
UNICODE_SPACES = r"[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]"


@cache
def mojibake_pattern() -> str:
    """ftfy's own mojibake detector (``ftfy.badness.BADNESS_RE``, the test ftfy applies before it tries
    any repair) rewritten for polars' regex engine, so the rows worth handing to ftfy are found in one
    vectorised pass. Python's verbose syntax is compacted; ``\\w`` and ``\\s`` are widened to what
    Python's match (digits of every kind, the ASCII separators): the result matches wherever ftfy's
    does (tests/test_clean.py checks this against ``is_bad``), so skipping the other rows changes nothing."""
    from ftfy.badness import BADNESS_RE

    lines = [ln for ln in BADNESS_RE.pattern.split("\n") if not ln.strip().startswith("#")]
    src, out, in_class, i = "\n".join(lines), [], False, 0
    while i < len(src):
        c = src[i]
        if c == "\\":
            out.append(src[i:i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
            out.append("\\" + c if c in "&~[" else c)  # set operators and nesting in Rust classes
        elif c == "[":
            in_class = True
            out.append(c)
            if src[i + 1] == "^":
                out.append("^")
                i += 1
        elif c not in " \n\t":  # verbose mode: whitespace outside classes is layout
            out.append(c)
        i += 1
    return "".join(out).replace(r"\w", r"[\w\p{N}]").replace(r"\s", r"[\s\x1c-\x1f]")


@cache
def _ftfy_config():
    from ftfy import TextFixerConfig

    # Encoding repair only: quotes, widths, ligatures and HTML entities are left as written, and
    # Unicode normalisation and control characters are this operator's own steps.
    return TextFixerConfig(unescape_html=False, remove_terminal_escapes=False, fix_latin_ligatures=False,
                           fix_character_width=False, uncurl_quotes=False, fix_line_breaks=False,
                           fix_surrogates=False, remove_control_chars=False, normalization=None, explain=False)


def fix_mojibake(text: pl.Series) -> pl.Series:
    """ftfy's encoding repair, run only on the rows its own detector flags (the others it returns as is)."""
    from ftfy import fix_text

    rows = text.str.contains(mojibake_pattern()).fill_null(False).arg_true()
    if rows.len() == 0:
        return text
    config = _ftfy_config()
    fixed = pl.Series([fix_text(t, config) for t in text.gather(rows)], dtype=pl.String)
    return text.clone().scatter(rows, fixed)  # scatter works in place


def _normalise_form(text: pl.Series, form: str) -> pl.Series:
    # Both forms leave ASCII unchanged: normalise only the rows with other characters.
    rows = text.str.contains(r"[^\x00-\x7F]").fill_null(False).arg_true()
    if rows.len() == 0:
        return text
    return text.clone().scatter(rows, text.gather(rows).str.normalize(form))


@dataclass
class NormalizeText(MapOperator):
    """Text hygiene: mojibake repair (ftfy), control characters, NFC/NFKC, whitespace; counts per kind.

    In this order: repair mojibake (ftfy, on the rows that need it), remove control characters,
    Unicode normalisation (NFC or NFKC), whitespace (line endings, other spaces, trailing spaces, runs
    of blank lines, the ends). Counts: documents changed by each step, and control characters removed."""

    name = "normalize_text"
    needs = {"text": pl.String}
    modifies = ("text",)
    adds = {"mojibake_fixed": pl.Int64, "control_chars_removed": pl.Int64, "unicode_normalised": pl.Int64,
            "whitespace_fixed": pl.Int64}
    counters = ("mojibake_fixed", "control_chars_removed", "unicode_normalised", "whitespace_fixed")
    version = "2"  # 2: mojibake, control characters, NFKC, other spaces, counters

    form: Literal["NFC", "NFKC", "none"] = "NFC"
    fix_encoding: bool = True  # repair mojibake with ftfy (the `clean` extra)
    remove_control: bool = True
    unicode_spaces: bool = True  # no-break and typographic spaces become plain spaces
    max_blank_lines: int = 1

    def __post_init__(self) -> None:
        if self.max_blank_lines < 0:
            raise ValueError("max_blank_lines must be >= 0")
        if self.form not in ("NFC", "NFKC", "none"):
            raise ValueError(f"form must be NFC, NFKC or none, got {self.form!r}")
        if self.fix_encoding:
            try:
                import ftfy  # noqa: F401
            except ImportError:
                raise ValueError("fix_encoding needs ftfy: pip install 'corpusforge[clean]' "
                                 "(or set fix_encoding: false)") from None

    def map(self, df: pl.DataFrame) -> pl.DataFrame:
        text = df["text"]
        counts = {}
        fixed = fix_mojibake(text) if self.fix_encoding else text
        counts["mojibake_fixed"] = fixed != text
        text = fixed
        if self.remove_control:
            counts["control_chars_removed"] = text.str.count_matches(CONTROL)
            text = text.str.replace_all(CONTROL, "")
        else:
            counts["control_chars_removed"] = pl.Series([0] * text.len())
        fixed = _normalise_form(text, self.form) if self.form != "none" else text
        counts["unicode_normalised"] = fixed != text
        text, fixed = fixed, self._whitespace(fixed)
        counts["whitespace_fixed"] = fixed != text
        return df.with_columns(fixed.alias("text"), *(s.fill_null(False).cast(pl.Int64).alias(name)
                                                      for name, s in counts.items()))

    def _whitespace(self, text: pl.Series) -> pl.Series:
        t = pl.lit(text).str.replace_all(r"\r\n?|[\x0b\x0c\u2028\u2029\x85]", "\n")
        if self.unicode_spaces:
            t = t.str.replace_all(UNICODE_SPACES, " ")
        t = t.str.replace_all(r"[ \t]+\n", "\n")
        t = t.str.replace_all(r"\n{" + str(self.max_blank_lines + 2) + r",}", "\n" * (self.max_blank_lines + 1))
        return pl.select(t.str.strip_chars()).to_series()

    report_title = "Text hygiene"
    report_order = 62

    @classmethod
    def report(cls, stages: list[StageView]) -> object:
        from corpus.stages.clean_report import counters_section

        return counters_section(stages, {"mojibake_fixed": "mojibake repaired (docs)",
                                         "control_chars_removed": "control characters removed",
                                         "unicode_normalised": "Unicode normalised (docs)",
                                         "whitespace_fixed": "whitespace fixed (docs)"}, "count")
