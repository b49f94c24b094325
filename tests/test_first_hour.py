"""What a new user meets in the first hour (issue: the first hour): each fix held by a test."""

from __future__ import annotations

import json

import polars as pl
from helpers import run_cli


def _tiny_corpus(folder):
    from corpus import InputSpec, Pipeline

    src = folder / "in"
    src.mkdir(parents=True)
    texts = [f"document number {i} about rivers and stones and bread" for i in range(40)]
    pl.DataFrame({"text": texts}).write_ndjson(src / "a.jsonl")
    Pipeline([]).run(inputs=[InputSpec(source="a", path=str(src))], output=folder / "out", workers=1, quiet=True)
    return folder / "out"


def test_tokenizer_train_refuses_a_missing_or_empty_corpus(tmp_path):
    missing = run_cli("tokenizer", "train", str(tmp_path / "nope"), "--out", str(tmp_path / "tok"))
    assert missing.returncode == 2 and "no corpus at" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = run_cli("tokenizer", "train", str(tmp_path / "empty"), "--out", str(tmp_path / "tok"))
    assert empty.returncode == 2 and "holds no corpus" in empty.stderr
    assert not (tmp_path / "tok" / "tokenizer.json").exists()
    # Counts out of range: --min-frequency -3 was an OverflowError traceback; --max-docs 0 said the corpus
    # had no documents, and -5 trained on every one.
    out = _tiny_corpus(tmp_path)
    for option, value, says in (("--min-frequency", "-3", "min_frequency must be 0 or more, got -3"),
                                ("--max-docs", "0", "max_docs must be 1 or more"),
                                ("--max-docs", "-5", "max_docs must be 1 or more")):
        r = run_cli("tokenizer", "train", str(out), "--out", str(tmp_path / "tok"), option, value)
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "tok" / "tokenizer.json").exists()


def test_tokenizer_train_warns_when_the_vocabulary_is_smaller_than_asked(tmp_path):
    out = _tiny_corpus(tmp_path)
    r = run_cli("tokenizer", "train", str(out), "--out", str(tmp_path / "tok"), "--vocab-size", "8000")
    assert r.returncode == 0, r.stderr
    assert "fewer than the 8,000 asked: the 40 documents hold no more pairs seen at least min_frequency=2" in r.stderr
    # the reading (most of the time on a large corpus) on a bar, its total from the manifest
    assert "tokenizer train: reading" in r.stderr and "40/40" in r.stderr and "40 docs" in r.stderr, r.stderr
    cfg = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())["corpusforge"]
    assert cfg["vocab_size"] == 8000 and cfg["trained_vocab_size"] < 8000 and cfg["documents"] == 40


def test_benchmark_options_are_parsed_before_anything_runs():
    import subprocess
    import sys

    from helpers import ROOT

    def bench(*args):
        return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=60)

    h = bench("ingest", "--help")
    assert h.returncode == 0 and "--sizes" in h.stdout
    top = bench("--help")
    assert top.returncode == 0 and "ingest" in top.stdout and "profile" in top.stdout
    bad = bench("ingest", "nope")
    assert bad.returncode != 0 and "unknown benchmark 'nope'" in bad.stderr
    assert bench("ingest", "--bogus").returncode != 0


# ---------------------------------------------------------------- item 1: a wrong text_key


def _content_records(folder, n, files=1):
    """JSONL whose text is under `content` (as in examples/data/web): `n` records over `files` files."""
    folder.mkdir(parents=True, exist_ok=True)
    per = n // files
    for f in range(files):
        rows = [{"content": f"page {f}-{i} about rivers", "url": f"https://x.example/{f}/{i}", "ts": i}
                for i in range(per)]
        pl.DataFrame(rows).write_ndjson(folder / f"crawl-{f}.jsonl")
    return folder


def _config(tmp_path, inputs: str):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"output: {tmp_path / 'out'}\ninputs:\n{inputs}")
    return cfg


def test_config_check_names_the_fields_it_found(tmp_path):
    web = _content_records(tmp_path / "web", 20)
    pq_dir = tmp_path / "wiki"
    pq_dir.mkdir()
    pl.DataFrame({"text": ["an article"], "page_id": [1]}).write_parquet(pq_dir / "a.parquet")
    cfg = _config(tmp_path, f"""\
  - source: web
    path: {web}
  - source: wiki
    path: {pq_dir}
    id_key: page
    meta_keys: [page_id, lang]
""")
    res = run_cli("check", str(cfg))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    err = " ".join(res.stderr.split())
    assert ("error: input 'web': no field 'text' in the first 20 records of crawl-0.jsonl; fields seen: content, url, "
            "ts — set text_key") in err
    assert "input 'wiki': no field 'page' in a.parquet; fields seen: text, page_id — set id_key" in err
    assert "input 'wiki': no field 'lang' in a.parquet; fields seen: text, page_id — check meta_keys" in err
    assert "page_id'" not in err  # a meta key that is there is not reported

    # The same check as a function (for `corpus check` and scripts): right keys, no problems.
    from corpus.config import check_inputs, load_config

    good = _config(tmp_path, f"""\
  - source: web
    path: {web}
    text_key: content
    id_key: url
  - source: wiki
    path: {pq_dir}
    meta_keys: [page_id]
""")
    assert check_inputs(load_config(good)) == (2, [])


