"""Byte streams of input files: transparent .gz/.zst decompression and newline-aligned chunks.

A damaged compressed file must not abort a run: ``ByteSource`` yields everything that decompresses
before the damage and then records *why* it stopped (``truncated`` or ``error``), so the reader can
keep every complete record and quarantine only the partial tail.

A UTF-8 byte order mark at the start of a file is an encoding signature, not data: both readers of
bytes here drop it, so no reader sees it in its first record.
"""

from __future__ import annotations

import mmap
import os
import queue
import stat
import threading
import zlib
from collections.abc import Iterator
from typing import BinaryIO, TypeVar

import numpy as np
import zstandard

COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}
# Compressions no reader decompresses: named before the run (plan.py), or their bytes would be read as text.
UNREAD_COMPRESSIONS = {".bz2": "bzip2", ".xz": "xz", ".lzma": "lzma", ".lz4": "lz4", ".br": "brotli",
                       ".zip": "zip", ".7z": "7z"}
BOM = b"\xef\xbb\xbf"
_NEWLINE = ord("\n")

# Compressed input is fed in small slices so one slice cannot expand into a huge output block.
_ZSTD_SLICE = 128 << 10
_COMPRESSED_READ = 1 << 20
# After a decompression error, the failed input is fed again this many bytes at a time (then one).
_SALVAGE_STEP = 256
# Bytes that are not a compressed stream (a mislabelled file, trailing garbage) are quarantined, this much.
_REST_MAX = 16 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_MAGICS = ((_GZIP_MAGIC, "gzip data"), (_ZSTD_MAGIC, "zstd data"), (b"BZh", "bzip2 data"),
           (b"\xfd7zXZ\x00", "xz data"), (b"PK\x03\x04", "a zip archive"), (b"PAR1", "Parquet"))
_UNREAD = "only .gz and .zst are decompressed: decompress it first"
_FIXES = {"gzip data": "name it .gz", "zstd data": "name it .zst", "bzip2 data": _UNREAD, "xz data": _UNREAD,
          "a zip archive": "unpack it first", "Parquet": "name it .parquet"}
T = TypeVar("T")


def compression_of(name: str, table: dict[str, str] = COMPRESSIONS) -> str | None:
    """The compression a file's name says (``table``: suffix -> kind), None for none of them."""
    lower = name.lower()
    for suffix, kind in table.items():
        if lower.endswith(suffix):
            return kind
    return None


def strip_compression(name: str) -> str:
    """File name without a trailing .gz/.zst (the format is inferred from what remains)."""
    lower = name.lower()
    for suffix in COMPRESSIONS:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


