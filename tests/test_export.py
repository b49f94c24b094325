"""Transformation: `corpus export` to JSONL, Parquet and a Hugging Face datasets folder with a chosen
column set, each shard checked against the manifest; chat and instruction records rendered through a
tokenizer's chat template (the chat_template operator) into token shards with an assistant mask."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from helpers import read_all, run_cli

from corpus import InputSpec, Pipeline
from corpus.export import ExportError, export
from corpus.stages.signals import QualitySignals


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("export")
    src = d / "in.jsonl"
    src.write_text("".join(json.dumps({"text": f"Document number {i}. It has a few words.", "n": i}) + "\n"
                           for i in range(30)))
    Pipeline([QualitySignals(groups=["counts"])]).run([InputSpec(source="s", path=str(src))], d / "out",
                                                      workers=1, shard_max_bytes=1024, quiet=True)
    assert len(list((d / "out" / "data").glob("*.parquet"))) > 1  # several shards
    return d / "out"


def _corpus(out: Path) -> pl.DataFrame:
    return read_all(out / "data").sort("row_id")


def test_jsonl_and_parquet_with_columns(corpus_dir, tmp_path):
    want = _corpus(corpus_dir)
    done = export(corpus_dir, tmp_path / "j", "jsonl", ["id", "text", "n_words"], compression=".gz")
    assert (done.docs, done.columns) == (want.height, ["id", "text", "n_words"])
    got = pl.concat([pl.read_ndjson(p) for p in sorted((tmp_path / "j").glob("*.jsonl.gz"))])
    assert got.columns == ["id", "text", "n_words"] and got["id"].to_list() == want["id"].to_list()
    export(corpus_dir, tmp_path / "p", "parquet")
    got = pl.concat([pl.read_parquet(p) for p in sorted((tmp_path / "p").glob("*.parquet"))])
    assert got.equals(want)


def test_hf_folder_opens_with_load_from_disk(corpus_dir, tmp_path):
    datasets = pytest.importorskip("datasets")
    proc = run_cli("export", str(corpus_dir), str(tmp_path / "hf"), "--format", "hf", "--columns", "text,id,n_chars")
    assert proc.returncode == 0, proc.stderr
    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    want = _corpus(corpus_dir)
    assert ds.column_names == ["text", "id", "n_chars"] and ds.num_rows == want.height
    assert ds["id"] == want["id"].to_list() and ds["n_chars"] == want["n_chars"].to_list()
    assert not list(tmp_path.glob(".hf.tmp-*"))  # the temporary folder is gone
    # Exported again into its own folder (its marker lists the files): replaced whole.
    again = run_cli("export", str(corpus_dir), str(tmp_path / "hf"), "--format", "hf", "--columns", "id,text")
    assert again.returncode == 0, again.stderr
    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    assert ds.column_names == ["id", "text"] and ds.num_rows == want.height
    assert not list(tmp_path.glob(".hf.tmp-*"))
    (tmp_path / "hf" / "notes.txt").write_text("mine")  # a file it does not write: still refused, and kept
    again = run_cli("export", str(corpus_dir), str(tmp_path / "hf"), "--format", "hf")
    assert again.returncode == 2 and "holds files this export would not replace (notes.txt)" in again.stderr
    assert (tmp_path / "hf" / "notes.txt").read_text() == "mine"
    assert datasets.load_from_disk(str(tmp_path / "hf")).num_rows == want.height


def test_an_empty_corpus_exports_empty_and_columns_named_twice_are_an_error(corpus_dir, tmp_path):
    """A corpus every document was dropped from exports an empty folder (hf: an empty dataset with the
    document columns), where jsonl and parquet wrote no folder and hf failed inside datasets."""
    datasets = pytest.importorskip("datasets")
    from corpus.stages.filter import LengthFilter

    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": "too short"}) + "\n")
    Pipeline([LengthFilter(min_words=50)]).run([InputSpec(source="s", path=str(src))], tmp_path / "empty",
                                               workers=1, quiet=True)
    for fmt in ("jsonl", "parquet"):
        for _ in range(2):  # and again into its own (empty but for the marker) folder
            done = export(tmp_path / "empty", tmp_path / fmt, fmt, ["id", "text"])
            assert done.docs == 0 and done.columns == ["id", "text"] and (tmp_path / fmt).is_dir()
    proc = run_cli("export", str(tmp_path / "empty"), str(tmp_path / "hf"), "--format", "hf")
    assert proc.returncode == 0, proc.stderr
    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    assert ds.num_rows == 0 and "text" in ds.column_names and "id" in ds.column_names
    parquet = run_cli("export", str(corpus_dir), str(tmp_path / "t"), "--format", "parquet", "--compression", ".gz")
    assert parquet.returncode == 2 and "--compression applies to --format jsonl only, not parquet" in parquet.stderr
    twice = run_cli("export", str(corpus_dir), str(tmp_path / "t"), "--columns", "id,text,id")
    assert twice.returncode == 2 and "column(s) id named more than once" in twice.stderr
    assert "Traceback" not in twice.stderr and not (tmp_path / "t").exists()


def test_an_export_writes_only_into_a_folder_of_its_own(corpus_dir, tmp_path):
    """Never into the corpus folder (into data/ it overwrote the shards), never over files it does not write;
    an earlier export of the same corpus to the same folder is written again."""
    import shutil

    corpus = tmp_path / "c"
    shutil.copytree(corpus_dir, corpus)
    files = sorted(p for p in corpus.rglob("*") if p.is_file())
    before = [p.read_bytes() for p in files]
    for dest, fmt in ((corpus / "data", "parquet"), (corpus, "jsonl"), (corpus / "hf", "hf")):
        with pytest.raises(ExportError, match="lies inside the corpus folder"):
            export(corpus, dest, fmt)
    assert sorted(p for p in corpus.rglob("*") if p.is_file()) == files and [p.read_bytes() for p in files] == before
    first = export(corpus, tmp_path / "j", "jsonl")
    assert export(corpus, tmp_path / "j", "jsonl").files == first.files  # its own files, again
    export(corpus, tmp_path / "j", "parquet")  # another format: the jsonl files it listed are replaced
    assert sorted(p.suffix for p in (tmp_path / "j").iterdir()) == [".json"] + [".parquet"] * first.files
    (tmp_path / "j" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"would not replace \(notes\.txt\)"):
        export(corpus, tmp_path / "j", "jsonl")
    assert (tmp_path / "j" / "notes.txt").read_text() == "mine"


def test_a_folder_no_export_wrote_is_never_replaced(corpus_dir, tmp_path):
    """A datasets save_to_disk folder of the user's own has the names an hf export writes: only the marker
    an export writes makes a folder replaceable, so it is refused for every format and left as it was."""
    datasets = pytest.importorskip("datasets")
    mine = tmp_path / "mine"
    datasets.Dataset.from_dict({"text": ["my own data"]}).save_to_disk(str(mine))
    assert (mine / "data-00000-of-00001.arrow").is_file()
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    for fmt in ("hf", "jsonl", "parquet"):
        with pytest.raises(ExportError, match=r"would not replace .*no earlier corpus export"):
            export(corpus_dir, mine, fmt)
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == before


def test_an_earlier_export_is_replaced_with_another_shard_count(corpus_dir, tmp_path):
    """An export folder (marker) of a corpus with several shards takes an export of a one-shard corpus, hf
    and jsonl: the earlier files all go, none left beside the new ones."""
    datasets = pytest.importorskip("datasets")
    src = tmp_path / "one.jsonl"
    src.write_text(json.dumps({"text": "A single short document here."}) + "\n")
    Pipeline([]).run([InputSpec(source="s", path=str(src))], tmp_path / "one", workers=1, quiet=True)
    many = len(list((corpus_dir / "data").glob("*.parquet")))
    for fmt, pattern in (("hf", "*.arrow"), ("jsonl", "*.jsonl.zst")):
        dest = tmp_path / f"x-{fmt}"
        assert export(corpus_dir, dest, fmt).files == many
        assert export(tmp_path / "one", dest, fmt).files == 1
        assert len(list(dest.glob(pattern))) == 1 and (dest / ".corpusforge-export.json").is_file()
        assert export(corpus_dir, dest, fmt).files == many  # and back
        assert len(list(dest.glob(pattern))) == many
    assert datasets.load_from_disk(str(tmp_path / "x-hf")).num_rows == _corpus(corpus_dir).height


def test_every_format_checks_the_shards(corpus_dir, tmp_path):
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(corpus_dir, damaged)
    shard = sorted((damaged / "data").glob("*.parquet"))[0]
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF  # same size, other bytes: only the hash can tell
    shard.write_bytes(bytes(data))
    for fmt in ("jsonl", "parquet", "hf"):
        proc = run_cli("export", str(damaged), str(tmp_path / f"x-{fmt}"), "--format", fmt)
        assert proc.returncode == 2 and shard.name in proc.stderr and "error:" in proc.stderr, proc.stderr
        assert not list((tmp_path / f"x-{fmt}").glob("*")) if (tmp_path / f"x-{fmt}").exists() else True
    with pytest.raises(ExportError, match="no column"):
        export(corpus_dir, tmp_path / "c", "jsonl", ["text", "nope"])


# ---------------------------------------------------------------- chat template


@pytest.fixture(scope="module")
def chat_tokenizer(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    from corpus.stages.tokenizer import SPECIAL_TOKENS, save_tokenizer

    words = "hi hello there bye be nice ok two plus is four what one".split()
    vocab = {w: i for i, w in enumerate(list(SPECIAL_TOKENS) + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|pad|>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    save_tokenizer(tok, out)
    return out


def test_chat_and_instruction_records_render_and_tokenize_with_an_assistant_mask(tmp_path, chat_tokenizer):
    from corpus.stages.chat import ChatTemplate
    from corpus.stages.tokenize import Tokenize

    chats = tmp_path / "chat.jsonl"
    chats.write_text("".join(json.dumps(r) + "\n" for r in [
        {"messages": [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"},
                      {"role": "assistant", "content": "hello there"}]},
        {"messages": [{"from": "human", "value": "what is two plus two"}, {"from": "gpt", "value": "four"}]},
        {"messages": [{"role": "user", "content": "hi"}]},  # no reply: not a conversation to train on
        {"messages": []},  # empty: quarantined by the reader
    ]))
    instr = tmp_path / "instr.jsonl"
    instr.write_text(json.dumps({"prompt": "hi", "response": "bye", "system": "be nice"}) + "\n")
    ops = [ChatTemplate(tokenizer=str(chat_tokenizer), role_map={"human": "user", "gpt": "assistant"},
                        role_key="role", content_key="content"),
           Tokenize(tokenizer=str(chat_tokenizer), split=[1.0, 0.0, 0.0], loss_mask="assistant")]
    inputs = [InputSpec(source="chat", path=str(chats), text_key="messages", text_json=True),
              InputSpec(source="instr", path=str(instr), text_key="prompt")]
    # the second record's from/value keys are not this source's role/content mapping: rejected with the cause
    result = Pipeline(ops).run(inputs, tmp_path / "out", workers=1)
    assert all(b["ok"] for b in result.balance)
    data = read_all(tmp_path / "out" / "data").sort("row_id")
    assert data["text"].to_list() == [
        "<|system|>be nice<|end|><|user|>hi<|end|><|assistant|>hello there<|end|>",
        "<|system|>be nice<|end|><|user|>hi<|end|><|assistant|>bye<|end|>"]
    rejected = read_all(tmp_path / "out" / "rejected").sort("row_id")
    assert rejected["reject_reason"].to_list() == ["invalid_chat", "invalid_chat"]
    assert "needs 'role' and 'content'" in rejected["chat_error"][0]
    assert "no assistant message" in rejected["chat_error"][1]
    assert rejected["text"][1] == json.dumps([{"role": "user", "content": "hi"}])  # kept as read
    q = pl.read_parquet(tmp_path / "out" / "quarantine" / "*.parquet")
    assert q["kind"].to_list() == ["empty_text"]
    # the token shards mark the assistant replies (and their end markers) as targets, for the SFT plugin
    from corpus.shards import IndexedDataset

    ds = IndexedDataset(tmp_path / "out" / "tokens" / "train")
    tok = json.loads((chat_tokenizer / "tokenizer.json").read_text())["model"]["vocab"]
    first = [int(t) for t in ds[0]]
    targets = [t for t, m in zip(first, ds.mask(0), strict=True) if m]
    assert targets == [tok["hello"], tok["there"], tok["<|end|>"]]
