"""The report in a real browser (Debian's headless Chromium driven by playwright): no script errors,
charts laid out, tables sort, and not one request leaves the file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import chromium, require_browser
from test_report import add_profile, build_run, make_profile

from corpus.report import write_report

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
sync_api = require_browser()



@pytest.fixture(scope="module")
def report_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = build_run(tmp_path_factory.mktemp("browser"))
    add_profile(out, 1, make_profile("01-profile", 260, seed=1, xss=True))
    add_profile(out, 4, make_profile("04-profile", 220, seed=5))
    html_path, _ = write_report(out)
    return html_path


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    yield from chromium(sync_api)


def test_report_in_a_browser(browser, report_path: Path):
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    problems: list[str] = []
    outside: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))  # alert(1) would land here

    def only_local(route) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    page.route("**/*", only_local)
    page.on("request", lambda r: None if r.url.startswith(("file:", "data:")) else outside.append(r.url))
    page.goto(report_path.as_uri())
    page.wait_for_load_state("load")

    # charts: present, each laid out with a real size
    charts = page.locator("svg.chart")
    assert charts.count() >= 20
    for i in range(charts.count()):
        box = charts.nth(i).bounding_box()
        assert box and box["width"] > 0 and box["height"] > 0, f"chart {i} has no size"
    assert page.locator("svg.chart rect title, svg.chart g > title").count() > 0  # tooltips

    # a numeric header sorts its rows: largest first, then smallest first
    tbl = page.locator("#funnel table.sortable").nth(1)  # per stage and source
    header = tbl.locator("thead th", has_text="docs out")
    col = [h.strip() for h in tbl.locator("thead th").all_inner_texts()].index("docs out")

    def column() -> list[float]:
        return [float(v) for v in tbl.locator(f"tbody tr td:nth-child({col + 1})").evaluate_all(
            "cells => cells.map(c => c.dataset.v)")]

    before = column()
    header.click()
    desc = column()
    header.click()
    asc = column()
    assert desc == sorted(before, reverse=True) and asc == sorted(before) and asc != desc
    assert header.get_attribute("aria-sort") == "ascending"
    # a text header sorts alphabetically
    stage_head = tbl.locator("thead th").first
    stage_head.click()
    stages = tbl.locator("tbody tr td:first-child").all_inner_texts()
    assert stages == sorted(stages)

    # the sticky nav links to every section
    ids = page.locator("section.rs").evaluate_all("ss => ss.map(s => s.id)")
    hrefs = page.locator("nav.toc a").evaluate_all("as => as.map(a => a.getAttribute('href'))")
    assert hrefs == [f"#{i}" for i in ids] and "compare" in ids

    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(report_path.as_uri())  # fresh state for the picture
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    page.close()
    assert problems == []
    assert outside == []
