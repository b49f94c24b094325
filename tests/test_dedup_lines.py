"""Line / paragraph dedup: repeated spans leave every document but the first (or all), documents left
too short are dropped, texts nobody repeats are untouched byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from corpus import InputSpec, Pipeline
from corpus.executor import PipelineError
from corpus.stages.dedup_lines import LineDedup, LineDedupFilter

BOILER = "Subscribe to our newsletter for weekly updates"
FOOTER = "Copyright 2024 Example Corp. All rights reserved."


def _body(i: int, n: int = 6) -> str:
    return "\n".join(f"Unique sentence {j} of document {i} with several plain words in it" for j in range(n))


def _write(folder: Path, texts: list[str]) -> list[InputSpec]:
    folder.mkdir(parents=True)
    with open(folder / "a.jsonl", "w") as fh:
        for i, t in enumerate(texts):
            fh.write(json.dumps({"id": f"d{i}", "text": t}) + "\n")
    return [InputSpec(source="s", path=str(folder), id_key="id")]


def _run(tmp: Path, texts: list[str], ops, workers: int = 1) -> tuple[pl.DataFrame, pl.DataFrame]:
    res = Pipeline(ops).run(_write(tmp / "in", texts), tmp / "out", workers=workers, quiet=True)
    assert all(b["ok"] for b in res.balance)
    kept = pl.read_parquet(tmp / "out" / "data" / "*.parquet").sort("id")
    rej_files = sorted((tmp / "out" / "rejected").glob("*/*.parquet"))
    rej = pl.concat([pl.read_parquet(p) for p in rej_files]) if rej_files else kept.clear()
    return kept, rej


def test_lines_removed_from_all_but_first_and_short_docs_dropped(tmp_path):
    texts = [_body(0), BOILER + "\n" + _body(1) + "\n" + FOOTER, BOILER + "\n" + _body(2) + "\n" + FOOTER,
             _body(3, 1) + "\n" + FOOTER, "  " + BOILER.upper() + "  \n" + _body(4) + "\n\n",
             "Short text untouched"]
    kept, rej = _run(tmp_path, texts, [LineDedup(), LineDedupFilter(min_words=20)])
    got = dict(zip(kept["id"], kept["text"], strict=True))
    assert got["d0"] == texts[0] and got["d5"] == texts[5]  # untouched, byte for byte
    assert got["d1"] == texts[1]  # the first occurrence of both repeated lines stays
    assert got["d2"] == _body(2)  # later copies go, with their line breaks
    assert got["d4"] == _body(4) + "\n\n"  # matched after normalisation (case, spaces)
    assert set(rej["id"]) == {"d3"} and set(rej["reject_reason"]) == {"too_little_left"}
    assert set(rej["reject_stage"]) == {"line_dedup_filter"} and rej["words_left"][0] < 20
    counts = dict(zip(kept["id"], kept["dup_spans_removed"], strict=True))
    assert counts == {"d0": 0, "d1": 0, "d2": 2, "d4": 1, "d5": 0}
    chars = dict(zip(kept["id"], kept["dup_chars_removed"], strict=True))
    assert chars["d2"] == len(texts[2]) - len(got["d2"])
    # any frame (here: the shard reversed) gets its rows' results, matched by row_id
    op = LineDedup()
    op.load(next((tmp_path / "out" / "work").glob("01-line_dedup-*/artifacts")))
    shard = pl.read_parquet(tmp_path / "out" / "work" / "00-read" / "shards" / "*.parquet").reverse()
    again = op.map(shard)
    assert {i: t for i, t in zip(again["id"], again["text"], strict=True) if i in got} == got


def test_paragraphs_keep_none_and_min_docs(tmp_path):
    para = "A repeated paragraph.\nIt spans two lines."
    rare = "A paragraph found in only two documents here."
    texts = [f"{para}\n\n{rare}\n\nOwn text of one.", f"Own text two.\n\n{para}\n\n{rare}", f"{para}\n\nOwn three."]
    kept, _ = _run(tmp_path, texts, [LineDedup(unit="paragraph", keep="none", min_docs=3)])
    got = dict(zip(kept["id"], kept["text"], strict=True))
    assert got == {"d0": f"{rare}\n\nOwn text of one.", "d1": f"Own text two.\n\n{rare}", "d2": "Own three."}


@pytest.mark.parametrize("workers", [2])
def test_same_result_with_workers(tmp_path, workers):
    texts = [BOILER + "\n" + _body(i) for i in range(30)]
    kept, rej = _run(tmp_path, texts, [LineDedup(), LineDedupFilter(min_words=5)], workers=workers)
    assert kept.height == 30 and rej.height == 0
    assert kept["text"][0].startswith(BOILER) and not any(t.startswith(BOILER) for t in kept["text"][1:])


def test_filter_needs_line_dedup_before_it():
    with pytest.raises(PipelineError, match="dup_chars_removed"):
        Pipeline([LineDedupFilter()]).check()
    with pytest.raises(ValueError):
        LineDedup(min_docs=1)
