"""Decontamination against evaluation sets (word 13-grams, matching n-grams recorded) and the leakage
check between tokenized splits."""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl
import pytest
from helpers import run_cli

from corpus import InputSpec, Pipeline
from corpus.shards import write_documents
from corpus.stages.decontam import Decontaminate, leakage
from corpus.stages.filter import LengthFilter

QUESTION = ("Which river flows through the ancient city that hosted the first modern Olympic games in "
            "eighteen ninety six")  # 19 words
ANSWER = "The Ilissos and the Kifisos rivers flow through Athens"  # 9 words: indexed whole (>= min_words 8)


@pytest.fixture
def eval_set(tmp_path: Path) -> Path:
    path = tmp_path / "olympics_qa.jsonl"
    path.write_text(json.dumps({"question": QUESTION, "answer": ANSWER, "id": 7}) + "\n"
                    + json.dumps({"question": "What is two plus two", "answer": "Four"}) + "\n")
    return path


def docs() -> list[str]:
    q = QUESTION.split()
    return [
        "Trivia night! " + " ".join(q[2:15]).upper() + "? Nobody knew.",  # 13 words of the question, other case
        "Trivia night: " + " ".join(q[2:14]) + " and more.",  # only 12 consecutive words
        "Guide: the Ilissos, and the Kifisos rivers flow through Athens, of course.",  # the answer, punctuated
        "What is two plus two? Four, said the child.",  # a 5-word question and a 1-word answer: not indexed
        "Nothing to do with any benchmark at all.",
    ]


def test_documents_sharing_an_ngram_are_removed_with_the_ngrams(eval_set: Path):
    op = Decontaminate(eval_sets=[str(eval_set)])
    v = op.filter(pl.DataFrame({"text": docs()}))
    assert v.keep.to_list() == [False, True, False, True, True]
    assert v.reason.to_list() == ["decontam:olympics_qa", None, "decontam:olympics_qa", None, None]
    assert v.scores["decontam_matches"].to_list() == [1, 0, 1, 0, 0]
    assert v.scores["decontam_ngrams"][0].to_list() == [" ".join(QUESTION.lower().split()[2:15])]
    assert v.scores["decontam_ngrams"][2].to_list() == [ANSWER.lower()]
    # flag mode keeps them, marked
    v = Decontaminate(eval_sets=[str(eval_set)], mode="flag").filter(pl.DataFrame({"text": docs()}))
    assert v.keep.all() and v.scores["decontam_matches"].to_list() == [1, 0, 1, 0, 0]
    # a shorter n finds the 12-word overlap too; only the fields asked for are indexed
    v = Decontaminate(eval_sets=[str(eval_set)], n=12, fields=["question"]).filter(pl.DataFrame({"text": docs()}))
    assert v.keep.to_list() == [False, False, True, True, True]


def test_decontaminate_in_a_run(tmp_path: Path, eval_set: Path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "d.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs()))
    Pipeline([Decontaminate(eval_sets=[str(eval_set)])]).run(
        [InputSpec(source="web", path=str(tmp_path / "in"))], tmp_path / "out", workers=1, quiet=True)
    rejected = pl.read_parquet(tmp_path / "out" / "rejected" / "*" / "*.parquet")
    assert rejected.height == 2 and set(rejected["reject_reason"]) == {"decontam:olympics_qa"}
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    fig = next(iter(report["sections"]["stage-decontaminate"]["figures"].values()))
    assert fig["sets"]["olympics_qa"]["items"] == 2 and fig["n"] == 13


def test_bad_evaluation_sets_are_named(tmp_path: Path, eval_set: Path):
    with pytest.raises(ValueError, match="does not exist"):
        Decontaminate(eval_sets=[str(tmp_path / "nope.jsonl")])
    with pytest.raises(ValueError, match="no field"):
        Decontaminate(eval_sets=[str(eval_set)], fields=["prompt"]).build_index()


def test_an_evaluation_set_that_indexes_nothing_is_refused(tmp_path: Path, eval_set: Path):
    """An empty set, or one whose every text is under min_words, indexed nothing: the stage ran as a silent
    no-op, as if the corpus were clean. It is refused when the config is read, naming each such set."""
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "short.jsonl").write_text(json.dumps({"q": "What is two plus two", "a": "Four"}) + "\n")
    pl.DataFrame({"q": []}, schema={"q": pl.String}).write_parquet(tmp_path / "none.parquet")
    with pytest.raises(ValueError, match=r"^decontaminate: evaluation set \S*empty.jsonl indexes nothing: it holds "
                                         r"no items; evaluation set \S*short.jsonl indexes nothing: none of its 2 "
                                         r"texts \(fields q, a\) has min_words \(8\) words or more"):
        Decontaminate(eval_sets=[str(eval_set), str(tmp_path / "empty.jsonl"), str(tmp_path / "short.jsonl")])
    with pytest.raises(ValueError, match="none.parquet indexes nothing: it holds no items"):
        Decontaminate(eval_sets=[str(tmp_path / "none.parquet")])
    # a lower min_words indexes the short question whole
    assert Decontaminate(eval_sets=[str(tmp_path / "short.jsonl")], min_words=5).build_index()[0].height == 1


