"""fastText text classifiers: train one from labelled examples with held-out metrics (``corpus quality
train``), score documents with it (``quality_score``) and filter on the score (``quality_score_filter``,
a threshold or GPT-3-style Pareto sampling).

The same machinery trains any text classifier: two labels (quality: ``hq`` against ``lq``, the
default) or more (topic, domain). Examples come from files (positive and negative sets, or one set
with a label column), read by the corpus readers as a run's inputs are (JSONL, Parquet, CSV; text
files one document a line), from a corpus folder (checked against its manifest), or from a DuckDB
query returning ``text`` and ``label``. Exact duplicate texts are kept once, so no held-out text is
also a training text.

The model folder holds ``model.bin`` and ``metrics.json`` (labels, parameters, counts, held-out
precision, recall, F1 and ROC AUC, and the model's sha256, which the scorer checks before use).

fastText reads one line per text: newlines and whitespace runs become one space, lower-cased by
default (``langid.one_line``). A label is one fastText token: its whitespace (and ``%``) is written
percent-escaped (``sports news``: ``__label__sports%20news``) and read back as the user's label. Scores
come from the binding's batch call with k=1 (its batch probabilities beyond the top label are wrong in
fasttext-wheel 0.9.2): with two labels the positive label's probability is the top one's or its
complement; the probability of a label of a model of more labels comes from the one-line call with all
labels (per line, as fast as the batch call).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import polars as pl

from corpus.integrity import file_sha256
from corpus.operators import Columns, FilterOperator, MapOperator, Verdict
from corpus.owner import refuse_managed
from corpus.readers import InputSpec, plan_tasks, read_task, whole_file_problem
from corpus.readers.check import QuarantineShare
from corpus.schema import ROW_ID, TEXT
from corpus.stages.langid import load_model, one_line
from corpus.stages.rules import RULE_VALUE, Rule, RuleReport, evaluate
from corpus.writers import atomic_path, write_bytes_atomic

if TYPE_CHECKING:
    from corpus.progress import Progress

MODEL_FILE, METRICS_FILE = "model.bin", "metrics.json"
_LABEL = "__label__"
log = logging.getLogger(__name__)


# ---------------------------------------------------------------- reading examples


def read_texts(path: str | Path, text_key: str = TEXT, label_key: str | None = None,
               role: str = "examples") -> pl.DataFrame:
    """``text`` (and ``label``) of every record of a file, folder or glob, read by the corpus readers as a
    run reads its inputs (JSONL plain or compressed, Parquet, CSV; text files one document a line), or of
    a corpus folder (checked against its manifest). Records the readers would quarantine are left out and
    counted in a warning; a file without the text field, or mostly such records (a wrong --text-key), is
    an error. ``role`` names the files in messages (positive, negative, labelled)."""
    path = Path(path)
    if (path / "manifest.json").is_file():
        from corpus.export import shard_frames

        cols = [text_key] + ([label_key] if label_key else [])
        df = pl.concat([f for _, f in shard_frames(path, columns=cols)])
        df = df.rename({text_key: "text"} | ({label_key: "label"} if label_key else {}))
        return df.with_columns(pl.col("text").cast(pl.String),
                               *([pl.col("label").cast(pl.String)] if label_key else []))
    spec = InputSpec(source=role, path=str(path), text_key=text_key, text_mode="line",
                     meta_keys=[label_key] if label_key else [])
    texts: list[pl.Series] = []
    labels: list[str | None] = []
    tasks = plan_tasks([spec])
    share = QuarantineShare(tasks)  # a wrong text_key is an error, as in a run
    for task in tasks:
        problem = whole_file_problem(task)
        if problem:
            raise ValueError(f"{role} examples {task.path}: {problem} (--text-key names the text field)")
        for chunk in read_task(task):
            texts.append(chunk.docs["text"])
            if label_key:
                labels += [_label(json.loads(m).get(label_key)) for m in chunk.docs["meta"].to_list()]
            share.add(role, chunk.docs.height + chunk.bad.height, Counter(chunk.bad["kind"].to_list()))
            share.check(role)
    if tasks:
        share.check(role, final=True)
    text = pl.concat(texts) if texts else pl.Series("text", [], pl.String)
    bad = share.kinds.get(role, {})  # the records the share counted as quarantined, by kind
    if bad:
        kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(bad.items()))
        log.warning("%s: %s of %s records left out, as a run would quarantine them (%s)", path,
                    f"{sum(bad.values()):,}", f"{share.seen[role]:,}", kinds)
    if label_key and len(text) and all(v is None for v in labels):
        raise ValueError(f"{path}: no record has the label field {label_key!r} (--label-column)")
    df = pl.DataFrame({"text": text.cast(pl.String)})
    return df.with_columns(pl.Series("label", labels, pl.String)) if label_key else df


def _label(value: Any) -> str | None:
    """A label as text: a string as it is, a number or boolean as JSON writes it (1, true)."""
    return value if value is None or isinstance(value, str) else json.dumps(value)


def load_examples(positive: list[str] = (), negative: list[str] = (), labelled: list[str] = (),
                  query: str | None = None, text_key: str = TEXT, label_key: str = "label",
                  positive_label: str = "hq", negative_label: str = "lq") -> pl.DataFrame:
    """Examples as ``text``, ``label``: positive and negative files, files with a label column, or a
    DuckDB query (its columns ``text`` and ``label``)."""
    parts = [read_texts(p, text_key, role="positive").with_columns(pl.lit(positive_label).alias("label"))
             for p in positive]
    parts += [read_texts(p, text_key, role="negative").with_columns(pl.lit(negative_label).alias("label"))
              for p in negative]
    parts += [read_texts(p, text_key, label_key, role="labelled") for p in labelled]
    if query:
        try:
            q = duckdb.sql(query).pl()
        except duckdb.Error as exc:
            raise ValueError(f"query: {str(exc).splitlines()[0]}") from exc
        missing = [c for c in ("text", "label") if c not in q.columns]
        if missing:
            raise ValueError(f"query: its result needs columns text and label; it has {q.columns}")
        parts.append(q.select(pl.col("text").cast(pl.String), pl.col("label").cast(pl.String)))
    if not parts:
        raise ValueError("no examples: give --positive and --negative files, --labelled files or --query")
    df = pl.concat([p.select("text", "label") for p in parts])
    return df.filter(pl.col("text").is_not_null() & pl.col("label").is_not_null()
                     & pl.col("text").str.contains(r"\S"))


def fasttext_lines(text: pl.Series, lowercase: bool = True) -> pl.Series:
    """Each text as the one line fastText reads (whitespace runs as one space), ending in a newline."""
    t = text.str.replace_all(r"\s+", " ")
    if lowercase:
        t = t.str.to_lowercase()
    return pl.DataFrame({"t": t}).select(one_line(pl.col("t"), None)).to_series()


# ---------------------------------------------------------------- training and metrics


@dataclass
class TrainConfig:
    epoch: int = 10
    lr: float = 0.5
    word_ngrams: int = 2
    dim: int = 64
    min_count: int = 1
    # hash buckets of the word n-grams: fastText's 2,000,000 makes a 512 MB model at dim 64
    bucket: int = 200_000
    holdout: float = 0.1
    seed: int = 0
    lowercase: bool = True
    positive_label: str = "hq"

    def __post_init__(self) -> None:
        if min(self.epoch, self.word_ngrams, self.dim, self.min_count) < 1 or self.bucket < 0 or not self.lr > 0:
            got = (self.epoch, self.word_ngrams, self.dim, self.min_count, self.bucket, self.lr)
            raise ValueError("epoch, word_ngrams, dim and min_count must be >= 1, bucket >= 0 and lr > 0, got "
                             + ", ".join(map(str, got)))
        if self.bucket == 0 and self.word_ngrams > 1:
            # fastText hashes word n-grams modulo bucket: 0 buckets is a division by zero that kills the
            # process (SIGFPE) with no message; only unigrams (word_ngrams 1) need no buckets
            raise ValueError(f"bucket must be >= 1 with word_ngrams {self.word_ngrams} (fastText hashes the word "
                             "n-grams into the buckets); bucket 0 only with word_ngrams 1")


_TMP_PREFIX = ".train-tmp-"


def _remove_stale_tmp(out: Path) -> None:
    """Remove the training-text folders of trainings into ``out`` that were killed (their process is gone)."""
    for d in out.glob(f"{_TMP_PREFIX}*"):
        pid = d.name.removeprefix(_TMP_PREFIX).split("-")[0]
        if d.is_dir() and not d.is_symlink() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's process
        return True
    return True


def split_holdout(df: pl.DataFrame, fraction: float, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(train, held out): exact duplicate texts kept once, then a seeded hash of each text decides, per
    label, so both sides see every label in about the same proportion."""
    if not 0 < fraction < 1:
        raise ValueError(f"holdout must lie strictly between 0 and 1, got {fraction}")
    df = df.unique("text", keep="first", maintain_order=True)
    rank = pl.col("text").hash(seed).rank("ordinal").over("label")
    held = (rank <= (pl.len().over("label") * fraction).ceil()).alias("held")
    df = df.with_columns(held)
    return df.filter(~pl.col("held")).drop("held"), df.filter(pl.col("held")).drop("held")


