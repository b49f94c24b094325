"""Token shard suites: the token contract (ids below the vocab, an EOD after every document, no empty
documents, index and sidecar consistent with the files) run by GX on the files and documents tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_cli

pytest.importorskip("great_expectations")

from corpus.shards import paths, write_documents  # noqa: E402
from corpus.validation import suggest_suite, validate_input  # noqa: E402
from corpus.validation.suites import load_suite  # noqa: E402

EOD, VOCAB = 0, 100
OUT_OF_VOCAB = "expect_column_pair_values_a_to_be_greater_than_b(vocab_size, max_token)"
INDEX_VS_BIN = "expect_column_pair_values_to_be_equal(bin_bytes, index_bin_bytes)"
NO_EMPTY = "expect_column_values_to_be_between(length)"
EOD_LAST = "expect_column_pair_values_to_be_equal(last_token, eod_id)"


def shard_set(prefix: Path, docs: list[list[int]]) -> Path:
    write_documents(prefix, docs, VOCAB, meta={"eod_id": EOD, "eod_appended": True})
    return prefix


def good_docs() -> list[list[int]]:
    return [[5 + i, 7, 9, EOD] for i in range(30)]


@pytest.fixture(scope="module")
def contract(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tokens")
    shard_set(folder / "train", good_docs())
    suggest_suite(folder / "train", folder / "tokens.json")
    return folder / "tokens.json"


def failed(doc: dict) -> list[str]:
    return doc["failed"]


def test_the_token_contract_holds_for_sound_shards(contract, tmp_path):
    assert load_suite(contract).kind == "tokens"
    shard_set(tmp_path / "train", good_docs())
    shard_set(tmp_path / "validation", good_docs()[:5])
    doc = validate_input(tmp_path, contract, workers=1)  # a folder: every set in it
    assert doc["success"], [r for r in doc["expectations"] if not r["success"]]
    assert doc["rows"] == 35
    tables = {r["label"]: r["table"] for r in doc["expectations"]}
    assert tables[INDEX_VS_BIN] == "files" and tables[OUT_OF_VOCAB] == "documents"


def test_an_out_of_vocab_token_names_the_document(contract, tmp_path):
    docs = good_docs()
    docs[12] = [5, 150, EOD]
    doc = validate_input(shard_set(tmp_path / "train", docs), contract, workers=1)
    assert failed(doc) == [OUT_OF_VOCAB]
    r = next(r for r in doc["expectations"] if r["label"] == OUT_OF_VOCAB)
    assert r["unexpected_count"] == 1 and r["examples"][0]["value"] == {"vocab_size": 100, "max_token": 150}
    assert r["examples"][0]["row_id"] == 13  # document 12 of the first set


def test_empty_documents_and_a_missing_eod_are_named(contract, tmp_path):
    docs = good_docs()
    docs[3] = []
    docs[4] = [5, 6, 7]
    doc = validate_input(shard_set(tmp_path / "train", docs), contract, workers=1)
    assert failed(doc) == [NO_EMPTY, EOD_LAST]
    by = {r["label"]: r for r in doc["expectations"]}
    assert by[NO_EMPTY]["unexpected_count"] == 1 and by[EOD_LAST]["unexpected_count"] == 2


def test_a_truncated_shard_fails_the_size_and_hash_expectations(contract, tmp_path):
    prefix = shard_set(tmp_path / "train", good_docs())
    binf = paths(prefix)["bin"]
    binf.write_bytes(binf.read_bytes()[:-6])  # the last three uint16 tokens are gone
    doc = validate_input(prefix, contract, workers=1)
    assert failed(doc) == [INDEX_VS_BIN, "expect_column_pair_values_to_be_equal(bin_sha256, sidecar_bin_sha256)",
                           EOD_LAST]
    r = next(r for r in doc["expectations"] if r["label"] == INDEX_VS_BIN)
    assert r["examples"][0]["value"] == {"bin_bytes": 234, "index_bin_bytes": 240}


def test_a_token_count_unlike_the_sidecars_is_named(contract, tmp_path):
    prefix = shard_set(tmp_path / "train", good_docs())
    side = paths(prefix)["json"]
    meta = json.loads(side.read_text())
    side.write_text(json.dumps({**meta, "tokens": meta["tokens"] + 1}))
    doc = validate_input(prefix, contract, workers=1)
    assert failed(doc) == ["expect_column_pair_values_to_be_equal(tokens, sidecar_tokens)"]


def test_suite_and_input_kinds_must_agree(contract, tmp_path):
    (tmp_path / "d.parquet").write_bytes(b"")
    with pytest.raises(ValueError, match="a token suite checks token shard sets"):
        validate_input(tmp_path / "d.parquet", contract)
    docs_suite = tmp_path / "docs.json"
    docs_suite.write_text(json.dumps({"name": "d", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "text"}}]}))
    with pytest.raises(ValueError, match="holds token shards; this is a documents suite"):
        validate_input(shard_set(tmp_path / "train", good_docs()), docs_suite)


@pytest.mark.slow
def test_cli_fails_a_broken_token_set(contract, tmp_path):
    docs = good_docs()
    docs[0] = [5, 150, EOD]
    prefix = shard_set(tmp_path / "train", docs)
    r = run_cli("validate", str(prefix), "--suite", str(contract), "-w", "1")
    assert r.returncode == 1, r.stderr
    assert f"FAIL {OUT_OF_VOCAB}: 1 of 30 rows unexpected" in r.stdout
