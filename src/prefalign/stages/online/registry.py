"""The registry of online algorithms: one declaration per algorithm module.

An online algorithm is an ``OnlineAlgorithm``: its name (the command,
``prefalign <name>``), a one-line summary, its config section (a pydantic model,
if it has settings of its own), whether it needs a value head and reference
log-probs, where its KL anchor goes, and its two functions:

* ``advantages(rollout, cfg) -> metrics``: fills ``rollout.advantages`` (``[N]`` or
  ``[N, T]``; ``rollout.returns`` too if its loss needs them) from the rollout's
  rewards and log-probs;
* ``loss(inputs, cfg) -> (loss, metrics)``: the loss of one micro-batch from a
  ``LossInputs`` (log-probs, old and reference log-probs, values, advantages).

Both are built from the pure functions of ``prefalign.losses``. The shared rollout
machinery (``rollout_algorithm.RolloutAlgorithm``) does everything else. An
algorithm whose data flow is not rollout → advantages → clipped updates (online
DPO samples pairs) gives its own Engine algorithm as ``trainer``.

The built-in algorithms live in ``prefalign.stages.online.algorithms`` (one module
each, imported there, in one place); any other module registers one with
``register_online_algorithm``. The CLI commands and each algorithm's config model
(``OnlineConfig`` plus the algorithm's section, ``algorithm`` fixed to its name)
come from here.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, Field, create_model, field_validator

from prefalign.config import TrainConfig, load_config, parse_overrides
from prefalign.config.base import yaml_error_text
from prefalign.config.online import OnlineConfig
from prefalign.errors import ConfigError

if TYPE_CHECKING:
    from prefalign.stages.online.rollouts import LossInputs, Rollout

AdvantageFn = Callable[["Rollout", OnlineConfig], dict[str, float]]
LossFn = Callable[["LossInputs", OnlineConfig], tuple[Any, dict[str, float]]]


@dataclass(frozen=True)
class OnlineAlgorithm:
    """The declaration of one online algorithm (see the module docstring).

    ``kl``: where β·KL goes — ``loss`` (a term of the loss), ``reward`` (a penalty in
    the reward, from the old policy's log-probs) or ``none`` (the algorithm has its
    own anchor, e.g. DPO's β). ``needs_reference``: π_ref log-probs even when
    ``kl.coef = 0``. ``min_group``: the fewest samples per prompt it works with
    (``group_reason`` says why). ``check``: its own cross-field rules (default: a
    rollout splits into whole minibatches). ``train_config``: the Engine's loop
    settings (default ``cfg.train``). ``trainer``: an Engine algorithm class built as
    ``trainer(setup, spec)`` (default the rollout machinery). ``config_key``: the
    key of its section when not derived from the name.
    """

    name: str
    summary: str
    advantages: AdvantageFn | None = None
    loss: LossFn | None = None
    settings: type[BaseModel] | None = None
    needs_values: bool = False
    needs_reference: bool = False
    kl: Literal["loss", "reward", "none"] = "loss"
    min_group: int = 1
    group_reason: str = ""
    check: Callable[[OnlineConfig], None] | None = None
    train_config: Callable[[OnlineConfig], TrainConfig] | None = None
    trainer: Callable[..., Any] | None = None
    config_key: str | None = None

    @property
    def section(self) -> str | None:
        """The config key of its settings: ``config_key``, or the name with ``-`` as ``_``."""
        if self.settings is None:
            return None
        return self.config_key or self.name.replace("-", "_")

    def help(self) -> str:
        """The command's help: the summary and where the KL anchor goes."""
        where = {"loss": "KL: β·k(log π − log π_ref) in the loss (kl.coef, kl.estimator).",
                 "reward": "KL: −β·(log π_old − log π_ref) in the reward (kl.coef, k1).",
                 "none": ""}[self.kl]
        return f"{self.summary} {where}".strip()


_REGISTRY: dict[str, OnlineAlgorithm] = {}
_MODELS: dict[str, tuple[OnlineAlgorithm, type[OnlineConfig]]] = {}
_BUILTINS = "prefalign.stages.online.algorithms"


def register_online_algorithm(spec: OnlineAlgorithm, replace: bool = False) -> OnlineAlgorithm:
    """Add ``spec`` under ``spec.name`` (``replace`` to redefine a name); returns it."""
    if spec.trainer is None and (spec.advantages is None or spec.loss is None):
        raise ConfigError(f"online algorithm '{spec.name}' needs advantages and loss "
                          f"functions (or its own trainer)")
    if spec.name in _REGISTRY and not replace and _REGISTRY[spec.name] is not spec:
        raise ConfigError(f"an online algorithm named '{spec.name}' is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def online_algorithms() -> dict[str, OnlineAlgorithm]:
    """Every registered algorithm by name, the built-in ones first."""
    importlib.import_module(_BUILTINS)
    return dict(_REGISTRY)


def get_online_algorithm(name: str) -> OnlineAlgorithm:
    """The algorithm ``name``; a ``ConfigError`` listing the valid names otherwise."""
    algorithms = online_algorithms()
    if name not in algorithms:
        raise ConfigError(f"unknown online algorithm '{name}'; valid: "
                          f"{', '.join(algorithms)}")
    return algorithms[name]


def config_model(spec: OnlineAlgorithm) -> type[OnlineConfig]:
    """``OnlineConfig`` with ``spec``'s section and ``algorithm`` fixed to its name."""
    cached = _MODELS.get(spec.name)
    if cached is not None and cached[0] is spec:
        return cached[1]
    name = spec.name

    def same_algorithm(cls, value: str) -> str:
        if value != name:
            raise ValueError(f"the config sets algorithm={value}; run `prefalign {value}` "
                             f"or remove the key")
        return value

    fields: dict[str, Any] = {"algorithm": (str, Field(name, description=f"'{name}'."))}
    if spec.settings is not None:
        fields[spec.section] = (spec.settings, Field(default_factory=spec.settings,
                                                     description=f"{name} settings."))
    title = "".join(part.capitalize() for part in re.split(r"[^0-9A-Za-z]+", name))
    model = create_model(f"{title}Config", __base__=OnlineConfig,
                         __validators__={"_same_algorithm": field_validator("algorithm")(
                             classmethod(same_algorithm))},
                         **fields)
    _MODELS[name] = (spec, model)
    return model


def check_config(cfg: OnlineConfig) -> OnlineConfig:
    """Cross-field rules of ``cfg``'s algorithm (group size, minibatch shapes)."""
    spec = get_online_algorithm(cfg.algorithm)
    if spec.min_group > 1:
        cfg.check_group(spec.min_group, spec.group_reason)
    (spec.check or OnlineConfig.check_minibatches)(cfg)
    if cfg.policy.process_reward and spec.name != "grpo":
        raise ConfigError(f"policy.process_reward gives GRPO dense advantages; "
                          f"{spec.name} does not use it")
    return cfg


def load_online_config(algorithm: str | None, path: str | Path | None = None,
                       overrides: list[str] | None = None) -> OnlineConfig:
    """The checked config of ``algorithm`` from a YAML file and ``key=value``
    overrides; ``algorithm=None`` takes it from them (a run's ``config.yaml``)."""
    if algorithm is None:
        algorithm = _named_algorithm(path, overrides or [])
    spec = get_online_algorithm(algorithm)
    cfg = load_config(config_model(spec), path, overrides or [],
                      defaults={"algorithm": algorithm})
    return check_config(cfg)


def _named_algorithm(path: str | Path | None, overrides: list[str]) -> str:
    named = parse_overrides(overrides).get("algorithm")
    if named is None and path is not None and Path(path).is_file():
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}{yaml_error_text(error)}") from None
        named = loaded.get("algorithm") if isinstance(loaded, dict) else None
    if not isinstance(named, str):
        raise ConfigError(f"{path or 'config'}: no 'algorithm' key says which online "
                          f"algorithm to run")
    return named