def train(df: pl.DataFrame, out: Path, cfg: TrainConfig, progress: Progress | None = None) -> dict:
    """Train on ``df`` (text, label) less a held-out share, evaluate on that share, write
    ``out/model.bin`` and ``out/metrics.json``; returns the metrics. ``progress``: says what it does
    (`corpus quality train`; the training, on one thread, takes minutes on a large set), with fastText's own
    progress line and ETA on a terminal."""
    refuse_managed(out)
    try:
        import fasttext
    except ImportError as exc:
        raise ValueError("corpus quality train needs the 'quality' extra (pip install 'corpusforge[quality]')") \
            from exc
    labels = sorted(df["label"].unique().to_list())
    if len(labels) < 2:
        raise ValueError(f"need at least two labels to train a classifier, got {labels}")
    both = df.group_by("text").agg(pl.col("label").n_unique().alias("n")).filter(pl.col("n") > 1)
    if both.height:  # a text keeps its first label only (split_holdout): say so, and stop if a label is gone
        kept = sorted(df.unique("text", keep="first")["label"].unique().to_list())
        what = f"{both.height:,} texts are given under more than one label"
        if len(kept) < 2:
            raise ValueError(f"{what}: kept once each, under the first, they leave only {kept}; are the positive "
                             "and negative inputs the same documents?")
        log.warning("%s: each is kept once, under the first label it was given", what)
    train_df, held = split_holdout(df, cfg.holdout, cfg.seed)
    if held.height == 0 or train_df.height == 0:
        raise ValueError(f"too few examples ({df.height}) to hold {cfg.holdout:.0%} out")
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(out)
    tokens = {lab: label_token(lab) for lab in labels}
    lines = (pl.col("label").replace_strict(tokens, return_dtype=pl.String) + " "
             + pl.col("line").str.strip_suffix("\n")).alias("x")
    train_lines = train_df.with_columns(fasttext_lines(train_df["text"], cfg.lowercase).alias("line"))
    # removed on any error the process lives through; a killed process's by the next training here
    with tempfile.TemporaryDirectory(dir=out, prefix=f"{_TMP_PREFIX}{os.getpid()}-") as tmp:
        path = Path(tmp) / "train.txt"
        train_lines.filter(pl.col("line") != "").select(lines).write_csv(path, include_header=False,
                                                                          quote_style="never")
        if progress is not None:
            progress.log(f"quality train: fastText on {train_df.height:,} examples, {cfg.epoch} epochs, one thread "
                         "(so that the same examples and seed give the same model)")
        # fastText's line redraws itself: only where a terminal shows it in place
        verbose = 2 if progress is not None and not progress.quiet and sys.stderr.isatty() else 0
        model = fasttext.train_supervised(input=str(path), epoch=cfg.epoch, lr=cfg.lr, wordNgrams=cfg.word_ngrams,
                                          dim=cfg.dim, minCount=cfg.min_count, bucket=cfg.bucket, thread=1,
                                          seed=cfg.seed, verbose=verbose)
        if verbose:
            print(file=sys.stderr)  # past its last redraw
    with atomic_path(out / MODEL_FILE) as tmp_model:
        model.save_model(str(tmp_model))
    if progress is not None:
        progress.log(f"quality train: evaluating on the {held.height:,} held out")
    top, prob = predict_top(model, fasttext_lines(held["text"], cfg.lowercase), label_names(labels))
    metrics = evaluate_predictions(held["label"], top, prob, labels, cfg.positive_label)
    report = {
        "format": "corpusforge.classifier/1",
        "labels": labels,
        "positive_label": cfg.positive_label if cfg.positive_label in labels else None,
        "params": cfg.__dict__,
        "examples": {"total": df.height, "unique": train_df.height + held.height, "train": train_df.height,
                     "held_out": held.height,
                     "per_label": dict(df.group_by("label").len().sort("label").iter_rows())},
        "held_out": metrics,
        "model_sha256": file_sha256(out / MODEL_FILE),
    }
    write_bytes_atomic(out / METRICS_FILE, (json.dumps(report, indent=2) + "\n").encode())
    return report


