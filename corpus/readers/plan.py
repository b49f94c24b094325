"""Expand configured inputs into read tasks: one per file, in a stable order; split big files into parts.

Everything that would make an input unreadable as a whole (missing path, empty glob, unknown
format, a compression that is not read, unreadable file or broken link, bad option) is raised here as
InputError, before any work starts.

A folder and a glob find files by the same rules (``_find``): symlinked folders below the folder or the
glob's literal start are not followed (a link back up would loop: ``d/sub/loop -> ..`` read every file
again 40 levels deep), and files and folders whose name starts with ``.`` or ``_`` (hidden files,
markers like ``_SUCCESS``) are skipped unless a glob names them by a part that starts so itself
(``_parts/*.jsonl``). A file given by its own path is always read; a link to a file is read.

A big file is read in parts, so that several workers share it (``split_tasks``): uncompressed JSONL and
text read by line as byte ranges of whole lines, Parquet as runs of row groups. Each part numbers its
lines (rows) from the file's own count, so ids, row_ids and quarantine line numbers are those of the file
read whole: a line part's first line number is 1 + the newlines of the parts before it, counted first
(``number_lines``, a vectorised count over the mapped file); a Parquet part's comes from the footer. A part
starts where the reader's own pieces would start reading the file whole (the first line end after each
piece's size), so every record is parsed in the same piece as ever, with the same rows, ids and meta.
The parts of a file are fixed by the file and ``split_bytes`` alone, never by the worker count, so any
executor and any number of workers write the same shards. Kept whole, and said so: compressed streams
(a stream cannot be entered mid-way) and CSV (a quoted value may span lines, so where a record starts
depends on every quote before it; and ``csv_multiline: auto`` decides an unclosed quote by reading the
lines after it).
"""

from __future__ import annotations

import bisect
import dataclasses
import mmap
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from corpus.errors import check_path_name
from corpus.owner import MANAGED
from corpus.owner import MARKER as OUTPUT_MARKER
from corpus.readers.base import FORMATS, InputError, Inputs, InputSpec, ReadTask, as_specs, is_path_named
from corpus.readers.duckdb import MEMORY, PREFIX, query_label
from corpus.readers.jsonl import jsonl_piece_bytes
from corpus.readers.streams import BOM, UNREAD_COMPRESSIONS, compression_of, newlines, strip_compression

EXTENSIONS = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "text",
    ".md": "text",
}
TEXT_MODES = ("file", "line")
# Input files over this many bytes are read in parts of about this size, one unit of work each.
SPLIT_BYTES = 64 << 20
_GLOB_CHARS = frozenset("*?[")


def is_glob(text: str) -> bool:
    """Whether a path as given is a glob pattern (a character of ``*?[`` in it)."""
    return any(c in _GLOB_CHARS for c in str(text))


_COUNT_BLOCK = 4 << 20  # bytes compared at a time when counting line ends


def infer_format(path: str) -> str | None:
    name = strip_compression(os.path.basename(path)).lower()
    for ext, fmt in EXTENSIONS.items():
        if name.endswith(ext):
            return fmt
    return None


def _twice(first: InputSpec, spec: InputSpec, seen: dict[str, InputSpec]) -> str:
    """The error for two inputs of one source name; for plain paths (named after their file or folder name
    by as_specs), which paths they are and a unique name to give one."""
    says = f"input {spec.source!r} is defined more than once (source names must be unique)"
    if first.path == spec.path:
        return f"{says}: {spec.path!r} is given twice"
    if not (is_path_named(first) and is_path_named(spec)):
        return says
    taken = set(seen)
    # the nearest folder without glob characters, and the file's stem unless a glob: d7/f0.jsonl is d7-f0
    path = Path(spec.path)
    parts = [p for p in path.parent.parts if not is_glob(p) and p not in ("/", ".", "..")]
    stem = "" if is_glob(path.name) else path.name.split(".")[0]
    stem = "-".join(p for p in (parts[-1] if parts else "", stem) if p)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-") or "input"
    suggest, i = name, 1
    while suggest in taken:
        i += 1
        suggest = f"{name}-{i}"
    return (f"inputs {first.path!r} and {spec.path!r} would all be the source {spec.source!r}: a plain path is "
            f"named after its file or folder name, and source names must be unique; name each one with "
            f"InputSpec(source=..., path=...), e.g. InputSpec(source={suggest!r}, path={spec.path!r})")


