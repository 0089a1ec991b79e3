"""The registry of paired preference losses: the one home of their names and parameters.

The losses themselves are pure functions (``dpo_family.py``; see its notation).
A loss's signature is its whole declaration: tensor inputs are its positional
parameters (``policy_chosen_logps``, ..., ``chosen_lengths``,
``policy_ref_sample_logps``), hyperparameters
its keyword-only ones, with defaults and (through ``Annotated``) valid ranges.
The config (``LossConfig``: ``name`` plus any hyperparameters) is checked
against these signatures by :func:`validate_loss_params`, and ``--help`` lists
them from :func:`loss_parameter_table`; nothing lists them a second time.

A new loss is one function and one :func:`register_preference_loss` call (in a
module of the package or in user code), after which ``loss.name=<name>`` and
``loss.<param>=<value>`` work in configs and on the command line.

Use :func:`preference_loss` to call a loss by name; it checks the name, the
hyperparameters and the inputs the method needs, and names the valid choices
when something is wrong.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable

from pydantic import TypeAdapter, ValidationError
from torch import Tensor

from prefalign.losses.dpo_family import (
    LossArgumentError,
    PreferenceLossOutput,
    caldpo_loss,
    dpo_loss,
    drdpo_loss,
    hinge_loss,
    ipo_loss,
    ipo_mean_loss,
    log1mexp,
    orpo_loss,
    robust_dpo_loss,
    rpo_loss,
    simpo_loss,
    xpo_loss,
)

PREFERENCE_LOSSES: dict[str, Callable[..., PreferenceLossOutput]] = {
    "dpo": dpo_loss,
    "robust": robust_dpo_loss,
    "ipo": ipo_loss,
    "ipo_mean": ipo_mean_loss,
    "hinge": hinge_loss,
    "simpo": simpo_loss,
    "orpo": orpo_loss,
    "rpo": rpo_loss,
    "caldpo": caldpo_loss,
    "drdpo": drdpo_loss,
    "xpo": xpo_loss,
}

_TENSOR_INPUTS = ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps",
                  "ref_rejected_logps", "chosen_lengths", "rejected_lengths",
                  "policy_ref_sample_logps")


def register_preference_loss(name: str, function: Callable[..., PreferenceLossOutput]
                             ) -> Callable[..., PreferenceLossOutput]:
    """Make ``function`` available as ``loss.name=<name>``; its keyword-only
    parameters become ``loss.<param>`` keys. Positional parameters must be named
    from ``policy_chosen_logps``, ``policy_rejected_logps``, ``ref_chosen_logps``,
    ``ref_rejected_logps``, ``chosen_lengths``, ``rejected_lengths`` and
    ``policy_ref_sample_logps`` (the policy's log-prob of a reply sampled from π_ref)."""
    unknown = [p.name for p in inspect.signature(function).parameters.values()
               if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
               and p.name not in _TENSOR_INPUTS]
    if unknown:
        raise LossArgumentError(f"loss '{name}': unknown tensor input(s) {', '.join(unknown)}; "
                                f"valid: {', '.join(_TENSOR_INPUTS)}")
    PREFERENCE_LOSSES[name] = function
    return function


def _signature_parts(name: str) -> tuple[list[str], dict[str, inspect.Parameter]]:
    """The tensor inputs and the hyperparameters of loss ``name``."""
    parameters = inspect.signature(PREFERENCE_LOSSES[name]).parameters.values()
    inputs = [p.name for p in parameters if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    params = {p.name: p for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
    return inputs, params


def _check_name(name: str) -> None:
    if name not in PREFERENCE_LOSSES:
        valid = ", ".join(sorted(PREFERENCE_LOSSES))
        close = difflib.get_close_matches(name, list(PREFERENCE_LOSSES), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise LossArgumentError(f"unknown preference loss '{name}'{hint} valid names: {valid}")


def loss_params(name: str) -> dict[str, object]:
    """The hyperparameters loss ``name`` accepts, with their default values."""
    _check_name(name)
    return {key: p.default for key, p in _signature_parts(name)[1].items()}


def _annotations(name: str) -> dict[str, object]:
    function = PREFERENCE_LOSSES[name]
    try:
        return typing.get_type_hints(function, include_extras=True)
    except (NameError, TypeError):
        return {}


def validate_loss_params(name: str, params: dict[str, object]) -> dict[str, object]:
    """``params`` checked against loss ``name``'s signature and coerced to its types.

    An unknown key is a ``LossArgumentError`` naming it, the closest valid key and
    all valid keys; a value outside its annotated range names the bound.
    """
    _check_name(name)
    accepted = _signature_parts(name)[1]
    hints = _annotations(name)
    checked = {}
    for key, value in params.items():
        if key not in accepted:
            close = difflib.get_close_matches(key, list(accepted), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise LossArgumentError(f"loss '{name}' has no parameter '{key}'; {hint}"
                                    f"valid: {', '.join(accepted) or 'none'}")
        hint = hints.get(key)
        if hint is None:
            checked[key] = value
            continue
        try:
            checked[key] = TypeAdapter(hint).validate_python(value)
        except ValidationError as err:
            raise LossArgumentError(f"loss '{name}': {key}={value!r}: "
                                    f"{err.errors()[0]['msg']}") from None
    return checked


def loss_parameter_table() -> dict[str, dict[str, tuple[object, str]]]:
    """``{param: {loss name: (default, description)}}`` over every registered loss."""
    table: dict[str, dict[str, tuple[object, str]]] = {}
    for name in PREFERENCE_LOSSES:
        hints = _annotations(name)
        for key, parameter in _signature_parts(name)[1].items():
            description = ""
            for meta in getattr(hints.get(key), "__metadata__", ()):
                description = getattr(meta, "description", None) or description
            table.setdefault(key, {})[name] = (parameter.default, description)
    return table


def requires_reference(name: str) -> bool:
    """Whether loss ``name`` needs reference-model log-probs."""
    _check_name(name)
    return "ref_chosen_logps" in _signature_parts(name)[0]


def requires_lengths(name: str) -> bool:
    """Whether loss ``name`` needs completion lengths (it works per token)."""
    _check_name(name)
    return "chosen_lengths" in _signature_parts(name)[0]


def requires_reference_sample(name: str) -> bool:
    """Whether loss ``name`` needs the policy's log-prob of a reply sampled from π_ref
    (XPO's exploration term): its records must carry a ``reference_sample``."""
    _check_name(name)
    return "policy_ref_sample_logps" in _signature_parts(name)[0]


REFERENCE_FREE: frozenset[str] = frozenset(
    name for name in PREFERENCE_LOSSES if not requires_reference(name))


def _reference_free() -> list[str]:
    return sorted(name for name in PREFERENCE_LOSSES if not requires_reference(name))


def preference_loss(name: str, policy_chosen_logps: Tensor, policy_rejected_logps: Tensor,
                    ref_chosen_logps: Tensor | None = None,
                    ref_rejected_logps: Tensor | None = None,
                    chosen_lengths: Tensor | None = None,
                    rejected_lengths: Tensor | None = None,
                    policy_ref_sample_logps: Tensor | None = None,
                    **params: object) -> PreferenceLossOutput:
    """Compute the paired preference loss ``name`` (a key of ``PREFERENCE_LOSSES``).

    Log-probs are sums over completion tokens and lengths are completion token
    counts, all of shape ``[B]``; ``policy_ref_sample_logps`` is the policy's summed
    log-prob of a reply sampled from π_ref (XPO). Inputs a loss does not take
    (reference log-probs for reference-free losses, lengths, samples) are ignored.
    Raises ``LossArgumentError`` (a ``ValueError``) for an unknown name, an unknown
    hyperparameter, a missing input, or inputs of mismatched shapes.
    """
    _check_name(name)
    inputs, accepted = _signature_parts(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        valid = ", ".join(accepted) or "none"
        raise LossArgumentError(
            f"loss '{name}' got unknown parameter(s) {', '.join(unknown)}; valid: {valid}")
    given = dict(zip(_TENSOR_INPUTS, (policy_chosen_logps, policy_rejected_logps,
                                      ref_chosen_logps, ref_rejected_logps,
                                      chosen_lengths, rejected_lengths,
                                      policy_ref_sample_logps)))
    missing = [key for key in inputs if given[key] is None]
    if missing:
        raise LossArgumentError(
            f"loss '{name}' needs {', '.join(missing)}; it takes {', '.join(inputs)}; "
            f"reference-free losses: {', '.join(_reference_free())}")
    shape = policy_chosen_logps.shape
    if policy_chosen_logps.dim() != 1:
        raise LossArgumentError(f"loss '{name}': log-probs must be 1-D [B], got {tuple(shape)}")
    args = []
    for key in inputs:
        value = given[key]
        if value.shape != shape:
            raise LossArgumentError(
                f"loss '{name}': {key} has shape {tuple(value.shape)}, expected {tuple(shape)}")
        if key.endswith("_lengths"):
            if bool((value <= 0).any()):
                raise LossArgumentError(f"loss '{name}': {key} must be positive token counts")
            value = value.to(policy_chosen_logps.dtype)
        args.append(value)
    return PREFERENCE_LOSSES[name](*args, **params)


__all__ = [
    "PREFERENCE_LOSSES", "REFERENCE_FREE", "LossArgumentError", "PreferenceLossOutput",
    "caldpo_loss", "dpo_loss", "drdpo_loss", "hinge_loss", "ipo_loss", "ipo_mean_loss",
    "log1mexp", "loss_parameter_table", "loss_params", "orpo_loss", "preference_loss",
    "register_preference_loss", "requires_lengths", "requires_reference",
    "requires_reference_sample", "robust_dpo_loss", "rpo_loss", "simpo_loss",
    "validate_loss_params", "xpo_loss",
]
