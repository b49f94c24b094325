"""Before a resumed run skips finished units, it checks what it will take from them.

Each unit's marker records the files it wrote (bytes, sha256 at write: corpus/integrity.py). A unit
whose files are missing or of another size is redone. The files the run will use without rewriting
them (what it publishes, and the inputs of units and fits that run again) are hashed; a unit whose
file differs is redone too, and said so, and then its own input is checked the same way (a pass-through
stage's output is a link to its input, so damage is traced back to the unit that really wrote it).
Redoing means deleting the unit's marker: the run then recomputes it, byte-identically.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from corpus.integrity import cheap_problem, file_sha256
from corpus.operators import SinkOperator, is_global
from corpus.readers import ReadTask
from corpus.work import Stage, read_marker, whole_stage_done

Key = tuple[int, str]  # (stage index, unit): (0, ReadTask.unit) for reading, (j, shard) for stage j


@dataclass
class _Unit:
    label: str
    folder: Path  # the marker's files are relative to it
    marker_path: Path
    marker: dict


def check_finished_work(read_dir: Path, tasks: Sequence[ReadTask], task_keys: dict[int, str],
                        segments: list[list[Stage]], hash_files: Callable[[Callable, list], list],
                        say: Callable[[str], None]) -> int:
    """Delete the markers of finished units whose files do not match what they wrote; returns how many.
    `segments`: the pipeline's stages split at global operators, as the executor runs them.
    `hash_files(file_sha256, paths)` hashes in parallel (the executor's pool)."""
    stages = [st for seg in segments for st in seg]
    done: dict[Key, _Unit] = {}
    task_of: dict[str, str] = {}  # shard -> its reading unit
    redone = 0

    def redo(key: Key, why: str) -> None:
        nonlocal redone
        unit = done.pop(key)
        say(f"resuming: {why}: redoing {unit.label}")
        unit.marker_path.unlink(missing_ok=True)
        redone += 1

    unrecorded: list[_Unit] = []  # markers of an older version, which recorded nothing to check against

    def consider(key: Key, unit: _Unit) -> None:
        files = unit.marker.get("files")
        if files is None:
            unrecorded.append(unit)
            return
        done[key] = unit
        for rel, rec in files.items():
            why = cheap_problem(unit.folder / rel, rec)
            if why:
                redo(key, f"{unit.folder / rel} is {why}")
                return

    for t in tasks:  # each unit of reading: a file, or a part of a big one
        path = read_dir / "done" / f"{t.unit}.json"
        marker = read_marker(path, task_keys[t.index])
        if marker is not None:
            consider((0, t.unit), _Unit(f"reading {t.path}", read_dir, path, marker))
            task_of.update({s: t.unit for s in marker["shards"]})
    shards = set(task_of)
    for st in stages:
        for path in sorted((st.dir / "done").glob("*.json")) if (st.dir / "done").is_dir() else []:
            marker = read_marker(path, st.key)
            if marker is not None:
                consider((st.idx, path.stem), _Unit(f"shard {path.stem} through {st.label}", st.dir, path, marker))
                shards.add(path.stem)

    if unrecorded:
        say(f"resuming: {len(unrecorded)} finished units were recorded without file hashes (an older version): "
            "redoing them")
        for unit in unrecorded:
            unit.marker_path.unlink(missing_ok=True)
        redone += len(unrecorded)

    sinks = {st.idx for st in stages if isinstance(st.op, SinkOperator)}

    def producer(j: int, shard: str) -> tuple[Key, str]:
        """The unit that wrote the shard stage j passes on (j = 0: reading; a sink passes on its input),
        and the file's name in it."""
        while j in sinks:
            j -= 1
        return ((0, task_of.get(shard, "")) if j == 0 else (j, shard)), f"shards/{shard}.parquet"

    fitted = {st.idx for st in stages if is_global(st.op) and whole_stage_done(st.dir, st.key)}

    def needed() -> dict[Path, tuple[Key, str]]:
        """Files the run will take from finished units without rewriting them."""
        want: list[tuple[Key, str]] = []
        for shard in shards:
            want.append(producer(len(stages), shard))  # published
            for seg in segments:  # read by the first stage of a segment that runs again (a sink: below)
                if seg[0].idx in sinks:
                    continue
                first = next((st.idx for st in seg if (st.idx, shard) not in done), None)
                if first is not None:
                    want.append(producer(first - 1, shard))
            want += [((st.idx, shard), f"rejected/{shard}.parquet") for st in stages if st.idx not in sinks]
        want += [(key, rel) for key, unit in done.items() if key[0] == 0 for rel in unit.marker["files"]
                 if rel.startswith("quarantine/")]
        for st in stages:  # read by a fit (or a sink) that runs again
            if is_global(st.op) and st.idx not in fitted:
                want += [producer(st.idx - 1, shard) for shard in shards]
        return {done[k].folder / rel: (k, rel) for k, rel in want
                if k in done and rel in done[k].marker["files"]}

    hashed: set[Path] = set()
    while True:
        todo = {p: v for p, v in needed().items() if p not in hashed}
        if not todo:
            return redone
        paths = sorted(todo)
        for path, digest in zip(paths, hash_files(file_sha256, paths), strict=True):
            hashed.add(path)
            key, rel = todo[path]
            if key in done and digest != done[key].marker["files"][rel]["sha256"]:
                redo(key, f"{path} changed since it was written (sha256 differs)")
