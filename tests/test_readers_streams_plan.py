"""Damaged and mislabelled compressed files (corpus/readers/streams.py) and how inputs find their files
(corpus/readers/plan.py): links, skipped names, broken links, compressions that are not read.

Every case counts its records: each one ends as a document or a quarantined record with its bytes.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import zlib
from pathlib import Path

import polars as pl
import pytest
import zstandard

from corpus.readers import InputError, InputSpec, ReadTask, plan_tasks, read_task
from corpus.readers.streams import ByteSource


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def lines(n: int, seed: int = 0) -> bytes:
    """n JSONL records of varied words (damage shows up soon in varied text, as in real data)."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(500)]
    return b"".join(json.dumps({"text": f"record {i} " + " ".join(rng.choices(words, k=12))}).encode() + b"\n"
                    for i in range(n))


def read_path(path: Path, **kw) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    tasks = plan_tasks([InputSpec(source="s", path=str(path), max_quarantine_fraction=1, **kw)])
    assert len(tasks) == 1
    return read(tasks[0])


def read(task: ReadTask) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    chunks = list(read_task(task, 32 << 20))
    for c in chunks:
        assert c.seen == c.docs.height + c.bad.height
    return pl.concat([c.docs for c in chunks]), pl.concat([c.bad for c in chunks]), sum(c.seen for c in chunks)


def texts(data: bytes) -> list[str]:
    return [json.loads(line)["text"] for line in data.splitlines()]


# ----- gzip: what decompresses before the damage is read ---------------------------------------
def test_gzip_with_a_bad_checksum_keeps_every_record(tmp_path):
    plain = lines(200)
    blob = bytearray(gzip.compress(plain))
    blob[-8] ^= 0xFF  # the CRC32 in the trailer: every record decompresses before it is checked
    docs, bad, seen = read_path(write(tmp_path / "x.jsonl.gz", bytes(blob)))
    assert docs["text"].to_list() == texts(plain)
    assert seen == 201 and bad.select("kind", "line").rows() == [("unreadable_file", 201)]
    assert bad["error"][0].startswith("the gzip trailer's checksum does not match the data (Error -3 while "
                                      "decompressing data: incorrect data check), though its length does")


def damage(blob: bytes, at: int) -> bytes:
    return blob[:at] + b"\xff" * 64 + blob[at + 64 :]


def decompressed_before(blob: bytes, at: int) -> bytes:
    """What zlib gives for the file's first ``at`` bytes, fed one at a time (the reference)."""
    d = zlib.decompressobj(wbits=31)
    return b"".join(d.decompress(blob[i : i + 1]) for i in range(at))


# Within the file's first read (1 MiB), and past it; both damages are noticed where they lie.
@pytest.mark.parametrize(("records", "where"), [(2000, 0.5), (60000, 0.7)])
def test_gzip_damaged_in_the_middle_keeps_the_records_before_the_damage(tmp_path, records, where):
    plain = lines(records)
    blob = gzip.compress(plain)
    at = int(len(blob) * where)
    path = write(tmp_path / "x.jsonl.gz", damage(blob, at))
    docs, bad, seen = read_path(path)
    assert seen == docs.height + bad.height
    whole = decompressed_before(blob, at).count(b"\n")  # the lines complete before the damaged bytes
    assert whole > records * 0.4 and docs.height >= whole
    assert docs["text"].to_list()[:whole] == texts(plain)[:whole]
    assert bad["kind"].to_list()[-1] == "unreadable_file"
    error = bad["error"].to_list()[-1]
    assert error.startswith(f"gzip data is damaged at about byte {at + 2:,} of {len(blob):,} (Error -3 ")
    assert f"the {len(blob) - at - 2:,} compressed bytes from there on cannot be decompressed" in error


