"""End-to-end runs of the Python API on real files: routing, counts, contract checks."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pytest
from helpers import make_jsonl_corpus, read_all

from corpus import InputSpec, MapOperator, Pipeline
from corpus.catalog import Catalog
from corpus.executor import PipelineError, _balance
from corpus.stages.clean import NormalizeText
from corpus.stages.dedup import ExactDedup
from corpus.stages.filter import LengthFilter
from corpus.work import OperatorError


def _run(tmp_path: Path, ops, workers: int = 1, **kw):
    return Pipeline(ops).run(inputs=[InputSpec(source="web", path=str(tmp_path / "in"))],
                             output=tmp_path / "out", workers=workers, quiet=True, **kw)


def test_filter_and_dedup_route_every_document(tmp_path: Path):
    n = make_jsonl_corpus(tmp_path / "in", files=3, docs_per_file=200)
    res = _run(tmp_path, [NormalizeText(), LengthFilter(min_chars=10), ExactDedup()])
    out = res.output
    kept = pl.read_parquet(out / "data" / "*.parquet")
    rejected = read_all(out / "rejected")
    assert kept.height + rejected.height == n
    assert res.balance == [{"source": "web", "input": n, "kept": kept.height, "rejected": rejected.height,
                            "quarantined": 0, "blank": 0, "ok": True}]
    # the right operator and reason on every dropped row
    reasons = {(a, b) for a, b, _ in rejected.group_by("reject_stage", "reject_reason").len().iter_rows()}
    too_short = rejected.filter(pl.col("reject_reason") == "too_few_chars")
    assert too_short["text"].str.len_chars().max() < 10
    assert set(reasons) == {("length_filter", "too_few_chars"), ("exact_dedup", "exact_duplicate")}
    # dedup keeps one copy of each text, and names the kept copy
    assert kept["text"].n_unique() == kept.height
    dups = rejected.filter(pl.col("reject_reason") == "exact_duplicate")
    assert set(dups["duplicate_of"]) <= set(kept["id"])
    assert (dups.join(kept.select("id", pl.col("text").alias("kept_text")), left_on="duplicate_of", right_on="id")
            .filter(pl.col("text") != pl.col("kept_text")).height == 0)
    # scores stay as columns, on kept and rejected rows alike
    assert {"n_chars", "n_words"} <= set(kept.columns) and "n_chars" in too_short.columns
    # ids are unique and provenance points back at the input line
    assert kept["id"].n_unique() == kept.height
    row = kept.row(0, named=True)
    line = (tmp_path / "in" / row["src_file"]).read_text().splitlines()[row["src_row"] - 1]
    assert json.loads(line)["n"] == json.loads(row["meta"])["n"]


def test_inputs_may_be_paths_or_one_spec(tmp_path: Path):
    """A run reads what it is given as InputSpecs, as paths (each a source named after it, as `corpus
    profile` names one) or as one of either, with the same shards; anything else is an InputError that
    names it, before anything is written."""
    from corpus.readers import InputError
    from corpus.stages.profile import profile_input

    n = make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=30)
    make_jsonl_corpus(tmp_path / "more", files=1, docs_per_file=10, seed=1)
    spec = InputSpec(source="in", path=str(tmp_path / "in"))
    runs = {"spec": [spec], "one spec": spec, "path": tmp_path / "in", "str": str(tmp_path / "in")}
    for name, inputs in runs.items():
        res = Pipeline([]).run(inputs, tmp_path / name, workers=1, quiet=True)
        assert res.balance[0]["source"] == "in" and res.balance[0]["kept"] == n, name
    shards = {name: sorted(p.read_bytes() for p in (tmp_path / name / "data").glob("*.parquet")) for name in runs}
    assert all(v == shards["spec"] for v in shards.values())
    res = Pipeline([]).run([tmp_path / "in", InputSpec(source="extra", path=str(tmp_path / "more"))],
                           tmp_path / "mixed", workers=1, quiet=True)
    assert [(b["source"], b["kept"]) for b in res.balance] == [("extra", 10), ("in", n)]
    assert profile_input([tmp_path / "in"], tmp_path / "prof", workers=1)["overall"]["docs"] == n
    # An InputSpec's path may be a pathlib path (or a list holding some), as a path input may; its other
    # fields are checked as a config's: text_key=5 failed deep in a reader ("argument of type 'int' is not
    # iterable"), meta_keys="url" was read letter by letter.
    res = Pipeline([]).run([InputSpec(source="in", path=tmp_path / "in"),
                            InputSpec(source="extra", path=[str(tmp_path / "more" / "part-000.jsonl")])],
                           tmp_path / "pathlib", workers=1, quiet=True)
    assert [(b["source"], b["kept"]) for b in res.balance] == [("extra", 10), ("in", n)]
    for spec_bad, says in ((InputSpec(source="in", path=str(tmp_path / "in"), text_key=5),  # type: ignore[arg-type]
                            "inputs[0] (source 'in'): InputSpec.text_key: expected str, got int 5"),
                           (InputSpec(source="in", path=str(tmp_path / "in"), meta_keys="url"),  # type: ignore[arg-type]
                            "InputSpec.meta_keys: expected list[str] | None, got str 'url'")):
        with pytest.raises(InputError, match=re.escape(says)):
            Pipeline([]).run([spec_bad], tmp_path / "bad", workers=1, quiet=True)
    frame = pl.DataFrame({"text": ["a document in memory"]})  # says how to read one (it listed what it takes)
    for bad, says in ((5, "got int"), ([spec, None], "inputs[1]: expected an InputSpec or a path, got NoneType"),
                      (frame, "a DataFrame in memory is not read directly: write it as Parquet"),
                      (frame.to_arrow(), "a Table in memory is not read directly")):
        with pytest.raises(InputError, match=says.replace("[", r"\[").replace("]", r"\]")):
            Pipeline([]).run(bad, tmp_path / "bad", workers=1, quiet=True)
    assert not (tmp_path / "bad").exists()
    with pytest.raises(PipelineError, match="output: give the folder to write the corpus into"):  # was pathlib's
        Pipeline([]).run(spec, None, workers=1, quiet=True)  # type: ignore[arg-type]
    for size, says in ((0, r"too small \(0 bytes\)"), (-1, r"too small \(-1 bytes\)"),
                       ("1MB", "expected a number of bytes, got '1MB'")):  # -1 and 0 ran, a shard per chunk
        with pytest.raises(PipelineError, match=f"shard_max_bytes: {says}"):
            Pipeline([]).run(spec, tmp_path / "bad", workers=1, quiet=True, shard_max_bytes=size)
    assert not (tmp_path / "bad").exists()


def test_an_input_may_not_read_the_output_folder(tmp_path: Path):
    """An input folder read whole that holds the output folder would read the run's own files from the next
    run on (the catalog, the manifest, the shards): refused before anything is written, by the run, the
    profile and `corpus check`. A glob that cannot reach into the output is fine, run after run."""
    from corpus.readers import InputError
    from corpus.stages.profile import profile_input

    n = make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=10)
    with pytest.raises(InputError, match=r"input 'in': it reads .*/in, which holds the output folder"):
        Pipeline([]).run(tmp_path / "in", tmp_path / "in" / "out", workers=1, quiet=True)
    for inputs in (tmp_path / "in", tmp_path / "in" / "part-000.jsonl"):  # the output folder holds an input file
        with pytest.raises(InputError, match=r"part-000.jsonl lies inside the output folder .*/in, whose files"):
            Pipeline([]).run(inputs, tmp_path / "in", workers=1, quiet=True)
    with pytest.raises(InputError, match="which holds the output folder"):
        profile_input(tmp_path / "in", tmp_path / "in" / "prof", workers=1)
    with pytest.raises(InputError, match="which holds the output folder"):  # a ** glob reads below too
        Pipeline([]).run(InputSpec(source="s", path=str(tmp_path / "in" / "**" / "*.jsonl")), tmp_path / "in" / "o",
                         workers=1, quiet=True)
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["part-000.jsonl", "part-001.jsonl"]
    glob = InputSpec(source="s", path=str(tmp_path / "in" / "*.jsonl"))
    for _ in range(2):
        assert Pipeline([]).run(glob, tmp_path / "in" / "out", workers=1, quiet=True).balance[0]["kept"] == n
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"output: {tmp_path / 'in' / 'out2'}\ninputs:\n  - source: s\n    path: {tmp_path / 'in'}\n")
    from helpers import run_cli

    res = run_cli("check", str(cfg))
    assert res.returncode == 2 and "which holds the output folder" in res.stderr, res.stderr


def test_another_runs_output_is_read_by_its_documents_only(tmp_path: Path):
    """A run's output folder as input: its data/ shards chain into a new run (ids kept with id_key: id); the
    folder whole, or a glob reaching its work shards, quarantine or catalog, is refused by name (a ** glob
    used to read every document twice, from data/ and from work/)."""
    from corpus.readers import InputError

    n = make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=10)
    first = Pipeline([]).run(tmp_path / "in", tmp_path / "a", workers=1, quiet=True)
    for path in (tmp_path / "a", tmp_path / "a" / "**" / "*.parquet", tmp_path / "a" / "work"):
        with pytest.raises(InputError, match=r"lies in the corpusforge output folder .*/a but is not one of its "
                                             r"documents; to read them, give path: .*/a/data"):
            Pipeline([]).run(InputSpec(source="s", path=str(path)), tmp_path / "b", workers=1, quiet=True)
    (tmp_path / "a" / "raw").mkdir()  # a folder of the user's own beside the run's: read as any other
    (tmp_path / "a" / "raw" / "x.jsonl").write_text('{"text": "one of mine"}\n')
    mine = Pipeline([]).run(InputSpec(source="s", path=str(tmp_path / "a" / "raw")), tmp_path / "c", workers=1,
                            quiet=True)
    assert mine.balance[0]["kept"] == 1
    again = Pipeline([]).run(InputSpec(source="s", path=str(tmp_path / "a" / "data"), id_key="id"), tmp_path / "b",
                             workers=1, quiet=True)
    assert again.balance[0]["kept"] == first.balance[0]["kept"] == n
    assert (pl.read_parquet(tmp_path / "b" / "data" / "*.parquet")["id"].to_list()
            == pl.read_parquet(tmp_path / "a" / "data" / "*.parquet")["id"].to_list())


def test_an_id_key_or_meta_key_no_record_has_is_said(tmp_path: Path, caplog):
    """A misspelt id_key gave every document a derived id without a word (`corpus check` samples the first
    records; a run had read them all and said nothing). Now the run warns, from every record it read."""
    make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=10)
    spec = InputSpec(source="web", path=str(tmp_path / "in"), id_key="nid", meta_keys=["tag", "tags"])
    with caplog.at_level("WARNING"):
        res = Pipeline([]).run(inputs=[spec], output=tmp_path / "out", workers=1, quiet=True)
    assert res.balance[0]["kept"] == 20
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert ("input 'web': no record has the field 'nid' that id_key names, so every document got a derived id "
            "(web:FILE:LINE); fields: n, tag, text — check id_key") in said
    assert "input 'web': no record has the field 'tags' that meta_keys names; fields: n, tag, text — check meta_keys" \
        in said
    assert not any("'tag' that" in m for m in said)
    caplog.clear()
    with caplog.at_level("WARNING"):
        Pipeline([]).run(inputs=[InputSpec(source="web", path=str(tmp_path / "in"), id_key="n")],
                         output=tmp_path / "out2", workers=1, quiet=True)
    assert not [r for r in caplog.records if "no record has" in r.getMessage()]
    (tmp_path / "nested").mkdir()  # a dotted id_key: the nested field is there, and the ids are the records'
    (tmp_path / "nested" / "a.jsonl").write_text("".join(
        json.dumps({"doc": {"body": f"text {i}"}, "meta": {"url": f"http://ex.com/{i}"}}) + "\n" for i in range(3)))
    caplog.clear()
    with caplog.at_level("WARNING"):
        Pipeline([]).run(inputs=[InputSpec(source="n", path=str(tmp_path / "nested"), text_key="doc.body",
                                           id_key="meta.url")], output=tmp_path / "out3", workers=1, quiet=True)
    assert not [r for r in caplog.records if "no record has" in r.getMessage()]
    assert sorted(pl.read_parquet(tmp_path / "out3" / "data" / "*.parquet")["id"]) == [
        f"http://ex.com/{i}" for i in range(3)]


def test_a_dotted_id_key_no_record_has_is_said(tmp_path: Path, caplog):
    """id_key: doc.nope where every record's doc holds body and u: the run said nothing and every id was
    derived, as the read's field figures were top-level only and 'doc' was there. The fields inside objects
    are noted too, so the run warns as for a plain key, and not when some record has the nested field."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text("".join(
        json.dumps({"doc": {"body": f"text {i}", "u": f"u{i}"}}) + "\n" for i in range(3)))

    def warned(out: str, **keys) -> list[str]:
        caplog.clear()
        with caplog.at_level("WARNING"):
            Pipeline([]).run(inputs=[InputSpec(source="a", path=str(tmp_path / "in"), text_key="doc.body", **keys)],
                             output=tmp_path / out, workers=1, quiet=True)
        return [r.getMessage() for r in caplog.records if "no record has" in r.getMessage()]

    assert warned("out1", id_key="doc.nope") == [
        "input 'a': no record has the field 'doc.nope' that id_key names, so every document got a derived id "
        "(a:FILE:LINE); fields: doc — check id_key"]
    assert pl.read_parquet(tmp_path / "out1" / "data" / "*.parquet")["id"].to_list() == [
        "a:a.jsonl:1", "a:a.jsonl:2", "a:a.jsonl:3"]
    assert warned("out2", id_key="doc.u") == []
    # meta_keys name top-level fields: a dotted one is said, with the way to keep it
    assert warned("out3", meta_keys=["doc.u"]) == [
        "input 'a': no record has the field 'doc.u' that meta_keys names; fields: doc — check meta_keys to "
        "top-level fields; 'doc' is kept in meta whole when meta_keys names it"]
    # one record of another file has the nested field: no warning, and that record's id is its own
    (tmp_path / "in" / "b.jsonl").write_text(json.dumps({"doc": {"body": "more", "nope": "mine"}}) + "\n")
    assert warned("out4", id_key="doc.nope") == []
    assert "mine" in pl.read_parquet(tmp_path / "out4" / "data" / "*.parquet")["id"].to_list()