def test_a_dotted_key_reads_a_nested_field(tmp_path):
    """`text_key: doc.body` on nested records said only that no such field was seen (then, a DuckDB input
    to write by hand). A dotted key names the nested field: check says ok, the run reads it, and a key
    that names no field is said with the fields seen."""
    import json

    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "n.jsonl"
    path.write_text("".join(json.dumps({"doc": {"body": f"text number {i}"}, "m": {"url": f"u{i}"}}) + "\n"
                            for i in range(5)))
    cfg = _config(tmp_path, f"  - source: n\n    path: {path}\n    text_key: doc.body\n    id_key: m.url\n")
    res = run_cli("check", str(cfg))
    assert res.returncode == 0, res.stderr
    res = run_cli("run", str(cfg), "--quiet")
    assert res.returncode == 0, res.stderr
    docs = pl.read_parquet(tmp_path / "out" / "data" / "*.parquet").sort("id")
    assert docs["text"].to_list() == [f"text number {i}" for i in range(5)] and docs["id"][0] == "u0"
    assert docs["meta"].unique().to_list() == ["{}"]  # the nested text and id are not kept twice
    cfg = _config(tmp_path, f"  - source: n\n    path: {path}\n    text_key: doc.text\n")
    res = run_cli("check", str(cfg))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "no field 'doc.text' in the first 5 records of n.jsonl; fields seen: doc, m — set text_key" in \
        " ".join(res.stderr.split()), res.stderr


def test_a_run_stops_when_most_of_a_source_is_quarantined(tmp_path):
    web = _content_records(tmp_path / "web", 1080, files=4)
    res = run_cli("run", str(_config(tmp_path, f"  - source: web\n    path: {web}\n")), "--quiet")
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    err = " ".join(res.stderr.split())
    assert err.startswith("error: input 'web': 270 of the first 270 records quarantined (100.0%), over its "
                          "max_quarantine_fraction 0.5 (missing_text 270): no field 'text' in the first 100 records "
                          "of crawl-0.jsonl (and 3 more of the 4 files read); fields seen: content, url, ts — set "
                          "text_key"), err
    assert not (tmp_path / "out" / "data").exists()  # nothing published as if it were a corpus
    # Settable per input: 1 never stops (every record still accounted for).
    cfg = _config(tmp_path, f"  - source: web\n    path: {web}\n    max_quarantine_fraction: 1\n")
    res = run_cli("run", str(cfg), "--quiet")
    assert res.returncode == 0, res.stderr
    assert len(pl.read_parquet(tmp_path / "out" / "quarantine" / "*.parquet")) == 1080


def test_one_big_file_stops_early_and_a_tiny_file_does_not(tmp_path):
    from corpus import InputSpec
    from corpus.executor import LocalExecutor
    from corpus.readers import InputError
    from corpus.readers.check import MIN_RECORDS

    web = _content_records(tmp_path / "web", 5000)
    spec = InputSpec(source="web", path=str(web))
    try:
        LocalExecutor(workers=1, quiet=True, chunk_bytes=32 << 10).run([], [spec], tmp_path / "out")
        raise AssertionError("the run went on")
    except InputError as exc:
        seen = int(str(exc).split(" of the first ")[1].split()[0].replace(",", ""))
    assert MIN_RECORDS <= seen < 5000  # judged in the worker, after its first chunks, not at the end of the file

    tiny = tmp_path / "tiny"
    tiny.mkdir()
    (tiny / "a.jsonl").write_text('{"text": "fine"}\n{"txet": "typo"}\nnot json\n')
    from corpus import Pipeline

    result = Pipeline([]).run([InputSpec(source="tiny", path=str(tiny))], tmp_path / "out2", workers=1, quiet=True)
    assert result.balance[0]["quarantined"] == 2 and result.balance[0]["kept"] == 1


