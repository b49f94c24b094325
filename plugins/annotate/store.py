"""The annotation project's storage: one DuckDB file, one connection, one lock.

DuckDB has a single writer, so the app owns the only connection and every statement runs under
``Store.lock``. Labels are keyed by (item_id, annotator) with a primary key, and every submission by
(annotator, submission_id): a retried request finds its own submission and changes nothing, so
labels are never lost or duplicated. ``submissions`` is the append-only log of what each annotator
sent; ``labels`` holds each annotator's current label per item (an edit replaces it). In memory: the
assignment pool (``assign.Pool``) and the submission ids seen, so a request needs no query to know
whose an item is or whether it is a retry. ``run_batch`` is the group commit of the app's database
thread (``writer.Writer``): the batch's inserts wait and go in one statement per table before its
commit, and item texts (never changed once loaded) are read ahead into a bounded cache, so a batch
costs a handful of statements however many requests it holds (each statement gives up the GIL and
waits to get it back from the event loop's thread).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from corpus.errors import duckdb_os_error
from corpus.integrity import CorruptFileError
from corpus.plugins.annotate.assign import DONE, OPEN, SKIPPED, Pool
from corpus.plugins.preferences import Preference

DB_NAME = "annotate.duckdb"
READ_AHEAD = 128  # item texts read at once: the ones after a missed item in load order come next
TEXT_CACHE_CHARS = 32 << 20  # the cache of item texts holds at most this many characters
DEFAULTS = {"per_item": "2", "aspects": "[]", "scale": "5", "lease_minutes": "30"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    item_id VARCHAR PRIMARY KEY, seq BIGINT NOT NULL, prompt VARCHAR NOT NULL, responses VARCHAR NOT NULL,
    response_ids VARCHAR, meta VARCHAR, source_file VARCHAR, source_line BIGINT, loaded_at VARCHAR);
CREATE TABLE IF NOT EXISTS annotators (
    name VARCHAR PRIMARY KEY, token_hash VARCHAR NOT NULL UNIQUE, created_at VARCHAR NOT NULL);
-- state: 'open' or 'skipped'; an assignment with a label is done (one write less per label)
CREATE TABLE IF NOT EXISTS assignments (
    item_id VARCHAR NOT NULL, annotator VARCHAR NOT NULL, shown_order VARCHAR NOT NULL,
    state VARCHAR NOT NULL, assigned_at DOUBLE NOT NULL, PRIMARY KEY (item_id, annotator));
CREATE TABLE IF NOT EXISTS labels (
    item_id VARCHAR NOT NULL, annotator VARCHAR NOT NULL, ranking VARCHAR NOT NULL, aspects VARCHAR,
    comment VARCHAR, shown_order VARCHAR NOT NULL, submission_id VARCHAR NOT NULL,
    created_at VARCHAR NOT NULL, updated_at VARCHAR NOT NULL, PRIMARY KEY (item_id, annotator));
CREATE TABLE IF NOT EXISTS submissions (
    annotator VARCHAR NOT NULL, submission_id VARCHAR NOT NULL, item_id VARCHAR NOT NULL, kind VARCHAR NOT NULL,
    payload VARCHAR, received_at VARCHAR NOT NULL, PRIMARY KEY (annotator, submission_id));
CREATE TABLE IF NOT EXISTS load_problems (
    load_path VARCHAR NOT NULL, file VARCHAR NOT NULL, line BIGINT, kind VARCHAR NOT NULL, error VARCHAR NOT NULL,
    raw BLOB, recorded_at VARCHAR NOT NULL);
"""
ITEM_COLUMNS = {"item_id": pl.String, "prompt": pl.String, "responses": pl.String, "response_ids": pl.String,
                "meta": pl.String, "source_file": pl.String, "source_line": pl.Int64}
PROBLEM_COLUMNS = {"file": pl.String, "line": pl.Int64, "kind": pl.String, "error": pl.String, "raw": pl.Binary}


class NotFound(LookupError):
    """The item does not exist for this annotator (never assigned to them): the same answer either way,
    so an annotator cannot learn which items others work on."""


