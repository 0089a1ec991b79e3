"""Switching dropout off, so that a training step sees the same function as the
reference and the old policy.

With dropout active, the policy's log-probs at step 0 differ from the
reference's (a DPO margin ≠ 0, a PPO ratio ≠ 1) although the weights are equal.
Most alignment recipes therefore train with dropout off; a stage keeps it only
when ``model.dropout=true``.
"""

from __future__ import annotations

from torch import nn

_FLOAT_ATTRIBUTES = ("attention_dropout", "attn_dropout", "dropout", "hidden_dropout",
                     "resid_dropout", "embd_dropout", "lora_dropout_p")


def disable_dropout(model: nn.Module) -> int:
    """Set every dropout probability in ``model`` to 0; return how many were non-zero.

    Covers ``nn.Dropout`` modules (LoRA's adapter dropout included), float
    attributes that attention implementations read directly (``attention_dropout``),
    and the config's ``*dropout*``/``*pdrop*`` fields, for modules built later.
    """
    changed = 0
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            changed += module.p > 0
            module.p = 0.0
        for name in _FLOAT_ATTRIBUTES:
            value = getattr(module, name, None)
            if isinstance(value, float) and value > 0:
                setattr(module, name, 0.0)
                changed += 1
    config = getattr(model, "config", None)
    if config is not None:
        for key, value in list(vars(config).items()):
            if ("dropout" in key or "pdrop" in key) and isinstance(value, float) and value > 0:
                setattr(config, key, 0.0)
    return changed
