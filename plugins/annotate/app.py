"""The annotation web app (Starlette): sign-in, the ranking page and its JSON API, the admin page.

Every route but the sign-in page and the static files needs a session; state-changing requests need
the session's CSRF token (``X-CSRF-Token``) and, when the browser names one, a same-site ``Origin``.
Request bodies are bounded before any handler reads them. Pages carry a Content-Security-Policy
that allows only the app's own script files; the client writes all text with ``textContent``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corpus.plugins.annotate import auth
from corpus.plugins.annotate.admin import admin_page
from corpus.plugins.annotate.export import jsonl_bytes
from corpus.plugins.annotate.label import BadLabel, check_label, submission_id
from corpus.plugins.annotate.store import Conflict, Item, NotFound, Store, annotator_name_ok
from corpus.plugins.annotate.writer import Writer
from corpus.plugins.preferences import ranking_json
from corpus.report.html import esc

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 64 * 1024  # a label with a long comment is a few KB
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
           (b"x-frame-options", b"DENY"), (b"cache-control", b"no-store")]


class Guard:
    """Outermost layer: bounds every request body (413 past MAX_BODY, read before the app sees it) and adds
    the security headers to every response (the page CSP unless the response set its own)."""

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY):
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [h for h in HEADERS if h[0] not in names]
                if b"content-security-policy" not in names:
                    extra.append((b"content-security-policy", CSP.encode()))
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await _too_large(scope, send_guarded)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _too_large(scope, send_guarded)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send_guarded)


async def _too_large(scope: Scope, send: Send) -> None:
    response = JSONResponse({"error": f"request body over {MAX_BODY} bytes"}, status_code=413,
                            headers={"connection": "close"})
    await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


# ---------------------------------------------------------------- helpers
def _state(request: Request) -> tuple[Store, auth.Sessions]:
    return request.app.state.store, request.app.state.sessions


def _session(request: Request, role: str) -> auth.Session:
    """The request's live session of this role: 401 without one, 403 with the other role's."""
    _, sessions = _state(request)
    session = sessions.get(request.cookies.get(auth.SESSION_COOKIE))
    if session is None:
        raise HTTPException(401, "sign in first")
    if session.role != role:
        raise HTTPException(403, f"this needs an {role} session")
    return session


def _same_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
        raise HTTPException(403, "cross-site request refused")


def _posting(request: Request, role: str) -> auth.Session:
    """A state-changing request: same origin, a session of ``role`` and its CSRF token in the header."""
    _same_origin(request)
    session = _session(request, role)
    if not auth.same(request.headers.get(auth.CSRF_HEADER), session.csrf):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page")
    return session


async def _json_body(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise HTTPException(415, "send application/json")
    try:
        body = json.loads(await request.body())
    except (ValueError, RecursionError):  # RecursionError: nesting deep enough to exhaust the parser's stack
        raise HTTPException(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "expected a JSON object")
    return body


def _item_json(item: Item, label: dict | None) -> dict[str, Any]:
    return {"item_id": item.item_id, "prompt": item.prompt, "state": item.state, "label": label,
            "shown": [{"index": i, "text": item.responses[i]} for i in item.shown_order]}


def _page(name: str) -> Response:
    return FileResponse(STATIC / name, media_type="text/html")


async def _db(request: Request, fn: Any, *args: Any) -> Any:
    """Run a store call on the app's one database thread (``writer.Writer``: queued, group-committed)."""
    return await request.app.state.writer.call(fn, *args)


