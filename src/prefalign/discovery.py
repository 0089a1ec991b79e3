"""Registries fill themselves by importing every module of their package once, and the
modules that installed packages name in an entry-point group."""

from __future__ import annotations

import importlib
import pkgutil

_done: set[str] = set()


def import_submodules(package_name: str) -> None:
    """Import each module of ``package_name`` (once per process), so that modules which
    register something on import (tasks, pipelines) have done so."""
    if package_name in _done:
        return
    _done.add(package_name)
    package = importlib.import_module(package_name)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package_name}.{module.name}")


def import_entry_points(group: str) -> None:
    """Import each module named in entry-point ``group`` of the installed packages (once
    per process); a module that fails to import is a ``ConfigError`` naming it."""
    from importlib.metadata import entry_points

    from prefalign.errors import ConfigError

    key = f"entry-points:{group}"
    if key in _done:
        return
    _done.add(key)
    for point in entry_points(group=group):
        try:
            importlib.import_module(point.value.split(":")[0])
        except ImportError as error:
            raise ConfigError(f"entry point {point.name} = {point.value} of group {group} "
                              f"does not import: {error}") from None
