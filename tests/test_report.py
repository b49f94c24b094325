"""The quality report on a real run: figures match the catalog, examples, escaping, registry, offline."""

from __future__ import annotations

import json
import math
import random
import re
import shutil
from pathlib import Path

import pytest
from helpers import make_jsonl_corpus

from corpus import InputSpec, Pipeline
from corpus.catalog import Catalog
from corpus.report import ReportContext, build_report, section, unregister, write_report
from corpus.stages.dedup import ExactDedup
from corpus.stages.filter import LengthFilter
from corpus.stages.profile.constants import FORMAT as PROFILE
from corpus.work import stage_dir

XSS = "<script>alert(1)</script>"
FEATURES = ("n_chars", "n_words", "n_lines", "est_tokens", "mean_word_len", "frac_alpha", "frac_digit", "frac_upper",
            "frac_punct", "frac_space", "frac_nonprint", "frac_lines_terminal_punct", "dup_line_ratio",
            "frac_replacement")


# ---------------------------------------------------------------- a hand-made profile, as docs/profile-format.md


def _feature(rng: random.Random, lo: float, hi: float, log: bool, n: int) -> dict:
    """A FEATURE entry with a plausible bell-shaped histogram over [lo, hi]."""
    bins = 24
    if log:
        edges = [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / bins) for i in range(bins + 1)]
    else:
        edges = [lo + (hi - lo) * i / bins for i in range(bins + 1)]
    weights = [math.exp(-((i - bins * rng.uniform(0.35, 0.6)) ** 2) / (2 * (bins / 6) ** 2)) for i in range(bins)]
    counts = [int(n * w / sum(weights)) for w in weights]
    counts[bins // 2] += n - sum(counts)
    cum, qs = 0, {}
    targets = {"p01": 0.01, "p05": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95, "p99": 0.99}
    for i, c in enumerate(counts):
        cum += c
        for k, t in targets.items():
            if k not in qs and cum >= t * n:
                qs[k] = round(edges[i + 1], 4)
    mean = sum(c * (edges[i] + edges[i + 1]) / 2 for i, c in enumerate(counts)) / n
    return {"mean": round(mean, 4), "min": lo, "max": hi, "quantiles": qs,
            "histogram": {"edges": [round(e, 4) for e in edges], "counts": counts, "log": log}}


def profile_section(docs: int, sources: dict[str, int], seed: int, xss: bool = False) -> dict:
    rng = random.Random(seed)
    ranges = {"n_chars": (5, 5000, True), "n_words": (1, 900, True), "n_lines": (1, 60, True),
              "est_tokens": (2, 1300, True), "mean_word_len": (2.0, 9.0, False)}
    feats = {f: _feature(rng, *ranges.get(f, (0.0, 1.0, False)), n=docs) for f in FEATURES}
    nbytes = docs * 640
    return {
        "docs": docs, "bytes": nbytes, "chars": nbytes - docs * 3, "words": docs * 110, "lines": docs * 6,
        "est_tokens": nbytes // 4, "null_text": 0, "empty_text": 2,
        "features": feats,
        "scripts": {"Latin": 0.93, "Cyrillic": 0.03, "Han": 0.02, "Greek": 0.02},
        "encoding_error_docs": 4,
        "languages": {"en": docs - 30, "de": 12, "fr": 10, "ru": 8},
        "sources": sources,
        "meta_fields": {"url": {"present": docs // 2, "types": {"string": docs // 2}},
                        "n": {"present": docs, "types": {"int": docs - 1, "string": 1}}},
        "exact_dup_rate": 0.012 + seed / 1000, "near_dup_rate": 0.034, "near_dup_sample": min(docs, 2000),
        "top_lines": [{"line": "Subscribe to our newsletter", "docs": 31},
                      {"line": XSS if xss else "Cookie settings", "docs": 7}],
        "outliers": {"n_chars": {"count": 3, "examples": [
            {"id": "web:part-000.jsonl:4", "source": "web", "value": 91234.0, "robust_z": 12.3,
             "snippet": (XSS + " long tail ") if xss else "a very long document ..."}]},
            "frac_digit": {"count": 0, "examples": []}},
    }


def make_profile(label: str, docs: int, seed: int, xss: bool = False) -> dict:
    sources = {"web": docs * 3 // 4, "wiki": docs - docs * 3 // 4}
    return {
        "format": PROFILE,
        "label": label,
        "overall": profile_section(docs, sources, seed, xss),
        "by_source": {s: profile_section(n, {s: n}, seed + i + 1) for i, (s, n) in enumerate(sources.items())},
    }


def add_profile(out: Path, idx: int, profile: dict) -> Path:
    """A profile stage of the latest run: its row in the catalog's stages (the report finds a stage's
    artifacts from there, never by globbing work/) and its profile.json."""
    key = f"{idx:012x}"
    cat = _catalog(out)
    run_id = cat.latest_run()
    with cat.connect() as con:
        con.execute("INSERT INTO stages VALUES (?, ?, ?, 'sink', ?, '{}', 1)", [run_id, idx, f"{idx:02d}-profile", key])
    path = stage_dir(out / "work", idx, "profile", key) / "artifacts" / "profile.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(profile))
    return path


# ---------------------------------------------------------------- a real small run


def build_run(root: Path) -> Path:
    """A real pipeline over JSONL with planted duplicates, short docs, bad lines and a <script> doc."""
    inp = root / "in"
    make_jsonl_corpus(inp, files=2, docs_per_file=120)
    first = inp / "part-000.jsonl"
    first.write_text(
        json.dumps({"text": f"{XSS} x"}) + "\n"  # too short: dropped, and first, so it is an example
        + json.dumps({"text": f"{XSS} hostile but long enough to keep, <b>bold</b> & more words"}) + "\n"
        + '{"text": "broken json\n'  # line 3: invalid_json
        + '{"n": 1}\n'  # line 4: missing_text
        + first.read_text())
    with open(inp / "part-001.jsonl", "ab") as fh:
        fh.write(b'{"text": "caf\xe9 cr\xe8me with enough words to keep"}\n')  # invalid_utf8
    res = Pipeline([LengthFilter(min_words=4), ExactDedup()]).run(
        inputs=[InputSpec(source="web", path=str(inp))], output=root / "out", workers=1, quiet=True)
    return res.output


@pytest.fixture(scope="module")
def run_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_run(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def report(run_out: Path) -> tuple[str, dict]:
    html_path, json_path = write_report(run_out)
    return html_path.read_text(), json.loads(json_path.read_text())


def _catalog(out: Path) -> Catalog:
    return Catalog(out / "catalog.duckdb", create=False)


# ---------------------------------------------------------------- tests


def test_files_written(run_out: Path, report: tuple[str, dict]):
    html, data = report
    assert (run_out / "report.html").is_file() and (run_out / "report.json").is_file()
    assert html.startswith("<!doctype html>")
    assert data["format"] == "corpusforge.report/1" and data["status"] == "ok"
    assert data["errors"] == [] and data["warnings"] == []
    assert not list(run_out.glob(".tmp-*"))
    # without a profile stage the distribution sections are left out; the run sections are there
    assert list(data["sections"]) == ["overview", "sources", "funnel", "drops", "quarantine"]
    for key in ("profile", "features", "mix", "compare"):
        assert f'id="{key}"' not in html


def test_figures_equal_the_catalog(run_out: Path, report: tuple[str, dict]):
    _, data = report
    cat = _catalog(run_out)
    run_id = cat.latest_run()
    assert data["run_id"] == run_id
    sums = {s: (d, b) for s, d, b in cat.query(
        "SELECT stage, sum(docs_out), sum(bytes_out) FROM unit_stats WHERE run_id = ? GROUP BY stage", [run_id])}
    per_stage = {s: d for s, (d, _) in sums.items()}
    funnel = data["sections"]["funnel"]["figures"]
    assert {f["stage"]: f["docs_out"] for f in funnel} == per_stage
    assert [f["stage"] for f in funnel] == ["00-read", "01-length_filter", "02-exact_dedup"]
    assert {f["stage"]: f["est_tokens_out"] for f in funnel} == {s: -(-b // 4) for s, (_, b) in sums.items()}
    drops = {(s, r): n for s, r, n in cat.query(
        "SELECT stage, reason, sum(docs) FROM drops WHERE run_id = ? GROUP BY ALL", [run_id])}
    got = {(f["stage"], f["reason"]): f["docs"] for f in data["sections"]["drops"]["figures"]}
    assert got == drops and set(drops) == {("01-length_filter", "too_few_words"), ("02-exact_dedup", "exact_duplicate")}
    ov = data["sections"]["overview"]["figures"]
    balance = cat.query("SELECT source, input, kept, rejected, quarantined FROM balance WHERE run_id = ?", [run_id])
    assert [(b["source"], b["input"], b["kept"], b["rejected"], b["quarantined"]) for b in ov["balance"]] == balance
    assert ov["pipeline"] == ["00-read", "01-length_filter", "02-exact_dedup"]
    assert ov["balanced"] is True and ov["output"]["docs"] == per_stage["02-exact_dedup"]
    assert ov["rejected"] == sum(drops.values()) and ov["quarantined"] == 3


def test_every_drop_reason_has_examples(report: tuple[str, dict]):
    html, data = report
    for f in data["sections"]["drops"]["figures"]:
        assert 1 <= len(f["examples"]) <= 3, f
        assert all(e["snippet"] and e["id"] and e["file"] for e in f["examples"])
        assert f["reason"] in html
        for e in f["examples"]:
            assert len(e["snippet"]) <= 301  # truncated snippets, never whole documents
    dedup = next(f for f in data["sections"]["drops"]["figures"] if f["reason"] == "exact_duplicate")
    assert all("duplicate_of" in e["scores"] for e in dedup["examples"])  # the operator's evidence travels along


def test_quarantine_kinds_with_examples(report: tuple[str, dict]):
    html, data = report
    q = {f["kind"]: f for f in data["sections"]["quarantine"]["figures"]}
    assert set(q) == {"invalid_json", "missing_text", "invalid_utf8"}
    bad = q["invalid_json"]["examples"][0]
    assert bad["file"] == "part-000.jsonl" and bad["line"] == 3 and bad["error"]
    assert bad["raw_preview"].startswith('{"text": "broken json')
    assert "invalid_json" in html and "part-000.jsonl:3" in html
    # the raw preview shows the offending bytes instead of hiding them
    assert "caf\\xe9 cr\\xe8me" in q["invalid_utf8"]["examples"][0]["raw_preview"]


def test_html_escapes_documents(report: tuple[str, dict]):
    html, data = report
    examples = [e for f in data["sections"]["drops"]["figures"] for e in f["examples"]]
    assert any(XSS in e["snippet"] for e in examples)  # the hostile doc is among the examples shown
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script") == 1  # ours, at the end of the page


def test_no_network_references(report: tuple[str, dict]):
    html, _ = report
    assert not re.search(r"""(?:src|href|action|srcset)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"@import|url\(\s*['\"]?(?:https?:)?//", html, re.I)
    assert "default-src 'none'" in html


def test_custom_sections_register(run_out: Path):
    @section("custom_check", title="Custom check", order=95)
    def custom(ctx: ReportContext) -> str:
        return f"<p>custom for {len(ctx.sources)} source(s)</p>"

    @section("not_applicable", title="Not applicable here", order=96)
    def skipped(ctx: ReportContext) -> None:
        return None

    try:
        html, data = build_report(run_out)
        assert 'id="custom_check"' in html and "custom for 1 source(s)" in html and 'href="#custom_check"' in html
        assert "custom_check" in data["sections"]
        assert 'id="not_applicable"' not in html and "Not applicable here" not in html
        assert "not_applicable" not in data["sections"]
        with pytest.raises(ValueError, match="already registered"):
            section("custom_check", title="again")(lambda ctx: None)
    finally:
        unregister("custom_check")
        unregister("not_applicable")
    assert "custom_check" not in build_report(run_out)[1]["sections"]


def test_a_failing_section_is_contained(run_out: Path):
    @section("boom", title="Boom", order=97)
    def boom(ctx: ReportContext) -> str:
        raise RuntimeError("<kaput>")

    try:
        html, data = build_report(run_out)
    finally:
        unregister("boom")
    assert data["errors"] == [{"section": "boom", "error": "RuntimeError: <kaput>"}]
    assert "&lt;kaput&gt;" in html and 'id="funnel"' in html


def test_profile_sections(run_out: Path, tmp_path: Path):
    out = tmp_path / "out"
    shutil.copytree(run_out, out)
    add_profile(out, 1, make_profile("01-profile", 240, seed=1, xss=True))
    html, data = build_report(out)
    secs = data["sections"]
    for key in ("profile", "features", "mix", "top_lines", "outliers", "meta"):
        assert key in secs, key
    assert "compare" not in secs  # one profile: nothing to compare
    assert set(secs["features"]["figures"]["features"]) == set(FEATURES)
    assert secs["profile"]["figures"]["overall"]["docs"] == 240
    assert set(secs["outliers"]["figures"]["outliers"]) == {"n_chars"}  # zero-count features are left out
    assert XSS not in html and data["errors"] == []
    assert html.count("<svg") >= len(FEATURES) + 3

    add_profile(out, 4, make_profile("04-profile", 200, seed=7))
    html, data = build_report(out)
    cmp = data["sections"]["compare"]["figures"]
    assert cmp["before"]["profile"] == "01-profile" and cmp["after"]["profile"] == "04-profile"
    assert cmp["before"]["summary"]["docs"] == 240 and cmp["after"]["summary"]["docs"] == 200
    assert data["sections"]["profile"]["figures"]["profile"] == "04-profile"  # single sections show the last
    assert 'id="compare"' in html and data["errors"] == []


def test_sparse_profile_renders(run_out: Path, tmp_path: Path):
    """A profile of an empty corpus (nulls, no histograms) leaves parts out instead of failing."""
    out = tmp_path / "out"
    shutil.copytree(run_out, out)
    empty = {"docs": 0, "bytes": 0, "est_tokens": 0, "features": {"n_chars": {"mean": None, "min": None, "max": None,
             "quantiles": {}, "histogram": {"edges": [], "counts": [], "log": True}}, "n_words": None},
             "scripts": {}, "languages": None, "sources": {}, "meta_fields": {}, "top_lines": [], "outliers": {},
             "exact_dup_rate": None, "near_dup_rate": None}
    add_profile(out, 1, {"format": PROFILE, "label": "01-profile", "overall": empty, "by_source": {}})
    add_profile(out, 3, {"format": PROFILE, "label": "03-profile", "overall": None})
    html, data = build_report(out)
    assert data["errors"] == []
    assert {"profile", "compare"} <= set(data["sections"])
    assert not {"mix", "top_lines", "outliers", "meta"} & set(data["sections"])


def test_bad_profile_is_skipped_with_a_warning(run_out: Path, tmp_path: Path):
    out = tmp_path / "out"
    shutil.copytree(run_out, out)
    path = add_profile(out, 2, {"format": "something-else"})
    _, data = build_report(out)
    assert "profile" not in data["sections"]
    assert any(str(path.relative_to(out)) in w for w in data["warnings"])


@pytest.mark.parametrize("version", ["corpusforge.profile/1", "corpusforge.profile/9"])
def test_a_profile_of_another_format_version_is_skipped_with_a_warning(run_out: Path, tmp_path: Path, version: str):
    """Any corpusforge.profile/* passed (a prefix match): a /1 profile, which has no features, silently lost
    the Document features section, and report.json had no warning. The format must be the one the profile
    operator writes; another is skipped, with a warning naming the file and both formats."""
    out = tmp_path / "out"
    shutil.copytree(run_out, out)
    path = add_profile(out, 2, {**make_profile("02-profile", 240, seed=1), "format": version})
    _, data = build_report(out)
    assert not {"profile", "features"} & set(data["sections"])
    assert f"{path.relative_to(out)}: profile format {version!r}, not {PROFILE!r}" in "\n".join(data["warnings"])


def test_a_damaged_rejected_or_quarantine_file_is_named_and_the_others_still_give_examples(run_out: Path,
                                                                                         tmp_path: Path):
    """A changed rejected file made DuckDB fail on the whole stage ("cannot read examples from
    rejected/01-length_filter: don't know what type", in the log alone): every example of the stage was
    lost and no file was named. The file is named in the report's warnings now, and left out."""
    out = tmp_path / "out"
    shutil.copytree(run_out, out)
    _, before = build_report(out)
    manifest = json.loads((out / "manifest.json").read_text())
    bad = next(e["path"] for e in manifest["rejected"] if e["path"].startswith("rejected/02-exact_dedup/"))
    data = bytearray((out / bad).read_bytes())
    data[len(data) // 2 : len(data) // 2 + 32] = bytes(32)
    (out / bad).write_bytes(bytes(data))
    quarantine = manifest["quarantine"][0]["path"]
    (out / quarantine).unlink()
    html, after = build_report(out)
    assert any(w.startswith(f"{bad}: content changed since it was written") and "corpus verify" in w
               for w in after["warnings"]), after["warnings"]
    assert any(w.startswith(f"{quarantine}: missing; its examples are left out") for w in after["warnings"])
    assert bad in html and after["errors"] == []
    shown = {f["reason"]: f for f in after["sections"]["drops"]["figures"]}
    assert shown["too_few_words"] == {f["reason"]: f for f in before["sections"]["drops"]["figures"]}["too_few_words"]
    dups = shown["exact_duplicate"]["examples"]  # from the stage's other file (part-001's documents)
    assert dups and all(e["file"] == "part-001.jsonl" for e in dups)


def test_near_duplicate_section(tmp_path: Path):
    from corpus.stages.minhash import MinHashDedup

    rng = random.Random(5)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6)) for _ in range(400)]
    inp = tmp_path / "in"
    inp.mkdir()
    docs = []
    for i in range(30):
        base = [rng.choice(words) for _ in range(120)]
        docs.append(" ".join(base))
        if i % 3 == 0:  # a near copy: two words changed, far above the 0.8 threshold
            copy = list(base)
            copy[10], copy[90] = "changed", "edited"
            docs.append(" ".join(copy))
    (inp / "a.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    res = Pipeline([MinHashDedup()]).run(inputs=[InputSpec(source="s", path=str(inp))], output=tmp_path / "out",
                                         workers=1, quiet=True)
    figures = json.loads((res.output / "report.json").read_text())["sections"]["stage-minhash_dedup"]["figures"]
    (stage,) = figures
    assert figures[stage]["removed"] == 10 and figures[stage]["clusters"] == 10
    assert figures[stage]["bands"] * figures[stage]["rows"] <= 128
    assert all(c["size"] == 2 for c in figures[stage]["top_clusters"])
    html = (res.output / "report.html").read_text()
    assert "Near-duplicate clusters" in html and "S-curve" in html


def test_numbers_read_with_about_three_significant_digits():
    """A bound of 9 words read "9.000" (nine thousand, to many readers) and 98 chars "98.00"."""
    from corpus.report.html import fmt_num

    got = [fmt_num(x) for x in (9.0, 98.0, 568.04, 1518.4, 0.5, 0.125, 0.0, 0.0001, 5, -2.5, float("nan"), None)]
    assert got == ["9.00", "98.0", "568", "1,518", "0.500", "0.125", "0", "1.00e-04", "5", "-2.50", "—", "—"]


def test_a_counts_quantiles_read_as_whole_numbers():
    """The quantile row of a count (min 24 chars, p01 1 line) read "24.0" and "1.00"; a feature with a
    fractional value keeps its digits, and the mean always does."""
    from corpus.report.distributions import _quantile_row

    def cells(f: dict) -> list[str]:
        return [c.text for c in _quantile_row("x", f)[1:]]

    count = {"mean": 12.8, "min": 1.0, "max": 746.0,
             "quantiles": {"p01": 1.0, "p05": 1.0, "p25": 7.0, "p50": 12.0, "p75": 15.0, "p95": 19.0, "p99": 36.0}}
    assert cells(count) == ["12.8", "1", "1", "1", "7", "12", "15", "19", "36", "746"]
    share = {"mean": 0.5, "min": 0.0, "max": 1.0,
             "quantiles": {"p01": 0.0, "p05": 0.25, "p25": 0.5, "p50": 0.5, "p75": 0.75, "p95": 1.0, "p99": 1.0}}
    assert cells(share) == ["0.500", "0", "0", "0.250", "0.500", "0.500", "0.750", "1.00", "1.00", "1.00"]


def test_an_outlier_rule_leaves_out_a_bound_nothing_can_cross():
    """Profile features are counts and shares: "< 0 or > 0.370" read as if documents below 0 existed."""
    from corpus.report.html import fmt_num
    from corpus.units import flagged_when

    assert flagged_when(0.0, 0.37, fmt_num) == "> 0.370"
    assert flagged_when(-1.0, 0.0, fmt_num) == "> 0"
    assert flagged_when(98.0, 8989.0, fmt_num) == "< 98.0 or > 8,989"


# ---------------------------------------------------------------- a failed run that up-samples


def test_a_failed_run_that_up_samples_counts_its_copies_beside_the_originals(tmp_path: Path):
    """A run stopped after `sample` (weights 2.0) has no balance: its report took the last stage's output,
    copies included, as kept ("1,709 of 1,208 input records (141.5%)"; a source's kept twice its input).
    Kept counts originals now, and the copies are shown beside them, as for a finished run."""
    from corpus.operators import SinkOperator, StageContext, StopRun
    from corpus.stages.sample import Sample

    class Stop(SinkOperator):
        name = "stop_here"

        def consume(self, ctx: StageContext) -> dict:
            raise StopRun("stopped on purpose")

    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "a.jsonl").write_text("".join(json.dumps({"text": f"document number {i} with words"}) + "\n"
                                         for i in range(20)))
    with pytest.raises(StopRun):
        Pipeline([Sample(weights={"web": 2.0}), Stop()]).run(
            inputs=[InputSpec(source="web", path=str(inp))], output=tmp_path / "out", workers=1, quiet=True)
    html, data = build_report(tmp_path / "out")
    assert data["status"] == "failed"
    out = data["sections"]["overview"]["figures"]["output"]
    assert out["docs"] == 40 and out["copies"] == 20 and out["published"] is False
    (web,) = data["sections"]["sources"]["figures"]
    assert web["input"] == 20 and web["kept"] == 20
    assert "20 of 20 input records (100.0%) and 20 copies from sampling; not published" in html


# ---------------------------------------------------------------- a killed run


def test_a_killed_run_is_stopped_as_corpus_status_says_and_shows_only_the_stages_it_reached(run_out: Path,
                                                                                            tmp_path: Path):
    """The report called a SIGKILLed run "running" (header, Run status card, report.json) where `corpus
    status` said stopped, and a report of it rebuilt after a later run showed the later run's sections
    of stages it never reached (a profile here). Both now use one status (corpus.stats.shown_status), and
    only the stages a run got to have sections."""
    import subprocess
    import sys

    from corpus.stats import funnel_rows, status_rows

    out = tmp_path / "out"
    shutil.copytree(run_out, out)
    add_profile(out, 3, make_profile("03-profile", 240, seed=1))
    cat = _catalog(out)
    latest = cat.latest_run()
    killed = "20000101T000000-dead00"  # an earlier run, killed while reading: it never recorded more
    with cat.connect() as con:
        con.execute("INSERT INTO runs SELECT ?, started - INTERVAL 1 HOUR, NULL, 'running', config, workers, NULL "
                    "FROM runs WHERE run_id = ?", [killed, latest])
        con.execute("INSERT INTO stages SELECT ? AS run_id, * EXCLUDE (run_id) FROM stages WHERE run_id = ?",
                    [killed, latest])
        con.execute("INSERT INTO unit_stats SELECT ? AS run_id, * EXCLUDE (run_id) FROM unit_stats "
                    "WHERE run_id = ? AND stage_idx = 0", [killed, latest])
    html, data = build_report(out, killed)
    assert data["status"] == "stopped" and data["sections"]["overview"]["figures"]["run"]["status"] == "stopped"
    assert "profile" not in data["sections"] and "running" not in html
    assert any("did not reach 01-length_filter, 02-exact_dedup, 03-profile" in w for w in data["warnings"])
    assert funnel_rows(out, killed)[4][0][0] == "stopped"

    # the latest run killed: its process, the lock's holder, is gone
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".lock").write_text(str(dead.pid))
    with cat.connect() as con:
        con.execute("UPDATE runs SET status = 'running', finished = NULL WHERE run_id = ?", [latest])
    _, data = build_report(out)
    assert data["status"] == "stopped" and status_rows(out)[0][1] == "stopped"
    assert "profile" not in data["sections"]  # killed before its last stage ended...
    key = f"{3:012x}"
    (stage_dir(out / "work", 3, "profile", key) / "_done.json").write_text(json.dumps({"key": key}))
    assert "profile" in build_report(out)[1]["sections"]  # ... or after: the sink's marker says so


def test_the_token_chart_labels_each_stage_with_the_figure_the_tables_show(tmp_path: Path):
    """The funnel's est.-tokens chart labelled each stage with the sum of its per-source estimates (each
    rounded up: 1,256,003 beside the tables' 1,256,001). Its labels are the stage's own figure now,
    est_tokens of the stage's total bytes, as docs/report.md promises."""
    inputs = []
    for src in ("a", "b", "c"):
        (tmp_path / src).mkdir()
        (tmp_path / src / "x.jsonl").write_text(json.dumps({"text": "twenty-one bytes, yes"}) + "\n")  # 21 bytes
        inputs.append(InputSpec(source=src, path=str(tmp_path / src)))
    Pipeline([LengthFilter(min_words=1)]).run(inputs=inputs, output=tmp_path / "out", workers=1, quiet=True)
    html, data = build_report(tmp_path / "out")
    funnel = data["sections"]["funnel"]["figures"]
    assert [f["est_tokens_out"] for f in funnel] == [16, 16]  # 63 bytes / 4, rounded up once
    chart = re.search(r'<svg[^>]*aria-label="Estimated tokens kept after each stage, by source".*?</svg>', html).group()
    assert re.findall(r'class="val">([^<]*)<', chart) == ["16", "16"]
    assert "00-read: 16<" in chart and "00-read: 18<" not in chart


def test_the_drop_reasons_chart_shows_each_bars_reason(tmp_path: Path):
    """The chart labelled each bar "stage · reason" cut to 37 characters: all four bars of a Gopher
    stage read "04-gopher_quality_filter · gopher_qu…". The stage is a heading above its reasons now,
    each bar is labelled with its whole reason, and its tooltip gives both."""
    from corpus.report.data import RunInfo
    from corpus.report.sections import drops

    stage = "04-gopher_quality_filter"
    reasons = ["gopher_quality:alpha_words<0.8", "gopher_quality:mean_word_length>10", "gopher_quality:stop_words<2",
               "gopher_quality:words<50"]
    ctx = ReportContext(out=tmp_path, run=RunInfo("r", "ok", None, None, None, 1, {}), stages=[], funnel=[],
                        drops=[{"stage_idx": 4, "stage": stage, "source": "web", "reason": r, "docs": i + 1}
                               for i, r in enumerate(reasons)],
                        quarantine=[], balance=[], manifest=None, profiles=[], examples_current=True)
    chart = re.search(r'<svg[^>]*aria-label="Dropped documents by reason".*?</svg>', drops(ctx).html).group()
    shown = re.findall(r"<text[^>]*>([^<]*)</text>", chart)
    assert shown[1] == stage and [t.replace("&lt;", "<").replace("&gt;", ">") for t in shown[2::2]] == reasons
    assert f"<title>{stage} · gopher_quality:words&lt;50: 4</title>" in chart


def test_bidi_controls_in_data_text_are_shown_not_obeyed(run_out: Path, tmp_path: Path):
    """A record with id "rtl-\\u202eevil" read "rtl-live" in the Outliers table: only the quarantine
    preview showed bidirectional controls. Every piece of data text goes through esc, which now shows
    them as \\uXXXX escapes: ids, snippets, tooltips, chart labels."""
    out = tmp_path / "out"
    shutil.copytree(run_out, out)
    profile = make_profile("01-profile", 240, seed=1)
    example = profile["overall"]["outliers"]["n_chars"]["examples"][0]
    example.update(id="rtl-\u202eevil", snippet="a \u2066isolate\u2069, \u200emarks\u200f and \u061c\u202a\u202b")
    profile["overall"]["top_lines"][0]["line"] = "\u202dline\u202c"
    add_profile(out, 1, profile)
    html, data = build_report(out)
    assert data["sections"]["outliers"]["figures"]["outliers"]["n_chars"]["examples"][0]["id"] == "rtl-\u202eevil"
    assert not re.search("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]", html)
    assert "rtl-\\u202eevil" in html
    assert "a \\u2066isolate\\u2069, \\u200emarks\\u200f and \\u061c\\u202a\\u202b" in html
    assert 'title="\\u202dline\\u202c"' in html


def test_a_new_figure_sorts_with_the_largest_changes():
    """In Before and after, a change from 0 read "new" with no sort value, so the page sorted it as
    -Infinity, below every decrease. It sorts as +Infinity now: first when sorting largest first."""
    from corpus.report.distributions import _change
    from corpus.report.html import Col, table

    cells = [_change(0, 5), _change(10, 5), _change(10, 40), _change(0, 0)]
    html = table([Col("change", True)], [[c] for c in cells])
    assert re.findall(r'<td class="num"(?: data-v="([^"]*)")?>([^<]*)</td>', html) == [
        ("Infinity", "new"), ("-0.5", "-50.0%"), ("3.0", "+300.0%"), ("", "—")]
