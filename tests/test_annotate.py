"""The annotation app through its HTTP API (Starlette's test client): loading tasks, assignment (N
annotators per item, never one twice), idempotent labels, skips, edits, export in the shared
preference formats; the CLI. Security rules are in test_annotate_security.py."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from helpers import run_cli
from starlette.testclient import TestClient

from corpus.lock import RunLock
from corpus.plugins.annotate.app import create_app
from corpus.plugins.annotate.auth import new_token, token_hash
from corpus.plugins.annotate.export import export
from corpus.plugins.annotate.load import load_tasks
from corpus.plugins.annotate.store import Store
from corpus.plugins.preferences import read_preferences


def write_tasks(path: Path, n: int, k: int = 3, extra: list[str] = ()) -> Path:
    lines = [json.dumps({"item_id": f"item-{i}", "prompt": f"prompt {i}",
                         "responses": [f"response {i}.{j}" + " word" * j for j in range(k)]}) for i in range(n)]
    path.write_text("\n".join([*lines, *extra]) + "\n")
    return path


def make_project(folder: Path, tasks: Path, annotators: list[str], per_item: int = 2,
                 aspects: list[str] = ()) -> tuple[Store, dict[str, str]]:
    """A project with tokens: {name: token}, the admin's under 'admin'."""
    store = Store(folder)
    store.set_setting("per_item", str(per_item))
    store.set_setting("aspects", json.dumps(list(aspects)))
    load_tasks(store, tasks)
    tokens = {}
    for name in annotators:
        tokens[name] = new_token()
        store.add_annotator(name, token_hash(tokens[name]))
    tokens["admin"] = new_token()
    store.set_setting("admin_token_hash", token_hash(tokens["admin"]))
    return store, tokens


