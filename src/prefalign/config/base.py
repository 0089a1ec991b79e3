"""Typed configuration for every stage: YAML files plus ``key=value`` overrides.

Each stage has one pydantic model (``prefalign.config.<stage>``), built from the
shared sections in ``sections.py``. Unknown keys are an error naming the key and
suggesting the closest valid one; values are type-checked. Overrides use dots
for nesting (``train.lr=1e-4``) and YAML syntax for values (``model.lora=null``,
``train.trackers=[tensorboard]``). The resolved config is written into the run
directory as ``config.yaml``.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from prefalign.errors import ConfigError


class StrictModel(BaseModel):
    """A config section: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


ConfigT = TypeVar("ConfigT", bound=BaseModel)


def yaml_error_text(error: yaml.YAMLError) -> str:
    """``":LINE: invalid YAML: problem"`` on one line (the line when YAML knows it)."""
    mark = getattr(error, "problem_mark", None)
    where = f":{mark.line + 1}" if mark is not None else ""
    problem = (getattr(error, "problem", None) or getattr(error, "reason", None)
               or str(error).splitlines()[0])
    return f"{where}: invalid YAML: {' '.join(str(problem).split())}"


NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _parse_value(raw: str) -> Any:
    """A YAML scalar or collection; ``1e-4`` (a string to YAML 1.1) becomes a float,
    words such as ``nan`` or ``inf`` stay text."""
    if raw == "":
        return ""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or "malformed"
        raise ConfigError(f"value {raw!r} is not valid YAML ({problem})") from None
    if isinstance(value, str) and NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into a nested dict, values parsed as YAML."""
    nested: dict[str, Any] = {}
    for item in overrides:
        shown = repr(item)[1:-1]  # control characters escaped: the message stays one line
        if "=" not in item:
            raise ConfigError(f"override '{shown}' is not of the form key=value")
        key, raw = item.split("=", 1)
        if not key:
            raise ConfigError(f"override '{shown}' has an empty key")
        try:
            value = _parse_value(raw)
        except ConfigError as error:
            raise ConfigError(f"override '{shown}': {error}") from None
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{shown}' sets a field inside a non-section")
        node[parts[-1]] = value
    return nested


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into a copy of ``base``, recursing into sub-dicts."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _section_model(cls: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that owns the field at ``loc`` (for suggestions)."""
    current: Any = cls
    for part in loc[:-1]:
        if isinstance(part, int) or not hasattr(current, "model_fields"):
            return current if hasattr(current, "model_fields") else None
        field = current.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        candidates = getattr(annotation, "__args__", (annotation,))
        current = next((c for c in candidates if isinstance(c, type)
                        and issubclass(c, BaseModel)), None)
        if current is None:
            return None
    return current


def describe_validation_error(cls: type[BaseModel], error: ValidationError, source: str) -> str:
    """One line naming the first bad key, with a suggestion for misspellings."""
    first = error.errors()[0]
    loc = tuple(first["loc"])
    dotted = ".".join(str(p) for p in loc)
    if first["type"] == "extra_forbidden":
        owner = _section_model(cls, loc)
        valid = list(owner.model_fields) if owner is not None else []
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(valid)}"
        return f"{source}: unknown config key '{dotted}'{hint}"
    if first["type"] == "missing":
        return f"{source}: missing required config key '{dotted}'"
    return f"{source}: config key '{dotted}': {first['msg']} (got {first.get('input')!r})"


def load_config(cls: type[ConfigT], path: str | Path | None = None,
                overrides: list[str] | None = None,
                defaults: dict[str, Any] | None = None) -> ConfigT:
    """Build a stage config from optional defaults, a YAML file and overrides."""
    raw: dict[str, Any] = dict(defaults or {})
    source = "config"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}{yaml_error_text(exc)}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config must be a mapping of keys to values")
        raw = deep_merge(raw, loaded)
    if overrides:
        raw = deep_merge(raw, parse_overrides(overrides))
        source = f"{source} (with overrides)"
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(cls, exc, source)) from None


def config_to_yaml(config: BaseModel) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
