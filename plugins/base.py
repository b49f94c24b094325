"""The training-plugin contract: a named stage with a typed config validated from YAML.

A plugin is a class with a ``name``, a ``config_class`` (a dataclass deriving from ``PluginConfig``)
and ``build(config, runtime) -> Task`` (``corpus.plugins.tasks``): its file is its config, its data and
its choice of task. ``TrainPlugin.run`` is the same for every plugin: lock the run folder, start the
runtime, build the task, train it with the shared trainer (resuming from the newest intact
checkpoint), export the final model.

Configs are YAML files, parsed safely and validated in full before anything runs, every error with
its file, line and key (the same machinery as pipeline configs, ``corpus.config``)::

    sft.yaml:14: train.lr: expected float, got str 'fast'
    sft.yaml:9: model.hiden_size: unknown parameter (did you mean 'hidden_size'?); known: ...

Nested mappings become nested dataclasses; lists of mappings become lists of dataclasses. Relative
paths in a config resolve against ``base_dir`` when set, else against the config file's folder.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import re
import types
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import yaml

from corpus.config import ConfigError, build_dataclass, config_dir, read_yaml
from corpus.writers import finite_json, write_bytes_atomic

if TYPE_CHECKING:
    from corpus.plugins.runtime import Runtime
    from corpus.plugins.tasks import Task

__all__ = ["ConfigError", "MissingInputError", "PluginConfig", "SampleConfig", "TrainConfig", "TrainPlugin",
           "TrainResult", "load_plugin_config", "parse_config"]

PRECISIONS = ("auto", "bf16", "fp32")


@dataclass
class TrainConfig:
    """The shared trainer's knobs (the ``train:`` section of every plugin config)."""

    lr: float = 3e-4
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 0
    weight_decay: float = 0.1  # not applied to biases and norm weights
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    batch_size: int = 8  # rows per micro-batch per process
    grad_accum: int = 1  # micro-batches per optimizer step
    grad_clip: float = 1.0  # max global grad norm; 0: off
    epochs: float = 1.0  # used when max_steps is 0; may be fractional
    max_steps: int = 0  # optimizer steps; 0: from epochs
    precision: str = "auto"  # auto: bf16 autocast on CUDA with bf16 support, fp32 elsewhere
    seed: int = 0
    deterministic: bool = True  # deterministic kernels where torch has them (warns where it has not)
    eval_every: int = 100  # steps between evaluations (0: only at the end)
    eval_batches: int = 0  # validation micro-batches per evaluation (0: the whole validation set)
    save_every: int = 0  # steps between resumable checkpoints (0: at each evaluation)
    keep_checkpoints: int = 1  # resumable checkpoints kept (the latest N)
    early_stopping_patience: int = 0  # evaluations without improvement before stopping (0: never stop)
    early_stopping_min_delta: float = 0.0
    resume: bool = True  # continue from the run folder's latest checkpoint when there is one
    log_every: int = 10  # steps between metric rows and progress lines (and at step 1)
    progress: bool = True  # progress bar on a terminal (log lines otherwise)
    tensorboard: bool = True
    peak_tflops: float = 0.0  # per device, for MFU; 0: a documented guess for the device
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    data_workers: int = 0  # DataLoader worker processes reading rows (0: in the training process)

    def __post_init__(self) -> None:
        # Each message starts with the key it rejects: the config loader points at that key's line, or
        # at `--set KEY` when the value came from the command line (a message naming several keys was
        # blamed on the first one's line in the file, whatever key was wrong).
        finite = ("lr", "min_lr_ratio", "weight_decay", "eps", "grad_clip", "epochs", "early_stopping_min_delta")
        checks = [
            *[(math.isfinite(getattr(self, k)), f"{k} must be a finite number, got {getattr(self, k)}")
              for k in finite],
            (all(isinstance(b, int | float) and math.isfinite(b) for b in self.betas),
             f"betas must be finite numbers, got {self.betas}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (0 <= self.min_lr_ratio <= 1, f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}"),
            *[(getattr(self, k) >= 1, f"{k} must be >= 1, got {getattr(self, k)}")
              for k in ("batch_size", "grad_accum", "keep_checkpoints", "log_every")],
            (self.max_steps >= 0, f"max_steps must be >= 0 (0: from epochs), got {self.max_steps}"),
            (self.epochs >= 0, f"epochs must be >= 0, got {self.epochs}"),
            (self.max_steps > 0 or self.epochs > 0, "max_steps: set max_steps or epochs (> 0)"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (self.eps > 0, f"eps must be > 0, got {self.eps}"),
            (len(self.betas) == 2, f"betas must be two numbers, got {self.betas}"),
            (len(self.betas) != 2 or all(0 <= b < 1 for b in self.betas),
             f"betas must lie in [0, 1), got {self.betas}"),
            *[(getattr(self, k) >= 0, f"{k} must be >= 0 (0: {zero}), got {getattr(self, k)}")
              for k, zero in (("eval_every", "only at the end"), ("eval_batches", "the whole validation set"),
                              ("save_every", "at each evaluation"), ("early_stopping_patience", "never stop"),
                              ("warmup_steps", "none"), ("grad_clip", "off"), ("data_workers", "none"))],
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}"),
            # numpy's range: -1 was a bare "expected non-negative integer" as the run started
            (0 <= self.seed < 2**32, f"seed must lie in [0, 2**32), got {self.seed}"),
            (re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device) is not None,
             f"device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)


@dataclass
class PluginConfig:
    """Keys every plugin config has; plugins subclass this and add their own sections."""

    output: str = ""  # run folder (checkpoints, metrics, final model); relative to the config file
    plugin: str = ""  # optional: the plugin this config is for (checked when given)
    base_dir: str = ""  # folder relative paths resolve against (default: the config file's folder)
    train: TrainConfig = field(default_factory=TrainConfig)

    def path(self, value: str | Path) -> Path:
        """A path from the config, resolved against base_dir."""
        p = Path(value).expanduser()
        return p if p.is_absolute() or not self.base_dir else Path(self.base_dir) / p

    def late_problems(self) -> list[str]:
        """What is wrong that only the resolved config shows (a function it names that cannot be loaded):
        checked at load, so `--check` says it rather than a run minutes in."""
        return []


@dataclass
class SampleConfig:
    """Greedy generations shown at each evaluation (the ``samples:`` section of the language-model plugins)."""

    count: int = 2  # prompts (validation openings or conversations); 0: no samples
    prompt_tokens: int = 8
    max_new_tokens: int = 24

    def __post_init__(self) -> None:
        for key in ("count", "prompt_tokens", "max_new_tokens"):  # the key first: its line, or `--set samples.KEY`
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")


@dataclass
class TrainResult:
    """What a training run returns (also written to ``<out>/result.json``)."""

    out_dir: Path
    steps: int
    tokens: int
    best_val_loss: float | None
    final_metrics: dict[str, float]
    final_dir: Path | None
    best_dir: Path | None
    stopped_early: bool = False
    resumed_from: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("out_dir", "final_dir", "best_dir"):
            d[k] = None if d[k] is None else str(d[k])
        return finite_json(d)  # NaN metrics become null: result.json stays valid JSON


class TrainPlugin(ABC):
    """Subclass, set ``name`` and ``config_class``, implement ``build``; register the class under the
    ``corpusforge.plugins`` entry-point group."""

    name: ClassVar[str]
    config_class: ClassVar[type[PluginConfig]]
    resumable: ClassVar[tuple[str, ...]] = ()  # the plugin's own keys (dotted prefixes) a resumed run may change

    @abstractmethod
    def build(self, config: Any, runtime: Runtime) -> Task:
        """The task to train: its model, its datasets and its objective."""

    def run(self, config: Any, out_dir: str | Path | None = None, hooks: tuple = ()) -> TrainResult:
        """Train ``config`` into ``out_dir`` (default: ``config.output``), which is locked for the whole run
        (``corpus.lock``; under torchrun by rank 0 only): a second run into it fails at once with LockedError.
        ``hooks``: ``hook(step, metrics_row)`` after every step (tests use them to interrupt a run)."""
        from corpus.plugins.checkpoint import check_run_folder

        out = Path(config.output if out_dir is None else out_dir)
        overlap = output_overlap(config, out, inside=False)
        if overlap:  # before anything: a --fresh run deleted the model it was to fine-tune
            raise PluginInputError(overlap)
        if int(os.environ.get("RANK", "0")) == 0:  # before the lock: no .lock left in another command's folder
            check_run_folder(out)
        existed = out.exists()
        try:
            return self._run_locked(config, out, hooks)
        except _InsideInput:
            if not existed and int(os.environ.get("RANK", "0")) == 0 and out.is_dir() and \
                    [p.name for p in out.iterdir()] in ([], [".lock"]):  # the lock made it: no folder left inside
                (out / ".lock").unlink(missing_ok=True)
                out.rmdir()
            raise

    def _run_locked(self, config: Any, out: Path, hooks: tuple) -> TrainResult:
        from corpus.lock import main_process_lock
        from corpus.plugins.runtime import Runtime
        from corpus.plugins.trainer import Trainer

        with main_process_lock(out):
            rt = Runtime.create(config.train)
            try:
                task = self.build(config, rt)
                # once the plugin has said what is wrong with its inputs (a folder where it reads a file)
                overlap = output_overlap(config, out)
                if overlap:
                    raise _InsideInput(overlap)
                if task.stats and rt.is_main:
                    out.mkdir(parents=True, exist_ok=True)
                    write_bytes_atomic(out / "data_stats.json", json.dumps(task.stats, indent=2).encode())
                result = Trainer(task, config.train, out, rt, name=self.name, run_config=dataclasses.asdict(config),
                                 resumable=self.resumable, hooks=hooks).fit()
                if task.stats:
                    result.extra["data"] = task.stats
                return result
            finally:
                rt.close()


# ---------------------------------------------------------------- inputs a run needs


class MissingInputError(FileNotFoundError):
    """An input of a run does not exist (yet); the message says which command makes it."""


class PluginInputError(ValueError):
    """The user's data or config is wrong in a way only the plugin sees (a record, a chat template):
    ``corpus train`` says it in one line, never with a traceback."""


class _InsideInput(PluginInputError):
    """The run folder lies inside an input (found once the plugin has built): ``run`` removes the folder its
    lock made."""


# Config keys that name an input (a file, folder, glob or shard prefix): `corpus train --check` looks for them.
INPUT_KEYS = ("from_pretrained", "tokenizer", "reference", "reward_model", "prompts", "path", "train", "validation",
              "policy")


def missing_inputs(cfg: PluginConfig) -> list[str]:
    """"KEY: PATH does not exist" for each input a config names that is not there (a glob matching nothing,
    a shard prefix without its .idx), so that `--check` says it rather than the run, once PyTorch has loaded."""
    import glob

    from corpus.readers.plan import is_glob

    def there(value: str) -> bool:
        p = cfg.path(value)
        try:
            return p.exists() or p.with_name(p.name + ".idx").is_file() or (
                is_glob(str(p)) and bool(glob.glob(str(p), recursive=True)))
        except (OSError, ValueError):  # a name too long for the file system, a NUL: not there
            return False

    return [f"{key}: {shown(cfg.path(v))} does not exist" for key, v in input_values(cfg) if not there(v)]


def input_values(cfg: PluginConfig) -> list[tuple[str, str]]:
    """(KEY, value as given) for every input the config names (``INPUT_KEYS``, in every section)."""
    out: list[tuple[str, str]] = []

    def walk(obj: Any, where: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{where}{f.name}.")
            elif isinstance(value, list) and value and all(dataclasses.is_dataclass(v) for v in value):
                for i, v in enumerate(value):
                    walk(v, f"{where}{f.name}[{i}].")
            elif f.name in INPUT_KEYS:
                values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
                out.extend((f"{where}{f.name}", v) for v in values if isinstance(v, str) and v)

    walk(cfg, "")
    return out


def input_paths(cfg: PluginConfig) -> list[tuple[str, Path]]:
    """(KEY, folder or file) for every input the config names that is no glob, resolved (globs:
    ``output_overlap`` asks the readers which files they match)."""
    from corpus.readers.plan import is_glob

    out: list[tuple[str, Path]] = []
    for key, value in input_values(cfg):
        if is_glob(value):
            continue
        try:
            out.append((key, Path(os.path.realpath(cfg.path(value)))))
        except ValueError:  # a NUL in the name: not a path anything can be written to or read from
            continue
    return out


def output_overlap(cfg: PluginConfig, out: str | Path | None = None, inside: bool = True) -> str | None:
    """Why the run folder ``out`` (default: ``config.output``) may not be used with this config's inputs,
    or None: a run folder that is an input or holds one (a ``model.from_pretrained`` that is its own
    ``final/``; for a glob, a file it matches) would have its checkpoints, exports and ``--fresh`` delete or
    overwrite what the run reads; one inside an input read whole (``inside``: a folder, or a ``**`` glob)
    would add its files to what the next run reads. Globs are matched by the readers' rule
    (``corpus.readers.plan.output_read``): ``*.jsonl`` never reads a run folder ``out``."""
    from corpus.readers.plan import is_glob, output_read

    run = Path(os.path.realpath(cfg.output if out is None else out))
    for key, p in input_paths(cfg):
        if p == run or run in p.parents:
            return (f"output folder {shown(run)} holds {key} {shown(p)}, which the run reads: its checkpoints, "
                    f"exports and --fresh would replace or delete it; train into another folder")
        if inside and p in run.parents:
            return (f"output folder {shown(run)} lies inside {key} {shown(p)}, which the run reads: "
                    "train into a folder outside it")
    for key, value in input_values(cfg):
        if is_glob(value):
            try:
                why = output_read(value, Path(cfg.base_dir or Path.cwd()), run, inside)
            except ValueError:  # a NUL in the name
                continue
            if why:
                return f"{key} {value!r}: {why}"
    return None


def shown(path: str | Path) -> str:
    """A path as a user typed it: relative to the working folder when inside it."""
    p = Path(os.path.abspath(path))
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def model_hint(path: Path, config_dir: Path) -> str:
    """How to get the model folder ``path``: the ``corpus train`` command of a plugin config beside
    ``config_dir`` whose run writes it (as ``final/`` or ``best/``), else what the folder must hold."""
    run = (path.parent if path.name in ("final", "best") else path).resolve()
    for yml in sorted(Path(config_dir).glob("*.yaml")):
        try:
            data = yaml.safe_load(yml.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if not (isinstance(data, dict) and data.get("plugin") and isinstance(data.get("output"), str)) \
                or "base" in data:  # a sweep's runs are its trials
            continue
        if (Path(data.get("base_dir") or yml.parent) / data["output"]).resolve() == run:
            command = f"corpus train {data['plugin']} {shown(yml)}"
            if (run / "checkpoints").is_dir():
                return (f"the run in {shown(run)} has not finished (it writes {path.name}/ at its end): rerun "
                        f"`{command}` to resume it")
            return f"run `{command}` first"
    return "give a local HF model folder (config.json, weights, tokenizer), e.g. the final/ of a `corpus train` run"


def require(path: Path, what: str, how: str) -> Path:
    """``path``, or MissingInputError: ``no {what} at {path}: {how}``."""
    if not path.exists():
        raise MissingInputError(f"no {what} at {shown(path)}: {how}")
    return path


# ---------------------------------------------------------------- config loading


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _accepts_float(tp: Any) -> bool:
    if tp is float:
        return True
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return float in typing.get_args(tp)
    return False


def _coerce_float(value: Any) -> Any:
    # PyYAML reads `3e-4` (no dot) as a string: accept it where a float is expected.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def build_section(cls: type, data: Any, where: str, lines: dict, path: tuple, errors: list[str],
                  root: str = "") -> Any:
    """``build_dataclass`` with nested dataclass sections (and lists of them) built first. ``where`` is
    the dotted name of this section ('' at the top, where ``root`` names it in messages)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        errors.append(f"{lines.get(path, 0)}: {where}: expected a mapping, got {type(data).__name__} {data!r}")
        return None
    hints = typing.get_type_hints(cls)
    params = dict(data)
    failed: list[str] = []  # the sections of this one that failed
    for f in dataclasses.fields(cls):
        if f.name not in params or not f.init:
            continue
        tp, value = hints[f.name], params[f.name]
        sub = f"{where}.{f.name}" if where else f.name
        if _is_dataclass_type(tp):
            built = build_section(tp, value, sub, lines, path + (f.name,), errors)
        elif typing.get_origin(tp) is list and _is_dataclass_type((typing.get_args(tp) or (None,))[0]):
            item_tp = typing.get_args(tp)[0]
            if not isinstance(value, list):
                errors.append(f"{lines.get(path + (f.name,), 0)}: {sub}: expected a list of mappings")
                built = None
            else:
                items = [build_section(item_tp, v, f"{sub}[{i}]", lines, path + (f.name, i), errors)
                         for i, v in enumerate(value)]
                built = None if any(x is None for x in items) else items
        else:
            if _accepts_float(tp):
                params[f.name] = _coerce_float(value)
            continue
        if built is None:  # said already; this section's own checks still run, on a stand-in for it
            failed.append(f.name)
            params[f.name] = _stand_in(tp) if _is_dataclass_type(tp) else []
        else:
            params[f.name] = built
    name = where or root or cls.__name__
    if not failed:
        before = len(errors)
        built = build_dataclass(cls, params, name, lines, path, errors)
        errors[before:] = [_locate(e, lines, path, name) for e in errors[before:]]
        return built
    own: list[str] = []
    build_dataclass(cls, params, name, lines, path, own)
    own = [_locate(e, lines, path, name) for e in own]
    # A check that names a failed section would judge its stand-in's defaults, not the config: left out.
    named = re.compile(r"\b(" + "|".join(map(re.escape, failed)) + r")\b")
    errors += [e for e in own if not named.search(e.split(": ", 2)[-1])]
    return None


_NAMES = re.compile(r"\b([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\b")  # keys, dotted or not, a message may name


def _locate(error: str, lines: dict, path: tuple, section: str) -> str:
    """Where a section's own check (``__post_init__``) goes wrong: the key it rejects, given by --set
    (``--set train.grad_accum: grad_accum must be >= 1``; of a check of several keys, the one given there; a
    key named only in brackets, as advice, is not blamed), else the line of the first key of a subsection it
    names (``data.seq_len 64 is longer than model.max_positions 32``: data.seq_len's line), else the
    loader's choice (the line of the message's first word when it is a key of the section). Checks start
    their message with the key they reject."""
    line, sep, rest = error.partition(": ")
    where, sep2, msg = rest.partition(": ")
    if not (sep and sep2) or where != section:  # a key's own error (unknown, wrong type) is placed already
        return error
    # A key named in brackets is advice ("kl_target must be > 0 (or null for a fixed kl_coef)"); every other
    # key the message names is one it checks ("r must be >= 1, alpha > 0 and dropout in [0, 1)").
    subject = re.sub(r"\([^()]*\)", "", msg)
    named = [path + tuple(k.split(".")) for k in _NAMES.findall(subject)]
    named = [k for k in dict.fromkeys(named) if k in lines]
    given = next((k for k in named if lines[k] == _SET), None)  # of two keys, the one changed there
    if given is not None:
        return f"{_SET}: {'.'.join(map(str, given))}: {msg}"
    dotted = next((k for k in named if len(k) > len(path) + 1), None)
    return f"{lines[dotted]}: {where}: {msg}" if dotted is not None else error


def _stand_in(cls: type) -> Any:
    """A section with its defaults and none of its checks, in place of one that failed: a default section
    may not pass them (a judge without its function), and its parent would report that too."""
    obj = object.__new__(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if _is_dataclass_type(hints[f.name]):
            value = _stand_in(hints[f.name])
        elif f.default is not dataclasses.MISSING:
            value = f.default
        else:
            value = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        object.__setattr__(obj, f.name, value)
    return obj


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
    node[keys[-1]] = value


_SET = "<--set>"  # the "line" of a value given by --set


def parse_override(text: str) -> tuple[str, Any]:
    """``train.lr=1e-4`` -> ('train.lr', 1e-4); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError([f"--set {text!r}: expected KEY=VALUE, e.g. train.lr=3e-4"])
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:  # `--set 'train.lr=[1'` was a yaml ParserError traceback
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([f"--set {text!r}: the value is not valid YAML ({problem})"]) from exc
    return key.strip(), _coerce_float(value)


def parse_config(cls: type[PluginConfig], data: Any, *, source: str, lines: dict | None = None,
                 base_dir: Path | None = None, plugin: str = "", output: str | Path | None = None,
                 overrides: typing.Iterable[tuple[str, Any]] = (), said_by_set: bool = False) -> Any:
    """Validate a config mapping into ``cls``; raise ConfigError listing every problem (``source:line: ...``;
    ``said_by_set``: the overrides came from ``--set``, and their problems say so rather than a line)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: expected a mapping of config keys"])
    data = copy.deepcopy(data)  # overrides must not reach into the caller's nested mappings
    lines = dict(lines or {})
    for key, value in overrides:
        _set_dotted(data, key, value)
        if said_by_set:  # the command line's value, not the file's: its errors say `--set KEY`
            path = tuple(key.split("."))
            lines = {p: n for p, n in lines.items() if p[:len(path)] != path} | {path: _SET}
    if output is not None:
        data["output"] = str(output)
    if plugin and data.get("plugin") not in (None, "", plugin):  # say this first: every other error would follow
        raise ConfigError([f"{source}:{lines.get(('plugin',), 0)}: plugin: this config is for "
                           f"'{data['plugin']}', not '{plugin}'"])
    errors: list[str] = []
    cfg = build_section(cls, data, "", lines, (), errors, root=plugin)
    if cfg is not None:
        if not cfg.output:
            errors.append(f"{lines.get(('output',), 1)}: output: required, a folder (or pass --output)")
    if errors:
        raise ConfigError([f"--set {e.removeprefix(f'{_SET}: ')}" if e.startswith(f"{_SET}: ") else f"{source}:{e}"
                           for e in errors])
    cfg.plugin = cfg.plugin or plugin
    base = Path(cfg.base_dir).expanduser() if cfg.base_dir else (base_dir or Path.cwd())
    cfg.base_dir = str(base.resolve())
    cfg.output = os.path.abspath(cfg.path(cfg.output) if output is None else cfg.output)
    late = cfg.late_problems()
    if late:
        raise ConfigError([f"{source}: {p}" for p in late])
    return cfg


def load_plugin_config(cls: type[PluginConfig], path: str | Path, *, plugin: str = "",
                       output: str | Path | None = None, overrides: typing.Iterable[str] = ()) -> Any:
    """Read and validate a plugin's YAML config. ``overrides``: ``KEY=VALUE`` strings (``train.lr=1e-4``)."""
    path = Path(path)
    data, lines = read_yaml(path)
    return parse_config(cls, data, source=str(path), lines=lines, base_dir=config_dir(path), plugin=plugin,
                        output=output, overrides=[parse_override(o) for o in overrides], said_by_set=True)