class Annotator:
    """A signed-in browser-like client: the session cookie plus the CSRF header on POSTs."""

    def __init__(self, app, token: str):
        self.http = TestClient(app, base_url="http://testserver")
        page = self.http.get("/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        r = self.http.post("/login", data={"token": token, "csrf": csrf}, follow_redirects=False)
        assert r.status_code == 303, r.text
        self.home = r.headers["location"]
        self.csrf = self.http.get("/api/me" if self.home == "/" else "/admin/api/me").json()["csrf"]

    def post(self, path: str, body: dict):
        return self.http.post(path, json=body, headers={"X-CSRF-Token": self.csrf or ""})

    def next(self) -> dict | None:
        return self.http.get("/api/next").json()["item"]

    def rank(self, item: dict, ranking: list[int] | None = None, sid: str | None = None, **extra):
        k = len(item["shown"])
        body = {"item_id": item["item_id"], "submission_id": sid or uuid.uuid4().hex,
                "ranking": ranking or list(range(1, k + 1)), **extra}
        return self.post("/api/label", body)


@pytest.fixture
def project(tmp_path: Path):
    store, tokens = make_project(tmp_path / "proj", write_tasks(tmp_path / "tasks.jsonl", 4), ["ann", "bea", "cid"],
                                 aspects=["helpful"])
    yield store, tokens, create_app(store)
    store.close()


def test_tasks_without_item_id_reload_harmlessly_into_a_project_holding_their_old_derived_ids(tmp_path: Path):
    tasks = tmp_path / "t.jsonl"
    rows = [{"prompt": "P1", "responses": ["a", "b"]}, {"prompt": "P2", "responses": ["c", "d"]}]
    tasks.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = Store(tmp_path / "p")
    # what a load before the content ids made: the reader's derived id "preferences:FILE:LINE"
    store.add_items([{"item_id": "preferences:t.jsonl:1", "prompt": "P1", "responses": json.dumps(["b", "a"]),
                      "response_ids": None, "meta": None, "source_file": "t.jsonl", "source_line": 1}],
                    [], str(tasks))
    r = load_tasks(store, tasks)  # P1 is there (its responses in another order): not added again
    assert (r.records, r.loaded, r.already) == (2, 1, 1) and r.balanced
    again = load_tasks(store, tasks)
    assert (again.loaded, again.already) == (0, 2)
    assert store.overview()["items"] == 2
    # only those old ids are matched by content: an item its file named ("q1") is never taken for another
    named = tmp_path / "n.jsonl"
    named.write_text(json.dumps({"item_id": "q1", "prompt": "P3", "responses": ["e", "f"]}) + "\n")
    load_tasks(store, named)
    unnamed = tmp_path / "u.jsonl"
    unnamed.write_text(json.dumps({"prompt": "P3", "responses": ["f", "e"]}) + "\n")
    assert load_tasks(store, unnamed).loaded == 1
    assert store.overview()["items"] == 4
    store.close()


def test_load_accounts_for_every_record_and_never_overwrites(tmp_path: Path):
    bad = ['{"item_id": "x", "prompt": "p", "responses": ["one"]}', "{not json",
           '{"item_id": "y", "responses": ["a", "b"]}']
    tasks = write_tasks(tmp_path / "t.jsonl", 3, extra=bad)
    store = Store(tmp_path / "p")
    r = load_tasks(store, tasks)
    assert (r.records, r.loaded, r.already) == (6, 3, 0) and r.balanced
    assert r.problems == {"missing_responses": 1, "invalid_json": 1, "missing_text": 1}
    assert any(e.startswith("t.jsonl:5: ") for e in r.examples)  # file and line in every problem
    again = load_tasks(store, tasks)
    assert (again.loaded, again.already) == (0, 3) and again.balanced
    changed = tmp_path / "changed.jsonl"
    changed.write_text(json.dumps({"item_id": "item-0", "prompt": "other", "responses": ["a", "b"]}) + "\n")
    r3 = load_tasks(store, changed)
    assert r3.problems == {"item_conflict": 1} and r3.loaded == 0
    assert store.known_items(["item-0"])["item-0"][0] == "prompt 0"  # the first content stays
    assert store.overview()["load_problems"] == {"invalid_json": 1, "item_conflict": 1, "missing_responses": 1,
                                                 "missing_text": 1}  # a reload replaces its file's problems
    store.close()


def test_a_folder_loads_as_its_files_would_one_by_one(tmp_path: Path):
    folder = tmp_path / "tdir"
    folder.mkdir()
    write_tasks(folder / "a.jsonl", 2)
    write_tasks(folder / "b.jsonl", 1, extra=[json.dumps({"item_id": "item-1", "prompt": "other",
                                                          "responses": ["a", "b"]})])
    store = Store(tmp_path / "p")
    r = load_tasks(store, folder)  # item-0 again (the same): already there; item-1 with other content: a conflict
    assert (r.records, r.loaded, r.already, r.problems) == (4, 2, 1, {"item_conflict": 1}) and r.balanced
    assert store.known_items(["item-1"])["item-1"][0] == "prompt 1"
    store.close()


def test_a_database_error_while_loading_is_the_one_reported(tmp_path: Path, monkeypatch):
    store = Store(tmp_path / "p")
    tasks = write_tasks(tmp_path / "t.jsonl", 2)
    monkeypatch.setattr(store, "known_items", lambda ids: {})  # as if nothing were there: the insert repeats a key
    load_tasks(store, tasks)
    with pytest.raises(duckdb.ConstraintException, match="item-0"):
        load_tasks(store, tasks)
    monkeypatch.undo()
    assert load_tasks(store, tasks).already == 2  # the connection is usable after the rollback
    store.close()


def test_each_item_gets_n_annotators_and_nobody_sees_one_twice(project):
    store, tokens, app = project
    people = {n: Annotator(app, tokens[n]) for n in ("ann", "bea", "cid")}
    seen: dict[str, list[str]] = {n: [] for n in people}
    active = set(people)
    while active:  # interleaved, as in real use
        for name in sorted(active):
            item = people[name].next()
            if item is None:
                active.discard(name)
                continue
            assert people[name].next()["item_id"] == item["item_id"]  # an open item stays theirs until done
            seen[name].append(item["item_id"])
            assert people[name].rank(item).status_code == 200
    for name, items in seen.items():
        assert len(items) == len(set(items)), f"{name} saw an item twice"
    per_item = Counter(i for items in seen.values() for i in items)
    assert per_item == {f"item-{i}": 2 for i in range(4)}
    assert store.overview()["complete"] == 4
    assert people["ann"].http.get("/api/me").json()["progress"]["available"] == 0


def test_a_skipped_item_goes_to_someone_else_never_back(project):
    store, tokens, app = project
    store.set_setting("per_item", "1")
    ann, bea = Annotator(app, tokens["ann"]), Annotator(app, tokens["bea"])
    first = ann.next()
    assert ann.post("/api/skip", {"item_id": first["item_id"], "submission_id": uuid.uuid4().hex}).json()["stored"]
    got = []
    while (item := ann.next()) is not None:
        got.append(item["item_id"])
        ann.rank(item)
    assert first["item_id"] not in got and len(got) == 3
    assert bea.next()["item_id"] == first["item_id"]  # back in the pool for the others
    assert ann.http.get("/api/me").json()["progress"] == {"labelled": 3, "skipped": 1, "available": 0}


def test_a_retried_submission_is_stored_once(project):
    store, tokens, app = project
    ann = Annotator(app, tokens["ann"])
    item = ann.next()
    sid = uuid.uuid4().hex
    first = ann.rank(item, [2, 1, 3], sid=sid)
    retry = ann.rank(item, [2, 1, 3], sid=sid)
    assert first.json()["stored"] is True and retry.json()["stored"] is False
    assert store._one("SELECT count(*) FROM submissions")[0] == 1
    assert store._one("SELECT count(*) FROM labels")[0] == 1
    other = ann.next()
    assert ann.rank(other, sid=sid).status_code == 409  # one id, one item
    assert store._one("SELECT count(*) FROM labels")[0] == 1


def test_an_annotator_changes_their_label(project):
    store, tokens, app = project
    ann = Annotator(app, tokens["ann"])
    item = ann.next()
    ann.rank(item, [1, 2, 2], comment="close call", aspects={"helpful": {"0": 5, "2": 1}})
    mine = ann.http.get("/api/labels").json()["labels"]
    assert [m["item_id"] for m in mine] == [item["item_id"]]
    again = ann.http.get(f"/api/labels/{item['item_id']}").json()["item"]
    assert again["label"]["ranking"] == [1, 2, 2] and again["label"]["comment"] == "close call"
    assert again["label"]["aspects"] == {"helpful": {"0": 5.0, "2": 1.0}}
    assert again["shown"] == item["shown"]  # the same order as before
    assert ann.rank(again, [3, 1, 2]).status_code == 200
    prefs = store.preferences()
    assert [(p.ranking, p.comment) for p in prefs] == [((3, 1, 2), None)]
    assert store._one("SELECT count(*) FROM submissions")[0] == 2  # both kept in the log


@pytest.mark.parametrize("body, why", [
    ({"ranking": [1, 2]}, "expected a list of 3"),
    ({"ranking": [1, 3, 3]}, "not a ranking"),
    ({"ranking": [0, 1, 2]}, "whole number from 1"),
    ({"ranking": [True, 2, 3]}, "whole number from 1"),
    ({"ranking": [1, 2, 3], "aspects": {"nope": {"0": 1}}}, "unknown aspect"),
    ({"ranking": [1, 2, 3], "aspects": {"helpful": {"7": 1}}}, "response index"),
    ({"ranking": [1, 2, 3], "aspects": {"helpful": {"²": 3}}}, "response index"),  # isdigit(), not int()
    ({"ranking": [1, 2, 3], "aspects": {"helpful": {"٠": 3, "0": 4}}}, "response index"),  # two ratings of one
    ({"ranking": [1, 2, 3], "aspects": {"helpful": {"00": 3}}}, "response index"),
    ({"ranking": [1, 2, 3], "aspects": {"helpful": {"0": 9}}}, "from 1 to 5"),
    ({"ranking": [1, 2, 3], "comment": "x" * 2001}, "at most 2000"),
    ({"ranking": [1, 2, 3], "submission_id": "short"}, "submission_id"),
])
def test_bad_labels_are_refused_with_the_reason(project, body, why):
    store, tokens, app = project
    ann = Annotator(app, tokens["ann"])
    item = ann.next()
    r = ann.post("/api/label", {"item_id": item["item_id"], "submission_id": uuid.uuid4().hex, **body})
    assert r.status_code == 400 and why in r.json()["error"]
    assert store._one("SELECT count(*) FROM labels")[0] == 0


def test_order_is_random_per_annotator_and_exported(tmp_path: Path):
    store, tokens = make_project(tmp_path / "p", write_tasks(tmp_path / "t.jsonl", 30, k=4), ["ann"], per_item=1)
    ann = Annotator(create_app(store), tokens["ann"])
    shown = {}
    while (item := ann.next()) is not None:
        order = [s["index"] for s in item["shown"]]
        shown[item["item_id"]] = order
        # rank what is shown first as best: the ranking is in the given order, so it follows shown_order
        ranking = [0] * 4
        for pos, idx in enumerate(order):
            ranking[idx] = pos + 1
        ann.rank(item, ranking)
    assert len({tuple(o) for o in shown.values()}) > 5  # 30 items, 24 orders: not one fixed order
    prefs = {p.item_id: p for p in store.preferences()}
    assert all(list(prefs[i].shown_order) == o for i, o in shown.items())
    from corpus.plugins.preferences import aggregate

    assert aggregate(list(prefs.values())).annotators["ann"].position_bias == pytest.approx(1.0)
    store.close()


def test_export_is_read_back_by_the_shared_reader(project, tmp_path: Path):
    store, tokens, app = project
    for name in ("ann", "bea"):
        a = Annotator(app, tokens[name])
        while (item := a.next()) is not None:
            a.rank(item, [1, 2, 2], aspects={"helpful": {"1": 3}}, comment=f"by {name}")
    n = export(store, tmp_path / "r.jsonl")
    prefs, bad = read_preferences(tmp_path / "r.jsonl")
    assert n == 8 and bad.height == 0 and len(prefs) == 8
    assert Counter(p.annotator for p in prefs) == {"ann": 4, "bea": 4}
    assert all(p.ranking == (1, 2, 2) and p.aspects == {"helpful": {1: 3.0}} and p.shown_order for p in prefs)
    assert {p.comment for p in prefs} == {"by ann", "by bea"}
    pairs_n = export(store, tmp_path / "p.jsonl", "pairs")
    pairs, bad = read_preferences(tmp_path / "p.jsonl")
    assert pairs_n == 16 and bad.height == 0 and all(p.ranking == (1, 2) for p in pairs)  # (0,1), (0,2) per label


def test_pairs_export_keeps_annotators_disagreement_on_one_item(tmp_path: Path):
    from corpus.plugins.preferences import aggregate

    store, tokens = make_project(tmp_path / "proj", write_tasks(tmp_path / "t.jsonl", 1, k=2), ["ann", "bea"])
    app = create_app(store)
    for name, ranking in (("ann", [1, 2]), ("bea", [2, 1])):  # opposite orders of the same two responses
        a = Annotator(app, tokens[name])
        a.rank(a.next(), ranking)
    export(store, tmp_path / "p.jsonl", "pairs")
    pairs, bad = read_preferences(tmp_path / "p.jsonl")
    assert bad.height == 0 and {p.item_id for p in pairs} == {"item-0/0-1"}
    assert {(p.annotator, p.responses[0]) for p in pairs} == {("ann", "response 0.0"), ("bea", "response 0.1 word")}
    agg = aggregate(pairs)
    assert agg.consensus["item-0/0-1"].n_labels == 2 and agg.agreement["kendalls_w"] == pytest.approx(0.0)
    store.close()


def test_cli_load_add_status_export(tmp_path: Path):
    tasks = write_tasks(tmp_path / "t.jsonl", 3, extra=["[1, 2]"])
    proj = str(tmp_path / "proj")
    r = run_cli("annotate", "load", proj, str(tasks), "--per-item", "3", "--aspects", "helpful,honest")
    assert r.returncode == 0, r.stderr
    assert "4 records: 3 loaded, 0 already there, problems not_an_object: 1" in r.stdout
    assert "t.jsonl:4: expected a JSON object" in r.stdout
    r = run_cli("annotate", "add-annotator", proj, "ann")
    token = r.stdout.strip().splitlines()[-1]
    assert r.returncode == 0 and len(token) >= 40
    assert token not in (tmp_path / "proj" / "annotate.duckdb").read_bytes().decode("latin-1")  # only its hash
    r = run_cli("annotate", "add-annotator", proj, "ann")
    assert r.returncode == 2 and "error: annotator 'ann' exists already; --rotate" in r.stderr
    r = run_cli("annotate", "status", proj, "--json")
    status = json.loads(r.stdout)
    assert (status["items"], status["per_item"], status["load_problems"]) == (3, 3, {"not_an_object": 1})
    r = run_cli("annotate", "export", proj, str(tmp_path / "out.jsonl"))
    assert r.returncode == 0 and (tmp_path / "out.jsonl").read_text() == ""
    r = run_cli("annotate", "status", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "error: no annotation project in" in r.stderr
    r = run_cli("annotate", "add-annotator", str(tmp_path / "projj"), "bob")  # a typo made an empty project
    assert r.returncode == 2 and "error: no annotation project in" in r.stderr and not (tmp_path / "projj").exists()
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "a"}\n{"prompt": "b"}\n')  # prompts alone: nothing to rank
    r = run_cli("annotate", "load", proj, str(tmp_path / "prompts.jsonl"))
    assert r.returncode == 2 and "prompts.jsonl: none of its 2 records could be loaded" in r.stderr
    assert "prompts.jsonl:1: no 'responses'" in r.stdout  # the summary and examples still print
    with RunLock(tmp_path / "proj"):  # as `serve` holds it
        r = run_cli("annotate", "export", proj, str(tmp_path / "out.jsonl"))
    assert r.returncode == 2 and "corpus annotate serve` holds its project" in r.stderr
    assert "Traceback" not in r.stderr
    with open(tmp_path / "proj" / "annotate.duckdb", "r+b") as f:  # a bad copy: named, and left as it is
        f.truncate(2000)
    r = run_cli("annotate", "status", proj)
    assert r.returncode == 2 and "annotate.duckdb: the annotation project's database is damaged (IO Error" in r.stderr
    assert (tmp_path / "proj" / "annotate.duckdb").stat().st_size == 2000


def test_export_never_replaces_another_outputs_file(project, tmp_path: Path):
    """An export named like the project's database (or a run's catalog, or a model) would replace it."""
    store, tokens, app = project
    Annotator(app, tokens["ann"]).rank(Annotator(app, tokens["ann"]).next())
    store.close()
    db = tmp_path / "proj" / "annotate.duckdb"
    before = db.read_bytes()
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("")
    (run / "final" / "model.safetensors").write_bytes(b"weights")
    for dest in (db, tmp_path / "proj" / ".lock", run / "final" / "model.safetensors"):
        if dest.name == ".lock":
            dest.write_text("")
        r = run_cli("annotate", "export", str(tmp_path / "proj"), str(dest))
        assert r.returncode == 2 and "would replace a file of" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert db.read_bytes() == before and (run / "final" / "model.safetensors").read_bytes() == b"weights"
    r = run_cli("annotate", "export", str(tmp_path / "proj"), str(tmp_path / "proj" / "labels.jsonl"))
    assert r.returncode == 0 and len(read_preferences(tmp_path / "proj" / "labels.jsonl")[0]) == 1  # a new file
    out = tmp_path / "corpus-out"
    out.mkdir()
    (out / ".corpusforge").write_text("{}")
    r = run_cli("annotate", "export", str(tmp_path / "proj"), str(out / "catalog.duckdb"))
    assert r.returncode == 2 and "is a file of the run output" in r.stderr


def test_a_restarted_store_rebuilds_assignment_from_the_database(tmp_path: Path):
    store, tokens = make_project(tmp_path / "p", write_tasks(tmp_path / "t.jsonl", 6), ["ann", "bea"], per_item=2)
    ann, bea = Annotator(create_app(store), tokens["ann"]), Annotator(create_app(store), tokens["bea"])
    first = ann.next()
    ann.rank(first)
    skipped = ann.next()
    ann.post("/api/skip", {"item_id": skipped["item_id"], "submission_id": "replayed-skip"})
    opened = ann.next()
    bea.rank(bea.next())
    before = {n: store.progress(n) for n in ("ann", "bea")}
    store.close()
    again = Store(tmp_path / "p")
    assert {n: again.progress(n) for n in ("ann", "bea")} == before
    assert again.current_or_next("ann").item_id == opened["item_id"]  # still their open item
    assert again.current_or_next("ann").shown_order == [s["index"] for s in opened["shown"]]
    assert not again.skip("ann", skipped["item_id"], "replayed-skip")  # the retry is known after a restart
    again.close()


def test_an_abandoned_item_goes_to_another_annotator_after_the_lease(project):
    store, tokens, app = project
    store.set_setting("per_item", "1")
    ann, bea = Annotator(app, tokens["ann"]), Annotator(app, tokens["bea"])
    held = ann.next()
    assert bea.next()["item_id"] != held["item_id"]
    bea.rank(bea.next())
    store.set_setting("lease_minutes", "0")  # ann's lease is over
    bea_items = []
    while (item := bea.next()) is not None:
        bea_items.append(item["item_id"])
        bea.rank(item)
    assert held["item_id"] in bea_items
    assert ann.next()["item_id"] == held["item_id"]  # ann may still finish it: an extra label, nothing lost
    assert ann.rank(held).status_code == 200


def test_a_batch_commits_together_and_a_database_error_fails_only_its_call(tmp_path: Path):
    from concurrent.futures import Future

    import duckdb

    store, _ = make_project(tmp_path / "p", write_tasks(tmp_path / "t.jsonl", 4), ["ann", "bea"], per_item=1)
    a, b = store.current_or_next("ann"), store.current_or_next("bea")
    label = lambda k: {"ranking": list(range(1, k + 1)), "aspects": {}, "comment": ""}  # noqa: E731

    def broken() -> None:  # a write the database refuses, between two good ones
        store.con.execute("INSERT INTO labels (item_id) VALUES (NULL)")

    jobs = [(store.submit, ("ann", a.item_id, "sub-ann-1", label), Future()),
            (store.submit, ("ann", "no-such-item", "sub-ann-2", label), Future()),
            (broken, (), Future()),
            (store.current_or_next, ("bea",), Future()),
            (store.submit, ("bea", b.item_id, "sub-bea-1", label), Future())]
    store.run_batch(jobs)
    results = [j[2] for j in jobs]
    assert results[0].result() is True and results[4].result() is True
    assert results[3].result().item_id == b.item_id
    with pytest.raises(Exception, match="no-such-item"):
        results[1].result()
    with pytest.raises(duckdb.Error):
        results[2].result()
    assert sorted((p.annotator, p.item_id) for p in store.preferences()) == [("ann", a.item_id), ("bea", b.item_id)]
    assert store.progress("ann") == {"labelled": 1, "skipped": 0, "available": 2}  # the pool matches the tables
    store.close()
    again = Store(tmp_path / "p")
    assert again.progress("ann") == {"labelled": 1, "skipped": 0, "available": 2}
    again.close()


def test_the_admin_page_flags_an_annotator_who_always_picks_the_first_shown(tmp_path: Path):
    # 40 items: an honest annotator's mean rank correlation with a random shown order then stays far
    # below the 0.5 flag (sd about 0.09; with 8 items about 0.2, so 1 run in 70 flagged one by chance).
    store, tokens = make_project(tmp_path / "p", write_tasks(tmp_path / "t.jsonl", 40, k=4), ["ann", "bea", "cid"],
                                 per_item=3)
    app = create_app(store)
    for name in ("ann", "bea", "cid"):
        a = Annotator(app, tokens[name])
        while (item := a.next()) is not None:
            if name == "cid":  # whatever comes first on the screen is best
                ranking = [0] * 4
                for pos, s in enumerate(item["shown"]):
                    ranking[s["index"]] = pos + 1
            else:  # honest: the longer response is better (write_tasks makes response j longer with j)
                ranking = [4, 3, 2, 1]
            a.rank(item, ranking)
    admin = Annotator(app, tokens["admin"])
    page = admin.http.get("/admin").text.split('<section id="agreement">')[1]
    row = re.search(r"<tr><td>cid</td>.*?</tr>", page).group(0)
    assert "position_bias" in row and "length_bias" in row  # cid ignores what the others reward
    assert "position_bias" not in re.search(r"<tr><td>ann</td>.*?</tr>", page).group(0)
    assert "Least agreed items" in page and "Krippendorff" in page
    overview = admin.http.get("/admin/api/overview").json()
    assert [(a["name"], a["labelled"]) for a in overview["annotators"]] == [("ann", 40), ("bea", 40), ("cid", 40)]
    assert overview["complete"] == 40


def test_the_database_thread_survives_a_failing_batch(tmp_path: Path):
    from corpus.plugins.annotate.writer import Writer

    store = Store(tmp_path / "p")
    writer = Writer(store)
    real = store.run_batch
    store.run_batch = lambda batch: (_ for _ in ()).throw(RuntimeError("disk on fire"))  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="disk on fire"):
        writer.submit(store.settings).result(timeout=10)
    store.run_batch = real  # type: ignore[method-assign]
    assert writer.submit(store.settings).result(timeout=10).per_item == 2  # later calls still run
    writer.close()
    store.close()


