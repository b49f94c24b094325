"""Tokenizer training/loading and the tokenize step: round trip, splits, resume, dtype, loss mask."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from helpers import sentence
from tokenizers import Tokenizer, models, pre_tokenizers

from corpus.manifest import write_manifest
from corpus.shards import IndexedDataset, verify
from corpus.stages.tokenize import SPLITS, assign_splits, group_keys, tokenize_corpus
from corpus.stages.tokenizer import (
    SPECIAL_TOKENS,
    import_tokenizer,
    load_tokenizer,
    save_tokenizer,
    tokenizer_hash,
    train_tokenizer,
)
from corpus.writers import write_parquet


def make_corpus(root: Path, shards: int = 3, docs: int = 40, seed: int = 0, cluster: bool = False) -> list[dict]:
    """A corpus folder written directly (no executor): varied texts, planted exact duplicates that differ
    only in case/whitespace, unicode, and optionally near-dup clusters in `cluster_id`."""
    rng = random.Random(seed)
    rows: list[dict] = []
    for s in range(shards):
        for i in range(docs):
            n = len(rows)
            src = rows[rng.randrange(len(rows))] if rows else None
            if src is not None and i % 5 == 0:
                text = "  " + src["text"].upper().replace(" ", "\n ") + " "
            elif i % 13 == 0:
                text = f"Ünïcödé {n} — 日本語 🎉\ttabs  and  spaces\n\n"
            else:
                text = "\n".join(sentence(rng, rng.randint(3, 25)) for _ in range(rng.randint(1, 4)))
            row = {"id": f"d{n}", "text": text, "shard": s}
            if cluster:  # near-dup clusters; an exact copy is in its original's cluster, as MinHash ensures
                row["cluster_id"] = src["cluster_id"] if i % 5 == 0 and src else (f"c{n // 4}" if n % 3 else None)
            rows.append(row)
    paths = []
    for s in range(shards):
        df = pl.DataFrame([r for r in rows if r["shard"] == s]).drop("shard")
        paths.append(root / "data" / f"part-{s:05d}.parquet")
        write_parquet(df, paths[-1])
    write_manifest(root, paths)
    return rows


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("corpus")
    return root, make_corpus(root)


@pytest.fixture(scope="module")
def bpe(corpus, tmp_path_factory) -> Path:
    return train_tokenizer(corpus[0], tmp_path_factory.mktemp("tok") / "bpe", kind="bpe", vocab_size=400)


def decoded(tok: Tokenizer, prefix: Path, eod: int = 0) -> list[str]:
    ds = IndexedDataset(prefix)
    out = []
    for i in range(len(ds)):
        ids = ds[i].tolist()
        assert ids[-1] == eod  # EOD appended to every document
        out.append(tok.decode(ids[:-1], skip_special_tokens=False))
    return out


def test_train_save_and_hf_load_identical(corpus, bpe, tmp_path):
    from transformers import PreTrainedTokenizerFast

    texts = [r["text"] for r in corpus[1]] + ["<|user|>hi<|end|><|assistant|>yo<|end|><|endoftext|>"]
    for folder in (bpe, train_tokenizer(corpus[0], tmp_path / "uni", kind="unigram", vocab_size=350)):
        assert {p.name for p in folder.iterdir()} >= {"tokenizer.json", "tokenizer_config.json",
                                                      "special_tokens_map.json"}
        tok = load_tokenizer(folder)
        assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
        hf = PreTrainedTokenizerFast.from_pretrained(str(folder))
        assert hf.eos_token == "<|endoftext|>" and hf.pad_token == "<|pad|>"
        for t in texts:
            ids = tok.encode(t, add_special_tokens=False).ids
            assert hf(t)["input_ids"] == ids
            assert hf.decode(ids) == t == tok.decode(ids, skip_special_tokens=False)  # byte-level: lossless
    assert load_tokenizer(bpe / "tokenizer.json").get_vocab_size() == load_tokenizer(bpe).get_vocab_size()


def test_import_bare_tokenizer_json(bpe, tmp_path):
    bare = tmp_path / "bare.json"
    bare.write_bytes((bpe / "tokenizer.json").read_bytes())
    out = import_tokenizer(bare, tmp_path / "imported")
    assert tokenizer_hash(out) == tokenizer_hash(bpe)
    assert (out / "tokenizer_config.json").exists()
    # the command the top-level help promises: `corpus tokenizer import` (there was only `train --from`)
    from helpers import run_cli

    res = run_cli("tokenizer", "import", str(bare), "-o", str(tmp_path / "by-cli"))
    assert res.returncode == 0, res.stderr
    assert tokenizer_hash(tmp_path / "by-cli") == tokenizer_hash(bpe)


def test_round_trip_in_order(corpus, bpe, tmp_path):
    root, rows = corpus
    res = tokenize_corpus(root, bpe, tmp_path / "tok", workers=1, split=(1, 0, 0))
    tok = load_tokenizer(bpe)
    assert decoded(tok, tmp_path / "tok" / "train") == [r["text"] for r in rows]
    assert res["splits"]["validation"]["documents"] == 0 and res["splits"]["test"]["documents"] == 0
    for s in SPLITS:
        assert verify(tmp_path / "tok" / s, bpe) == []
    side = IndexedDataset(tmp_path / "tok" / "train").meta
    assert side["tokenizer_hash"] == tokenizer_hash(bpe) and side["vocab_size"] == tok.get_vocab_size()
    assert side["corpus_hash"] == (root / "manifest.json").read_text().split('"content_hash": "')[1][:64]
    assert side["split"] == "train" and side["dtype"] == "uint16" and side["eod_id"] == 0
    assert side["special_token_ids"]["<|pad|>"] == 1


def test_parallel_splits_no_duplicate_straddles_and_resume(tmp_path, bpe):
    root = tmp_path / "corpus"
    rows = make_corpus(root, shards=4, docs=30, seed=1, cluster=True)
    out = tmp_path / "tok"
    res = tokenize_corpus(root, bpe, out, workers=2, keep_parts=True)
    tok = load_tokenizer(bpe)
    got = {s: decoded(tok, out / s) for s in SPLITS}
    assert sum(len(v) for v in got.values()) == len(rows)
    # Each split holds its documents in corpus order, exactly.
    keys = group_keys([r["text"] for r in rows], [r["cluster_id"] for r in rows])
    assigned = assign_splits(keys, (0.8, 0.1, 0.1), 0)
    for i, s in enumerate(SPLITS):
        assert got[s] == [r["text"] for r, a in zip(rows, assigned, strict=True) if a == i]
    assert min(len(got["train"]), len(got["validation"]) + len(got["test"])) > 0
    # No exact duplicate (up to case/whitespace) and no cluster spans two splits.
    split_of_norm: dict[str, set[str]] = {}
    split_of_cluster: dict[str, set[str]] = {}
    for r, a in zip(rows, assigned, strict=True):
        split_of_norm.setdefault(" ".join(r["text"].lower().split()), set()).add(SPLITS[a])
        if r["cluster_id"] is not None:
            split_of_cluster.setdefault(r["cluster_id"], set()).add(SPLITS[a])
    assert all(len(v) == 1 for v in split_of_cluster.values())
    assert all(len(v) == 1 for v in split_of_norm.values())  # exact dups (up to case/space) together
    assert sum(1 for r in rows if r["text"].startswith("  ")) > 5  # duplicates were planted

    before = {p.name: p.read_bytes() for p in out.glob("*.*") if p.suffix in (".bin", ".idx")}
    again = tokenize_corpus(root, bpe, out, workers=2)
    assert again.get("resumed") is True
    (out / "tokenize.json").unlink()
    (out / "parts" / "00001-0000-part-00001.done.json").unlink()
    third = tokenize_corpus(root, bpe, out, workers=1)
    assert third["resumed_pieces"] == 3 and third["splits"] == res["splits"]
    assert {p.name: p.read_bytes() for p in out.glob("*.*") if p.suffix in (".bin", ".idx")} == before
    assert not (out / "parts").exists()
    # Cutting shards into many small row ranges (units of work) gives the same bytes.
    fine = tokenize_corpus(root, bpe, tmp_path / "fine", workers=1, piece_bytes=300, batch_rows=7)
    assert fine["pieces"] > 20
    assert {p.name: p.read_bytes() for p in (tmp_path / "fine").glob("*.*") if p.suffix in (".bin", ".idx")} == before


def _flip(path: Path, at: int = 0) -> None:
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0x01  # bit 0 of a token's low byte: still a valid id
    path.write_bytes(bytes(raw))


def test_rerun_rewrites_damaged_outputs_and_parts(tmp_path, corpus, bpe):
    root, _ = corpus
    out = tmp_path / "tok"
    first = tokenize_corpus(root, bpe, out, workers=1, keep_parts=True)
    good = {p.name: p.read_bytes() for p in out.glob("*.*") if p.suffix in (".bin", ".idx")}
    _flip(out / "train.bin", 10)
    again = tokenize_corpus(root, bpe, out, workers=1, keep_parts=True)  # not "resumed" over a corrupt set
    assert not again.get("resumed") and again["resumed_pieces"] == first["pieces"]
    assert {p.name: p.read_bytes() for p in out.glob("*.*") if p.suffix in (".bin", ".idx")} == good
    part = sorted((out / "parts").glob("*/train.bin"))[1]
    _flip(part, 4)
    (out / "tokenize.json").unlink()
    third = tokenize_corpus(root, bpe, out, workers=1)
    assert third["resumed_pieces"] == first["pieces"] - 1  # that piece was redone, not merged corrupt
    assert {p.name: p.read_bytes() for p in out.glob("*.*") if p.suffix in (".bin", ".idx")} == good
    assert all(verify(out / s) == [] for s in SPLITS)


def test_a_second_tokenize_into_a_locked_folder_fails_clearly(tmp_path, corpus, bpe):
    import os

    from helpers import run_cli

    from corpus.lock import RunLock

    root, _ = corpus
    out = tmp_path / "tok"
    with RunLock(out):
        res = run_cli("tokenize", str(root), "--tokenizer", str(bpe), "--out", str(out), "-w", "1")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [f"error: another run (pid {os.getpid()}) is writing {out}; wait for it "
                                               "or stop it first"]
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing written


def test_split_assignment_deterministic_by_seed():
    keys = [f"doc {i}".encode() for i in range(2000)]
    a, b, c = assign_splits(keys, (0.8, 0.1, 0.1), 0), assign_splits(keys, (0.8, 0.1, 0.1), 0), \
        assign_splits(keys, (0.8, 0.1, 0.1), 1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(assign_splits(keys[::-1], (0.8, 0.1, 0.1), 0), a[::-1])  # order-independent
    shares = np.bincount(a, minlength=3) / len(keys)
    assert np.allclose(shares, [0.8, 0.1, 0.1], atol=0.03)
    assert set(assign_splits(keys, (0, 1, 0), 5).tolist()) == {1}
    g = group_keys(["A  b", "a\u00a0b\n", "x", "y"], [None, None, "k", "k"])
    assert g[0] == g[1] and g[2] == g[3] and g[0] != g[2]


def test_int32_shards_for_a_big_vocab(tmp_path):
    words = [f"w{i}" for i in range(70_000)]
    vocab = {t: i for i, t in enumerate(["<|endoftext|>", "[UNK]", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    folder = save_tokenizer(tok, tmp_path / "wl")
    root = tmp_path / "corpus"
    texts = ["w1 w69999 w65535", "w0 w65500", "w5"]
    write_parquet(pl.DataFrame({"id": ["a", "b", "c"], "text": texts}), root / "data" / "p.parquet")
    write_manifest(root, [root / "data" / "p.parquet"])
    tokenize_corpus(root, folder, tmp_path / "tok", workers=1, split=(1, 0, 0))
    ds = IndexedDataset(tmp_path / "tok" / "train")
    assert ds.dtype == np.int32 and (tmp_path / "tok" / "train.idx").read_bytes()[17] == 4
    assert ds[0].tolist() == [3, 70001, 65537, 0]
    assert verify(tmp_path / "tok" / "train", folder) == []


def test_assistant_loss_mask(bpe, tmp_path):
    root = tmp_path / "corpus"
    chat = "<|system|>be brief<|end|><|user|>hi there<|end|><|assistant|>hello<|end|>"
    write_parquet(pl.DataFrame({"id": ["a", "b"], "text": [chat, "plain"]}), root / "data" / "p.parquet")
    write_manifest(root, [root / "data" / "p.parquet"])
    tokenize_corpus(root, bpe, tmp_path / "tok", workers=1, split=(1, 0, 0), loss_mask="assistant")
    ds = IndexedDataset(tmp_path / "tok" / "train")
    tok = load_tokenizer(bpe)
    ids, mask = ds[0].tolist(), ds.mask(0).tolist()
    targets = [i for i, m in zip(ids, mask, strict=True) if m]
    assert tok.decode(targets, skip_special_tokens=False) == "hello<|end|>"
    assert ds.mask(1).tolist() == [0] * len(ds[1])
    assert verify(tmp_path / "tok" / "train", bpe) == []


def test_tokenize_operator_in_a_pipeline(tmp_path, bpe):
    from corpus import InputSpec, Pipeline, registry
    from corpus.stages.tokenize import Tokenize

    assert registry.get("tokenize") is Tokenize
    # a missing tokenizer stops the pipeline as it is built, not once every document is read
    with pytest.raises(ValueError, match=r"no tokenizer.json at .*nope \(train one with `corpus tokenizer train`\)"):
        Tokenize(tokenizer=str(tmp_path / "nope"))
    (tmp_path / "other.json").write_text('{"version": "1.0"}')  # JSON, not a tokenizer: was a traceback
    with pytest.raises(ValueError, match=r"other.json: not a tokenizer.json the tokenizers library reads \(Model"):
        Tokenize(tokenizer=str(tmp_path / "other.json"))

    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jsonl").write_text("".join(f'{{"text": "document number {i} here"}}\n' for i in range(20)))
    res = Pipeline([Tokenize(tokenizer=str(bpe), split=[0.5, 0.25, 0.25])]).run(
        inputs=[InputSpec(source="s", path=str(src))], output=tmp_path / "out", workers=1, quiet=True)
    tok = tmp_path / "out" / "tokens"  # a sink's artifacts, published in the output folder
    total = sum(len(IndexedDataset(tok / s)) for s in SPLITS)
    assert total == 20 and all(verify(tok / s, bpe) == [] for s in SPLITS)
    assert len(pl.read_parquet(tmp_path / "out" / "data")) == 20
    assert res.balance[0]["kept"] == 20  # documents pass a sink unchanged
    from corpus.catalog import Catalog

    figures = dict(Catalog(tmp_path / "out" / "catalog.duckdb", create=False).query(
        "SELECT name, value FROM stage_figures WHERE stage = '01-tokenize'"))
    sidecars = [json.loads((tok / f"{s}.json").read_text()) for s in SPLITS]
    assert sum(figures[f"{s}_tokens"] for s in SPLITS) == sum(side["tokens"] for side in sidecars)
    from helpers import run_cli  # corpus verify checks the published token shards too

    assert run_cli("verify", str(tmp_path / "out")).returncode == 0
    data = bytearray((tok / "train.bin").read_bytes())
    data[0] ^= 1
    (tok / "train.bin").write_bytes(bytes(data))
    bad = run_cli("verify", str(tmp_path / "out"))
    assert bad.returncode == 1 and "tokens/train.bin:" in bad.stdout and "sha256" in bad.stdout, bad.stdout


@pytest.mark.parametrize("split", ["nan,0.5,0.5", "1.5,-0.5,0", "inf,0,0", "-0.5,1,0.5"])
def test_split_fractions_must_be_finite_and_in_range(tmp_path, capsys, split):
    """`--split nan,0.5,0.5` passed (nan fails no comparison) and tokenize.json held NaN; `--split -0.5,1,0.5`
    was argparse's "expected one argument" (a value starting with '-' was taken for an option)."""
    from corpus.cli import main

    assert main(["tokenize", str(tmp_path / "c"), "--tokenizer", str(tmp_path / "t"), "--out", str(tmp_path / "o"),
                 "--split", split]) == 2
    assert f"--split must be three fractions in [0, 1] adding up to 1, got {split}" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_tokenize_deletes_only_its_own_piece_files(tmp_path, capsys, corpus, bpe):
    """A user's own parts/ folder in the output folder was deleted with the piece files (rmtree)."""
    from corpus.cli import main

    out = tmp_path / "proj"
    (out / "parts").mkdir(parents=True)
    (out / "parts" / "notes.txt").write_text("important")
    assert main(["tokenize", str(corpus[0]), "--tokenizer", str(bpe), "-o", str(out), "-w", "1"]) == 0
    assert [p.name for p in (out / "parts").rglob("*")] == ["notes.txt"]  # its pieces gone, the user's file kept
    assert (out / "parts" / "notes.txt").read_text() == "important"
    assert main(["tokenize", str(corpus[0]), "--tokenizer", str(bpe), "-o", str(tmp_path / "new"), "-w", "1"]) == 0
    assert not (tmp_path / "new" / "parts").exists()  # its own parts/ still removed whole


