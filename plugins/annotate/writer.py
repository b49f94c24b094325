"""The app's one database thread: store calls queue here and run in order; the calls waiting when one
finishes run together in one transaction with one commit (``Store.run_batch``), so under load many
labels share one fsync instead of each paying its own, and no thread ever waits on the store's lock.

The app awaits ``call``: a batch's answers go back to the event loop in one wake-up after its commit
(one ``call_soon_threadsafe`` per batch, not a thread-safe future and a wake-up per request)."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from corpus.plugins.annotate.store import Store

MAX_BATCH = 64


class Answer:
    """A call's outcome, kept by the database thread until its batch is answered on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.future = loop.create_future()
        self.outcome: tuple[bool, Any] | None = None

    def done(self) -> bool:
        return self.outcome is not None

    def set_result(self, value: Any) -> None:
        self.outcome = (True, value)

    def set_exception(self, exc: BaseException) -> None:
        self.outcome = (False, exc)

    def deliver(self) -> None:
        if self.future.done():  # the request was cancelled (its client went away): the call ran all the same
            return
        ok, value = self.outcome
        if ok:
            self.future.set_result(value)
        else:
            self.future.set_exception(value)


def _deliver(answers: list[Answer]) -> None:
    for a in answers:
        a.deliver()


class Writer:
    def __init__(self, store: Store):
        self.store = store
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="annotate-db", daemon=True)
        self.thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Queue a call from any thread; its future is answered after its batch commits."""
        fut: Future = Future()
        self.jobs.put((fn, args, fut))
        return fut

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Queue a call from the event loop and await its outcome (after its batch commits)."""
        answer = Answer(asyncio.get_running_loop())
        self.jobs.put((fn, args, answer))
        return await answer.future

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
        loops: dict[asyncio.AbstractEventLoop, list[Answer]] = {}
        for _, _, fut in batch:
            if isinstance(fut, Answer):
                loops.setdefault(fut.loop, []).append(fut)
        for loop, answers in loops.items():
            try:
                loop.call_soon_threadsafe(_deliver, answers)
            except RuntimeError:  # that loop has closed: nobody waits for these answers
                pass
