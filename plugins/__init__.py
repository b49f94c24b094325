"""Training plugins by name, discovered through the ``corpusforge.plugins`` entry-point group.

Built-ins (``pretrain``, ``sft``) are declared in our pyproject.toml the same way a third-party
package declares its own. Importing this package is cheap: torch loads only when a plugin does.

Python API::

    from corpus import plugins
    result = plugins.run("sft", "examples/train/sft.yaml", overrides=["train.lr=1e-4"])
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

GROUP = "corpusforge.plugins"

# Used only when the installed metadata predates these entries (a source checkout not yet
# reinstalled); the entry points win whenever they are there.
_BUILTIN = {"pretrain": "corpus.plugins.pretrain:Pretrain", "sft": "corpus.plugins.sft:SFT"}


class UnknownPlugin(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@cache
def _entry_points() -> dict[str, EntryPoint]:
    eps = {name: EntryPoint(name, value, GROUP) for name, value in _BUILTIN.items()}
    eps.update({ep.name: ep for ep in entry_points(group=GROUP)})
    return eps


def names() -> list[str]:
    return sorted(_entry_points())


def get(name: str) -> type:
    """The plugin class registered as ``name``; UnknownPlugin with a suggestion if there is none."""
    from corpus.plugins.base import TrainPlugin, suggest

    eps = _entry_points()
    if name not in eps:
        raise UnknownPlugin(f"unknown training plugin '{name}'{suggest(name, eps)}; known: {', '.join(sorted(eps))}")
    try:
        cls = eps[name].load()
    except Exception as exc:  # a broken third-party plugin should say which one, not crash with a traceback
        raise UnknownPlugin(f"plugin '{name}' ({eps[name].value}) failed to import: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, TrainPlugin)):
        raise UnknownPlugin(f"entry point '{name}' ({eps[name].value}) is not a TrainPlugin subclass")
    if cls.name != name:
        raise UnknownPlugin(f"entry point '{name}' points at a plugin named '{cls.name}'")
    return cls


def load_config(name: str, config: str | Path, output: str | Path | None = None,
                overrides: Iterable[str] = ()) -> Any:
    """Validate a YAML config for plugin ``name`` (raises corpus.config.ConfigError with line numbers)."""
    from corpus.plugins.base import load_plugin_config

    cls = get(name)
    return load_plugin_config(cls.config_class, config, plugin=name, output=output, overrides=overrides)


def run(name: str, config: Any, output: str | Path | None = None, overrides: Iterable[str] = ()) -> Any:
    """Run plugin ``name`` with a YAML path or an already-built config object; returns its TrainResult.

    The run folder is locked for the whole run (``TrainPlugin.run``, as ``corpus run`` locks its own):
    a second run into the same folder fails at once with LockedError."""
    cfg = load_config(name, config, output, overrides) if isinstance(config, str | Path) else config
    return get(name)().run(cfg)
