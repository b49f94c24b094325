"""Load Task JSONL into a project, through ``corpus.plugins.preferences.read_tasks``.

The shared reader quarantines lines that are not tasks (broken JSON, no prompt, fewer than two
responses, a task repeated in the file) with their bytes and a reason. The app adds its own page
limits (at most MAX_RESPONSES responses, MAX_ITEM_BYTES per item) and checks each task against the
project: the same item again is counted as already there, an item id reloaded with other content is a
problem, never an overwrite (labels may refer to it); so is an item in two files of a folder or glob, as
if its files were loaded one by one. A task without ``item_id`` gets the content id
(``item_id_for(prompt, responses)``); before it is added it is matched by content (the same prompt and
set of responses) against the items there, so a project loaded when such tasks got the reader's derived
id (``preferences:FILE:LINE``) counts them as already there on a reload, not as new items. Every record
ends loaded, already there, or a
problem recorded in the project (``load_problems``) with its reason and bytes: the counts add up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from corpus.plugins.annotate.store import Store
from corpus.plugins.preferences import Task, item_id_for, read_tasks

MAX_RESPONSES = 16
MAX_ITEM_BYTES = 1 << 20  # what one page shows at once


@dataclass
class LoadResult:
    records: int = 0  # records read (tasks + quarantined)
    loaded: int = 0
    already: int = 0  # the same item (same prompt and responses) was loaded before
    problems: dict[str, int] = field(default_factory=dict)  # kind -> count
    examples: list[str] = field(default_factory=list)  # a few "file:line: error" lines

    def add_problem(self, kind: str, error: str) -> None:
        self.problems[kind] = self.problems.get(kind, 0) + 1
        if len(self.examples) < 5:
            self.examples.append(error)

    @property
    def balanced(self) -> bool:
        return self.records == self.loaded + self.already + sum(self.problems.values())


def page_problem(task: Task) -> tuple[str, str] | None:
    """(kind, error) when a task is too big for one page (None: it fits)."""
    if len(task.responses) > MAX_RESPONSES:
        return "too_many_responses", f"{len(task.responses)} responses, over the page's {MAX_RESPONSES}"
    size = len(task.prompt.encode()) + sum(len(r.encode()) for r in task.responses)
    if size > MAX_ITEM_BYTES:
        return "too_large", f"the item is {size} bytes, over the page's {MAX_ITEM_BYTES}"
    return None


def load_tasks(store: Store, path: Path) -> LoadResult:
    """Read Task JSONL (a file, folder or glob) into the project; items already there stay as they are."""
    tasks, quarantined = read_tasks(path)
    result = LoadResult(records=len(tasks) + quarantined.height)
    problems = []
    for q in quarantined.iter_rows(named=True):
        where = f"{q['file']}:{q['line']}: "
        error = q["error"] if q["error"].startswith(where) else where + q["error"]
        problems.append({"file": q["file"], "line": q["line"], "kind": q["kind"], "error": error, "raw": q["raw"]})
    for p in problems:
        result.add_problem(p["kind"], p["error"])
    known = store.known_items([t.item_id for t in tasks])
    # tasks without an item_id (their id is the content id): any item there with the same content is them
    unnamed = [t for t in tasks if t.item_id not in known and t.item_id == item_id_for(t.prompt, t.responses)]
    by_content = store.items_by_content([t.prompt for t in unnamed])
    rows = []
    for t in tasks:
        content = (t.prompt, json.dumps(list(t.responses), ensure_ascii=False),
                   json.dumps(list(t.response_ids), ensure_ascii=False) if t.response_ids else None)
        why = page_problem(t)
        if why is None and t.item_id not in known and (t.prompt, frozenset(t.responses)) in by_content \
                and t.item_id == item_id_for(t.prompt, t.responses):  # loaded before under another id
            result.already += 1
            continue
        if why is None and t.item_id in known:
            if known[t.item_id] == content:
                result.already += 1
                continue
            why = ("item_conflict", f"item_id {t.item_id!r} was loaded before with another prompt or responses")
        if why is not None:  # file:line as the reader's own problems: the file itself, also in a folder or glob
            error = f"{t.file}:{t.line}: item {t.item_id!r}: {why[1]}"
            problems.append({"file": t.file, "line": t.line, "kind": why[0], "error": error,
                             "raw": json.dumps(t.to_json(), ensure_ascii=False).encode()})
            result.add_problem(why[0], error)
            continue
        known[t.item_id] = content  # a later file of a folder repeats it: as if the files were loaded one by one
        rows.append({"item_id": t.item_id, "prompt": t.prompt, "responses": content[1], "response_ids": content[2],
                     "meta": json.dumps(t.meta, ensure_ascii=False) if t.meta else None,
                     "source_file": t.file, "source_line": t.line})
    store.add_items(rows, problems, str(path))
    result.loaded = len(rows)
    return result