class CountingConnection:
    """The store's connection, counting the statements it runs (each one gives up the GIL and waits to
    get it back: under load, a statement per request made the database thread the bottleneck)."""

    def __init__(self, con):
        self.con, self.statements = con, []

    def execute(self, sql, *args):
        words = sql.split()
        self.statements.append(f"INSERT {words[2]}" if words[0] == "INSERT" else words[0])
        return self.con.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.con, name)


def _label(k: int) -> dict:
    return {"ranking": list(range(1, k + 1)), "aspects": {}, "comment": ""}


def test_a_batch_costs_a_few_statements_however_many_requests_it_holds(tmp_path: Path):
    from concurrent.futures import Future

    names = [f"a{i}" for i in range(20)]
    store, _ = make_project(tmp_path / "p", write_tasks(tmp_path / "t.jsonl", 30), names, per_item=3)
    store.con = counting = CountingConnection(store.con)
    nexts = [(store.next_with_progress, (n,), Future()) for n in names]
    store.run_batch(nexts)
    items = {n: j[2].result()[0] for n, j in zip(names, nexts, strict=True)}
    before = len(counting.statements)
    labels = [(store.submit, (n, items[n].item_id, f"sub-{n}-1", _label), Future()) for n in names]
    store.run_batch(labels)
    assert all(j[2].result() is True for j in labels)
    # BEGIN, one INSERT per table, COMMIT: not two statements per label
    assert sorted(counting.statements[before:]) == ["BEGIN", "COMMIT", "INSERT labels", "INSERT submissions"]
    # 20 assignments: BEGIN, the item texts read ahead at once, one INSERT, COMMIT
    assert sorted(counting.statements[:before]) == ["BEGIN", "COMMIT", "INSERT assignments", "SELECT"]
    store.con = counting.con
    store.close()
    again = Store(tmp_path / "p")  # everything reached the tables
    assert sorted((p.annotator, p.item_id) for p in again.preferences()) == sorted((n, items[n].item_id) for n in names)
    assert all(again.progress(n)["labelled"] == 1 for n in names)
    again.close()


