"""Bytes per parameter of the model states, for each precision recipe, with sources.

Training with AdamW keeps, per trainable parameter: the working weight, its
gradient, and the optimizer state — two moments (Kingma & Ba 2015) and, in
mixed precision, an fp32 master copy of the weight. Frozen parameters keep
only the working weight.

* ``fp32``: 4 (weight) + 4 (gradient) + 8 (two fp32 moments) = **16** bytes.
* ``bf16`` / ``fp16`` (pure half precision; prefalign's default on a GPU,
  where ``model.dtype=auto`` loads bf16 weights and ``torch.optim.AdamW``
  keeps its moments in the parameter's dtype): 2 + 2 + 4 = **8** bytes.
* ``mixed`` (ZeRO's accounting; Rajbhandari et al. 2020, "ZeRO: Memory
  Optimizations Toward Training Trillion Parameter Models", §3.1): half
  weights 2Ψ and gradients 2Ψ, plus K·Ψ of optimizer state with K = 12 — the
  fp32 master weights (4), momentum (4) and variance (4): **16** bytes, so
  7.5B parameters need 120 GB. With ``fp32_grads`` the gradients are kept in
  fp32 (4 instead of 2), the accounting of Hugging Face's "Model training
  anatomy" guide (6 bytes of weights counting the fp32 copy, 4 of gradients,
  8 of Adam state): **18** bytes.
* ``amp`` (fp32 weights under autocast; prefalign's ``train.mixed_precision=
  bf16`` on an fp32 model): the fp32 states of ``fp32`` (16 bytes) plus, while
  forward and backward run, autocast's cached bf16 copy of each trainable
  weight (2 bytes), and bf16 activations.

QLoRA (Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs",
§3) stores the frozen projection weights in 4-bit NF4 with double-quantized
block constants: 4 bits + 8/64 + 32/(64·256) ≈ 4.127 bits = 0.516 bytes per
parameter. peft's ``prepare_model_for_kbit_training`` (which prefalign calls)
casts the remaining, unquantized weights — embeddings, norms, LM head — to fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefalign.plan.registry import lookup

NF4_BYTES_PER_PARAM = (4 + 8 / 64 + 32 / (64 * 256)) / 8
QLORA_UNQUANTIZED_BYTES = 4


@dataclass(frozen=True)
class Precision:
    """Bytes per parameter of each model state, and bytes per activation element."""

    name: str
    weight: float
    grad: float
    master: float
    moments: float
    activation: int
    autocast_copy: float = 0.0

    @property
    def optimizer(self) -> float:
        """Optimizer state per trainable parameter: master copy plus moments."""
        return self.master + self.moments

    @property
    def trainable(self) -> float:
        """Model states per trainable parameter (the "16 bytes" of the ZeRO paper)."""
        return self.weight + self.grad + self.optimizer

    @property
    def step_workspace(self) -> float:
        """``torch.optim.AdamW`` (foreach) allocates one moment-sized temporary per
        parameter in its step (the square root of the second moment)."""
        return self.moments / 2


PRECISIONS: dict[str, Precision] = {
    "fp32": Precision("fp32", weight=4, grad=4, master=0, moments=8, activation=4),
    "bf16": Precision("bf16", weight=2, grad=2, master=0, moments=4, activation=2),
    "fp16": Precision("fp16", weight=2, grad=2, master=0, moments=4, activation=2),
    "mixed": Precision("mixed", weight=2, grad=2, master=4, moments=8, activation=2),
    "amp": Precision("amp", weight=4, grad=4, master=0, moments=8, activation=2,
                     autocast_copy=2),
}


def precision(name: str, fp32_grads: bool = False) -> Precision:
    """The recipe called ``name``; ``fp32_grads`` keeps gradients in fp32 (4 bytes)."""
    recipe = lookup("precision", name, PRECISIONS)
    if fp32_grads:
        recipe = Precision(recipe.name + "+fp32-grads", recipe.weight, 4.0, recipe.master,
                           recipe.moments, recipe.activation, recipe.autocast_copy)
    return recipe
