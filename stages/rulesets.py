"""Published heuristic rule sets as versioned presets: Gopher quality, Gopher repetition, C4 (document
and line modes), mC4's paragraph rule and FineWeb, each a filter over the ``quality_signals`` columns.

The thresholds are the published ones as datatrove's filters apply them (``src/datatrove/pipeline/
filters/``; Rae et al. 2021 Table A1; Raffel et al. 2020; Penedo et al. 2024), with datatrove's
comparisons: a document is dropped when a value passes a bound strictly (``mean_word_length > 10``),
so a value equal to a bound is kept; FineWeb's punctuation share is dropped below 0.12. Rules run in
datatrove's order, so the first failing one names the same rule datatrove's reason would.

Every rule can be changed or switched off on its own:

    - op: gopher_quality_filter
      rules_version: "1"                 # the preset's version (thresholds never change within one)
      rules:
        mean_word_length: {max: 12}      # any of min, max, min_exclusive, max_exclusive, in, not_in, on_null
        stop_words: {enabled: false}

``c4_filter`` has two modes: ``document`` thresholds the signal columns and leaves the text alone;
``line`` is datatrove's C4QualityFilter: it applies C4's line rules itself, drops by the same document
rules and rewrites each kept document to its kept lines (recomputing the c4 columns for that text).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar, Literal

import polars as pl

from corpus.operators import Columns, FilterOperator, Operator, Verdict
from corpus.registry import suggest
from corpus.schema import TEXT
from corpus.stages.rules import (
    RULE_VALUE,
    Rule,
    RuleReport,
    evaluate,
    rule_enabled,
    rule_from_mapping,
    type_problems,
)
from corpus.stages.signals import GROUPS, PY_WS, Batch, c4_line_rules

SIGNAL_TYPES = {c: t for g in GROUPS.values() for c, t in g.items()}


def _max(name: str, column: str, bound: float) -> Rule:
    return Rule(name, column, max=bound)


PRESETS: dict[str, dict[str, list[Rule]]] = {
    # datatrove GopherQualityFilter defaults
    "gopher_quality": {"1": [
        Rule("words", "gopher_words", min=50, max=100_000),
        Rule("mean_word_length", "gopher_mean_word_length", min=3, max=10),
        _max("hash_ratio", "gopher_hash_ratio", 0.1),
        _max("ellipsis_ratio", "gopher_ellipsis_ratio", 0.1),
        _max("bullet_lines", "gopher_bullet_lines", 0.9),
        _max("ellipsis_lines", "gopher_ellipsis_lines", 0.3),
        Rule("alpha_words", "gopher_alpha_words", min=0.8),
        Rule("stop_words", "gopher_stop_words", min=2),
    ]},
    # datatrove GopherRepetitionFilter defaults
    "gopher_repetition": {"1": [
        _max("dup_para_frac", "gopher_dup_para_frac", 0.3),
        _max("dup_para_char_frac", "gopher_dup_para_char_frac", 0.2),
        _max("dup_line_frac", "gopher_dup_line_frac", 0.3),
        _max("dup_line_char_frac", "gopher_dup_line_char_frac", 0.2),
        *(_max(f"top_{n}gram_frac", f"gopher_top_{n}gram_frac", t) for n, t in ((2, 0.2), (3, 0.18), (4, 0.16))),
        *(_max(f"dup_{n}gram_frac", f"gopher_dup_{n}gram_frac", t)
          for n, t in ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))),
    ]},
    # datatrove C4QualityFilter's whole-document verdicts (its line rules are in the signals)
    "c4": {"1": [
        Rule("lorem_ipsum", "c4_lorem_ipsum", isin=(False,)),
        Rule("curly_bracket", "c4_curly_bracket", isin=(False,)),
        Rule("sentences", "c4_sentences", min=5),
    ]},
    # datatrove C4ParagraphFilter (mC4): at least 3 lines, the 3 longest at least 200 characters
    "c4_paragraph": {"1": [
        Rule("lines", "n_lines", min=3),
        Rule("third_longest_line", "c4_third_longest_line", min=200),
    ]},
    # datatrove FineWebQualityFilter defaults; no non-blank line at all is its "empty"
    "fineweb": {"1": [
        Rule("line_punct_frac", "fineweb_line_punct_frac", min=0.12, on_null="drop"),
        _max("short_line_frac", "fineweb_short_line_frac", 0.67),
        _max("dup_line_char_frac", "fineweb_dup_line_char_frac", 0.01),
        _max("newline_word_ratio", "fineweb_newline_word_ratio", 0.3),
    ]},
}


def preset_rules(preset: str, version: str, overrides: dict[str, dict], where: str) -> list[Rule]:
    """The preset's rules with the overrides applied (``enabled: false`` removes a rule)."""
    versions = PRESETS[preset]
    if version not in versions:
        raise ValueError(f"{where}: rules_version {version!r} of {preset}: known {sorted(versions)}")
    rules = {r.name: r for r in versions[version]}
    for name, spec in overrides.items():
        if name not in rules:
            raise ValueError(f"{where}: rules.{name}: no such rule in {preset}{suggest(name, rules)}; "
                             f"rules: {', '.join(rules)}")
        if not isinstance(spec, dict):
            raise ValueError(f"{where}: rules.{name}: a mapping of min/max/... or enabled, got {spec!r}")
        if not rule_enabled(spec, f"{where}: rules.{name}"):
            del rules[name]
            continue
        base = rules[name]
        merged = {"column": base.column, "min": base.min, "max": base.max, "min_exclusive": base.min_exclusive,
                  "max_exclusive": base.max_exclusive, "in": list(base.isin), "not_in": list(base.not_in),
                  "on_null": base.on_null} | {k: v for k, v in spec.items() if k != "enabled"}
        if merged["column"] != base.column:
            raise ValueError(f"{where}: rules.{name}: a preset rule's column is fixed ({base.column})")
        rules[name] = rule_from_mapping(name, merged, f"{where}: rules.{name}")
    return list(rules.values())


