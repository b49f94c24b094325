"""Writers: Parquet shards of bounded size and JSONL files, always written atomically.

Atomic means a file appears under its final name only once complete (temp file in the same folder,
fsync, rename), so a killed run never leaves a half shard that looks finished. Parquet writers return
the file's integrity record (corpus/integrity.py), taken from the temp file before the rename, and write
page checksums so any pyarrow reader can detect a damaged page.
"""

from __future__ import annotations

import errno
import gzip
import io
import math
import os
import re
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from corpus.integrity import record
from corpus.schema import has_object


def finite_json(x: Any) -> Any:
    """NaN/inf become null, recursively: a JSON file stays strict JSON that any parser reads."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): finite_json(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite_json(v) for v in x]
    return x


PARQUET_OPTS = {"compression": "zstd", "compression_level": 3, "write_statistics": True, "write_page_checksum": True}


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temp path next to `final`; rename it into place only if the block succeeds. What is not
    a regular file (a device such as /dev/full, a pipe, a folder, or a link to one) is refused: the
    rename would replace it. A link to a file is replaced itself, never written through (it may point
    out of the folder a run owns)."""
    final = Path(final)
    _check_destination(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".tmp-{os.getpid()}-{final.name}")
    try:
        with naming(final):
            yield tmp
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, final)
    finally:
        if tmp.exists():  # not unlink(missing_ok): on a read-only disk it raises EROFS and hides the first error
            tmp.unlink()


def _check_destination(final: Path) -> None:
    try:
        mode = final.stat().st_mode  # through a link: what it points to
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISREG(mode):
        return
    kind = ("a folder" if stat.S_ISDIR(mode) else "a character device" if stat.S_ISCHR(mode)
            else "a block device" if stat.S_ISBLK(mode) else "a pipe" if stat.S_ISFIFO(mode) else "a socket")
    what = f"a link to {kind}" if final.is_symlink() else kind
    raise OSError(f"{final} is {what}, not a file: an output file is written whole, then renamed into place, "
                  "which would replace it; give the path of a file")


