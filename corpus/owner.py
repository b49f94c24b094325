"""Ownership of an output folder: a run writes only into a folder that is empty (or absent) or that a
corpusforge run marked as its own (`.corpusforge`, written at first use), and deletes only files named
by its own patterns (shards, markers, stage folders) inside the folders it manages. Anything else found
there is refused before any work, with the foreign paths listed: a run never deletes what it did not write.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

from corpus.writers import write_bytes_atomic

MARKER = ".corpusforge"
FORMAT = "corpusforge.output/1"

NAME = r"[A-Za-z0-9_.-]+"  # a name in the folders a run writes (stage, source): operators.name_problems
_UNIT = r"\d{5,}(-p\d{4,})?"  # a unit of reading: an input file's number, with -p<part> for a part of a big one
_SHARD = rf"{NAME}-{_UNIT}-\d{{5,}}\.parquet"  # <source>-<unit>-<n>, corpus/work.py
_QUAR = rf"({NAME}-{_UNIT}\.parquet|raw/{NAME}-{_UNIT}/\d+(-\d+)?\.zst)"  # per unit, and its big records
_PUBLISHED = rf"(data/{_SHARD}|rejected/\d{{2,}}-{NAME}/{_SHARD}|quarantine/{_QUAR})"
_OWN = re.compile("|".join([
    rf"{re.escape(MARKER)}|\.lock|manifest\.json|report\.html|report\.json",
    r"catalog\.duckdb(\.wal)?|catalog\.duckdb\.tmp/.+",
    _PUBLISHED,
    rf"\.publish/{_PUBLISHED}",
    rf"work/00-read/(shards/{_SHARD}|quarantine/{_QUAR}|done/{_UNIT}\.json)",
    rf"work/\d{{2,}}-{NAME}-[0-9a-f]{{12}}/((shards|rejected)/{_SHARD}|done/{NAME}\.json|artifacts/.+|_done\.json)",
]))
PUBLISHED = ".published.json"  # in a folder a sink published (OUT/tokens/): the files that are the run's
_TMP = re.compile(r"\.tmp-\d+-")  # corpus.writers.atomic_path's temp names
MANAGED = ("data", "rejected", "quarantine", "work", ".publish", "catalog.duckdb.tmp")  # folders a run rewrites
SHOW = 12


# What other commands leave in a folder, and what to run on it: the hint when a command is given the
# wrong kind of folder (`corpus verify` on token shards).
_KINDS = (
    ("tokenize.json", "token shards (`corpus tokenize`): check them with `corpus shards verify {p}/train`"),
    ("profile.json", "a profile (`corpus profile`): its figures are {p}/profile.json"),
    # before the tokenizer: a model export holds its tokenizer too
    ("model.safetensors", "a model export (the final/ or best/ of a training run, `corpus train`): train from it "
                          "with model.from_pretrained: {p}"),
    ("tokenizer.json", "a tokenizer (`corpus tokenizer train`): give it to `corpus tokenize --tokenizer {p}`"),
    ("annotate.duckdb", "an annotation project: `corpus annotate status {p}`"),
    ("embeddings.json", "embeddings: `corpus search {p} QUERY`"),
    ("metrics.jsonl", "a training run (`corpus train`): its model is {p}/final"),
)


def folder_hint(folder: Path) -> str:
    """"; FOLDER holds ...: run ..." when ``folder`` is another command's output, else ""."""
    for marker, what in _KINDS:
        if (Path(folder) / marker).is_file():
            run = Path(folder).parent
            if marker == "model.safetensors" and (run / "metrics.jsonl").is_file():  # name the run it came from
                what = what.replace("a training run", f"the training run {run}")
            return f"; {folder} holds {what.format(p=folder)}"
    return ""


