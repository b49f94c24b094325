"""Boilerplate: C4's line rules exactly as C4 defines them, and lines a source repeats across many
of its documents removed from all of them (the line-dedup engine, counted per source)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl
import pytest

from benchmarks.clean import c4_plain
from corpus import InputSpec, Pipeline
from corpus.catalog import Catalog
from corpus.stages.boilerplate import C4_COUNTERS, BoilerplateLines, C4Lines, C4LinesFilter

PAGE = ("Stones are smoothed by water.\n"
        "Please enable JavaScript to see the comments\n"
        "This site uses cookies to improve your experience.\n"
        "Rivers carry sand[1] to the sea[citation needed].\n"
        "  Tides [edit] follow the moon.  \n"
        "Read our TERMS OF USE")


def test_c4_rules_on_one_page():
    out = C4Lines().map(pl.DataFrame({"text": [PAGE, "Nothing to remove here."]}))
    assert out["text"].to_list() == ["Stones are smoothed by water.\nRivers carry sand to the sea.\n"
                                     "  Tides  follow the moon.  ", "Nothing to remove here."]
    counts = {c: out[c].to_list() for c in C4_COUNTERS}
    assert counts == {"c4_citations_removed": [3, 0], "c4_no_punct_lines": [0, 0], "c4_short_lines": [0, 0],
                      "c4_javascript_lines": [1, 0], "c4_policy_lines": [2, 0], "c4_lorem_ipsum_lines": [0, 0]}
    strict = C4Lines(terminal_punct=True, min_words_per_line=3).map(pl.DataFrame({"text": [PAGE]}))
    # C4's order: a line without end punctuation counts there, before javascript or policy
    assert strict["text"][0] == out["text"][0]
    assert (strict["c4_no_punct_lines"][0], strict["c4_javascript_lines"][0], strict["c4_policy_lines"][0]) == (2, 0, 1)


@pytest.mark.parametrize("terminal_punct,min_words", [(False, 0), (True, 3)])
def test_c4_lines_equal_c4s_loop_per_document(terminal_punct, min_words):
    """c4_lines over batches gives what C4's own per-line loop gives each document (kept lines and
    counts), on random pages mixing every rule's trigger with ordinary lines."""
    rng = random.Random(11)
    pieces = ["Plain sentence here.", "short", "Ends with ellipsis...", "Quote at the end\"", "  indented line.  ",
              "Enable JAVASCRIPT now.", "We use cookies.", "See the Privacy Policy.", "lorem ipsum dolor sit.",
              "Fact[12] and [edit] more.", "[1]", "", "Use of Cookies is fine?", "Ja\u0301vascript is not javascript!",
              "ﬁne ligature line.", "Straße terms of use."]
    texts = ["\n".join(rng.choice(pieces) for _ in range(rng.randint(1, 9))) for _ in range(1500)]
    out = C4Lines(terminal_punct=terminal_punct, min_words_per_line=min_words).map(pl.DataFrame({"text": texts}))
    for i, t in enumerate(texts):
        want_text, want = c4_plain(t, terminal_punct, min_words)
        assert (out["text"][i], {c: out[c][i] for c in C4_COUNTERS}) == (want_text, want), t


def test_c4_filter_drops_lorem_ipsum_and_emptied_pages():
    df = C4Lines().map(pl.DataFrame({"text": ["Lorem Ipsum dolor sit amet.", "Cookies are tasty.", "Keep me.",
                                              "Our cookie policy\nJavaScript required"]}))
    verdict = C4LinesFilter().filter(df)
    assert verdict.keep.to_list() == [False, True, True, False]
    assert verdict.reason.to_list() == ["lorem_ipsum", None, None, "no_lines_left"]
    assert C4LinesFilter(lorem_ipsum=False, drop_empty=False).filter(df).keep.all()


def _write(folder: Path, source: str, texts: list[str]) -> InputSpec:
    folder.mkdir(parents=True)
    (folder / "a.jsonl").write_text("".join(json.dumps({"id": f"{source}{i}", "text": t}) + "\n"
                                            for i, t in enumerate(texts)))
    return InputSpec(source=source, path=str(folder), id_key="id")


def test_boilerplate_lines_repeated_within_a_source_go_from_all_its_documents(tmp_path: Path):
    nav = "Home | News | Sport | Weather | Contact"
    footer = "Copyright 2024 Example Media Group"
    shared = "A line that both sources carry a few times"

    def body(s: str, i: int) -> str:
        return f"Article {i} of {s} says something of its own, in words found nowhere else."

    a = [f"{nav}\n{body('a', i)}\n{footer}" + (f"\n{shared}" if i < 2 else "") for i in range(5)]
    b = [f"{body('b', i)}\n{footer}" if i < 2 else body("b", i) for i in range(4)] + [f"{shared}\n{body('b', 9)}"]
    inputs = [_write(tmp_path / "a", "a", a), _write(tmp_path / "b", "b", b)]
    out = tmp_path / "out"
    res = Pipeline([BoilerplateLines(min_docs=3)]).run(inputs, out, workers=2, quiet=True)
    got = dict(pl.read_parquet(out / "data").select("id", "text").iter_rows())
    # in a, nav and footer are in 5 documents: removed from all five (keep: none)
    assert all(got[f"a{i}"].split("\n")[0] == body("a", i) for i in range(5))
    assert got["a0"].endswith(shared)  # 3 documents in all, but only 2 in a and 1 in b: it stays
    assert got["b0"] == f"{body('b', 0)}\n{footer}"  # the footer is in only 2 of b's documents
    lines = dict(Catalog(out / "catalog.duckdb", create=False).query(
        "SELECT source, sum(value) FROM stage_counters WHERE run_id = ? AND counter = 'boilerplate_lines_removed' "
        "GROUP BY ALL", [res.run_id]))
    assert lines == {"a": 10, "b": 0}
    assert "stage-boilerplate_lines" in json.loads((out / "report.json").read_text())["sections"]
