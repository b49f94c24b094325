"""What a training run reports: metrics (JSONL + TensorBoard), MFU, curves, a report (the progress
display is the toolkit's one, ``corpus.progress``).

Everything here runs on rank 0 only (the trainer passes ``enabled=False`` elsewhere).
"""

from __future__ import annotations

import json
import logging
import math
from html import escape
from pathlib import Path
from typing import Any

import torch

from corpus.writers import write_bytes_atomic

log = logging.getLogger("corpusforge.train")

# Dense bf16 tensor-core peaks (TFLOPS) by device-name fragment, first match wins. These are the
# vendor datasheet figures without sparsity; set `train.peak_tflops` for anything else.
PEAK_TFLOPS = [
    ("B200", 2250.0), ("H200", 989.0), ("GH200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0),
    ("H800", 989.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0),
    ("A10G", 70.0), ("A10", 125.0), ("RTX 4090", 165.0), ("RTX 3090", 71.0), ("V100", 125.0), ("T4", 65.0),
]
UNKNOWN_GPU_TFLOPS = 100.0
# CPU guess, fp32 per thread torch uses: 2.5 GHz x FLOP/cycle of two FMA units of the vector width
# torch dispatches to (AVX-512: 2 x 16 lanes x 2, AVX2: 2 x 8 x 2).
CPU_FLOP_PER_CYCLE = {"AVX512": 64, "AVX2": 32}
CPU_GHZ = 2.5


def peak_tflops(device: torch.device, configured: float = 0.0) -> float:
    """Peak FLOPS per device for MFU: the configured figure, else a guess from the device name."""
    if configured > 0:
        return configured
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for frag, tf in PEAK_TFLOPS:
            if frag in name:
                return tf
        return UNKNOWN_GPU_TFLOPS
    per_cycle = CPU_FLOP_PER_CYCLE.get(torch.backends.cpu.get_cpu_capability(), 8)
    return CPU_GHZ * per_cycle * torch.get_num_threads() / 1e3


class MetricsLog:
    """Appends metric rows to ``metrics.jsonl`` and mirrors scalars to TensorBoard.

    On resume the file is cut back to the checkpoint's step and TensorBoard purges later events,
    so a run killed after its last checkpoint leaves no duplicate or orphan points."""

    def __init__(self, out_dir: Path, *, enabled: bool, tensorboard: bool, resume_step: int | None):
        self.path = out_dir / "metrics.jsonl"
        self.enabled = enabled
        self.rows: list[dict[str, Any]] = []
        self.tb = None
        if not enabled:
            return
        if resume_step is None:
            self.path.unlink(missing_ok=True)
        elif self.path.exists():
            with open(self.path) as fh:
                self.rows = [r for r in map(json.loads, filter(str.strip, fh)) if r.get("step", 0) <= resume_step]
            write_bytes_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.rows).encode())
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)

    def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"type": kind, "step": step, **values}
        self.rows.append(row)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                    self.tb.add_scalar(f"{kind}/{k}", v, step)
                elif isinstance(v, list) and v and all(isinstance(s, str) for s in v):
                    self.tb.add_text(f"{kind}/{k}", "\n\n".join(escape(s) for s in v), step)

    def series(self, kind: str, key: str) -> list[tuple[int, float]]:
        return [(r["step"], r[key]) for r in self.rows if r["type"] == kind and isinstance(r.get(key), int | float)]

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# ---------------------------------------------------------------- curves and report


def curves_svg(train: list[tuple[int, float]], val: list[tuple[int, float]], title: str = "loss") -> str:
    """A self-contained SVG line chart of training and validation loss against the step."""
    W, H, L, R, T, B = 640, 360, 60, 20, 30, 40
    pts = train + val
    if not pts:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}">'
                '<text x="20" y="30">no data</text></svg>')
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.05 or 0.5
    y0, y1 = y0 - pad, y1 + pad

    def sx(x: float) -> float:
        return L + (x - x0) / (x1 - x0) * (W - L - R)

    def sy(y: float) -> float:
        return T + (y1 - y) / (y1 - y0) * (H - T - B)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" '
           f'font-size="11"><rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="13">{escape(title)}</text>',
           f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="#444"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="#444"/>']
    for k in range(5):
        yv = y0 + (y1 - y0) * k / 4
        xv = x0 + (x1 - x0) * k / 4
        out.append(f'<line x1="{L - 4}" y1="{sy(yv):.1f}" x2="{W - R}" y2="{sy(yv):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{L - 6}" y="{sy(yv) + 4:.1f}" text-anchor="end">{yv:.3g}</text>')
        out.append(f'<text x="{sx(xv):.1f}" y="{H - B + 16}" text-anchor="middle">{xv:.0f}</text>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 6}" text-anchor="middle">step</text>')
    for series, color, name, dy in ((train, "#1f77b4", "train", 0), (val, "#d62728", "validation", 16)):
        if series:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in series)
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
            if len(series) < 60:
                out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{color}"/>' for x, y in series]
            out.append(f'<rect x="{W - R - 110}" y="{T + dy}" width="10" height="10" fill="{color}"/>'
                       f'<text x="{W - R - 95}" y="{T + dy + 9}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out)


def diagnose(train: list[tuple[int, float]], val: list[tuple[int, float]]) -> str:
    """One line on the fit, read off the curves: overfitting shows as validation rising while the
    training loss keeps falling; underfitting as both still falling at the end."""
    if len(val) < 3:
        return "too few evaluations to judge the fit"
    best = min(range(len(val)), key=lambda i: val[i][1])
    last = val[-1][1]
    if best < len(val) - 1 and last > val[best][1] * 1.02:
        tr_then = [y for x, y in train if x <= val[best][0]]
        tr_now = train[-1][1] if train else math.nan
        if tr_then and tr_now < tr_then[-1]:
            return (f"overfitting: validation loss bottomed at step {val[best][0]} ({val[best][1]:.4f}) and rose to "
                    f"{last:.4f} while training loss kept falling; use the best checkpoint or stop earlier")
    if val[-1][1] < val[-2][1] < val[-3][1]:
        return "still improving at the end: likely underfitting, train longer"
    return "validation loss has flattened out"


def write_report(out_dir: Path, logs: MetricsLog, summary: dict[str, Any]) -> None:
    train, val = logs.series("train", "loss"), logs.series("eval", "val_loss")
    write_bytes_atomic(out_dir / "curves.svg", curves_svg(train, val, "loss: train vs validation").encode())
    lines = [f"# Training run: {summary.get('plugin', '')}", "", "![loss curves](curves.svg)", "",
             f"**Fit:** {diagnose(train, val)}", "", "| key | value |", "|---|---|"]
    for k, v in summary.items():
        if isinstance(v, float):
            v = f"{v:.6g}"
        lines.append(f"| {k} | {v} |")
    write_bytes_atomic(out_dir / "report.md", ("\n".join(lines) + "\n").encode())