def managed_by(folder: Path) -> tuple[Path, str] | None:
    """(output folder, its folder) when ``folder`` lies in one of the MANAGED folders of a run's output, or in
    a folder its sinks publish (``OUT/tokens/``: verify checks it against the run), where anything a run did
    not write stops the next run (and a file in data/ fails the corpus's verification)."""
    folder = Path(os.path.abspath(folder))
    for parent in (folder, *folder.parents):
        if (parent / MARKER).is_file():
            parts = folder.relative_to(parent).parts
            if parts and (parts[0] in MANAGED or (parent / parts[0] / PUBLISHED).is_file()
                          or parts[0] in _sink_folders()):
                return parent, parts[0]
            return None
    return None


def _sink_folders() -> frozenset[str]:
    """The folders sinks publish into a run's output (``Tokenize.publish``: "tokens"), published yet or not."""
    from corpus import registry

    return _publish_folders(tuple(registry.names()))


@functools.cache
def _publish_folders(names: tuple[str, ...]) -> frozenset[str]:
    """Cached by the registered names: it imports every operator (about a second); a sink registered later
    (a notebook's) makes a new entry."""
    import contextlib

    from corpus import registry
    from corpus.operators import SinkOperator

    out = set()
    for name in names:
        with contextlib.suppress(Exception):  # a plugin that does not load publishes nothing here
            op = registry.get(name)
            if isinstance(op, type) and issubclass(op, SinkOperator) and op.publish:
                out.add(op.publish)
    return frozenset(out)


def refuse_managed(path: Path) -> None:
    """Refuse a command's output (a folder or a file) inside a folder a run's output manages: what it wrote
    there would stop that output's next run, and a file in data/ fails the corpus's verification."""
    inside = managed_by(Path(path))
    if inside is not None:
        raise ValueError(f"{path}: the runs of the output folder {inside[0]} rewrite its {inside[1]}/ folder "
                         "(anything else there stops them); write into a folder outside it")


def refuse_foreign_file(path: Path) -> None:
    """Refuse a command's output file where it would replace another output's own file: a run's own files
    (its catalog, manifest, report) or an existing file in a folder another command wrote (an annotation
    project's database, a training run's model, a tokenizer...). A new file beside them is fine."""
    refuse_managed(path)
    path = Path(os.path.abspath(path))
    exists = path.exists() or path.is_symlink()
    for parent in path.parents:
        if (parent / MARKER).is_file() and is_own(path.relative_to(parent).as_posix()):
            raise ValueError(f"{path} is a file of the run output {parent}; write it outside that folder")
        for marker, what in _KINDS if exists else ():
            if (parent / marker).is_file():
                raise ValueError(f"{path} would replace a file of {what.split(':')[0]} in {parent}; "
                                 "write it outside that folder")


class ForeignFilesError(ValueError):
    """The output folder holds files no corpusforge run wrote, where a run would write or delete."""


def _listed(out: Path, rel: str) -> bool:
    """Whether `rel` lies in a folder a run published for a sink and is named in its file list."""
    parts = rel.split("/")
    for i in range(1, len(parts)):
        folder = out.joinpath(*parts[:i])
        if (folder / PUBLISHED).is_file():
            inner = "/".join(parts[i:])
            try:
                return inner == PUBLISHED or inner in (read_listing(folder) or set())
            except ValueError:
                return False
    return False