def label_token(label: str) -> str:
    """A label as the one token fastText reads: fastText splits its lines on whitespace, so each whitespace
    character, and % to keep the escape reversible, is written as its UTF-8 percent-escapes."""
    return _LABEL + re.sub(r"[%\s]", lambda m: "".join(f"%{b:02X}" for b in m[0].encode()), label)


def label_names(labels: list[str]) -> dict[str, str]:
    """fastText's label token -> the label it stands for; also the tokens of models trained when whitespace
    was written as "_" (their metrics.json kept the labels as given), so such a model scores as its labels."""
    names = {label_token(lab): lab for lab in labels}
    for lab in labels:
        names.setdefault(_LABEL + re.sub(r"\s", "_", lab), lab)
    return names


def _name(token: str, names: dict[str, str]) -> str:
    return names.get(token, token.removeprefix(_LABEL))


def predict_top(model: Any, lines: pl.Series, names: dict[str, str]) -> tuple[list[str | None], np.ndarray]:
    """The top label (``names``: its token's label, label_names) and its probability for each line (one batch
    call; "" lines get None and NaN)."""
    todo = [ln for ln in lines.to_list() if ln]
    got_labels, got_probs = model.f.multilinePredict(todo, 1, 0.0, "replace") if todo else ([], [])
    it = iter(zip(got_labels, got_probs, strict=True))
    top: list[str | None] = []
    prob = np.full(len(lines), np.nan)
    for i, ln in enumerate(lines.to_list()):
        if not ln:
            top.append(None)
            continue
        lab, p = next(it)
        top.append(_name(lab[0], names) if lab else None)
        prob[i] = min(float(p[0]), 1.0) if len(p) else np.nan
    return top, prob