def test_a_batch_reads_and_changes_what_it_wrote_itself(tmp_path: Path):
    """Inserts wait for the end of the batch: a read or an update of the same rows within it sees them."""
    from concurrent.futures import Future

    store, _ = make_project(tmp_path / "p", write_tasks(tmp_path / "t.jsonl", 3), ["ann"], per_item=1)
    item = store.current_or_next("ann")
    first = {"ranking": [1, 2, 3], "aspects": {}, "comment": "first"}
    second = {"ranking": [3, 2, 1], "aspects": {}, "comment": "changed"}
    jobs = [(store.submit, ("ann", item.item_id, "sub-ann-1", lambda k: first), Future()),
            (store.label_of, ("ann", item.item_id), Future()),
            (store.submit, ("ann", item.item_id, "sub-ann-2", lambda k: second), Future()),
            (store.label_of, ("ann", item.item_id), Future())]
    store.run_batch(jobs)
    assert jobs[1][2].result()["comment"] == "first" and jobs[3][2].result()["comment"] == "changed"
    store.close()
    again = Store(tmp_path / "p")
    assert again.label_of("ann", item.item_id)["ranking"] == [3, 2, 1]
    assert again.con.execute("SELECT count(*) FROM submissions").fetchone()[0] == 2
    again.close()