def test_a_small_input_with_a_wrong_key_stops_once_it_is_read(tmp_path):
    """Under MIN_RECORDS the share is judged once every record is read, and only when the settings name a
    field the records lack: a wrong text_key on a small file kept nothing and looked like a success."""
    web = _content_records(tmp_path / "web", 30)
    res = run_cli("run", str(_config(tmp_path, f"  - source: web\n    path: {web}\n")), "--quiet")
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    err = " ".join(res.stderr.split())
    assert err.startswith("error: input 'web': 30 of its 30 records quarantined (100.0%), over its "
                          "max_quarantine_fraction 0.5 (missing_text 30): no field 'text' in the first 30 records of "
                          "crawl-0.jsonl; fields seen: content, url, ts — set text_key"), err
    assert not (tmp_path / "out" / "data").exists()
    res = run_cli("run", str(_config(tmp_path, f"  - source: web\n    path: {web}\n    text_key: content\n")),
                  "--quiet")
    assert res.returncode == 0, res.stderr


def test_an_empty_or_unreadable_file_says_nothing_about_the_settings(tmp_path):
    """A file with nothing to read (empty, or not the gzip its name says) is no text_key problem: the check
    passes and the run quarantines the bad file and goes on (it stopped, blaming text_key)."""
    web = _content_records(tmp_path / "web", 30)
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "a.jsonl").write_text((web / "crawl-0.jsonl").read_text().replace('"content"', '"text"'))
    (tmp_path / "mixed" / "b.jsonl").write_text("")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jsonl.gz").write_text("this is not gzip\n")
    config = _config(tmp_path, f"  - source: mixed\n    path: {tmp_path / 'mixed'}\n"
                               f"  - source: gz\n    path: {tmp_path / 'bad' / 'x.jsonl.gz'}\n")
    res = run_cli("check", str(config))
    assert res.returncode == 0, res.stderr
    res = run_cli("run", str(config), "--quiet")
    assert res.returncode == 0, res.stderr
    balance = {b["source"]: b for b in json.loads((tmp_path / "out" / "report.json").read_text())
               ["sections"]["overview"]["figures"]["balance"]}
    assert (balance["mixed"]["kept"], balance["gz"]["quarantined"]) == (30, 1), balance


def test_quarantine_fraction_is_checked_and_does_not_change_what_a_run_resumes(tmp_path):
    import dataclasses

    from corpus import InputSpec
    from corpus.executor import LocalExecutor
    from corpus.readers import InputError, plan_tasks

    web = _content_records(tmp_path / "web", 10)
    spec = InputSpec(source="web", path=str(web), text_key="content")
    t1 = plan_tasks([spec])[0]
    t2 = dataclasses.replace(t1, spec=dataclasses.replace(spec, max_quarantine_fraction=1.0))
    ex = LocalExecutor(workers=1)
    assert ex._task_key(t1, 1 << 20) == ex._task_key(t2, 1 << 20)
    try:
        plan_tasks([dataclasses.replace(spec, max_quarantine_fraction=1.5)])
        raise AssertionError("accepted 1.5")
    except InputError as exc:
        assert "max_quarantine_fraction must lie between 0 and 1, got 1.5" in str(exc)


# ---------------------------------------------------------------- item 6: corpus ops


def test_ops_lists_kind_columns_and_parameters_with_types_and_defaults():
    res = run_cli("ops")
    assert res.returncode == 0, res.stderr
    out = " ".join(res.stdout.split())
    assert "length_filter (filter) — Keep documents whose length in characters and words lies within bounds." in out
    assert "needs text: String · adds n_chars: Int64, n_words: Int64" in out
    assert "parameters: min_chars: int = 0, max_chars: int | None = None, min_words: int = 0" in out
    assert "normalize_text (map)" in out and "modifies text" in out
    # the first paragraph of a docstring, not its first line
    assert "earlier document's (transitively: clusters are connected components)" in out
    assert "unit: Literal['word', 'char'] = 'word'" in out