def plan_tasks(specs: Inputs, base_dir: Path | None = None, output: Path | None = None) -> list[ReadTask]:
    """output: the folder the run writes, which no input may read (its files would be input next time)."""
    specs = as_specs(specs)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    output = Path(os.path.abspath(output)) if output is not None else None
    if output is not None:
        check_path_name(output, "output folder", InputError)
    seen: dict[str, InputSpec] = {}
    read_by: dict[str, tuple[str, str]] = {}  # the file itself (links resolved) -> (input, path) that reads it
    tasks: list[ReadTask] = []
    for spec in specs:
        if not spec.source:
            raise InputError("an input has no source name")
        if spec.source in seen:
            raise InputError(_twice(seen[spec.source], spec, seen))
        seen[spec.source] = spec
        for path, rel, fmt in _expand(spec, base, output):
            real = os.path.realpath(path) if os.path.exists(path) else path  # a link reads its target
            first, first_path = read_by.setdefault(real, (spec.source, path))
            if first != spec.source:  # every record of it would come in twice
                also = f" (as {first_path})" if first_path != path else ""
                raise InputError(f"{path} is read by inputs {first!r}{also} and {spec.source!r}: a file belongs to "
                                 f"one input (to weigh a source up or down, use the sample operator)")
            if first_path != path:
                continue  # one input naming a file twice (through a link) reads it once
            tasks.append(ReadTask(spec=spec, path=path, rel_path=rel, format=fmt, index=len(tasks)))
    return tasks


def _expand(spec: InputSpec, base: Path, output: Path | None = None) -> list[tuple[str, str, str]]:
    where = f"input {spec.source!r}"
    if spec.format is not None and spec.format not in FORMATS:
        raise InputError(f"{where}: unknown format {spec.format!r} (expected one of {', '.join(FORMATS)})")
    if spec.text_mode not in TEXT_MODES:
        raise InputError(f"{where}: invalid text_mode {spec.text_mode!r} (expected 'file' or 'line')")
    if spec.max_doc_bytes <= 0:
        raise InputError(f"{where}: max_doc_bytes must be positive, got {spec.max_doc_bytes}")
    if not 0 <= spec.max_quarantine_fraction <= 1:
        raise InputError(f"{where}: max_quarantine_fraction must lie between 0 and 1, "
                         f"got {spec.max_quarantine_fraction}")
    _check_rename(spec, where)
    if spec.format == "duckdb":
        return [_duckdb(spec, base, where)]
    if spec.format == "csv" and spec.csv_delimiter is not None and len(spec.csv_delimiter) != 1:
        raise InputError(f"{where}: csv_delimiter must be one character, got {spec.csv_delimiter!r}")
    if not spec.path:
        raise InputError(f"{where}: no path given")
    patterns = [spec.path] if isinstance(spec.path, str | os.PathLike) else list(spec.path)
    found: dict[str, Path] = {}  # absolute file -> root it was found under
    roots: list[Path] = []
    for pattern in patterns:
        root, files, whole = _match(str(pattern), base, where)
        if output is not None:
            _refuse_output(root, files, whole, output, where)
        _refuse_work_files(files, where)
        roots.append(root)
        for f in files:
            found.setdefault(str(f), root)
    # A list of paths shares one root (their common folder) so relative paths stay unique.
    root = Path(os.path.commonpath([str(r) for r in roots])) if len(roots) > 1 else roots[0]
    out = []
    for abs_path in found:
        check_path_name(abs_path, where, InputError)  # else the run fails reading it, or the catalog recording it
        rel = Path(abs_path).relative_to(root).as_posix()
        _check_compression(abs_path, where)
        fmt = spec.format or infer_format(abs_path)
        if fmt is None:
            raise InputError(f"{where}: cannot infer the format of {abs_path} from its extension; set `format:`")
        if fmt == "duckdb":
            raise InputError(f"{where}: format duckdb takes a query, not files")
        _check_readable(abs_path, where)
        out.append((abs_path, rel, fmt))
    out.sort(key=lambda t: t[1])
    return out


