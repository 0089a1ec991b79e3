"""Per-device memory of a training job, before it is launched.

``plan_memory(shape, request)`` adds up, for one device: the model states
(``precision.py``, sharded by ``strategies.py``), the activations and logits
of one micro-batch (``activations.py``), and whatever else the stage keeps —
a reference model, PPO's value and reward models, generation's KV cache.

Not every part is resident at once, so the peak is the largest of the phases
of a step:

* forward + backward: weights + optimizer state + activations + logits +
  reference (and gradients, when they outlive the step: accumulated over
  several micro-batches, or mirrored by DDP's buckets). With one micro-batch
  the gradients appear during backward while activations are being freed;
* optimizer step: weights + gradients + optimizer state + the step's
  workspace (activations are gone);
* generation (online stages): weights + optimizer state + KV cache.

Sizes are in bytes; ``GB`` means 10⁹ bytes, as in the papers cited.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefalign.errors import ConfigError
from prefalign.plan.activations import (
    Batch,
    activation_bytes,
    kv_cache_bytes,
    logits_bytes,
    no_grad_forward_bytes,
)
from prefalign.plan.precision import (
    NF4_BYTES_PER_PARAM,
    QLORA_UNQUANTIZED_BYTES,
    Precision,
    precision,
)
from prefalign.plan.shape import ModelShape
from prefalign.plan.strategies import Strategy, strategy

GB = 1e9
STAGES = ("sft", "rm", "dpo", "ppo", "grpo")
METHODS = ("full", "lora", "qlora")
REFERENCES = ("auto", "none", "precomputed", "adapter", "device", "cpu")
LORA_TARGETS = ("attention", "all-linear")


@dataclass(frozen=True)
class PlanRequest:
    """A training job to plan. ``batch_size`` is the micro-batch one device
    processes (prompts for SFT, pairs for RM/DPO, sequences for PPO/GRPO)."""

    stage: str = "sft"
    method: str = "lora"
    precision: str = "bf16"
    fp32_grads: bool = False
    batch_size: int = 8
    seq_len: int = 512
    completion_len: int | None = None
    grad_accum: int = 1
    devices: int = 1
    strategy: str = "none"
    checkpointing: bool = False
    reference: str = "auto"
    lora_r: int = 16
    lora_targets: str = "attention"
    prefix_sharing: bool = True
    overhead_bytes: float = 0.0

    def validate(self) -> None:
        for name, value, valid in (("stage", self.stage, STAGES), ("method", self.method, METHODS),
                                   ("reference", self.reference, REFERENCES),
                                   ("LoRA target set", self.lora_targets, LORA_TARGETS)):
            if value not in valid:
                raise ConfigError(f"unknown {name} '{value}'; valid: {', '.join(valid)}")
        for name in ("batch_size", "seq_len", "grad_accum", "devices", "lora_r"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 1 <= self.completion <= self.seq_len:
            raise ConfigError(f"completion_len must be between 1 and seq_len ({self.seq_len}), "
                              f"got {self.completion_len}")
        if self.reference == "adapter" and self.method == "full":
            raise ConfigError("reference=adapter needs LoRA or QLoRA (a full fine-tune has no "
                              "adapters to switch off)")

    @property
    def completion(self) -> int:
        return self.completion_len if self.completion_len is not None else self.seq_len // 2

    @property
    def resolved_reference(self) -> str:
        """Where the reference lives; ``auto`` follows prefalign's defaults."""
        if self.stage in ("sft", "rm"):
            return "none"
        if self.reference != "auto":
            return self.reference
        if self.stage == "dpo":
            return "precomputed"
        return "device" if self.method == "full" else "adapter"

    @property
    def batch(self) -> Batch:
        """Rows through the model: one per example (SFT, PPO, GRPO); chosen and rejected
        (RM); for DPO one prefix-shared row ``[prompt | chosen | rejected]`` per pair
        (prefalign's default) or two rows."""
        b, s, c = self.batch_size, self.seq_len, self.completion
        if self.stage == "rm":
            return Batch(rows=2 * b, row_len=s, completion_tokens=0)
        if self.stage == "dpo":
            if self.prefix_sharing:
                return Batch(rows=b, row_len=s + c, completion_tokens=2 * b * c)
            return Batch(rows=2 * b, row_len=s, completion_tokens=2 * b * c)
        return Batch(rows=b, row_len=s, completion_tokens=b * c)