# ---------------------------------------------------------------- sign-in
LOGIN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · annotation</title><link rel="stylesheet" href="/static/app.css"><link rel="icon" href="data:,"></head>
<body class="login"><main><h1>Sign in</h1>{message}
<form method="post" action="/login" autocomplete="off">
<label for="token">Your token</label>
<input id="token" name="token" type="password" required autofocus maxlength="200">
<input type="hidden" name="csrf" value="{csrf}">
<button type="submit">Sign in</button></form>
<p class="hint">Ask the project admin for a token (<code>corpus annotate add-annotator</code>).</p></main></body></html>
"""


def _login_page(message: str = "", status: int = 200) -> Response:
    csrf = auth.new_token()
    text = f'<p class="error" role="alert">{esc(message)}</p>' if message else ""
    response = HTMLResponse(LOGIN.format(message=text, csrf=esc(csrf)), status_code=status)
    response.set_cookie(auth.LOGIN_COOKIE, csrf, httponly=True, samesite="strict", path="/login")
    return response


async def login_form(request: Request) -> Response:
    return _login_page()


async def login(request: Request) -> Response:
    _same_origin(request)
    form = await request.form(max_files=0, max_fields=4)
    if not auth.same(str(form.get("csrf", "")), request.cookies.get(auth.LOGIN_COOKIE)):
        return _login_page("The sign-in form expired: try again.", 403)
    token = str(form.get("token", "")).strip()
    store, sessions = _state(request)
    digest = auth.token_hash(token)
    admin = await _db(request, store.admin_hash)
    if token and auth.same(digest, admin):
        role, name, home = auth.ADMIN, auth.ADMIN, "/admin"
    else:
        name = await _db(request, store.annotator_by_hash, digest) if token else None
        if name is None:
            return _login_page("Unknown token.", 401)
        role, home = auth.ANNOTATOR, "/"
    sid, _ = sessions.open(role, name)
    response = RedirectResponse(home, status_code=303)
    response.set_cookie(auth.SESSION_COOKIE, sid, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https", max_age=auth.SESSION_SECONDS)
    response.delete_cookie(auth.LOGIN_COOKIE, path="/login")
    return response


async def logout(request: Request) -> Response:
    _same_origin(request)
    _, sessions = _state(request)
    session = sessions.get(request.cookies.get(auth.SESSION_COOKIE))
    if session is None or not auth.same(request.headers.get(auth.CSRF_HEADER), session.csrf):
        raise HTTPException(403, "missing or wrong CSRF token")
    sessions.close(request.cookies.get(auth.SESSION_COOKIE))
    response = JSONResponse({"ok": True})
    response.delete_cookie(auth.SESSION_COOKIE, path="/")
    return response


# ---------------------------------------------------------------- annotator
async def home(request: Request) -> Response:
    _, sessions = _state(request)
    session = sessions.get(request.cookies.get(auth.SESSION_COOKIE))
    if session is None:
        return RedirectResponse("/login", status_code=303)
    if session.role == auth.ADMIN:
        return RedirectResponse("/admin", status_code=303)
    return _page("index.html")


async def me(request: Request) -> Response:
    session = _session(request, auth.ANNOTATOR)
    store, _ = _state(request)
    settings = store.settings()
    progress = await _db(request, store.progress, session.name)
    return JSONResponse({"annotator": session.name, "csrf": session.csrf, "aspects": settings.aspects,
                         "scale": settings.scale, "per_item": settings.per_item, "progress": progress})


async def next_item(request: Request) -> Response:
    session = _session(request, auth.ANNOTATOR)
    store, _ = _state(request)
    item, progress = await _db(request, store.next_with_progress, session.name)
    return JSONResponse({"item": _item_json(item, None) if item else None, "progress": progress})


async def submit(request: Request) -> Response:
    session = _posting(request, auth.ANNOTATOR)
    body = await _json_body(request)
    store, _ = _state(request)
    sid, settings = submission_id(body), store.settings()
    stored = await _db(request, store.submit, session.name, str(body.get("item_id", "")), sid,
                       lambda k: check_label(body, k, settings))
    return JSONResponse({"ok": True, "stored": stored})


async def skip(request: Request) -> Response:
    session = _posting(request, auth.ANNOTATOR)
    body = await _json_body(request)
    store, _ = _state(request)
    stored = await _db(request, store.skip, session.name, str(body.get("item_id", "")), submission_id(body))
    return JSONResponse({"ok": True, "stored": stored})


async def my_labels(request: Request) -> Response:
    session = _session(request, auth.ANNOTATOR)
    store, _ = _state(request)
    return JSONResponse({"labels": await _db(request, store.labels_of, session.name)})


async def my_label(request: Request) -> Response:
    """One of the annotator's own items with their label, to review or change it."""
    session = _session(request, auth.ANNOTATOR)
    store, _ = _state(request)
    item = await _db(request, store.item_for, session.name, request.path_params["item_id"])
    return JSONResponse({"item": _item_json(item, await _db(request, store.label_of, session.name, item.item_id))})