class ByteSource:
    """Decompressed blocks of one file, in order.

    After iteration: ``consumed`` is the number of file bytes read (compressed size), ``truncated``
    is True when a compressed stream ended mid-member, ``error`` holds the message of an I/O or
    decompression error that stopped the read early (None when the file was read to its end).
    """

    def __init__(self, path: str, block_size: int = 1 << 20, start: int = 0, end: int | None = None) -> None:
        self.path = path
        # A byte range of an uncompressed file (a part of a big file: corpus/readers/plan.py).
        self.start, self.end = start, end
        # Small blocks only cost calls: the chunker cuts at line ends whatever the block size.
        self.block_size = max(block_size, 1 << 16)
        self.compression = compression_of(path)
        self.consumed = 0
        self.truncated = False
        self.error: str | None = None
        # File bytes that are no compressed stream (a mislabelled file, bytes after the last stream), kept
        # for the quarantined record that reports them; only set with ``error``.
        self.rest = b""

    def blocks(self) -> Iterator[bytes]:
        """The decompressed bytes, a leading byte order mark dropped."""
        blocks = self._blocks()
        if self.start:  # a later part: the file's byte order mark is the first part's
            yield from blocks
            return
        head = b""
        for block in blocks:
            head += block
            if len(head) >= len(BOM):
                break
        if head.startswith(BOM):
            head = head[len(BOM) :]
        if head:
            yield head
        yield from blocks

    def _blocks(self) -> Iterator[bytes]:
        try:
            with open(self.path, "rb") as f:
                if self.compression and (self.start or self.end is not None):
                    raise ValueError(f"{self.path}: a compressed stream is read whole, never from a byte range")
                if self.compression == "gzip":
                    yield from self._gzip(f)
                elif self.compression == "zstd":
                    yield from self._zstd(f)
                else:
                    yield from self._plain(f)
        except OSError as exc:
            self.error = f"I/O error: {exc.strerror or exc}"
        except (zlib.error, zstandard.ZstdError) as exc:
            self.error = f"{self.compression} decompression failed: {exc}"

    def _read(self, f: BinaryIO, size: int) -> bytes:
        data = f.read(size)
        self.consumed += len(data)
        return data

    def _plain(self, f: BinaryIO) -> Iterator[bytes]:
        f.seek(self.start)
        left = None if self.end is None else self.end - self.start
        while data := self._read(f, self.block_size if left is None else min(self.block_size, left)):
            yield data
            if left is not None:
                left -= len(data)

    def _gzip(self, f: BinaryIO) -> Iterator[bytes]:
        # Multi-member gzip (e.g. `cat a.gz b.gz`): each member ends with eof and the next member
        # starts in unused_data. max_length bounds each output block. `data` is always the end of
        # the last read, so the file offset of data[0] is self.consumed - len(data).
        d = zlib.decompressobj(wbits=31)
        cap = max(self.block_size, 1 << 20)  # a small cap makes zlib re-copy its unconsumed tail
        in_member = False
        members = produced = 0  # produced: the current member's output, to compare with its trailer
        while data := self._read(f, _COMPRESSED_READ):
            while data:
                if not in_member:
                    # Zero padding after a member is tolerated, as gzip(1) does; a member
                    # never starts with a zero byte (and a file of zeros is no gzip file).
                    if members:
                        data = data.lstrip(b"\0")
                    if len(data) == 1:  # a magic number cut by the read
                        data += self._read(f, _COMPRESSED_READ)
                    if not data:
                        break
                    if not data.startswith(_GZIP_MAGIC):
                        self._not_compressed(f, data, members, "gzip", ".gz")
                        return
                in_member = True
                # A zlib.error drops the output of the whole call: keep the state before it, to
                # decompress that input again in small steps and keep what precedes the damage.
                before = d.copy()
                try:
                    out = d.decompress(data, cap)
                except zlib.error as exc:
                    yield from self._gzip_salvage(f, before, data, exc, produced)
                    return
                if out:
                    produced += len(out)
                    yield out
                # Output was capped: more may be pending inside zlib with no input left.
                while not d.eof and not d.unconsumed_tail and len(out) == cap:
                    out = d.decompress(b"", cap)
                    if out:
                        produced += len(out)
                        yield out
                if d.eof:
                    data = d.unused_data
                    d = zlib.decompressobj(wbits=31)
                    in_member = False
                    members += 1
                    produced = 0
                else:
                    data = d.unconsumed_tail
        if in_member:
            if tail := d.flush():
                yield tail
            self.truncated = True

    def _gzip_salvage(self, f: BinaryIO, d: zlib._Decompress, data: bytes, exc: zlib.error,
                      produced: int) -> Iterator[bytes]:
        """Decompress ``data`` again from state ``d`` (taken before the call that failed), a few bytes
        at a time, yielding all it gives before the damage; then record where the damage lies."""
        at = self.consumed - len(data)
        step = _SALVAGE_STEP
        i = 0
        while i < len(data):
            before = d.copy() if step > 1 else d
            try:
                out = d.decompress(data[i : i + step])
            except zlib.error as err:
                exc = err
                if step == 1:
                    break
                d, step = before, 1  # the same bytes once more, one at a time
                continue
            if out:
                produced += len(out)
                yield out
            i += step
        self._damaged(f, at + i, "gzip", exc, produced)

    def _zstd(self, f: BinaryIO) -> Iterator[bytes]:
        # One decompressobj per frame (its eof marks a complete frame), so a file that stops
        # mid-frame is detected as truncated instead of silently ending early.
        dctx = zstandard.ZstdDecompressor()
        d = dctx.decompressobj()
        in_frame = False
        frame_start = frames = 0
        while data := self._read(f, _COMPRESSED_READ):
            i = 0  # data[i:] is still to decompress; it starts at file byte self.consumed - len(data) + i
            while i < len(data):
                if not in_frame:
                    if len(data) - i < 4:  # a magic number cut by the read
                        data, i = data[i:] + self._read(f, _COMPRESSED_READ), 0
                    if not _is_zstd_frame(data[i:i + 4]):
                        self._not_compressed(f, data[i:], frames, "zstd", ".zst")
                        return
                    frame_start = self.consumed - len(data) + i
                    in_frame = True
                part = data[i : i + _ZSTD_SLICE]
                try:
                    out = d.decompress(part)
                except zstandard.ZstdError as exc:
                    # The failed call's output is lost and the object has no copy(): decompress the
                    # frame again up to this slice, then the slice a byte at a time.
                    at = self.consumed - len(data) + i
                    yield from self._zstd_salvage(f, dctx, frame_start, at, part, exc)
                    return
                if out:
                    yield out
                i += len(part)
                if d.eof:
                    i -= len(d.unused_data)  # the next frame starts inside this slice
                    d = dctx.decompressobj()
                    in_frame = False
                    frames += 1
        if in_frame:
            self.truncated = True

    def _zstd_salvage(self, f: BinaryIO, dctx: zstandard.ZstdDecompressor, frame_start: int, at: int,
                      part: bytes, exc: zstandard.ZstdError) -> Iterator[bytes]:
        d = dctx.decompressobj()
        f.seek(frame_start)
        left = at - frame_start
        while left > 0:  # output already yielded: decompressed again only to reach the failed slice
            data = f.read(min(left, _ZSTD_SLICE))
            if not data:
                break
            d.decompress(data)
            left -= len(data)
        i = 0
        for i in range(len(part)):
            try:
                out = d.decompress(part[i : i + 1])
            except zstandard.ZstdError as err:
                exc = err
                break
            if out:
                yield out
            if d.eof:
                break
        self._damaged(f, at + i, "zstd", exc)

    def _size(self, f: BinaryIO) -> int:
        return os.fstat(f.fileno()).st_size

    def _damaged(self, f: BinaryIO, at: int, kind: str, exc: Exception, produced: int | None = None) -> None:
        """Record a damaged stream: where, and what of the file is lost."""
        size = self._size(f)
        if "incorrect data check" in str(exc) and produced is not None:
            # zlib fails on the checksum's last byte; the member's length (mod 2**32) follows it. Damage
            # in deflate data can go unnoticed up to the checksum: then the lengths differ too.
            f.seek(at + 1)
            trailer = f.read(4)
            recorded = int.from_bytes(trailer, "little") if len(trailer) == 4 else -1
            if recorded == produced % (1 << 32):
                self.error = (f"the {kind} trailer's checksum does not match the data ({exc}), though its length "
                              "does: every line was read, but some may hold damaged bytes (or only the checksum "
                              "is damaged)")
            else:
                self.error = (f"the {kind} data is damaged, unnoticed until the trailer's checksum at byte {at:,} "
                              f"({exc}): it decompressed to {produced:,} bytes where the trailer records "
                              f"{recorded:,}; the lines read from the damage on hold garbled text (this file's "
                              "documents should be checked or dropped)")
            return
        # Deflate notices damage only where the bytes stop making sense: what comes just before may be garbled.
        self.error = (f"{kind} data is damaged at about byte {at:,} of {size:,} ({exc}): the lines before it "
                      "were read (the last of them may hold damaged bytes); this record and the "
                      f"{size - at:,} compressed bytes from there on cannot be decompressed and are lost")

    def _not_compressed(self, f: BinaryIO, data: bytes, members: int, kind: str, suffix: str) -> None:
        """The bytes at ``data`` (the end of the last read) are not a compressed stream: the whole file
        when nothing came before them, else trailing bytes after complete streams. They are kept (up to
        _REST_MAX) for the reader's quarantined record, in ``rest``."""
        at = self.consumed - len(data)
        size = self._size(f)
        what = _looks_like(data)
        if len(data) < _REST_MAX:
            data += self._read(f, _REST_MAX - len(data))
        self.rest = data[:_REST_MAX]
        kept = "" if len(self.rest) == size - at else f" (its first {len(self.rest):,} bytes are kept with this record)"
        if members == 0:
            fix = _FIXES.get(what, f"rename it without the {suffix} suffix" if what == "plain text"
                             else "check what it holds")
            self.error = f"not {kind} data (it starts like {what}): {fix}{kept}"
        else:
            self.error = (f"{size - at:,} bytes after the end of the {kind} data (at byte {at:,} of {size:,}) are "
                          f"not {kind} data (they start like {what}); everything before them was read{kept}")


