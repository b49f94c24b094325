"""`corpus export`: a prepared corpus in the formats people train from elsewhere.

* ``jsonl``: one ``<shard>.jsonl[.gz|.zst]`` per shard, written atomically;
* ``parquet``: one ``<shard>.parquet`` (zstd) per shard, written atomically;
* ``hf``: a Hugging Face ``datasets`` folder (``datasets.load_from_disk(DEST)`` opens it), one Arrow
  file per shard, written into a temporary folder beside DEST and renamed into place when complete.

Every shard is checked against ``manifest.json`` first (sizes, the cheap check) and hashed as it is
read, so the bytes exported are the bytes checked; a damaged shard stops the export naming the file.
``columns`` picks the columns (in that order); unknown names are an error listing the ones there are.
DEST is a folder of the export's own (``check_dest``): outside the corpus folder, and new, empty or holding
only an earlier export: every export writes ``.corpusforge-export.json`` (the corpus content_hash, the format
and the files it writes), and only the files that marker lists are replaced (hf: the folder whole; jsonl and
parquet: the listed files are deleted first). A folder without the marker (a ``save_to_disk`` folder of the
user's own, say) is never written into unless it is empty.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from corpus.integrity import read_verified
from corpus.manifest import read_manifest, require_intact
from corpus.owner import require_folder
from corpus.progress import Progress, entries_bar
from corpus.schema import CORE_COLUMNS, empty_docs
from corpus.writers import write_bytes_atomic, write_jsonl, write_parquet

FORMATS = ("jsonl", "parquet", "hf")
COMPRESSIONS = ("", ".gz", ".zst")
EXPORT_MARKER = ".corpusforge-export.json"


class ExportError(ValueError):
    """The export cannot be made as asked (unknown column, destination in use)."""


@dataclass
class Exported:
    dest: Path
    format: str
    docs: int
    files: int
    columns: list[str]


def shard_frames(corpus: Path, columns: list[str] | None = None,
                 manifest: dict | None = None) -> Iterator[tuple[str, pl.DataFrame]]:
    """(shard name, frame) for every shard of a corpus folder, each hashed against the manifest as read.
    The corpus (sizes) and the columns are checked at the call, before a frame is asked for: a damaged
    corpus or a wrong column stops before anything is written or shown."""
    corpus = Path(corpus)
    manifest = require_intact(corpus, manifest)
    available = list(manifest.get("schema") or CORE_COLUMNS)  # an empty corpus: the document columns
    if columns is not None:
        unknown = [c for c in columns if c not in available]
        if unknown or not columns:
            raise ExportError(f"{corpus}: no column(s) {unknown} in this corpus; it has {', '.join(available)}")
        twice = sorted({c for c in columns if columns.count(c) > 1})
        if twice:
            raise ExportError(f"column(s) {', '.join(twice)} named more than once in the columns to export")
    return _frames(corpus, manifest["shards"], columns)


def _frames(corpus: Path, shards: list[dict], columns: list[str] | None) -> Iterator[tuple[str, pl.DataFrame]]:
    for shard in shards:
        data = read_verified(corpus / shard["path"], shard)
        yield Path(shard["path"]).name.removesuffix(".parquet"), pl.read_parquet(io.BytesIO(data), columns=columns)


def export(corpus: Path, dest: Path, fmt: str = "jsonl", columns: list[str] | None = None,
           compression: str = ".zst", progress: Progress | None = None) -> Exported:
    """Write the corpus at ``corpus`` to ``dest`` in ``fmt`` (see the module docstring). ``progress``: a
    bar advanced as each shard is written (`corpus export`), closed at the end."""
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if compression not in COMPRESSIONS:
        raise ExportError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    dest = Path(dest)
    manifest = read_manifest(Path(corpus))
    earlier = check_dest(Path(corpus), dest, replace=True)
    frames = shard_frames(corpus, columns, manifest)
    with entries_bar(progress, f"export {fmt}", manifest["shards"], unit="MB/s of Parquet") as done:
        if fmt == "hf":
            return _export_hf(dest, frames, manifest, done, columns)
        suffix = ".parquet" if fmt == "parquet" else f".jsonl{compression}"
        own = sorted(Path(s["path"]).name.removesuffix(".parquet") + suffix for s in manifest["shards"])
        # The earlier export's files go first, so that a folder stopped halfway holds only files its marker lists.
        for name in earlier:
            (dest / name).unlink(missing_ok=True)
        dest.mkdir(parents=True, exist_ok=True)  # an empty corpus exports an empty folder (with its marker)
        _write_marker(dest, manifest, fmt, own)
        docs = files = 0
        names: list[str] = [] if manifest["shards"] else columns or list(CORE_COLUMNS)
        for shard, (name, df) in zip(manifest["shards"], frames, strict=True):
            if fmt == "jsonl":
                write_jsonl(df, dest / f"{name}.jsonl{compression}")
            else:
                write_parquet(df, dest / f"{name}.parquet")
            docs, files, names = docs + df.height, files + 1, df.columns
            done(shard)
        return Exported(dest, fmt, docs, files, names)


def check_dest(corpus: Path, dest: Path, replace: bool = False) -> list[str]:
    """An export writes only into a folder of its own: never into the corpus folder (its shards would be
    overwritten, or its manifest no longer list its data/), and never over files it did not write. With
    ``replace`` (`corpus export`), returns the files of an earlier export in ``dest`` (those its marker
    lists), which the export may replace; a folder without the marker, or any folder without ``replace``,
    must be new or empty."""
    if dest.resolve().is_relative_to(corpus.resolve()):
        raise ExportError(f"{dest} lies inside the corpus folder {corpus}: export into a folder outside it")
    require_folder(dest, ExportError)
    if not dest.exists():
        return []
    listed = _marker_files(dest) if replace else None
    # .tmp-* files are an interrupted atomic write of one of the listed files
    foreign = sorted(p.name for p in dest.iterdir() if listed is None or not (
        p.name == EXPORT_MARKER or p.name in listed or (p.name.startswith(".tmp-") and p.is_file())))
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        if not replace:
            raise ExportError(f"{dest} holds files this export would not write ({foreign[0]}{more}): export into "
                              f"a new or empty folder")
        what = "" if listed is not None else ", and it is no earlier corpus export"
        raise ExportError(f"{dest} holds files this export would not replace ({foreign[0]}{more}){what}: export "
                          f"into a new or empty folder")
    return sorted((listed or set()) | {p.name for p in dest.iterdir() if p.name.startswith(".tmp-") and p.is_file()})


def _marker_files(dest: Path) -> set[str] | None:
    """The file names an earlier export's marker in ``dest`` lists (None without a readable marker)."""
    try:
        files = json.loads((dest / EXPORT_MARKER).read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(files, list):
        return None
    # plain names only: a listed "../x" or "a/b" must not let an export delete outside its folder
    return {f for f in files if isinstance(f, str) and f and "/" not in f and "\\" not in f and f not in (".", "..")}


def _write_marker(folder: Path, manifest: dict, fmt: str, files: list[str]) -> None:
    write_bytes_atomic(folder / EXPORT_MARKER, json.dumps({
        "note": "written by corpus export: the files listed are replaced by the next export into this folder",
        "content_hash": manifest.get("content_hash"), "format": fmt, "files": sorted(files)}, indent=1).encode())


def _export_hf(dest: Path, frames: Iterator[tuple[str, pl.DataFrame]], manifest: dict,
               done: Callable[[dict], None], columns: list[str] | None) -> Exported:
    try:
        import datasets
        import pyarrow as pa
    except ImportError as exc:
        raise ExportError("--format hf needs the 'export' extra (pip install 'corpusforge[export]')") from exc
    datasets.disable_progress_bars()
    work = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True)
    try:
        parts, docs, names = [], 0, []
        for i, (shard, (_, df)) in enumerate(zip(manifest["shards"], frames, strict=True)):
            # Each shard becomes an Arrow stream file that datasets memory-maps: the corpus is never
            # all in memory at once.
            path = work / "arrow" / f"{i:05d}.arrow"
            path.parent.mkdir(exist_ok=True)
            table = df.to_arrow()
            with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            parts.append(datasets.Dataset.from_file(str(path)))
            docs, names = docs + df.height, df.columns
            done(shard)
        if not parts:  # an empty corpus: an empty dataset with the document columns' features
            names = columns or list(CORE_COLUMNS)
            parts = [datasets.Dataset(empty_docs().select(names).to_arrow())]
        ds = datasets.concatenate_datasets(parts)
        out = work / "dataset"
        ds.save_to_disk(str(out), num_shards=max(1, len(parts)))
        del ds, parts
        _write_marker(out, manifest, "hf", [p.name for p in out.iterdir()])
        old = None
        if dest.exists():  # empty, or holding only an earlier export's files (check_dest): replaced whole
            old = work / "old"
            os.replace(dest, old)
        try:
            os.replace(out, dest)
        except BaseException:
            if old is not None:
                os.replace(old, dest)
            raise
        return Exported(dest, "hf", docs, sum(1 for p in dest.glob("*.arrow")), names)
    finally:
        shutil.rmtree(work, ignore_errors=True)
