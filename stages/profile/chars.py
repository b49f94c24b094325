"""Character classes and scripts of every code point: the tables kernel.py counts with.

The tables are built by running the class regexes (``\\p{L}``, ``\\p{Nd}``...) through polars' own
engine, so "alpha" means exactly what polars (and Unicode) mean by it. Each code point gets a byte
of class bits (and UNSTABLE: NFC might change a text holding it, ``normalise.nfc_unstable_points``);
letters also get a script. Building them takes a second, so the package ships them
(``unicode_classes.npz``, 6 KB; ``python -m corpus.stages.profile.chars`` writes it again, and a test
checks it against a fresh build).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl

from corpus.stages.normalise import CHARACTER_RANGES, nfc_unstable_points

from .constants import SCRIPTS

ALPHA, DIGIT, UPPER, PUNCT, SPACE, NONPRINT = (1 << i for i in range(6))  # SPACE: words and lines split there
CLASS_RE = {ALPHA: r"\p{L}", DIGIT: r"\p{Nd}", UPPER: r"\p{Lu}", PUNCT: r"\p{P}", SPACE: r"\s",
            NONPRINT: r"[\p{C}--[\t\n\r]]"}
UNSTABLE = 1 << 7  # not a class: see the module docstring (bit 6 is kernel.TERMINAL)
COUNTED = {"alpha": ALPHA, "digit": DIGIT, "upper": UPPER, "punct": PUNCT, "space": SPACE, "nonprint": NONPRINT}


def _class_bits(cps: np.ndarray) -> tuple[np.ndarray, pl.DataFrame]:
    """Class bits of the given code points, and the one-column frame of their characters."""
    chars = pl.Series("c", list(cps.astype("<u4").tobytes().decode("utf-32-le")), dtype=pl.String).to_frame()
    cls = chars.select(*(pl.col("c").str.contains(f"^{rx}$").alias(str(bit)) for bit, rx in CLASS_RE.items()))
    bits = np.zeros(len(cps), np.uint8)
    for bit in CLASS_RE:
        bits |= cls[str(bit)].to_numpy().astype(np.uint8) * np.uint8(bit)
    return bits, chars


@dataclass(frozen=True)
class CodePoints:
    flags: np.ndarray  # uint8 class bits (and UNSTABLE) per code point
    script: np.ndarray  # uint8 per code point: 1 + index in SCRIPTS, 0 for other (letters only)


TABLE_FILE = Path(__file__).with_name("unicode_classes.npz")


@cache
def code_point_table() -> CodePoints:
    """The shipped table (built by build_code_point_table)."""
    with np.load(TABLE_FILE) as z:
        return CodePoints(z["flags"], z["script"])


def build_code_point_table() -> CodePoints:
    """Class bits and script of every code point, from polars' regex engine (~1 s).
    Planes 4-13 and 15-16 hold only unassigned and private-use code points (all \\p{C})."""
    cps = np.concatenate([np.arange(r.start, r.stop) for r in CHARACTER_RANGES])
    bits, chars = _class_bits(cps)
    flags = np.full(0x110000, NONPRINT, np.uint8)
    flags[cps] = bits
    flags[nfc_unstable_points()] |= UNSTABLE
    letters = cps[(bits & ALPHA) != 0]
    scr = chars.filter(pl.Series((bits & ALPHA) != 0)).select(
        *(pl.col("c").str.contains(rf"^\p{{{s}}}$").alias(s) for s in SCRIPTS))
    script = np.zeros(0x110000, np.uint8)
    for i, s in enumerate(SCRIPTS, 1):
        script[letters[scr[s].to_numpy()]] = i
    return CodePoints(flags, script)


if __name__ == "__main__":
    table = build_code_point_table()
    np.savez_compressed(TABLE_FILE, flags=table.flags, script=table.script)
    print(f"wrote {TABLE_FILE}")
