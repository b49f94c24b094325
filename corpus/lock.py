"""One run per output folder: an exclusive flock, released by the kernel even on SIGKILL.

Taken by ``corpus run`` (the executor), ``corpus tokenize`` and ``corpus profile`` (their output folders)
and ``corpus train`` (every plugin run through ``corpus.plugins.run``; a sweep its folder, and each trial its
own). No lock is taken in a folder a run's output manages (``owner.refuse_managed``): what another command
wrote there would stop that output's next run."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from corpus.owner import refuse_managed


class LockedError(RuntimeError):
    pass


class RunLock:
    def __init__(self, folder: Path):
        self.path = folder / ".lock"
        self._fh = None

    def __enter__(self) -> RunLock:
        refuse_managed(self.path.parent)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held for the whole run
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise LockedError(
                f"another run (pid {holder}) is writing {self.path.parent}; wait for it or stop it first"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def holder_alive(folder: Path) -> bool | None:
    """Whether the process that last took ``folder``'s lock is alive (None: no lock, or no pid in it). Read
    from the pid it wrote, never by taking the lock: a run starting at that moment must not meet it."""
    try:
        pid = int((Path(folder) / ".lock").read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


@contextlib.contextmanager
def main_process_lock(folder: Path) -> Iterator[None]:
    """``RunLock(folder)`` in the first process of a torchrun job (``RANK`` 0, or no torchrun), nothing in
    the others: they share rank 0's run, and a lock per process would lock each other out."""
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    with RunLock(folder):
        yield
