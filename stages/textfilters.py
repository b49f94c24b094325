"""The language filter (over ``langid``'s columns) and the bad-words filter (user word lists)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from corpus.integrity import file_sha256
from corpus.operators import Columns, FilterOperator, Operator, Verdict
from corpus.registry import suggest
from corpus.schema import TEXT
from corpus.stages.langid import _LABEL, LangId, load_model, shipped_model
from corpus.stages.rules import RULE_VALUE, Rule, RuleReport, evaluate
from corpus.stages.signals import WORD_RE


@dataclass
class LanguageFilter(RuleReport, FilterOperator):
    """Keep documents in the allowed ``languages`` (empty: any) whose ``lang_score`` is above
    ``min_score`` (datatrove's LanguageFilter keeps score > 0.65; FineWeb: en). A text langid could not
    label (no visible character) is dropped. Reasons ``language:lang=de``, ``language:lang_score<=0.65``.
    Needs langid's columns."""

    name = "language_filter"
    reason_prefix = "language"
    needs = {"lang": pl.String, "lang_score": pl.Float64}
    adds = {RULE_VALUE: pl.Float64}

    languages: list[str] = field(default_factory=list)
    min_score: float = 0.65

    def __post_init__(self) -> None:
        if not 0 <= self.min_score <= 1:
            raise ValueError(f"min_score must lie in [0, 1], got {self.min_score}")
        blank = [x for x in self.languages if not x.strip()]
        if blank:
            raise ValueError(f"languages: a language code cannot be blank, got {self.languages}")
        self._rules = [Rule("lang", "lang", isin=tuple(self.languages), on_null="drop"),
                       Rule("lang_score", "lang_score", min=self.min_score, min_exclusive=True, on_null="drop")]

    def active_rules(self) -> list[Rule]:
        return list(self._rules)

    def column_problems(self, have: Columns, earlier: Sequence[Operator] = ()) -> list[str]:
        """Languages the ``langid`` stage before it cannot label: every document would be dropped."""
        lid = next((op for op in reversed(earlier) if isinstance(op, LangId)), None)
        if lid is None or not self.languages:
            return []  # lang made by another operator: its labels are its own
        path = Path(lid.model) if lid.model else None
        known = model_labels(path)
        if known is None:
            return []  # a model that does not load is langid's own error, at its setup
        unknown = [x for x in self.languages if x not in known]
        if not unknown:
            return []
        examples = [c for c in ("en", "de", "fr", "zh") if c in known] or sorted(known)[:4]
        return [f"languages: {', '.join(f'{x!r}{suggest(x, known)}' for x in unknown)} "
                f"{'is not a language code' if len(unknown) == 1 else 'are not language codes'} that the "
                f"language-ID model ({path.name if path else 'lid.176'}) labels; give codes as langid writes "
                f"them in lang, e.g. {', '.join(examples)}"]

    def filter(self, df: pl.DataFrame) -> Verdict:
        return evaluate(df, "language", self._rules)

    report_title = "Language filter"


_LABELS: dict[Path | None, frozenset[str] | None] = {}


def model_labels(path: Path | None) -> frozenset[str] | None:
    """The labels of a fastText language-ID model (None: the lid.176 model langid ships with), without the
    ``__label__`` prefix; None when it cannot be loaded (no quality extra, not a model)."""
    if path not in _LABELS:
        try:
            model = load_model(path if path is not None else shipped_model(), "language_filter")
            _LABELS[path] = frozenset(x.removeprefix(_LABEL) for x in model.get_labels())
        except ValueError:
            _LABELS[path] = None
    return _LABELS[path]



@dataclass
class BadWordsFilter(RuleReport, FilterOperator):
    """Drop documents with more than ``max_count`` bad words (C4: any, ``max_count: 0``, the default when
    ``max_ratio`` is not given) or with more than ``max_ratio`` of their words bad. With only ``max_ratio``
    the share alone decides; with both, a document must pass both. Words come from ``words`` and from ``files``
    (one word or phrase a line, ``#`` comments; the stage key covers their bytes). Matching is on the
    lower-cased text, whole words only (C4: flanked by non-word characters or the ends; an edge of a
    word that is itself punctuation, as in ``@$$``, matches anywhere), or anywhere with
    ``substring: true`` (C4 does so for Chinese, Japanese and Thai). Adds ``badwords_count``."""

    name = "badwords_filter"
    reason_prefix = "badwords"
    needs = {TEXT: pl.String}
    adds = {"badwords_count": pl.Int64, RULE_VALUE: pl.Float64}

    words: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    max_count: int | None = None  # None: 0 unless max_ratio is given
    max_ratio: float | None = None  # badwords_count / words
    substring: bool = False

    def __post_init__(self) -> None:
        for f in self.files:
            if not Path(f).is_file():
                raise ValueError(f"badwords_filter: word list {f} does not exist")
        if self.max_count is not None and self.max_count < 0:
            raise ValueError(f"max_count must be >= 0, got {self.max_count}")
        if self.max_ratio is not None and not 0 <= self.max_ratio <= 1:  # a share of the words
            raise ValueError(f"max_ratio must lie in [0, 1] (bad words per word), got {self.max_ratio}")
        if not self.word_list():
            raise ValueError("badwords_filter: no words (give words or files)")

    def word_list(self) -> list[str]:
        out = {w.strip().lower() for w in self.words if w.strip()}
        for f in self.files:
            for line in Path(f).read_text(encoding="utf-8").splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    out.add(line.strip().lower())
        return sorted(out, key=lambda w: (-len(w), w))  # longest first: a phrase wins over its first word

    def config_key(self) -> str:
        """Parameters and the word lists' bytes: an edited list reruns the filter."""
        digests = [file_sha256(Path(p)) for p in self.files]
        return hashlib.sha256((super().config_key() + "|" + ",".join(digests)).encode()).hexdigest()

    def setup(self) -> None:
        self._pattern = "|".join(self._word_pattern(w) for w in self.word_list())

    def _word_pattern(self, w: str) -> str:
        """The word, with a word boundary at each end that is a word character (C4's "flanked by
        non-word characters or the ends"; boundaries consume nothing, so adjacent bad words all count)."""
        p = pl.escape_regex(w)
        if self.substring:
            return p
        return (r"\b" if re.match(r"\w", w[0]) else "") + p + (r"\b" if re.match(r"\w", w[-1]) else "")

    def filter(self, df: pl.DataFrame) -> Verdict:
        if not hasattr(self, "_pattern"):
            self.setup()
        count = df[TEXT].str.to_lowercase().str.count_matches(self._pattern)
        frame = pl.DataFrame({"badwords_count": count.cast(pl.Int64),
                              "n": df[TEXT].str.count_matches(WORD_RE).cast(pl.Int64)})
        # A text without words has no bad words: 0/0 is NaN, which polars orders above any max_ratio
        frame = frame.with_columns(pl.when(pl.col("n") > 0).then(pl.col("badwords_count") / pl.col("n"))
                                   .otherwise(0.0).alias("badwords_ratio"))
        v = evaluate(frame, "badwords", self.active_rules())
        v.scores["badwords_count"] = frame["badwords_count"]
        return v

    def active_rules(self) -> list[Rule]:
        # A count of 0 by default would drop every document with a bad word before a max_ratio could keep it
        rules = []
        if self.max_count is not None or self.max_ratio is None:
            rules.append(Rule("count", "badwords_count", max=self.max_count or 0))
        if self.max_ratio is not None:
            rules.append(Rule("ratio", "badwords_ratio", max=self.max_ratio))
        return rules

    report_title = "Bad words"