def test_nested_fields_are_noted_on_both_read_paths_and_unknown_ones_warn_nothing():
    """The per-record path (decoded objects) and the frame path (struct columns) note the same nested
    paths; a marker without them (written before they were noted) or a path deeper than they go cannot
    rule a key out, so nothing is said for it."""
    from corpus.readers.fields import FieldCounter, has_field, merge, unused_keys

    recs = [{"doc": {"body": "x", "u": None, "m": {"k": 1, "*": 2}}}, {"doc": None}, {"doc": "text", "n": 1}]
    by_record = FieldCounter()
    for r in recs:
        by_record.record(r)
    by_frame = FieldCounter()
    by_frame.frame(pl.DataFrame(recs[:2]), set())  # a '*' field is a name here, not a wildcard
    assert by_record.stats()["doc"]["nested"] == by_frame.stats()["doc"]["nested"] == {"body": 1, "m": 1,
                                                                                       "m.*": 1, "m.k": 1}
    seen = merge(merge({}, by_record.stats()), by_frame.stats())
    assert seen["doc"]["nested"]["body"] == 2 and seen["doc"]["types"] == ["object", "string"]
    assert [has_field(seen, k) for k in ("doc.body", "doc.m.k", "doc.u", "doc.x.y", "n.x", "z.x")] == [
        True, True, False, False, False, False]
    deep = FieldCounter()
    deep.record({"a": {"b": {"c": {"d": {"e": 1}}}}})
    assert has_field(deep.stats(), "a.b.c.d") is True and has_field(deep.stats(), "a.b.c.d.e") is None
    assert has_field(deep.stats(), "a.b.x.d.e") is False
    old = {"doc": {"types": ["object"], "rows": 2}}  # a marker from before nested paths were noted
    assert has_field(merge(old, by_record.stats()), "doc.nope") is None
    spec = InputSpec(source="a", path="x", text_key="doc.body", id_key="doc.nope")
    assert unused_keys([spec], [{"source": "a", "fields": {"doc": {"types": ["object"], "rows": 2}}}]) == []
    assert len(unused_keys([spec], [{"source": "a", "fields": by_record.stats()}])) == 1


