"""Expand configured inputs into read tasks: one per file, in a stable order.

Everything that would make an input unreadable as a whole (missing path, empty glob, unknown
format, unreadable file, bad option) is raised here as InputError, before any work starts.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from corpus.readers.base import FORMATS, InputError, InputSpec, ReadTask
from corpus.readers.duckdb import MEMORY, PREFIX, query_label
from corpus.readers.streams import strip_compression

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
_GLOB_CHARS = frozenset("*?[")


def infer_format(path: str) -> str | None:
    name = strip_compression(os.path.basename(path)).lower()
    for ext, fmt in EXTENSIONS.items():
        if name.endswith(ext):
            return fmt
    return None


def plan_tasks(specs: list[InputSpec], base_dir: Path | None = None) -> list[ReadTask]:
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    seen: set[str] = set()
    tasks: list[ReadTask] = []
    for spec in specs:
        if not spec.source:
            raise InputError("an input has no source name")
        if spec.source in seen:
            raise InputError(f"input {spec.source!r} is defined more than once (source names must be unique)")
        seen.add(spec.source)
        for path, rel, fmt in _expand(spec, base):
            tasks.append(ReadTask(spec=spec, path=path, rel_path=rel, format=fmt, index=len(tasks)))
    return tasks


def _expand(spec: InputSpec, base: Path) -> list[tuple[str, str, str]]:
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
    if spec.format == "duckdb":
        return [_duckdb(spec, base, where)]
    if spec.format == "csv" and len(spec.csv_delimiter) != 1:
        raise InputError(f"{where}: csv_delimiter must be one character, got {spec.csv_delimiter!r}")
    if not (isinstance(spec.csv_multiline, bool) or spec.csv_multiline == "auto"):
        raise InputError(f"{where}: csv_multiline must be true, false or 'auto', got {spec.csv_multiline!r}")
    if not spec.path:
        raise InputError(f"{where}: no path given")
    patterns = [spec.path] if isinstance(spec.path, str | os.PathLike) else list(spec.path)
    found: dict[str, Path] = {}  # absolute file -> root it was found under
    roots: list[Path] = []
    for pattern in patterns:
        root, files = _match(str(pattern), base, where)
        roots.append(root)
        for f in files:
            found.setdefault(str(f), root)
    # A list of paths shares one root (their common folder) so relative paths stay unique.
    root = Path(os.path.commonpath([str(r) for r in roots])) if len(roots) > 1 else roots[0]
    out = []
    for abs_path in found:
        rel = Path(abs_path).relative_to(root).as_posix()
        fmt = spec.format or infer_format(abs_path)
        if fmt is None:
            raise InputError(f"{where}: cannot infer the format of {abs_path} from its extension; set `format:`")
        if fmt == "duckdb":
            raise InputError(f"{where}: format duckdb takes a query, not files")
        _check_readable(abs_path, where)
        out.append((abs_path, rel, fmt))
    out.sort(key=lambda t: t[1])
    return out


def _match(pattern: str, base: Path, where: str) -> tuple[Path, list[Path]]:
    """(root, files) for one path, folder or glob."""
    given = Path(os.path.expanduser(pattern))
    p = given if given.is_absolute() else base / given
    # Only the configured pattern can hold wildcards; the base folder's name is taken literally.
    if any(c in _GLOB_CHARS for c in str(given)):
        parts = given.parts
        i = next(i for i, part in enumerate(parts) if any(c in _GLOB_CHARS for c in part))
        root = (given if given.is_absolute() else base / given).parents[len(parts) - i - 1]
        hits = sorted(glob.glob(os.path.join(glob.escape(str(root)), *parts[i:]), recursive=True))
        files = [Path(h) for h in hits if os.path.isfile(h)]
        if not files:
            raise InputError(f"{where}: glob {pattern!r} matches no files (under {root})")
        return Path(os.path.abspath(root)), [Path(os.path.abspath(f)) for f in files]
    p = Path(os.path.abspath(p))
    if p.is_dir():
        files = sorted(f for f in _walk(p))
        if not files:
            raise InputError(f"{where}: folder {p} holds no readable files")
        return p, files
    if p.exists():
        if not p.is_file():
            raise InputError(f"{where}: {p} is not a regular file")
        return p.parent, [p]
    raise InputError(f"{where}: path {pattern!r} does not exist (looked for {p})")


def _walk(folder: Path) -> list[Path]:
    # Hidden files and markers like _SUCCESS are not data; neither are hidden folders.
    # Symlinked sub-folders are not followed (a link cycle would never end).
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        out.extend(Path(dirpath) / f for f in filenames if not f.startswith((".", "_")))
    return out


def _check_readable(path: str, where: str) -> None:
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
        _check_readable(str(p), where)
        db = str(p)
    return PREFIX + db, query_label(spec.query), "duckdb"