def test_gzip_damage_noticed_only_by_the_checksum_says_the_lines_are_garbled(tmp_path):
    plain = lines(60000)
    blob = gzip.compress(plain)
    docs, bad, seen = read_path(write(tmp_path / "x.jsonl.gz", damage(blob, int(len(blob) * 0.6))))
    assert seen == docs.height + bad.height and bad["kind"].to_list()[-1] == "unreadable_file"
    error = bad["error"].to_list()[-1]
    assert error.startswith("the gzip data is damaged, unnoticed until the trailer's checksum")
    assert f"where the trailer records {len(plain):,}; the lines read from the damage on hold garbled text" in error


def test_byte_source_yields_all_that_decompresses_before_the_damage(tmp_path):
    plain = lines(60000)
    blob = gzip.compress(plain)
    at = int(len(blob) * 0.8)
    src = ByteSource(str(write(tmp_path / "x.gz", damage(blob, at))))
    out = b"".join(src.blocks())
    assert out == decompressed_before(damage(blob, at), at + 2)  # zlib fails at the damage's third byte
    assert len(out) > len(plain) // 2 and src.error and not src.truncated


def test_plain_jsonl_named_gz_is_quarantined_whole_and_named(tmp_path):
    plain = lines(200)
    docs, bad, seen = read_path(write(tmp_path / "x.jsonl.gz", plain))
    assert docs.height == 0 and seen == 1
    assert bad.select("kind", "line", "raw").rows() == [("unreadable_file", 1, plain)]
    assert bad["error"][0] == "not gzip data (it starts like plain text): rename it without the .gz suffix"


def test_zstd_data_named_gz_says_so(tmp_path):
    blob = zstandard.ZstdCompressor().compress(lines(5))
    _, bad, _ = read_path(write(tmp_path / "x.jsonl.gz", blob))
    assert bad["error"][0] == "not gzip data (it starts like zstd data): name it .zst"


def test_gzip_with_trailing_garbage_reports_the_garbage_once_with_its_bytes(tmp_path):
    plain = lines(200)
    docs, bad, seen = read_path(write(tmp_path / "x.jsonl.gz", gzip.compress(plain) + b"some trailing garbage"))
    assert docs["text"].to_list() == texts(plain) and seen == 201
    assert bad.select("kind", "line", "raw").rows() == [("unreadable_file", 201, b"some trailing garbage")]
    assert bad["error"][0].startswith("21 bytes after the end of the gzip data (at byte ")
    assert "not gzip data (they start like plain text); everything before them was read" in bad["error"][0]


def test_gzip_zero_padding_and_members_are_still_read(tmp_path):
    plain = lines(50)
    blob = gzip.compress(plain[:1000]) + gzip.compress(plain[1000:]) + b"\0" * 300
    docs, bad, _ = read_path(write(tmp_path / "x.jsonl.gz", blob))
    assert docs["text"].to_list() == texts(plain) and bad.height == 0


def test_text_lines_of_a_mislabelled_gz_keep_their_bytes(tmp_path):
    docs, bad, seen = read_path(write(tmp_path / "x.txt.gz", b"one\ntwo\n"), text_mode="line")
    assert docs.height == 0 and seen == 1
    assert bad.select("kind", "raw").rows() == [("unreadable_file", b"one\ntwo\n")]


# ----- zstd: the same -------------------------------------------------------------------------
def test_zstd_damaged_in_the_middle_keeps_the_blocks_before_the_damage(tmp_path):
    plain = lines(30000)
    blob = bytearray(zstandard.ZstdCompressor(level=3).compress(plain))
    at = len(blob) // 2
    blob[at] ^= 0xFF
    blob[at + 1] ^= 0xFF
    src = ByteSource(str(write(tmp_path / "x.jsonl.zst", bytes(blob))))
    out = b"".join(src.blocks())
    assert len(out) > len(plain) // 3 and plain.startswith(out)
    assert src.error and "zstd data is damaged at about byte" in src.error
    docs, bad, seen = read_path(tmp_path / "x.jsonl.zst")
    assert docs.height == out.count(b"\n") and seen == docs.height + 1
    assert bad["raw"][0] == out[out.rfind(b"\n") + 1 :]


