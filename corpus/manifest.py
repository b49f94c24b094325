"""The corpus manifest: `manifest.json` next to `data/`, describing the shards exactly.

Each file's entry (bytes, sha256, mtime_ns, rows) is the record its writer took when it wrote it
(corpus/integrity.py), so the manifest never vouches for a file as it happens to be on disk now.
Readers of a corpus check the files against it: `check_corpus`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq

from corpus.errors import check_path_name
from corpus.integrity import CorruptFileError, file_sha256, parquet_problem, problem, record
from corpus.writers import write_bytes_atomic

FORMAT = "corpusforge.corpus/1"
LISTS = ("shards", "rejected", "quarantine")  # manifest keys listing files; shards use "docs" for rows

__all__ = ["FORMAT", "build_manifest", "check_corpus", "file_sha256", "read_manifest", "require_intact",
           "write_manifest"]


def _entry(root: Path, path: Path, rec: dict, rows_key: str) -> dict:
    return {"path": path.relative_to(root).as_posix(), rows_key: rec.get("rows"), "bytes": rec["bytes"],
            "sha256": rec["sha256"], "mtime_ns": rec.get("mtime_ns")}


def content_hash(shards: list[dict]) -> str:
    return hashlib.sha256("".join(s["sha256"] for s in shards).encode()).hexdigest()


def build_manifest(root: Path, shards: list[tuple[Path, dict]], rejected: list[tuple[Path, dict]] = (),
                   quarantine: list[tuple[Path, dict]] = (), extra: dict | None = None) -> dict:
    """Write `root/manifest.json` from the files' write-time records ((path, record) pairs)."""
    entries = [_entry(root, p, r, "docs") for p, r in shards]
    schema = {f.name: str(f.type) for f in pq.read_schema(shards[0][0])} if shards else {}
    manifest = {
        "format": FORMAT,
        "schema": schema,
        "docs": sum(s["docs"] for s in entries),
        "bytes": sum(s["bytes"] for s in entries),
        "content_hash": content_hash(entries),
        "shards": entries,
        "rejected": [_entry(root, p, r, "rows") for p, r in rejected],
        "quarantine": [_entry(root, p, r, "rows") for p, r in quarantine],
        **(extra or {}),
    }
    write_bytes_atomic(root / "manifest.json", json.dumps(manifest, indent=2).encode())
    return manifest


def write_manifest(root: Path, shard_paths: list[Path], extra: dict | None = None) -> dict:
    """Describe Parquet files the caller has just written (hashed now: only for files it vouches for)."""
    return build_manifest(root, [(p, record(p, pq.ParquetFile(p).metadata.num_rows)) for p in shard_paths],
                          extra=extra)


def read_manifest(root: Path) -> dict:
    """root/manifest.json, checked to have the shape every reader relies on (shape_problem); a clear
    error for a folder without one or a name that is not UTF-8 (the shards' paths could not be said)."""
    root = Path(root)
    check_path_name(root)
    path = root / "manifest.json"
    if root.is_file():
        raise NotADirectoryError(f"{root} is a file, not a corpus folder (a `corpus run` output: manifest.json "
                                 "and data/)")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        from corpus.owner import MARKER, folder_hint

        if (root / MARKER).is_file() and not (root / "data").exists():  # its run stopped (or runs) before publishing
            raise FileNotFoundError(f"{root} has no manifest.json: it is a run's output folder with nothing "
                                    "published yet (its run was interrupted before publishing, or is still running): "
                                    "run it again to finish") from None
        raise FileNotFoundError(f"{root} has no manifest.json"
                                + (folder_hint(root) or ": not a corpusforge corpus folder")) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"{path}: not valid JSON ({exc})") from None
    why = shape_problem(manifest)
    if why:
        raise CorruptFileError(f"{path}: {why}: not a manifest as corpusforge writes it (was it edited?); "
                               "rerunning the pipeline on this folder writes it again")
    return manifest


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _entry_problem(where: str, entry: object, rows_key: str) -> str | None:
    if not isinstance(entry, dict):
        return f"{where} is {type(entry).__name__}, not an object"
    if not isinstance(entry.get("path"), str) or not entry["path"]:
        return f"{where} has no \"path\" (a relative file name)"
    if not _is_int(entry.get("bytes")) or entry["bytes"] < 0:
        return f"{where} ({entry['path']}) has no \"bytes\" (a whole number)"
    if not isinstance(entry.get("sha256"), str):
        return f"{where} ({entry['path']}) has no \"sha256\" (a hex digest)"
    for key in ("mtime_ns", rows_key):
        if entry.get(key) is not None and not _is_int(entry[key]):
            return f"{where} ({entry['path']}): \"{key}\" is {entry[key]!r}, not a whole number"
    return None