class Conflict(ValueError):
    """A submission that cannot be taken as it stands (409): a submission id reused for another item, a
    label of an item the annotator skipped, a skip of an item they labelled."""


def annotator_name_ok(name: str) -> bool:
    return 0 < len(name) <= 64 and name.isprintable() and name.strip() == name


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Settings:
    per_item: int
    aspects: list[str]
    scale: int
    lease_minutes: float


@dataclass
class Item:
    item_id: str
    prompt: str
    responses: list[str]
    shown_order: list[int]
    state: str


class Store:
    """The project database. Every method takes the lock: the app may call them from many threads."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / DB_NAME
        try:
            self.con = duckdb.connect(str(self.path))
        except duckdb.IOException as exc:  # truncated or overwritten (another process is kept out by RunLock)
            as_os = duckdb_os_error(exc)
            if as_os is not None:  # a full disk, a read-only folder: not damage
                raise as_os from None
            why = str(exc).strip().splitlines()[0]
            raise CorruptFileError(f"{self.path}: the annotation project's database is damaged ({why}); it holds "
                                   "the labels, so nothing was changed: restore it from a copy, or load the tasks "
                                   "into a new project (rankings exported earlier stay usable)") from None
        self.lock = threading.RLock()
        self._batch = False  # inside run_batch: transaction() joins the batch's transaction
        self._dirty = False  # the open transaction changed the in-memory pool
        self._pending: dict[str, list[list[Any]]] = {}  # inside run_batch: table -> rows to insert before COMMIT
        with self.lock:
            self.con.execute(SCHEMA)
            for key, value in DEFAULTS.items():
                self.con.execute("INSERT INTO settings VALUES (?, ?) ON CONFLICT DO NOTHING", [key, value])
        self._settings = self._read_settings()
        self._load_memory()

    def _load_memory(self) -> None:
        """The in-memory indexes, from the tables: the assignment pool and the submission ids."""
        s = self._settings
        self._texts: OrderedDict[str, tuple[str, list[str], int]] = OrderedDict()  # item -> (prompt, responses, chars)
        self._text_chars = 0
        items = dict(self._all("SELECT item_id, json_array_length(responses) FROM items ORDER BY seq"))
        self.pool = Pool(items, s.per_item, s.lease_minutes * 60)
        for item, annotator, state, at, shown in self._all(
                """SELECT a.item_id, a.annotator, CASE WHEN l.item_id IS NULL THEN a.state ELSE 'done' END,
                          a.assigned_at, a.shown_order
                   FROM assignments a LEFT JOIN labels l USING (item_id, annotator) ORDER BY a.assigned_at"""):
            self.pool.record(item, annotator, state, at, json.loads(shown))
        # (annotator, submission id) -> item: a retry is recognised without a query
        rows = self._all("SELECT annotator, submission_id, item_id FROM submissions")
        self.submitted = {(a, sid): item for a, sid, item in rows}

    def close(self) -> None:
        with self.lock:
            self.con.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction under the lock (inside ``run_batch``: the batch's). The in-memory indexes change
        with the statements; a rollback after such a change rebuilds them from the tables."""
        if self._batch:
            yield self.con
            return
        with self.lock:
            self._dirty = False
            self.con.execute("BEGIN")
            try:
                yield self.con
                self.con.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    def _rollback(self) -> None:
        self._pending.clear()
        self.con.execute("ROLLBACK")
        if self._dirty:
            self._load_memory()
            self._dirty = False

    def _insert(self, table: str, row: list[Any]) -> None:
        """Insert a row now, or inside ``run_batch`` with the batch's other rows of the table before COMMIT."""
        if self._batch:
            self._pending.setdefault(table, []).append(row)
        else:
            self.con.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * len(row))})", row)

    def _flush(self) -> None:
        """The batch's waiting inserts, one statement per table (a statement reading or changing those
        tables runs after this)."""
        for table, rows in self._pending.items():
            marks = f"({', '.join('?' * len(rows[0]))})"
            self.con.execute(f"INSERT INTO {table} VALUES {', '.join([marks] * len(rows))}",
                             [v for row in rows for v in row])
        self._pending.clear()

    def _execute(self, sql: str, params: list[Any] | None = None) -> duckdb.DuckDBPyConnection:
        self._flush()
        return self.con.execute(sql, params or [])

    def _text(self, item_id: str) -> tuple[str, list[str]]:
        """An item's prompt and responses, from the cache or read with the next items in load order."""
        hit = self._texts.get(item_id)
        if hit is not None:
            self._texts.move_to_end(item_id)
            return hit[0], hit[1]
        start = self.pool.pos[item_id]
        ids = [item_id] + [i for i in self.pool.order[start + 1:start + READ_AHEAD] if i not in self._texts]
        for item, prompt, responses in self.con.execute(  # items only: no waiting insert touches them
                "SELECT item_id, prompt, responses FROM items WHERE item_id IN (SELECT unnest(?))", [ids]).fetchall():
            self._texts[item] = (prompt, json.loads(responses), len(prompt) + len(responses))
            self._text_chars += len(prompt) + len(responses)
        self._texts.move_to_end(item_id)
        while self._text_chars > TEXT_CACHE_CHARS and len(self._texts) > 1:
            self._text_chars -= self._texts.popitem(last=False)[1][2]
        hit = self._texts[item_id]
        return hit[0], hit[1]

    def _record(self, item: str, annotator: str, state: str, shown: list[int] | None = None,
                at: float | None = None) -> None:
        """An assignment change of the open transaction, in the pool (after its statement succeeded)."""
        self.pool.record(item, annotator, state, time.time() if at is None else at, shown)
        self._dirty = True

    def run_batch(self, jobs: list[tuple[Callable[..., Any], tuple, Future]]) -> None:
        """Run store calls in one transaction and one commit (group commit: the commit's fsync is most of a
        label's cost), then answer their futures. A call's own refusal (NotFound, BadLabel, ...) comes
        before it writes anything, so it fails alone; a database error rolls the batch back and each
        call runs again in its own transaction. No future is answered before its writes committed."""
        with self.lock:
            done: list[tuple[Future, bool, Any]] = []
            self._batch, self._dirty = True, False
            try:
                self.con.execute("BEGIN")
                for fn, args, fut in jobs:
                    try:
                        done.append((fut, True, fn(*args)))
                    except duckdb.Error:
                        raise
                    except Exception as exc:  # the caller's to see, through its future
                        done.append((fut, False, exc))
                self._flush()
                self.con.execute("COMMIT")
            except duckdb.Error:
                self._batch = False
                try:
                    self._rollback()
                except duckdb.Error:
                    self._load_memory()
                done = []
                for fn, args, fut in jobs:
                    try:
                        done.append((fut, True, fn(*args)))
                    except Exception as exc:
                        done.append((fut, False, exc))
            finally:
                self._batch = False
        for fut, ok, value in done:
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    def _one(self, sql: str, params: list[Any] | None = None) -> tuple | None:
        with self.lock:
            return self._execute(sql, params).fetchone()

    def _all(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        with self.lock:
            return self._execute(sql, params).fetchall()

    # ---------------------------------------------------------------- settings and accounts
    def _read_settings(self) -> Settings:
        s = dict(self._all("SELECT key, value FROM settings"))
        return Settings(int(s["per_item"]), json.loads(s["aspects"]), int(s["scale"]), float(s["lease_minutes"]))

    def settings(self) -> Settings:
        return self._settings

    def set_setting(self, key: str, value: str) -> None:
        with self.lock:
            self.con.execute("INSERT INTO settings VALUES (?, ?) ON CONFLICT DO UPDATE SET value = excluded.value",
                             [key, value])
        self._settings = self._read_settings()
        if hasattr(self, "pool"):
            self.pool.per_item = self._settings.per_item
            self.pool.lease = self._settings.lease_minutes * 60

    def set_ratings(self, aspects: list[str] | None, scale: int | None) -> None:
        """Set the aspects and their scale. Once labels exist, aspects are only added (a label rating a
        removed aspect could not be sent again, nor shown) and the scale stays: ValueError otherwise."""
        s = self.settings()
        new_aspects = s.aspects if aspects is None else list(dict.fromkeys(aspects))
        new_scale = s.scale if scale is None else scale
        if (new_aspects, new_scale) == (s.aspects, s.scale):
            return
        n = self._one("SELECT count(*) FROM labels")[0]
        if n:
            added = [a for a in new_aspects if a not in s.aspects]
            gone = [a for a in s.aspects if a not in new_aspects]
            if gone:
                raise ValueError(f"--aspects: the project's {n:,} labels may rate {', '.join(gone)}, so its aspects "
                                 f"can only be added to: --aspects {','.join(s.aspects + added)}")
            if new_scale != s.scale:
                raise ValueError(f"--scale {new_scale}: the project's {n:,} labels are rated on 1..{s.scale}, "
                                 "so its scale stays")
            new_aspects = s.aspects + added
        self.set_setting("aspects", json.dumps(new_aspects))
        self.set_setting("scale", str(new_scale))

    def admin_hash(self) -> str | None:
        row = self._one("SELECT value FROM settings WHERE key = 'admin_token_hash'")
        return row[0] if row else None

    def add_annotator(self, name: str, token_hash: str, rotate: bool = False) -> None:
        with self.transaction() as con:
            known = con.execute("SELECT 1 FROM annotators WHERE name = ?", [name]).fetchone()
            if known and not rotate:
                raise ValueError(f"annotator {name!r} exists already; --rotate gives them a new token "
                                 "(the old one stops working)")
            if known:
                con.execute("UPDATE annotators SET token_hash = ? WHERE name = ?", [token_hash, name])
            else:
                con.execute("INSERT INTO annotators VALUES (?, ?, ?)", [name, token_hash, now_iso()])

    def annotator_by_hash(self, token_hash: str) -> str | None:
        row = self._one("SELECT name FROM annotators WHERE token_hash = ?", [token_hash])
        return row[0] if row else None

    # ---------------------------------------------------------------- items
    def known_items(self, ids: list[str]) -> dict[str, tuple[str, str, str | None]]:
        """item_id -> (prompt, responses JSON, response_ids JSON) for the ids already loaded."""
        if not ids:
            return {}
        rows = self._all("SELECT item_id, prompt, responses, response_ids FROM items WHERE item_id IN "
                         "(SELECT unnest(?))", [ids])
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def items_by_content(self, prompts: list[str]) -> dict[tuple[str, frozenset[str]], str]:
        """(prompt, set of responses) -> item_id, for the items loaded before tasks without item_id took their
        content id (their ids are the reader's line ids, ``preferences:FILE:LINE``) with one of these prompts
        (the first loaded where two share their content). An item given its own id is never matched."""
        if not prompts:
            return {}
        rows = self._all("SELECT item_id, prompt, responses FROM items WHERE prompt IN (SELECT unnest(?)) "
                         "AND item_id LIKE 'preferences:%' ORDER BY seq", [sorted(set(prompts))])
        out: dict[tuple[str, frozenset[str]], str] = {}
        for item_id, prompt, responses in rows:
            out.setdefault((prompt, frozenset(json.loads(responses))), item_id)
        return out

    def add_items(self, rows: list[dict], problems: list[dict], load_path: str) -> None:
        """Insert new items (dicts with the items columns but seq) and record the load's problems, in
        place of those of an earlier load of the same path (status counts each record once)."""
        at = now_iso()
        items = pl.DataFrame(rows, schema=ITEM_COLUMNS).with_row_index("seq", offset=1)
        found = pl.DataFrame(problems, schema=PROBLEM_COLUMNS).with_columns(
            load_path=pl.lit(load_path), recorded_at=pl.lit(at))
        with self.transaction() as con:
            con.execute("DELETE FROM load_problems WHERE load_path = ?", [load_path])
            con.register("new_items", items)
            con.register("new_problems", found)
            try:
                con.execute("""INSERT INTO items SELECT item_id, seq + (SELECT coalesce(max(seq), 0) FROM items),
                               prompt, responses, response_ids, meta, source_file, source_line, ? FROM new_items""",
                            [at])
                con.execute("INSERT INTO load_problems SELECT load_path, file, line, kind, error, raw, recorded_at "
                            "FROM new_problems")
            finally:  # on an aborted transaction unregister fails too: the error that aborted it is the one to see
                for view in ("new_items", "new_problems"):
                    with suppress(duckdb.Error):
                        con.unregister(view)
            self.pool.add_items({r["item_id"]: len(json.loads(r["responses"])) for r in rows})
            self._dirty = True

    # ---------------------------------------------------------------- assignment
    def current_or_next(self, annotator: str) -> Item | None:
        """The annotator's open item, else a new one (``assign.Pool.pick``); None: nothing left for them."""
        with self.transaction():
            item = self.pool.open.get(annotator)
            if item is None:
                now = time.time()
                item = self.pool.pick(annotator, now)
                if item is None:
                    return None
                order = list(range(self.pool.k[item]))
                random.SystemRandom().shuffle(order)  # per (annotator, item), kept: position bias is measurable
                prompt, responses = self._text(item)  # before the write: a failure here leaves nothing behind
                self._insert("assignments", [item, annotator, json.dumps(order), "open", now])
                self._record(item, annotator, OPEN, order, now)
                return Item(item, prompt, responses, order, OPEN)
            return self._item(item, annotator)

    def next_with_progress(self, annotator: str) -> tuple[Item | None, dict]:
        """``current_or_next`` and the annotator's progress after it, in one call (one trip to the DB thread)."""
        with self.lock:
            item = self.current_or_next(annotator)
            return item, self.pool.progress(annotator)

    def _item(self, item_id: str, annotator: str) -> Item:
        state = self.pool.state.get((item_id, annotator))
        if state is None:
            raise NotFound(item_id)
        prompt, responses = self._text(item_id)
        return Item(item_id, prompt, responses, self.pool.shown[(item_id, annotator)], state)

    def item_for(self, annotator: str, item_id: str) -> Item:
        """An item assigned to this annotator (NotFound otherwise)."""
        with self.lock:
            return self._item(item_id, annotator)

    # ---------------------------------------------------------------- labels
    def _replayed(self, annotator: str, submission_id: str, item_id: str) -> bool:
        before = self.submitted.get((annotator, submission_id))
        if before is None:
            return False
        if before != item_id:
            raise Conflict(f"submission {submission_id!r} was for another item")
        return True

    def submit(self, annotator: str, item_id: str, submission_id: str, check: Callable[[int], dict]) -> bool:
        """Store a label of one of the annotator's items: ``check(k)`` makes it (``ranking``, ``aspects``,
        ``comment``) from the request for an item of k responses, or raises. False when this submission
        was stored before (a retry): nothing changes then."""
        with self.transaction():
            if self._replayed(annotator, submission_id, item_id):
                return False
            state = self.pool.state.get((item_id, annotator))
            if state is None:
                raise NotFound(item_id)
            if state == SKIPPED:  # it went back to the others: a label now would put it over its annotators
                raise Conflict("you skipped this item: it went to other annotators and cannot be labelled now")
            label = check(self.pool.k[item_id])
            at = now_iso()
            aspects = json.dumps(label["aspects"]) if label.get("aspects") else None
            self._insert("submissions", [annotator, submission_id, item_id, "label", json.dumps(label), at])
            values = [json.dumps(label["ranking"]), aspects, label.get("comment") or None, submission_id, at]
            if state == DONE:  # a change of the label (the log above keeps the old one)
                self._execute("UPDATE labels SET ranking = ?, aspects = ?, comment = ?, submission_id = ?, "
                              "updated_at = ? WHERE item_id = ? AND annotator = ?", [*values, item_id, annotator])
            else:
                shown = json.dumps(self.pool.shown[(item_id, annotator)])
                self._insert("labels", [item_id, annotator, *values[:3], shown, submission_id, at, at])
                self._record(item_id, annotator, DONE)
            self.submitted[(annotator, submission_id)] = item_id
            self._dirty = True
            return True

    def skip(self, annotator: str, item_id: str, submission_id: str) -> bool:
        """Skip an open item: it goes back to the pool for others, never to this annotator."""
        with self.transaction():
            if self._replayed(annotator, submission_id, item_id):
                return False
            state = self.pool.state.get((item_id, annotator))
            if state is None:
                raise NotFound(item_id)
            if state == DONE:  # a skip would change nothing: say so rather than answer "stored"
                raise Conflict("already labelled: change the label instead (My labels)")
            self._insert("submissions", [annotator, submission_id, item_id, "skip", None, now_iso()])
            self.submitted[(annotator, submission_id)] = item_id
            self._dirty = True
            if state == OPEN:
                self._execute("UPDATE assignments SET state = 'skipped' WHERE item_id = ? AND annotator = ?",
                              [item_id, annotator])
                self._record(item_id, annotator, SKIPPED)
            return True

    def label_of(self, annotator: str, item_id: str) -> dict | None:
        row = self._one("SELECT ranking, aspects, comment, updated_at FROM labels WHERE item_id = ? AND "
                        "annotator = ?", [item_id, annotator])
        if row is None:
            return None
        return {"ranking": json.loads(row[0]), "aspects": json.loads(row[1]) if row[1] else {},
                "comment": row[2] or "", "updated_at": row[3]}

    def labels_of(self, annotator: str, limit: int = 200) -> list[dict]:
        rows = self._all("SELECT l.item_id, i.prompt, l.updated_at FROM labels l JOIN items i USING (item_id) "
                         "WHERE l.annotator = ? ORDER BY l.updated_at DESC, i.seq DESC LIMIT ?", [annotator, limit])
        return [{"item_id": r[0], "prompt": r[1][:200], "updated_at": r[2]} for r in rows]

    # ---------------------------------------------------------------- progress and export
    def progress(self, annotator: str) -> dict:
        with self.lock:
            return self.pool.progress(annotator)

    def overview(self) -> dict:
        """Counts for `corpus annotate status` and the admin page."""
        s = self.settings()
        n_items, complete = self._one(
            "SELECT count(*), count(*) FILTER (WHERE coalesce(n, 0) >= ?) FROM items LEFT JOIN "
            "(SELECT item_id, count(*) AS n FROM labels GROUP BY item_id) USING (item_id)", [s.per_item])
        people = self._all(
            """SELECT n.name, count(l.item_id), count(*) FILTER (WHERE l.item_id IS NULL AND a.state = 'skipped'),
                      count(*) FILTER (WHERE l.item_id IS NULL AND a.state = 'open'), max(l.updated_at)
               FROM annotators n LEFT JOIN assignments a ON a.annotator = n.name
               LEFT JOIN labels l ON l.annotator = a.annotator AND l.item_id = a.item_id
               GROUP BY n.name ORDER BY n.name""")
        labels = self._one("SELECT count(*) FROM labels")[0]
        problems = self._all("SELECT kind, count(*) FROM load_problems GROUP BY kind ORDER BY kind")
        return {"items": n_items, "complete": complete, "per_item": s.per_item, "labels": labels,
                "annotators": [{"name": p[0], "labelled": p[1], "skipped": p[2], "open": p[3], "last": p[4]}
                               for p in people],
                "load_problems": dict(problems)}

    def preferences(self) -> list[Preference]:
        """Every current label as a shared ``Preference`` (export, aggregation), in load order then annotator."""
        rows = self._all(
            """SELECT l.item_id, l.annotator, i.prompt, i.responses, l.ranking, l.aspects, l.comment,
                      l.shown_order, l.updated_at, i.response_ids
               FROM labels l JOIN items i USING (item_id) ORDER BY i.seq, l.annotator""")
        out = []
        for r in rows:
            aspects = {a: {int(i): v for i, v in s.items()} for a, s in json.loads(r[5]).items()} if r[5] else {}
            out.append(Preference(
                item_id=r[0], annotator=r[1], prompt=r[2], responses=tuple(json.loads(r[3])),
                ranking=tuple(json.loads(r[4])), aspects=aspects, comment=r[6], shown_order=tuple(json.loads(r[7])),
                created_at=r[8], response_ids=tuple(json.loads(r[9])) if r[9] else None))
        return out