@dataclass
class MemoryPlan:
    """The per-device breakdown (``lines``), host-memory use, and the phase totals."""

    request: PlanRequest
    shape: ModelShape
    recipe: Precision
    sharding: Strategy
    trainable_params: int
    frozen_params: int
    lines: dict[str, float] = field(default_factory=dict)
    host: dict[str, float] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=self.phases.get)

    @property
    def total(self) -> float:
        """The peak per device: the largest phase."""
        return self.phases[self.peak_phase]

    @property
    def model_states(self) -> float:
        """Weights + gradients + optimizer state on this device."""
        return sum(self.lines.get(k, 0.0) for k in ("weights", "gradients", "optimizer state"))

    @property
    def bytes_per_trainable_param(self) -> float:
        """Unsharded model-state bytes per trainable parameter (16 for mixed + Adam)."""
        return self.recipe.trainable

    def fits(self, device_bytes: float) -> bool:
        return self.total <= device_bytes


def _divide(value: float, shard: bool, devices: int) -> float:
    return value / devices if shard else value


def _weights(shape: ModelShape, request: PlanRequest, recipe: Precision,
             trainable: int) -> float:
    """Working weights of every parameter (base + adapters), unsharded."""
    if request.method == "full":
        return shape.params * recipe.weight
    adapters = trainable * recipe.weight
    if request.method == "qlora":
        quantized = shape.quantizable_params
        return (quantized * NF4_BYTES_PER_PARAM
                + (shape.params - quantized) * QLORA_UNQUANTIZED_BYTES + adapters)
    return shape.params * recipe.weight + adapters


def _gathered_units(shape: ModelShape, recipe: Precision) -> float:
    """Full weights gathered at once under full sharding: two layers, or the root unit."""
    return max(2 * shape.layer_params, shape.edge_params) * recipe.weight


def plan_memory(shape: ModelShape, request: PlanRequest) -> MemoryPlan:
    """The per-device memory plan of ``request`` on a model of ``shape``."""
    request.validate()
    recipe = precision(request.precision, request.fp32_grads)
    sharding = strategy(request.strategy)
    n = request.devices
    if request.method == "full":
        trainable, frozen = shape.params, 0
    else:
        trainable, frozen = shape.lora_params(request.lora_r, request.lora_targets), shape.params
    plan = MemoryPlan(request, shape, recipe, sharding, trainable, frozen)
    lines, host = plan.lines, plan.host

    weights = _weights(shape, request, recipe, trainable)
    if sharding.shards_weights:
        per_device = weights / n
        if sharding.offloads_weights:
            host["weights (offloaded)"] = per_device
            per_device = 0.0
        lines["weights"] = per_device + _gathered_units(shape, recipe)
        plan.notes.append("weights include the full weights of the units gathered just in time")
    else:
        lines["weights"] = weights
    lines["gradients"] = _divide(trainable * recipe.grad, sharding.shards_gradients, n)
    optimizer = _divide(trainable * recipe.optimizer, sharding.shards_optimizer, n)
    workspace = _divide(trainable * recipe.step_workspace, sharding.shards_optimizer, n)
    if sharding.offloads_optimizer:
        host["optimizer state (offloaded)"] = optimizer
        host["optimizer step workspace (offloaded)"] = workspace
        optimizer = workspace = 0.0
    lines["optimizer state"] = optimizer
    lines["optimizer step workspace"] = workspace
    buckets = trainable * recipe.grad if sharding.replica_buckets and n > 1 else 0.0
    if buckets:
        lines["DDP gradient buckets"] = buckets

    batch, e = request.batch, recipe.activation
    method = "full" if request.method == "full" else "lora"
    lines["activations"] = activation_bytes(
        shape, batch, e, method, checkpointing=request.checkpointing, lora_r=request.lora_r,
        lora_targets=request.lora_targets, head_inputs=request.stage != "rm")
    lines["logits"] = logits_bytes(shape, batch.completion_tokens, e) if batch.completion_tokens \
        else 0.0
    if recipe.autocast_copy:
        lines["autocast weight copies"] = trainable * recipe.autocast_copy
    _reference_lines(plan, shape, request, recipe, batch)
    if request.stage == "ppo":
        _ppo_lines(plan, shape, request, recipe, optimizer)
    if request.stage in ("ppo", "grpo"):
        lines["KV cache (generation)"] = kv_cache_bytes(shape, request.batch_size,
                                                        request.seq_len, e)
    if request.overhead_bytes:
        lines["runtime overhead"] = request.overhead_bytes
    _phases(plan, buckets)
    return plan


