"""Quarantine and input accounting through whole runs: bytes kept whole (side files published with the
quarantine), `corpus quarantine list/export` giving back the exact bytes of every reader's records,
blank lines in the balance, files without the text column quarantined and reported by `corpus check`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from helpers import run_cli, write_config

from corpus import InputSpec, Pipeline
from corpus.quarantine import export, summary
from corpus.readers.duckdb import query_label
from corpus.stages.filter import LengthFilter

BOM = b"\xef\xbb\xbf"
HUGE = 50_000_000  # bytes of the one bad JSONL line that must come back exactly
QUERY = "SELECT * FROM (VALUES ('typed row three', 3), ('', 4)) AS t(text, n)"


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict[str, bytes], Path]:
    """One run over every reader, each input holding good and bad records; returns (out, the bytes
    `quarantine export` must write per source/file, the input folder)."""
    inp = tmp_path_factory.mktemp("inputs")
    huge = b'{"text": "' + b"ab" * (HUGE // 2 - 7) + b'",,}'  # invalid JSON, HUGE bytes
    assert len(huge) == HUGE
    _write(inp / "web" / "a.jsonl", BOM + b'{"text": "one two three"}\n\n[1]\n  \n' + huge + b'\n{"text": "x'
           + b'\n{"text": "four five six"}\n\n')
    _write(inp / "forum" / "posts.csv", b'id,text,lang\n1,"fine\nover two lines",en\n2,"never closed,de\n'
           b"3,three words here,fr\n4,too,many,fields\n\n")
    _write(inp / "notes" / "ok.txt", b"a note with words\n")
    _write(inp / "notes" / "big.txt", b"long " * 400)
    _write(inp / "notes" / "latin1.txt", b"caf\xe9 au lait\n")
    _write(inp / "lines" / "l.txt", b"first line here\n\nbad \xff byte\n   \nlast line here")
    (inp / "tab").mkdir()
    pq.write_table(pa.table({"text": ["typed row one", None], "n": [1, 2]}), inp / "tab" / "good.parquet")
    pq.write_table(pa.table({"body": ["no text column"]}), inp / "tab" / "nokey.parquet")
    inputs = [
        InputSpec(source="web", path=str(inp / "web"), max_doc_bytes=1 << 20),
        InputSpec(source="forum", path=str(inp / "forum"), id_key="id"),
        InputSpec(source="notes", path=str(inp / "notes"), max_doc_bytes=1000),
        InputSpec(source="lines", path=str(inp / "lines"), text_mode="line"),
        InputSpec(source="tab", path=str(inp / "tab")),
        InputSpec(source="sql", format="duckdb", query=QUERY),
    ]
    out = tmp_path_factory.mktemp("out")
    Pipeline([LengthFilter(min_words=3)]).run(inputs, out, workers=1, quiet=True)
    expected = {
        "web/a.jsonl": b"[1]\n" + huge + b'\n{"text": "x\n',
        "forum/posts.csv": b'id,text,lang\n2,"never closed,de\n4,too,many,fields\n',
        "notes/big.txt": b"long " * 400,
        "notes/latin1.txt": b"caf\xe9 au lait\n",
        "lines/l.txt": b"bad \xff byte\n",
        "tab/good.parquet.jsonl": json.dumps({"text": None, "n": 2}).encode() + b"\n",
        f"sql/{query_label(QUERY).replace(':', '-')}.jsonl": json.dumps({"text": "", "n": 4}).encode() + b"\n",
    }
    return out, expected, inp


def test_balance_counts_blank_lines(run):
    out, _, _ = run
    con = duckdb.connect(str(out / "catalog.duckdb"), read_only=True)
    balance = con.execute("SELECT source, input, kept, rejected, quarantined, blank, ok FROM balance "
                          "ORDER BY source").fetchall()
    blank = con.execute("SELECT source, file, lines FROM blank_lines ORDER BY source").fetchall()
    con.close()
    assert balance == [
        ("forum", 5, 2, 0, 2, 1, True),  # 4 records (one re-read after the broken quote) + 1 blank line
        ("lines", 5, 2, 0, 1, 2, True),
        ("notes", 3, 1, 0, 2, 0, True),
        ("sql", 2, 1, 0, 1, 0, True),
        ("tab", 3, 1, 0, 2, 0, True),  # 2 rows + the file without a text column
        ("web", 8, 2, 0, 3, 3, True),  # the 8 lines of a.jsonl: 5 records + 3 blank (the BOM starts none)
    ]
    assert blank == [("forum", "posts.csv", 1), ("lines", "l.txt", 2), ("web", "a.jsonl", 3)]
    stats = run_cli("stats", str(out))
    assert stats.returncode == 0, stats.stderr
    assert "blank lines" in stats.stdout and "input = kept + rejected + quarantined + blank lines" in stats.stdout
    report = json.loads((out / "report.json").read_text())
    overview = report["sections"]["overview"]["figures"]
    assert overview["blank_lines"] == 6 and overview["balanced"] is True
    assert {s["source"]: s["input"] for s in report["sections"]["sources"]["figures"]}["web"] == 5


def test_big_records_are_published_as_side_files(run):
    out, _, _ = run
    q = pl.read_parquet(out / "quarantine" / "*.parquet")
    side = q.filter(pl.col("raw_file").is_not_null()).sort("source")
    assert side.select("source", "file", "line", "kind", "raw_bytes", "raw_file").rows() == [
        ("notes", "big.txt", 1, "too_large", 2000, "raw/notes-00002/1.zst"),  # input file 2 of the run
        ("web", "a.jsonl", 5, "invalid_json", HUGE, "raw/web-00000/5.zst")]
    assert (out / "quarantine" / side["raw_file"][1]).stat().st_size < HUGE // 100  # compressed
    notes = q.filter(pl.col("source") == "notes").sort("file")
    assert notes.select("file", "kind", "raw_bytes", "raw_file").rows() == [
        ("big.txt", "too_large", 2000, "raw/notes-00002/1.zst"), ("latin1.txt", "invalid_utf8", 13, None)]
    nokey = q.filter(pl.col("file") == "nokey.parquet").row(0, named=True)
    assert (nokey["kind"], nokey["error"]) == ("unreadable_file",
                                               "Parquet file 'nokey.parquet' has no column 'text' (columns: body)")


def test_export_gives_back_the_exact_bytes_of_every_reader(run, tmp_path):
    out, expected, _ = run
    res = run_cli("quarantine", "export", str(out), str(tmp_path / "fix"))
    assert res.returncode == 0, res.stderr
    written = {str(p.relative_to(tmp_path / "fix")): p.read_bytes()
               for p in sorted((tmp_path / "fix").rglob("*")) if p.is_file()}
    assert set(written) == set(expected)
    for name, data in expected.items():
        assert hashlib.sha256(written[name]).digest() == hashlib.sha256(data).digest(), name
    assert "tab/nokey.parquet: 0 records, 0 bytes -> - (quarantined as a whole (unreadable_file): read the " \
           "original)" in res.stdout
    assert "notes/big.txt: 1 record, 2,000 bytes -> " in res.stdout  # not "1 records"
    # Filters: one source, one kind. The big line came back through its side file.
    assert len(written["web/a.jsonl"]) == HUGE + 4 + 13
    done = export(out, tmp_path / "only", source="forum", kind="malformed_row")
    assert [(e.source, e.file, e.records) for e in done] == [("forum", "posts.csv", 2)]
    # A filter that matches nothing quarantined is a typo: it exported nothing and said "exported 0".
    with pytest.raises(ValueError, match="--kind 'no_such_kind': no quarantined record has it in .*; there are: "
                                         ".*invalid_json.*malformed_row"):
        export(out, tmp_path / "none", kind="no_such_kind")
    res = run_cli("quarantine", "export", str(out), str(tmp_path / "none"), "--source", "foro")
    assert res.returncode == 2 and "error: --source 'foro': no quarantined record has it" in res.stderr
    assert "forum" in res.stderr and not (tmp_path / "none").exists()


def test_export_never_writes_over_an_input_or_into_the_corpus(run, tmp_path):
    """`quarantine export` into the input folder would have overwritten each input file with its bad records
    alone; into the corpus folder it would have mixed with the corpus's files. Both are refused."""
    out, _, inp = run
    files = sorted(p for p in inp.rglob("*") if p.is_file())
    before = [p.read_bytes() for p in files]
    for dest, says in ((inp, "would not write"), (out / "fix", "lies inside the corpus folder")):
        res = run_cli("quarantine", "export", str(out), str(dest))
        assert res.returncode == 2 and says in res.stderr, res.stderr
    assert [p.read_bytes() for p in files] == before and not (out / "fix").exists()


