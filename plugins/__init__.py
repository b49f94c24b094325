"""Training plugins by name, discovered through the ``corpusforge.plugins`` entry-point group.

Built-ins (``pretrain``, ``sft``) are declared in our pyproject.toml the same way a third-party
package declares its own; discovery is ``corpus.registry``'s, as for operators. Importing this
package is cheap: torch loads only when a plugin does.

Python API::

    from corpus import plugins
    result = plugins.run("sft", "examples/train/sft.yaml", overrides=["train.lr=1e-4"])
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from corpus.registry import Registry, UnknownName


class UnknownPlugin(UnknownName):
    pass


def _plugin_base() -> type:
    from corpus.plugins.base import TrainPlugin

    return TrainPlugin


PLUGINS = Registry("corpusforge.plugins", "training plugin", _plugin_base, UnknownPlugin)


def names() -> list[str]:
    return PLUGINS.names()


def get(name: str) -> Any:
    """The plugin class registered as ``name``; UnknownPlugin with a suggestion if there is none."""
    return PLUGINS.get(name)


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
