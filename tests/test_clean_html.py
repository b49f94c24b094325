"""HTML to text: trafilatura's text, a time limit per page that really stops the extractor, and pages
that give no text rejected with their reason, never lost."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from helpers import run_cli

from corpus import InputSpec, Pipeline
from corpus.catalog import Catalog
from corpus.stages.html import Extractor, HtmlFilter, HtmlToText

DATA = Path(__file__).parent / "data"
FAKE = "fake_extractor:extract"  # tests/data/fake_extractor.py
ARTICLE = ("<html><head><title>T</title></head><body><nav><a href='/'>Home</a> | <a href='/a'>About us</a></nav>"
           "<article><h1>River stones</h1><p>" + "Stones in the river are smoothed by the water over many years. " * 6
           + "</p><p>" + "The current carries sand that polishes every surface it touches. " * 5 + "</p></article>"
           "<footer>Copyright 2024 Example Corp. All rights reserved.</footer></body></html>")


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.syspath_prepend(str(DATA))  # the extraction child gets this process's sys.path


def test_trafilatura_keeps_the_article_and_drops_the_navigation():
    out = HtmlToText().map(pl.DataFrame({"text": [ARTICLE, "<html><body></body></html>"], "source": ["w", "w"]}))
    text = out["text"][0]
    assert text.startswith("River stones") and "smoothed by the water" in text and "polishes every surface" in text
    assert "About us" not in text and "Copyright" not in text
    assert out["html_status"].to_list() == ["ok", "empty"]
    assert out["text"][1] == "<html><body></body></html>"  # no text: the page stays as it was
    assert (out["html_extracted"].to_list(), out["html_empty"].to_list()) == ([1, 0], [0, 1])


def test_a_page_past_its_time_limit_is_killed_and_the_next_page_gets_a_fresh_child(fake):
    """The time limit stops the extractor itself (a busy loop in Python), and costs only its page."""
    ex = Extractor(FAKE, {}, timeout_s=1.0)
    try:
        assert ex.extract("<p>one</p>") == ("ok", "ONE")
        stuck = ex.proc
        assert ex.extract("wait a while") == ("ok", "WAITED")  # the limit is CPU time, not a busy machine's clock
        status, why = ex.extract("spin forever")
        assert (status, why) == ("timeout", "over 1 s of CPU")
        assert stuck is not None and stuck.poll() is not None  # the spinning process is dead, not abandoned
        assert ex.extract("<p>two</p>") == ("ok", "TWO") and ex.starts == 2
        assert ex.extract("crash the process") == ("error", "the extraction process died (exit code 3)")
        assert ex.extract("raise an error") == ("error", "ValueError: unparseable page")
        assert ex.extract("no text") == ("empty", "") and ex.starts == 3
    finally:
        ex.close()
    quick = Extractor(FAKE, {}, timeout_s=0.2)
    try:  # a page that waits without computing: stopped by the wall clock, 10x the limit but at least 5 s
        assert quick.extract("sleep forever") == ("timeout", "no result within 5 s (wall clock)")
    finally:
        quick.close()


def test_pages_without_text_are_rejected_with_their_reason(tmp_path: Path, fake):
    pages = [f"<p>page {i}</p>" for i in range(8)] + ["spin forever", "crash the process", "raise an error", "no text"]
    src = tmp_path / "in"
    src.mkdir()
    (src / "p.jsonl").write_text("".join(json.dumps({"id": str(i), "text": p}) + "\n" for i, p in enumerate(pages)))
    out = tmp_path / "out"
    res = Pipeline([HtmlToText(extractor=FAKE, timeout_s=2.0), HtmlFilter()]).run(
        [InputSpec(source="web", path=str(src), id_key="id")], out, workers=2, quiet=True, shard_max_bytes=60)
    assert all(b["ok"] for b in res.balance)
    kept = pl.read_parquet(out / "data").sort("id")
    assert kept["text"].to_list() == [f"PAGE {i}" for i in range(8)]
    rejected = pl.read_parquet(out / "rejected" / "02-html_filter").sort("id")
    assert dict(zip(rejected["text"], rejected["reject_reason"], strict=True)) == {
        "spin forever": "html_timeout", "crash the process": "html_error", "raise an error": "html_error",
        "no text": "html_no_text"}
    got = dict(Catalog(out / "catalog.duckdb", create=False).query(
        "SELECT counter, sum(value) FROM stage_counters WHERE run_id = ? GROUP BY ALL", [res.run_id]))
    assert got == {"html_extracted": 8, "html_empty": 1, "html_timeout": 1, "html_error": 2}


def test_sources_and_empty_pages_options(fake):
    df = pl.DataFrame({"text": ["<p>a</p>", "<p>b</p>", "no text"], "source": ["html", "plain", "html"]})
    out = HtmlToText(extractor=FAKE, sources=["html"]).map(df)
    assert out["text"].to_list() == ["A", "<p>b</p>", "no text"]
    assert out["html_status"].to_list() == ["ok", "skipped", "empty"]
    assert HtmlFilter(drop_empty=False).filter(out).keep.to_list() == [True, True, True]
    assert HtmlFilter().filter(out).keep.to_list() == [True, True, False]


def test_an_extractor_that_cannot_start_is_one_clear_error(tmp_path):
    """An extractor that cannot be imported is a config error: `corpus check` said ok and the run ended in
    a RuntimeError traceback from the extraction child."""
    with pytest.raises(ValueError, match="got 'nope:extract': No module named 'nope'"):
        HtmlToText(extractor="nope:extract")
    with pytest.raises(ValueError, match="got 'json:nothing': module 'json' has no attribute 'nothing'"):
        HtmlToText(extractor="json:nothing")
    with pytest.raises(ValueError, match="extractor 'json:decoder' is not a function"):
        HtmlToText(extractor="json:decoder")
    with pytest.raises(ValueError, match="module:function"):
        HtmlToText(extractor="nope")
    cfg = tmp_path / "c.yaml"
    (tmp_path / "in.jsonl").write_text('{"text": "<p>a</p>"}\n')
    cfg.write_text(f"output: {tmp_path / 'out'}\ninputs:\n  - source: s\n    path: {tmp_path / 'in.jsonl'}\n"
                   "pipeline:\n  - op: html_to_text\n    extractor: nope:extract\n")
    for cmd in ("check", "run"):
        res = run_cli(cmd, str(cfg))
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert "got 'nope:extract': No module named 'nope'" in res.stderr
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="timeout_s"):
        HtmlToText(timeout_s=0)


def test_corpus_check_says_when_an_input_holds_no_html(tmp_path: Path):
    """html_to_text on plain text gives no text for any page, so html_filter dropped the whole input; the
    config check now says so from the input's first documents, for the inputs the operator applies to."""
    (tmp_path / "pages.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in (
        "<!DOCTYPE html><html><body><p>A page about rivers.</p></body></html>", "plain words")))
    (tmp_path / "notes.jsonl").write_text("".join(json.dumps({"text": f"note {i}: a < b and c > d"}) + "\n"
                                                  for i in range(5)))

    def check(sources: str) -> str:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"output: {tmp_path / 'out'}\ninputs:\n  - {{source: pages, path: {tmp_path / 'pages.jsonl'}}}\n"
                       f"  - {{source: notes, path: {tmp_path / 'notes.jsonl'}}}\npipeline:\n"
                       f"  - {{op: html_to_text{sources}}}\n  - {{op: html_filter}}\n")
        res = run_cli("check", str(cfg))
        return " ".join((res.stdout + res.stderr).split())

    said = check("")
    assert ("pipeline[0] 'html_to_text': input 'notes': none of the first 5 documents holds an HTML tag" in said
            and "input 'pages'" not in said), said
    said = check(", sources: [pages]")
    assert said.startswith("ok:") and "HTML tag" not in said, said
