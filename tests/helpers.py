"""Small shared helpers for tests: make input files, run the real CLI in a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma "
         "tau upsilon phi chi psi omega river stone cloud bread apple train music garden window").split()


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def make_jsonl_corpus(folder: Path, files: int, docs_per_file: int, seed: int = 0, dup_every: int = 7) -> int:
    """JSONL files of varied documents with planted exact duplicates and short docs; returns records."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    pool: list[str] = []
    for f in range(files):
        with open(folder / f"part-{f:03d}.jsonl", "w") as fh:
            for i in range(docs_per_file):
                if pool and i % dup_every == 0:
                    text = rng.choice(pool)
                elif i % 11 == 0:
                    text = "short"
                else:
                    text = "\n".join(sentence(rng, rng.randint(5, 30)) for _ in range(rng.randint(1, 8)))
                    pool.append(text)
                fh.write(json.dumps({"text": text, "n": i, "tag": f"f{f}"}) + "\n")
                n += 1
    return n


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]


def chromium(sync_api):
    """A generator for a module-scoped ``browser`` fixture: headless Chromium, closed at the end."""
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def require_browser():
    """playwright's sync_api for a module of browser tests: skipped (and named at the end of the run) when
    Chromium or playwright is missing, a failure instead where CORPUS_REQUIRE_BROWSER is set (CI)."""
    import pytest

    missing = None
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} is absent (apt-get install chromium)"
    else:
        try:
            from playwright import sync_api
        except ImportError:
            missing = "playwright is not installed (pip install playwright)"
    if missing:
        if os.environ.get("CORPUS_REQUIRE_BROWSER"):
            pytest.fail(f"browser test cannot run: {missing}", pytrace=False)
        pytest.skip(f"browser test skipped: {missing}", allow_module_level=True)
    return sync_api


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 240):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "corpus", *args], cwd=cwd or ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def tree_digest(folder: Path, pattern: str = "**/*.parquet") -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.glob(pattern))}


def write_config(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def read_all(folder: Path, pattern: str = "**/*.parquet"):
    """All Parquet files under folder as one frame (stages add different columns: union by name)."""
    import polars as pl

    return pl.concat([pl.read_parquet(p) for p in sorted(folder.glob(pattern))], how="diagonal_relaxed")
