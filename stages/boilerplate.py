"""Boilerplate lines: the ones a source repeats in many documents (navigation, footers, cookie banners),
found in the corpus itself by the line-dedup machinery; and C4's line rules.

``boilerplate_lines`` is ``line_dedup`` counting documents within each source and removing every
occurrence (``scope: source``, ``keep: none``), with counters of its own.

``c4_lines`` applies the line rules of C4 (Raffel et al. 2020; TFDS ``c4_utils.clean_page``, datatrove's
``C4QualityFilter``), exactly as they define them, to each line stripped of surrounding whitespace and
with its citation markers removed, in their order:

1. citation markers ``[1]``, ``[]``, ``[edit]``, ``[citation needed]`` are removed (``remove_citations``);
2. (``terminal_punct``, off by default as in FineWeb) a line not ending in ``. ? ! " '``, or ending in
   ``...``, is removed;
3. (``min_words_per_line``, 0 by default; C4 uses 3) a line of fewer words is removed;
4. a line containing "lorem ipsum" (any case) marks the document: C4 drops such a page whole, which a
   map cannot do, so ``c4_lines_filter`` drops it (reason ``lorem_ipsum``);
5. a line containing "javascript" (any case) is removed;
6. a line containing a policy phrase (``POLICY``, any case) is removed.

Kept lines keep their own whitespace; only citation markers are cut out of them. C4's other rules
(a word over 1000 characters, a ``{``, fewer than 5 sentences) judge whole documents: quality filters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl

from corpus.operators import FilterOperator, MapOperator, StageView, Verdict
from corpus.stages.dedup_lines import LineDedup, split_spans

CITATION = r"\[\d*\]|\[edit\]|\[citation needed\]"
POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
END_PUNCTUATION = (".", "?", "!", '"', "'")
ELLIPSIS = "..."
LOREM = "lorem ipsum"
JAVASCRIPT = "javascript"
# A superset of the lines any rule touches (case-insensitive matching folds at least what lowercasing
# does): the other documents are not split at all when the per-line rules 2 and 3 are off.
_PHRASES = "(?i)" + "|".join([LOREM, JAVASCRIPT, *POLICY])
_ANY_RULE = f"{_PHRASES}|{CITATION}"

C4_COUNTERS = {"c4_citations_removed": "citation markers removed", "c4_no_punct_lines": "lines without end punctuation",
               "c4_short_lines": "short lines", "c4_javascript_lines": "javascript lines",
               "c4_policy_lines": "policy and cookie lines",
               "c4_lorem_ipsum_lines": "lorem ipsum lines (kept: c4_lines_filter drops their page)"}


@dataclass
class C4Lines(MapOperator):
    """C4's line rules: drop javascript and policy/cookie lines, strip citation markers, flag lorem ipsum.

    Optionally (as C4 itself) lines without end punctuation or with too few words; counts per rule."""

    name = "c4_lines"
    needs = {"text": pl.String}
    modifies = ("text",)
    adds = dict.fromkeys(C4_COUNTERS, pl.Int64)
    counters = tuple(C4_COUNTERS)

    remove_citations: bool = True
    javascript: bool = True
    policy: bool = True
    terminal_punct: bool = False  # C4: true; FineWeb turns it off
    min_words_per_line: int = 0  # C4: 3

    def __post_init__(self) -> None:
        if self.min_words_per_line < 0:
            raise ValueError("min_words_per_line must be >= 0")

    def map(self, df: pl.DataFrame) -> pl.DataFrame:
        text = df["text"].fill_null("")
        zeros = [pl.lit(0, pl.Int64).alias(c) for c in C4_COUNTERS]
        if self.terminal_punct or self.min_words_per_line:
            rows = pl.int_range(0, df.height, dtype=pl.UInt32, eager=True)
        else:
            rows = text.str.contains(_ANY_RULE).arg_true()
        if rows.len() == 0:
            return df.with_columns(zeros)
        lines = split_spans(text.gather(rows), "line")
        per_row = self._judge(lines).group_by("row", maintain_order=True).agg(
            pl.col("out").filter(pl.col("keep")).str.join("\n").alias("text"),
            *(pl.col(c).sum().cast(pl.Int64) for c in C4_COUNTERS)).sort("row")
        out = df.with_columns(zeros)
        cols = ["text", *C4_COUNTERS]
        return out.with_columns(*(out[c].clone().scatter(rows, per_row[c]) for c in cols))

    def _judge(self, lines: pl.DataFrame) -> pl.DataFrame:
        """Per line: the line to write (``out``), whether it stays, and which rule removed it."""
        span = lines["span"]
        out = span.str.replace_all(CITATION, "") if self.remove_citations else span
        cites = span.str.count_matches(CITATION) if self.remove_citations else pl.Series([0] * span.len())
        no = pl.Series([False] * span.len())
        no_punct, short = no, no
        if self.terminal_punct or self.min_words_per_line:  # rules 2 and 3 judge every line
            line = out.str.strip_chars()
            if self.terminal_punct:
                ends = pl.select(pl.any_horizontal(pl.lit(line).str.ends_with(p) for p in END_PUNCTUATION)).to_series()
                no_punct = ~ends | line.str.ends_with(ELLIPSIS)
            if self.min_words_per_line:
                short = line.str.count_matches(r"\S+") < self.min_words_per_line
        # Rules 4-6 look for phrases: lower-case (as C4 does) only the lines that may hold one.
        maybe = out.str.contains(_PHRASES).arg_true()
        lower = out.gather(maybe).str.to_lowercase()

        def phrase(found: pl.Series) -> pl.Series:
            return no.clone().scatter(maybe, found)  # scatter works in place

        rules = [  # in C4's order: the first rule that applies to a line counts it
            ("c4_no_punct_lines", no_punct),
            ("c4_short_lines", short),
            ("c4_lorem_ipsum_lines", phrase(lower.str.contains(LOREM, literal=True))),
            ("c4_javascript_lines", phrase(lower.str.contains(JAVASCRIPT, literal=True)) if self.javascript else no),
            ("c4_policy_lines", phrase(lower.str.contains_any(list(POLICY))) if self.policy else no),
        ]
        earlier, flags = no, {}
        for name, hit in rules:
            flags[name] = (hit & ~earlier).cast(pl.Int64)
            earlier = earlier | hit
        removed = earlier & ~(flags["c4_lorem_ipsum_lines"] > 0)  # a lorem ipsum line stays: the filter drops its page
        return lines.with_columns(out.alias("out"), cites.cast(pl.Int64).alias("c4_citations_removed"),
                                  *(v.alias(k) for k, v in flags.items()), (~removed).alias("keep"))

    report_title = "C4 line rules"
    report_order = 63

    @classmethod
    def report(cls, stages: list[StageView]) -> object:
        from corpus.stages.clean_report import counters_section

        return counters_section(stages, C4_COUNTERS, "removed")


@dataclass
class C4LinesFilter(FilterOperator):
    """Drop documents c4_lines flagged with lorem ipsum (as C4 does) or left without text.

    Reasons ``lorem_ipsum`` and ``no_lines_left``."""

    name = "c4_lines_filter"
    needs = {"text": pl.String, "c4_lorem_ipsum_lines": pl.Int64}

    lorem_ipsum: bool = True
    drop_empty: bool = True

    def filter(self, df: pl.DataFrame) -> Verdict:
        lorem = (df["c4_lorem_ipsum_lines"] > 0) & self.lorem_ipsum
        empty = (df["text"].str.strip_chars().str.len_chars() == 0) & self.drop_empty
        reason = pl.select(pl.when(lorem).then(pl.lit("lorem_ipsum")).when(empty).then(pl.lit("no_lines_left"))
                           .otherwise(pl.lit(None, pl.String))).to_series()
        return Verdict(keep=reason.is_null(), reason=reason)


BOILERPLATE_COUNTERS = {"boilerplate_lines_removed": "lines removed", "boilerplate_chars_removed": "characters removed"}


@dataclass
class BoilerplateLines(LineDedup):
    """Remove lines that many documents of one source repeat (navigation, footers) from all of them.

    A line is boilerplate when ``min_docs`` or more documents of its source contain it: ``line_dedup``
    with ``scope: source`` and ``keep: none``."""

    name = "boilerplate_lines"
    adds = dict.fromkeys(BOILERPLATE_COUNTERS, pl.Int64)
    counters = tuple(BOILERPLATE_COUNTERS)
    version = "1"

    min_docs: int = 10
    keep: Literal["first", "none"] = "none"
    scope: Literal["corpus", "source"] = "source"

    def map(self, df: pl.DataFrame) -> pl.DataFrame:
        # line_dedup's own columns, if an earlier line_dedup stage added them, stay as they were
        earlier = [c for c in ("dup_spans_removed", "dup_chars_removed") if c in df.columns]
        out = super().map(df.drop(earlier)).rename({"dup_spans_removed": "boilerplate_lines_removed",
                                                    "dup_chars_removed": "boilerplate_chars_removed"})
        return out.with_columns(df.select(earlier)) if earlier else out

    report_title = "Boilerplate lines"
    report_order = 64

    @classmethod
    def report(cls, stages: list[StageView]) -> object:
        from corpus.stages.clean_report import counters_section

        return counters_section(stages, BOILERPLATE_COUNTERS, "removed")
