"""YAML run configs: parsed safely, validated completely before anything runs.

Every error names the file, the line and the key, and the run does not start:

    quickstart.yaml:14: pipeline[1].min_char: unknown parameter of 'length_filter' (did you mean 'min_chars'?)
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from corpus import registry
from corpus.ids import POLICIES
from corpus.operators import Operator, source_problems
from corpus.readers.base import FORMATS, InputError, InputSpec
from corpus.registry import suggest
from corpus.writers import check_shard_max

if TYPE_CHECKING:
    from corpus.executor import Executor


class ConfigError(Exception):
    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("invalid config:\n  " + "\n  ".join(errors))


@dataclass
class RunConfig:
    inputs: list[InputSpec]
    pipeline: list[Operator]
    output: Path
    workers: int = 0  # 0: one per CPU core
    shard_max_bytes: int = 128 << 20  # of text per output shard; bounds a worker's memory
    base_dir: Path = field(default_factory=Path.cwd)
    on_duplicate_id: str = "keep"  # keep | reject | fail: what happens to repeated user ids (corpus/ids.py)
    split_bytes: int = 64 << 20  # input files over this are read in parts (corpus/readers/plan.py); 0: never
    executor: str = "local"  # local (a process pool) | ray (Ray tasks: corpus/ray_executor.py)
    ray: dict[str, Any] = field(default_factory=dict)  # RayExecutor's settings (RAY_KEYS), sizes in bytes

    def make_executor(self, workers: int | None = None, quiet: bool = False, executor: str | None = None,
                      address: str | None = None) -> Executor:
        """The executor this config names (``executor`` and ``address`` override it, as the CLI does)."""
        from corpus.executor import LocalExecutor

        kind = executor or self.executor
        common = {"workers": self.workers if workers is None else workers, "quiet": quiet,
                  "on_duplicate_id": self.on_duplicate_id, "split_bytes": self.split_bytes}
        if kind == "local":
            return LocalExecutor(**common)
        if kind != "ray":
            raise ValueError(f"unknown executor {kind!r}; expected one of {', '.join(EXECUTORS)}")
        from corpus.ray_executor import RayExecutor

        settings = dict(self.ray)
        if address is not None:
            settings["address"] = address
        return RayExecutor(**settings, **common)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.I)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: int | str) -> int:
    """'128MB', '64 MiB', '1g' or a plain int (bytes)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like '128MB', got {value!r}")
    if isinstance(value, int):
        if value < 0:  # split_bytes: -5 was taken, and read as "never split"
            raise ValueError(f"expected a size >= 0, got {value}")
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError(f"expected a size like '128MB', got {value!r}")
    unit = (m.group(2) or "").lower()[:1]
    return int(float(m.group(1)) * _UNITS[unit])


