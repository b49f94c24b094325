"""``corpus annotate``: serve, add-annotator, load, export, status.

Wired into ``corpus/cli.py`` with one call, ``add_annotate_parser(sub)``. Each command holds the
project's lock (``corpus/lock.py``) while it runs: DuckDB has a single writer, so while ``serve``
runs the other commands say so at once (the admin page has the progress and a download of the labels).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from corpus.lock import LockedError, RunLock
from corpus.plugins.annotate.store import DB_NAME, Store, annotator_name_ok

DEFAULT_PORT = 8765
SWITCH_INTERVAL = 0.0005  # seconds: the GIL's switch interval while serving (Python's default: 0.005)


@contextmanager
def project(folder: str, create: bool = False) -> Iterator[Store]:
    path = Path(folder)
    if not create and not (path / DB_NAME).is_file():
        raise ValueError(f"no annotation project in {path} (no {DB_NAME}): "
                         f"create one with `corpus annotate load {path} TASKS.jsonl`")
    try:
        with RunLock(path):
            store = Store(path)
            try:
                yield store
            finally:
                store.close()
    except LockedError as exc:
        raise ValueError(f"{exc} (`corpus annotate serve` holds its project while it runs: "
                         "stop it first, or use its admin page: /admin/annotators adds annotators)") from None


def _cmd_load(args: argparse.Namespace, console: Any) -> int:
    from corpus.plugins.annotate.load import load_tasks

    if args.per_item is not None and args.per_item < 1:
        raise ValueError(f"--per-item {args.per_item}: give at least 1 annotator per item")
    if args.scale is not None and not 2 <= args.scale <= 10:
        raise ValueError(f"--scale {args.scale}: give a rating scale from 2 to 10")
    names = None if args.aspects is None else [a.strip() for a in args.aspects.split(",") if a.strip()]
    with project(args.project, create=True) as store:
        store.set_ratings(names, args.scale)  # before anything changes: a refusal leaves the project as it was
        if args.per_item is not None:
            store.set_setting("per_item", str(args.per_item))
        total, useless = 0, []
        for tasks in args.tasks:
            r = load_tasks(store, Path(tasks))
            total += r.loaded
            if r.records and not r.loaded and not r.already:
                useless.append(f"{tasks}: none of its {r.records:,} records could be loaded")
            problems = ", ".join(f"{k}: {v}" for k, v in sorted(r.problems.items())) or "none"
            console.print(f"{tasks}: {r.records} records: {r.loaded} loaded, {r.already} already there, "
                          f"problems {problems}")
            for line in r.examples:
                console.print(f"  {line}", markup=False, highlight=False)
        s = store.settings()
        console.print(f"{store.overview()['items']} items in {args.project}; {s.per_item} annotators per item"
                      + (f"; aspects {', '.join(s.aspects)} (1..{s.scale})" if s.aspects else ""))
    if useless:  # a wrong file (prompts alone, another format) must not end as a success
        raise ValueError("; ".join(useless) + " (a task is a JSON object with a prompt and 2+ responses, or chosen "
                         "and rejected: docs/annotate.md)")
    return 0


def _cmd_add(args: argparse.Namespace, console: Any) -> int:
    from corpus.plugins.annotate.auth import new_token, token_hash

    if args.admin == bool(args.name):
        raise ValueError("corpus annotate add-annotator: give a NAME, or --admin for the admin token")
    token = new_token()
    # Not create=True: a mistyped folder made a new, empty project holding the token, and the real
    # project's app then refused it. `load` makes a project.
    with project(args.project) as store:
        if args.admin:
            store.set_setting("admin_token_hash", token_hash(token))
            who = "admin (any earlier admin token stops working)"
        else:
            if not annotator_name_ok(args.name):
                raise ValueError(f"annotator name {args.name[:64]!r}: 1 to 64 printable characters, no spaces "
                                 "around them")
            store.add_annotator(args.name, token_hash(token), rotate=args.rotate)
            who = f"annotator {args.name!r}"
    console.print(f"token for {who}; shown once, the project keeps only its hash:", markup=False, highlight=False)
    console.print(token, markup=False, highlight=False)
    return 0


def _cmd_export(args: argparse.Namespace, console: Any) -> int:
    from corpus.plugins.annotate.export import export

    with project(args.project) as store:
        n = export(store, Path(args.dest), args.format)
    console.print(f"{n} {args.format} records -> {args.dest}", markup=False, highlight=False)
    return 0


def _cmd_status(args: argparse.Namespace, console: Any) -> int:
    with project(args.project) as store:
        ov = store.overview()
    if args.json:
        console.print(json.dumps(ov), markup=False, highlight=False, soft_wrap=True)
        return 0
    console.print(f"{ov['items']} items, {ov['complete']} with {ov['per_item']}+ labels; {ov['labels']} labels")
    for a in ov["annotators"]:
        console.print(f"  {a['name']}: {a['labelled']} labelled, {a['skipped']} skipped, {a['open']} open"
                      f" (last {a['last'] or '-'})", markup=False, highlight=False)
    if ov["load_problems"]:
        console.print("load problems: " + ", ".join(f"{k}: {v}" for k, v in ov["load_problems"].items()))
    return 0


def _cmd_serve(args: argparse.Namespace, console: Any) -> int:
    import uvicorn

    from corpus.plugins.annotate.app import create_app

    with project(args.project) as store:
        if store.admin_hash() is None and not store.overview()["annotators"]:
            raise ValueError(f"no one can sign in to {args.project}: "
                             f"`corpus annotate add-annotator {args.project} NAME` first")
        try:
            local = ipaddress.ip_address(args.host).is_loopback
        except ValueError:
            local = args.host == "localhost"
        if args.max_connections < 1:  # 0 answered every request with 503
            raise ValueError(f"--max-connections must be 1 or more, got {args.max_connections}")
        sock = _listen(args.host, args.port)  # bound before saying so: a port in use was an ERROR after "serving"
        port = sock.getsockname()[1]
        console.print(f"serving {args.project} on http://{args.host}:{port}/ (Ctrl+C stops)")
        if not local:
            console.print("note: tokens and labels travel in plain HTTP: put a TLS proxy in front beyond loopback")
        app = create_app(store)
        # Each statement of the database thread gives up the GIL and then waits for the event loop's
        # thread to yield it, by default after up to 5 ms: a batch of 4 statements waited ~20 ms.
        interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL)
        try:
            config = uvicorn.Config(app, log_level="warning", limit_concurrency=args.max_connections)
            uvicorn.Server(config).run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn stops on Ctrl+C, then raises it again: the way to stop, not a failure
            console.print("stopped")
        finally:
            sock.close()
            sys.setswitchinterval(interval)
            app.app.state.writer.close()  # the queued calls finish and commit before the store closes
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (0: a free port), or ValueError saying why not: an out-of-range
    port (uvicorn then said it was serving and hung), a host that does not resolve, a port in use."""
    if not 0 <= port <= 65535:
        raise ValueError(f"--port must lie in 0..65535 (0: a free one), got {port}")
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ValueError(f"--host {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(2048)  # uvicorn's own backlog
    except OSError as exc:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror} (another server holds it? choose "
                         "another --port)") from None
    return sock