def test_a_stage_that_passes_on_nothing_is_said(tmp_path: Path, caplog):
    """A run whose filter dropped every document (a language code in the wrong case, html_to_text given
    plain text) ended "done: 0 documents" without a word; the later stages, given nothing, are not named."""
    make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=10)
    with caplog.at_level("WARNING"):
        res = Pipeline([LengthFilter(min_words=10_000), ExactDedup()]).run(
            [InputSpec(source="web", path=str(tmp_path / "in"))], tmp_path / "out", workers=1, quiet=True)
    assert res.balance[0]["kept"] == 0 and res.balance[0]["ok"]
    line = ("01-length_filter passed on none of the 20 documents it received (e.g. too_few_words: 20): check its "
            "parameters against the data")
    assert [r.getMessage() for r in caplog.records if "passed on none" in r.getMessage()] == [line]
    assert line in json.loads((tmp_path / "out" / "report.json").read_text())["warnings"]
    caplog.clear()
    with caplog.at_level("WARNING"):
        Pipeline([LengthFilter(min_words=1)]).run([InputSpec(source="web", path=str(tmp_path / "in"))],
                                                  tmp_path / "out2", workers=1, quiet=True)
    assert not [r for r in caplog.records if "passed on none" in r.getMessage()]


def test_manifest_describes_the_shards(tmp_path: Path):
    make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=100)
    res = _run(tmp_path, [LengthFilter(min_chars=10)])
    m = json.loads((res.output / "manifest.json").read_text())
    assert m["docs"] == pl.read_parquet(res.output / "data" / "*.parquet").height
    assert [s["path"] for s in m["shards"]] == sorted(str(p.relative_to(res.output))
                                                       for p in (res.output / "data").glob("*.parquet"))
    assert {"id", "text", "source", "meta", "src_file", "src_row", "n_chars"} <= set(m["schema"])
    assert len(m["content_hash"]) == 64


