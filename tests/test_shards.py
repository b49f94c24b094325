"""Megatron .bin/.idx shards: layout (checked by an independent reader), dtype switch, verify, merge, blend."""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli

from corpus.shards import (
    IndexedDataset,
    IndexedWriter,
    ShardError,
    blend,
    blend_indices,
    check_content,
    dtype_for_vocab,
    inspect,
    load_blend,
    merge,
    paths,
    verify,
    write_documents,
)

# Megatron's DType codes, from the published layout (data-anchors §1f), not from our module.
MEGATRON_DTYPES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64, 7: np.float32,
                   8: np.uint16}


def megatron_read(prefix: Path) -> list[np.ndarray]:
    """An independent reader, straight from Megatron's indexed_dataset.py layout."""
    idx = Path(str(prefix) + ".idx").read_bytes()
    assert idx[:9] == b"MMIDIDX\x00\x00"
    (version,) = struct.unpack("<Q", idx[9:17])
    (code,) = struct.unpack("<B", idx[17:18])
    (seq_count,) = struct.unpack("<Q", idx[18:26])
    (doc_count,) = struct.unpack("<Q", idx[26:34])
    assert version == 1 and doc_count == seq_count + 1
    dtype = np.dtype(MEGATRON_DTYPES[code])
    off = 34
    lengths = np.frombuffer(idx, dtype=np.int32, count=seq_count, offset=off)
    off += lengths.nbytes
    pointers = np.frombuffer(idx, dtype=np.int64, count=seq_count, offset=off)
    off += pointers.nbytes
    doc_idx = np.frombuffer(idx, dtype=np.int64, count=doc_count, offset=off)
    off += doc_idx.nbytes
    assert off == len(idx)
    assert doc_idx.tolist() == list(range(seq_count + 1))
    data = Path(str(prefix) + ".bin").read_bytes()
    return [np.frombuffer(data, dtype=dtype, count=int(n), offset=int(p)) for n, p in zip(lengths, pointers,
                                                                                         strict=True)]


def docs_of(rng: np.random.Generator, n: int, vocab: int) -> list[list[int]]:
    return [rng.integers(0, vocab, size=int(rng.integers(1, 40))).tolist() for _ in range(n)]


def test_megatron_reader_reads_our_shards_and_idx_size(tmp_path):
    docs = docs_of(np.random.default_rng(0), 57, 1000)
    side = write_documents(tmp_path / "s", docs, vocab_size=1000, meta={"split": "train"})
    assert side["documents"] == 57 and side["tokens"] == sum(map(len, docs)) and side["dtype"] == "uint16"
    got = megatron_read(tmp_path / "s")
    assert [g.tolist() for g in got] == docs
    assert (tmp_path / "s.idx").stat().st_size == 34 + 20 * 57 + 8
    assert (tmp_path / "s.bin").stat().st_size == 2 * sum(map(len, docs))
    ours = IndexedDataset(tmp_path / "s")
    assert len(ours) == 57 and [ours[i].tolist() for i in range(57)] == docs and ours[-1].tolist() == docs[-1]
    assert verify(tmp_path / "s") == []


def test_dtype_switch_uint16_int32(tmp_path):
    assert dtype_for_vocab(65499) == np.uint16 and dtype_for_vocab(65500) == np.int32
    big = [[0, 65535, 69999], [70000 - 1]]
    write_documents(tmp_path / "big", big, vocab_size=70000)
    assert (tmp_path / "big.idx").read_bytes()[17] == 4  # int32
    assert [d.tolist() for d in megatron_read(tmp_path / "big")] == big
    write_documents(tmp_path / "small", [[1, 65498]], vocab_size=65499)
    assert (tmp_path / "small.idx").read_bytes()[17] == 8  # uint16
    assert verify(tmp_path / "big") == [] and verify(tmp_path / "small") == []
    with pytest.raises(ValueError, match="do not fit"):
        write_documents(tmp_path / "bad", [[70000]], vocab_size=1000)
    assert not paths(tmp_path / "bad")["bin"].exists()


def test_empty_set_and_abort_leaves_nothing(tmp_path):
    write_documents(tmp_path / "empty", [], vocab_size=100)
    assert len(IndexedDataset(tmp_path / "empty")) == 0 and verify(tmp_path / "empty") == []
    assert (tmp_path / "empty.idx").stat().st_size == 42
    with pytest.raises(RuntimeError), IndexedWriter(tmp_path / "x", np.uint16) as w:
        w.add([1, 2, 3])
        raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".tmp", "x"))) == []


