"""Big files read in parts (corpus/readers/plan.py): JSONL and text by byte ranges of whole lines, Parquet by
row groups. The same rows, ids, row_ids, meta and quarantine line numbers as the file read whole; the
same shard bytes with any number of workers and on Ray; compressed files and CSV stay whole, and say so."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpus import InputSpec
from corpus.executor import LocalExecutor, Pool
from corpus.readers import plan_tasks
from corpus.readers.jsonl import jsonl_piece_bytes
from corpus.readers.plan import largest_first, split_tasks
from corpus.readers.streams import ByteSource, LineChunker
from corpus.stages.dedup import ExactDedup

CHUNK = 16 << 10  # the reader's pieces: small, so a small file has many
SPLIT = 64 << 10
WORDS = ["river", "stone", "cloud", "apple", "train"]
BAD = [i + 1 for i in range(3000) if i % 97 == 5 or (i % 89 != 7 and i % 83 == 3)]  # _jsonl's quarantined lines


def _jsonl(path: Path, n: int = 3000, seed: int = 0) -> None:
    """Records with what parts must get right: a byte order mark, blank lines, broken records, a field
    that mixes ints and floats (typed per polars piece), derived ids, and no newline at the very end."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        if i % 97 == 5:
            lines.append('{"text": "broken')
        elif i % 89 == 7:
            lines.append("")
        elif i % 83 == 3:
            lines.append(json.dumps({"body": "no text field"}))
        else:
            score = rng.choice([1, 2.5, 3]) if i % 5 else rng.randint(0, 9)
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30)))
            lines.append(json.dumps({"text": text if i % 13 else "repeat me", "score": score, "n": i}))
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode())


def _run(folder: Path, out: Path, workers: int = 1, split: int = SPLIT, executor=None, **spec):
    ex = executor or LocalExecutor(workers=workers, quiet=True, chunk_bytes=CHUNK, split_bytes=split, report=False)
    return ex.run([ExactDedup()], [InputSpec(source="big", path=str(folder), **spec)], out, shard_max_bytes=32 << 10)


def _rows(out: Path, key: str) -> pl.DataFrame:
    """The published files of one kind (shards, rejected, quarantine), in the manifest's order."""
    m = json.loads((out / "manifest.json").read_bytes())
    return pl.concat([pl.read_parquet(out / e["path"]) for e in m[key]]) if m[key] else pl.DataFrame()


def _same_rows(a: Path, b: Path) -> None:
    for key in ("shards", "rejected", "quarantine"):
        assert _rows(a, key).equals(_rows(b, key)), key


def _hashes(out: Path) -> dict[str, str]:
    m = json.loads((out / "manifest.json").read_bytes())
    return {e["path"]: e["sha256"] for key in ("shards", "rejected", "quarantine") for e in m[key]}


@pytest.fixture(scope="module")
def jsonl_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("split") / "in"
    folder.mkdir()
    _jsonl(folder / "big.jsonl")
    _jsonl(folder / "small.jsonl", n=50, seed=1)
    return folder