def _is_zstd_frame(data: bytes) -> bool:
    # A zstd frame or a skippable frame (magic 0x184D2A50 to 0x184D2A5F, little-endian).
    return data.startswith(_ZSTD_MAGIC) or (len(data) >= 4 and data[1:4] == b"\x2a\x4d\x18" and data[0] & 0xF0 == 0x50)


def _looks_like(data: bytes) -> str:
    """What the first bytes of a mislabelled file look like, for the error message."""
    for magic, name in _MAGICS:
        if data.startswith(magic):
            return name
    head = data[:512]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = head[: exc.start].decode("utf-8") if exc.start > len(head) - 4 else None
    if text is not None and all(c.isprintable() or c in "\t\r\n" for c in text):
        return "plain text"
    return "binary data: " + head[:4].hex(" ")


class LineChunker:
    """Splits a ByteSource into chunks of whole lines, about ``chunk_bytes`` each.

    Every yielded chunk ends with b"\\n". A line longer than chunk_bytes is never split: its chunk
    simply grows until the line ends. After iteration, ``tail`` holds the bytes after the last
    newline (the last line of a file without a final newline, or the partial record of a truncated
    stream) and ``bytes_read`` on each chunk is taken from the source's counter.
    """

    def __init__(self, source: ByteSource, chunk_bytes: int) -> None:
        self.source = source
        self.chunk_bytes = max(1, chunk_bytes)
        self.tail = b""

    def __iter__(self) -> Iterator[bytes]:
        for group, _ in self.groups(1):
            yield group

    def groups(self, group_bytes: int) -> Iterator[tuple[bytes, list[int]]]:
        """The same chunks, consecutive ones joined until a group holds ``group_bytes``: (group, the
        end offset of each chunk in it). One copy per group, so a reader that wants the chunks'
        boundaries (the schema of each) but one large buffer pays no second copy."""
        # Pieces are kept as memoryviews so each group costs a single copy (the join).
        parts: list[memoryview] = []
        ends: list[int] = []  # where the group's complete chunks end
        size = 0
        for block in self.source.blocks():
            view = memoryview(block)
            start = 0
            while True:
                # The cut is the first newline at or after the point where the chunk is full.
                need = self.chunk_bytes - (size - (ends[-1] if ends else 0))
                pos = block.find(b"\n", start + max(need - 1, 0))
                if pos < 0:
                    break
                parts.append(view[start : pos + 1])
                size += pos + 1 - start
                start = pos + 1
                ends.append(size)
                if size >= group_bytes:
                    yield b"".join(parts), ends
                    parts, ends, size = [], [], 0
            if start < len(block):
                parts.append(view[start:])
                size += len(block) - start
        tail = b"".join(parts)
        # The leftover (less than a chunk) may still hold complete lines before the last newline.
        cut = tail.rfind(b"\n")
        if cut >= 0:
            self.tail = tail[cut + 1 :]
            if not ends or cut + 1 > ends[-1]:
                ends.append(cut + 1)
            yield tail[: cut + 1], ends
        else:
            self.tail = tail
        # Bytes that are no compressed stream (set with the source's error) are quarantined with the
        # record the error cut, so the reader keeps them.
        self.tail += self.source.rest


