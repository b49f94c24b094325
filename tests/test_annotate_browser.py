"""The annotation app end to end in a real browser (Debian's headless Chromium driven by playwright):
two annotators sign in and rank the same items with the keyboard (ties, undo, pick-the-best, an
aspect rating, a comment), a model output holding a script stays text, nothing is fetched from
elsewhere, the admin page shows progress and agreement; the export is read by the reward-model plugin,
which trains on it."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from helpers import chromium, require_browser
from rlhfkit import pref_config
from test_annotate import make_project, write_tasks
from trainkit import shards  # noqa: F401 (fixture)

from corpus import plugins
from corpus.plugins.annotate.app import create_app
from corpus.plugins.annotate.export import export
from corpus.plugins.preferences import read_preferences

sync_api = require_browser()

XSS = '<script>alert("from the model")</script><img src=x onerror=alert(1)>'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(store) -> Iterator[str]:
    """The app over ``store`` on a loopback port, in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the app did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object, dict, Path]]:
    root = tmp_path_factory.mktemp("annotate-browser")
    tasks = write_tasks(root / "tasks.jsonl", 3)
    with open(tasks, "a") as fh:
        fh.write(json.dumps({"item_id": "xss", "prompt": f"Summarise {XSS}",
                             "responses": [f"Sure: {XSS}", "A summary.", "No."]}) + "\n")
    store, tokens = make_project(root / "proj", tasks, ["ann", "bea"], per_item=2, aspects=["helpful"])
    try:
        with serving(store) as base:
            yield base, store, tokens, root
    finally:
        store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    yield from chromium(sync_api)


def open_page(browser, base: str, problems: list[str]):
    page = browser.new_context().new_page()
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))  # alert() lands here

    def only_ours(route) -> None:
        if route.request.url.startswith((base, "data:")):
            route.continue_()
        else:
            problems.append(f"outside request: {route.request.url}")
            route.abort()

    page.route("**/*", only_ours)
    return page


