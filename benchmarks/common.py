"""Shared benchmark helpers: synthetic corpora, timing and peak RSS measured in a fresh subprocess."""

from __future__ import annotations

import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "_work"

_WORDS = ("the of and to in is was for on that with as by at from his her it an were are which this be or has "
          "had not but first new after also one two time year city world people state school river music "
          "system water history science language market village church team season album station").split()


_WEB_EXTRA = ("café naïve über straße déjà señor façade müller "
              "привет мир город история язык 東京 中文 数据 γλώσσα").split()


def _web_text(rng: random.Random) -> str:
    """Several paragraphs of short lines, some non-ASCII words (about 1 in 8), stray double and
    trailing spaces: the per-line and non-ASCII work a single ASCII paragraph never asks for."""
    lines = []
    for _ in range(rng.randint(3, 40)):
        words = [rng.choice(_WEB_EXTRA) if rng.random() < 0.12 else rng.choice(_WORDS)
                 for _ in range(rng.randint(4, 16))]
        line = " ".join(words).capitalize() + rng.choice([".", ".", "!", ":", ""])
        if rng.random() < 0.1:
            line = line.replace(" ", "  ", 1) + " "
        lines.append(line)
        if rng.random() < 0.2:
            lines.append("")
    return "\n".join(lines)


# Corpora of more than BASE_FILES files repeat the first ones, copy k with "c<k> " starting every text and
# "c<k>-" every id: distinct documents (exact duplicates and ids unchanged in kind) with the same figures.
BASE_FILES = 20


def _marked_copy(src: Path, dst: Path, k: int) -> None:
    tmp = dst.with_suffix(".tmp")
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        for line in fin:
            line = line.replace(b'"text": "', b'"text": "c%d ' % k, 1).replace(b'"id": "', b'"id": "c%d-' % k, 1)
            fout.write(line)
    tmp.rename(dst)


def make_jsonl(folder: Path, total_mb: int, file_mb: int = 25, seed: int = 0, style: str = "para") -> list[Path]:
    """JSONL files of ~2 KB documents, `total_mb` in all; reused if already there. style "para": one
    ASCII paragraph per record; "web": lines, paragraphs, non-ASCII words (_web_text)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    rng = random.Random(seed)
    n_files = max(1, total_mb // file_mb)
    for f in range(n_files):
        path = folder / f"part-{f:04d}.jsonl"
        files.append(path)
        if path.exists():
            continue
        if f >= BASE_FILES:  # generating costs minutes per GB: later files are marked copies (see BASE_FILES)
            _marked_copy(files[f % BASE_FILES], path, f // BASE_FILES)
            continue
        with open(path.with_suffix(".tmp"), "w") as fh:
            written = 0
            i = 0
            while written < file_mb * 1_000_000:
                if style == "web":
                    text = _web_text(rng)
                else:
                    n = rng.randint(50, 700)
                    text = " ".join(rng.choice(_WORDS) for _ in range(n)).capitalize() + "."
                line = json.dumps({"id": f"{f}-{i}", "text": text, "url": f"https://example.com/{f}/{i}",
                                   "date": "2026-01-01", "score": rng.random()}) + "\n"
                fh.write(line)
                written += len(line)
                i += 1
        path.with_suffix(".tmp").rename(path)
    return files


def measure(code: str) -> dict:
    """Run python code in a subprocess; it must print one JSON object. Adds wall seconds (the code
    measures its own peak RSS, with PEAK_RSS)."""
    return measure_in(Path(sys.executable), code, ROOT)


def measure_in(python: Path, code: str, cwd: Path | None = None) -> dict:
    """``measure`` with another interpreter (datatrove's venv), or in another checkout (its own .venv,
    run from its folder so ``import corpus`` finds that checkout's code)."""
    start = time.perf_counter()
    out = subprocess.run([str(python), "-c", code], cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    return result


PEAK_RSS = """
import resource, json
def peak_mb():
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec, so a child of a big
    # benchmark process would report its parent's size
    own = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024
"""


def table(rows: list[dict], cols: list[str]) -> str:
    widths = [max(len(c), *(len(f"{r.get(c, '')}") for r in rows)) for c in cols]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(f"{r.get(c, '')}".ljust(w) for c, w in zip(cols, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def rusage_children_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
