"""Integration: several sources with their own readers and field mappings into one schema with
provenance; per-source sampling weights (seeded, rejected as sampled_out, copies marked); joins of
external tables through DuckDB with ambiguous and missing keys never dropped silently; schema drift
across the files of a source, recorded in the catalog and the report."""

from __future__ import annotations

import json
import logging
import sys

import duckdb
import polars as pl
import pytest
from helpers import ROOT, read_all, run_cli, tree_digest, write_config
from rich.console import Console

from corpus import InputSpec, Pipeline
from corpus.operators import FilterOperator, Verdict
from corpus.readers import InputError
from corpus.schema import COPY_OF, CORE_COLUMNS, DOC_SCHEMA
from corpus.stages.filter import LengthFilter
from corpus.stages.join import Join, JoinError
from corpus.stages.sample import Sample
from corpus.stats import print_stats
from corpus.work import OperatorError, apply_op

sys.path.insert(0, str(ROOT))


def _jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _meta(df: pl.DataFrame) -> list[dict]:
    return [json.loads(m) for m in df["meta"]]


# ---------------------------------------------------------------- several sources, one schema


def test_sources_with_their_own_mapping_become_one_schema(tmp_path):
    web = _jsonl(tmp_path / "web.jsonl", [
        {"content": "A web page about rivers.", "url": "https://a.org/1", "fetched": "2024-01-01", "lang": "en"},
        {"content": "123", "url": "https://a.org/2", "fetched": "2024-01-02"},  # per-record path (looks numeric)
    ])
    pl.DataFrame({"body": ["A book chapter.", "Another chapter."], "doc_id": [7, 8], "author": ["X", "Y"],
                  "year": [1999, 2001]}).write_parquet(tmp_path / "books.parquet")
    (tmp_path / "forum.csv").write_text("post,user,when\nHello forum,bob,monday\n")
    inputs = [
        InputSpec(source="web", path=str(web), text_key="content", id_key="url",
                  meta_rename={"fetched": "date", "lang": "language"}),
        InputSpec(source="books", path=str(tmp_path / "books.parquet"), text_key="body", id_key="doc_id",
                  meta_rename={"author": "creator", "year": "date"}),
        InputSpec(source="forum", path=str(tmp_path / "forum.csv"), text_key="post", meta_rename={"when": "date"}),
    ]
    result = Pipeline([]).run(inputs, tmp_path / "out", workers=1)
    data = read_all(tmp_path / "out" / "data").sort("row_id")
    assert dict(data.schema) == DOC_SCHEMA and tuple(data.columns) == CORE_COLUMNS
    assert data["id"].to_list() == ["https://a.org/1", "https://a.org/2", "7", "8", "forum:forum.csv:1"]
    assert _meta(data) == [{"date": "2024-01-01", "language": "en"}, {"date": "2024-01-02"},
                           {"creator": "X", "date": 1999}, {"creator": "Y", "date": 2001},
                           {"date": "monday", "user": "bob"}]
    # provenance: the source, the file and the row each document came from
    assert list(zip(data["source"], data["src_file"], data["src_row"], strict=True)) == [
        ("web", "web.jsonl", 1), ("web", "web.jsonl", 2), ("books", "books.parquet", 1),
        ("books", "books.parquet", 2), ("forum", "forum.csv", 1)]
    assert all(b["ok"] for b in result.balance)


def test_rename_clash_is_quarantined_and_bad_renames_are_config_errors(tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", [{"text": "ok", "a": 1}, {"text": "clash", "a": 1, "b": 2},
                                         {"text": "only b", "b": 3}])
    Pipeline([]).run([InputSpec(source="s", path=str(src), meta_rename={"a": "b"})], tmp_path / "out", workers=1)
    data = read_all(tmp_path / "out" / "data").sort("src_row")
    assert _meta(data) == [{"b": 1}, {"b": 3}]
    q = pl.read_parquet(tmp_path / "out" / "quarantine" / "*.parquet")
    assert q["kind"].to_list() == ["malformed_row"] and "renamed to 'b'" in q["error"][0]
    for rename, meta_keys, msg in [({"text": "body"}, None, "text or id field"), ({"a": "x", "b": "x"}, None, "two"),
                                   ({"c": "d"}, ["a"], "meta_keys leaves out")]:
        with pytest.raises(InputError, match=msg):
            Pipeline([]).run([InputSpec(source="s", path=str(src), meta_rename=rename, meta_keys=meta_keys)],
                             tmp_path / "bad", workers=1)