def test_shards_are_bounded_in_size(tmp_path: Path):
    make_jsonl_corpus(tmp_path / "in", files=1, docs_per_file=2000)
    res = Pipeline([]).run(inputs=[InputSpec(source="web", path=str(tmp_path / "in"))], output=tmp_path / "out",
                           workers=1, quiet=True, shard_max_bytes=20_000)
    sizes = [pl.read_parquet(p)["text"].str.len_bytes().sum() for p in sorted((res.output / "data").glob("*.parquet"))]
    assert len(sizes) > 5
    longest = pl.read_parquet(res.output / "data" / "*.parquet")["text"].str.len_bytes().max()
    # a shard closes as soon as it holds max bytes: it overshoots by less than one document
    assert all(s < 20_000 + longest for s in sizes)
    assert all(s >= 20_000 for s in sizes[:-1])  # only the last shard may be smaller


def test_catalog_records_funnel_and_drops(tmp_path: Path):
    n = make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=150)
    res = _run(tmp_path, [LengthFilter(min_chars=10), ExactDedup()])
    cat = Catalog(res.output / "catalog.duckdb", create=False)
    rows = cat.query("SELECT stage, sum(docs_in), sum(docs_out) FROM unit_stats WHERE run_id = ? "
                     "GROUP BY stage ORDER BY stage", [res.run_id])
    assert rows[0] == ("00-read", n, n)
    assert rows[1][1] == n and rows[2][1] == rows[1][2]
    drops = dict(cat.query("SELECT reason, sum(docs) FROM drops WHERE run_id = ? GROUP BY reason", [res.run_id]))
    assert drops["too_few_chars"] == rows[1][1] - rows[1][2]
    assert drops["exact_duplicate"] == rows[2][1] - rows[2][2]
    assert cat.query("SELECT status FROM runs WHERE run_id = ?", [res.run_id]) == [("ok",)]


