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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corpus.progress import Progress

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


def validate_input(target: str | Path, suite: str | Path, workers: int = 2, examples: int = 5,
                   progress: Progress | None = None) -> dict:
    """Check ``target`` against the suite file; the results document (``success`` says whether every
    critical expectation held). Reads only; writes nothing beside a temporary folder. ``progress``: a bar
    advanced as each part is checked (`corpus validate`), closed at the end."""
    from corpus.executor import worker_pool
    from corpus.validation.engine import validate
    from corpus.validation.suites import load_suite

    s = load_suite(suite)
    tables = input_tables(target, s.kind)
    with (tempfile.TemporaryDirectory(prefix="corpusforge-validate-") as tmp,
          worker_pool(pool_size(workers, tables)) as pool_map, _shown(progress) as show):
        doc = validate(s, tables, show(pool_map, "validate"), Path(tmp), examples=examples)  # type: ignore[arg-type]
    doc["input"] = str(target)
    return doc


def suggest_suite(target: str | Path, out: str | Path, workers: int = 2, name: str | None = None,
                  progress: Progress | None = None) -> dict:
    """Profile a trusted corpus (or token shard sets) and write a proposed suite to ``out``; returns it.
    ``progress``: as validate_input's."""
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
    with worker_pool(pool_size(workers, [table])) as pool_map, _shown(progress) as show:
        entries = suggest_documents(table, show(pool_map, "suggest"), str(target))  # type: ignore[arg-type]
    return write_suite(Path(out), name, "documents", entries, note)


@contextmanager
def _shown(progress: Progress | None) -> Iterator[Callable[[Callable, str], Callable]]:
    """``show(pool_map, label)``: the pool's map with a bar per call, advanced by each part's rows and
    bytes on disk as it is done (the pool itself when there is no progress to show)."""
    if progress is None:
        yield lambda pool_map, label: pool_map
        return

    def show(pool_map: Callable, label: str) -> Callable:
        def shown(fn: Callable, items: Sequence) -> list:
            parts = [x.part if hasattr(x, "part") else x[0] for x in items]  # PartJobs, or (part, ...) tuples
            size = {p.index: p.bytes for p in parts}
            mean = sum(size.values()) // max(len(parts), 1)
            table = getattr(items[0], "table", None) if items else None  # token shards: documents, then files
            bar = progress.add(f"{label} {table}" if table else label, total=len(items), unit="MB/s of files")

            def each(result: Any) -> None:
                part = result.get("part") if isinstance(result, dict) else None
                rows = result.get("rows", 0) if isinstance(result, dict) else getattr(result, "height", 0)
                progress.advance(bar, docs=rows, nbytes=size.get(part, mean))

            return pool_map(fn, items, each=each)

        return shown

    progress.start()
    try:
        yield show
    finally:
        progress.close()
