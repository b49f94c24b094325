"""Text hygiene (normalize_text): mojibake repaired by ftfy on exactly the rows ftfy would touch,
control characters, NFC/NFKC, whitespace; counts per fix kind in the catalog and the report."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import polars as pl
import pytest
from ftfy import fix_text
from ftfy.badness import MOJIBAKE_CATEGORIES, is_bad

from benchmarks.clean import hygiene_plain
from corpus import InputSpec, Pipeline
from corpus.catalog import Catalog
from corpus.stages.clean import NormalizeText, _ftfy_config, fix_mojibake, mojibake_pattern

MOJIBAKE = ["sÃ³ bien", "voilÃ le travail", "âœ” No problems", "Ð¿Ñ€Ð¸Ð²ÐµÑ‚ Ð¼Ð¸Ñ€", "It\x92s fine",
            "naÃ¯ve cafÃ©", "Ã¼ber straÃŸe", "â€œquotedâ€\x9d", "æ—¥æœ¬èªž"]
CLEAN = ["plain ascii", "café naïve über", "東京 中文 数据", "γλώσσα привет", "¯\\_(ツ)_/¯", "",
         "“curly” ‘quotes’ — dash"]


def test_mojibake_pattern_finds_every_row_ftfy_would_touch():
    """The polars port of ftfy's detector matches wherever ftfy's own regex does (so skipping the other
    rows changes nothing), on random strings of the characters mojibake is made of."""
    pool = "".join(v for v in MOJIBAKE_CATEGORIES.values() if "\\" not in v) + "ÂÃÎÐ€œŠš¢Ÿž\xa0\xad®©°·»×²³ØÙ"
    pool += "\x80\x85\x9f abcXYZ.1é\n"
    rng = random.Random(0)
    texts = ["".join(rng.choice(pool) for _ in range(rng.randint(1, 6))) for _ in range(40000)]
    texts += ["".join(chr(rng.randint(0x20, 0x2FFF)) for _ in range(4)) for _ in range(20000)] + MOJIBAKE + CLEAN
    found = pl.Series(texts).str.contains(mojibake_pattern()).to_list()
    missed = [t for t, f in zip(texts, found, strict=True) if is_bad(t) and not f]
    assert not missed, missed[:10]
    extra = sum(f and not is_bad(t) for t, f in zip(texts, found, strict=True))
    assert extra <= len(texts) // 1000  # a port, not a catch-all
    assert not any(pl.Series(CLEAN).str.contains(mojibake_pattern()))


def test_fix_mojibake_equals_ftfy_on_every_row():
    texts = MOJIBAKE + CLEAN + [m + "\n" + c for m, c in zip(MOJIBAKE, CLEAN, strict=False)]
    got = fix_mojibake(pl.Series(texts)).to_list()
    assert got == [fix_text(t, _ftfy_config()) for t in texts]
    assert got[:3] == ["só bien", "voilà le travail", "✔ No problems"]


def test_each_step_and_its_counter():
    texts = ["sÃ³ bien\r\nline  \n\n\n\nend ", "plain ascii", "cafe\u0301\x00 ok\x07\u200b", "ＬＯＵＤ\u00a0noise",
             "\ufeffstart\x0cnext\u2028last"]
    out = NormalizeText().map(pl.DataFrame({"text": texts}))
    assert out["text"].to_list() == ["só bien\nline\n\nend", "plain ascii", "café ok", "ＬＯＵＤ noise",
                                     "start\nnext\nlast"]
    assert out["mojibake_fixed"].to_list() == [1, 0, 0, 0, 0]
    assert out["control_chars_removed"].to_list() == [0, 0, 3, 0, 1]
    assert out["unicode_normalised"].to_list() == [0, 0, 1, 0, 0]
    assert out["whitespace_fixed"].to_list() == [1, 0, 0, 1, 1]
    nfkc = NormalizeText(form="NFKC", fix_encoding=False).map(pl.DataFrame({"text": texts}))
    assert nfkc["text"][0] == "sÃ3 bien\nline\n\nend" and nfkc["text"][3] == "LOUD noise"  # no repair; ³ -> 3
    kept = NormalizeText(form="none", remove_control=False, unicode_spaces=False).map(pl.DataFrame({"text": texts}))
    assert kept["text"][2] == "cafe\u0301\x00 ok\x07\u200b" and kept["text"][3] == "ＬＯＵＤ\u00a0noise"


def test_batch_equals_plain_per_document():
    """normalize_text on a batch equals the same steps applied one document at a time (ftfy on every
    document, re and unicodedata): skipping rows and vectorising change nothing."""
    rng = random.Random(3)
    parts = MOJIBAKE + CLEAN + ["\r\n", "\n\n\n", "  \n", "\x00", "\u00a0", "\u3000", "e\u0301", "\x0b", "\t"]
    texts = ["".join(rng.choice(parts) + rng.choice(["", " ", "x"]) for _ in range(rng.randint(1, 8)))
             for _ in range(2000)]
    out = NormalizeText().map(pl.DataFrame({"text": texts}))["text"].to_list()
    assert out == [hygiene_plain(t) for t in texts]


def test_missing_ftfy_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ftfy", None)
    with pytest.raises(ValueError, match=r"fix_encoding needs ftfy: pip install 'corpusforge\[clean\]'"):
        NormalizeText()
    NormalizeText(fix_encoding=False)


def test_counters_reach_the_catalog_and_the_report(tmp_path: Path):
    src = tmp_path / "in"
    src.mkdir()
    texts = ["sÃ³ bien", "fine text", "tab\x07bell  \nend", "cafe\u0301"]
    (src / "a.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = tmp_path / "out"
    res = Pipeline([NormalizeText()]).run([InputSpec(source="web", path=str(src))], out, workers=1, quiet=True)
    got = dict(Catalog(out / "catalog.duckdb", create=False).query(
        "SELECT counter, sum(value) FROM stage_counters WHERE run_id = ? GROUP BY ALL", [res.run_id]))
    assert got == {"mojibake_fixed": 1, "control_chars_removed": 1, "unicode_normalised": 1, "whitespace_fixed": 1}
    figures = json.loads((out / "report.json").read_text())["sections"]["stage-normalize_text"]["figures"]
    assert figures["01-normalize_text"]["by_source"]["web"]["mojibake_fixed"] == 1
    assert pl.read_parquet(out / "data")["text"].to_list() == ["só bien", "fine text", "tabbell\nend", "café"]