def test_numeric_parameters_are_checked_when_the_config_is_read(tmp_path: Path, eval_set: Path):
    """record: -1 passed the check and stopped the run in polars (head(-1)) at the first matching document."""
    for params, message in (({"record": -1}, r"^record must be 0 or more .*got -1$"),
                            ({"n": 0}, r"^n must be 1 or more .*got 0$"),
                            ({"min_words": 0}, r"^min_words must be between 1 and n \(13\), got 0$"),
                            ({"min_words": 14}, r"^min_words must be between 1 and n \(13\), got 14$")):
        with pytest.raises(ValueError, match=message):
            Decontaminate(eval_sets=[str(eval_set)], **params)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"inputs: [{{source: web, path: {eval_set}}}]\noutput: {tmp_path / 'out'}\npipeline:\n"
                   f"  - {{op: decontaminate, eval_sets: [{eval_set}], record: -1}}\n")
    proc = run_cli("check", str(cfg))
    assert proc.returncode == 2 and "run.yaml:4: pipeline[0] (decontaminate): record must be 0 or more" in proc.stderr
    # 0 records no n-gram, 1 the first; the verdict is the same
    for record, ngrams in ((0, []), (1, [" ".join(QUESTION.lower().split()[2:15])])):
        v = Decontaminate(eval_sets=[str(eval_set)], record=record).filter(pl.DataFrame({"text": docs()}))
        assert v.keep.to_list() == [False, True, False, True, True]
        assert v.scores["decontam_ngrams"][0].to_list() == ngrams


@pytest.mark.parametrize("mode", ["remove", "flag"])
def test_an_empty_shard_gets_an_empty_verdict(tmp_path: Path, eval_set: Path, mode: str):
    """A shard an earlier filter emptied: [True] * 0 made a null-typed keep in flag mode, which the
    executor refused ('a keep mask of 0 Null values')."""
    empty = pl.DataFrame({"text": []}, schema={"text": pl.String})
    v = Decontaminate(eval_sets=[str(eval_set)], mode=mode).filter(empty)
    assert v.keep.dtype == pl.Boolean and v.keep.len() == 0 and v.reason.len() == 0
    assert v.scores["decontam_matches"].len() == 0 and v.scores["decontam_ngrams"].dtype == pl.List(pl.String)
    for name, texts in (("long", docs()), ("short", ["tiny"])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "d.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    Pipeline([LengthFilter(min_words=2), Decontaminate(eval_sets=[str(eval_set)], mode=mode)]).run(
        [InputSpec(source=n, path=str(tmp_path / n)) for n in ("long", "short")], tmp_path / "out", workers=1,
        quiet=True)
    assert pl.read_parquet(tmp_path / "out" / "data" / "*.parquet").height == (5 if mode == "flag" else 3)


def _splits(tmp_path: Path, leak: bool) -> list[Path]:
    rng = random.Random(0)
    train = [[rng.randrange(1000) for _ in range(rng.randint(20, 60))] for _ in range(50)]
    valid = [[rng.randrange(1000) for _ in range(40)] for _ in range(10)]
    test = [[rng.randrange(1000) for _ in range(40)] for _ in range(10)]
    if leak:
        valid[3] = [7, 7] + train[5][4:17] + [9]  # 13 tokens of a training document
        test[0] = list(train[8])  # a training document, whole
        valid[4] = train[9][:12] + [1]  # 12 tokens only: no 13-gram shared
    prefixes = []
    for name, split in (("train", train), ("valid", valid), ("test", test)):
        write_documents(tmp_path / name, split, vocab_size=1000)
        prefixes.append(tmp_path / name)
    return prefixes


def test_leakage_between_token_splits(tmp_path: Path):
    train, valid, test = _splits(tmp_path, leak=True)
    r = leakage(train, [valid, test], n=13, chunk_tokens=100)  # small chunks: the scan crosses many
    v, t = r["splits"][str(valid)], r["splits"][str(test)]
    assert (v["sharing_ngrams"], v["identical_to_train"]) == (1, 0)
    assert v["examples"] == [{"document": 3, "train_document": 5}]
    assert (t["sharing_ngrams"], t["identical_to_train"]) == (1, 1)
    res = run_cli("shards", "leakage", str(train), str(valid), str(test))
    assert res.returncode == 1 and "1 of 10 documents share a 13-token n-gram" in res.stdout
    bars = [ln for ln in res.stderr.splitlines() if ln.startswith("leakage ")]  # a bar per held-out split
    assert list(dict.fromkeys(b.split()[1] for b in bars)) == [valid.name, test.name]
    assert all("training tokens" in b for b in bars)
    clean = tmp_path / "clean"
    clean.mkdir()
    train, valid, test = _splits(clean, leak=False)
    res = run_cli("shards", "leakage", str(train), str(valid), str(test))
    assert res.returncode == 0, res.stdout + res.stderr
    # a damaged shard is named before anything is compared
    (clean / "valid.bin").write_bytes((clean / "valid.bin").read_bytes()[:-2])
    res = run_cli("shards", "leakage", str(train), str(valid))
    assert res.returncode == 2 and res.stderr.startswith("error:") and "valid.bin" in res.stderr

    # an empty held-out split (--split 1,0,0) has nothing to leak (an IndexError); --ngram 0 is an error
    write_documents(clean / "empty", [], vocab_size=1000)
    assert leakage(train, [clean / "empty"])["splits"][str(clean / "empty")]["documents"] == 0
    for bad in ("0", "-3"):
        res = run_cli("shards", "leakage", str(train), str(test), "--ngram", bad)
        assert res.returncode == 2 and f"--ngram must be a whole number of tokens, 1 or more, got {bad}" in res.stderr
