"""Each security rule of the annotation app (issue 19), through its HTTP API: every request
authenticated; an annotator reads and changes only their own labels; admin pages need the admin
token; text escaped; request sizes bounded; CSRF on every state-changing request."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from test_annotate import Annotator, make_project, write_tasks

from corpus.plugins.annotate import app as app_module
from corpus.plugins.annotate.app import MAX_BODY, create_app

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'
PUBLIC = {"/login"}  # the sign-in form and the static files (code and style, no data) need no session


@pytest.fixture
def project(tmp_path: Path):
    tasks = write_tasks(tmp_path / "t.jsonl", 3)
    with open(tasks, "a") as fh:
        fh.write(json.dumps({"item_id": "xss", "prompt": f"prompt {XSS}", "responses": [XSS, "plain", "b"]}) + "\n")
    store, tokens = make_project(tmp_path / "p", tasks, ["ann", "bea"], per_item=1)
    yield store, tokens, create_app(store)
    store.close()


def routes(app) -> list[tuple[str, str]]:
    inner = app.app  # the Guard wraps the Starlette app
    out = []
    for r in inner.routes:
        if isinstance(r, Mount):
            assert r.path == "/static"
        elif r.path not in PUBLIC:
            assert isinstance(r, Route)
            for m in sorted(r.methods - {"HEAD"}):
                out.append((m, r.path.replace("{item_id:path}", "item-0")))
    return out


def test_every_route_but_sign_in_needs_a_session(project):
    _, _, app = project
    anonymous = TestClient(app)
    checked = routes(app)
    assert len(checked) >= 11
    for method, path in checked:
        r = anonymous.request(method, path, follow_redirects=False)
        assert r.status_code in (401, 403) or (r.status_code == 303 and r.headers["location"] == "/login"), \
            (method, path, r.status_code)
        assert "prompt" not in r.text
    forged = TestClient(app, cookies={"cf_session": "made-up"})
    assert forged.get("/api/next").status_code == 401
    assert anonymous.get("/static/app.js").status_code == 200  # code, no data


def test_unknown_and_empty_tokens_do_not_sign_in(project):
    _, tokens, app = project
    http = TestClient(app)
    for token in ("nope", "", tokens["ann"][:-1]):
        csrf = re.search(r'name="csrf" value="([^"]+)"', http.get("/login").text).group(1)
        r = http.post("/login", data={"token": token, "csrf": csrf}, follow_redirects=False)
        assert r.status_code == 401 and "cf_session" not in r.cookies


def test_the_session_cookie_is_http_only_and_same_site(project):
    _, tokens, app = project
    http = TestClient(app)
    csrf = re.search(r'name="csrf" value="([^"]+)"', http.get("/login").text).group(1)
    r = http.post("/login", data={"token": tokens["ann"], "csrf": csrf}, follow_redirects=False)
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and tokens["ann"] not in cookie


def test_an_annotator_cannot_read_or_change_another_annotators_label(project):
    store, tokens, app = project
    ann, bea = Annotator(app, tokens["ann"]), Annotator(app, tokens["bea"])
    item = ann.next()
    assert ann.rank(item, [1, 2, 3], comment="mine").status_code == 200
    theirs = item["item_id"]
    assert bea.http.get(f"/api/labels/{theirs}").status_code == 404
    r = bea.post("/api/label", {"item_id": theirs, "submission_id": uuid.uuid4().hex, "ranking": [3, 2, 1]})
    assert r.status_code == 404
    assert bea.post("/api/skip", {"item_id": theirs, "submission_id": uuid.uuid4().hex}).status_code == 404
    assert bea.http.get(f"/api/labels/{uuid.uuid4().hex}").json() == bea.http.get(f"/api/labels/{theirs}").json()
    assert theirs not in {i["item_id"] for i in bea.http.get("/api/labels").json()["labels"]}
    # bea's own submission id equal to ann's is bea's own: it cannot replay or reveal ann's
    [(p_ann)] = store.preferences()
    assert (p_ann.annotator, p_ann.ranking, p_ann.comment) == ("ann", (1, 2, 3), "mine")


def test_admin_pages_need_the_admin_token(project):
    store, tokens, app = project
    ann = Annotator(app, tokens["ann"])
    ann.rank(ann.next())
    for path in ("/admin", "/admin/api/overview", "/admin/export.jsonl"):
        assert ann.http.get(path, follow_redirects=False).status_code == 403, path
    admin = Annotator(app, tokens["admin"])
    assert admin.home == "/admin"
    assert admin.http.get("/admin/api/overview").json()["labels"] == 1
    lines = admin.http.get("/admin/export.jsonl").text.splitlines()
    assert [json.loads(x)["annotator"] for x in lines] == ["ann"]
    assert admin.http.get("/api/next").status_code == 403  # the admin does not annotate


def test_state_changes_need_the_csrf_token_and_the_same_origin(project):
    store, tokens, app = project
    ann = Annotator(app, tokens["ann"])
    item = ann.next()
    body = {"item_id": item["item_id"], "submission_id": uuid.uuid4().hex, "ranking": [1, 2, 3]}
    assert ann.http.post("/api/label", json=body).status_code == 403  # no token
    assert ann.http.post("/api/label", json=body, headers={"X-CSRF-Token": "guess"}).status_code == 403
    other = Annotator(app, tokens["bea"])
    assert ann.http.post("/api/label", json=body, headers={"X-CSRF-Token": other.csrf}).status_code == 403
    evil = {"X-CSRF-Token": ann.csrf, "Origin": "https://evil.example"}
    assert ann.http.post("/api/label", json=body, headers=evil).status_code == 403
    assert ann.http.post("/logout", headers={"Origin": "https://evil.example"}).status_code == 403
    form = ann.http.post("/api/label", data={"item_id": item["item_id"]}, headers={"X-CSRF-Token": ann.csrf})
    assert form.status_code == 415  # a cross-site form cannot send JSON
    assert store.preferences() == []
    assert ann.post("/api/label", body).status_code == 200
    # the sign-in form has its own token (double submit): a forged sign-in is refused
    fresh = TestClient(app)
    r = fresh.post("/login", data={"token": tokens["ann"], "csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 403 and "cf_session" not in r.cookies


def test_request_sizes_are_bounded(project):
    store, tokens, app = project
    ann = Annotator(app, tokens["ann"])
    item = ann.next()
    big = {"item_id": item["item_id"], "submission_id": uuid.uuid4().hex, "ranking": [1, 2, 3],
           "comment": "x" * (MAX_BODY + 1)}
    r = ann.post("/api/label", big)
    assert r.status_code == 413
    chunked = ann.http.post("/api/label", content=iter([b"{" + b" " * 40_000, b" " * 40_000 + b"}"]),
                            headers={"X-CSRF-Token": ann.csrf, "Content-Type": "application/json"})
    assert chunked.status_code == 413  # no Content-Length: counted as it arrives
    assert TestClient(app).post("/login", content=b"x" * (MAX_BODY + 1)).status_code == 413
    deep = ann.http.post("/api/label", content=b"[" * 30_000, headers={"X-CSRF-Token": ann.csrf,
                                                                       "Content-Type": "application/json"})
    assert deep.status_code == 400 and "not valid JSON" in deep.json()["error"]  # within the bound, still refused
    assert store.preferences() == []


def test_text_is_escaped_on_the_server_and_written_as_text_on_the_client(project):
    store, tokens, app = project
    store.set_setting("per_item", "2")  # two labels per item: the admin page lists the least agreed prompts
    for name in ("bea", "ann"):
        ann = Annotator(app, tokens[name])
        while (item := ann.next()) is not None:
            assert ann.rank(item, [1, 2, 3] if name == "ann" else [3, 2, 1], comment=XSS).status_code == 200
    r = ann.http.get("/api/labels/xss")
    assert r.headers["content-type"] == "application/json" and XSS in r.json()["item"]["prompt"]  # data, as is
    admin = Annotator(app, tokens["admin"])
    page = admin.http.get("/admin")
    assert "<script>alert" not in page.text and "<img src=x" not in page.text  # every value escaped
    assert "prompt &lt;script&gt;alert(&quot;x&quot;)" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    home = ann.http.get("/")
    assert "script-src 'self'" in home.headers["content-security-policy"]
    assert home.headers["x-content-type-options"] == "nosniff"
    js = (Path(app_module.__file__).parent / "static" / "app.js").read_text()
    code = "\n".join(line for line in js.splitlines() if not line.strip().startswith("//"))
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", code)
    login = TestClient(app).get("/login")
    assert "<script" not in login.text  # the sign-in page runs no script at all


def test_the_admin_adds_and_rotates_annotators_while_the_app_runs(project):
    store, tokens, app = project
    admin = Annotator(app, tokens["admin"])
    assert admin.http.get("/admin/annotators").status_code == 200
    r = admin.post("/admin/api/annotators", {"name": "dan"})
    assert r.status_code == 200 and r.json()["name"] == "dan"
    first = r.json()["token"]
    dan = Annotator(app, first)
    assert dan.next() is not None
    assert admin.post("/admin/api/annotators", {"name": "dan"}).status_code == 409  # exists: rotate explicitly
    assert admin.post("/admin/api/annotators", {"name": " x\n"}).status_code == 400
    assert admin.http.post("/admin/api/annotators", json={"name": "eve"}).status_code == 403  # no CSRF token
    ann = Annotator(app, tokens["ann"])
    assert ann.post("/admin/api/annotators", {"name": "eve"}).status_code == 403  # not the admin
    new = admin.post("/admin/api/annotators", {"name": "dan", "rotate": True}).json()["token"]
    assert dan.http.get("/api/next").status_code == 401  # the old session ended with the old token
    http = TestClient(app)
    csrf = re.search(r'name="csrf" value="([^"]+)"', http.get("/login").text).group(1)
    old = http.post("/login", data={"token": first, "csrf": csrf}, follow_redirects=False)
    assert old.status_code == 401
    assert Annotator(app, new).next() is not None