def test_pipeline_tokenize_reruns_for_a_retrained_tokenizer_and_verify_checks_the_published_set(
        tmp_path, capsys, corpus, bpe):
    """A retrained tokenizer at the same path was not a new stage key (the stage resumed over the old tokens);
    `corpus tokenize -o OUT/tokens` overwrote a run's published set, which verify then passed."""
    import shutil

    from corpus import InputSpec, Pipeline
    from corpus.cli import main
    from corpus.stages.tokenize import Tokenize

    tok = tmp_path / "tok"
    shutil.copytree(bpe, tok)
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jsonl").write_text("".join(f'{{"text": "document number {i} here"}}\n' for i in range(20)))
    out = tmp_path / "out"

    def run() -> dict:
        Pipeline([Tokenize(tokenizer=str(tok))]).run(inputs=[InputSpec(source="s", path=str(src))], output=out,
                                                      workers=1, quiet=True)
        return json.loads((out / "tokens" / "train.json").read_text())

    assert run()["tokenizer_hash"] == tokenizer_hash(bpe)
    train_tokenizer(corpus[0], tok, vocab_size=300)  # retrained in place
    side = run()
    assert side["tokenizer_hash"] == tokenizer_hash(tok) != tokenizer_hash(bpe) and side["vocab_size"] == 300
    assert main(["verify", str(out)]) == 0

    for inside in ("tokens", "tokens/sub"):  # refused before anything is written, as data/ and work/ are
        assert main(["tokenize", str(out), "--tokenizer", str(tok), "-o", str(out / inside), "--seed", "7"]) == 2
        assert "rewrite its tokens/ folder" in capsys.readouterr().err
    assert main(["shards", "merge", str(out / "tokens" / "train"), "-o", str(out / "tokens" / "all")]) == 2
    assert "rewrite its tokens/ folder" in capsys.readouterr().err
    assert not (out / "tokens" / ".lock").exists() and not (out / "tokens" / "sub").exists()
    assert main(["verify", str(out)]) == 0
    # written there anyway (by hand): verify compares the set with the run's own tokenize stage and listing
    assert main(["tokenize", str(out), "--tokenizer", str(tok), "-o", str(tmp_path / "s7"), "--seed", "7",
                 "-w", "1"]) == 0
    for f in (tmp_path / "s7").iterdir():
        shutil.copy(f, out / "tokens" / f.name)
    capsys.readouterr()
    assert main(["verify", str(out)]) == 1
    said = capsys.readouterr().out
    assert "tokens/train.json: written with split_seed 7 (the run's tokenize stage: 0)" in said
    assert "tokens/.lock: not a file the run published here" in said