# ---------------------------------------------------------------- sampling weights


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("sample")
    a = _jsonl(d / "a.jsonl", [{"text": f"alpha document {i} with enough words"} for i in range(400)])
    b = _jsonl(d / "b.jsonl", [{"text": f"beta {i}"} for i in range(100)])
    return [InputSpec(source="a", path=str(a)), InputSpec(source="b", path=str(b))]


def test_sampling_weights_are_seeded_accounted_and_copies_marked(tmp_path, two_sources):
    op = Sample(weights={"a": 0.25, "b": 2.5}, seed=7)
    result = Pipeline([op]).run(two_sources, tmp_path / "out", workers=2)
    data = read_all(tmp_path / "out" / "data")
    originals = data.filter(pl.col(COPY_OF).is_null())
    copies = data.filter(pl.col(COPY_OF).is_not_null())
    a_kept = originals.filter(pl.col("source") == "a").height
    assert 70 <= a_kept <= 130  # about a quarter of 400
    assert originals.filter(pl.col("source") == "b").height == 100
    assert 130 <= copies.height <= 170 and set(copies["source"]) == {"b"}  # 1.5 copies per b document
    assert data["row_id"].n_unique() == data.height  # every copy has an identity of its own
    assert copies[COPY_OF].is_in(originals["row_id"].implode()).all()
    by_original = copies.group_by(COPY_OF).len()
    counts = originals.filter(pl.col("source") == "b").join(by_original, left_on="row_id", right_on=COPY_OF)
    assert (counts["len"] == counts["sample_copies"]).all()  # the counter says how many copies each got
    rejected = read_all(tmp_path / "out" / "rejected")
    assert set(rejected["reject_reason"]) == {"sampled_out"} and rejected.height == 400 - a_kept
    balance = {b["source"]: b for b in result.balance}
    assert balance["a"]["kept"] == a_kept and balance["b"]["copies"] == copies.height
    assert all(b["ok"] for b in result.balance)
    # deterministic: the same seed gives the same corpus, whatever the workers; another seed another one
    Pipeline([Sample(weights={"a": 0.25, "b": 2.5}, seed=7)]).run(two_sources, tmp_path / "again", workers=1)
    assert tree_digest(tmp_path / "out" / "data") == tree_digest(tmp_path / "again" / "data")
    Pipeline([Sample(weights={"a": 0.25, "b": 2.5}, seed=8)]).run(two_sources, tmp_path / "o", workers=1)
    assert tree_digest(tmp_path / "o" / "data") != tree_digest(tmp_path / "out" / "data")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    fig = report["sections"]["stage-sample"]["figures"]["01-sample"]["sources"]
    assert fig["a"]["sampled_out"] == 400 - a_kept and fig["b"]["copies"] == copies.height
    # The overview and the funnel tell originals from copies: the sample stage dropped what it rejected
    # (not in - out, which copies made negative), and the kept share is of originals.
    assert report["sections"]["overview"]["figures"]["output"]["copies"] == copies.height
    stage = {f["stage"]: f for f in report["sections"]["funnel"]["figures"]}["01-sample"]
    assert (stage["dropped"], stage["copies"], stage["docs_out"]) == (400 - a_kept, copies.height, data.height)
    html = (tmp_path / "out" / "report.html").read_text()
    assert f"{originals.height:,} of 500 input records" in html and f"{copies.height:,} copies from sampling" in html
    console = Console(record=True, width=200)
    print_stats(tmp_path / "out", console)
    balance_rows = [ln for ln in console.export_text().splitlines() if ln.startswith("│ b ")]
    assert balance_rows[-1].split("│")[1:-1][-1].strip() == f"{copies.height:,}"  # the copies column


def test_copies_rejected_later_keep_the_balance(tmp_path, two_sources):
    # every b document is too short: originals and copies alike are rejected after sampling
    result = Pipeline([Sample(weights={"b": 3.0}), LengthFilter(min_words=3)]).run(two_sources, tmp_path / "out",
                                                                                  workers=1)
    rejected = read_all(tmp_path / "out" / "rejected")
    assert rejected.filter(pl.col(COPY_OF).is_not_null()).height == 200
    b = {r["source"]: r for r in result.balance}["b"]
    assert (b["input"], b["kept"], b["rejected"], b.get("copies", 0), b["ok"]) == (100, 0, 100, 0, True)