def test_ops_name_shows_one_operator_in_full():
    res = run_cli("ops", "minhash_dedup")
    assert res.returncode == 0, res.stderr
    assert "minhash_dedup (global_filter)  corpus.stages.minhash:MinHashDedup" in res.stdout
    adds = "adds:      cluster_id: Int64, cluster_size: Int64, duplicate_of: String, duplicate_of_row: Int64"
    assert adds in res.stdout
    row = next(ln for ln in res.stdout.splitlines() if ln.startswith("│ threshold "))
    assert "float" in row and "0.8" in row and "target Jaccard similarity of shingle sets" in row
    bad = run_cli("ops", "minhash")
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown operator 'minhash' (did you mean")


# ---------------------------------------------------------------- item 9: est. tokens, log-scale histograms


def test_report_shows_one_est_tokens_figure(tmp_path):
    from corpus import InputSpec, Pipeline
    from corpus.stages.profile import Profile
    from corpus.units import est_tokens

    src = tmp_path / "in"
    src.mkdir()
    texts = [("word " * (i % 13 + 1)).strip() for i in range(50)]  # lengths not multiples of 4
    pl.DataFrame({"text": texts}).write_ndjson(src / "a.jsonl")
    Pipeline([Profile()]).run(inputs=[InputSpec(source="a", path=str(src))], output=tmp_path / "out", workers=1,
                              quiet=True)
    nbytes = sum(len(t.encode()) for t in texts)
    per_doc = sum(-(-len(t.encode()) // 4) for t in texts)
    assert per_doc != est_tokens(nbytes)  # the two definitions differ on this data
    report = json.loads((tmp_path / "out" / "report.json").read_text())["sections"]
    assert report["overview"]["figures"]["output"]["est_tokens"] == est_tokens(nbytes)
    assert report["profile"]["figures"]["overall"]["est_tokens"] == est_tokens(nbytes)
    assert report["sources"]["figures"][0]["est_tokens_kept"] == est_tokens(nbytes)
    html = (tmp_path / "out" / "report.html").read_text()
    assert f"{est_tokens(nbytes):,}" in html and f">{per_doc:,}<" not in html


def test_histograms_concentrated_near_zero_get_a_log_count_axis():
    import re

    from corpus.report.html import histogram_chart

    edges = [0, 0.1, 0.2, 0.3, 0.4, 0.5]

    def heights(svg):
        return [float(h) for h in re.findall(r'height="([0-9.]+)" fill="#', svg)]

    skewed = histogram_chart(edges, [5000, 12, 3, 0, 1], "frac_digit")
    assert "docs (log scale)" in skewed
    tail = heights(skewed)[4]  # the bin of one document
    assert tail > 0.05 * heights(skewed)[0]  # visible: on a linear axis it would be 1/5000 of the tallest
    even = histogram_chart(edges, [40, 55, 30, 20, 10], "n_words")
    assert "docs (log scale)" not in even and "docs</text>" in even
    # before/after pairs share one scale: both log or both linear
    forced = histogram_chart(edges, [40, 55, 30, 20, 10], "n_words", log_counts=True)
    assert "docs (log scale)" in forced


# ---------------------------------------------------------------- item 8: units and tables


def test_run_output_labels_every_size(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    pl.DataFrame({"text": [f"document {i} about rivers and stones" for i in range(30)]}).write_ndjson(src / "a.jsonl")
    cfg = _config(tmp_path, f"  - source: a\n    path: {src}\n")
    res = run_cli("run", str(cfg), "--quiet")
    assert res.returncode == 0, res.stderr
    text_mb = sum(len(f"document {i} about rivers and stones") for i in range(30)) / 1e6
    assert f"documents ({text_mb:,.2f} MB of text, UTF-8) in 1 shard (" in res.stdout
    assert "MB of Parquet on disk) ->" in res.stdout
    stats = run_cli("stats", str(tmp_path / "out"))
    assert stats.returncode == 0, stats.stderr
    header = next(ln for ln in stats.stdout.splitlines() if "docs in" in ln)
    assert [h.strip() for h in header.strip("┃ ").split("┃")][5:8] == ["input MB", "text MB in", "text MB out"]
    assert "input: the files as stored (.gz/.zst count compressed); text: UTF-8 bytes" in " ".join(stats.stdout.split())


def test_tokenize_prints_a_table_and_keeps_json_for_machines(tmp_path):
    out = _tiny_corpus(tmp_path)
    tok = tmp_path / "tok"
    assert run_cli("tokenizer", "train", str(out), "--out", str(tok), "--vocab-size", "300").returncode == 0
    res = run_cli("tokenize", str(out), "--tokenizer", str(tok), "--out", str(tmp_path / "tokens"), "-w", "1")
    assert res.returncode == 0, res.stderr
    rows = {ln.split("│")[1].strip(): [c.strip() for c in ln.split("│")[2:-1]]
            for ln in res.stdout.splitlines() if ln.startswith("│")}
    assert list(rows) == ["train", "validation", "test", "total"]
    assert int(rows["total"][0]) == 40  # documents
    assert "tokens/s" in res.stdout and not res.stdout.lstrip().startswith("{")
    again = run_cli("tokenize", str(out), "--tokenizer", str(tok), "--out", str(tmp_path / "tokens"), "--json")
    summary = json.loads(again.stdout)
    assert summary["resumed"] is True and sum(v["documents"] for v in summary["splits"].values()) == 40
    assert int(rows["total"][1].replace(",", "")) == sum(v["tokens"] for v in summary["splits"].values())