def test_fixed_records_read_again(run, tmp_path):
    out, _, _ = run
    export(out, tmp_path / "fix", source="forum")
    fixed = (tmp_path / "fix" / "forum" / "posts.csv").read_bytes().replace(b'"never closed,de', b'"closed now",de')
    res = Pipeline([]).run([InputSpec(source="forum", path=str(_write(tmp_path / "again.csv", fixed)),
                                      id_key="id")], tmp_path / "out2", workers=1, quiet=True)
    kept = pl.read_parquet(tmp_path / "out2" / "data" / "*.parquet")
    assert kept.select("id", "text").rows() == [("2", "closed now")]
    assert res.balance[0]["quarantined"] == 1  # the record with too many fields is still wrong


def test_quarantine_list(run):
    out, _, _ = run
    df = summary(out)
    assert df.filter(pl.col("source") == "web").select("kind", "records", "side_files").rows() == [
        ("invalid_json", 2, 1), ("not_an_object", 1, 0)]
    res = run_cli("quarantine", "list", str(out))
    assert res.returncode == 0, res.stderr
    assert "11 quarantined records in 8 files" in res.stdout


def test_a_damaged_side_file_is_an_error_naming_it(run, tmp_path):
    out, _, _ = run
    copy = tmp_path / "copy"
    (copy / "quarantine" / "raw" / "notes-00002").mkdir(parents=True)
    for f in (out / "quarantine").glob("*.parquet"):
        (copy / "quarantine" / f.name).write_bytes(f.read_bytes())
    (copy / "quarantine" / "raw" / "notes-00002" / "1.zst").write_bytes(zstandard.compress(b"long " * 399))
    res = run_cli("quarantine", "export", str(copy), str(tmp_path / "fix"), "--source", "notes")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert " ".join(res.stderr.split()).startswith(
        "error: quarantined record big.txt:1 is damaged in quarantine/raw/notes-00002/1.zst: 1995 bytes, stored as "
        "2000, sha256 ")
    assert not (tmp_path / "fix" / "notes" / "big.txt").exists()  # nothing half-written


