"""The app's one database thread: store calls queue here and run in order; the calls waiting when one
finishes run together in one transaction with one commit (``Store.run_batch``), so under load many
labels share one fsync instead of each paying its own, and no thread ever waits on the store's lock."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from corpus.plugins.annotate.store import Store

MAX_BATCH = 64


class Writer:
    def __init__(self, store: Store):
        self.store = store
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="annotate-db", daemon=True)
        self.thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        fut: Future = Future()
        self.jobs.put((fn, args, fut))
        return fut

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join()

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            batch = [job]
            while len(batch) < MAX_BATCH:
                try:
                    more = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._run_batch(batch)
                    return
                batch.append(more)
            self._run_batch(batch)

    def _run_batch(self, batch: list) -> None:
        try:
            self.store.run_batch(batch)
        except Exception as exc:  # anything unforeseen fails these calls, never the thread (or all later ones)
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