def _line_map(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Map each key path (('pipeline', 1, 'min_chars')) to its 1-based line in the file."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            out[path + (key,)] = k.start_mark.line + 1
            _line_map(v, path + (key,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_map(v, path + (i,), out)
    return out


def _type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if origin in (list, tuple):  # either for either: YAML gives lists, Python callers may pass tuples
        args = typing.get_args(tp)
        return isinstance(value, list | tuple) and (not args or all(_type_ok(v, args[0]) for v in value))
    if origin is dict:
        args = typing.get_args(tp)
        return isinstance(value, dict) and (
            not args or all(_type_ok(k, args[0]) and _type_ok(v, args[1]) for k, v in value.items())
        )
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def param_problems(op: Any) -> list[str]:
    """An operator built in Python, checked as a config's would be: each parameter against its type."""
    if not dataclasses.is_dataclass(op):
        return []
    hints = typing.get_type_hints(type(op))
    out = []
    for f in dataclasses.fields(op):
        value = getattr(op, f.name, None)
        if f.init and f.name in hints and not _type_ok(value, hints[f.name]):
            out.append(f"{type(op).__name__}.{f.name}: expected {_type_name(hints[f.name])}, "
                       f"got {type(value).__name__} {value!r:.80}")
    return out


def hint_name(tp: Any) -> str:
    """A type annotation as written: int, str | None, Literal['word', 'char'], list[float]."""
    if typing.get_origin(tp) is None and isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _type_name(tp: Any) -> str:
    """What an error message says was expected: the choices of a Literal, a union's members (its
    Literals as their values: bool | 'auto', not Union[bool, Literal['auto']]), else the annotation."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    if origin in (typing.Union, types.UnionType) and any(typing.get_origin(a) is typing.Literal
                                                          for a in typing.get_args(tp)):
        return " | ".join(" | ".join(map(repr, typing.get_args(a))) if typing.get_origin(a) is typing.Literal
                          else hint_name(a) for a in typing.get_args(tp))
    return hint_name(tp)


def build_dataclass(cls: type, params: dict, where: str, lines: dict, path: tuple, errors: list[str]) -> Any:
    """Instantiate a dataclass from YAML params, collecting every problem instead of stopping at one."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    ok = True
    for key, value in params.items():
        line = lines.get(path + (key,), lines.get(path, 0))
        if key not in fields:
            known = ", ".join(fields) or "none"
            errors.append(f"{line}: {where}.{key}: unknown parameter{suggest(key, fields)}; known: {known}")
            ok = False
        elif not _type_ok(value, hints[key]):
            errors.append(
                f"{line}: {where}.{key}: expected {_type_name(hints[key])}, got {type(value).__name__} {value!r}"
            )
            ok = False
    missing = [
        n
        for n, f in fields.items()
        if n not in params and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    for n in missing:
        errors.append(f"{lines.get(path, 0)}: {where}: missing required parameter '{n}'")
        ok = False
    if not ok:
        return None
    try:
        return cls(**params)
    except (ValueError, TypeError) as exc:  # the operator's own __post_init__ checks
        # A message that starts with a parameter given here ("max_words (5) is below ...") points at its line.
        first = re.match(r"['\"]?(\w+)", str(exc))
        key = first.group(1) if first and first.group(1) in params else None
        errors.append(f"{lines.get(path + (key,), lines.get(path, 0)) if key else lines.get(path, 0)}: {where}: {exc}")
        return None


TOP_KEYS = {"inputs", "pipeline", "output", "workers", "shard_max_bytes", "on_duplicate_id", "executor", "ray",
            "split_bytes"}
EXECUTORS = ("local", "ray")
# The `ray:` mapping: RayExecutor's keyword arguments, with what each takes.
RAY_KEYS = {"address": "a string ('auto', 'host:port', 'ray://host:port')", "cpus_per_task": "a number > 0",
            "memory_per_task": "a size like '2GB'", "max_retries": "an integer >= 0"}


def read_yaml(path: str | Path) -> tuple[Any, dict]:
    """(data, line map) of a YAML file, parsed safely; ConfigError if unreadable or invalid."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot read config {path}: {exc}"]) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from exc
    twice = _repeated_keys(node) if node is not None else []
    if twice:  # YAML keeps the last silently: `output:` given twice wrote where the reader did not look
        raise ConfigError([f"{path}: {e}" for e in twice])
    return data, (_line_map(node) if node is not None else {})


def _repeated_keys(node: yaml.Node, where: str = "") -> list[str]:
    """A key given twice in one mapping, with both lines."""
    out = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for k, v in node.value:
            name = f"{where}.{k.value}" if where else str(k.value)
            if isinstance(k, yaml.ScalarNode) and k.value != "<<":
                line = k.start_mark.line + 1
                if k.value in first:
                    out.append(f"{line}: {name}: given twice (also on line {first[k.value]}); YAML keeps the last")
                first.setdefault(k.value, line)
            out += _repeated_keys(v, name)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out += _repeated_keys(v, f"{where}[{i}]")
    return out


def config_dir(path: Path) -> Path:
    """What a config's relative paths resolve against: its file's folder, or the working folder for a
    config read from a pipe (`corpus run /dev/stdin`, `<(...)`), whose "folder" was /proc/PID/fd."""
    return path.resolve().parent if path.is_file() else Path.cwd()


def load_config(path: str | Path, output: str | Path | None = None) -> RunConfig:
    """Parse and validate a run config; raise ConfigError listing every problem."""
    path = Path(path)
    data, lines = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a mapping with keys {sorted(TOP_KEYS)}"])
    errors: list[str] = []
    for key in data:
        if key not in TOP_KEYS:
            errors.append(f"{lines.get((key,), 0)}: {key}: unknown key{suggest(key, TOP_KEYS)}; "
                          f"known: {sorted(TOP_KEYS)}")

    inputs = _inputs(data.get("inputs"), lines, errors)
    ops = _pipeline(data.get("pipeline", []), lines, errors, config_dir(path))

    out = output if output is not None else data.get("output")
    if not isinstance(out, str | Path) or not str(out):
        errors.append(f"{lines.get(('output',), 1)}: output: required, a folder path (or pass --output)")
    workers = data.get("workers", 0)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        errors.append(f"{lines.get(('workers',), 0)}: workers: expected an integer >= 0, got {workers!r}")
    shard_max = 128 << 20
    if "shard_max_bytes" in data:
        try:
            shard_max = check_shard_max(parse_size(data["shard_max_bytes"]), least=1024)
        except ValueError as exc:
            errors.append(f"{lines.get(('shard_max_bytes',), 0)}: shard_max_bytes: {exc}")
    split_bytes = 64 << 20
    if "split_bytes" in data:
        try:
            split_bytes = parse_size(data["split_bytes"])
            if 0 < split_bytes < 1 << 20:
                raise ValueError(f"too small ({split_bytes} bytes); use at least 1MB, or 0 to never split")
        except ValueError as exc:
            errors.append(f"{lines.get(('split_bytes',), 0)}: split_bytes: {exc}")
    on_duplicate_id = data.get("on_duplicate_id", "keep")
    if on_duplicate_id not in POLICIES:
        errors.append(f"{lines.get(('on_duplicate_id',), 0)}: on_duplicate_id: expected one of {', '.join(POLICIES)}, "
                      f"got {on_duplicate_id!r}")

    executor = data.get("executor", "local")
    if executor not in EXECUTORS:
        errors.append(f"{lines.get(('executor',), 0)}: executor: expected one of {', '.join(EXECUTORS)}, "
                      f"got {executor!r}")
    ray = _ray_settings(data.get("ray", {}), lines, errors)
    if inputs:
        for i, problem in source_problems(ops, [s.source for s in inputs]):
            errors.append(f"{lines.get(('pipeline', i), 0)}: {problem}")

    if errors:
        raise ConfigError([f"{path}:{e}" for e in errors])
    base = config_dir(path)
    out_path = Path(out)  # type: ignore[arg-type]
    if output is None and not out_path.is_absolute():
        out_path = base / out_path
    return RunConfig(inputs=inputs, pipeline=ops, output=out_path, workers=workers, shard_max_bytes=shard_max,
                     base_dir=base, on_duplicate_id=on_duplicate_id, split_bytes=split_bytes, executor=executor,
                     ray=ray)


def _ray_settings(data: Any, lines: dict, errors: list[str]) -> dict[str, Any]:
    """The `ray:` mapping, checked: RayExecutor's settings (sizes in bytes)."""
    if not isinstance(data, dict):
        errors.append(f"{lines.get(('ray',), 0)}: ray: expected a mapping with keys {sorted(RAY_KEYS)}")
        return {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        where = f"{lines.get(('ray', key), 0)}: ray.{key}"
        if key not in RAY_KEYS:
            errors.append(f"{where}: unknown key{suggest(key, RAY_KEYS)}; known: {sorted(RAY_KEYS)}")
            continue
        checks = {"address": lambda v: isinstance(v, str) and bool(v),  # only this key's check runs
                  "cpus_per_task": lambda v: _type_ok(v, float) and v > 0,
                  "memory_per_task": lambda v: v > 0,
                  "max_retries": lambda v: _type_ok(v, int) and v >= 0}
        try:
            if key == "memory_per_task":
                value = parse_size(value)
            ok = checks[key](value)
        except (ValueError, TypeError):
            ok = False
        if not ok:
            errors.append(f"{where}: expected {RAY_KEYS[key]}, got {data[key]!r}")
        else:
            out[key] = value
    return out


def check_inputs(cfg: RunConfig) -> tuple[int, list[str]]:
    """(files, problems) of a config's inputs, from each file's footer or first lines and each input's
    first records: files a run would quarantine whole, and text_key / id_key / meta_keys that name no
    field of the data (with the fields seen). Missing paths and bad options raise InputError."""
    from corpus.readers import plan_tasks, whole_file_problem
    from corpus.readers.check import field_problems

    tasks = plan_tasks(cfg.inputs, cfg.base_dir, output=cfg.output)
    problems = []
    for spec in cfg.inputs:
        mine = [t for t in tasks if t.spec.source == spec.source]
        whole = {t.index: p for t in mine if (p := whole_file_problem(t)) is not None}
        problems += [f"input {spec.source!r}: {p}" for p in whole.values()]
        # A file quarantined whole is reported above; the others show what the settings meet.
        problems += [f"input {spec.source!r}: {p}" for p in field_problems([t for t in mine if t.index not in whole])]
        problems += _sample_problems(cfg.pipeline, spec.source, [t for t in mine if t.index not in whole])
    return len(tasks), problems


def _sample_problems(ops: list, source: str, tasks: list) -> list[str]:
    """What an input's first documents say against the operators that judge them (Operator.sample_problem),
    read through the readers from its first file; nothing is read when no operator judges them."""
    from corpus.readers import read_task
    from corpus.readers.check import SAMPLE_RECORDS

    judges = [(i, op) for i, op in enumerate(ops) if type(op).sample_problem is not Operator.sample_problem]
    if not judges or not tasks:
        return []
    try:
        first = next(iter(read_task(tasks[0], chunk_bytes=1 << 20)), None)
    except InputError:
        return []  # the run reports an unreadable file itself
    if first is None:
        return []
    text = first.docs["text"].head(SAMPLE_RECORDS)
    return [f"pipeline[{i}] '{op.name}': input {source!r}: {p}" for i, op in judges
            if (p := op.sample_problem(source, text)) is not None]


def _inputs(raw: Any, lines: dict, errors: list[str]) -> list[InputSpec]:
    if not isinstance(raw, list) or not raw:
        errors.append(f"{lines.get(('inputs',), 1)}: inputs: required, a non-empty list of inputs")
        return []
    specs = []
    for i, item in enumerate(raw):
        where, path = f"inputs[{i}]", ("inputs", i)
        if not isinstance(item, dict):
            errors.append(f"{lines.get(path, 0)}: {where}: expected a mapping with 'source' and 'path'")
            continue
        if "format" in item and item["format"] not in FORMATS:
            errors.append(
                f"{lines.get(path + ('format',), 0)}: {where}.format: {item['format']!r} is not one of {FORMATS}"
            )
            continue
        params = dict(item)
        if "max_doc_bytes" in params:
            try:
                params["max_doc_bytes"] = parse_size(params["max_doc_bytes"])
            except ValueError as exc:
                errors.append(f"{lines.get(path + ('max_doc_bytes',), 0)}: {where}.max_doc_bytes: {exc}")
                continue
        spec = build_dataclass(InputSpec, params, where, lines, path, errors)
        if spec is not None:
            specs.append(spec)
    seen = [s.source for s in specs]
    for name in {s for s in seen if seen.count(s) > 1}:
        errors.append(f"{lines.get(('inputs',), 0)}: inputs: source name '{name}' is used more than once")
    return specs


def _beside_config(params: dict, base: Path | None) -> str:
    """A hint for an operator whose relative path parameter is missing from the working folder but there
    beside the config: operator parameters are taken as given (inputs and output resolve against the
    config's folder)."""
    if base is None or Path.cwd().resolve() == base.resolve():
        return ""
    values = [v for p in params.values() for v in (p if isinstance(p, list) else [p])]
    for v in values:
        try:  # any string parameter: a long pattern is no file name (ENAMETOOLONG), nor one with a NUL
            beside = isinstance(v, str) and v and not Path(v).is_absolute() and not Path(v).exists() \
                and (base / v).exists()
        except (OSError, ValueError):
            beside = False
        if beside:
            return (f" (an operator's paths are taken from the working folder, {Path.cwd()}; {v} is beside the "
                    f"config: write {base / v})")
    return ""


def _pipeline(raw: Any, lines: dict, errors: list[str], base: Path | None = None) -> list[Operator]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.append(f"{lines.get(('pipeline',), 0)}: pipeline: expected a list of operators")
        return []
    ops = []
    for i, item in enumerate(raw):
        where, path = f"pipeline[{i}]", ("pipeline", i)
        if not isinstance(item, dict) or not isinstance(item.get("op"), str):
            errors.append(f"{lines.get(path, 0)}: {where}: expected a mapping with 'op: <operator name>'")
            continue
        params = {k: v for k, v in item.items() if k != "op"}
        try:
            cls = registry.get(item["op"])
        except registry.UnknownOperator as exc:
            errors.append(f"{lines.get(path + ('op',), 0)}: {where}.op: {exc.args[0]}")
            continue
        before = len(errors)
        op = build_dataclass(cls, params, f"{where} ({item['op']})", lines, path, errors)
        if op is not None:
            ops.append(op)
        elif len(errors) > before:
            errors[-1] += _beside_config(params, base)
    return ops