def _refuse_output(root: Path, files: list[Path], whole: bool, output: Path, where: str) -> None:
    """No input may read the run's output folder: a file found in it, or a folder (or ``**`` glob) read whole
    (``whole``) that holds it, would make the run's own files input (from its next run on)."""
    inside = [f for f in files if f.is_relative_to(output)]
    if inside:
        raise InputError(f"{where}: {inside[0]} lies inside the output folder {output}, whose files are the run's "
                         f"own; choose an output folder that holds no input")
    if whole and output.is_relative_to(root):
        raise InputError(f"{where}: it reads {root}, which holds the output folder {output}: the output would "
                         f"become input; choose an output folder outside it, or a narrower path or glob")


def output_read(pattern: str, base: Path, output: Path, inside: bool = True) -> str | None:
    """Why the input ``pattern`` (a path, folder or glob, relative to ``base``) would read the output folder
    ``output``, by the readers' own rule (a file it matches lies in ``output``, or it reads a folder holding
    ``output`` whole), or None, also when it matches nothing (the caller says that). Paths are compared with
    symlinks resolved. ``inside=False``: only a file it matches, not a folder it reads whole."""
    try:
        root, files, whole = _match(pattern, base, "input")
    except InputError:
        return None
    real = Path(os.path.realpath(root))
    found = [Path(os.path.realpath(f)) for f in files]
    try:
        _refuse_output(real, found, whole and inside, Path(os.path.realpath(output)), "input")
    except InputError as e:
        return str(e).removeprefix("input: ")
    return None


def _refuse_work_files(files: list[Path], where: str) -> None:
    """Of a run's own files in its output folder, only its published documents (``data/``) are input: its
    work shards, rejected and quarantine files would bring documents twice, or records that are not
    documents, and its catalog and reports are not records. Other folders there are the user's."""
    marked: dict[Path, Path | None] = {}  # folder -> the output folder holding it (None: none)

    def output_of(d: Path) -> Path | None:
        if d not in marked:
            marked[d] = d if (d / OUTPUT_MARKER).is_file() else (None if d.parent == d else output_of(d.parent))
        return marked[d]

    for f in files:
        out = output_of(f.parent)
        if out is None:
            continue
        rel = f.relative_to(out).parts  # the run's own files: at its top, or in a folder it manages
        if rel[0] != "data" and (len(rel) == 1 or rel[0] in MANAGED):
            raise InputError(f"{where}: {f} lies in the corpusforge output folder {out} but is not one of its "
                             f"documents; to read them, give path: {out / 'data'} (with id_key: id to keep their ids)")


def _check_rename(spec: InputSpec, where: str) -> None:
    """meta_rename: input field -> its name in meta; one name per field, never the text or id field."""
    rename = spec.meta_rename
    if not isinstance(rename, dict) or not all(isinstance(k, str) and isinstance(v, str) and k and v
                                                for k, v in rename.items()):
        raise InputError(f"{where}: meta_rename must map field names to new names (strings), got {rename!r}")
    named = [k for k in rename if k in (spec.text_key, spec.id_key)]
    if named:
        raise InputError(f"{where}: meta_rename renames {named[0]!r}, the text or id field, which is not in meta")
    targets = list(rename.values())
    twice = sorted({t for t in targets if targets.count(t) > 1})
    if twice:
        raise InputError(f"{where}: meta_rename gives two fields the name {twice[0]!r}")
    if spec.meta_keys is not None:
        unused = sorted(set(rename) - set(spec.meta_keys))
        if unused:
            raise InputError(f"{where}: meta_rename renames {unused[0]!r}, which meta_keys leaves out of meta")


