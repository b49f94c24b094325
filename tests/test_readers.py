"""Input readers: planning, every format, every quarantine kind, chunking and damaged files.

All inputs are real files written to tmp_path; every bad record is checked for its kind, its line
number and its raw bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from corpus.readers import InputError, InputSpec, ReadTask, plan_tasks, read_task
from corpus.schema import DOC_SCHEMA, QUARANTINE_KINDS, QUARANTINE_SCHEMA

ROOT = Path(__file__).resolve().parent.parent


# ----- helpers ---------------------------------------------------------------------------
def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def jsonl(records: list) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)


def one_task(path: Path, **kw) -> ReadTask:
    tasks = plan_tasks([InputSpec(source=kw.pop("source", "src"), path=str(path), **kw)])
    assert len(tasks) == 1
    return tasks[0]


def read(task: ReadTask, chunk_bytes: int = 32 << 20) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    chunks = list(read_task(task, chunk_bytes))
    for c in chunks:
        assert c.docs.schema == pl.Schema(DOC_SCHEMA)
        assert c.bad.schema == pl.Schema(QUARANTINE_SCHEMA)
        assert c.seen == c.docs.height + c.bad.height
        assert c.docs["row_id"].to_list() == [(task.index << 40) | r for r in c.docs["src_row"].to_list()]
    docs = pl.concat([c.docs for c in chunks]) if chunks else pl.DataFrame(schema=DOC_SCHEMA)
    bad = pl.concat([c.bad for c in chunks]) if chunks else pl.DataFrame(schema=QUARANTINE_SCHEMA)
    return docs, bad, sum(c.seen for c in chunks)


def read_path(path: Path, chunk_bytes: int = 32 << 20, **kw) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    return read(one_task(path, **kw), chunk_bytes)


# ----- JSONL: one case per quarantine kind -------------------------------------------------
GOOD = b'{"text": "good one", "k": 1}'
BAD_LINES = [
    ("invalid_json", b'{"text": "a" "b"}', "Expecting ',' delimiter: line 1 column 14"),
    ("invalid_json", b'{"text": "unterminated', "Unterminated string"),
    ("invalid_json", b'{"text": "a", "x": NaN}', "NaN is not valid JSON"),
    ("invalid_json", b'{"text": "a"} {"text": "b"}', "Extra data"),
    ("not_an_object", b"[1, 2]", "got array"),
    ("not_an_object", b'"just a string"', "got string"),
    ("not_an_object", b"42", "got number"),
    ("not_an_object", b"null", "got null"),
    ("not_an_object", b"true", "got boolean"),
    ("invalid_utf8", b'{"text": "caf\xe9"}', "invalid UTF-8 byte 0xe9 at byte 14"),
    ("invalid_utf8", b'{"text": "lone \\ud800 surrogate"}', "unpaired surrogate"),
    ("invalid_utf8", b'{"text": "ok", "id": "x\\udc00"}', "id field 'id' contains an unpaired surrogate"),
    ("missing_text", b'{"body": "no text key"}', "no field 'text'"),
    ("null_text", b'{"text": null}', "text field 'text' is null"),
    ("non_string_text", b'{"text": 5}', "text field 'text' is number, expected string"),
    ("non_string_text", b'{"text": 1.5}', "is number"),
    ("non_string_text", b'{"text": true}', "is boolean"),
    ("non_string_text", b'{"text": {"a": 1}}', "is object"),
    ("non_string_text", b'{"text": ["a"]}', "is array"),
    ("empty_text", b'{"text": ""}', "is empty"),
    ("empty_text", b'{"text": " \\t\\n\\u3000"}', "only whitespace"),
    ("nul_bytes", b'{"text": "a\\u0000b"}', "NUL"),
    ("too_large", b'{"text": "' + b"x" * 200 + b'"}', "200 bytes"),
    ("malformed_row", b'{"text": "ok", "id": {"nested": 1}}', "id field 'id' is object"),
]


@pytest.mark.parametrize(
    ("kind", "line", "message"), BAD_LINES, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(BAD_LINES)]
)
@pytest.mark.parametrize("chunk_bytes", [32 << 20, 40])
def test_jsonl_bad_record_kinds(tmp_path, kind, line, message, chunk_bytes):
    # good, blank, BAD, good: the bad record is line 3 and the blank line is not a record.
    path = write(tmp_path / "in.jsonl", GOOD + b"\n\n" + line + b"\n" + GOOD + b"\n")
    docs, bad, seen = read_path(path, chunk_bytes, id_key="id", max_doc_bytes=100)
    assert kind in QUARANTINE_KINDS
    assert bad.height == 1, bad
    row = bad.row(0, named=True)
    assert (row["kind"], row["line"], row["raw"], row["file"], row["source"]) == (kind, 3, line, "in.jsonl", "src")
    assert message in row["error"]
    assert "\n" not in row["error"]
    assert docs["src_row"].to_list() == [1, 4]
    assert seen == 3


def test_invalid_json_messages_are_short_and_exact(tmp_path):
    path = write(tmp_path / "x.jsonl", b'{"text": "a",, "b": 1}\n')
    _, bad, _ = read_path(path)
    assert bad["error"].to_list() == ["Expecting property name enclosed in double quotes: line 1 column 14"]


def test_texts_that_look_like_other_json_values_stay_strings(tmp_path):
    # polars turns 5 into "5" in a string column; real strings "5" must not be quarantined.
    texts = ["5", "-1.5e3", "true", "false", '{"a": 1}', "[1, 2]", "plain"]
    path = write(tmp_path / "x.jsonl", jsonl([{"text": t} for t in texts] + [{"text": 5}]))
    docs, bad, _ = read_path(path)
    assert docs["text"].to_list() == texts
    assert bad["kind"].to_list() == ["non_string_text"]
    assert bad["line"].to_list() == [len(texts) + 1]


def test_duplicate_keys_first_wins_on_both_paths(tmp_path):
    line = b'{"text": "first", "text": "second"}\n'
    fast = write(tmp_path / "fast.jsonl", line)
    slow = write(tmp_path / "slow.jsonl", line + b"{broken\n")  # forces the per-line path
    assert read_path(fast)[0]["text"].to_list() == ["first"]
    assert read_path(slow)[0]["text"].to_list() == ["first"]


def test_blank_lines_crlf_and_missing_final_newline(tmp_path):
    data = b'\n  \n{"text": "a"}\r\n\t\r\n{"text": "b"}\n\n{"text": "c"}'
    docs, bad, seen = read_path(write(tmp_path / "x.jsonl", data))
    assert docs["text"].to_list() == ["a", "b", "c"]
    assert docs["src_row"].to_list() == [3, 5, 7]
    assert (bad.height, seen) == (0, 3)
    # A bad CRLF line keeps its bytes without the line terminator.
    _, bad, _ = read_path(write(tmp_path / "y.jsonl", b'{"text": "a"}\r\n[1]\r\n'))
    assert bad.select("line", "raw").rows() == [(2, b"[1]")]


# ----- blank lines and byte order marks --------------------------------------------------------
def blank_of(task: ReadTask, chunk_bytes: int = 32 << 20) -> int:
    return sum(c.blank for c in read_task(task, chunk_bytes))


@pytest.mark.parametrize("chunk_bytes", [32 << 20, 16])
def test_blank_lines_are_counted(tmp_path, chunk_bytes):
    # lines = records + blank lines, whichever path (polars piece, per-line, tail) reads them
    jl = write(tmp_path / "x.jsonl", b'\n  \n{"text": "a"}\r\n\t\r\n[1]\n\n{"text": "c"}\n \n')
    docs, bad, seen = read_path(jl, chunk_bytes)
    assert (docs.height, bad.height, seen, blank_of(one_task(jl), chunk_bytes)) == (2, 1, 3, 5)
    tl = write(tmp_path / "l.txt", "one\n\n \u3000\ntwo\nbad \xff\n\n".encode("utf-8", "surrogateescape"))
    docs, bad, seen = read_path(tl, chunk_bytes, text_mode="line")
    assert (docs.height, seen, blank_of(one_task(tl, text_mode="line"), chunk_bytes)) == (3, 3, 3)
    cs = write(tmp_path / "c.csv", b"\ntext,n\n\na,1\n  \nb,2\n")
    docs, bad, seen = read_path(cs, chunk_bytes)
    assert (docs["text"].to_list(), seen, blank_of(one_task(cs), chunk_bytes)) == (["a", "b"], 2, 3)


BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_a_byte_order_mark_starts_no_record(tmp_path, suffix):
    def put(name: str, data: bytes) -> Path:
        return write(tmp_path / (name + suffix), gzip.compress(data) if suffix else data)

    docs, bad, _ = read_path(put("a.jsonl", BOM + b'{"text": "first"}\n{"text": "second"}\n'))
    assert (docs["text"].to_list(), bad.height) == (["first", "second"], 0)
    docs, bad, _ = read_path(put("b.jsonl", BOM + b'[1]\n{"text": "x"}\n'))  # the per-line path
    assert bad.select("line", "kind", "raw").rows() == [(1, "not_an_object", b"[1]")]
    docs, bad, _ = read_path(put("c.csv", BOM + b'"text",n\nhello,1\n'))
    assert (docs.select("text", "meta").rows(), bad.height) == ([("hello", '{"n":"1"}')], 0)
    docs, bad, _ = read_path(put("d.txt", BOM + b"Title\nbody\n"))
    assert (docs["text"].to_list(), bad.height) == (["Title\nbody\n"], 0)
    docs, bad, _ = read_path(put("e.txt", BOM + b"one\ntwo\n"), text_mode="line")
    assert (docs["text"].to_list(), bad.height) == (["one", "two"], 0)
    docs, bad, _ = read_path(put("f.jsonl", BOM + b"\n"))  # a file of just a mark and a newline
    assert (docs.height, bad.height, blank_of(one_task(tmp_path / ("f.jsonl" + suffix)))) == (0, 0, 1)


def test_file_pieces_skip_a_byte_order_mark_and_count_it_read(tmp_path):
    from corpus.readers.streams import FilePieces

    path = write(tmp_path / "m.jsonl", BOM + b'{"a": 1}\n{"b": 2}\n')
    pieces = FilePieces(str(path), 1 << 20)
    assert list(pieces) == [b'{"a": 1}\n{"b": 2}\n'] and pieces.consumed == path.stat().st_size


# ----- quarantined records keep their bytes whole ------------------------------------------------
def test_quarantine_keeps_raw_bytes_whole(tmp_path):
    big = b'{"text": "' + b"x" * (3 << 20) + b'", "oops"}'  # 3 MiB of invalid JSON
    docs, bad, _ = read_path(write(tmp_path / "b.jsonl", GOOD + b"\n" + big + b"\n"))
    row = bad.row(0, named=True)
    assert (row["line"], row["kind"], row["raw"], row["raw_bytes"], row["raw_file"]) == (2, "invalid_json", big,
                                                                                        len(big), None)
    assert row["raw_sha256"] == hashlib.sha256(big).hexdigest()
    text = b"y" * 5000
    docs, bad, _ = read_path(write(tmp_path / "big.txt", text), max_doc_bytes=1000)
    assert bad.select("kind", "raw", "raw_bytes", "raw_unit", "error").rows() == [
        ("too_large", text, 5000, "file", "text is 5000 bytes, over the 1000 byte limit")]


def test_records_over_max_doc_bytes_go_to_side_files(tmp_path):
    from corpus.quarantine import RawStore, raw_blocks

    lines = [b'{"text": "' + b"z" * 3000 + b'"}', b"not json " * 500, b"[1]"]
    path = write(tmp_path / "s.jsonl", b"\n".join(lines) + b"\n")
    store = RawStore(tmp_path / "q", "src-00000")
    bad = pl.concat([c.bad for c in read_task(one_task(path, max_doc_bytes=1000), 32 << 20, sink=store)])
    assert bad.select("line", "kind", "raw_file", "raw_bytes").rows() == [
        (1, "too_large", "raw/src-00000/1.zst", len(lines[0])),
        (2, "invalid_json", "raw/src-00000/2.zst", len(lines[1])),
        (3, "not_an_object", None, 3)]
    assert bad["raw"].to_list() == [None, None, b"[1]"]
    assert store.names == ["raw/src-00000/1.zst", "raw/src-00000/2.zst"]
    for row, line in zip(bad.to_dicts(), lines, strict=True):
        assert b"".join(raw_blocks(tmp_path / "q", row)) == line
    # A text file too large for a document is streamed to its side file whole.
    text = "w" * 1_000_000
    store = RawStore(tmp_path / "q", "src-00001")
    big = write(tmp_path / "t.txt.zst", zstandard.ZstdCompressor().compress(text.encode()))
    bad = pl.concat([c.bad for c in read_task(one_task(big, max_doc_bytes=10_000), 32 << 20, sink=store)])
    row = bad.row(0, named=True)
    assert (row["kind"], row["raw_bytes"], row["raw_file"]) == ("too_large", 1_000_000, "raw/src-00001/1.zst")
    assert b"".join(raw_blocks(tmp_path / "q", row)) == text.encode()
    # A damaged side file is named, not read as if it were the record.
    (tmp_path / "q" / row["raw_file"]).write_bytes(zstandard.ZstdCompressor().compress(b"w" * 999_999 + b"v"))
    damaged = r"record t.txt.zst:1 is damaged in quarantine/raw/src-00001/1.zst: 1000000 bytes, stored as 1000000"
    with pytest.raises(ValueError, match=damaged):
        b"".join(raw_blocks(tmp_path / "q", row))


# ----- field mapping -----------------------------------------------------------------------
def test_field_mapping_text_key_id_key_meta(tmp_path):
    recs = [
        {"doc_id": "a-1", "content": "one", "url": "u1", "lang": "en", "n": 1},
        {"doc_id": 7, "content": "two", "url": "u2"},
        {"doc_id": None, "content": "three", "lang": "de"},
        {"content": "four", "url": None, "extra": [1, 2]},
    ]
    path = write(tmp_path / "d" / "x.jsonl", jsonl(recs))
    docs, bad, _ = read_path(path, text_key="content", id_key="doc_id", source="web")
    assert bad.height == 0
    assert docs["id"].to_list() == ["a-1", "7", "web:x.jsonl:3", "web:x.jsonl:4"]
    assert docs["text"].to_list() == ["one", "two", "three", "four"]
    assert docs["source"].unique().to_list() == ["web"]
    assert docs["src_file"].unique().to_list() == ["x.jsonl"]
    assert docs["src_row"].to_list() == [1, 2, 3, 4]
    # meta: the other fields, keys sorted, null/absent fields left out.
    assert docs["meta"].to_list() == [
        '{"lang":"en","n":1,"url":"u1"}',
        '{"url":"u2"}',
        '{"lang":"de"}',
        '{"extra":[1,2]}',
    ]
    docs, _, _ = read_path(path, text_key="content", meta_keys=["url", "missing"])
    assert docs["meta"].to_list() == ['{"url":"u1"}', '{"url":"u2"}', "{}", "{}"]
    assert docs["id"].to_list() == [f"src:x.jsonl:{i}" for i in range(1, 5)]
    # With no id_key, the record's own id field is kept in meta.
    assert json.loads(read_path(path, text_key="content")[0]["meta"][0])["doc_id"] == "a-1"


def test_fast_and_per_line_paths_agree(tmp_path):
    recs = [
        {"text": "a", "n": 1, "f": 0.5, "s": 'é"\\/\u0001\t\n\u2028😀', "b": True, "o": {"x": 1, "y": "z"}, "l": []},
        {"text": "b", "n": 2, "f": 0.25, "s": None, "o": {"x": 2, "y": "w"}, "extra": "only here"},
        {"text": "c", "n": -3, "big": 2**62},
    ]
    good = jsonl(recs)
    fast = read_path(write(tmp_path / "fast.jsonl", good))[0]
    slow = read_path(write(tmp_path / "slow.jsonl", good + b"{bad\n"))[0]
    assert fast.drop("meta", "id", "src_file").equals(slow.drop("meta", "id", "src_file"))
    assert [json.loads(m) for m in fast["meta"]] == [json.loads(m) for m in slow["meta"]]
    assert fast["meta"].to_list() == slow["meta"].to_list()



def test_dotted_keys_name_nested_fields_on_every_path(tmp_path):
    """`text_key: doc.body`, `id_key: m.url`: the nested fields, in JSONL (both paths) and Parquet struct
    columns; a field named with the dots itself wins; the text is not kept again in meta; a record
    without the nested field, or with a non-string one, is quarantined as a top-level one would be."""
    recs = [{"doc": {"body": f"text {i}", "title": f"t{i}"}, "m": {"url": f"u{i}"}, "n": i} for i in range(3)]
    recs.append({"doc": {"body": "only body"}, "m": {"url": "u3"}, "n": 3})
    bad = [{"doc": {"title": "no body"}, "m": {"url": "x"}}, {"doc": "not an object"}, {"doc": {"body": 5}}]
    kw = {"text_key": "doc.body", "id_key": "m.url"}
    fast = read_path(write(tmp_path / "fast.jsonl", jsonl(recs)), **kw)[0]
    slow, quarantined, _ = read_path(write(tmp_path / "slow.jsonl", jsonl(recs + bad) + b"{bad\n"), **kw)
    expect_text = ["text 0", "text 1", "text 2", "only body"]
    for docs in (fast, slow):
        assert docs["text"].to_list() == expect_text and docs["id"].to_list() == ["u0", "u1", "u2", "u3"]
    for docs in (fast, slow):  # the object left empty goes (polars' struct gave it the title other records have)
        assert [json.loads(m) for m in docs["meta"]] == [{"doc": {"title": f"t{i}"}, "n": i} for i in range(3)] + \
            [{"n": 3}]
    assert quarantined.select("kind", "error").rows() == [
        ("missing_text", "no field 'doc.body'"), ("missing_text", "no field 'doc.body'"),
        ("non_string_text", "text field 'doc.body' is number, expected string"),
        ("invalid_json", "Expecting property name enclosed in double quotes: line 1 column 2")]
    (tmp_path / "p").mkdir()
    pq.write_table(pa.Table.from_pylist(recs), tmp_path / "p" / "n.parquet")
    docs, none, _ = read_path(tmp_path / "p" / "n.parquet", **kw)
    assert none.height == 0 and docs["text"].to_list() == expect_text and docs["id"].to_list()[0] == "u0"
    assert json.loads(docs["meta"][0]) == {"doc": {"title": "t0"}, "n": 0}
    docs, _, _ = read_path(tmp_path / "p" / "n.parquet", meta_keys=["n"], **kw)  # the struct column still read
    assert docs["text"].to_list() == expect_text and docs["meta"][0] == '{"n":0}'
    literal = write(tmp_path / "lit.jsonl", jsonl([{"doc.body": "the field itself", "doc": {"body": "nested"}}]))
    docs = read_path(literal, text_key="doc.body")[0]
    assert docs["text"].to_list() == ["the field itself"] and json.loads(docs["meta"][0]) == {"doc": {"body": "nested"}}


# ----- chunking ----------------------------------------------------------------------------
def _mixed_file(tmp_path: Path) -> Path:
    lines = []
    for i in range(300):
        lines.append(json.dumps({"text": f"doc {i} " + "w" * (i % 37), "i": i, "tag": ["x", None][i % 2]}).encode())
        if i % 7 == 0:
            lines.append(b"")
        if i % 11 == 0:
            lines.append(BAD_LINES[i % len(BAD_LINES)][1])
    return write(tmp_path / "mixed.jsonl", b"\n".join(lines) + b"\n")


def test_mixed_file_invariant_and_chunk_size_independence(tmp_path):
    path = _mixed_file(tmp_path)
    ref_docs, ref_bad, ref_seen = read_path(path, 32 << 20, max_doc_bytes=100, id_key="id")
    assert ref_seen == ref_docs.height + ref_bad.height
    assert ref_docs.height == 300
    assert ref_bad.height == len(range(0, 300, 11))
    assert ref_docs["id"].n_unique() == 300
    for chunk_bytes in (1, 50, 333, 4096):
        docs, bad, seen = read_path(path, chunk_bytes, max_doc_bytes=100, id_key="id")
        assert docs.equals(ref_docs), chunk_bytes
        assert bad.equals(ref_bad), chunk_bytes
        assert seen == ref_seen


def test_large_piece_with_one_bad_line_is_split_not_read_line_by_line(tmp_path):
    # > 256 KiB of lines with a broken one in the middle: the piece is bisected and the result
    # is the same as reading in tiny chunks.
    recs = [json.dumps({"text": f"row {i} " + "z" * 300}).encode() for i in range(2000)]
    recs[1234] = b'{"text": oops}'
    path = write(tmp_path / "big.jsonl", b"\n".join(recs) + b"\n")
    docs, bad, seen = read_path(path)
    assert (docs.height, seen) == (1999, 2000)
    assert bad.select("line", "kind", "raw").rows() == [(1235, "invalid_json", b'{"text": oops}')]
    docs2, bad2, _ = read_path(path, 1000)
    assert docs.equals(docs2) and bad.equals(bad2)


def test_chunks_are_bounded(tmp_path):
    path = write(tmp_path / "x.jsonl", jsonl([{"text": "t" * 100}] * 1000))
    chunks = list(read_task(one_task(path), 10_000))
    assert len(chunks) >= 9
    assert all(c.docs.height <= 120 for c in chunks)
    assert sum(c.bytes_read for c in chunks) == path.stat().st_size


@pytest.mark.parametrize("tail", ["", "no final newline"])
def test_line_chunker_groups_are_its_chunks_joined(tmp_path, tail):
    """groups(): the chunks of plain iteration, consecutive ones joined up to group_bytes, with each
    chunk's end offset; the unterminated tail is left over the same way."""
    from corpus.readers.streams import ByteSource, FilePieces, LineChunker

    rng = __import__("random").Random(3)
    body = "".join("x" * rng.randint(0, 300) + "\n" for _ in range(400)) + tail
    path = write(tmp_path / "x.jsonl", body)
    plain = LineChunker(ByteSource(str(path), block_size=1 << 16), 1000)
    chunks = list(plain)
    grouping = LineChunker(ByteSource(str(path), block_size=1 << 16), 1000)
    groups = list(grouping.groups(4000))
    assert b"".join(g for g, _ in groups) == b"".join(chunks) and grouping.tail == plain.tail == tail.encode()
    cut = []
    for g, ends in groups:
        assert ends[-1] == len(g)
        cut += [g[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]
    assert cut == chunks
    assert all(len(g) >= 4000 for g, _ in groups[:-1]) and len(groups) < len(chunks)
    # Read piece by piece from the file: the very same chunks, tail and bytes read, whole or in a byte range.
    pieces = FilePieces(str(path), 1000)
    assert list(pieces) == chunks and pieces.tail == plain.tail and pieces.consumed == path.stat().st_size
    a, b = 3000, 9000
    ranged = LineChunker(ByteSource(str(path), block_size=1 << 16, start=a, end=b), 1000)
    mapped = FilePieces(str(path), 1000, start=a, end=b)
    assert list(mapped) == list(ranged) and mapped.tail == ranged.tail and mapped.consumed == b - a


def test_file_pieces_of_an_empty_file_or_one_line_and_never_a_pipe(tmp_path):
    from corpus.readers.streams import FilePieces

    empty = FilePieces(str(write(tmp_path / "e.jsonl", "")), 10)
    assert list(empty) == [] and empty.tail == b"" and empty.error is None
    one = FilePieces(str(write(tmp_path / "o.jsonl", "abc")), 10)
    assert list(one) == [] and one.tail == b"abc"
    os.mkfifo(tmp_path / "pipe")  # nothing to map: read by ByteSource instead
    assert FilePieces.usable(str(tmp_path / "o.jsonl")) and not FilePieces.usable(str(tmp_path / "pipe"))
    assert not FilePieces.usable(str(write(tmp_path / "c.jsonl.gz", gzip.compress(b"{}\n"))))


def test_single_40mb_document_is_read_whole_with_sane_memory(tmp_path):
    big = "x" * (40 << 20)
    path = write(tmp_path / "big.jsonl", jsonl([{"text": "small"}, {"text": big, "id": "big"}, {"text": "after"}]))
    code = textwrap.dedent(f"""
        import resource, sys
        from corpus.readers import InputSpec, plan_tasks, read_task
        task = plan_tasks([InputSpec(source="s", path={str(path)!r}, id_key="id")])[0]
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        sizes = []
        for chunk in read_task(task, 1 << 20):
            sizes += [len(t) for t in chunk.docs["text"]]
            assert chunk.bad.height == 0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(sizes, (peak - base) // 1024)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    sizes, grown_mb = out.stdout.rsplit(" ", 1)
    assert json.loads(sizes) == [5, 40 << 20, 5]
    assert int(grown_mb) < 480, f"peak memory grew by {grown_mb} MB reading a 40 MB document"


# ----- compression -------------------------------------------------------------------------
# Larger than a few zstd blocks (128 KiB each): a cut inside the only block would keep nothing.
RECS = [{"text": f"record number {i} " + "y" * (i % 50), "i": i} for i in range(20000)]


def _expect_truncated(path: Path, plain: bytes) -> None:
    docs, bad, seen = read_path(path, 64 << 10)
    kept = docs.height
    assert 0 < kept < len(RECS)
    assert docs["text"].to_list() == [r["text"] for r in RECS[:kept]]
    assert docs["src_row"].to_list() == list(range(1, kept + 1))
    assert bad.height == 1
    row = bad.row(0, named=True)
    assert (row["kind"], row["line"]) == ("truncated_file", kept + 1)
    # raw is the cut tail: a strict prefix of the record that was being decompressed.
    full_line = plain.split(b"\n")[kept]
    assert full_line.startswith(row["raw"]) and row["raw"] != full_line
    assert seen == kept + 1


def test_truncated_gzip_keeps_complete_records(tmp_path):
    plain = jsonl(RECS)
    blob = gzip.compress(plain)
    path = write(tmp_path / "cut.jsonl.gz", blob[: len(blob) // 2])
    _expect_truncated(path, plain)


def test_truncated_zstd_keeps_complete_records(tmp_path):
    plain = jsonl(RECS)
    blob = zstandard.ZstdCompressor(level=3).compress(plain)
    path = write(tmp_path / "cut.jsonl.zst", blob[: len(blob) // 2])
    _expect_truncated(path, plain)


@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_compressed_whole_and_multi_member(tmp_path, suffix):
    def comp(b: bytes) -> bytes:
        return gzip.compress(b) if suffix == ".gz" else zstandard.ZstdCompressor().compress(b)

    a, b = jsonl(RECS[:7000]), jsonl(RECS[7000:])
    path = write(tmp_path / f"x.ndjson{suffix}", comp(a) + comp(b))
    docs, bad, _ = read_path(path, 20_000)
    assert bad.height == 0
    assert docs["text"].to_list() == [r["text"] for r in RECS]
    assert docs["src_row"].to_list() == list(range(1, len(RECS) + 1))
    assert sum(c.bytes_read for c in read_task(one_task(path))) == path.stat().st_size


def test_gzip_cut_exactly_at_record_end_still_reports_truncation(tmp_path):
    plain = jsonl(RECS[:10])
    blob = gzip.compress(plain)
    # Drop only the 8-byte trailer: every record decompresses, but the stream is incomplete.
    docs, bad, _ = read_path(write(tmp_path / "x.jsonl.gz", blob[:-8]))
    assert docs.height == 10
    assert bad.select("kind", "line", "raw").rows() == [("truncated_file", 11, b"")]


def test_corrupt_gzip_is_one_unreadable_record(tmp_path):
    path = write(tmp_path / "x.jsonl.gz", b"this is not gzip data at all\n")
    docs, bad, seen = read_path(path)
    assert docs.height == 0 and seen == 1
    assert bad["kind"].to_list() == ["unreadable_file"]
    assert "gzip" in bad["error"][0]


# ----- Parquet -----------------------------------------------------------------------------
def test_parquet_rows_and_bad_rows(tmp_path):
    table = pa.table(
        {
            "text": ["one", None, "", "a\x00b", "fine", "y" * 50],
            "id": ["i1", "i2", "i3", "i4", None, "i6"],
            "score": [1.5, 2.0, None, 4.0, 5.0, 6.0],
            "blob": [b"\x00\xff", None, None, None, None, None],
        }
    )
    path = tmp_path / "p.parquet"
    pq.write_table(table, path, row_group_size=2)
    for chunk_bytes in (32 << 20, 10):
        docs, bad, seen = read_path(path, chunk_bytes, id_key="id", max_doc_bytes=40)
        assert seen == 6
        assert docs.select("id", "text", "src_row").rows() == [("i1", "one", 1), ("src:p.parquet:5", "fine", 5)]
        assert docs["meta"].to_list() == ['{"blob":"00ff","score":1.5}', '{"score":5.0}']
        assert bad.select("line", "kind").rows() == [
            (2, "null_text"),
            (3, "empty_text"),
            (4, "nul_bytes"),
            (6, "too_large"),
        ]
        assert json.loads(bad["raw"][0]) == {"text": None, "id": "i2", "score": 2.0, "blob": None}


def test_parquet_non_string_text_column(tmp_path):
    path = tmp_path / "n.parquet"
    pq.write_table(pa.table({"text": [1, None, 3]}), path)
    docs, bad, _ = read_path(path)
    assert docs.height == 0
    assert bad.select("line", "kind").rows() == [(1, "non_string_text"), (2, "null_text"), (3, "non_string_text")]
    assert bad["error"][0] == "text field 'text' is number, expected string"


def test_parquet_missing_text_column_and_corrupt_file(tmp_path):
    # A file without the text column is one quarantined record naming what it has; the run goes on.
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"body": ["x", "y"], "url": ["u", "v"]}), path)
    docs, bad, seen = read_path(path)
    assert (docs.height, seen) == (0, 1)
    assert bad.select("line", "kind", "error", "raw", "raw_unit").rows() == [
        (1, "unreadable_file", "Parquet file 'm.parquet' has no column 'text' (columns: body, url)", b"", "file")]
    corrupt = write(tmp_path / "c.parquet", b"PAR1 definitely not parquet")
    docs, bad, seen = read_path(corrupt)
    assert (docs.height, seen) == (0, 1)
    assert bad["kind"].to_list() == ["unreadable_file"]


# ----- CSV ---------------------------------------------------------------------------------
def test_csv_records_quoted_newlines_and_bad_rows(tmp_path):
    data = (
        b"id,text,lang\n"
        b'1,"hello, world",en\n'
        b"\n"
        b'2,"two\nlines",de\n'
        b"3,too,many,fields\n"
        b"4,,fr\n"
        b"5,caf\xe9,fr\n"
        b",no id,en\n"
    )
    path = write(tmp_path / "x.csv", data)
    for chunk_bytes in (32 << 20, 8):
        docs, bad, seen = read_path(path, chunk_bytes, id_key="id")
        assert seen == 6  # the header and the blank line are not records
        assert docs.select("id", "text", "meta", "src_row").rows() == [
            ("1", "hello, world", '{"lang":"en"}', 1),
            ("2", "two\nlines", '{"lang":"de"}', 2),
            ("src:x.csv:6", "no id", '{"lang":"en"}', 6),
        ]
        assert bad.select("line", "kind", "raw").rows() == [
            (3, "malformed_row", b"3,too,many,fields"),
            (4, "empty_text", b"4,,fr"),
            (5, "invalid_utf8", b"5,caf\xe9,fr"),
        ]
        assert bad["error"][0] == "expected 3 fields, got 4 (file line 6)"


def test_tsv_and_custom_delimiter_and_missing_column(tmp_path):
    tsv = write(tmp_path / "x.tsv.gz", gzip.compress(b"text\tsrc\na, b\tweb\n"))
    docs, _, _ = read_path(tsv)
    assert docs.select("text", "meta").rows() == [("a, b", '{"src":"web"}')]
    semi = write(tmp_path / "y.csv", "text;n\nx;1\n")
    assert read_path(semi, csv_delimiter=";")[0]["text"].to_list() == ["x"]
    docs, bad, seen = read_path(write(tmp_path / "z.csv", "body,n\nx,1\ny,2\n"))
    assert (docs.height, seen) == (0, 1)
    assert bad.select("line", "kind", "error").rows() == [
        (1, "unreadable_file", "CSV file 'z.csv' header has no column 'text' (columns: body, n)")]


def test_truncated_csv_gz(tmp_path):
    plain = b"text,n\n" + b"".join(f"row {i},{i}\n".encode() for i in range(3000))
    blob = gzip.compress(plain)
    docs, bad, seen = read_path(write(tmp_path / "c.csv.gz", blob[: len(blob) // 2]), 1024)
    assert 0 < docs.height < 3000
    assert docs["text"].to_list() == [f"row {i}" for i in range(docs.height)]
    assert bad.select("kind", "line").rows() == [("truncated_file", docs.height + 1)]
    assert seen == docs.height + 1


# CSV quotes: a quote that never closes properly quarantines its first line; the lines it swallowed
# are read again. Header id,text,lang; record numbers count every record (good or bad) after it.
UNCLOSED = [
    # end of file inside the quote
    (b'1,"broken,en\n2,fine,de\n3,ok,fr\n',
     "quote never closes (file line 2; lines 3-4 read again)"),
    # a later quoted field: strict parsing stops at its quote (',' expected after '"')
    (b'1,"broken,en\n2,"fine",de\n3,ok,fr\n',
     "quote does not close properly: ',' expected after '\"' on file line 3 (file line 2; line 3 read again)"),
    # a later field that starts with the delimiter closes the quote cleanly: auto sees that the lines
    # after the first are records of their own
    (b'1,"broken,en\n2,",fine",de\n3,ok,fr\n',
     "quote swallows lines that are records of their own (file line 2; line 3 read again)"),
]


@pytest.mark.parametrize(("data", "error"), UNCLOSED, ids=["eof", "strict", "clean-merge"])
@pytest.mark.parametrize("chunk_bytes", [32 << 20, 8])
def test_csv_unclosed_quote_quarantines_its_line_and_rereads_the_rest(tmp_path, data, error, chunk_bytes):
    path = write(tmp_path / "q.csv", b"id,text,lang\n" + data)
    docs, bad, seen = read_path(path, chunk_bytes, id_key="id")
    second = "fine" if b'2,fine' in data or b'"fine"' in data else ",fine"
    assert docs.select("id", "text", "meta", "src_row").rows() == [
        ("2", second, '{"lang":"de"}', 2), ("3", "ok", '{"lang":"fr"}', 3)]
    assert bad.select("line", "kind", "error", "raw").rows() == [(1, "malformed_row", error, b'1,"broken,en')]
    assert seen == 3


def test_csv_unclosed_quote_on_the_last_line_and_without_final_newline(tmp_path):
    docs, bad, seen = read_path(write(tmp_path / "a.csv", b'text,n\nfine,1\n"open,2'))
    assert docs["text"].to_list() == ["fine"]
    assert bad.select("line", "kind", "error", "raw").rows() == [
        (2, "malformed_row", "quote never closes (file line 3)", b'"open,2')]
    assert seen == 2


def test_csv_multiline_values_are_still_one_record(tmp_path):
    data = (b'id,text,lang\n'
            b'1,"para one,\nsecond line, with ""quotes"", commas\n""end""",en\n'  # lines after the first: 5 quotes
            b'2,"a\n\nb",de\n'  # a blank line inside a value
            b'3,"x, y, z\n4, fake, row",fr\n')  # a line inside the value looks like a record: odd quotes
    for mode in ("auto", True):
        docs, bad, seen = read_path(write(tmp_path / "m.csv", data), id_key="id", csv_multiline=mode)
        assert docs.select("id", "text", "src_row").rows() == [
            ("1", 'para one,\nsecond line, with "quotes", commas\n"end"', 1),
            ("2", "a\n\nb", 2),
            ("3", "x, y, z\n4, fake, row", 3),
        ]
        assert (bad.height, seen) == (0, 3)
    # The bundled forum posts: 159 bodies over several lines, one planted malformed row.
    docs, bad, _ = read_path(ROOT / "examples/data/forum/posts.csv", text_key="body", id_key="post_id")
    assert (docs.height, int(docs["text"].str.contains("\n").sum())) == (705, 159)
    assert bad.select("kind", "error").rows() == [("malformed_row", "expected 4 fields, got 5 (file line 729)")]


def test_csv_multiline_option_true_and_false(tmp_path):
    # A broken quote closed cleanly by a later line with the header's width: ambiguous on its own.
    data = b'a,b,c\n1,"broken\nx,y,",z"\n3,4,5\n'
    path = write(tmp_path / "t.csv", data)
    docs, bad, _ = read_path(path, text_key="b", csv_multiline=True)  # believed: one merged record
    assert docs.select("text", "src_row").rows() == [("broken\nx,y,", 1), ("4", 2)]
    assert bad.height == 0
    docs, bad, _ = read_path(path, text_key="b")  # auto: x,y,",z" is a record of its own
    assert docs.select("text", "src_row").rows() == [("y", 2), ("4", 3)]
    assert bad.select("line", "raw").rows() == [(1, b'1,"broken')]
    # false: every record is one line, so a legitimate value over two lines is two bad lines.
    two = write(tmp_path / "f.csv", b'text,n\n"one\ntwo",1\nok,2\n')
    docs, bad, seen = read_path(two, csv_multiline=False)
    assert docs.select("text", "src_row").rows() == [('two"', 2), ("ok", 3)]  # a stray quote is a character
    assert bad.select("line", "error", "raw").rows() == [
        (1, "quote still open at the end of the line, and csv_multiline is false (file line 2)", b'"one')]
    assert seen == 3
    with pytest.raises(InputError, match=r"InputSpec.csv_multiline: expected bool \| 'auto', got str 'yes'"):
        one_task(two, csv_multiline="yes")


def test_csv_quoted_value_running_past_the_size_limit(tmp_path):
    # An unclosed quote with no quote after it would hold the rest of the file: it stops at
    # 2 x max_doc_bytes + 1 MiB.
    rows = b"".join(b"%d,row %d %s\n" % (i, i, b"x" * 90) for i in range(2, 20000))
    docs, bad, seen = read_path(write(tmp_path / "big.csv", b'id,text\n1,"open\n' + rows), id_key="id",
                                max_doc_bytes=1000)
    assert docs["id"].to_list() == [str(i) for i in range(2, 20000)]
    assert bad.select("line", "raw").rows() == [(1, b'1,"open')]
    assert bad["error"][0].startswith(f"quoted value runs past {2 * 1000 + (1 << 20)} bytes without closing (file "
                                      "line 2; lines 3-")
    assert seen == 19999


# ----- text ----------------------------------------------------------------------------------
def test_text_file_mode(tmp_path):
    write(tmp_path / "t" / "a.txt", "Hello\nworld\n")
    write(tmp_path / "t" / "sub" / "b.md", "# Title\n")
    write(tmp_path / "t" / "empty.txt", "  \n")
    write(tmp_path / "t" / "bad.txt", b"caf\xe9")
    write(tmp_path / "t" / "nul.txt", "a\x00b")
    tasks = plan_tasks([InputSpec(source="notes", path=str(tmp_path / "t"))])
    assert [t.rel_path for t in tasks] == ["a.txt", "bad.txt", "empty.txt", "nul.txt", "sub/b.md"]
    results = [read(t) for t in tasks]
    docs = pl.concat([r[0] for r in results])
    bad = pl.concat([r[1] for r in results])
    assert docs.select("id", "text", "meta", "src_row").rows() == [
        ("notes:a.txt:1", "Hello\nworld\n", "{}", 1),
        ("notes:sub/b.md:1", "# Title\n", "{}", 1),
    ]
    assert bad.select("file", "line", "kind", "raw").rows() == [
        ("bad.txt", 1, "invalid_utf8", b"caf\xe9"),
        ("empty.txt", 1, "empty_text", b"  \n"),
        ("nul.txt", 1, "nul_bytes", b"a\x00b"),
    ]


def test_text_line_mode(tmp_path):
    data = b"first line\r\n\n   \nsecond\nbad \xff byte\nnul\x00here\nlast"
    path = write(tmp_path / "l.txt", data)
    for chunk_bytes in (32 << 20, 5):
        docs, bad, seen = read_path(path, chunk_bytes, text_mode="line")
        assert docs.select("id", "text", "src_row").rows() == [
            ("src:l.txt:1", "first line", 1),
            ("src:l.txt:4", "second", 4),
            ("src:l.txt:7", "last", 7),
        ]
        assert bad.select("line", "kind", "raw").rows() == [
            (5, "invalid_utf8", b"bad \xff byte"),
            (6, "nul_bytes", b"nul\x00here"),
        ]
        assert seen == 5


def test_text_too_large_and_truncated(tmp_path):
    docs, bad, _ = read_path(write(tmp_path / "big.txt", "z" * 5000), max_doc_bytes=1000)
    assert (docs.height, bad["kind"].to_list()) == (0, ["too_large"])
    blob = gzip.compress(b"some text " * 5000)
    docs, bad, _ = read_path(write(tmp_path / "cut.txt.gz", blob[: len(blob) // 2]))
    assert (docs.height, bad["kind"].to_list()) == (0, ["truncated_file"])


# ----- DuckDB --------------------------------------------------------------------------------
def test_duckdb_query_in_memory_and_database_file(tmp_path):
    spec = InputSpec(
        source="db",
        format="duckdb",
        query="SELECT i AS id, CASE WHEN i = 2 THEN NULL ELSE 'doc ' || i END AS text, i * 2 AS n "
        "FROM range(1, 5) t(i)",
        id_key="id",
    )
    (task,) = plan_tasks([spec])
    assert task.path == "duckdb::memory:" and task.rel_path.startswith("duckdb:")
    docs, bad, seen = read(task, 64)
    assert seen == 4
    assert docs.select("id", "text", "meta", "src_row").rows() == [
        ("1", "doc 1", '{"n":2}', 1),
        ("3", "doc 3", '{"n":6}', 3),
        ("4", "doc 4", '{"n":8}', 4),
    ]
    assert bad.select("line", "kind").rows() == [(2, "null_text")]

    db = tmp_path / "c.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE docs AS SELECT 'hello' AS body, 'x' AS tag")
    con.close()
    spec = InputSpec(source="f", format="duckdb", database="c.duckdb", query="SELECT * FROM docs", text_key="body")
    (task,) = plan_tasks([spec], base_dir=tmp_path)
    assert task.path == f"duckdb:{db}"
    docs, _, _ = read(task)
    assert docs.select("text", "meta").rows() == [("hello", '{"tag":"x"}')]


def test_duckdb_errors_are_input_errors(tmp_path):
    (task,) = plan_tasks([InputSpec(source="q", format="duckdb", query="SELECT * FROM no_such_table")])
    with pytest.raises(InputError, match="DuckDB query failed: Catalog Error") as exc:
        read(task)
    assert "\n" not in str(exc.value)
    (task,) = plan_tasks([InputSpec(source="q", format="duckdb", query="SELECT 1 AS body")])
    with pytest.raises(InputError, match="no column 'text'"):
        read(task)
    # corpus check names a query that cannot run (it said ok, and the run failed)
    from corpus.readers.check import field_problems

    for query, said in (("SELEC id FROM nowhere", "DuckDB query failed: Parser Error: syntax error"),
                        ("SELECT * FROM 'nope.parquet'", "DuckDB query failed: IO Error: No files found")):
        problems = field_problems(plan_tasks([InputSpec(source="q", format="duckdb", query=query)]))
        assert len(problems) == 1 and problems[0].startswith(said), problems
    assert field_problems(plan_tasks([InputSpec(source="q", format="duckdb", query="SELECT 'a' AS text")])) == []


# ----- planning ----------------------------------------------------------------------------
def test_plan_folders_globs_lists_and_formats(tmp_path):
    for name in ["a/1.jsonl", "a/2.json.gz", "a/deep/3.ndjson.zst", "a/.hidden.jsonl", "a/_SUCCESS", "b/4.jsonl"]:
        write(tmp_path / name, b"")
    write(tmp_path / "c" / "5.parquet", b"")
    write(tmp_path / "c" / "6.tsv", b"")

    folder = plan_tasks([InputSpec(source="a", path="a")], base_dir=tmp_path)
    assert [(t.rel_path, t.format, t.index) for t in folder] == [
        ("1.jsonl", "jsonl", 0),
        ("2.json.gz", "jsonl", 1),
        ("deep/3.ndjson.zst", "jsonl", 2),
    ]
    assert all(os.path.isabs(t.path) for t in folder)

    globbed = plan_tasks([InputSpec(source="g", path=str(tmp_path / "a" / "**" / "*.zst"))])
    assert [t.rel_path for t in globbed] == ["deep/3.ndjson.zst"]

    listed = plan_tasks(
        [InputSpec(source="l", path=["a/1.jsonl", "b"]), InputSpec(source="c", path="c/*")], base_dir=tmp_path
    )
    assert [(t.spec.source, t.rel_path, t.format, t.index) for t in listed] == [
        ("l", "a/1.jsonl", "jsonl", 0),
        ("l", "b/4.jsonl", "jsonl", 1),
        ("c", "5.parquet", "parquet", 2),
        ("c", "6.tsv", "csv", 3),
    ]
    forced = plan_tasks([InputSpec(source="f", path="c/6.tsv", format="text")], base_dir=tmp_path)
    assert forced[0].format == "text"
    assert plan_tasks([InputSpec(source="a", path="a")], base_dir=tmp_path) == folder  # deterministic


def _raises(specs: list[InputSpec], base: Path, pattern: str) -> None:
    with pytest.raises(InputError, match=pattern) as exc:
        plan_tasks(specs, base_dir=base)
    assert "\n" not in str(exc.value)


def test_plan_input_errors(tmp_path):
    write(tmp_path / "ok.jsonl", b"")
    write(tmp_path / "data.bin", b"")
    (tmp_path / "empty").mkdir()
    write(tmp_path / "only_markers" / "_SUCCESS", b"")
    (tmp_path / "dbdir").mkdir()
    S = InputSpec
    _raises([S("a", path="missing.jsonl")], tmp_path, r"input 'a': path 'missing.jsonl' does not exist")
    _raises([S("a", path="*.parquet")], tmp_path, r"input 'a': glob '\*.parquet' matches no files")
    _raises([S("a", path="empty")], tmp_path, r"input 'a': folder .*empty holds no readable files")
    _raises([S("a", path="only_markers")], tmp_path, "holds no readable files")
    _raises([S("a", path="data.bin")], tmp_path, r"input 'a': cannot infer the format of .*data.bin")
    _raises([S("a", path="ok.jsonl", format="xml")], tmp_path, r"input 'a': unknown format 'xml'")
    _raises([S("a", format="duckdb")], tmp_path, r"input 'a': format duckdb needs a `query`")
    _raises([S("a", format="duckdb", query="SELECT 1", database="no.duckdb")], tmp_path, r"no.duckdb does not exist")
    _raises([S("a", format="duckdb", query="SELECT 1", database="dbdir")], tmp_path, r"dbdir is a directory")
    _raises([S("a", path="ok.jsonl"), S("a", path="ok.jsonl")], tmp_path, r"input 'a' is defined more than once")
    # one file in two inputs: every record of it would come in twice
    _raises([S("a", path="ok.jsonl"), S("b", path="*.jsonl")], tmp_path,
            r"ok.jsonl is read by inputs 'a' and 'b': a file belongs to one input")
    assert len(plan_tasks([S("a", path=["ok.jsonl", "*.jsonl"])], tmp_path)) == 1  # within one input: once
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "ok.jsonl").symlink_to(tmp_path / "ok.jsonl")  # the same file through a link
    _raises([S("a", path="ok.jsonl"), S("b", path="linked")], tmp_path,
            r"linked/ok.jsonl is read by inputs 'a' \(as .*/ok.jsonl\) and 'b': a file belongs to one input")
    assert len(plan_tasks([S("a", path=["ok.jsonl", "linked"])], tmp_path)) == 1
    _raises([S("a", path="ok.jsonl", text_mode="para")], tmp_path, r"input 'a': invalid text_mode 'para'")
    _raises([S("a")], tmp_path, r"input 'a': no path given")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_plan_unreadable_file(tmp_path):
    path = write(tmp_path / "secret.jsonl", b"{}\n")
    path.chmod(0)
    try:
        _raises([InputSpec("a", path=str(path))], tmp_path, r"input 'a': .*secret.jsonl is not readable")
    finally:
        path.chmod(0o644)


def test_plan_not_a_regular_file(tmp_path):
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    _raises([InputSpec("a", path=str(fifo))], tmp_path, r"pipe.jsonl is not a regular file")


def test_plan_base_dir_with_glob_characters_is_literal(tmp_path):
    base = tmp_path / "odd[1]"
    write(base / "x" / "a.jsonl", b"")
    write(base / "x" / "sub" / "b.jsonl", b"")
    tasks = plan_tasks([InputSpec(source="s", path="x/**/*.jsonl")], base_dir=base)
    assert [t.rel_path for t in tasks] == ["a.jsonl", "sub/b.jsonl"]
    assert plan_tasks([InputSpec(source="s", path="x/a.jsonl")], base_dir=base)[0].path == str(base / "x" / "a.jsonl")
