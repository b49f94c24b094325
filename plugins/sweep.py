"""``corpus train sweep sweep.yaml``: grid or random search over a plugin config's training knobs.

    plugin: sft
    base: sft.yaml             # the config every trial starts from (relative to this file)
    output: ../../out/sweep
    method: grid               # grid: every combination | random: `trials` draws
    trials: 8
    seed: 0
    parallel: 1                # trials at once; > 1 runs each trial in its own process
    space:
      train.lr: [1.0e-4, 3.0e-4]               # a list: grid values / random choices
      train.warmup_steps: {int_uniform: [0, 20]}   # random only: uniform, log_uniform, int_uniform

Each trial runs in ``<output>/trial-NNN/``. Trials are ranked by their best validation loss;
``<output>/sweep.json`` lists them all, ``<output>/best.yaml`` is the base config with the winning
values, ready for ``corpus train PLUGIN best.yaml``. Every trial config is validated before the
first one starts, and so is every trial folder: a rerun resumes its trials, and a folder holding
another sweep's (checkpoints of other configs) is refused.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import subprocess
import sys
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from corpus import plugins
from corpus.lock import RunLock
from corpus.plugins.base import ConfigError, build_section, missing_inputs, parse_config, read_yaml
from corpus.writers import finite_json

DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform")


@dataclass
class SweepConfig:
    plugin: str = ""
    base: str = ""
    output: str = ""
    method: str = "grid"
    trials: int = 8
    seed: int = 0
    parallel: int = 1
    space: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in ("grid", "random"):
            raise ValueError(f"method must be 'grid' or 'random', got {self.method!r}")
        for name in ("trials", "parallel"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        for name in ("plugin", "base", "output"):
            if not getattr(self, name):
                raise ValueError(f"'{name}' is required")
        if not self.space:
            raise ValueError("'space' is required: a mapping of dotted config keys to values")


def _field_type(cls: type, dotted: str) -> Any:
    """The annotated type of a dotted key in a config dataclass, or None when there is no such key."""
    tp: Any = cls
    for part in dotted.split("."):
        if not (isinstance(tp, type) and dataclasses.is_dataclass(tp)):
            return None
        hints = typing.get_type_hints(tp)
        if part not in hints:
            return None
        tp = hints[part]
    return tp


def _check_space(cfg: SweepConfig, config_cls: type, lines: dict) -> list[str]:
    errors = []
    for key, spec in cfg.space.items():
        line = lines.get(("space", key), 0)
        if _field_type(config_cls, key) is None:
            errors.append(f"{line}: space.{key}: not a key of the {cfg.plugin} config")
        elif isinstance(spec, dict):
            kind = next(iter(spec), None)
            bounds = spec.get(kind)
            if len(spec) != 1 or kind not in DISTRIBUTIONS or not (isinstance(bounds, list) and len(bounds) == 2):
                errors.append(f"{line}: space.{key}: expected a list of values or one of "
                              f"{{{', '.join(DISTRIBUTIONS)}: [low, high]}}")
            elif cfg.method == "grid":
                errors.append(f"{line}: space.{key}: a distribution needs method: random (grid takes lists)")
            elif not all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds) \
                    or not bounds[0] <= bounds[1] or (kind == "log_uniform" and not bounds[0] > 0):
                need = "0 < low <= high" if kind == "log_uniform" else "numbers, low <= high"
                errors.append(f"{line}: space.{key}: {kind} needs [low, high] with {need}, got {bounds}")
            elif kind == "int_uniform" and not all(float(b).is_integer() for b in bounds):
                errors.append(f"{line}: space.{key}: int_uniform needs whole numbers, got {bounds}")
        elif not isinstance(spec, list) or not spec:
            errors.append(f"{line}: space.{key}: expected a non-empty list of values")
    return errors


def trial_params(cfg: SweepConfig) -> list[dict[str, Any]]:
    """The overrides of every trial: the grid's product, or seeded random draws."""
    keys = list(cfg.space)
    if cfg.method == "grid":
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(cfg.space[k] for k in keys))]
    rng = np.random.default_rng(cfg.seed)
    out = []
    for _ in range(cfg.trials):
        params = {}
        for k in keys:
            spec = cfg.space[k]
            if isinstance(spec, list):
                params[k] = spec[int(rng.integers(len(spec)))]
            else:
                kind, (lo, hi) = next(iter(spec.items()))
                if kind == "uniform":
                    params[k] = float(rng.uniform(float(lo), float(hi)))
                elif kind == "log_uniform":
                    params[k] = float(math.exp(rng.uniform(math.log(float(lo)), math.log(float(hi)))))
                else:
                    params[k] = int(rng.integers(int(lo), int(hi) + 1))
        out.append(params)
    return out


