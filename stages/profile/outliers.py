"""Outliers: documents with |robust z| > 3.5 on a feature, counted and shown, per section.

Each doc is judged against its section's median and robust scale (from the fine histograms, see
histograms.py): the whole corpus for the overall section, its source for the per-source one. Both
need the final figures, so the spilled features are read back a few files at a time (at most
BATCH_ROWS rows: memory stays flat), counting hits and keeping the OUTLIER_EXAMPLES best examples
per section and feature: largest |z| first, ties by id, value, source (nulls first, as polars
sorts). Only the examples' snippets are read, from the row groups that hold them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from .aggregate import Acc, SourceAcc
from .constants import FEATURES, OUTLIER_EXAMPLES, Z_THRESHOLD
from .histograms import num, robust_params


def outliers(files: list[Path], acc: Acc, overall: SourceAcc) -> dict[str, dict[str, dict]]:
    """{section: {feature: {count, examples}}}; section "" is the whole corpus."""
    names = sorted(acc.sources)
    code = {s: i for i, s in enumerate(names)}
    med_all, scale_all = _params([robust_params(overall)])
    # One source: its figures are the overall ones (the fine histograms' search is not free).
    med_src, scale_src = (med_all, scale_all) if len(names) == 1 else _params(
        [robust_params(acc.sources[s]) for s in names])
    counts = {f: np.zeros(len(names) + 1, np.int64) for f in FEATURES}  # per source, then overall
    best: dict[tuple[str, str], list[tuple]] = {}  # (section, feature) -> its best examples so far
    for batch in _batches(files):
        # Several spill files at once (polars reads them in parallel), memory bounded by BATCH_ROWS.
        part = pl.read_parquet([p for p, _ in batch], columns=["source", *FEATURES])
        codes = part["source"].replace_strict(code, return_dtype=pl.Int64).to_numpy()
        offers: list[tuple[tuple[str, str], np.ndarray, np.ndarray, np.ndarray]] = []
        for j, f in enumerate(FEATURES):
            x = part[f].cast(pl.Float64).to_numpy()  # NaN (or null) where the feature does not apply
            # One source: its section is the whole corpus, the same z (only the sides' counts differ).
            sides = (("all", med_all[0, j], scale_all[0, j]),) if len(names) == 1 else (
                ("src", med_src[codes, j], scale_src[codes, j]), ("all", med_all[0, j], scale_all[0, j]))
            for side, med, sc in sides:
                with np.errstate(invalid="ignore"):
                    z = (x - med) / sc  # the scale is NaN where there are no outliers: z is NaN
                    az = np.abs(z)
                    hit = np.flatnonzero(az > Z_THRESHOLD)
                if len(hit) == 0:
                    continue
                if len(names) == 1:
                    counts[f] += len(hit)
                    groups = [(names[0], hit), ("", hit)]
                elif side == "all":
                    counts[f][-1] += len(hit)
                    groups = [("", hit)]
                else:
                    by_src = np.bincount(codes[hit], minlength=len(names))
                    counts[f][:len(names)] += by_src
                    groups = [(names[c], hit if len(by_src) == 1 else hit[codes[hit] == c])
                              for c in np.flatnonzero(by_src)]
                for section, rows in groups:
                    rows = _contenders(rows, az, best.get((section, f)))
                    if len(rows):
                        offers.append(((section, f), rows, z[rows], x[rows]))
        if offers:  # ids and snippets only for the rows that may enter, from their own files
            text = _rows_text(batch, np.unique(np.concatenate([o[1] for o in offers])))
            for key, rows, zs, xs in offers:
                got = [text[r] for r in rows.tolist()]
                cand = best.get(key, []) + [(-abs(z), i is not None, i or "", x, s, z, i, snip)
                                            for (i, s, snip), z, x in zip(got, zs.tolist(), xs.tolist(), strict=True)]
                best[key] = sorted(cand, key=lambda t: t[:5])[:OUTLIER_EXAMPLES]
    out: dict[str, dict[str, dict]] = {}
    for i, section in enumerate([*names, ""]):
        out[section] = {f: {"count": int(counts[f][i if section else -1]),
                            "examples": [{"id": t[6], "source": t[4], "value": num(t[3]), "robust_z": num(t[5]),
                                          "snippet": t[7]} for t in best.get((section, f), [])]}
                        for f in FEATURES}
    return {"": out.pop(""), **out}


BATCH_ROWS = 65_536  # about 8 MB of features per read: memory stays flat from small corpora on


def _batches(files: list[Path]) -> list[list[tuple[Path, pq.FileMetaData]]]:
    out: list[list[tuple[Path, pq.FileMetaData]]] = []
    rows = BATCH_ROWS
    for path in files:
        md = pq.ParquetFile(path).metadata
        if rows + md.num_rows > BATCH_ROWS:
            out.append([])
            rows = 0
        out[-1].append((path, md))
        rows += md.num_rows
    return out


def _rows_text(batch: list[tuple[Path, pq.FileMetaData]], rows: np.ndarray) -> dict[int, tuple]:
    """(id, source, snippet) of the given rows of a batch (row numbers across its files), read from
    the row groups that hold them only (the spill writes small ones for this)."""
    out: dict[int, tuple] = {}
    start = 0
    for path, md in batch:
        mine = rows[(rows >= start) & (rows < start + md.num_rows)] - start
        if len(mine):
            sizes = np.array([md.row_group(i).num_rows for i in range(md.num_row_groups)], np.int64)
            firsts = np.concatenate([[0], np.cumsum(sizes)])
            g_of = np.searchsorted(firsts, mine, side="right") - 1
            groups = np.unique(g_of)
            part = pq.ParquetFile(path).read_row_groups(groups.tolist(), columns=["id", "source", "snippet"])
            # Row r of the file is row r - firsts[g] + (rows of the groups read before g) of part.
            before = np.zeros(len(sizes), np.int64)
            before[groups] = np.cumsum(sizes[groups]) - sizes[groups]
            local = mine - firsts[g_of] + before[g_of]
            got = pl.from_arrow(part)[local].rows()  # type: ignore[index]  (not Table.take: it imports pandas)
            out.update(zip((mine + start).tolist(), got, strict=True))
        start += md.num_rows
    return out


def _contenders(rows: np.ndarray, az: np.ndarray, held: list[tuple] | None) -> np.ndarray:
    """The rows that can still enter the examples: at or above the k-th best |z| of this file and
    of those held (ties stay: the id decides among them)."""
    a = az[rows]
    floor = -held[-1][0] if held and len(held) == OUTLIER_EXAMPLES else -np.inf
    if len(rows) > OUTLIER_EXAMPLES:
        floor = max(floor, np.partition(a, -OUTLIER_EXAMPLES)[-OUTLIER_EXAMPLES])
    return rows[a >= floor]


def _params(per_section: list[dict[str, tuple[float, float | None]]]) -> tuple[np.ndarray, np.ndarray]:
    """(medians, scales) as [section, feature] arrays; a missing scale is NaN (no outliers)."""
    med = np.array([[p[f][0] for f in FEATURES] for p in per_section], np.float64).reshape(-1, len(FEATURES))
    sc = np.array([[np.nan if p[f][1] is None else p[f][1] for f in FEATURES] for p in per_section],
                  np.float64).reshape(-1, len(FEATURES))
    return med, sc