@contextmanager
def naming(path: Path) -> Iterator[None]:
    """pyarrow's and numpy's write errors carry no file name, and polars' are not OSErrors ("underlying IO
    error: No space left on device (os error 28)"): give them the file being written, as OSErrors (for
    `error:` lines: "no space left on device writing PATH")."""
    try:
        yield
    except OSError as exc:
        if exc.errno is None and "writ" in str(exc).lower() and _full(path):  # numpy: "N requested and M written"
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
        if exc.errno is None or (exc.filename is not None and not _temp_of(str(exc.filename), Path(path))):
            raise
        raise OSError(exc.errno, os.strerror(exc.errno), str(path)) from exc
    except Exception as exc:
        # Rust libraries (polars, safetensors) end their messages with "(os error 28)"; torch.save says
        # "file write failed" and no more: on a disk with no room left, that is the cause.
        code = re.search(r"\(os error (\d+)\)", str(exc))
        if code is not None:
            raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from exc
        if "writ" in str(exc).lower() and _full(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
        raise


def _temp_of(name: str, path: Path) -> bool:
    """Whether ``name`` is a temp file written for ``path`` (.tmp-PID-NAME beside it): an error names
    the file the user asked for."""
    return name.startswith(str(path.parent / ".tmp-")) and name.endswith(path.name)


def _full(path: Path) -> bool:
    """Whether the file system holding ``path`` (or its nearest existing folder) has under 1 MB free."""
    where = Path(path)
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        return shutil.disk_usage(where).free < (1 << 20)
    except OSError:
        return False


def link_or_copy(src: Path, dst: Path) -> None:
    """Place `src` at `dst` atomically as a hard link (no bytes copied), or a copy across filesystems."""
    with atomic_path(dst) as tmp:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def write_bytes_atomic(final: Path, data: bytes) -> None:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def _arrow(df: pl.DataFrame) -> Any:
    """The frame as Arrow, refusing Python objects: to_arrow() makes a pl.Object column fixed_size_binary[8],
    memory addresses that differ every run (polars' own write_parquet refuses them)."""
    objects = [c for c, t in df.schema.items() if has_object(t)]
    if objects:
        raise TypeError(f"column(s) {objects} hold Python objects ({', '.join(str(df.schema[c]) for c in objects)}), "
                        "which cannot be written to Parquet: give them a polars type")
    return df.to_arrow()


def write_parquet(df: pl.DataFrame, final: Path) -> dict:
    """Write one frame to one Parquet file atomically; returns its integrity record."""
    with atomic_path(final) as tmp:
        pq.write_table(_arrow(df), tmp, **PARQUET_OPTS)
        rec = record(tmp, df.height)
    return rec


def check_shard_max(n: int, least: int = 1) -> int:
    """A run's shard_max_bytes, or ValueError (a config asks for ``least`` 1KB: '128' meant MB; tests cut
    tiny shards on purpose)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise ValueError(f"expected a number of bytes, got {n!r}")
    if n < least:
        raise ValueError(f"too small ({n} bytes); use at least {'1KB' if least == 1024 else f'{least} byte'}")
    return n


class ShardWriter:
    """Streams frames into Parquet shards named `<prefix>-<part:05d>.parquet`, starting a new shard when
    the current one holds `max_bytes` of text (max_bytes=None: one file, `<prefix>.parquet`).
    Memory stays at one incoming frame."""

    def __init__(self, folder: Path, prefix: str, max_bytes: int | None):
        self.folder, self.prefix, self.max_bytes = folder, prefix, max_bytes
        self.shards: list[dict] = []  # {"name", "docs", "text_bytes", "record"} of finished shards
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        self._ctx = None
        self._tmp = folder
        self._docs = self._bytes = 0

    def _open(self) -> None:
        name = f"{self.prefix}.parquet" if self.max_bytes is None else f"{self.prefix}-{len(self.shards):05d}.parquet"
        self._ctx = atomic_path(self.folder / name)
        self._tmp = self._ctx.__enter__()
        try:
            with naming(self.folder / name):
                self._writer = pq.ParquetWriter(self._tmp, self._schema, **PARQUET_OPTS)
        except BaseException:
            self._tmp.unlink(missing_ok=True)
            raise
        self._name, self._docs, self._bytes = name, 0, 0

    def _close(self) -> None:
        if self._writer is None:
            return
        with naming(self.folder / self._name):
            self._writer.close()
        rec = record(self._tmp, self._docs)
        self._ctx.__exit__(None, None, None)  # type: ignore[union-attr]
        self.shards.append({"name": self._name, "docs": self._docs, "text_bytes": self._bytes, "record": rec})
        self._writer = None

    def write(self, df: pl.DataFrame) -> None:
        if df.height == 0:
            return
        if self.max_bytes is None or "text" not in df.columns:
            self._append(df, int(df["text"].str.len_bytes().sum() or 0) if "text" in df.columns else 0)
            return
        # Split the frame where the open shard reaches max_bytes, so shards are bounded by size,
        # not by how the reader happened to chunk its input.
        sizes = df["text"].str.len_bytes().cast(pl.Int64)
        while df.height:
            room = self.max_bytes - self._bytes
            cum = sizes.cum_sum()
            n = max(1, int(cum.search_sorted(room, side="left")) + 1)  # rows until the shard is full
            n = min(n, df.height)
            self._append(df.head(n), int(cum[n - 1]))
            if self._bytes >= self.max_bytes:
                self._close()
            df, sizes = df.slice(n), sizes.slice(n)

    def _append(self, df: pl.DataFrame, text_bytes: int) -> None:
        table = _arrow(df)
        if self._schema is None:
            self._schema = table.schema
        elif table.schema != self._schema:
            table = table.cast(self._schema)
        if self._writer is None:
            self._open()
        with naming(self.folder / self._name):
            self._writer.write_table(table)  # type: ignore[union-attr]
        self._docs += df.height
        self._bytes += text_bytes

    def close(self) -> list[dict]:
        self._close()
        return self.shards

    def abort(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except OSError:  # the disk that failed the write may fail this too: the first error is the one to tell
                pass
            self._ctx.__exit__(RuntimeError, None, None)  # type: ignore[union-attr]
            self._writer = None


def write_jsonl(df: pl.DataFrame, final: Path) -> None:
    """JSONL, compressed by extension (.gz or .zst), written atomically."""
    buf = io.BytesIO()
    df.write_ndjson(buf)
    data = buf.getvalue()
    if final.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    elif final.name.endswith(".zst"):
        data = zstandard.ZstdCompressor(level=3).compress(data)
    write_bytes_atomic(final, data)