def _set(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        data = data.setdefault(k, {})
    data[keys[-1]] = value


def load_sweep(path: str | Path) -> tuple[SweepConfig, Path, dict, list[dict[str, Any]]]:
    """(sweep config, base config path, base config data, trial overrides), all validated."""
    path = Path(path)
    data, lines = read_yaml(path)
    errors: list[str] = []
    cfg = build_section(SweepConfig, data, "sweep", lines, (), errors)
    if cfg is None:
        raise ConfigError([f"{path}:{e}" for e in errors])
    try:
        cls = plugins.get(cfg.plugin)
    except plugins.UnknownPlugin as exc:
        raise ConfigError([f"{path}:{lines.get(('plugin',), 0)}: plugin: {exc}"]) from exc
    errors += _check_space(cfg, cls.config_class, lines)
    if errors:
        raise ConfigError([f"{path}:{e}" for e in errors])
    base = (path.parent / cfg.base).resolve()
    base_data, base_lines = read_yaml(base)
    params = trial_params(cfg)
    missing: list[str] = []
    for i, p in enumerate(params):  # every trial's config must be valid, its inputs there, before anything runs
        trial = parse_config(cls.config_class, base_data, source=f"{base} (trial {i}: {p})", lines=base_lines,
                             base_dir=base.parent, plugin=cfg.plugin, output="trial", overrides=list(p.items()))
        missing += [f"{base} (trial {i}: {p}): {m}" for m in missing_inputs(trial) if not any(m in e for e in missing)]
    if missing:
        raise ConfigError(missing)
    cfg.output = str((path.parent / cfg.output).resolve())
    return cfg, base, base_data, params


def _run_inline(cfg: SweepConfig, base: Path, base_data: dict, params: dict, out: Path) -> dict[str, Any]:
    cls = plugins.get(cfg.plugin)
    conf = parse_config(cls.config_class, base_data, source=str(base), base_dir=base.parent, plugin=cfg.plugin,
                        output=out, overrides=list(params.items()))
    return plugins.run(cfg.plugin, conf).to_json()  # locks the trial folder, as a process trial does


def _command(cfg: SweepConfig, base: Path, params: dict, out: Path) -> list[str]:
    sets = [a for k, v in params.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    return [sys.executable, "-m", "corpus.plugins.cli", cfg.plugin, str(base), "--output", str(out), "--quiet", *sets]


def _trial_error(code: int, log_file: Path) -> str:
    """What a failed trial process said: its ``error: ...`` (the one-line error `corpus train` prints),
    else the end of its log (a crash's traceback)."""
    text = log_file.read_text(errors="replace").strip()
    lines = text.splitlines()
    said = [k for k, line in enumerate(lines) if line.startswith("error:")]
    return f"exit {code}: " + ("\n".join(lines[said[-1]:])[:2000] if said else text[-500:])


def _run_parallel(cfg: SweepConfig, base: Path, jobs: list[tuple[int, dict, Path]]) -> dict[int, str | None]:
    """Run trials as processes, ``cfg.parallel`` at a time; returns an error text per failed trial."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // cfg.parallel))  # share the cores, don't fight
    pending, running, errors = list(jobs), {}, {}
    while pending or running:
        while pending and len(running) < cfg.parallel:
            i, params, out = pending.pop(0)
            out.mkdir(parents=True, exist_ok=True)
            log = open(out / "log.txt", "w")  # noqa: SIM115 (closed when the process ends)
            running[i] = (subprocess.Popen(_command(cfg, base, params, out), stdout=log, stderr=subprocess.STDOUT,
                                           env=env), log, out)
        for i, (proc, log, out) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                errors[i] = None if proc.returncode == 0 else _trial_error(proc.returncode, out / "log.txt")
                del running[i]
        time.sleep(0.2)
    return errors


def run_sweep(path: str | Path, max_steps: int | None = None) -> dict[str, Any]:
    """Run a sweep; returns {"trials": [...ranked...], "best": {...}, "best_config": path}.
    ``max_steps``: every trial trains that many steps (a quick look; best.yaml keeps the base's length)."""
    cfg, base, base_data, params = load_sweep(path)
    out = Path(cfg.output)
    fixed = {"train.max_steps": max_steps} if max_steps else {}
    with RunLock(out):  # one sweep per folder; each trial locks its own folder too
        check_trial_folders(cfg, base, base_data, params, out, fixed)
        return _run_sweep(cfg, base, base_data, params, out, Path(path), fixed)


def _checkpoint_state(step: Path) -> dict[str, Any] | None:
    """The trainer state a checkpoint was saved with (its run ``config``, its ``step``); None when unreadable
    (a damaged checkpoint: the trial's resume names it, or takes an older one)."""
    from corpus.plugins.checkpoint import read_trainer_state

    try:
        state = read_trainer_state(step)
    except Exception:  # noqa: BLE001 (torch.load fails in many ways on a damaged file)
        return None
    return state if state.get("config") else None


def check_trial_folders(cfg: SweepConfig, base: Path, base_data: dict, params: list[dict[str, Any]], out: Path,
                        fixed: dict[str, Any]) -> None:
    """Raise ConfigError, before any trial starts, when a trial folder holds a checkpoint of a config other
    than that trial's (another sweep's run: a different space or base), which the trial would refuse to
    resume (ResumeMismatchError), every trial failing the same way; or when a trial's checkpoint is already
    past the steps the trial asks for (``train.max_steps``, changed by ``--max-steps``), which its resume
    refuses. The same sweep rerun resumes."""
    from corpus.plugins.trainer import RESUMABLE_CHANGES, config_changes, flatten

    cls = plugins.get(cfg.plugin)
    stale, past = [], []
    for i, p in enumerate(params):
        trial_out = out / f"trial-{i:03d}"
        state = next((c for c in map(_checkpoint_state, sorted((trial_out / "checkpoints").glob("step-*"),
                                                                reverse=True)) if c), None)  # the newest readable
        if not state:
            continue
        conf = parse_config(cls.config_class, base_data, source=str(base), base_dir=base.parent, plugin=cfg.plugin,
                            output=trial_out, overrides=list({**p, **fixed}.items()))
        changed = config_changes(state["config"], flatten(dataclasses.asdict(conf)),
                                 RESUMABLE_CHANGES + tuple(cls.resumable))
        if changed:
            stale.append(f"{trial_out.name} ({', '.join(changed[:4])}{', ...' if len(changed) > 4 else ''})")
        elif 0 < conf.train.max_steps < int(state.get("step", 0)):  # max_steps 0: from epochs, known at the run
            past.append(f"{trial_out.name} at step {int(state['step'])} of {conf.train.max_steps}")
    if past and not stale:
        raise ConfigError([f"{out} holds trials already past the steps asked (train.max_steps, --max-steps): "
                           f"{'; '.join(past[:3])}{'; ...' if len(past) > 3 else ''}: ask for at least as many "
                           "steps, or give this sweep another `output` for a shorter look"])
    if stale:
        raise ConfigError([f"{out} holds another sweep's trials, checkpoints of other configs that these trials "
                           f"cannot resume (changed: {'; '.join(stale[:3])}{'; ...' if len(stale) > 3 else ''}): give "
                           "this sweep another `output`, or delete that folder to start over there (sweeps take no "
                           "--fresh)"])


def _run_sweep(cfg: SweepConfig, base: Path, base_data: dict, params: list[dict[str, Any]], out: Path,
               path: Path, fixed: dict[str, Any]) -> dict[str, Any]:
    jobs = [(i, p, out / f"trial-{i:03d}") for i, p in enumerate(params)]
    trials = []
    if cfg.parallel > 1:
        errors = _run_parallel(cfg, base, [(i, {**p, **fixed}, trial_out) for i, p, trial_out in jobs])
    else:
        errors = {}
        for i, p, trial_out in jobs:
            try:
                _run_inline(cfg, base, base_data, {**p, **fixed}, trial_out)
                errors[i] = None
            except Exception as exc:  # one failed trial must not stop the sweep
                errors[i] = f"{type(exc).__name__}: {exc}"
    for i, p, trial_out in jobs:
        res_path = trial_out / "result.json"
        res = json.loads(res_path.read_text()) if errors.get(i) is None and res_path.exists() else {}
        trials.append({"trial": i, "params": p, "out": str(trial_out), "best_val_loss": res.get("best_val_loss"),
                       "steps": res.get("steps"), "error": errors.get(i)})
    for t in trials:  # a diverged trial's loss (NaN, from an older result.json) ranks as a failed one
        if t["best_val_loss"] is not None and not math.isfinite(t["best_val_loss"]):
            t["best_val_loss"] = None
    trials.sort(key=lambda t: (t["best_val_loss"] is None, t["best_val_loss"] or 0.0, t["trial"]))
    summary: dict[str, Any] = {"plugin": cfg.plugin, "base": str(base), "method": cfg.method, "trials": trials}
    best = trials[0] if trials and trials[0]["best_val_loss"] is not None else None
    summary["best"] = best
    if best is not None:
        best_data = json.loads(json.dumps(base_data))  # a deep copy of plain YAML data
        for k, v in best["params"].items():
            _set(best_data, k, v)
        best_data["base_dir"] = str(base.parent)  # so the base config's relative paths still resolve
        best_data["output"] = str(out / "best")
        best_data["plugin"] = cfg.plugin
        header = (f"# Best of {len(trials)} trials (sweep {Path(path).name}): trial {best['trial']}, "
                  f"best validation loss {best['best_val_loss']:.6g}\n# {json.dumps(best['params'])}\n")
        (out / "best.yaml").write_text(header + yaml.safe_dump(best_data, sort_keys=False))
        summary["best_config"] = str(out / "best.yaml")
    (out / "sweep.json").write_text(json.dumps(finite_json(summary), indent=2, allow_nan=False))
    return summary
