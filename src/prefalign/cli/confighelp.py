"""Render a stage config model as a help table: every key, its default, its meaning."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined


def _submodel(annotation: Any) -> type[BaseModel] | None:
    for candidate in getattr(annotation, "__args__", (annotation,)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def config_rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, description) for every leaf field, sections expanded."""
    rows = []
    for name, field in model.model_fields.items():
        key = prefix + name
        sub = _submodel(field.annotation)
        if sub is not None:
            rows.extend(config_rows(sub, key + "."))
            continue
        if field.default is PydanticUndefined and field.default_factory is None:
            default = "(required)"
        elif field.default_factory is not None:
            default = repr(field.default_factory())
        else:
            default = repr(field.default)
        rows.append((key, default, field.description or ""))
    return rows


def config_epilog(model: type[BaseModel]) -> str:
    """Help text listing every config key; set them in YAML or as key=value."""
    lines = ["Config keys (YAML via --config, or key=value overrides; default in brackets):\n\n"]
    for key, default, description in config_rows(model):
        lines.append(f"  {key} [{default}]: {description}\n\n")
    return "".join(lines)