def test_zstd_with_trailing_garbage_and_mislabelled(tmp_path):
    plain = lines(100)
    docs, bad, _ = read_path(write(tmp_path / "x.jsonl.zst", zstandard.ZstdCompressor().compress(plain) + b"junk"))
    assert docs.height == 100
    assert bad.select("kind", "raw").rows() == [("unreadable_file", b"junk")]
    assert bad["error"][0].startswith("4 bytes after the end of the zstd data")
    docs, bad, _ = read_path(write(tmp_path / "y.jsonl.zst", gzip.compress(plain)))
    assert docs.height == 0 and bad["error"][0] == "not zstd data (it starts like gzip data): name it .gz"


# ----- finding files: links and skipped names -----------------------------------------------
@pytest.fixture
def tree(tmp_path: Path) -> Path:
    d = tmp_path / "d"
    write(d / "a.txt", b"x\n")
    write(d / "sub" / "n.md", b"md doc\n")
    write(d / "_under.txt", b"under\n")
    write(d / ".hidden.txt", b"hidden\n")
    write(d / "_parts" / "p.txt", b"part\n")
    (d / "sub" / "loop").symlink_to("..")  # a link back up: a loop
    return tmp_path


def rels(base: Path, path: str) -> list[str]:
    return [t.rel_path for t in plan_tasks([InputSpec(source="s", path=path, format="text")], base_dir=base)]


def test_a_glob_and_a_folder_find_the_same_files_and_follow_no_linked_folder(tree):
    assert rels(tree, "d/**") == ["a.txt", "sub/n.md"]
    assert rels(tree, "d") == ["a.txt", "sub/n.md"]
    assert rels(tree, "d/**/*.md") == ["sub/n.md"]
    assert rels(tree, "d/*") == ["a.txt"]


def test_a_glob_reads_skipped_names_only_when_it_names_them(tree):
    assert rels(tree, "d/_*.txt") == ["_under.txt"]
    assert rels(tree, "d/.*") == [".hidden.txt"]
    assert rels(tree, "d/_parts/*") == ["p.txt"]
    assert rels(tree, "d/_under.txt") == ["_under.txt"]  # a file named by its path is read


def test_a_path_through_a_link_given_literally_is_read(tree):
    assert rels(tree, "d/sub/loop/*.txt") == ["a.txt"]


def test_a_broken_link_is_named_as_one(tree):
    (tree / "d" / "dangling.txt").symlink_to("nowhere.txt")
    for path in ["d", "d/*.txt", "d/dangling.txt"]:
        with pytest.raises(InputError, match=r"dangling.txt is a broken link \(to nowhere.txt, which does not exist\)"):
            rels(tree, path)


@pytest.mark.parametrize("suffix", [".bz2", ".xz"])
@pytest.mark.parametrize("fmt", [None, "jsonl", "text"])
def test_compressions_that_are_not_read_are_refused_with_the_way_out(tmp_path, suffix, fmt):
    write(tmp_path / f"x.jsonl{suffix}", b"\xfd7zXZ\x00 or BZh, compressed bytes")
    with pytest.raises(InputError, match=rf"x.jsonl\{suffix} is \w+-compressed \(\{suffix}\), which is not read "
                                         r"\(only .gz and .zst are decompressed\): decompress it first"):
        plan_tasks([InputSpec(source="s", path=str(tmp_path), format=fmt)])


def test_symlinked_file_in_a_folder_is_still_read(tmp_path):
    write(tmp_path / "elsewhere" / "x.jsonl", b'{"text": "a"}\n')
    (tmp_path / "d").mkdir()
    os.symlink(tmp_path / "elsewhere" / "x.jsonl", tmp_path / "d" / "x.jsonl")
    assert rels(tmp_path, "d") == ["x.jsonl"]