def _match(pattern: str, base: Path, where: str) -> tuple[Path, list[Path], bool]:
    """(root, files, whether everything below root is read: a folder or a ``**`` glob) for one path, folder or
    glob."""
    given = Path(os.path.expanduser(pattern))
    p = given if given.is_absolute() else base / given
    # Only the configured pattern can hold wildcards; the base folder's name is taken literally.
    if is_glob(given):
        parts = given.parts
        i = next(i for i, part in enumerate(parts) if is_glob(part))
        root = (given if given.is_absolute() else base / given).parents[len(parts) - i - 1]
        files = _find(Path(os.path.abspath(root)), parts[i:])
        if not files:
            raise InputError(f"{where}: glob {pattern!r} matches no files (under {root})")
        return Path(os.path.abspath(root)), [Path(os.path.abspath(f)) for f in files], "**" in parts[i:]
    p = Path(os.path.abspath(p))
    if p.is_dir():
        files = _find(p, ("**", "*"))
        if not files:
            raise InputError(f"{where}: folder {p} holds no readable files")
        return p, files, True
    if p.exists():
        if not p.is_file():
            raise InputError(f"{where}: {p} is not a regular file")
        return p.parent, [p], False
    if p.is_symlink():
        raise _broken_link(p, where)
    raise InputError(f"{where}: path {pattern!r} does not exist (looked for {p})")


def _find(root: Path, pattern: Sequence[str]) -> list[Path]:
    """The files below ``root`` whose relative path matches ``pattern`` (glob parts; ``**``: any number of
    folders), by the module's rules: symlinked folders not followed, names starting with ``.`` or ``_``
    skipped unless a pattern part starting so matches them. A folder read whole is ``("**", "*")``."""
    pattern = tuple(pattern)
    named = [part for part in pattern if part.startswith((".", "_"))]

    def skipped(name: str) -> bool:
        return name.startswith((".", "_")) and not any(fnmatchcase(name, part) for part in named)

    out = []
    for dirpath, dirnames, filenames in os.walk(root):  # followlinks=False: a symlinked folder is a leaf
        rel = Path(dirpath).relative_to(root).parts
        dirnames[:] = [d for d in dirnames if not skipped(d) and _may_match(pattern, (*rel, d))]
        out.extend(Path(dirpath) / f for f in filenames
                   if not skipped(f) and _matches(pattern, (*rel, f)))
    return sorted(out)


def _matches(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_matches(pattern[1:], parts[k:]) for k in range(len(parts) + 1))
    return bool(parts) and fnmatchcase(parts[0], pattern[0]) and _matches(pattern[1:], parts[1:])