def test_balance_detects_a_missing_file(tmp_path: Path):
    make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=100)
    res = _run(tmp_path, [LengthFilter(min_chars=10)])
    markers = [json.loads(p.read_text()) for p in sorted((res.output / "work" / "00-read" / "done").glob("*.json"))]
    final = {name: [(p, p.relative_to(res.output).as_posix()) for p in sorted((res.output / name).rglob("*.parquet"))]
             for name in ("data", "rejected", "quarantine")}
    assert all(r["ok"] for r in _balance(markers, final))
    del final["rejected"][0]
    assert not _balance(markers, final)[0]["ok"]


def test_a_run_that_loses_records_publishes_nothing(tmp_path: Path, monkeypatch):
    """The balance was checked only after data/ and manifest.json were published: a run that failed it
    left its corpus in place, and `corpus verify`, export and tokenize used it. It is checked on the
    files in work/ first, and the corpus an earlier run published stays as it was."""
    import corpus.executor as executor

    make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=100)
    first = _run(tmp_path, [LengthFilter(min_chars=10)])
    out = first.output
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()
              and p.parts[len(out.parts)] in ("data", "rejected", "quarantine", "manifest.json")}
    balance = executor._balance
    monkeypatch.setattr(executor, "_balance", lambda *a: [dict(r, ok=False) for r in balance(*a)])
    with pytest.raises(executor.LostRecordsError, match=r"records unaccounted for.*web: input 200"):
        _run(tmp_path, [LengthFilter(min_chars=40)])
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()
             and p.parts[len(out.parts)] in ("data", "rejected", "quarantine", "manifest.json")}
    assert after == before
    runs = Catalog(out / "catalog.duckdb", create=False).query("SELECT status FROM runs ORDER BY started")
    assert [r[0] for r in runs] == ["ok", "failed"]