def test_sample_draw_equals_the_plain_reference():
    from benchmarks.enrich_plain import sample_times

    rows = pl.DataFrame({"source": ["a", "b", "c"] * 2000, "row_id": [(i % 7) << 40 | i for i in range(6000)]})
    op = Sample(weights={"a": 0.3, "b": 2.75}, default=1.5, seed=11)
    verdict = op.filter(rows)
    times = (verdict.scores["sample_copies"] + verdict.keep.cast(pl.Int64)).to_list()
    want = [sample_times(r, {"a": 0.3, "b": 2.75}.get(s, 1.5), 11) for s, r in rows.iter_rows()]
    assert times == want
    # whole numbers beside fractions, as YAML gives them ({forum: 1, wiki: 0.5}): polars typed the mapping
    # by its first value and the run failed with a traceback
    mixed = Sample(weights={"a": 1, "b": 0.5, "c": 2}, default=1, seed=11).filter(rows)
    times = (mixed.scores["sample_copies"] + mixed.keep.cast(pl.Int64)).to_list()
    assert times == [sample_times(r, {"a": 1.0, "b": 0.5, "c": 2.0}[s], 11) for s, r in rows.iter_rows()]


def test_sample_parameters():
    with pytest.raises(ValueError, match=">= 0"):
        Sample(weights={"a": -1})
    with pytest.raises(ValueError, match=">= 0"):
        Sample(default=float("inf"))


class _BadCopies(FilterOperator):
    name = "bad_copies"
    adds = {COPY_OF: pl.Int64}

    def __init__(self, how: str):
        self.how = how

    def filter(self, df: pl.DataFrame) -> Verdict:
        scores = {COPY_OF: pl.Series(COPY_OF, [None] * df.height, pl.Int64)}
        copies = df.with_columns(**scores)
        if self.how == "no_original":
            pass
        elif self.how == "same_row_id":
            copies = copies.with_columns(df["row_id"].alias(COPY_OF))
        return Verdict(keep=pl.Series([True] * df.height), scores=scores, copies=copies)


@pytest.mark.parametrize(("how", "msg"), [("no_original", "naming each one's original"),
                                          ("same_row_id", "repeats another row's")])
def test_the_executor_checks_copies(how, msg):
    df = pl.DataFrame({"id": ["x"], "text": ["t"], "source": ["s"], "meta": ["{}"], "src_file": ["f"],
                       "src_row": [1], "row_id": [1]}, schema=DOC_SCHEMA)
    with pytest.raises(OperatorError, match=msg):
        apply_op(_BadCopies(how), df)


class _Rewrites(FilterOperator):
    name = "rewrites"

    def filter(self, df: pl.DataFrame) -> Verdict:
        return Verdict(keep=pl.Series([True] * df.height), scores={"text": df["text"].str.to_uppercase()})


def test_a_filter_rewrites_only_what_it_declares():
    df = pl.DataFrame({"id": ["x"], "text": ["t"], "source": ["s"], "meta": ["{}"], "src_file": ["f"],
                       "src_row": [1], "row_id": [1]}, schema=DOC_SCHEMA)
    with pytest.raises(OperatorError, match=r"score\(s\) \['text'\] it declares neither"):
        apply_op(_Rewrites(), df)
    _Rewrites.modifies = ("text",)
    try:
        kept, _ = apply_op(_Rewrites(), df)
        assert kept["text"].to_list() == ["T"]
    finally:
        _Rewrites.modifies = ()


# ---------------------------------------------------------------- joins through DuckDB


@pytest.fixture()
def web(tmp_path):
    src = _jsonl(tmp_path / "web.jsonl", [
        {"text": "page one", "domain": "a.org", "id": "p1"}, {"text": "page two", "domain": "b.org", "id": "p2"},
        {"text": "page three", "domain": "zzz.net", "id": "p3"}, {"text": "page four", "id": "p4"},
        {"text": "page five", "domain": "a.org", "id": "p5"}])
    return [InputSpec(source="web", path=str(src), id_key="id")]


def test_join_csv_and_parquet_tables(tmp_path, web):
    (tmp_path / "licences.csv").write_text("domain,licence,weight\na.org,cc-by,1.5\nb.org,mit,2\n")
    pl.DataFrame({"doc": ["p1", "p2", "p3", "p4", "p5"], "label": [1, 0, 1, 1, 0]}).write_parquet(
        tmp_path / "labels.parquet")
    ops = [Join(table=str(tmp_path / "labels.parquet"), key="doc", doc_key="id", prefix="q_"),
           Join(table=str(tmp_path / "licences.csv"), key="domain", doc_key="meta.domain", add=["licence"])]
    result = Pipeline(ops).run(web, tmp_path / "out", workers=1)
    data = read_all(tmp_path / "out" / "data").sort("id")
    assert data.select("id", "q_label", "licence").rows() == [("p1", 1, "cc-by"), ("p2", 0, "mit"),
                                                              ("p5", 0, "cc-by")]
    assert data.schema["q_label"] == pl.Int64 and "weight" not in data.columns
    rejected = read_all(tmp_path / "out" / "rejected").sort("id")
    assert rejected.select("id", "reject_reason").rows() == [("p3", "join_missing_key"), ("p4", "join_missing_key")]
    assert all(b["ok"] for b in result.balance)
    figures = duckdb.connect(str(tmp_path / "out" / "catalog.duckdb"), read_only=True).execute(
        "SELECT name, value FROM stage_figures WHERE stage = '02-join'").fetchall()
    assert dict(figures) == {"table_rows": 2, "ambiguous_keys": 0, "docs_missing": 2, "docs_ambiguous": 0}
    assert "Joined tables" in (tmp_path / "out" / "report.html").read_text()