def sign_in(page, base: str, token: str, home: str = "/") -> None:
    page.goto(base + "/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(base + home)


def rank_all(page, keys_for_item) -> dict[str, dict[str, int]]:
    """Rank every item offered with the keys ``keys_for_item(page)`` presses; returns, per item, the rank
    each response text should get."""
    expected = {}
    while True:
        page.wait_for_selector("#task:not([hidden]), #empty:not([hidden])")  # (the app's CSP forbids eval)
        if page.is_visible("#empty"):
            return expected
        item = page.text_content("#item-id")
        texts = page.locator("#responses .card pre.text").all_text_contents()
        if item == "xss":  # the model's markup is shown as text, never run or parsed
            assert page.text_content("#prompt") == f"Summarise {XSS}"
            assert f"Sure: {XSS}" in texts
            assert page.locator("#responses img, #responses script, #prompt *").count() == 0
        ranks = keys_for_item(page)
        expected[item] = {text: ranks[pos] for pos, text in enumerate(texts)}
        deadline = time.monotonic() + 30
        while page.text_content("#item-id") == item and not page.is_visible("#empty"):
            assert time.monotonic() < deadline, f"item {item} was not submitted: {page.text_content('#status')}"
            page.wait_for_timeout(50)


def ann_keys(page) -> list[int]:
    """3, undo, 2, tie, 3: the second and third shown share the best rank; Enter puts the first last.
    Rates the first shown response's helpfulness and comments (C, then Ctrl+Enter submits)."""
    for key in ("3", "Backspace", "2", "=", "3"):
        page.keyboard.press(key)
    assert page.locator("#responses .card.best").count() == 2
    page.select_option("#responses .card >> nth=0 >> select.aspect", "4")
    page.click("#prompt")  # out of the select: keys are shortcuts again
    page.keyboard.press("c")
    page.keyboard.type("close <b>call</b>")
    page.keyboard.press("Control+Enter")
    return [2, 1, 1]


def bea_keys(page) -> list[int]:
    """Pick the best: its number, then Enter (the others share the last place)."""
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    return [1, 2, 2]


@pytest.mark.slow
def test_two_annotators_rank_in_a_browser_and_the_reward_model_trains_on_the_export(
        served, browser, shards, tmp_path: Path):  # noqa: F811
    base, store, tokens, root = served
    problems: list[str] = []
    expected = {}
    for name, keys in (("ann", ann_keys), ("bea", bea_keys)):
        page = open_page(browser, base, problems)
        sign_in(page, base, tokens[name])
        expected[name] = rank_all(page, keys)
        assert "4 labelled" in page.text_content("#progress")
        page.keyboard.press("l")  # my labels: four, each reopened with the ranks given
        page.wait_for_selector("#history:not([hidden])")
        assert page.locator("#history-list li").count() == 4
        page.context.close()
    assert set(expected["ann"]) == set(expected["bea"]) == {"item-0", "item-1", "item-2", "xss"}
    # Log out before the page's sign-in check (which brings the CSRF token) has answered: the request
    # waits for it and the session ends (it went without a token, was refused, and the session lived on)
    page = open_page(browser, base, [])  # (its first item's request may meet the ended session: a 401 logged)
    held = []
    page.route("**/api/me", lambda route: held.append(route))
    sign_in(page, base, tokens["ann"])
    while not held:
        page.wait_for_timeout(20)
    page.click("#logout")
    page.wait_for_timeout(200)
    page.unroute("**/api/me")
    held[0].continue_()
    for _ in range(200):  # polled: the page may be sent to /login twice (log out, and its next item's 401)
        if page.url == base + "/login":
            break
        page.wait_for_timeout(50)
    page.goto(base + "/")
    page.wait_for_url(base + "/login")  # signed out for good
    page.context.close()

    dest = root / "rankings.jsonl"
    assert export(store, dest) == 8
    prefs, bad = read_preferences(dest)
    assert bad.height == 0 and len(prefs) == 8
    for p in prefs:
        assert {r: rank for r, rank in zip(p.responses, p.ranking, strict=True)} == expected[p.annotator][p.item_id]
        if p.annotator == "ann":
            assert p.comment == "close <b>call</b>" and list(p.aspects) == ["helpful"]
            assert list(p.aspects["helpful"].values()) == [4.0]
            assert list(p.aspects["helpful"]) == [p.shown_order[0]]  # the first card shown, by its given index

    admin = open_page(browser, base, problems)
    sign_in(admin, base, tokens["admin"], "/admin")
    admin.wait_for_selector("#agreement")
    table = admin.text_content("#progress table")
    assert "ann" in table and "bea" in table
    assert "Kendall" in admin.text_content("#agreement")
    assert admin.locator("img[src=x]").count() == 0
    held = []  # the page's sign-in check (which brings its CSRF token) is held back: a click meanwhile waits
    admin.route("**/admin/api/me", lambda route: held.append(route))
    admin.click("text=Add an annotator")  # while the app runs (the CLI cannot: the app holds the project)
    admin.fill("#name", "cy")
    admin.click("#add")  # (it sent no token, and was refused, when clicked this early)
    while not held:
        admin.wait_for_timeout(20)
    admin.wait_for_timeout(200)
    assert admin.is_hidden("#made")
    held[0].continue_()
    admin.wait_for_selector("#made:not([hidden])")
    assert admin.text_content("#who") == "cy" and len(admin.text_content("#token")) >= 40
    admin.context.close()
    assert problems == []

    # the reward model reads the export (shared Ranking JSONL) and trains on it
    from corpus.plugins.reward import RewardConfig

    tok, _ = shards
    cfg = pref_config(RewardConfig, tmp_path / "rm", {"train": str(dest), "validation_fraction": 0.25,
                                                      "use": "labels"}, tok,
                      train={"max_steps": 2, "eval_every": 2, "batch_size": 2})
    result = plugins.run("reward", cfg)
    assert result.steps == 2 and (tmp_path / "rm" / "final").is_dir()
    stats = json.loads((tmp_path / "rm" / "data_stats.json").read_text())
    assert stats["labels"] == 8 and stats["annotators"] == 2 and stats["quarantined"] == 0


@pytest.mark.slow
def test_a_label_refused_with_409_shows_why_and_moves_on_to_the_next_item(tmp_path: Path, browser):
    tasks = write_tasks(tmp_path / "tasks.jsonl", 2)
    store, tokens = make_project(tmp_path / "proj", tasks, ["ann"], per_item=1)
    problems: list[str] = []
    try:
        with serving(store) as base:
            page = open_page(browser, base, problems)
            sign_in(page, base, tokens["ann"])
            page.wait_for_selector("#task:not([hidden])")
            first = page.text_content("#item-id")
            store.skip("ann", first, "other-tab")  # skipped in another tab: a label of it is now a 409
            bea_keys(page)
            deadline = time.monotonic() + 30
            while page.text_content("#item-id") == first:  # it went on (it stayed, showing "Not saved")
                assert time.monotonic() < deadline, f"stayed on {first}: {page.text_content('#status')}"
                page.wait_for_timeout(50)
            assert page.text_content("#status").startswith("Not saved: you skipped this item")
            assert page.get_attribute("#status", "class") == "error"
            page.context.close()
    finally:
        store.close()
    assert [p for p in problems if "409" not in p] == []  # (the browser logs the refused request)