def test_a_tokenizer_without_eod_or_a_missing_group_column_is_refused_by_check(tmp_path, capsys, bpe):
    """`corpus check` passed both; the run failed only when the stage was reached (eod), or grouped by text
    without a word (a group_column typo)."""
    from corpus.cli import main
    from corpus.stages.tokenize import Tokenize

    wl = Tokenizer(models.WordLevel({"[UNK]": 0, "alpha": 1}, unk_token="[UNK]"))
    wl.pre_tokenizer = pre_tokenizers.Whitespace()
    (tmp_path / "tokwl").mkdir()
    wl.save(str(tmp_path / "tokwl" / "tokenizer.json"))
    with pytest.raises(ValueError, match="tokenizer.json: the tokenizer has no end-of-document token"):
        Tokenize(tokenizer=str(tmp_path / "tokwl"))
    (tmp_path / "a.jsonl").write_text('{"id": "a", "text": "alpha"}\n')
    config = ("output: {out}\ninputs:\n  - source: s\n    path: {inp}\n    id_key: id\n"
              "pipeline:\n  - op: tokenize\n    tokenizer: {tok}\n")
    for name, tok, extra in (("eod", tmp_path / "tokwl", ""), ("group", bpe, "    group_column: nope\n"),
                             ("ok", bpe, "    group_column: id\n")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(config.format(out=tmp_path / name, inp=tmp_path / "a.jsonl", tok=tok) + extra)
        assert main(["check", str(path)]) == (0 if name == "ok" else 2)
    err = capsys.readouterr().err
    assert "no end-of-document token" in err and "group_column 'nope' is not a column of the documents" in err
    assert not (tmp_path / "eod").exists()


def test_an_out_that_is_a_file_is_refused_before_any_work(tmp_path, capsys, corpus, bpe):
    """Training ran to the end, then `[Errno 17] File exists`; tokenize said the same raw errno."""
    from corpus.cli import main

    (tmp_path / "f.jsonl").write_text("mine")
    for cmd in (["tokenizer", "train", str(corpus[0]), "--vocab-size", "300"], ["tokenizer", "import", str(bpe)],
                ["tokenize", str(corpus[0]), "--tokenizer", str(bpe)]):
        assert main([*cmd, "-o", str(tmp_path / "f.jsonl")]) == 2
        assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'f.jsonl'} exists and is not a folder"
    assert (tmp_path / "f.jsonl").read_text() == "mine"


