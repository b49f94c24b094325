"""Document embeddings with the shipped all-MiniLM-L6-v2, end to end: the `embed` sink, semantic dedup
of paraphrases written for these tests (found at the default threshold, unrelated documents on the same
topic not), identical results for 1 and 2 workers, resume after a failure and after damage, float16 and
first-N-tokens vectors, the map in the report, `corpus search` and `corpus dedup explain --semantic`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from helpers import run_cli, tree_digest

from corpus import InputSpec, Pipeline
from corpus.cli import main
from corpus.stages import embed as embed_module
from corpus.stages.embed import LISTING, Embed, Embeddings, default_model, load_model
from corpus.stages.embed_map import project
from corpus.stages.semdedup import SemanticDedup

# (a document, a paraphrase of it, unrelated documents on the same topic)
TOPICS = [
    ("The city council voted on Tuesday to approve a new budget for repairing roads across the downtown area.",
     "On Tuesday the city council approved, by vote, a new budget to repair the roads throughout downtown.",
     ["The city council delayed its decision on the new public library after a dispute over who would pay for it.",
      "Residents packed the council chamber to complain about noise from the nightclubs on Main Street."]),
    ("Regular aerobic exercise strengthens the heart and lowers the risk of cardiovascular disease.",
     "Doing aerobic exercise regularly makes the heart stronger and reduces the risk of cardiovascular disease.",
     ["Eating too much salt raises blood pressure, which strains the heart over many years.",
      "A defibrillator delivers an electric shock that can restore a normal heartbeat after cardiac arrest."]),
    ("To bake the bread, mix flour, water, salt and yeast, then let the dough rise for two hours before baking.",
     "Mix the flour with water, salt and yeast, and leave the dough to rise for two hours before you bake the bread.",
     ["Sourdough gets its sour taste from wild yeast and lactic acid bacteria living in the starter.",
      "The bakery on the corner sells out of croissants by eight o'clock every morning."]),
    ("The new smartphone has a larger battery that lasts two full days on a single charge.",
     "On a single charge, the new smartphone's bigger battery lasts for two whole days.",
     ["Critics say the phone's camera struggles in low light compared with last year's model.",
      "Many users still prefer phones with a headphone jack and a removable memory card."]),
    ("Heavy rain caused the river to burst its banks, flooding hundreds of homes in the valley overnight.",
     "Overnight, hundreds of homes in the valley were flooded when heavy rain made the river burst its banks.",
     ["Engineers are building a new dam upstream to generate hydroelectric power for the region.",
      "Anglers report that trout numbers in the river have recovered after years of pollution."]),
    ("The central bank raised interest rates by half a percentage point to bring inflation under control.",
     "To get inflation under control, the central bank increased interest rates by half a percentage point.",
     ["Housing prices in the capital fell for the third month in a row as buyers waited for better deals.",
      "The government announced a plan to cut income tax for low earners starting next year."]),
    ("Our team won the championship final after scoring a goal in the last minute of extra time.",
     "In the final minute of extra time our team scored a goal and won the championship final.",
     ["The stadium will be renovated next summer with a new roof and ten thousand more seats.",
      "The club signed a young goalkeeper from the second division on a five-year contract."]),
    ("Scientists discovered a new species of frog in the rainforest that glows under ultraviolet light.",
     "A new species of frog that glows under ultraviolet light was discovered by scientists in the rainforest.",
     ["Deforestation in the rainforest has accelerated as farmers clear land for cattle and soy.",
      "Tree frogs lay their eggs on leaves above ponds so the tadpoles drop into the water."]),
]
PIECE = 600  # bytes of text per unit of work: several pieces even for this small corpus


def records() -> list[dict]:
    rows = []
    for i, (doc, para, others) in enumerate(TOPICS):
        rows += [{"id": f"t{i}-doc", "text": doc, "title": f"Topic {i}"}, {"id": f"t{i}-para", "text": para}]
        rows += [{"id": f"t{i}-other{j}", "text": o} for j, o in enumerate(others)]
    return rows


def inputs(folder: Path) -> list[InputSpec]:
    folder.mkdir(parents=True, exist_ok=True)
    rows = records()
    pl.DataFrame(rows[: len(rows) // 2]).write_ndjson(folder / "a.jsonl")  # two sources, so colours differ
    (folder / "b").mkdir(exist_ok=True)
    pl.DataFrame(rows[len(rows) // 2 :]).write_ndjson(folder / "b" / "b.jsonl")
    return [InputSpec(source="news", path=str(folder / "a.jsonl"), id_key="id"),
            InputSpec(source="misc", path=str(folder / "b"), id_key="id")]


def pipeline(**embed) -> Pipeline:
    return Pipeline([Embed(piece_bytes=PIECE, map_method="pca", **embed), SemanticDedup(clusters=3)])


def outcome(out: Path) -> pl.DataFrame:
    """Every row, kept or dropped, with the semantic columns, by row_id."""
    cols = ["row_id", "id", "semantic_cluster", "semantic_similarity", "semantic_duplicate_of",
            "semantic_duplicate_of_row"]
    kept = pl.read_parquet(out / "data").select(cols).with_columns(pl.lit(None, pl.String).alias("reason"))
    rej = pl.read_parquet(out / "rejected").select(*cols, pl.col("reject_reason").alias("reason"))
    return pl.concat([kept, rej]).sort("row_id")


def vectors(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "embeddings" / "vectors").sort("row_id")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("embed")
    ins = inputs(tmp / "in")
    res = pipeline().run(ins, tmp / "out1", workers=1, quiet=True)
    return tmp, ins, res


def test_paraphrases_go_and_documents_on_the_same_topic_stay(runs):
    tmp, _, res = runs
    out = outcome(tmp / "out1")
    dropped = out.filter(pl.col("reason").is_not_null())
    assert set(dropped["id"]) == {f"t{i}-para" for i in range(len(TOPICS))}
    assert set(dropped["reason"]) == {"semantic_duplicate"}
    assert (dropped["semantic_duplicate_of"] == dropped["id"].str.replace("-para", "-doc")).all()
    assert (dropped["semantic_similarity"] >= 0.9).all()  # the default threshold
    kept = out.filter(pl.col("reason").is_null())
    by_id = dict(zip(kept["id"], kept["row_id"], strict=True))
    assert all(by_id[k] == r for k, r in zip(dropped["semantic_duplicate_of"], dropped["semantic_duplicate_of_row"],
                                             strict=True))
    assert (kept["semantic_similarity"].drop_nulls() < 0.6).all()  # same topic, far below the threshold
    assert res.balance[0]["input"] == res.balance[0]["kept"] + res.balance[0]["rejected"]


def test_vectors_are_sentence_transformers_own(runs):
    tmp, _, _ = runs
    v = vectors(tmp / "out1")
    texts = {r["id"]: r["text"] for r in records()}
    model = load_model(str(default_model()))
    want = model.encode([texts[i] for i in v["id"]], normalize_embeddings=True, convert_to_numpy=True)
    assert v.schema["embedding"] == pl.Array(pl.Float32, 384)
    assert np.allclose(v["embedding"].to_numpy(), want, atol=1e-5)
    listing = json.loads((tmp / "out1" / "embeddings" / LISTING).read_text())
    assert listing["docs"] == len(texts) and len(listing["files"]) > 3 and listing["max_tokens"] == 256


@pytest.mark.slow
def test_identical_across_worker_counts(runs):
    tmp, ins, _ = runs
    pipeline().run(ins, tmp / "out2", workers=2, quiet=True)
    assert outcome(tmp / "out2").equals(outcome(tmp / "out1"))
    assert vectors(tmp / "out2").equals(vectors(tmp / "out1"))


def test_resumes_after_a_failure_and_redoes_a_damaged_piece(runs, tmp_path, monkeypatch):
    tmp, ins, _ = runs
    calls = []
    real = embed_module.embed_piece

    def dies_on_the_fourth(job):
        calls.append(job.name)
        if len(calls) == 4:
            raise KeyboardInterrupt("killed")
        return real(job)

    monkeypatch.setattr(embed_module, "embed_piece", dies_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        pipeline().run(ins, tmp_path / "out", workers=1, quiet=True)
    monkeypatch.setattr(embed_module, "embed_piece", real)
    pipeline().run(ins, tmp_path / "out", workers=1, quiet=True)
    listing = json.loads((tmp_path / "out" / "embeddings" / LISTING).read_text())
    pieces = {f["name"]: f["rows"] for f in listing["files"]}
    assert listing["embedded"] == listing["docs"] - sum(pieces[n] for n in calls[:3])  # only unfinished pieces
    assert tree_digest(tmp_path / "out" / "embeddings") == tree_digest(tmp / "out1" / "embeddings")  # bytes
    assert outcome(tmp_path / "out").equals(outcome(tmp / "out1"))
    # a damaged vectors file: the next run redoes that piece alone and publishes it intact
    work = next((tmp_path / "out" / "work").glob("01-embed-*/artifacts"))
    victim = work / listing["files"][1]["file"]
    victim.write_bytes(victim.read_bytes()[:-10] + b"0123456789")
    pipeline().run(ins, tmp_path / "out", workers=1, quiet=True)
    again = json.loads((tmp_path / "out" / "embeddings" / LISTING).read_text())
    assert again["embedded"] == listing["files"][1]["rows"]
    assert vectors(tmp_path / "out").equals(vectors(tmp / "out1"))
    Embeddings.open(tmp_path / "out").read(1)  # hashed as read: intact
    # corpus verify checks the published vectors too (it said ok over a damaged one)
    assert run_cli("verify", str(tmp_path / "out")).returncode == 0
    published = tmp_path / "out" / "embeddings" / again["files"][0]["file"]
    published.write_bytes(published.read_bytes()[:-10] + b"0123456789")
    bad = run_cli("verify", str(tmp_path / "out"))
    assert bad.returncode == 1 and f"embeddings/{again['files'][0]['file']}: content changed" in bad.stdout


def test_float16_vectors_of_the_first_tokens(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    long = "The quick brown fox jumps over the lazy dog near the river bank. " * 40
    pl.DataFrame({"text": [long, "A short one."]}).write_ndjson(src / "a.jsonl")
    Pipeline([Embed(dtype="float16", max_tokens=16, map_sample=0)]).run(
        [InputSpec(source="s", path=str(src))], tmp_path / "out", workers=1, quiet=True)
    v = pl.read_parquet(tmp_path / "out" / "embeddings" / "vectors")
    assert v.schema["embedding"] == pl.Array(pl.Float16, 384)
    want = load_model(str(default_model()), 16).encode([long, "A short one."], normalize_embeddings=True)
    assert np.array_equal(v["embedding"].to_numpy(), want.astype(np.float16))
    first = load_model(str(default_model()), 16).encode([long[:80]], normalize_embeddings=True)
    assert np.allclose(want[0], first[0], atol=1e-6)  # 16 tokens: the same as the first sentence alone
    assert json.loads((tmp_path / "out" / "embeddings" / LISTING).read_text())["max_tokens"] == 16
    assert not (tmp_path / "out" / "embeddings" / "map.json").exists()


def test_the_report_has_a_map_coloured_by_source_and_cluster(runs):
    tmp, _, _ = runs
    report = json.loads((tmp / "out1" / "report.json").read_text())
    assert not report["errors"]
    fig = report["sections"]["stage-embed"]["figures"]["01-embed"]
    assert fig["docs"] == 32 and fig["map"]["sample"] == 32 and fig["map"]["method"] == "pca"
    clusters = fig["map"]["clusters"]
    assert sum(c["size"] for c in clusters) == 32 and clusters[0]["size"] >= clusters[-1]["size"]
    titles = [t for c in clusters for t in c["titles"]]
    assert "Topic 0" in titles or any(t.startswith("Topic") for t in titles)  # meta.title first
    html = (tmp / "out1" / "report.html").read_text()
    section = html.split('id="stage-embed"')[1].split("</section>")[0]
    assert section.count("<svg") == 2 and "Coloured by source" in section and "Coloured by cluster" in section
    assert "news (" in section and "misc (" in section and 'stroke-linecap="round"' in section
    sem = report["sections"]["stage-semantic_dedup"]["figures"]["02-semantic_dedup"]
    assert sem["removed"] == len(TOPICS) and {s["threshold"] for s in sem["sweep"]} >= {0.9, 0.95}


def test_search_finds_the_nearest_and_says_what_became_of_it(runs, capsys):
    tmp, _, _ = runs
    assert main(["search", str(tmp / "out1"), "floods after the river overflowed in heavy rain", "-k", "3",
                 "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)[0]["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert {hits[0]["id"], hits[1]["id"]} == {"t4-doc", "t4-para"}
    status = {h["id"]: h["status"] for h in hits}
    assert status["t4-doc"] == "kept" and status["t4-para"] == "dropped by semantic_dedup: semantic_duplicate"
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    queries = tmp / "queries.txt"
    queries.write_text("bread dough rising\n\ninterest rates and inflation\n")
    assert main(["search", str(tmp / "out1"), "--queries", str(queries), "-k", "1", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [f["hits"][0]["id"][:2] for f in found] == ["t2", "t5"]
    # the run's embeddings/ folder named instead of the run: the same, found in the run's corpus
    assert main(["search", str(tmp / "out1" / "embeddings"), "bread dough rising", "-k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["hits"][0]["status"] in ("kept", "dropped by semantic_dedup: "
                                                                             "semantic_duplicate")
    assert main(["search", str(tmp / "in"), "x"]) == 2
    assert "no embeddings.json" in capsys.readouterr().err
    assert main(["search", str(tmp / "no-such-run"), "x"]) == 2
    assert f"{tmp / 'no-such-run'}: no such folder" in capsys.readouterr().err


def test_explain_counts_each_threshold_without_dropping_anything(tmp_path, capsys):
    ins = inputs(tmp_path / "in")
    out = tmp_path / "out"
    Pipeline([Embed(piece_bytes=PIECE, map_sample=0)]).run(ins, out, workers=1, quiet=True)
    before = sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*"))
    assert main(["dedup", "explain", "--semantic", str(out), "--thresholds", "0.5,0.9,0.99", "--clusters", "2",
                 "-w", "1", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    removed = {s["threshold"]: s["removed"] for s in res["sweep"]}
    assert removed[0.9] == len(TOPICS) and removed[0.99] == 0 and removed[0.5] >= removed[0.9]
    assert res["docs"] == 32 and res["clusters"] == 2
    pairs = {e["threshold"]: e["pairs"] for e in res["examples"]}
    assert all(p["dropped"]["id"].endswith("-para") and p["similarity"] >= 0.9 for p in pairs[0.9])
    assert sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*")) == before
    assert main(["dedup", "explain", "--semantic", str(out), "-w", "1"]) == 0
    text = capsys.readouterr().out
    assert "0.900" in text and "ran semantic_dedup already" not in text and res["already"] == []


def test_explain_says_when_the_corpus_was_deduplicated_already(runs, capsys):
    """Explained after its own semantic_dedup, a corpus shows nothing left to remove: say why."""
    tmp, _, _ = runs
    assert main(["dedup", "explain", "--semantic", str(tmp / "out1"), "-w", "1"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "This corpus's pipeline ran semantic_dedup already (02-semantic_dedup, threshold 0.9): the counts are " \
           "of the documents it kept" in text


def test_a_model_folder_that_is_not_one_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="is not a local sentence-transformers folder"):
        Embed(model=str(tmp_path))


@pytest.mark.slow
def test_umap_map_is_repeatable():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 16)).astype(np.float32)
    a, used = project(x, "umap", 0)
    b, _ = project(x, "umap", 0)
    assert used == "umap" and np.array_equal(a, b) and a.min() == 0.0 and a.max() == 1.0
    assert project(x[:5], "umap", 0)[1] == "pca"  # too few for UMAP