def test_item_texts_come_right_past_the_cache_s_bound(tmp_path: Path, monkeypatch):
    from corpus.plugins.annotate import store as store_module

    monkeypatch.setattr(store_module, "TEXT_CACHE_CHARS", 200)  # a few items at a time
    monkeypatch.setattr(store_module, "READ_AHEAD", 4)
    store, _ = make_project(tmp_path / "p", write_tasks(tmp_path / "t.jsonl", 12), ["ann"], per_item=1)
    seen = []
    while (item := store.current_or_next("ann")) is not None:
        i = item.item_id.split("-")[1]
        assert item.prompt == f"prompt {i}" and item.responses == [f"response {i}.{j}" + " word" * j for j in range(3)]
        assert store._text_chars <= 200 or len(store._texts) == 1
        store.submit("ann", item.item_id, f"sub-{i}-xx", _label)
        seen.append(item.item_id)
    assert len(seen) == 12
    first = store.item_for("ann", "item-0")  # long evicted: read again
    assert first.prompt == "prompt 0"
    store.close()


def test_a_batch_is_answered_on_the_event_loop_in_one_wake_up(tmp_path: Path):
    import asyncio
    import threading

    from corpus.plugins.annotate.store import NotFound
    from corpus.plugins.annotate.writer import Writer

    store, _ = make_project(tmp_path / "p", write_tasks(tmp_path / "t.jsonl", 30), [f"a{i}" for i in range(20)])
    writer = Writer(store)
    gate = threading.Event()

    async def main():
        loop = asyncio.get_running_loop()
        wakeups = []
        real = loop.call_soon_threadsafe
        loop.call_soon_threadsafe = lambda *a, **k: (wakeups.append(a[0]), real(*a, **k))[1]
        held = writer.submit(gate.wait)  # the database thread is busy: the calls below queue up
        calls = [asyncio.ensure_future(writer.call(store.next_with_progress, f"a{i}")) for i in range(20)]
        missing = asyncio.ensure_future(writer.call(store.item_for, "a0", "no-such-item"))
        gone = asyncio.ensure_future(writer.call(store.progress, "a1"))
        await asyncio.sleep(0.05)
        gone.cancel()  # its client went away before the answer
        gate.set()
        items = await asyncio.gather(*calls)
        with pytest.raises(NotFound):
            await missing
        assert held.result(timeout=10) is True
        return items, wakeups

    items, wakeups = asyncio.run(main())
    assert set(Counter(item.item_id for item, _ in items).values()) == {2}  # per_item 2, everyone a new item
    assert all(p["available"] == 29 for _, p in items)
    assert len(wakeups) == 1  # one wake-up for the batch of 22 answers, not one per call
    writer.close()
    store.close()