# ---------------------------------------------------------------- admin
async def admin(request: Request) -> Response:
    _, sessions = _state(request)
    session = sessions.get(request.cookies.get(auth.SESSION_COOKIE))
    if session is None:
        return RedirectResponse("/login", status_code=303)
    _session(request, auth.ADMIN)
    store, _ = _state(request)
    html, csp = await _db(request, admin_page, store)
    return HTMLResponse(html, headers={"content-security-policy": csp})


async def admin_overview(request: Request) -> Response:
    _session(request, auth.ADMIN)
    store, _ = _state(request)
    return JSONResponse(await _db(request, store.overview))


async def admin_export(request: Request) -> Response:
    _session(request, auth.ADMIN)
    store, _ = _state(request)
    records = [ranking_json(p) for p in await _db(request, store.preferences)]
    return Response(jsonl_bytes(records), media_type="application/x-ndjson",
                    headers={"content-disposition": 'attachment; filename="rankings.jsonl"'})


async def admin_me(request: Request) -> Response:
    session = _session(request, auth.ADMIN)
    return JSONResponse({"csrf": session.csrf})


async def admin_annotators(request: Request) -> Response:
    _session(request, auth.ADMIN)
    return _page("admin.html")


async def add_annotator(request: Request) -> Response:
    """A new annotator's token, shown once (``rotate``: a new token for one who exists; their sessions end)."""
    _posting(request, auth.ADMIN)
    body = await _json_body(request)
    name = body.get("name")
    if not isinstance(name, str) or not annotator_name_ok(name):
        raise HTTPException(400, "name: 1 to 64 printable characters")
    token = auth.new_token()
    store, sessions = _state(request)
    try:
        await _db(request, store.add_annotator, name, auth.token_hash(token), bool(body.get("rotate")))
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from None
    sessions.close_for(auth.ANNOTATOR, name)
    return JSONResponse({"name": name, "token": token})


async def _error(request: Request, exc: Exception) -> Response:
    """HTTP errors and the store's refusals as {"error": why}. NotFound has one wording whether the item
    exists or not, so an annotator learns nothing of others' items."""
    if isinstance(exc, HTTPException):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    if isinstance(exc, NotFound):
        return JSONResponse({"error": "no such item among yours"}, status_code=404)
    return JSONResponse({"error": str(exc)}, status_code=400 if isinstance(exc, BadLabel) else 409)


def create_app(store: Store, sessions: auth.Sessions | None = None) -> ASGIApp:
    """The ASGI app over an open project store."""
    routes = [
        Route("/", home),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/api/me", me),
        Route("/api/next", next_item),
        Route("/api/label", submit, methods=["POST"]),
        Route("/api/skip", skip, methods=["POST"]),
        Route("/api/labels", my_labels),
        Route("/api/labels/{item_id:path}", my_label),
        Route("/admin", admin),
        Route("/admin/api/overview", admin_overview),
        Route("/admin/export.jsonl", admin_export),
        Route("/admin/api/me", admin_me),
        Route("/admin/annotators", admin_annotators),
        Route("/admin/api/annotators", add_annotator, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    errors = {e: _error for e in (HTTPException, NotFound, BadLabel, Conflict)}
    app = Starlette(routes=routes, exception_handlers=errors)
    app.state.store = store
    app.state.sessions = sessions or auth.Sessions()
    app.state.writer = Writer(store)
    return Guard(app)