def read_listing(folder: Path) -> set[str] | None:
    """The files a run published into ``folder`` for a sink (write_listing), None where it has no listing;
    ValueError when the listing cannot be read."""
    listing = folder / PUBLISHED
    if not listing.is_file():
        return None
    try:
        return set(json.loads(listing.read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"{listing}: not the list of files the run published (unreadable)") from None


def write_listing(folder: Path, files: list[str]) -> None:
    """Mark a folder a sink's artifacts were published into: these files (relative to it) are a run's."""
    write_bytes_atomic(folder / PUBLISHED, json.dumps({"format": FORMAT, "files": sorted(files)}, indent=1).encode())


def is_own(rel: str) -> bool:
    """Whether a path (relative to the output folder, '/'-separated) is one a run writes."""
    head, _, name = rel.rpartition("/")
    name = _TMP.sub("", name, count=1) if name.startswith(".tmp-") else name
    return _OWN.fullmatch(f"{head}/{name}" if head else name) is not None


def _walk(out: Path, top: Path) -> list[str]:
    """Files under `top` (links and special files too), relative to `out`; empty folders are not listed."""
    if not top.is_dir() or top.is_symlink():
        return [top.relative_to(out).as_posix()] if top.exists() or top.is_symlink() else []
    found = []
    for root, dirs, files in os.walk(top):
        base = Path(root)
        for d in list(dirs):
            if (base / d).is_symlink():  # never followed, never ours
                dirs.remove(d)
                files.append(d)
        found += [(base / f).relative_to(out).as_posix() for f in files]
    return found


def foreign_paths(out: Path, published: tuple[str, ...] = ()) -> list[str]:
    """Files in the folders a run manages (and those its sinks publish into) that a run would not have
    written."""
    return sorted(p for d in (*MANAGED, *published) for p in _walk(out, out / d)
                  if not is_own(p) and not _listed(out, p))


def _listing(paths: list[str]) -> str:
    more = f" and {len(paths) - SHOW} more" if len(paths) > SHOW else ""
    return ", ".join(paths[:SHOW]) + more


def require_folder(path: Path, error: type[Exception] = ValueError) -> None:
    """Refuse an output folder that is an existing file (or a link to one, or a broken link) before any
    work is done, rather than when the first file is written into it."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not path.is_dir():
        raise error(f"{path} exists and is not a folder")


def check_output(out: Path, published: tuple[str, ...] = ()) -> None:
    """Raise ForeignFilesError unless a run may use `out`: absent, empty, or marked by a run and holding
    nothing foreign where a run writes. Reads only; `claim` marks the folder once the run holds its lock."""
    require_folder(out, ForeignFilesError)
    if not out.exists():
        return
    entries = sorted(p.name for p in out.iterdir())
    if (out / MARKER).is_file():
        foreign = foreign_paths(out, published)
        if foreign:
            raise ForeignFilesError(
                f"output folder {out} holds files no run wrote, in folders a run replaces: {_listing(foreign)}; "
                "move them out of the output folder and rerun")
        return
    every = sorted(p for e in entries for p in _walk(out, out / e) if not is_own(p))
    # Empty but for the lock (and marker temp file) of a run stopped before it marked the folder; or an
    # output of a version before the marker: adopted only when everything in it is a run's own.
    if not every and ("catalog.duckdb" in entries or all(e == ".lock" or e.startswith(".tmp-") for e in entries)):
        return
    shown = every or entries
    raise ForeignFilesError(
        f"output folder {out} is not empty and no corpusforge run has used it (found: {_listing(shown)}); "
        "a run writes only into a new or empty folder, or one an earlier run created: choose another folder")


def claim(out: Path) -> None:
    """Mark `out` as a run's own (first use); called with the run lock held, after check_output."""
    if not (out / MARKER).is_file():
        write_bytes_atomic(out / MARKER, json.dumps({
            "format": FORMAT, "note": "written by corpusforge: this folder is a run's output; files in "
            "data/, rejected/, quarantine/ and work/ are rewritten by the next run"}, indent=2).encode())


def remove_own(out: Path, path: Path) -> None:
    """Delete `path` (a file or folder inside `out`) but only what a run writes; anything else stays and is
    reported with ForeignFilesError (check_output refused such folders, so this is a last guard)."""
    if not path.exists() and not path.is_symlink():
        return
    foreign = [p for p in _walk(out, path) if not is_own(p) and not _listed(out, p)]
    if foreign:
        raise ForeignFilesError(f"not deleting {path}: it holds files no run wrote: {_listing(foreign)}")
    if not path.is_dir() or path.is_symlink():
        path.unlink()
        return
    for root, dirs, files in os.walk(path, topdown=False):
        for f in files:
            os.unlink(os.path.join(root, f))
        for d in dirs:
            sub = os.path.join(root, d)
            os.unlink(sub) if os.path.islink(sub) else os.rmdir(sub)
    path.rmdir()