def _may_match(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    """Whether a folder's relative path can start a match (else the walk does not enter it)."""
    if not parts:
        return True
    if not pattern:
        return False
    if pattern[0] == "**":
        return _may_match(pattern[1:], parts) or _may_match(pattern, parts[1:])
    return fnmatchcase(parts[0], pattern[0]) and _may_match(pattern[1:], parts[1:])


def _check_compression(path: str, where: str) -> None:
    kind = compression_of(path, UNREAD_COMPRESSIONS)
    if kind is not None:
        suffix = next(s for s, k in UNREAD_COMPRESSIONS.items() if k == kind)
        raise InputError(f"{where}: {path} is {kind}-compressed ({suffix}), which is not read (only .gz and "
                         f".zst are decompressed): decompress it first, or recompress it with gzip or zstd")


def _broken_link(path: str | Path, where: str) -> InputError:
    return InputError(f"{where}: {path} is a broken link (to {os.readlink(path)}, which does not exist)")


def _check_readable(path: str, where: str) -> None:
    if os.path.islink(path) and not os.path.exists(path):  # os.access says only "no"
        raise _broken_link(path, where)
    if not os.access(path, os.R_OK):
        raise InputError(f"{where}: {path} is not readable (permission denied)")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise InputError(f"{where}: cannot open {path}: {exc.strerror or exc}") from None


def _duckdb(spec: InputSpec, base: Path, where: str) -> tuple[str, str, str]:
    if not spec.query or not spec.query.strip():
        raise InputError(f"{where}: format duckdb needs a `query`")
    db = MEMORY
    if spec.database and spec.database != MEMORY:
        p = Path(os.path.expanduser(spec.database))
        p = Path(os.path.abspath(p if p.is_absolute() else base / p))
        if not p.exists():
            raise InputError(f"{where}: DuckDB database {p} does not exist")
        if p.is_dir():
            raise InputError(f"{where}: DuckDB database {p} is a directory, expected a file")
        check_path_name(p, where, InputError)
        _check_readable(str(p), where)
        db = str(p)
    return PREFIX + db, query_label(spec.query), "duckdb"


# ---------------------------------------------------------------- big files in parts


def split_tasks(tasks: Sequence[ReadTask], split_bytes: int, chunk_bytes: int) -> tuple[list[ReadTask], list[str]]:
    """(units, notes): each task, or the parts of a file over ``split_bytes`` (0: never split), in file
    order; notes say which big files stay whole, and why. Line parts are not numbered yet (number_lines).
    ``chunk_bytes``: the ingest's read size, which sets the reader's pieces that parts must start on."""
    units: list[ReadTask] = []
    notes: list[str] = []
    for t in tasks:
        parts: list[ReadTask] = []
        size = os.path.getsize(t.path) if split_bytes and not t.path.startswith(PREFIX) else 0
        if size > split_bytes > 0:
            line_format = t.format == "jsonl" or (t.format == "text" and t.spec.text_mode == "line")
            if compression_of(t.path) and line_format:
                notes.append(f"{t.rel_path}: compressed, read as one unit (a compressed stream cannot be "
                             "entered mid-way; split it into several files to share it among workers)")
            elif t.format == "csv":
                notes.append(f"{t.rel_path}: CSV, read as one unit (a quoted value may span lines, so a "
                             "record's start depends on every quote before it)")
            elif line_format:
                piece = jsonl_piece_bytes(chunk_bytes) if t.format == "jsonl" else max(1, chunk_bytes)
                parts = _line_parts(t, _line_cuts(t.path, piece, split_bytes))
            elif t.format == "parquet":
                parts = _row_group_parts(t, split_bytes)
        units += parts if len(parts) > 1 else [t]
    return units, notes


def largest_first(units: Sequence[ReadTask]) -> list[ReadTask]:
    """The units in the order to hand them to workers: largest first (ties in file order). A pool gives
    each unit to the next free worker, so the small ones left for the end even out the workers' loads;
    in file order, a file cut into parts of 7 and 8 pieces alternately gave one of two workers 4 pieces
    more than the other, and it ran alone at the end (docs/benchmarks.md)."""
    parts = Counter(u.index for u in units)
    whole: dict[str, int] = {}  # one stat per file, however many parts
    for u in units:
        if u.path not in whole:
            try:
                whole[u.path] = 0 if u.path.startswith(PREFIX) else os.path.getsize(u.path)
            except OSError:
                whole[u.path] = 0

    def size(u: ReadTask) -> float:
        if u.part is None or not whole[u.path]:
            return float(whole[u.path])
        if u.format == "parquet":  # runs of row groups of about split_bytes: their share of the file
            return whole[u.path] / parts[u.index]
        return float((whole[u.path] if u.end is None else u.end) - u.start)

    return sorted(units, key=lambda u: -size(u))


def _line_cuts(path: str, piece: int, split_bytes: int) -> list[int]:
    """Where the parts of a line file start: the reader's piece boundaries (the first line end at or
    after each piece's size, LineChunker's rule). The file is cut into ceil(size / split_bytes) parts
    of about equal size, each at the boundary nearest its share: equal parts keep every worker busy to
    the end (a short last part would leave one idle while another reads a full one). Only the bytes
    around each boundary are read."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        pos = first = len(BOM) if mm[: len(BOM)] == BOM else 0
        bounds = []
        while (cut := mm.find(b"\n", pos + piece - 1)) >= 0 and cut + 1 < size:
            pos = cut + 1
            bounds.append(pos)
    finally:
        mm.close()
    n = -(-(size - first) // split_bytes)
    cuts = [0]
    for k in range(1, n):
        target = first + k * (size - first) / n
        i = bisect.bisect_left(bounds, target)
        near = min(bounds[max(0, i - 1):i + 1], key=lambda b: abs(b - target), default=None)
        if near is not None and near > cuts[-1]:
            cuts.append(near)
    return cuts


def _line_parts(task: ReadTask, cuts: list[int]) -> list[ReadTask]:
    ends: list[int | None] = [*cuts[1:], None]
    return [dataclasses.replace(task, part=i, start=a, end=b, first_row=0)
            for i, (a, b) in enumerate(zip(cuts, ends, strict=True))]


def _row_group_parts(task: ReadTask, split_bytes: int) -> list[ReadTask]:
    """Runs of row groups of about ``split_bytes`` on disk; none when the footer cannot say (the reader
    then quarantines the whole file, as ever)."""
    try:
        md = pq.ParquetFile(task.path).metadata
    except (OSError, pa.ArrowException):
        return []
    parts: list[ReadTask] = []
    start = row = size = 0
    first = 1
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        size += sum(rg.column(c).total_compressed_size for c in range(rg.num_columns))
        row += rg.num_rows
        if size >= split_bytes or g == md.num_row_groups - 1:
            end = None if g == md.num_row_groups - 1 else g + 1
            parts.append(dataclasses.replace(task, part=len(parts), start=start, end=end, first_row=first))
            start, first, size = g + 1, row + 1, 0
    return parts


@dataclass(frozen=True)
class CountJob:
    """Count the line ends in one byte range of a file (a part's lines)."""

    path: str
    start: int
    end: int | None


def count_lines(job: CountJob) -> int:
    """The line ends in the job's byte range: numpy over the mapped file, a few MB at a time (no copy of
    the bytes; about 4 GB/s, so counting in the driver costs less than a pool's round trip)."""
    with open(job.path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        end = size if job.end is None else min(job.end, size)
        if end <= job.start:
            return 0
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    data = np.frombuffer(mm, dtype=np.uint8)
    try:
        return sum(newlines(data[s:min(end, s + _COUNT_BLOCK)]) for s in range(job.start, end, _COUNT_BLOCK))
    finally:
        del data  # a live view would keep the mapping from closing
        mm.close()


def number_lines(units: Sequence[ReadTask], known: dict[str, int], done: set[str]
                 ) -> tuple[list[ReadTask], dict[str, int]]:
    """Give each line part its first line number: 1 + the line ends of the parts before it in its file.
    ``known``: parts' line counts already recorded (finished parts' markers); ``done``: the units already
    read. The other counts are counted here, only those a later unread part needs (a part counts its own
    as it is read): in the driver, as the pool's workers start, since a pass of the pool costs more than
    the count. Returns the numbered units and the counts known."""
    line_parts = [u for u in units if u.part is not None and u.format != "parquet"]
    last = {u.index: u.part for u in line_parts}
    # Only the parts before a file's last unread part matter (a finished part's count is in its marker).
    need = {u.index: u.part for u in line_parts if u.unit not in done}
    todo = [u for u in line_parts if u.unit not in known and u.part < need.get(u.index, -1)]
    counts = dict(known)
    counts.update({u.unit: count_lines(CountJob(u.path, u.start, u.end)) for u in todo})
    out, before = [], dict.fromkeys(last, 0)
    for u in units:
        if u.part is not None and u.format != "parquet":
            u = dataclasses.replace(u, first_row=1 + before[u.index])
            before[u.index] += counts.get(u.unit, 0)
        out.append(u)
    return out, counts