def test_join_equals_the_plain_reference(tmp_path, web):
    from benchmarks.enrich_plain import join as plain_join

    (tmp_path / "t.csv").write_text("domain,licence\na.org,cc-by\na.org,gpl\nb.org,mit\n")
    op = Join(table=str(tmp_path / "t.csv"), key="domain", doc_key="meta.domain", on_duplicate="reject")
    from corpus.operators import StageContext

    (tmp_path / "art").mkdir()
    op.fit(StageContext("j", tmp_path / "art", (), 1, lambda f, xs: [f(x) for x in xs]))
    op.load(tmp_path / "art")
    metas = [json.dumps(m) for m in ({"domain": "a.org"}, {"domain": "b.org"}, {"domain": "c.org"}, {}, {"domain": 5})]
    df = pl.DataFrame({"meta": metas})
    v = op.filter(df)
    want = [plain_join({"b.org": {"licence": "mit"}}, {"a.org"}, m, "domain") for m in metas]
    assert v.reason.to_list() == [why for _, why in want]
    assert v.scores["licence"].to_list() == [row["licence"] if row else None for row, _ in want]


def test_join_missing_keys_keep_or_fail(tmp_path, web):
    (tmp_path / "t.csv").write_text("domain,licence\na.org,cc-by\nb.org,mit\n")
    Pipeline([Join(table=str(tmp_path / "t.csv"), key="domain", doc_key="meta.domain", on_missing="keep")]).run(
        web, tmp_path / "keep", workers=1)
    data = read_all(tmp_path / "keep" / "data").sort("id")
    assert data["licence"].to_list() == ["cc-by", "mit", None, None, "cc-by"]
    with pytest.raises(JoinError, match=r"2 documents have a key .*'zzz.net'"):
        Pipeline([Join(table=str(tmp_path / "t.csv"), key="domain", doc_key="meta.domain", on_missing="fail")]).run(
            web, tmp_path / "fail", workers=1)
    assert not (tmp_path / "fail" / "data").exists()


@pytest.mark.parametrize("on_missing", ["reject", "keep", "fail"])
def test_join_on_an_emptied_shard(tmp_path, web, on_missing):
    # length_filter empties the second input's shard: the join gets a frame with no rows
    short = _jsonl(tmp_path / "short.jsonl", [{"text": "short", "domain": "a.org", "id": "s1"}])
    inputs = [*web, InputSpec(source="short", path=str(short), id_key="id")]
    (tmp_path / "t.csv").write_text("domain,licence\na.org,cc-by\nb.org,mit\nzzz.net,x\n")
    op = Join(table=str(tmp_path / "t.csv"), key="domain", doc_key="meta.domain", on_missing=on_missing)
    (tmp_path / "art").mkdir()
    from corpus.operators import StageContext

    op.fit(StageContext("j", tmp_path / "art", (), 1, lambda f, xs: [f(x) for x in xs]))
    op.load(tmp_path / "art")
    v = op.filter(pl.DataFrame({"meta": []}, schema={"meta": pl.String}))
    assert v.keep.dtype == pl.Boolean and v.keep.len() == 0 and v.scores["licence"].len() == 0
    if on_missing == "fail":  # every key of the kept documents is in the table (p4 has none: dropped first)
        inputs = [InputSpec(source="web", path=str(_jsonl(tmp_path / "w2.jsonl", [
            {"text": "page one two", "domain": "a.org", "id": "p1"}])), id_key="id"), inputs[1]]
    Pipeline([LengthFilter(min_words=2), Join(table=str(tmp_path / "t.csv"), key="domain", doc_key="meta.domain",
                                              on_missing=on_missing)]).run(inputs, tmp_path / "out", workers=1)
    data = read_all(tmp_path / "out" / "data")
    assert data.height and set(data["source"]) == {"web"}


