"""File integrity: a record taken when a file is written (size, sha256, rows, mtime), and the checks that
every reader of a corpus makes against it, so a changed or damaged file is named, never passed on.

The record is taken from the bytes just written (the temp file, before its rename), never by hashing a
file found on disk later: that would bless whatever the file has become.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pyarrow.parquet as pq


class CorruptFileError(RuntimeError):
    """A file is missing or differs from the record taken when it was written."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def record(path: Path, rows: int | None = None) -> dict:
    """The record of a file just written: {bytes, sha256, mtime_ns} (+ rows for a Parquet file)."""
    st = os.stat(path)
    rec = {"bytes": st.st_size, "sha256": file_sha256(path), "mtime_ns": st.st_mtime_ns}
    if rows is not None:
        rec["rows"] = rows
    return rec


def cheap_problem(path: Path, rec: dict) -> str | None:
    """Missing or of another size: a stat, nothing read."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return "missing"
    if size != rec["bytes"]:
        return f"{size:,} bytes, but {rec['bytes']:,} were written"
    return None


def problem(path: Path, rec: dict, full: bool = True) -> str | None:
    """What is wrong with `path` against its record, or None. Without `full`, the content is hashed only
    when the file's mtime is not the one recorded (something wrote to it since)."""
    cheap = cheap_problem(path, rec)
    if cheap or (not full and os.stat(path).st_mtime_ns == rec.get("mtime_ns")):
        return cheap
    digest = file_sha256(path)
    return None if digest == rec["sha256"] else _hash_problem(digest, rec)


def _hash_problem(digest: str, rec: dict) -> str:
    return f"content changed since it was written (sha256 {digest[:12]}..., recorded {rec['sha256'][:12]}...)"


def read_verified(path: Path, rec: dict) -> bytes:
    """The file's bytes, hashed while read: raises CorruptFileError naming the file on any difference."""
    cheap = cheap_problem(path, rec)
    if cheap:
        raise CorruptFileError(f"{path}: {cheap}")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != rec["bytes"] or digest != rec["sha256"]:
        raise CorruptFileError(f"{path}: {_hash_problem(digest, rec)}")
    return data


def parquet_problem(path: Path, data: bytes | None = None) -> str | None:
    """Decode every page with its checksum verified (a full read): what fails, or None."""
    try:
        src = io.BytesIO(data) if data is not None else path
        pq.ParquetFile(src, page_checksum_verification=True).read()
    except Exception as exc:  # noqa: BLE001 - any decoding failure is the answer
        return f"unreadable Parquet: {exc}"
    return None