class FilePieces:
    """LineChunker's chunks of an uncompressed regular file (or a byte range of one), each read with one
    read of exactly its bytes: line ends are found in a mapping of the file, so no chunk is joined from
    blocks (one copy of the bytes, not two). The same chunks, ``tail`` and counters as ``LineChunker``
    over a ``ByteSource``: ``consumed`` (file bytes read), ``truncated`` (never: nothing is compressed)
    and ``error`` (an I/O error that stopped the read; the bytes not read become the tail's problem)."""

    def __init__(self, path: str, chunk_bytes: int, start: int = 0, end: int | None = None) -> None:
        self.path, self.start, self.end = path, start, end
        self.chunk_bytes = max(1, chunk_bytes)
        self.tail = b""
        self.consumed = 0
        self.truncated = False
        self.error: str | None = None

    @staticmethod
    def usable(path: str) -> bool:
        """A regular uncompressed file (a pipe or a compressed stream is read by ByteSource)."""
        try:
            return compression_of(path) is None and stat.S_ISREG(os.stat(path).st_mode)
        except OSError:
            return False

    def _read(self, f: BinaryIO, at: int, n: int) -> bytes:
        f.seek(at)
        data = f.read(n)
        self.consumed += len(data)
        if len(data) != n:
            raise OSError(f"{self.path} shrank while it was read")
        return data

    def __iter__(self) -> Iterator[bytes]:
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                end = size if self.end is None else min(self.end, size)
                pos = self.start
                if pos == 0 and end:
                    head = self._read(f, 0, min(len(BOM), end))
                    if head == BOM:
                        pos = len(BOM)
                    else:
                        self.consumed -= len(head)  # read again with its chunk
                if pos >= end:
                    return
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                try:
                    while (cut := mm.find(b"\n", pos + self.chunk_bytes - 1, end)) >= 0:
                        yield self._read(f, pos, cut + 1 - pos)
                        pos = cut + 1
                    last = mm.rfind(b"\n", pos, end)  # the leftover's complete lines, then the tail
                finally:
                    mm.close()
                if last >= 0:
                    yield self._read(f, pos, last + 1 - pos)
                    pos = last + 1
                self.tail = self._read(f, pos, end - pos)
        except OSError as exc:
            self.error = f"I/O error: {exc.strerror or exc}"


def newlines(buf: bytes | memoryview | np.ndarray) -> int:
    """The line ends in a buffer (numpy: about twice bytes.count's speed)."""
    arr = buf if isinstance(buf, np.ndarray) else np.frombuffer(buf, dtype=np.uint8)
    return int(np.count_nonzero(arr == _NEWLINE))


def prefetch(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Produce ``items`` in a background thread, up to ``depth`` ahead of the consumer.

    Reading, decompressing and counting lines of the next piece then overlap with polars parsing
    the current one (polars releases the GIL). Errors in the producer re-raise here; closing the
    consumer early stops the producer after the item it is working on.
    """
    q: queue.Queue[tuple[bool, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(entry: tuple[bool, object]) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((True, done))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put((False, exc))

    thread = threading.Thread(target=run, name="corpus-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                assert isinstance(item, BaseException)
                raise item
            if item is done:
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