def add_annotate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``corpus annotate ...`` to the ``corpus`` subparsers (commands dispatch through ``fn``)."""
    a = subparsers.add_parser("annotate", help="the ranking web app for human feedback: serve, add-annotator, "
                              "load, export, status (docs/annotate.md)")
    sub = a.add_subparsers(dest="action", required=True, metavar="ACTION")

    s = sub.add_parser("serve", help="run the web app for a project")
    s.add_argument("project", help="project folder")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=DEFAULT_PORT)
    s.add_argument("--max-connections", type=int, default=256, help="more concurrent requests get 503")
    s.set_defaults(fn=_cmd_serve)

    ad = sub.add_parser("add-annotator", help="make an annotator's sign-in token (or the admin's: --admin)")
    ad.add_argument("project", help="project folder (made if new)")
    ad.add_argument("name", nargs="?", help="the annotator's name (their id in the export)")
    ad.add_argument("--admin", action="store_true", help="make the admin token instead (replaces the old one)")
    ad.add_argument("--rotate", action="store_true", help="replace an existing annotator's token")
    ad.set_defaults(fn=_cmd_add)

    ld = sub.add_parser("load", help="load Task JSONL (item_id, prompt, responses) into a project (made if new)")
    ld.add_argument("project", help="project folder")
    ld.add_argument("tasks", nargs="+", help="Task JSONL files, folders or globs")
    ld.add_argument("--per-item", type=int, help="annotators wanted per item (default 2)")
    ld.add_argument("--aspects", help="comma-separated aspects to rate, e.g. helpful,harmless ('' for none)")
    ld.add_argument("--scale", type=int, help="aspect ratings run from 1 to this (default 5)")
    ld.set_defaults(fn=_cmd_load)

    ex = sub.add_parser("export", help="write the labels as Ranking JSONL (or Pair JSONL) for the reward model")
    ex.add_argument("project", help="project folder")
    ex.add_argument("dest", help="output .jsonl file")
    ex.add_argument("--format", choices=["rankings", "pairs"], default="rankings")
    ex.set_defaults(fn=_cmd_export)

    st = sub.add_parser("status", help="items, labels and progress per annotator")
    st.add_argument("project", help="project folder")
    st.add_argument("--json", action="store_true")
    st.set_defaults(fn=_cmd_status)
    return a