def test_join_ambiguous_keys_fail_or_reject(tmp_path, web):
    (tmp_path / "t.csv").write_text("domain,licence\na.org,cc-by\na.org,gpl\nb.org,mit\nzzz.net,x\n")
    cfg = write_config(tmp_path / "run.yaml", f"""
inputs:
  - {{source: web, path: {web[0].path}, id_key: id}}
pipeline:
  - {{op: join, table: {tmp_path / "t.csv"}, key: domain, doc_key: meta.domain}}
output: {tmp_path / "cli"}
""")
    proc = run_cli("run", str(cfg), "-q")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "error:" in proc.stderr and "['a.org']" in proc.stderr
    Pipeline([Join(table=str(tmp_path / "t.csv"), key="domain", doc_key="meta.domain", on_duplicate="reject",
                   on_missing="keep")]).run(web, tmp_path / "rej", workers=1)
    rejected = read_all(tmp_path / "rej" / "rejected").sort("id")
    assert rejected.select("id", "reject_reason").rows() == [("p1", "join_ambiguous_key"),
                                                             ("p5", "join_ambiguous_key")]


def test_join_table_problems_are_one_line_errors_and_edits_rerun(tmp_path, web):
    (tmp_path / "t.csv").write_text("domain,licence\na.org,cc-by\n")
    with pytest.raises(JoinError, match="does not exist"):
        Join(table=str(tmp_path / "nope.csv"), key="domain").columns()
    with pytest.raises(JoinError, match="no key column 'dom'"):
        Join(table=str(tmp_path / "t.csv"), key="dom").columns()
    with pytest.raises(JoinError, match=r"no column\(s\) \['lic'\]"):
        Join(table=str(tmp_path / "t.csv"), key="domain", add=["lic"]).columns()
    params = {"table": str(tmp_path / "t.csv"), "key": "domain", "doc_key": "meta.domain", "on_missing": "keep"}
    before = Join(**params).config_key()
    (tmp_path / "t.csv").write_text("domain,licence\na.org,gpl\n")
    assert Join(**params).config_key() != before  # the stage reruns with the edited table


# ---------------------------------------------------------------- schema drift


def test_schema_drift_is_recorded_and_reported(tmp_path, caplog):
    src = tmp_path / "src"
    _jsonl(src / "p0.jsonl", [{"text": "a", "score": 1, "tag": "x"}, {"text": "b", "score": 2, "tag": "y"}])
    _jsonl(src / "p1.jsonl", [{"text": "c", "score": "high", "tag": "z", "extra": True}])
    _jsonl(src / "p2.jsonl", [{"text": "d"}])
    pl.DataFrame({"text": ["e"], "n": [1]}).write_parquet(tmp_path / "t0.parquet")
    pl.DataFrame({"text": ["f"], "n": ["one"]}).write_parquet(tmp_path / "t1.parquet")
    inputs = [InputSpec(source="json", path=str(src)),
              InputSpec(source="typed", path=[str(tmp_path / "t0.parquet"), str(tmp_path / "t1.parquet")])]
    with caplog.at_level(logging.WARNING):
        result = Pipeline([]).run(inputs, tmp_path / "out", workers=1)
    assert all(b["ok"] for b in result.balance)
    data = read_all(tmp_path / "out" / "data").sort("row_id")
    assert _meta(data) == [{"score": 1, "tag": "x"}, {"score": 2, "tag": "y"},
                           {"extra": True, "score": "high", "tag": "z"}, {}, {"n": 1}, {"n": "one"}]
    con = duckdb.connect(str(tmp_path / "out" / "catalog.duckdb"), read_only=True)
    drift = con.execute("SELECT source, file, field, kind, reference_types, file_types FROM schema_drift "
                        "ORDER BY source, file, field").fetchall()
    assert drift == [("json", "p1.jsonl", "extra", "extra", None, None),
                     ("json", "p1.jsonl", "score", "retyped", "int", "string"),
                     ("json", "p2.jsonl", "score", "missing", None, None),
                     ("json", "p2.jsonl", "tag", "missing", None, None),
                     ("typed", "t1.parquet", "n", "retyped", "int", "string")]
    fields = con.execute("SELECT file, field, types, rows FROM source_fields WHERE file = 'p0.jsonl' "
                         "ORDER BY field").fetchall()
    assert fields == [("p0.jsonl", "score", "int", 2), ("p0.jsonl", "tag", "string", 2),
                      ("p0.jsonl", "text", "string", 2)]
    warned = [r.getMessage() for r in caplog.records if "schema drift" in r.getMessage()]
    assert len(warned) == 2 and "missing score, tag in 1 file(s)" in warned[0]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert set(report["sections"]["schema_drift"]["figures"]) == {"json", "typed"}
