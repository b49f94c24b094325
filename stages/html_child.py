"""The child process of ``html_to_text`` (run by path: it imports only the standard library and the
extractor). It reads a JSON config frame, loads the extractor and answers ``r`` (ready) or ``e`` (its
error), then answers each page frame with a status byte (``o`` text, ``n`` no text, ``e`` error) and a
frame. A frame is a 4-byte big-endian length and that many UTF-8 bytes. It exits when its stdin
closes, when its parent dies or after CHILD_IDLE_S seconds without a page."""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
import time
from typing import Any

LENGTH = struct.Struct(">I")
CHILD_IDLE_S = 60.0  # a child nobody talks to for this long exits (the worker starts another when needed)


def frame(data: bytes) -> bytes:
    return LENGTH.pack(len(data)) + data


def _trafilatura(options: dict[str, Any]):
    import trafilatura

    def run(html: str) -> str | None:
        return trafilatura.extract(html, output_format="txt", deduplicate=False, with_metadata=False, **options)

    return run


def load_extractor(spec: str, options: dict[str, Any]):
    """``trafilatura``, or ``module:function`` naming a function of one HTML string returning text or None."""
    if spec == "trafilatura":
        return _trafilatura(options)
    from corpus.registry import load_object

    return load_object(spec)


def _child() -> None:
    """Serve extraction requests on stdin/stdout until stdin closes, the parent dies or nobody asks."""
    parent = os.getppid()
    idle_since: list[float | None] = [None]  # None while busy: the parent's deadline governs a page

    def watchdog() -> None:
        while True:
            time.sleep(0.5)
            since = idle_since[0]
            if os.getppid() != parent or (since is not None and time.monotonic() - since > CHILD_IDLE_S):
                os._exit(0)

    threading.Thread(target=watchdog, daemon=True).start()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer

    def read() -> bytes | None:
        head = stdin.read(4)
        if len(head) < 4:
            return None
        return stdin.read(LENGTH.unpack(head)[0])

    def reply(status: bytes, text: str) -> None:
        stdout.write(status + frame(text.encode()))
        stdout.flush()

    config = json.loads(read() or b"{}")
    try:
        fn = load_extractor(config["extractor"], config["options"])
        fn("<html><body><p>warm up</p></body></html>")
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        reply(b"e", f"{type(exc).__name__}: {exc}")
        return
    reply(b"r", "")
    idle_since[0] = time.monotonic()
    while (page := read()) is not None:
        idle_since[0] = None
        try:
            text = fn(page.decode())
        except Exception as exc:  # noqa: BLE001 - one page's failure, reported as its status
            reply(b"e", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500])
        else:
            reply(b"o" if text else b"n", text or "")
        idle_since[0] = time.monotonic()


if __name__ == "__main__":
    _child()