def test_wiring_is_checked_before_running(tmp_path: Path):
    @dataclass
    class NeedsLang(MapOperator):
        name = "needs_lang"
        needs = ("text", "lang")

        def map(self, df):
            return df

    with pytest.raises(PipelineError, match="needs column.*lang"):
        _run(tmp_path, [NeedsLang()])
    assert not (tmp_path / "out").exists()


def test_python_built_pipelines_are_checked_like_a_configs(tmp_path: Path):
    """What the YAML loader refuses is refused from Python too, before anything is written: a parameter of
    the wrong type (it used to run, comparing with a string), an operator class instead of an instance, a
    single operator instead of a list, a negative worker count (it used to run serially)."""
    from corpus.executor import LocalExecutor

    with pytest.raises(TypeError, match=r"LengthFilter.min_words: expected int, got str '5'"):
        Pipeline([LengthFilter(min_words="5")])
    changed = LengthFilter(min_words=5)
    changed.min_words = "5"  # type: ignore[assignment]  # changed after it was built
    with pytest.raises(PipelineError, match=r"LengthFilter.min_words: expected int"):  # the executor, directly
        LocalExecutor(workers=1, quiet=True).run([changed], [], tmp_path / "out")
    from corpus.stages.textfilters import BadWordsFilter

    with pytest.raises(TypeError, match=r"BadWordsFilter.max_count: expected int \| None, got str '3'"):
        BadWordsFilter(words=["spam"], max_count="3")  # the types before its own range checks (a bare TypeError)
    with pytest.raises(TypeError, match=r"ExactDedup \(a class: write ExactDedup\(\)\)"):
        Pipeline([ExactDedup])
    with pytest.raises(TypeError, match=r"dict \(a YAML pipeline entry: corpus.registry.get\('exact_dedup'\)\(...\)"):
        Pipeline([{"op": "exact_dedup"}])  # it said only "got dict"
    with pytest.raises(TypeError, match=r"a list of operators.*got ExactDedup"):
        Pipeline(ExactDedup())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="workers must be 0 .* got -1"):
        _run(tmp_path, [], workers=-1)
    assert not (tmp_path / "out").exists()
    # a tuple where a list is declared passes, as do right types
    Pipeline([LengthFilter(min_words=5), ExactDedup(), NormalizeText(), BadWordsFilter(words=("spam", "eggs"))])
    with pytest.raises(TypeError, match=r"BadWordsFilter.max_ratio: expected float \| None, got str '0.1'"):
        Pipeline([BadWordsFilter(words=["spam"], max_ratio="0.1")])


@dataclass
class DropsRows(MapOperator):
    name = "drops_rows"

    def map(self, df):
        return df.head(1)


