"""The corpus manifest: `manifest.json` next to `data/`, describing the shards exactly."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq

from corpus.writers import write_bytes_atomic

FORMAT = "corpusforge.corpus/1"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(root: Path, shard_paths: list[Path], extra: dict | None = None) -> dict:
    """Describe `shard_paths` (relative to root in the manifest): schema, docs, bytes, hashes."""
    shards, schema = [], None
    for p in shard_paths:
        meta = pq.ParquetFile(p).metadata
        if schema is None:
            schema = {f.name: str(f.type) for f in pq.read_schema(p)}
        shards.append(
            {"path": str(p.relative_to(root)), "docs": meta.num_rows, "bytes": p.stat().st_size,
             "sha256": file_sha256(p)}
        )
    content = hashlib.sha256("".join(s["sha256"] for s in shards).encode()).hexdigest()
    manifest = {
        "format": FORMAT,
        "schema": schema or {},
        "docs": sum(s["docs"] for s in shards),
        "bytes": sum(s["bytes"] for s in shards),
        "content_hash": content,
        "shards": shards,
        **(extra or {}),
    }
    write_bytes_atomic(root / "manifest.json", json.dumps(manifest, indent=2).encode())
    return manifest


def read_manifest(root: Path) -> dict:
    path = root / "manifest.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{root} has no manifest.json: not a corpusforge corpus folder") from None
