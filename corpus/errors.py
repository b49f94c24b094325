"""Operational failures said in one line: the cause, the file, and what to do about it."""

from __future__ import annotations

import errno
import os
import re
import signal

RESUME = "rerun the same command to resume (finished work is kept)"

_CAUSES = {
    errno.ENOSPC: ("no space left on device writing {file}", "free some space (or use a bigger disk), then " + RESUME),
    errno.EDQUOT: ("disk quota exceeded writing {file}", "free some space, then " + RESUME),
    errno.EROFS: ("{file} is on a read-only file system", "choose a writable output folder"),
    errno.EACCES: ("permission denied: {file}", "check the folder's owner and permissions"),
    errno.EPERM: ("operation not permitted: {file}", "check the folder's owner and permissions"),
    errno.EFBIG: ("file too large: {file}", "the file system or `ulimit -f` limits file size; use smaller shards"),
    errno.EIO: ("input/output error on {file}", "the disk may be failing; check `dmesg`"),
}


MAIN_GUARD = ('put the run under `if __name__ == "__main__":` in the script that starts it: worker processes are '
              "spawned, and each one imports that script")


_IN_STAGE = "(in stage "


def note_stage(exc: BaseException, label: str) -> None:
    """Note on an operator's own error (any type: its setup, map, filter, fit...) the stage it was raised
    in; the CLI then says it in one line (``raised_in_stage``), as it says the errors it expects."""
    exc.add_note(f"{_IN_STAGE}{label})")


def raised_in_stage(exc: BaseException) -> bool:
    return any(n.startswith(_IN_STAGE) for n in getattr(exc, "__notes__", ()))


def note_worker(exc: BaseException, label: str) -> None:
    """Note the unit a worker (a pool process or a Ray task) was running when exc was raised."""
    exc.add_note(f"(in a worker process, running {label})")


def note_unit(exc: BaseException, label: str) -> None:
    """Note the unit this process was running when exc was raised (workers: 1)."""
    exc.add_note(f"(running {label})")


def with_notes(msg: str, exc: BaseException) -> str:
    """msg and the error's notes (where it was raised: its stage, its unit), in one line."""
    return " ".join([msg, *getattr(exc, "__notes__", ())])


def described(exc: BaseException) -> str:
    """An error in one line, as the catalog records a failed run: its type, message and notes."""
    return with_notes(f"{type(exc).__name__}: {exc}", exc)


class PathNameError(ValueError):
    """A file or folder name that is not valid UTF-8: Python holds its undecodable bytes as surrogates, which
    no UTF-8 text (DuckDB, JSON, Parquet, the catalog) can hold."""


def shown_path(path: str | os.PathLike) -> str:
    """A path as text, undecodable bytes written as \\xNN (its str() holds surrogates that print as errors)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def check_path_name(path: str | os.PathLike, where: str = "", error: type[Exception] = PathNameError) -> None:
    """Refuse a path whose name is not valid UTF-8, in one line naming it (escaped) and saying to rename it:
    the one check and message for input files, output folders and every folder a command is given.
    ``where``: what the path is, said first ("input 'web'"); ``error``: the type raised (InputError when
    planning inputs)."""
    text = os.fspath(path)
    try:
        text.encode() if isinstance(text, str) else text.decode()
    except UnicodeError:
        prefix = f"{where}: " if where else ""
        raise error(f"{prefix}{shown_path(path)}: the name is not valid UTF-8 (the bytes shown as \\xNN): rename "
                    "it to a UTF-8 name (corpusforge records every path as UTF-8 text)") from None


def check_path_args(values: dict) -> None:
    """check_path_name for every str or path (or list of them) among a command's arguments (``vars(args)``):
    the CLI's one check before a command runs (an argument with bytes that are not UTF-8 is, in practice, a
    file or folder name from the shell)."""
    for value in values.values():
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, str | os.PathLike):
                check_path_name(item)


class WorkerDiedError(RuntimeError):
    """A worker process ended abruptly (killed by a signal, most often the out-of-memory killer)."""


class SpawnedImportError(RuntimeError):
    """A run started by a worker process while it imported the script that started the parent run."""


def describe_os_error(exc: OSError, resumes: bool = True) -> str:
    """`[Errno 28] No space left on device: 'x'` as `no space left on device writing x; free some space...`.
    ``resumes``: whether the command keeps its finished work (else a rerun starts over, and says so)."""
    cause = _CAUSES.get(exc.errno) if exc.errno is not None else None
    if cause is None or exc.filename is None:
        return str(exc)
    what, todo = cause
    if not resumes:
        todo = todo.replace(RESUME, "rerun the command")
    return f"{what.format(file=exc.filename)}; {todo}"


def duckdb_os_error(exc: Exception) -> OSError | None:
    """The OSError a DuckDB error stands for ('Could not write file "x": No space left on device'), or None:
    DuckDB says which file it could not write, but not as an errno."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    for code in _CAUSES:
        m = re.search(r'file "([^"]+)": ' + re.escape(os.strerror(code)), msg)
        if m:
            return OSError(code, os.strerror(code), m.group(1))
    return None


def describe_duckdb_error(exc: Exception) -> str:
    """A DuckDB error in one line, worded like the OSError it was when it was one."""
    as_os = duckdb_os_error(exc)
    if as_os is not None:
        return describe_os_error(as_os)
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def worker_death(pid: int | None, exitcode: int | None, unit: str | None) -> str:
    """The message for a worker that ended abruptly while running `unit`."""
    who = f"a worker process (pid {pid})" if pid else "a worker process"
    doing = f" while running {unit}" if unit else ""
    if exitcode is not None and exitcode < 0:
        try:
            sig = signal.Signals(-exitcode).name
        except ValueError:
            sig = f"signal {-exitcode}"
        how = f"was killed by {sig}"
        if -exitcode == signal.SIGKILL:
            how += " (most likely by the out-of-memory killer: see `dmesg`)"
    elif exitcode:
        how = f"exited with status {exitcode}"
        if not unit:  # it failed while starting up: most often a script without the main guard
            return f"{who} {how} before it ran anything (its error is printed above; most often: {MAIN_GUARD})"
    else:
        how = "ended abruptly"
    return (f"{who} {how}{doing}; {RESUME}, with fewer workers (-w) or smaller shards (shard_max_bytes) "
            "if memory is short")