@dataclass
class RuleSetFilter(RuleReport, FilterOperator):
    """Base of the preset filters: ``PRESET`` names the rule set; reasons are ``<preset>:<rule><bound>``."""

    PRESET: ClassVar[str] = ""
    needs = {}  # columns(): the enabled rules' signal columns
    adds = {RULE_VALUE: pl.Float64}

    rules_version: str = "1"  # the preset's version: its published thresholds never change within one
    rules: dict[str, dict] = field(default_factory=dict)  # per rule: new bounds, or {enabled: false}

    def __post_init__(self) -> None:
        self._rules = preset_rules(self.PRESET, self.rules_version, self.rules, self.name)

    def active_rules(self) -> list[Rule]:
        return list(self._rules)

    def prefix(self) -> str:
        return self.PRESET

    def columns(self) -> tuple[Columns, Columns, tuple[str, ...]]:
        return {r.column: SIGNAL_TYPES.get(r.column) for r in self._rules}, dict(self.adds), ()

    def column_problems(self, have: Columns, earlier: Sequence[Operator] = ()) -> list[str]:
        return type_problems(list(self._rules), have)

    def filter(self, df: pl.DataFrame) -> Verdict:
        return evaluate(df, self.PRESET, list(self._rules))



@dataclass
class GopherQualityFilter(RuleSetFilter):
    """Gopher's quality rules (Rae et al. 2021; datatrove GopherQualityFilter): 50..100,000 words,
    mean word length 3..10, '#' and ellipses per word <= 0.1, bullet lines <= 0.9, ellipsis lines
    <= 0.3, alphabetic words >= 0.8, at least 2 distinct stop words. Needs quality_signals."""

    name = "gopher_quality_filter"
    PRESET = "gopher_quality"
    report_title = "Gopher quality rules"


@dataclass
class GopherRepetitionFilter(RuleSetFilter):
    """Gopher's repetition rules (datatrove GopherRepetitionFilter): duplicate paragraphs and lines
    (<= 0.3 of them, <= 0.2 of the characters), the top 2/3/4-gram (<= 0.20/0.18/0.16 of the characters)
    and duplicate 5..10-grams (<= 0.15..0.10). Needs quality_signals."""

    name = "gopher_repetition_filter"
    PRESET = "gopher_repetition"
    report_title = "Gopher repetition rules"