def corrupt(tmp_path: Path, name: str) -> Path:
    write_documents(tmp_path / name, docs_of(np.random.default_rng(1), 20, 500), vocab_size=500, masks=None,
                    meta={"eod_appended": False})
    return tmp_path / name


def test_verify_catches_corruption(tmp_path):
    p = corrupt(tmp_path, "trunc")
    idx = Path(str(p) + ".idx")
    idx.write_bytes(idx.read_bytes()[:-1])
    assert any("expected" in e for e in verify(p))

    p = corrupt(tmp_path, "ptr")
    idx = Path(str(p) + ".idx")
    raw = bytearray(idx.read_bytes())
    raw[34 + 4 * 20 + 8 * 3] ^= 0x01  # one bit of the 4th pointer
    idx.write_bytes(bytes(raw))
    assert any("pointers" in e for e in verify(p))

    p = corrupt(tmp_path, "magic")
    idx = Path(str(p) + ".idx")
    idx.write_bytes(b"XXXXXXXXX" + idx.read_bytes()[9:])
    assert any("magic" in e for e in verify(p))

    p = corrupt(tmp_path, "bin")
    with open(str(p) + ".bin", "ab") as fh:
        fh.write(b"\0\0")
    assert any(".bin" in e for e in verify(p))

    p = corrupt(tmp_path, "vocab")
    side = json.loads(Path(str(p) + ".json").read_text())
    side["vocab_size"] = 10
    Path(str(p) + ".json").write_text(json.dumps(side))
    assert any("out of range" in e for e in verify(p))

    p = corrupt(tmp_path, "count")
    side = json.loads(Path(str(p) + ".json").read_text())
    side["documents"] = 19
    Path(str(p) + ".json").write_text(json.dumps(side))
    assert any("sidecar documents" in e for e in verify(p))