def test_map_that_drops_rows_is_an_error(tmp_path: Path):
    make_jsonl_corpus(tmp_path / "in", files=1, docs_per_file=50)
    with pytest.raises(OperatorError, match="must return a DataFrame of 50 rows"):
        _run(tmp_path, [DropsRows()])
    status = duckdb.connect(str(tmp_path / "out" / "catalog.duckdb"), read_only=True).execute(
        "SELECT status, error FROM runs").fetchall()
    assert status[0][0] == "failed" and "drops_rows" in status[0][1]


@dataclass
class Rewrites(MapOperator):
    """Rewrites the text, declared or not; or reorders its rows."""

    name = "rewrites"
    declare: bool = False
    reorder: bool = False

    def columns(self):
        return {}, {}, ("text",) if self.declare else ()

    def map(self, df):
        if self.reorder:
            return df.reverse()
        return df.with_columns(pl.col("text").str.to_uppercase())


def test_a_map_that_rewrites_a_column_it_does_not_declare_is_an_error(tmp_path: Path):
    """The wiring check trusts `modifies` (a sink's `uses` is refused when a later stage rewrites what it
    read), so an undeclared rewrite broke the contract unseen; so did reordering the rows."""
    make_jsonl_corpus(tmp_path / "in", files=1, docs_per_file=50)
    undeclared = r"'rewrites' rewrote column\(s\) \['text'\] without declaring them in `modifies`"
    with pytest.raises(OperatorError, match=undeclared):
        _run(tmp_path, [Rewrites()])
    with pytest.raises(OperatorError, match="'rewrites' reordered or replaced rows"):
        _run(tmp_path, [Rewrites(reorder=True)])
    res = _run(tmp_path, [Rewrites(declare=True)])
    texts = read_all(res.output, "data/*.parquet")["text"]
    assert res.manifest["docs"] == 50 and (texts == texts.str.to_uppercase()).all()


def test_parallel_and_serial_runs_give_identical_shards(tmp_path: Path):
    make_jsonl_corpus(tmp_path / "in", files=4, docs_per_file=120)
    a = Pipeline([NormalizeText(), LengthFilter(min_chars=10), ExactDedup()]).run(
        inputs=[InputSpec(source="web", path=str(tmp_path / "in"))], output=tmp_path / "a", workers=1, quiet=True)
    b = Pipeline([NormalizeText(), LengthFilter(min_chars=10), ExactDedup()]).run(
        inputs=[InputSpec(source="web", path=str(tmp_path / "in"))], output=tmp_path / "b", workers=2, quiet=True)
    assert a.manifest["content_hash"] == b.manifest["content_hash"]


_INTERACTIVE = '''
from dataclasses import dataclass
from typing import ClassVar
import json, sys
import polars as pl
from corpus import InputSpec, MapOperator, Pipeline

@dataclass
class Shout(MapOperator):
    name: ClassVar[str] = "shout"
    needs: ClassVar = {"text": pl.String}
    adds: ClassVar = {"n_chars": pl.Int64}
    fail: bool = False

    def map(self, df):
        if self.fail:
            raise KeyError("no such thing")
        return df.with_columns(pl.col("text").str.len_chars().cast(pl.Int64).alias("n_chars"))

res = Pipeline([Shout(fail=FAIL)]).run([InputSpec(source="s", path=INPUT)], OUT, workers=2, quiet=True)
print(json.dumps({"docs": res.manifest["docs"]}))
'''


@pytest.mark.parametrize("how", ["-c", "stdin"])
def test_an_operator_defined_where_workers_cannot_import_it_runs_on_them(tmp_path: Path, how: str):
    """A notebook, `python -c` and a script read from stdin define their operators in a __main__ that a
    spawned worker cannot import: `-c` workers died unpickling the operator, and a stdin script's
    workers died at start (looking for a file named "<stdin>"). Both run now, with the same output as
    in one process; an operator's own error names the unit it failed in."""
    import subprocess
    import sys

    n = make_jsonl_corpus(tmp_path / "in", files=2, docs_per_file=30)

    def run(out: str, fail: bool) -> subprocess.CompletedProcess:
        code = (f"INPUT, OUT, FAIL = {str(tmp_path / 'in')!r}, {str(tmp_path / out)!r}, {fail}\n"
                + _INTERACTIVE)
        cmd, stdin = ([sys.executable, "-c", code], None) if how == "-c" else ([sys.executable, "-"], code)
        return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=180, cwd=tmp_path)

    res = run("out", False)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {"docs": n}
    df = read_all(tmp_path / "out", "data/*.parquet")
    assert (df["n_chars"] == df["text"].str.len_chars()).all() and df.height == n
    res = run("bad", True)
    assert res.returncode == 1
    tail = res.stderr.strip().splitlines()
    assert tail[-3] == "KeyError: 'no such thing'", res.stderr
    assert tail[-2] == "(in stage 01-shout)", res.stderr
    assert tail[-1].startswith("(in a worker process, running shard s-") and "through 01-shout" in tail[-1], res.stderr


