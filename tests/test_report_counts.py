"""The report's counts agree with the nothing-lost balance when sampling's copies are dropped later."""

from __future__ import annotations

import json
import re
from pathlib import Path

from corpus import InputSpec, Pipeline
from corpus.report import build_report
from corpus.stages.dedup import ExactDedup
from corpus.stages.sample import Sample


def _run(tmp_path: Path, weights: dict[str, float], docs: dict[str, int]) -> tuple[str, dict]:
    inputs = []
    for src, n in docs.items():
        (tmp_path / src).mkdir()
        (tmp_path / src / "x.jsonl").write_text("".join(
            json.dumps({"text": f"{src} document number {i} has some words"}) + "\n" for i in range(n)))
        inputs.append(InputSpec(source=src, path=str(tmp_path / src)))
    Pipeline([Sample(weights=weights), ExactDedup()]).run(inputs=inputs, output=tmp_path / "out", workers=1,
                                                           quiet=True)
    return build_report(tmp_path / "out")


def _chart_totals(html: str) -> list[str]:
    chart = re.search(r'<svg[^>]*aria-label="Input records per source, by outcome".*?</svg>', html).group()
    return re.findall(r'class="val">([^<]*)<', chart)


def test_dropped_copies_are_not_rejected_input_records(tmp_path: Path):
    """sample (weight 3.0) then exact_dedup, which drops the 20 copies: the overview said 20 rejected beside
    a balance of 0, and the source's row and bar 30 outcomes for 10 records."""
    html, data = _run(tmp_path, {"s": 3.0}, {"s": 10})
    ov = data["sections"]["overview"]["figures"]
    (bal,) = ov["balance"]
    assert bal["input"] == 10 and bal["rejected"] == 0 and ov["balanced"]
    assert ov["rejected"] == 0 and ov["copies_dropped"] == 20
    (src,) = data["sections"]["sources"]["figures"]
    assert (src["input"], src["rejected"], src["kept"], src["copies_dropped"]) == (10, 0, 10, 20)
    assert _chart_totals(html) == ["10"]
    assert "and 20 copies from sampling dropped" in html


def test_overview_and_sources_agree_with_the_balance_when_a_source_is_down_sampled(tmp_path: Path):
    """sample {a: 0.5, b: 2.5} then exact_dedup: a loses originals (rejected), b's copies are dropped."""
    html, data = _run(tmp_path, {"a": 0.5, "b": 2.5}, {"a": 20, "b": 8})
    ov = data["sections"]["overview"]["figures"]
    assert ov["balanced"]
    bal = {b["source"]: b for b in ov["balance"]}
    assert ov["rejected"] == sum(b["rejected"] for b in bal.values())
    assert bal["a"]["rejected"] > 0
    dropped = sum(f["docs"] for f in data["sections"]["drops"]["figures"])
    assert ov["copies_dropped"] == dropped - ov["rejected"] > 0
    for f in data["sections"]["sources"]["figures"]:
        b = bal[f["source"]]
        assert (f["input"], f["rejected"], f["kept"]) == (b["input"], b["rejected"], b["kept"])
        assert f["input"] == f["kept"] + f["rejected"] + f["quarantined"]
    assert _chart_totals(html) == ["20", "8"]


def test_an_outliers_bound_and_its_flagged_values_print_apart():
    """The HTML rounded bound and value alike: "> 0.007" flagged a document shown as 0.007 (bound
    0.00658681, value 0.00676983). Both show 3 significant digits now, more when they would print equal."""
    from types import SimpleNamespace

    from corpus.report.data import Profile
    from corpus.report.distributions import outliers

    def render(high: float, values: list[float]) -> str:
        found = {"count": len(values), "low": 0.0, "high": high,
                 "examples": [{"id": f"d{i}", "source": "s", "value": v, "robust_z": 4.0, "snippet": "x"}
                              for i, v in enumerate(values)]}
        prof = Profile(1, "01-profile-k", Path("p.json"),
                       {"label": "01-profile", "overall": {"docs": 100, "outliers": {"frac_upper": found}}})
        return outliers(SimpleNamespace(profiles=[prof])).html

    html = render(0.00658681, [0.00676983])
    assert "&gt; 0.00659" in html and ">0.00677<" in html
    html = render(0.0065868, [0.0065871])  # equal at 3 digits: more decimals, until they differ
    assert "&gt; 0.0065868" in html and ">0.0065871<" in html


def test_a_failed_run_tells_dropped_copies_from_rejected_records(tmp_path: Path):
    """A run stopped after sample {a: 0.5, b: 3.0} then exact_dedup has no balance: its report counted b's 16
    dropped copies as rejected and took them off its kept originals too (kept -8 for 8 records)."""
    import pytest

    from corpus.operators import SinkOperator, StageContext, StopRun

    class Stop(SinkOperator):
        name = "stop_here"

        def consume(self, ctx: StageContext) -> dict:
            raise StopRun("stopped on purpose")

    inputs = []
    for src, n in {"a": 20, "b": 8}.items():
        (tmp_path / src).mkdir()
        (tmp_path / src / "x.jsonl").write_text("".join(
            json.dumps({"text": f"{src} document number {i} has some words"}) + "\n" for i in range(n)))
        inputs.append(InputSpec(source=src, path=str(tmp_path / src)))
    with pytest.raises(StopRun):
        Pipeline([Sample(weights={"a": 0.5, "b": 3.0}), ExactDedup(), Stop()]).run(
            inputs=inputs, output=tmp_path / "out", workers=1, quiet=True)
    html, data = build_report(tmp_path / "out")
    ov = data["sections"]["overview"]["figures"]
    assert data["status"] == "failed" and not ov["balance"]
    assert ov["copies_dropped"] == 16 and ov["output"]["copies"] == 0
    src = {f["source"]: f for f in data["sections"]["sources"]["figures"]}
    assert (src["b"]["input"], src["b"]["rejected"], src["b"]["kept"], src["b"]["copies_dropped"]) == (8, 0, 8, 16)
    a = src["a"]
    assert a["rejected"] > 0 and a["input"] == a["kept"] + a["rejected"] and a["copies_dropped"] == 0
    assert ov["rejected"] == a["rejected"]
    assert _chart_totals(html) == ["20", "8"]