@pytest.fixture(scope="module")
def whole(jsonl_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "out"
    _run(jsonl_dir, out, split=0)
    return out


@pytest.fixture(scope="module")
def parts(jsonl_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("parts") / "out"
    _run(jsonl_dir, out, workers=2)
    return out


def test_parts_start_on_the_readers_own_piece_boundaries(jsonl_dir: Path):
    task = plan_tasks([InputSpec(source="big", path=str(jsonl_dir / "big.jsonl"))])[0]
    units, notes = split_tasks([task], SPLIT, CHUNK)
    assert len(units) > 3 and not notes
    piece = jsonl_piece_bytes(CHUNK)
    ends, at = set(), 3  # offsets in the file (the chunker's are after the byte order mark)
    for chunk in LineChunker(ByteSource(task.path), piece):
        at += len(chunk)
        ends.add(at)
    assert all(u.start in ends for u in units[1:])
    assert units[0].start == 0 and units[-1].end is None
    assert [u.end for u in units[:-1]] == [u.start for u in units[1:]]
    # ceil(size / split) parts of about equal size (within a piece): no short last part to idle a worker
    size = Path(task.path).stat().st_size
    sizes = [(u.end or size) - u.start for u in units]
    assert len(units) == -(-(size - 3) // SPLIT)
    assert max(sizes) - min(sizes) <= piece + 400  # a piece, and the lines that end them


def test_workers_get_the_largest_units_first(jsonl_dir: Path, tmp_path: Path):
    """A pool hands each unit to the next free worker: largest first, the small ones even out the end."""
    tasks = plan_tasks([InputSpec(source="big", path=str(jsonl_dir))])
    units, _ = split_tasks(tasks, SPLIT, CHUNK)
    size = {u.unit: (u.end or Path(u.path).stat().st_size) - u.start for u in units}
    order = [u.unit for u in largest_first(units)]
    assert sorted(order) == sorted(size) and order[-1] == "00001"  # small.jsonl, whole, goes last
    assert [size[u] for u in order] == sorted(size.values(), reverse=True)
    ties = [u for u in order if size[u] == size[order[0]]]
    assert ties == sorted(ties)  # equal sizes keep file order

    seen: list[str] = []

    class Recording(Pool):
        def unordered(self, fn, jobs, labels=None):
            seen.extend(j.task.unit for j in jobs if hasattr(j, "task"))
            return super().unordered(fn, jobs, labels)

    class Executor(LocalExecutor):
        def _runner(self, shard_max_bytes):
            return Recording(self.workers)

    _run(jsonl_dir, tmp_path / "out", executor=Executor(workers=1, quiet=True, chunk_bytes=CHUNK, split_bytes=SPLIT,
                                                         report=False))
    assert seen == order


def test_jsonl_parts_give_the_rows_of_the_file_read_whole(whole: Path, parts: Path):
    assert any("-p0001-" in p for p in _hashes(parts))  # read in parts
    assert not any("-p0" in p for p in _hashes(whole))
    _same_rows(parts, whole)  # ids, row_ids, meta (each record's own values), quarantine lines
    q = _rows(parts, "quarantine").filter(pl.col("file") == "big.jsonl")
    assert q["line"].to_list() == BAD  # the file's own line numbers, in every part


def test_quarantine_export_gives_back_a_split_files_records_whole(whole: Path, parts: Path, tmp_path: Path):
    from corpus.quarantine import export

    got = {e.file: e.path.read_bytes() for e in export(parts, tmp_path / "parts") if e.path}
    want = {e.file: e.path.read_bytes() for e in export(whole, tmp_path / "whole") if e.path}
    assert got == want and got["big.jsonl"].count(b"\n") == len(BAD)  # every part's records, in one file


def test_parts_give_the_same_shard_bytes_with_any_worker_count(jsonl_dir: Path, parts: Path, tmp_path: Path):
    _run(jsonl_dir, tmp_path / "one", workers=1)
    assert _hashes(tmp_path / "one") == _hashes(parts)


def test_a_resumed_run_reads_only_the_missing_part_and_counts_no_line_twice(jsonl_dir: Path, parts: Path,
                                                                           tmp_path: Path, monkeypatch):
    import os
    import shutil

    import corpus.readers.plan as plan

    out = tmp_path / "out"
    shutil.copytree(parts, out, copy_function=os.link)  # (links: the run replaces files, never writes into them)
    read = next((out / "work").glob("00-read"))
    (read / "done" / "00000-p0002.json").unlink()  # part 3 of big.jsonl was not finished
    counted = []
    real = plan.count_lines
    monkeypatch.setattr(plan, "count_lines", lambda job: counted.append(job.start) or real(job))
    res = _run(jsonl_dir, out, workers=1)
    assert counted == []  # the earlier parts' line counts were in their markers
    assert all(b["ok"] for b in res.balance)
    assert _hashes(out) == _hashes(parts)
    markers = [json.loads(p.read_bytes()) for p in sorted((read / "done").glob("00000-p*.json"))]
    assert all(m["lines"] is not None for m in markers[:-1])


def test_reading_a_split_file_whole_again_forgets_its_parts(jsonl_dir: Path, parts: Path, whole: Path,
                                                          tmp_path: Path):
    import os
    import shutil

    out = tmp_path / "out"
    shutil.copytree(parts, out, copy_function=os.link)
    _run(jsonl_dir, out, workers=1, split=0)
    assert _hashes(out) == _hashes(whole)
    read = out / "work" / "00-read"
    assert not [p.name for p in read.rglob("*-p0*")]  # the parts' shards, quarantine and markers are gone


def test_text_lines_and_parquet_row_groups_in_parts(tmp_path: Path):
    src = tmp_path / "in"
    src.mkdir()
    rng = random.Random(3)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 20))) if i % 31 else "   " for i in range(6000)]
    (src / "lines.txt").write_text("\n".join(lines) + "\n")
    table = pa.table({"text": [f"row {i} " + lines[i] for i in range(6000)], "n": list(range(6000))})
    pq.write_table(table, src / "rows.parquet", row_group_size=500)
    for name, split in (("whole", 0), ("parts", SPLIT)):
        _run(src, tmp_path / name, workers=2, split=split, text_mode="line")
    assert any("lines-" not in p and "-p0001-" in p for p in _hashes(tmp_path / "parts"))
    names = " ".join(_hashes(tmp_path / "parts"))
    assert "big-00000-p0001" in names and "big-00001-p0001" in names  # both files in parts
    _same_rows(tmp_path / "parts", tmp_path / "whole")


def test_compressed_and_csv_files_stay_whole_and_say_so(tmp_path: Path, caplog):
    src = tmp_path / "in"
    src.mkdir()
    _jsonl(src / "a.jsonl")
    (src / "a.jsonl.gz").write_bytes(gzip.compress((src / "a.jsonl").read_bytes()))
    (src / "a.jsonl").unlink()
    rows = "\n".join(f'{i},"a value\nover two lines {i}"' for i in range(4000))
    (src / "b.csv").write_text("n,text\n" + rows + "\n")
    tasks = plan_tasks([InputSpec(source="big", path=str(src))])
    units, notes = split_tasks(tasks, 16 << 10, CHUNK)  # both files are bigger than that
    assert units == tasks
    assert any("a.jsonl.gz: compressed, read as one unit" in n for n in notes)
    assert any("b.csv: CSV, read as one unit" in n for n in notes)


@pytest.mark.slow
def test_ray_reads_the_parts_into_the_same_shards(ray_cluster, jsonl_dir: Path, parts: Path, tmp_path: Path):
    from corpus.ray_executor import RayExecutor

    ex = RayExecutor(quiet=True, chunk_bytes=CHUNK, split_bytes=SPLIT, report=False)
    _run(jsonl_dir, tmp_path / "ray", executor=ex)
    assert _hashes(tmp_path / "ray") == _hashes(parts)
