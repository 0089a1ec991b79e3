"""Activation memory of one micro-batch: what autograd keeps between forward and backward.

The counts below are read off transformers' Llama decoder layer (the layout
of most open models) run with SDPA attention, as prefalign runs it, and are
checked in the tests against the tensors autograd actually saves. Per token
and layer, with hidden ``h``, query width ``q = n_q·d``, MLP width ``f``,
``n_q`` heads, LoRA rank ``r`` and ``e`` bytes per activation element:

Full fine-tuning::

    norms      2 · (4h + 2eh)   each RMSNorm keeps its input in fp32, the
                                normalised value (for the weight's gradient) and
                                its output (kept by the next projection)
    attention  e·4q + 4·n_q     query, key and value as SDPA keeps them, the
                                output (shared with o_proj's input), and the
                                fp32 log-sum-exp per head; with a padding mask
                                transformers repeats grouped k/v heads to
                                ``q`` width before SDPA, so k and v count ``q``
    MLP        4ef              gate output (SiLU input), SiLU output, up
                                output, and their product (down_proj's input)

LoRA (frozen base, adapters on q, k, v, o)::

    norms      2 · 4h           frozen norm weights need only the fp32 input
    adapters   eh + 4er         the normed input shared by the q/k/v adapters
                                and each adapter's rank-r inner activation
    attention  e·4q + 4·n_q     as above
    MLP        3ef              the product is kept only for an adapted down_proj

with ``eh + ef + 3er`` more when the MLP projections are adapted too.

Per layer, not per token: the attention mask. transformers hands SDPA a
boolean ``[rows, 1, s, s]`` mask (a padding mask, or prefix sharing's block
mask), and each layer's SDPA keeps its own copy converted to the activation
dtype: ``e·rows·s²`` per layer. Around the layers: the final norm (``4h + 2eh``
full, ``4h`` LoRA, per token) and the LM head's input at completion positions
(``eh`` per completion token, full only). The backward pass adds, transiently,
about one layer's worth of activation gradients. With activation checkpointing (Chen et al. 2016,
"Training Deep Nets with Sublinear Memory Cost") each layer keeps only its
input (``eh`` per token) and one layer at a time is recomputed in backward.

prefalign's LM head runs only at completion positions (``ops/logprobs.py``):
for ``N_c`` completion tokens it keeps ``N_c × V`` logits in the model dtype,
and its backward adds an equal gradient plus two fp32 ``1024 × V`` blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefalign.plan.shape import ModelShape

HEAD_CHUNK = 1024


@dataclass(frozen=True)
class Batch:
    """What one micro-batch puts through the model: ``rows`` rows of ``row_len``
    tokens, ``completion_tokens`` of which (over all rows) are scored."""

    rows: int
    row_len: int
    completion_tokens: int

    @property
    def tokens(self) -> int:
        return self.rows * self.row_len


def layer_bytes_per_token(shape: ModelShape, e: int, method: str, lora_r: int = 16,
                          lora_targets: str = "attention") -> float:
    """Bytes one decoder layer keeps for backward, per token (formulas above)."""
    h, q, f = shape.hidden, shape.q_width, shape.intermediate
    attention = e * 4 * q + 4 * shape.heads
    if method == "full":
        return 2 * (4 * h + 2 * e * h) + attention + 4 * e * f
    adapters = e * h + 4 * e * lora_r
    mlp = 3 * e * f
    if lora_targets == "all-linear":
        adapters += e * h + e * f + 3 * e * lora_r
    return 2 * 4 * h + adapters + attention + mlp


def activation_bytes(shape: ModelShape, batch: Batch, e: int, method: str, *,
                     checkpointing: bool = False, lora_r: int = 16,
                     lora_targets: str = "attention", head_inputs: bool = True) -> float:
    """Activations kept by one micro-batch's forward, plus the backward workspace.

    ``head_inputs``: whether the LM head's input at completion positions is kept
    (a language-model loss); a scalar reward or value head needs only the last
    token's state.
    """
    per_layer = (layer_bytes_per_token(shape, e, method, lora_r, lora_targets) * batch.tokens
                 + e * batch.rows * batch.row_len ** 2)
    if checkpointing:
        layers = shape.layers * e * shape.hidden * batch.tokens + per_layer
    else:
        layers = shape.layers * per_layer
    full = method == "full"
    final_norm = (4 * shape.hidden + (2 * e * shape.hidden if full else 0)) * batch.tokens
    head_input = e * shape.hidden * batch.completion_tokens if full and head_inputs else 0
    backward_workspace = per_layer
    return layers + final_norm + head_input + backward_workspace


def logits_bytes(shape: ModelShape, completion_tokens: int, e: int) -> float:
    """prefalign's completion-only LM head: kept logits, their gradient, fp32 blocks."""
    block = min(completion_tokens, HEAD_CHUNK) * shape.vocab * 4
    return 2 * completion_tokens * shape.vocab * e + 2 * block


def no_grad_forward_bytes(shape: ModelShape, batch: Batch, e: int) -> float:
    """Transient memory of a no-grad forward (a reference model's): the residual
    stream, one layer's temporaries, and one block of logits."""
    per_token = e * (2 * shape.hidden + 2 * shape.intermediate + 4 * shape.q_width)
    block = min(batch.completion_tokens, HEAD_CHUNK) * shape.vocab * (e + 4)
    return per_token * batch.tokens + block


def kv_cache_bytes(shape: ModelShape, rows: int, seq_len: int, e: int) -> float:
    """Generation's key/value cache: ``rows · s · L · 2 · n_kv·d · e``."""
    return rows * seq_len * shape.layers * 2 * shape.kv_width * e
