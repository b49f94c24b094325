"""Data contracts: Great Expectations suites checked against corpora and token shards, and as pipeline gates.

    from corpus.validation import validate_input, suggest_suite
    doc = validate_input("out/quickstart", "suites/web.json")       # a results document (docs/validation.md)
    suggest_suite("out/quickstart", "suites/proposed.json")           # a suite to review, from a trusted corpus

In a pipeline: ``- op: validate`` with ``suite`` and ``on_fail: stop | warn | quarantine`` (operator.py).
Modules: gx (the one that talks to Great Expectations), suites (reading and checking GX suites), engine
(running one over parts and over the whole corpus), documents and tokens (the tables suites run on),
suggest, results (words and catalog rows), report (the report section).

Great Expectations is imported only when a suite is loaded (it takes seconds): ``pip install
"corpusforge[validation]"``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

__all__ = ["input_tables", "suggest_suite", "validate_input"]

# Data on disk per worker process of a command: each one's start (importing Great Expectations, about 5 s
# here) outweighs the work it takes over below that (docs/benchmarks.md): a small corpus is checked in
# this process.
WORKER_BYTES = 128 << 20


def pool_size(workers: int, tables: list) -> int:
    """The worker processes for checking these tables: at most ``workers`` (0: one per core), one per
    WORKER_BYTES of their files (at least one, which runs in this process); ``workers`` where the
    files' sizes are not known."""
    from corpus.work import resolve_workers

    workers = resolve_workers(workers)
    sizes = [p.bytes for t in tables for p in t.parts]
    if not sizes or not all(sizes):
        return workers
    return max(1, min(workers, sum(sizes) // WORKER_BYTES))


def input_tables(target: str | Path, kind: str) -> list:
    """The tables a ``kind`` suite runs on for ``target``: token shard sets (a prefix or a folder of
    them), a corpus folder (manifest.json, checked), or Parquet/JSONL files as they are."""
    from corpus.validation import documents, tokens

    path = Path(target)
    if tokens.is_token_input(path):
        if kind != "tokens":
            raise ValueError(f"{target} holds token shards; this is a {kind} suite (token suites have "
                             '"meta": {"kind": "tokens"}; `corpus validate suggest` writes one)')
        return tokens.tables(path)
    if kind == "tokens":
        raise ValueError(f"{target}: a token suite checks token shard sets (a PREFIX with .bin/.idx, or a "
                         "folder of them)")
    if (path / "manifest.json").is_file():
        return [documents.corpus_table(path)]
    return [documents.files_table(str(target))]


def validate_input(target: str | Path, suite: str | Path, workers: int = 2, examples: int = 5) -> dict:
    """Check ``target`` against the suite file; the results document (``success`` says whether every
    critical expectation held). Reads only; writes nothing beside a temporary folder."""
    from corpus.executor import worker_pool
    from corpus.validation.engine import validate
    from corpus.validation.suites import load_suite

    s = load_suite(suite)
    tables = input_tables(target, s.kind)
    with (tempfile.TemporaryDirectory(prefix="corpusforge-validate-") as tmp,
          worker_pool(pool_size(workers, tables)) as pool_map):
        doc = validate(s, tables, pool_map, Path(tmp), examples=examples)  # type: ignore[arg-type]
    doc["input"] = str(target)
    return doc


def suggest_suite(target: str | Path, out: str | Path, workers: int = 2, name: str | None = None) -> dict:
    """Profile a trusted corpus (or token shard sets) and write a proposed suite to ``out``; returns it."""
    from corpus.executor import worker_pool
    from corpus.validation import tokens
    from corpus.validation.suggest import suggest_documents
    from corpus.validation.suites import write_suite

    path = Path(target)
    name = name or f"{path.name or 'corpus'}-contract"
    note = f"proposed by `corpus validate suggest {target}`: review every bound before relying on it"
    if tokens.is_token_input(path):
        tokens.prefixes(path)  # the shard sets exist
        return write_suite(Path(out), name, "tokens", tokens.default_entries(), note)
    table = input_tables(target, "documents")[0]
    with worker_pool(pool_size(workers, [table])) as pool_map:
        entries = suggest_documents(table, pool_map, str(target))  # type: ignore[arg-type]
    return write_suite(Path(out), name, "documents", entries, note)