_CASE = '''
from dataclasses import dataclass
from typing import ClassVar
import polars as pl
from corpus import InputSpec, MapOperator, Pipeline

@dataclass
class Case(MapOperator):
    name: ClassVar[str] = "case"
    modifies: ClassVar = ("text",)

    def map(self, df):
        return df.with_columns(pl.col("text").str.METHOD())

if __name__ == "__main__":
    Pipeline([Case()]).run([InputSpec(source="s", path=INPUT)], OUT, workers=1, quiet=True)
'''


@pytest.mark.parametrize("how", ["script", "-c"])
def test_an_operator_whose_code_changed_in_main_is_run_again(tmp_path: Path, how: str):
    """Resuming keys a stage by its parameters and version. An operator being written in a notebook or a
    script changes its code between runs, and a rerun into the same folder kept the old output; its code
    (the source, or the bytecode where there is none) is part of the key now. Unchanged, it resumes."""
    import subprocess
    import sys

    make_jsonl_corpus(tmp_path / "in", files=1, docs_per_file=20)

    def run(method: str) -> list[str]:
        code = (f"INPUT, OUT = {str(tmp_path / 'in')!r}, {str(tmp_path / 'out')!r}\n"
                + _CASE.replace("METHOD", method))
        if how == "script":
            (tmp_path / "run.py").write_text(code)
            cmd = [sys.executable, str(tmp_path / "run.py")]
        else:
            cmd = [sys.executable, "-c", code]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        return read_all(tmp_path / "out", "data/*.parquet")["text"].to_list()

    upper = run("to_uppercase")
    assert upper == [t.upper() for t in upper]
    lower = run("to_lowercase")
    assert lower == [t.lower() for t in upper]
    marker = next((tmp_path / "out" / "work").glob("01-case-*"))
    assert run("to_lowercase") == lower and next((tmp_path / "out" / "work").glob("01-case-*")) == marker


def test_two_plain_globs_of_one_name_are_told_a_valid_source_name(tmp_path: Path):
    """The duplicate-source error of plan_tasks (every caller: Pipeline.run, profile, configs) names both
    plain paths and a source name that works: for globs it suggested InputSpec(source='*.jsonl-1')."""
    from corpus.readers import InputError
    from corpus.readers.plan import plan_tasks

    for d in ("d2", "d7"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "f0.jsonl").write_text('{"text": "hello there"}\n')
    globs = [str(tmp_path / "d2" / "*.jsonl"), str(tmp_path / "d7" / "*.jsonl")]
    with pytest.raises(InputError, match=r"would all be the source '\*\.jsonl'") as e:
        plan_tasks(globs)
    assert globs[0] in str(e.value) and globs[1] in str(e.value)
    suggested = re.search(r"InputSpec\(source='([^']+)', path='([^']+)'\)", str(e.value))
    assert suggested and suggested[1] == "d7" and suggested[2] == globs[1]
    with pytest.raises(InputError, match=r"InputSpec\(source='d7'"):
        Pipeline([LengthFilter()]).run(globs, tmp_path / "out", workers=1, quiet=True)
    fixed = [globs[0], InputSpec(source=suggested[1], path=suggested[2])]
    assert len(plan_tasks(fixed)) == 2
    # explicitly named specs keep the plain message: they were not named after their path
    with pytest.raises(InputError, match=r"^input 'a' is defined more than once \(source names must be unique\)$"):
        plan_tasks([InputSpec(source="a", path=globs[0]), InputSpec(source="a", path=globs[1])])