def _reference_lines(plan: MemoryPlan, shape: ModelShape, request: PlanRequest,
                     recipe: Precision, batch: Batch) -> None:
    where = request.resolved_reference
    if where in ("none", "precomputed"):
        if where == "precomputed":
            plan.lines["reference model"] = 0.0
            plan.notes.append("reference log-probs are precomputed before training and cached")
        return
    transient = no_grad_forward_bytes(shape, batch, recipe.activation)
    if where == "adapter":
        plan.lines["reference model"] = transient
        plan.notes.append("reference = the policy with its adapters switched off: "
                          "no second copy, one more no-grad forward")
        return
    frozen = shape.params * recipe.weight
    if plan.sharding.shards_weights:
        frozen = frozen / request.devices + _gathered_units(shape, recipe)
    if where == "cpu":
        plan.host["reference model (offloaded)"] = frozen
        frozen = 0.0
    plan.lines["reference model"] = frozen + transient


def _ppo_lines(plan: MemoryPlan, shape: ModelShape, request: PlanRequest, recipe: Precision,
               optimizer: float) -> None:
    """PPO trains a value model (same backbone, scalar head) and scores with a reward model."""
    value_states = plan.lines["weights"] + plan.lines["gradients"] + optimizer
    value_acts = activation_bytes(shape, request.batch, recipe.activation,
                                  "full" if request.method == "full" else "lora",
                                  checkpointing=request.checkpointing, lora_r=request.lora_r,
                                  lora_targets=request.lora_targets, head_inputs=False)
    plan.lines["value model"] = value_states + value_acts
    reward = shape.params * recipe.weight
    if plan.sharding.shards_weights:
        reward = reward / request.devices + _gathered_units(shape, recipe)
    plan.lines["reward model"] = reward
    plan.notes.append("PPO: the value model is a trained copy of the backbone, the reward "
                      "model a frozen one, both of the policy's size")


def _phases(plan: MemoryPlan, buckets: float) -> None:
    """Phase totals; see the module docstring for what each phase holds."""
    line = plan.lines.get
    always = (line("weights", 0) + line("optimizer state", 0) + line("reference model", 0)
              + line("value model", 0) + line("reward model", 0) + line("runtime overhead", 0)
              + buckets)
    gradients_live = plan.request.grad_accum > 1
    plan.phases["forward + backward"] = (always + line("activations", 0) + line("logits", 0)
                                         + line("autocast weight copies", 0)
                                         + (line("gradients", 0) if gradients_live else 0))
    plan.phases["optimizer step"] = (always + line("gradients", 0)
                                     + line("optimizer step workspace", 0))
    if "KV cache (generation)" in plan.lines:
        plan.phases["generation"] = always + line("KV cache (generation)", 0)
