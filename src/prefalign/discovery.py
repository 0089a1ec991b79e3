"""Registries fill themselves by importing every module of their package once."""

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
