"""Integrated gradients over a causal LM's input embeddings (Captum).

For input embeddings ``x`` (``[T, d]``), a baseline ``x′`` (zeros) and the
output ``F(x) = log p(target | x)`` at the last position, integrated gradients
(Sundararajan et al. 2017, "Axiomatic Attribution for Deep Networks") gives

    IG_{t,j}(x) = (x_{t,j} − x′_{t,j}) · ∫₀¹ ∂F(x′ + α(x − x′)) / ∂x_{t,j} dα,

approximated by Captum's Gauss–Legendre rule with ``steps`` points. Completeness:
``Σ_{t,j} IG_{t,j} = F(x) − F(x′)``; the gap is returned as ``delta``. A token's
attribution is ``a_t = Σ_j IG_{t,j}``; the share of a span's mass is
``Σ_{t∈span} |a_t| / Σ_t |a_t|``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prefalign.errors import PrefalignError


@dataclass(frozen=True)
class Attribution:
    """Per-token attributions ``[T]``, the output at the input and at the baseline, and the
    completeness gap ``Σ a_t − (F(x) − F(x′))``."""

    tokens: torch.Tensor
    output: float
    baseline_output: float
    delta: float

    def share(self, start: int, end: int) -> float:
        """The share of absolute attribution mass on tokens ``[start, end)``."""
        mass = self.tokens.abs()
        total = float(mass.sum())
        return float(mass[start:end].sum()) / total if total > 0 else 0.0


def integrated_gradients(lm: torch.nn.Module, input_ids: list[int], target_id: int, *,
                         steps: int = 24, internal_batch_size: int = 8) -> Attribution:
    """Integrated gradients of ``log p(target_id | input_ids)`` w.r.t. the input embeddings,
    from an all-zeros baseline."""
    try:
        from captum.attr import IntegratedGradients
    except ImportError:
        raise PrefalignError("integrated gradients need captum: pip install "
                             "'prefalign[attribution]' (or set attribution.examples=0)") from None

    was_training = lm.training
    lm.eval()
    device = next(lm.parameters()).device
    ids = torch.tensor([input_ids], device=device)
    with torch.no_grad():
        embeds = lm.get_input_embeddings()(ids).float()
    baseline = torch.zeros_like(embeds)

    def log_prob(inputs_embeds: torch.Tensor) -> torch.Tensor:
        dtype = next(lm.parameters()).dtype
        logits = lm(inputs_embeds=inputs_embeds.to(dtype)).logits[:, -1].float()
        return torch.log_softmax(logits, dim=-1)[:, target_id]

    try:
        attributions, delta = IntegratedGradients(log_prob).attribute(
            embeds, baselines=baseline, n_steps=steps, internal_batch_size=internal_batch_size,
            return_convergence_delta=True)
        with torch.no_grad():
            output, base_output = log_prob(embeds), log_prob(baseline)
    finally:
        lm.train(was_training)
    return Attribution(tokens=attributions[0].sum(-1).detach().cpu().double(),
                       output=float(output), baseline_output=float(base_output),
                       delta=float(delta))