def test_tokenize_starts_workers_after_its_checks_and_no_more_than_pieces(tmp_path, capsys, monkeypatch, bpe):
    """-w 16 started 16 processes before a missing manifest was found (26 s), and -w 64 on a one-piece corpus
    started 64."""
    from corpus import executor
    from corpus.cli import main

    started: list[int] = []
    real = executor.Pool.__init__

    def pool(self, workers):
        started.append(workers)
        real(self, 1)  # the pieces run here: what is tested is how many were asked for

    monkeypatch.setattr(executor.Pool, "__init__", pool)
    assert main(["tokenize", str(tmp_path / "nonexist"), "--tokenizer", str(bpe), "-o", str(tmp_path / "a"),
                 "-w", "16"]) == 2
    assert "no manifest.json" in capsys.readouterr().err and started == []
    root = tmp_path / "one"
    write_parquet(pl.DataFrame({"id": ["a", "b"], "text": ["one doc", "another"]}), root / "data" / "p.parquet")
    write_manifest(root, [root / "data" / "p.parquet"])
    assert main(["tokenize", str(root), "--tokenizer", str(bpe), "-o", str(tmp_path / "b"), "-w", "64"]) == 0
    assert started == [1]


def test_training_cuts_long_runs_without_whitespace(tmp_path, caplog):
    """One 300,000-character word kept the BPE trainer busy for minutes (superlinear in a piece's length)."""
    from corpus.stages.tokenizer import MAX_RUN, _cut_runs

    text = "x" * (5 * MAX_RUN + 7) + " hello " + "y" * MAX_RUN
    cut = _cut_runs(text)
    assert cut.replace("\n", "") == text and max(map(len, cut.split())) == MAX_RUN
    assert _cut_runs("plain words") == "plain words"
    root = tmp_path / "c"
    write_parquet(pl.DataFrame({"text": ["ab" * 20_000, "hello world", "hello there"]}), root / "data" / "p.parquet")
    write_manifest(root, [root / "data" / "p.parquet"])
    with caplog.at_level("WARNING"):
        train_tokenizer(root, tmp_path / "tok", vocab_size=300)
    said = [r.getMessage() for r in caplog.records if "without whitespace" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("1 of the 3 documents have runs of more than 1,000 characters")
    enc = load_tokenizer(tmp_path / "tok").encode("ab" * 20_000)  # tokenize itself is unchanged: whole, lossless
    assert load_tokenizer(tmp_path / "tok").decode(enc.ids) == "ab" * 20_000


def test_tokenizer_train_progress_ends_with_every_document_read(tmp_path, capsys):
    """Without a manifest (no total) the last line was a count from a second before the end: 'reading 82'."""
    from corpus.progress import Progress

    root = tmp_path / "c"
    write_parquet(pl.DataFrame({"text": [f"doc {i} words here" for i in range(30)]}), root / "data" / "p.parquet")
    train_tokenizer(root, tmp_path / "tok", vocab_size=300, batch_rows=10, progress=Progress(bars=False))
    lines = [x for x in capsys.readouterr().err.splitlines() if "tokenizer train: reading" in x]
    assert lines[-1].split()[-2:] == ["30", "docs"], lines


def test_workers_0_is_one_per_core_up_to_the_pieces(corpus, bpe, tmp_path, monkeypatch):
    """workers=0 (documented: one per core) started a pool of one worker."""
    import contextlib

    # the faked core count sets RAYON_NUM_THREADS where the tokenizer loads: restored after the test
    monkeypatch.delenv("RAYON_NUM_THREADS", raising=False)

    import corpus.executor as executor

    started = []

    @contextlib.contextmanager
    def pool(n, *args, **kwargs):  # the pool's size, its work done here
        started.append(n)
        yield lambda fn, items: [fn(x) for x in items]

    monkeypatch.setattr(executor, "worker_pool", pool)
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    root, _ = corpus
    res = tokenize_corpus(root, bpe, tmp_path / "tok", workers=0, piece_bytes=300, pool_map=None)
    assert started == [min(64, res["pieces"])] and res["pieces"] > 1