def predict_label(model: Any, lines: pl.Series, label: str, names: dict[str, str]
                  ) -> tuple[list[str | None], np.ndarray]:
    """The top label of each line and the probability of ``label``, whichever label is on top: the
    one-line call with all labels (the batch call's probabilities past the top one are the top one's in
    fasttext-wheel 0.9.2); "" lines get None and NaN."""
    f = model.f
    top: list[str | None] = []
    prob = np.full(len(lines), np.nan)
    for i, ln in enumerate(lines.to_list()):
        got = f.predict(ln, -1, 0.0, "replace") if ln else None
        if not got:
            top.append(None)
            continue
        top.append(_name(got[0][1], names))
        # a label fastText leaves out has a probability too small to list
        prob[i] = next((min(float(p), 1.0) for p, t in got if _name(t, names) == label), 0.0)
    return top, prob


def evaluate_predictions(truth: pl.Series, top: list[str | None], prob: np.ndarray, labels: list[str],
                         positive: str) -> dict:
    """Precision, recall, F1 per label (and macro), accuracy; with two labels also those of the positive
    label at 0.5 and ROC AUC of its probability."""
    f = pl.DataFrame({"truth": truth, "pred": pl.Series(top, dtype=pl.String)})
    per_label = {}
    for lab in labels:
        tp = f.filter((pl.col("truth") == lab) & (pl.col("pred") == lab)).height
        fp = f.filter((pl.col("truth") != lab) & (pl.col("pred") == lab)).height
        fn = f.filter((pl.col("truth") == lab) & (pl.col("pred").ne_missing(lab))).height
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        per_label[lab] = {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
                          "support": tp + fn}
    out: dict[str, Any] = {"accuracy": f.filter(pl.col("truth") == pl.col("pred")).height / max(f.height, 1),
                           "macro_f1": float(np.mean([m["f1"] for m in per_label.values()])),
                           "per_label": per_label, "n": f.height}
    if len(labels) == 2 and positive in labels:
        score = positive_probability(top, prob, positive)
        out |= {k: per_label[positive][k] for k in ("precision", "recall", "f1")}
        out["roc_auc"] = roc_auc((truth == positive).to_numpy(), score)
        out["positive_label"] = positive
    return out