def shape_problem(manifest: object) -> str | None:
    """What keeps ``manifest`` (a parsed manifest.json) from having the shape every reader of a corpus relies
    on (the keys and types build_manifest writes), or None: checked once, where it is read."""
    if not isinstance(manifest, dict):
        return f"a JSON {type(manifest).__name__}, not an object"
    if not isinstance(manifest.get("shards"), list):
        return "no \"shards\" list"
    for key in ("rejected", "quarantine"):
        if not isinstance(manifest.get(key, []), list):
            return f"\"{key}\" is not a list"
    for key in LISTS:
        for i, entry in enumerate(manifest.get(key, [])):
            why = _entry_problem(f"{key}[{i}]", entry, "docs" if key == "shards" else "rows")
            if why:
                return why
    if not _is_int(manifest.get("docs")):
        return "no \"docs\" count (a whole number)"
    if not isinstance(manifest.get("content_hash"), str):
        return "no \"content_hash\""
    if not isinstance(manifest.get("schema", {}), dict):
        return "\"schema\" is not an object"
    pipeline = manifest.get("pipeline", [])
    if not isinstance(pipeline, list) or not all(isinstance(s, dict) for s in pipeline):
        return "\"pipeline\" is not a list of objects"
    return None


LEVELS = ("cheap", "hash", "full")


def check_corpus(root: Path, manifest: dict | None = None, level: str = "cheap",
                 each: Callable[[dict], None] | None = None) -> list[tuple[str, str]]:
    """(file, problem) for every file of the corpus that does not match its manifest entry; ``each(entry)``
    after each file is checked (progress).

    cheap: the shards' sizes, and a hash of those whose mtime changed since they were written.
    hash: every shard hashed. full: every file the manifest lists (shards, rejected, quarantine) hashed,
    every Parquet page decoded with its checksum verified and its rows counted, and no file in data/
    that the manifest does not list."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    root = Path(root)
    manifest = manifest if manifest is not None else read_manifest(root)
    full = level == "full"
    found: list[tuple[str, str]] = []
    shards = manifest.get("shards", [])
    if content_hash(shards) != manifest.get("content_hash"):
        found.append(("manifest.json", "content_hash does not match the shards it lists (the manifest was edited)"))
    for key in LISTS if full else ("shards",):
        for entry in manifest.get(key, []):
            path = root / entry["path"]
            why = problem(path, entry, full=level != "cheap")
            if why is None and full and path.suffix == ".parquet":
                why = parquet_problem(path)
                rows, found_rows = entry.get("docs", entry.get("rows")), pq.ParquetFile(path).metadata.num_rows
                if why is None and rows is not None and found_rows != rows:
                    why = f"{found_rows:,} rows, manifest says {rows:,}"
            if why:
                found.append((entry["path"], why))
            if each is not None:
                each(entry)
    if full:
        listed = {e["path"] for e in shards}
        found += [(p.relative_to(root).as_posix(), "not listed in manifest.json")
                  for p in sorted((root / "data").glob("*")) if p.relative_to(root).as_posix() not in listed]
        found += published_problems(root, manifest)
    return found


def published_problems(root: Path, manifest: dict) -> list[tuple[str, str]]:
    """(file, problem) for the side outputs the run's sinks published (OUT/embeddings/, OUT/tokens/), each
    checked by its sink against the records it keeps."""
    from corpus import registry
    from corpus.operators import SinkOperator

    found = []
    for stage in manifest.get("pipeline", []):
        try:
            op = registry.get(str(stage.get("stage", "")).partition("-")[2])
        except KeyError:  # an operator no longer installed, or one from a script: nothing to ask
            continue
        if issubclass(op, SinkOperator) and op.publish and (root / op.publish).is_dir():
            found += [(f"{op.publish}/{rel}", why) for rel, why in op.published_problems(root / op.publish)]
    return found


def require_intact(root: Path, manifest: dict | None = None, level: str = "cheap") -> dict:
    """The manifest, after checking the corpus against it; CorruptFileError naming the first bad file."""
    manifest = manifest if manifest is not None else read_manifest(root)
    bad = check_corpus(root, manifest, level)
    if bad:
        path, why = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise CorruptFileError(f"{Path(root) / path}: {why}{more}; `corpus verify {root}` lists every problem, "
                               "and rerunning the pipeline on this folder redoes the damaged work")
    return manifest