def test_check_reports_files_without_the_text_column(tmp_path):
    (tmp_path / "in" / "p").mkdir(parents=True)
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "in" / "p" / "a.parquet")
    pq.write_table(pa.table({"text": ["fine"]}), tmp_path / "in" / "p" / "b.parquet")
    _write(tmp_path / "in" / "c" / "x.csv", b"content,n\nhello,1\n")
    cfg = write_config(tmp_path / "c.yaml", f"""\
output: {tmp_path / 'out'}
inputs:
  - source: tab
    path: {tmp_path / 'in' / 'p'}
  - source: sheet
    path: {tmp_path / 'in' / 'c'}
""")
    res = run_cli("check", str(cfg))
    assert res.returncode == 2, res.stdout
    assert "error: input 'tab': Parquet file 'a.parquet' has no column 'text' (columns: body)" in res.stderr
    assert "input 'sheet': CSV file 'x.csv' header has no column 'text' (columns: content, n)" in res.stderr
    assert "b.parquet" not in res.stderr and "Traceback" not in res.stderr


def test_a_resumed_run_reads_again_a_file_whose_side_file_is_gone(tmp_path):
    big = b"not json " * 300
    path = _write(tmp_path / "in" / "a.jsonl", b'{"text": "fine"}\n' + big + b"\n")
    inputs = [InputSpec(source="web", path=str(path), max_doc_bytes=1000)]
    Pipeline([]).run(inputs, tmp_path / "out", workers=1, quiet=True)
    side = tmp_path / "out" / "work" / "00-read" / "quarantine" / "raw" / "web-00000" / "2.zst"
    assert side.is_file() and (tmp_path / "out" / "quarantine" / "raw" / "web-00000" / "2.zst").is_file()
    side.unlink()
    Pipeline([]).run(inputs, tmp_path / "out", workers=1, quiet=True)  # not resumed: read again
    assert side.is_file()
    done = export(tmp_path / "out", tmp_path / "fix")
    assert (tmp_path / "fix" / "web" / "a.jsonl").read_bytes() == big + b"\n" and done[0].records == 1


def test_an_old_quarantine_file_is_a_clear_error(tmp_path):
    q = tmp_path / "out" / "quarantine"
    q.mkdir(parents=True)
    pq.write_table(pa.table({"source": ["s"], "file": ["a.jsonl"], "line": [1], "kind": ["invalid_json"],
                             "raw": [b"{"], "raw_truncated": [False]}), q / "s-00000.parquet")
    res = run_cli("quarantine", "list", str(tmp_path / "out"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "s-00000.parquet: not a quarantine file of this version" in " ".join(res.stderr.split())