def test_a_call_failing_inside_a_batch_leaves_no_write_behind(tmp_path: Path, monkeypatch):
    from concurrent.futures import Future

    from corpus.plugins.annotate import store as store_module

    monkeypatch.setattr(store_module, "READ_AHEAD", 1)
    store, _ = make_project(tmp_path / "p", write_tasks(tmp_path / "t.jsonl", 2), ["ann", "bea"], per_item=1)
    item = lambda k: {"ranking": list(range(1, k + 1)), "aspects": {}, "comment": ""}  # noqa: E731
    bea = store.current_or_next("bea")  # item-0; ann's next is item-1, whose text cannot be read any more:
    store.con.execute("DELETE FROM items WHERE item_id = 'item-1'")
    jobs = [(store.current_or_next, ("ann",), Future()), (store.submit, ("bea", bea.item_id, "sub-bea-1", item),
                                                          Future())]
    store.run_batch(jobs)
    with pytest.raises(LookupError):
        jobs[0][2].result()
    assert jobs[1][2].result() is True
    assignments = store.con.execute("SELECT item_id, annotator FROM assignments").fetchall()
    assert assignments == [(bea.item_id, "bea")]  # ann's failed call wrote nothing
    assert store.pool.open.get("ann") is None
    store.close()


def test_serve_listens_before_it_says_so(tmp_path: Path):
    """`serve` said "serving on ..." and then: on a port in use or a host that does not resolve, a uvicorn
    ERROR line (exit 3); on a port over 65535, nothing, for ever. It binds first now: an `error:` line, exit
    2. --port 0 takes a free port, and the line names the one it got."""
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    proj = str(tmp_path / "proj")
    assert run_cli("annotate", "load", proj, str(write_tasks(tmp_path / "t.jsonl", 2))).returncode == 0
    assert run_cli("annotate", "add-annotator", proj, "ann").returncode == 0
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    for args, says in ((["--port", "99999"], "error: --port must lie in 0..65535 (0: a free one), got 99999"),
                       (["--max-connections", "0"], "error: --max-connections must be 1 or more, got 0"),
                       (["--host", "no-such-host.invalid"], "error: --host 'no-such-host.invalid': "),
                       (["--port", str(taken.getsockname()[1])], f"error: cannot listen on 127.0.0.1:"
                                                                 f"{taken.getsockname()[1]}: Address already in use")):
        r = run_cli("annotate", "serve", proj, *args, timeout=60)
        assert r.returncode == 2 and says in r.stderr and "serving" not in r.stdout, (args, r.stdout, r.stderr)
    taken.close()
    proc = subprocess.Popen([sys.executable, "-m", "corpus", "annotate", "serve", proj, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", line).group(1))
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login") as resp:
                    assert resp.status == 200
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()


def test_a_reload_adds_aspects_but_never_removes_them_once_labels_exist(tmp_path: Path):
    tasks = write_tasks(tmp_path / "t.jsonl", 2)
    proj = str(tmp_path / "proj")
    assert run_cli("annotate", "load", proj, str(tasks), "--aspects", "foo").returncode == 0
    r = run_cli("annotate", "load", proj, str(tasks), "--aspects", "helpful")  # no label yet: free to change
    assert r.returncode == 0 and "aspects helpful (1..5)" in r.stdout
    token = run_cli("annotate", "add-annotator", proj, "ann").stdout.strip().splitlines()[-1]
    store = Store(tmp_path / "proj")
    ann = Annotator(create_app(store), token)
    item = ann.next()
    rating = {"helpful": {"0": 4}}
    assert ann.rank(item, aspects=rating).status_code == 200
    store.close()
    for flag, why in (("--aspects", "error: --aspects: the project's 1 labels may rate helpful, so its aspects can "
                                    "only be added to: --aspects helpful,quality"),
                      ("--scale", "error: --scale 3: the project's 1 labels are rated on 1..5")):
        args = ["--aspects", "quality"] if flag == "--aspects" else ["--scale", "3"]
        r = run_cli("annotate", "load", proj, str(tasks), *args)
        assert r.returncode == 2 and why in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = run_cli("annotate", "load", proj, str(tasks), "--aspects", "quality,helpful")  # adding is fine
    assert r.returncode == 0 and "aspects helpful, quality (1..5)" in r.stdout, r.stderr
    store = Store(tmp_path / "proj")
    ann = Annotator(create_app(store), token)
    assert ann.http.get("/api/me").json()["aspects"] == ["helpful", "quality"]
    assert ann.rank(item, aspects=rating).status_code == 200  # the old label is sent again as it was
    store.close()


def test_an_annotator_cannot_label_an_item_they_skipped(project):
    store, tokens, app = project
    store.set_setting("per_item", "1")  # bea's label makes the item full: a second one would put it over
    ann = Annotator(app, tokens["ann"])
    item = ann.next()
    assert ann.post("/api/skip", {"item_id": item["item_id"], "submission_id": "skip-a-0001"}).status_code == 200
    bea = Annotator(app, tokens["bea"])
    assert bea.next()["item_id"] == item["item_id"] and bea.rank(item).status_code == 200
    r = ann.rank(item, [2, 1, 3], sid="lab-a-0001")
    assert r.status_code == 409 and "you skipped this item" in r.json()["error"]
    assert store._one("SELECT count(*) FROM labels WHERE item_id = ?", [item["item_id"]])[0] == 1
    assert ann.http.get("/api/me").json()["progress"]["skipped"] == 1


def test_skipping_an_item_already_labelled_is_refused(project):
    store, tokens, app = project
    ann = Annotator(app, tokens["ann"])
    item = ann.next()
    assert ann.rank(item).status_code == 200
    r = ann.post("/api/skip", {"item_id": item["item_id"], "submission_id": uuid.uuid4().hex})
    assert r.status_code == 409 and "already labelled" in r.json()["error"]
    assert ann.http.get("/api/me").json()["progress"] == {"labelled": 1, "skipped": 0, "available": 3}
    assert store._one("SELECT count(*) FROM submissions WHERE kind = 'skip'")[0] == 0


def test_every_exported_ranking_has_the_documented_keys(project, tmp_path: Path):
    store, tokens, app = project
    ann = Annotator(app, tokens["ann"])
    ann.rank(ann.next())  # no aspects, no comment
    ann.rank(ann.next(), aspects={"helpful": {"2": 5}}, comment="fine")
    export(store, tmp_path / "r.jsonl")
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    keys = ["item_id", "annotator", "prompt", "responses", "ranking", "aspects", "comment", "shown_order",
            "created_at", "response_ids"]  # docs/annotate.md, Labels out
    assert [sorted(r) for r in records] == [sorted(keys)] * 2
    assert [(r["aspects"], r["comment"], r["response_ids"]) for r in records] == [
        ({}, "", None), ({"helpful": {"2": 5.0}}, "fine", None)]
    prefs, bad = read_preferences(tmp_path / "r.jsonl")
    assert bad.height == 0 and [p.aspects for p in prefs] == [{}, {"helpful": {2: 5.0}}]


def test_load_problems_found_against_the_project_name_their_file_and_line(tmp_path: Path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_tasks(folder / "a.jsonl", 2)
    write_tasks(folder / "b.jsonl", 0, extra=[
        json.dumps({"item_id": "new", "prompt": "p", "responses": ["a", "b"]}),
        json.dumps({"item_id": "item-1", "prompt": "other", "responses": ["a", "b"]}),
        json.dumps({"item_id": "many", "prompt": "p", "responses": [str(i) for i in range(17)]}),
        json.dumps({"item_id": "big", "prompt": "p" * (1 << 20), "responses": ["a", "b"]})])
    proj = str(tmp_path / "proj")
    r = run_cli("annotate", "load", proj, str(folder / "*.jsonl"))
    assert r.returncode == 0, r.stderr
    for line in ("b.jsonl:2: item 'item-1': item_id 'item-1' was loaded before", "b.jsonl:3: item 'many': 17",
                 "b.jsonl:4: item 'big': the item is"):
        assert line in r.stdout, r.stdout
    store = Store(tmp_path / "proj")
    assert store._all("SELECT file, line, kind FROM load_problems ORDER BY line") == [
        ("b.jsonl", 2, "item_conflict"), ("b.jsonl", 3, "too_many_responses"), ("b.jsonl", 4, "too_large")]
    assert store._one("SELECT source_file, source_line FROM items WHERE item_id = 'new'") == ("b.jsonl", 1)
    store.close()
