"""Annotation app under load: N concurrent annotators sign in and rank for a while against `corpus annotate
serve` on loopback (its own process); p50/p95 latency, errors, and a check of the database afterwards.

Each annotator loops: GET /api/next, POST /api/label (and, 1 time in 20, the same POST again, as a
client retrying after a lost answer would). Afterwards the project database must hold exactly one
label per acknowledged (item, annotator), every acknowledged submission, nobody twice on one item and
no item over its annotators-per-item: zero lost or duplicated labels. Goal: p95 under 200 ms. The
clients run on the same machine as the server, so on few cores the figure is pessimistic; they are a
lean keep-alive HTTP/1.1 client on asyncio streams (``Http``: a real load generator is compiled, and
httpx's async client cost about as much CPU per request as the server), following the browser's flow:
the sign-in form with its CSRF field and cookie, the session cookie, the CSRF header, the JSON API.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import duckdb

from corpus.plugins.annotate.auth import new_token, token_hash
from corpus.plugins.annotate.load import load_tasks
from corpus.plugins.annotate.store import DB_NAME, Store


def make_project(folder: Path, users: int, items: int, per_item: int, k: int = 4) -> dict[str, str]:
    rng = random.Random(0)
    tasks = folder / "tasks.jsonl"
    with open(tasks, "w") as fh:
        for i in range(items):
            responses = [f"response {j} to prompt {i}: " + " ".join(rng.choice("abcdefgh") * rng.randint(1, 6)
                                                                    for _ in range(rng.randint(10, 60)))
                         for j in range(k)]
            fh.write(json.dumps({"item_id": f"it-{i}", "prompt": f"prompt {i} " * 5, "responses": responses}) + "\n")
    store = Store(folder / "proj")
    store.set_setting("per_item", str(per_item))
    load_tasks(store, tasks)
    tokens = {}
    for u in range(users):
        tokens[f"user{u:03d}"] = new_token()
        store.add_annotator(f"user{u:03d}", token_hash(tokens[f"user{u:03d}"]))
    store.close()
    return tokens


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpError(Exception):
    """The connection failed or the answer was not HTTP/1.1 as expected."""


class Http:
    """One annotator's keep-alive HTTP/1.1 connection with a cookie jar (what a browser keeps of a
    session); answers are read by their Content-Length (the app sends it on every response)."""

    def __init__(self, host: str, port: int, timeout: float = 30):
        self.host, self.port, self.timeout = host, port, timeout
        self.cookies: dict[str, str] = {}
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, body: bytes = b"", content_type: str = "",
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """(status, body); HttpError when the connection fails (it reconnects on the next request)."""
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if self.cookies:
            head.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        if body or method == "POST":
            head += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        try:
            async with asyncio.timeout(self.timeout):
                if self.streams is None:
                    self.streams = await asyncio.open_connection(self.host, self.port)
                reader, writer = self.streams
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
                status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                length, close = None, False
                for line in lines:
                    name, _, value = line.partition(":")
                    name, value = name.strip().lower(), value.strip()
                    if name == "content-length":
                        length = int(value)
                    elif name == "connection":
                        close = value.lower() == "close"
                    elif name == "set-cookie":
                        self._cookie(value)
                if length is None:
                    raise HttpError(f"no Content-Length in the answer to {method} {path}")
                data = await reader.readexactly(length)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            await self.close()
            raise HttpError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if close:
            await self.close()
        return int(status_line.split(" ", 2)[1]), data

    def _cookie(self, header: str) -> None:
        pair, *attrs = header.split(";")
        name, _, value = pair.strip().partition("=")
        if value.strip('"') == "" or any(a.strip().lower() == "max-age=0" for a in attrs):
            self.cookies.pop(name, None)
        else:
            self.cookies[name] = value

    async def get_json(self, path: str) -> tuple[int, Any]:
        status, data = await self.request("GET", path)
        return status, json.loads(data) if status == 200 else data[:80]

    async def post_json(self, path: str, body: dict, headers: dict[str, str]) -> tuple[int, Any]:
        status, data = await self.request("POST", path, json.dumps(body).encode(), "application/json", headers)
        return status, json.loads(data) if status == 200 else data[:80]

    async def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


class Stats:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = {"next": [], "label": []}
        self.errors: list[str] = []
        self.acked: set[tuple[str, str, str]] = set()  # (annotator, item, submission id) the server confirmed
        self.retries = 0
        self.replays_stored = 0  # a retry the server stored again: a duplicate
        self.ran_out = 0  # annotators who had nothing left before the end (the figures then understate the load)

    def timed(self, kind: str, t0: float) -> None:
        self.latency[kind].append(time.perf_counter() - t0)


async def sign_in(http: Http, token: str) -> dict[str, str]:
    """Sign in as the browser does (the form's CSRF field and cookie, then the session cookie); returns
    the headers of later POSTs (the session's CSRF token)."""
    status, page = await http.request("GET", "/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.decode()).group(1)
    form = urlencode({"token": token, "csrf": csrf}).encode()
    status, page = await http.request("POST", "/login", form, "application/x-www-form-urlencoded")
    if status != 303:
        raise RuntimeError(f"sign-in failed: {status} {page[:200]!r}")
    return {"X-CSRF-Token": (await http.get_json("/api/me"))[1]["csrf"]}


async def annotator(http: Http, headers: dict[str, str], name: str, until: float, stats: Stats,
                    rng: random.Random, think: float = 0.0) -> None:
    while time.monotonic() < until:
        try:
            t0 = time.perf_counter()
            status, answer = await http.get_json("/api/next")
            stats.timed("next", t0)
            if status != 200:
                stats.errors.append(f"next {status}: {answer!r}")
                continue
            item = answer["item"]
            if item is None:
                stats.ran_out += 1
                return  # nothing left for this annotator
            k = len(item["shown"])
            ranks = rng.sample(range(1, k + 1), k)
            body = {"item_id": item["item_id"], "submission_id": uuid.uuid4().hex, "ranking": ranks}
            if think:  # reading and ranking, about `think` seconds
                await asyncio.sleep(rng.uniform(0.5, 1.5) * think)
            for attempt in range(2 if rng.random() < 0.05 else 1):
                t0 = time.perf_counter()
                status, answer = await http.post_json("/api/label", body, headers)
                stats.timed("label", t0)
                if status != 200:
                    stats.errors.append(f"label {status}: {answer!r}")
                    break
                if attempt == 0:
                    stats.acked.add((name, item["item_id"], body["submission_id"]))
                else:
                    stats.retries += 1
                    stats.replays_stored += bool(answer["stored"])
        except HttpError as exc:
            stats.errors.append(str(exc))


def check_database(db: Path, stats: Stats, per_item: int) -> list[str]:
    """What is wrong in the database against what the clients were told (empty: nothing)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        labels = con.execute("SELECT annotator, item_id, submission_id FROM labels").fetchall()
        subs = {(a, i, s) for a, i, s in con.execute(
            "SELECT annotator, item_id, submission_id FROM submissions WHERE kind = 'label'").fetchall()}
        over = con.execute("SELECT count(*) FROM (SELECT item_id FROM labels GROUP BY item_id "
                           "HAVING count(*) > ?)", [per_item]).fetchone()[0]
    finally:
        con.close()
    problems = []
    pairs = [(a, i) for a, i, _ in labels]
    if len(pairs) != len(set(pairs)):
        problems.append(f"{len(pairs) - len(set(pairs))} duplicated labels")
    lost = stats.acked - subs
    if lost:
        problems.append(f"{len(lost)} acknowledged submissions missing, e.g. {sorted(lost)[:2]}")
    acked_pairs = {(a, i) for a, i, _ in stats.acked}
    if acked_pairs - set(pairs):
        problems.append(f"{len(acked_pairs - set(pairs))} acknowledged labels missing")
    extra = set(pairs) - acked_pairs
    if extra:  # stored, but the client never heard back (it gave up): not lost, worth saying
        problems.append(f"{len(extra)} labels stored that no client saw acknowledged")
    if stats.replays_stored:
        problems.append(f"{stats.replays_stored} retried submissions stored twice")
    if over:
        problems.append(f"{over} items with more than {per_item} labels")
    return problems


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else float("nan")


async def all_users(port: int, tokens: dict[str, str], seconds: float, stats: Stats, pid: int,
                    times: dict[str, float], think: float = 0.0) -> None:
    """Everyone signs in first; then all rank for ``seconds`` (only that phase is timed)."""
    clients = [Http("127.0.0.1", port) for _ in tokens]
    try:
        headers = await asyncio.gather(*(sign_in(c, t) for c, t in zip(clients, tokens.values(), strict=True)))
        cpu0, t0, mine0 = cpu_seconds(pid), time.monotonic(), time.process_time()
        until = t0 + seconds
        await asyncio.gather(*(annotator(c, h, n, until, stats, random.Random(i), think)
                               for i, (c, h, n) in enumerate(zip(clients, headers, tokens, strict=True))))
        times["wall"], times["server_cpu"] = time.monotonic() - t0, cpu_seconds(pid) - cpu0
        times["client_cpu"] = time.process_time() - mine0
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def _answers(port: int) -> bool:
    """Whether the server answers its sign-in page yet."""
    http = Http("127.0.0.1", port, timeout=1)
    try:
        return (await http.request("GET", "/login"))[0] == 200
    except HttpError:
        return False
    finally:
        await http.close()


def run(users: int, seconds: float, items: int, per_item: int, keep: Path | None = None, think: float = 0.0) -> dict:
    """Run the load test; returns the figures and the database check (``problems`` empty when sound)."""
    work = Path(tempfile.mkdtemp(prefix="annotate-load-"))
    server = None
    try:
        tokens = make_project(work, users, items, per_item)
        port = free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        server = subprocess.Popen([sys.executable, "-m", "corpus.cli", "annotate", "serve", str(work / "proj"),
                                   "--port", str(port), "--max-connections", str(4 * users)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while not asyncio.run(_answers(port)):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {server.stdout.read().decode()[-2000:]}")
            time.sleep(0.1)
        stats = Stats()
        times: dict[str, float] = {}
        asyncio.run(all_users(port, tokens, seconds, stats, server.pid, times, think))
        wall, server_cpu = times["wall"], times["server_cpu"]
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
        problems = check_database(work / "proj" / DB_NAME, stats, per_item)
        lat = stats.latency["next"] + stats.latency["label"]
        if keep is not None:
            shutil.copytree(work / "proj", keep, dirs_exist_ok=True)
        return {"users": users, "seconds": round(wall, 1), "requests": len(lat),
                "labels": len(stats.acked), "retries": stats.retries, "errors": len(stats.errors),
                "error_examples": stats.errors[:3], "ran_out": stats.ran_out,
                "p50_ms": round(pct(lat, 0.5), 1), "p95_ms": round(pct(lat, 0.95), 1),
                "p95_label_ms": round(pct(stats.latency["label"], 0.95), 1),
                "p95_next_ms": round(pct(stats.latency["next"], 0.95), 1),
                "requests_per_s": round(len(lat) / wall, 1), "problems": problems,
                "server_cpu_s": round(server_cpu, 1), "client_cpu_s": round(times["client_cpu"], 1),
                "server_cpu_ms_per_request": round(server_cpu / max(1, len(lat)) * 1000, 2),
                "client_cpu_ms_per_request": round(times["client_cpu"] / max(1, len(lat)) * 1000, 2)}
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


def server_pieces() -> str:
    """Which HTTP parser and event loop uvicorn picks here ("auto": httptools and uvloop when installed)."""
    parser = "httptools" if importlib.util.find_spec("httptools") else "h11 (httptools not installed)"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio's loop (uvloop not installed)"
    return f"{parser}, {loop}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks annotate", description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=50, help="concurrent annotators")
    ap.add_argument("--seconds", type=float, default=120, help="how long they rank")
    ap.add_argument("--items", type=int, default=60000,
                    help="items loaded (enough that none runs out: 2 minutes at 1,300 requests/s label 26,000 x3)")
    ap.add_argument("--per-item", type=int, default=3, help="annotators per item")
    ap.add_argument("--think", type=float, default=0.0,
                    help="mean seconds an annotator spends on an item before submitting (0: none, the worst case)")
    args = ap.parse_args(argv)
    print(f"load average before: {os.getloadavg()[0]:.2f} (figures are meaningful under ~1.5)")
    r = run(args.users, args.seconds, args.items, args.per_item, think=args.think)
    print(f"{r['users']} annotators ({args.think} s per item) for {r['seconds']} s: "
          f"{r['requests']} requests ({r['requests_per_s']}/s), "
          f"{r['labels']} labels, {r['retries']} retried submissions, {r['errors']} errors")
    print(f"latency p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms (next {r['p95_next_ms']} ms, "
          f"label {r['p95_label_ms']} ms); goal: p95 under 200 ms")
    print(f"CPU: server {r['server_cpu_s']} s ({r['server_cpu_ms_per_request']} ms per request), the clients "
          f"{r['client_cpu_s']} s ({r['client_cpu_ms_per_request']} ms per request, one process on the same "
          f"cores), of {os.cpu_count()} cores x {r['seconds']} s")
    print(f"server: uvicorn with {server_pieces()}")
    if r["ran_out"]:
        print(f"  warning: {r['ran_out']} annotators ran out of items before the end: raise --items")
    for e in r["error_examples"]:
        print(f"  error: {e}")
    print("database check: " + ("no lost or duplicated labels" if not r["problems"] else "; ".join(r["problems"])))


if __name__ == "__main__":
    main()