def positive_probability(top: list[str | None], prob: np.ndarray, positive: str) -> np.ndarray:
    """P(positive) of a two-label model from its top label and probability."""
    is_pos = np.array([t == positive for t in top])
    return np.where(is_pos, prob, 1.0 - prob)


def roc_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve: the chance a random positive scores above a random negative (ties
    half), from the ranks of the scores (Mann-Whitney U). None without both classes."""
    ok = ~np.isnan(score)
    y, score = y[ok], score[ok]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return None
    ranks = pl.Series(score).rank("average").to_numpy()
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# ---------------------------------------------------------------- the operators


def read_model_card(folder: Path) -> dict:
    """metrics.json of a model folder, after checking model.bin against its sha256."""
    card_path = folder / METRICS_FILE
    if folder.is_file():  # model.bin itself, say: reading metrics.json under it is "Not a directory"
        hint = f"; give its folder, {folder.parent}" if folder.name == MODEL_FILE else ""
        raise ValueError(f"{folder} is a file: model is the folder `corpus quality train` wrote (its {MODEL_FILE} "
                         f"and {METRICS_FILE}){hint}")
    try:
        card = json.loads(card_path.read_text())
    except FileNotFoundError as exc:
        raise ValueError(f"{folder}: no {METRICS_FILE} (train the model with `corpus quality train`)") from exc
    except OSError as exc:
        raise ValueError(f"{card_path}: cannot read it ({exc.strerror})") from exc
    except ValueError as exc:
        raise ValueError(f"{card_path}: not valid JSON ({exc})") from exc
    model = folder / MODEL_FILE
    if not model.is_file():
        raise ValueError(f"{model}: missing (retrain with `corpus quality train`)")
    if file_sha256(model) != card.get("model_sha256"):
        raise ValueError(f"{model}: its sha256 differs from the one in {METRICS_FILE}: the file was changed or "
                         "damaged after training; retrain it")
    return card


@dataclass
class QualityScore(MapOperator):
    """Score each document with a fastText classifier trained by ``corpus quality train`` (``model``:
    its folder): ``score_column`` gets the probability of ``label`` (default: the model's positive
    label; a model of more labels: the top label's probability), and ``label_column``, when set, the
    top label (a topic or domain classifier)."""

    name = "quality_score"
    version = "2"  # 2: label's probability in every document (3+ labels), labels with whitespace
    adds = {"quality_score": pl.Float64}

    model: str = ""
    label: str | None = None
    score_column: str = "quality_score"
    label_column: str | None = None

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model: the folder `corpus quality train` wrote")
        card = read_model_card(Path(self.model))
        self._labels = card["labels"]
        self._lowercase = card["params"].get("lowercase", True)
        self._names = label_names(self._labels)
        self._label = self.label or card.get("positive_label")
        if self._label is not None and self._label not in self._labels:
            raise ValueError(f"label {self._label!r} is not one of the model's labels {self._labels}")
        self._sha = card["model_sha256"]
        self._model: Any = None

    def config_key(self) -> str:
        """Parameters and the model's bytes: a retrained model rescores."""
        return hashlib.sha256((super().config_key() + "|" + self._sha).encode()).hexdigest()

    def columns(self) -> tuple[Columns, Columns, tuple[str, ...]]:
        adds: dict[str, Any] = {self.score_column: pl.Float64}
        if self.label_column:
            adds[self.label_column] = pl.String
        return {TEXT: pl.String}, adds, ()

    def setup(self) -> None:
        path = Path(self.model) / MODEL_FILE
        if file_sha256(path) != self._sha:
            raise ValueError(f"{path}: changed since the pipeline was configured; rerun it")
        self._model = load_model(path, "quality_score")

    def map(self, df: pl.DataFrame) -> pl.DataFrame:
        if self._model is None:
            self.setup()
        lines = fasttext_lines(df[TEXT], self._lowercase)
        if self._label is not None and len(self._labels) > 2:
            top, score = predict_label(self._model, lines, self._label, self._names)
        else:
            top, prob = predict_top(self._model, lines, self._names)
            score = prob if self._label is None else positive_probability(top, prob, self._label)
        cols = [pl.Series(self.score_column, score, pl.Float64).fill_nan(None)]
        if self.label_column:
            cols.append(pl.Series(self.label_column, top, pl.String))
        return df.with_columns(cols)


@dataclass
class QualityScoreFilter(RuleReport, FilterOperator):
    """Keep documents whose ``column`` (``quality_score``) is at least ``min_score``; or, with
    ``pareto_alpha`` (GPT-3: 9), keep each with GPT-3's rule ``pareto(alpha) > 1 - score``, the draw
    made from a seeded hash of its row_id (the same verdict whatever the shards or workers)."""

    name = "quality_score_filter"
    reason_prefix = "quality_score"
    needs = {ROW_ID: pl.Int64, "quality_score": pl.Float64}
    adds = {RULE_VALUE: pl.Float64}
    report_title = "Classifier score filter"

    column: str = "quality_score"
    min_score: float = 0.5
    pareto_alpha: float | None = None
    seed: int = 0
    drop_missing: bool = True  # a document without a score (empty text)

    def __post_init__(self) -> None:
        # a score is a probability: a min_score past 1 (or NaN) drops every document
        if not 0 <= self.min_score <= 1:
            raise ValueError(f"min_score must lie in [0, 1], got {self.min_score}")
        if self.pareto_alpha is not None and not self.pareto_alpha > 0:
            raise ValueError("pareto_alpha must be positive (GPT-3 used 9)")

    def columns(self) -> tuple[Columns, Columns, tuple[str, ...]]:
        return {ROW_ID: pl.Int64, self.column: pl.Float64}, dict(self.adds), ()

    def active_rules(self) -> list[Rule]:
        on_null = "drop" if self.drop_missing else "keep"
        if self.pareto_alpha is None:
            return [Rule("score", self.column, min=self.min_score, on_null=on_null)]
        return [Rule("score", self.column, on_null=on_null), Rule("pareto", "_pareto_keep", isin=(True,))]

    def filter(self, df: pl.DataFrame) -> Verdict:
        if self.pareto_alpha is None:
            return evaluate(df, "quality_score", self.active_rules())
        # numpy's pareto(a) is (1 - U) ** (-1 / a) - 1 for U uniform in [0, 1)
        u = (pl.col(ROW_ID).hash(self.seed) // 2048).cast(pl.Float64) / float(1 << 53)
        draw = (1.0 - u).pow(-1.0 / self.pareto_alpha) - 1.0
        keep = (draw > 1.0 - pl.col(self.column)).fill_null(False).alias("_pareto_keep")
        frame = df.select(pl.col(self.column), keep)
        return evaluate(frame, "quality_score", self.active_rules())