@dataclass
class C4ParagraphFilter(RuleSetFilter):
    """mC4's paragraph rule (datatrove C4ParagraphFilter): at least 3 lines, the third longest at least
    200 characters. Needs quality_signals."""

    name = "c4_paragraph_filter"
    PRESET = "c4_paragraph"
    report_title = "mC4 paragraph rule"


@dataclass
class FineWebFilter(RuleSetFilter):
    """FineWeb's quality rules (datatrove FineWebQualityFilter), over the non-blank lines: lines ending
    in punctuation >= 0.12, lines of <= 30 characters <= 0.67, characters in duplicate lines <= 0.01,
    newlines per word <= 0.3; a text without a non-blank line is dropped. Needs quality_signals."""

    name = "fineweb_filter"
    PRESET = "fineweb"
    report_title = "FineWeb quality rules"


C4_COLUMNS = ("c4_lines_kept", "c4_sentences", "c4_lorem_ipsum", "c4_curly_bracket")


@dataclass
class C4Filter(RuleSetFilter):
    """C4's document rules (datatrove C4QualityFilter): drop pages with "lorem ipsum", a '{' or fewer
    than 5 sentences in the lines C4's line rules keep. ``mode: document`` thresholds quality_signals'
    c4 columns; ``mode: line`` applies the line rules itself (``terminal_punct`` as C4: true; FineWeb's
    recipe: false) and rewrites each kept document to its kept lines."""

    name = "c4_filter"
    PRESET = "c4"
    report_title = "C4 document rules"

    mode: Literal["document", "line"] = "document"
    terminal_punct: bool = True  # line mode: C4's "line ends in terminal punctuation" rule

    def columns(self) -> tuple[Columns, Columns, tuple[str, ...]]:
        needs, adds, _ = super().columns()
        if self.mode == "document":
            return needs, adds, ()
        return {TEXT: pl.String}, adds | {c: SIGNAL_TYPES[c] for c in C4_COLUMNS}, (TEXT,)

    def filter(self, df: pl.DataFrame) -> Verdict:
        if self.mode == "document":
            return super().filter(df)
        cols, kept_text = _c4_lines(df[TEXT], self.terminal_punct)
        verdict = evaluate(df.select(TEXT).hstack(list(cols.values())), self.PRESET, list(self._rules))
        # kept documents become their kept lines; a dropped one keeps its text, to show why
        text = pl.select(pl.when(verdict.keep).then(kept_text).otherwise(df[TEXT]).alias(TEXT)).to_series()
        return replace(verdict, scores=verdict.scores | cols | {TEXT: text})


def _c4_lines(text: pl.Series, terminal_punct: bool) -> tuple[dict[str, pl.Series], pl.Series]:
    """The c4 columns of each text and the text C4 keeps: its kept lines joined by newlines, stripped."""
    b = Batch(text)
    lines, f = c4_line_rules(b, terminal_punct)
    per_line = pl.DataFrame({"d": lines.doc, "line": f["cleaned"], "kept": f["kept"], "lorem": f["lorem"],
                             "curly": f["curly"], "sentences": f["sentences"]})
    per_doc = per_line.group_by("d").agg(
        pl.col("line").filter(pl.col("kept")).str.join("\n").alias("joined"),
        pl.col("kept").sum().cast(pl.Int64).alias("c4_lines_kept"),
        pl.col("sentences").sum().cast(pl.Int64).alias("c4_sentences"),
        pl.col("lorem").any().alias("c4_lorem_ipsum"), pl.col("curly").any().alias("c4_curly_bracket"))
    full = pl.DataFrame({"d": range(len(text))}, schema={"d": per_line.schema["d"]}).join(per_doc, on="d", how="left")
    full = full.with_columns(pl.col("joined").fill_null("").str.strip_chars(PY_WS),
                             pl.col("c4_lines_kept", "c4_sentences").fill_null(0),
                             pl.col("c4_lorem_ipsum", "c4_curly_bracket").fill_null(False)).sort("d")
    return {c: full[c] for c in C4_COLUMNS}, full["joined"].rename(TEXT)
