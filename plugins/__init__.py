"""Training plugins by name, discovered through the ``corpusforge.plugins`` entry-point group.

Built-ins (``pretrain``, ``sft``) are declared in our pyproject.toml the same way a third-party
package declares its own; discovery is ``corpus.registry``'s, as for operators. Importing this
package is cheap: torch loads only when a plugin does.

Python API::

    from corpus import plugins
    result = plugins.run("sft", "examples/train/sft.yaml", overrides=["train.lr=1e-4"])
    result = plugins.run(MyPlugin, "my.yaml")  # a TrainPlugin subclass of one's own, no entry point needed
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


def _plugin(name: str | type) -> Any:
    """A registered plugin by name, or a TrainPlugin subclass itself (one written in a notebook or a
    script, with no entry point)."""
    if isinstance(name, type):
        if not issubclass(name, _plugin_base()):
            raise TypeError(f"{name.__name__} is not a TrainPlugin subclass (corpus.plugins.base.TrainPlugin)")
        return name
    return get(name)


def load_config(name: str | type, config: str | Path, output: str | Path | None = None,
                overrides: Iterable[str] = ()) -> Any:
    """Validate a YAML config for plugin ``name`` (a registered name, or the class itself; raises
    corpus.config.ConfigError with line numbers)."""
    from corpus.plugins.base import load_plugin_config

    cls = _plugin(name)
    return load_plugin_config(cls.config_class, config, plugin=cls.name, output=output, overrides=overrides)


def run(name: str | type, config: Any, output: str | Path | None = None, overrides: Iterable[str] = ()) -> Any:
    """Run plugin ``name`` (a registered name, or a TrainPlugin subclass itself) with a YAML path, a dict of
    the same keys (relative paths against the working folder), or an already-built config object; returns
    its TrainResult.

    The run folder is locked for the whole run (``TrainPlugin.run``, as ``corpus run`` locks its own):
    a second run into the same folder fails at once with LockedError."""
    from corpus.config import ConfigError
    from corpus.plugins.base import parse_config, parse_override

    cls = _plugin(name)
    if isinstance(config, str | Path):
        cfg = load_config(cls, config, output, overrides)
    elif isinstance(config, dict):  # a notebook's config: checked as a YAML file's is (a dict has no lines)
        source = f"{cls.name} config"
        try:
            cfg = parse_config(cls.config_class, config, source=source, plugin=cls.name, output=output,
                               overrides=[parse_override(o) for o in overrides])
        except ConfigError as exc:
            raise ConfigError([e.replace(f"{source}:0: ", f"{source}: ") for e in exc.errors]) from None
    elif isinstance(config, cls.config_class):
        if output is not None or list(overrides):
            raise ValueError("output and overrides apply to a YAML path or a dict; set them on the config object")
        cfg = config
    else:
        raise TypeError(f"{cls.name}: config must be a YAML path, a dict or a {cls.config_class.__name__}, "
                        f"got {type(config).__name__}")
    return cls().run(cfg)