def flip_low_bits(path: Path, count: int, seed: int = 0) -> None:
    """Flip bit 0 of ``count`` tokens' low bytes (uint16, little-endian): with an even vocab size every id
    stays in the vocab, so only a content hash can tell."""
    raw = bytearray(path.read_bytes())
    for k in np.random.default_rng(seed).choice(len(raw) // 2, size=count, replace=False):
        raw[2 * int(k)] ^= 0x01
    path.write_bytes(bytes(raw))


def test_verify_and_check_content_catch_in_vocab_bit_flips(tmp_path):
    p = corrupt(tmp_path, "flip")
    assert verify(p) == [] and check_content(p)[1] < 500
    before = [d.tolist() for d in IndexedDataset(p)]
    flip_low_bits(Path(f"{p}.bin"), 20)
    after = IndexedDataset(p)
    assert [d.tolist() for d in after] != before and int(after.tokens.max()) < 500  # still in vocab
    errors = verify(p)
    assert len(errors) == 1 and "flip.bin: sha256 differs" in errors[0] and "corpus tokenize" in errors[0]
    with pytest.raises(ShardError, match=r"flip\.bin: sha256 differs"):
        check_content(p)
    res = run_cli("shards", "verify", str(p))
    assert res.returncode == 1 and "flip.bin: sha256 differs" in res.stdout and "Traceback" not in res.stderr

    # a loss mask flipped 0 <-> 1 keeps every value valid: again only the hash tells
    write_documents(tmp_path / "m", [[5, 6, 7, 0], [8, 0]], vocab_size=100, masks=[[0, 1, 1, 1], [1, 1]])
    raw = bytearray((tmp_path / "m.mask").read_bytes())
    raw[0] ^= 1
    (tmp_path / "m.mask").write_bytes(bytes(raw))
    assert any("m.mask: sha256 differs" in e for e in verify(tmp_path / "m"))


def test_sidecar_records_hashes_and_old_sidecars_are_refused(tmp_path):
    side = write_documents(tmp_path / "s", [[1, 2, 3], [4]], vocab_size=10)
    assert side["format"] == "corpusforge.tokens/2"
    assert side["files"]["bin"] == {"bytes": 8, "sha256": hashlib.sha256((tmp_path / "s.bin").read_bytes()).hexdigest()}
    assert side["files"]["idx"]["sha256"] == hashlib.sha256((tmp_path / "s.idx").read_bytes()).hexdigest()
    old = {k: v for k, v in side.items() if k != "files"} | {"format": "corpusforge.tokens/1"}
    (tmp_path / "s.json").write_text(json.dumps(old))
    errors = verify(tmp_path / "s")
    assert errors == [f"{tmp_path}/s.json: no content hashes (sidecar format corpusforge.tokens/1, from before they "
                      "were recorded): re-run `corpus tokenize` to rewrite this shard set"]
    with pytest.raises(ShardError, match="no content hashes.*re-run `corpus tokenize`"):
        check_content(tmp_path / "s")
    (tmp_path / "s.json").unlink()
    with pytest.raises(ShardError, match="s.json: missing"):
        check_content(tmp_path / "s")


def test_out_of_vocab_id_names_the_document(tmp_path):
    docs = [[1, 2], [3, 4, 5], [6, 99, 7], [99]]
    write_documents(tmp_path / "s", docs, vocab_size=100)
    assert check_content(tmp_path / "s") == (1, 99)
    side = json.loads((tmp_path / "s.json").read_text())
    (tmp_path / "s.json").write_text(json.dumps(side | {"vocab_size": 50}))  # the ids disagree with the sidecar
    with pytest.raises(ShardError, match=r"s\.bin: document 2 \(token 1 of it\) has id 99, outside the sidecar's "
                                         r"vocab_size \[0, 50\)"):
        check_content(tmp_path / "s")
    assert any("document 2 (token 1 of it)" in e for e in verify(tmp_path / "s"))


def test_mask_roundtrip_verify_and_eod_check(tmp_path):
    docs = [[5, 6, 7, 0], [8, 0], [9, 9, 9, 0]]
    masks = [[0, 1, 1, 1], [1, 1], [0, 0, 1, 1]]
    write_documents(tmp_path / "m", docs, vocab_size=100, masks=masks, meta={"eod_appended": True, "eod_id": 0})
    ds = IndexedDataset(tmp_path / "m")
    assert [ds.mask(i).tolist() for i in range(3)] == masks
    assert verify(tmp_path / "m") == []
    with open(tmp_path / "m.mask", "ab") as fh:
        fh.write(b"\1")
    assert any("mask values" in e for e in verify(tmp_path / "m"))
    write_documents(tmp_path / "noeod", [[5, 6], [7, 0]], vocab_size=100, meta={"eod_appended": True, "eod_id": 0})
    assert any("EOD" in e for e in verify(tmp_path / "noeod"))


def test_merge_is_exact_concatenation(tmp_path):
    rng = np.random.default_rng(2)
    groups = [docs_of(rng, n, 3000) for n in (5, 0, 13, 1)]
    masks = [[[int(x) for x in rng.integers(0, 2, len(d))] for d in g] for g in groups]
    meta = {"tokenizer_hash": "abc", "split": "train"}
    for i, (g, m) in enumerate(zip(groups, masks, strict=True)):
        write_documents(tmp_path / f"part{i}", g, vocab_size=3000, masks=m, meta={**meta, "corpus_hash": f"c{i % 2}"})
    side = merge([tmp_path / f"part{i}" for i in range(4)], tmp_path / "merged")
    flat = [d for g in groups for d in g]
    write_documents(tmp_path / "whole", flat, vocab_size=3000, masks=[m for ms in masks for m in ms])
    for ext in ("bin", "idx", "mask"):  # byte-identical to writing everything at once
        assert Path(f"{tmp_path}/merged.{ext}").read_bytes() == Path(f"{tmp_path}/whole.{ext}").read_bytes()
    assert side["documents"] == len(flat) and side["tokens"] == sum(map(len, flat))
    assert side["tokenizer_hash"] == "abc" and side["corpus_hash"] == ["c0", "c1"] and side["split"] == "train"
    assert verify(tmp_path / "merged") == []
    write_documents(tmp_path / "other", [[1]], vocab_size=3000, meta={"tokenizer_hash": "zzz"})
    with pytest.raises(ValueError, match="different tokenizers|loss mask"):
        merge([tmp_path / "part0", tmp_path / "other"], tmp_path / "bad")
    # a part that changed since it was written is named, and nothing is merged
    flip_low_bits(tmp_path / "part2.bin", 3)
    with pytest.raises(ShardError, match=r"part2\.bin: sha256 differs"):
        merge([tmp_path / f"part{i}" for i in range(4)], tmp_path / "merged2")
    assert not list(tmp_path.glob("merged2*"))


def test_inspect_reports_counts_and_sample(tmp_path):
    write_documents(tmp_path / "s", [[1, 2, 3], [4]], vocab_size=10)

    class Fake:
        def decode(self, ids, skip_special_tokens=False):
            return "-".join(map(str, ids))

    info = inspect(tmp_path / "s", tokenizer=Fake(), samples=2)
    assert info["documents"] == 2 and info["tokens"] == 4 and info["dtype"] == "uint16"
    assert [s["text"] for s in info["sample"]] == ["1-2-3", "4"]
    assert info["doc_tokens"] == {"min": 1, "mean": 2.0, "max": 3}
    # A folder or a misspelt prefix: named, with the shard sets found there
    for wrong in (tmp_path, tmp_path / "t"):
        with pytest.raises(ShardError, match=rf"{wrong.name}\.bin and {wrong.name}\.idx not found\); shard sets there: "
                                             rf"{tmp_path / 's'}$"):
            inspect(wrong)


def test_blend_converges_to_weights_and_is_deterministic(tmp_path):
    weights = [0.5, 0.3, 0.2]
    ds_index, counts = blend_indices(weights, 10_000)
    shares = np.bincount(ds_index, minlength=3) / 10_000
    assert np.abs(shares - weights).max() < 1e-3
    # Megatron's greedy keeps every prefix within about one sample of its target share.
    taken = np.stack([np.cumsum(ds_index == d) for d in range(3)], axis=1)
    target = np.arange(1, 10_001)[:, None] * np.array(weights)
    assert np.abs(taken - target).max() <= 1.0 + 1e-9
    # The k-th sample drawn from a dataset has sample index k (before the seeded permutation).
    for d in range(3):
        assert counts[ds_index == d].tolist() == list(range(int((ds_index == d).sum())))

    rng = np.random.default_rng(3)
    prefixes = []
    for i, n in enumerate((7, 30, 3)):
        write_documents(tmp_path / f"set{i}", docs_of(rng, n, 100), vocab_size=100)
        prefixes.append(tmp_path / f"set{i}")
    a = blend(list(zip(prefixes, weights, strict=True)), 500, out_prefix=tmp_path / "mix", seed=1)
    b = blend(list(zip(prefixes, weights, strict=True)), 500, seed=1)
    c = blend(list(zip(prefixes, weights, strict=True)), 500, seed=2)
    assert np.array_equal(a["dataset_index"], b["dataset_index"]) and np.array_equal(a["sample_index"],
                                                                                     b["sample_index"])
    assert np.array_equal(a["dataset_index"], c["dataset_index"])  # the mix depends on weights only
    assert not np.array_equal(a["sample_index"], c["sample_index"])  # the seed picks the documents
    # A set sampled past its size is visited in whole epochs: each of its 3 docs ~equally often.
    small = a["sample_index"][a["dataset_index"] == 2]
    assert np.bincount(small, minlength=3).max() - np.bincount(small, minlength=3).min() <= 1
    assert small.max() < 3
    loaded = load_blend(tmp_path / "mix")
    assert np.array_equal(loaded["dataset_index"], a["dataset_index"]) and loaded["seed"] == 1


def test_damaged_files_are_named_by_every_reader(tmp_path):
    """A truncated .bin or .idx, or a sidecar that is not JSON: verify lists it, inspect and the training
    reader name the file (numpy's 'not a multiple of the data-type size' named nothing)."""
    write_documents(tmp_path / "s", [[1, 2, 3], [4, 5]], vocab_size=10)
    good = {ext: Path(f"{tmp_path}/s.{ext}").read_bytes() for ext in ("bin", "idx", "json")}
    for ext, bad, why in (("bin", good["bin"][:-1], r"s\.bin: 9 bytes, not a whole number of uint16"),
                          ("idx", good["idx"][:-3], r"s\.idx: 79 bytes for (the )?2 sequences"),
                          ("json", b"[1", r"s\.json: not a readable sidecar"),
                          ("json", b"[1]", r"s\.json: not a readable sidecar")):
        Path(f"{tmp_path}/s.{ext}").write_bytes(bad)
        errors = verify(tmp_path / "s")
        assert errors and any(re.search(why, e) for e in errors), (ext, errors)
        with pytest.raises(ShardError, match=why):
            IndexedDataset(tmp_path / "s")
        res = run_cli("shards", "inspect", str(tmp_path / "s"))
        assert res.returncode != 0 and "Traceback" not in res.stderr and f"s.{ext}" in res.stderr, res.stderr
        Path(f"{tmp_path}/s.{ext}").write_bytes(good[ext])
    assert verify(tmp_path / "s") == []


def test_merge_refuses_an_output_that_is_an_input(tmp_path):
    write_documents(tmp_path / "a", [[1, 2]], vocab_size=10)
    write_documents(tmp_path / "b", [[3]], vocab_size=10)
    before = Path(f"{tmp_path}/a.bin").read_bytes()
    with pytest.raises(ValueError, match="is one of the shard sets to merge"):
        merge([tmp_path / "a", tmp_path / "b"], tmp_path / "sub" / ".." / "a")
    assert Path(f"{tmp_path}/a.bin").read_bytes() == before and verify(tmp_path / "a") == []


def test_merge_never_replaces_a_tokenize_split_and_a_bad_tokenizer_path_is_named(tmp_path):
    """A merge over a split `corpus tokenize` wrote replaced it, and the next tokenize rerun trusted its
    tokenize.json ("already tokenized") over the new files; --tokenizer with no tokenizer.json was a
    traceback from the tokenizers library."""
    write_documents(tmp_path / "a", [[1, 2]], vocab_size=10)
    (tmp_path / "toks").mkdir()
    write_documents(tmp_path / "toks" / "train", [[3, 4]], vocab_size=10)
    (tmp_path / "toks" / "tokenize.json").write_text("{}")
    before = (tmp_path / "toks" / "train.bin").read_bytes()
    res = run_cli("shards", "merge", str(tmp_path / "a"), "--out", str(tmp_path / "toks" / "train"))
    assert res.returncode == 2 and "would replace a file of token shards" in res.stderr, res.stderr
    assert (tmp_path / "toks" / "train.bin").read_bytes() == before
    res = run_cli("shards", "merge", str(tmp_path / "a"), "--out", str(tmp_path / "toks" / "extra"))
    assert res.returncode == 0, res.stderr  # a new set beside them is fine
    for action in ("inspect", "verify"):
        res = run_cli("shards", action, str(tmp_path / "a"), "--tokenizer", str(tmp_path / "nope"))
        assert res.returncode == 2 and f"no tokenizer.json at {tmp_path / 'nope'}" in res.stderr, res.stderr


def test_verify_prints_each_error_on_one_line(tmp_path):
    """Rich wrapped a long error at the console's width, splitting a path (grep, and this suite's own
    checks on a long temp path, missed it)."""
    deep = tmp_path / ("d" * 150)
    write_documents(deep / "s", [[1, 2, 3]], vocab_size=10)
    flip_low_bits(deep / "s.bin", 1)
    res = run_cli("shards", "verify", str(deep / "s"))
    assert res.returncode == 1
    assert any(str(deep / "s.bin") in line and "sha256 differs" in line for line in res.stdout.splitlines()), \
        res.stdout


def test_reader_takes_megatron_layouts_with_more_documents_than_sequences(tmp_path):
    """Megatron's document index may hold more entries than sequences + 1; the reader loads such a set by
    its header's counts (verify still holds ours to N + 1). A truncated index is still refused."""
    from corpus.shards import HEADER

    write_documents(tmp_path / "s", [[1, 2], [3]], vocab_size=10)
    idx = Path(f"{tmp_path}/s.idx")
    raw = bytearray(idx.read_bytes())
    magic, version, code, n, docs = HEADER.unpack(raw[:HEADER.size])
    raw[:HEADER.size] = HEADER.pack(magic, version, code, n, docs + 1)
    idx.write_bytes(bytes(raw) + (3).to_bytes(8, "little"))
    ds = IndexedDataset(tmp_path / "s")
    assert [d.tolist() for d in ds] == [[1, 2], [3]] and ds.document_count == 4
    assert verify(tmp_path / "s")  # not ours: verify says so
    idx.write_bytes(bytes(raw))  # the extra entry missing: truncated
    with pytest.raises(ShardError, match=r"s\.idx: .* bytes for the 2 sequences"):
        IndexedDataset(tmp_path / "s")
