"""The memory planner: textbook model-state figures, sharding, activations vs autograd."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from prefalign.cli import main
from prefalign.errors import ConfigError, ModelError
from prefalign.models.lora import LoraSettings, apply_lora
from prefalign.models.token_logprobs import CompletionLogprobModel
from prefalign.plan.activations import Batch, layer_bytes_per_token
from prefalign.plan.advice import cheapest_fix
from prefalign.plan.planner import PlanRequest, plan_memory
from prefalign.plan.render import parse_size
from prefalign.plan.shape import llama_shape, load_shape, shape_from_config

# LLaMA-7B (Touvron et al. 2023, Table 2): d=4096, 32 heads, 32 layers, SwiGLU 11008, V=32000.
LLAMA_7B = {"hidden": 4096, "layers": 32, "heads": 32, "intermediate": 11008, "vocab": 32000}


def llama_7b_params() -> int:
    h, f, v, layers = 4096, 11008, 32000, 32
    per_layer = 4 * h * h + 3 * h * f + 2 * h  # q, k, v, o; gate, up, down; two RMSNorms
    return layers * per_layer + 2 * v * h + h  # + embeddings, untied LM head, final norm


def test_llama_7b_parameter_count():
    assert llama_7b_params() == 6_738_415_616
    assert llama_shape(**LLAMA_7B).params == llama_7b_params()


def _full(**changes) -> PlanRequest:
    return PlanRequest(**{"stage": "sft", "method": "full", "precision": "mixed",
                          "batch_size": 1, "seq_len": 512, **changes})


def test_mixed_precision_adam_is_16_bytes_per_parameter():
    psi = llama_7b_params()
    plan = plan_memory(llama_shape(**LLAMA_7B), _full())
    assert plan.lines["weights"] == 2 * psi           # fp16/bf16 weights
    assert plan.lines["gradients"] == 2 * psi         # fp16/bf16 gradients
    assert plan.lines["optimizer state"] == 12 * psi  # fp32 master + momentum + variance
    assert plan.model_states == 16 * psi
    assert round(plan.model_states / 1e9) == 108


def test_fp32_gradients_make_it_18_bytes_per_parameter():
    psi = llama_7b_params()
    plan = plan_memory(llama_shape(**LLAMA_7B), _full(fp32_grads=True))
    assert plan.lines["gradients"] == 4 * psi
    assert plan.model_states == 18 * psi
    assert round(plan.model_states / 1e9) == 121


@pytest.mark.parametrize("devices", [2, 8, 64])
def test_sharding_divides_what_each_stage_shards(devices):
    psi = llama_7b_params()
    shape = llama_shape(**LLAMA_7B)
    zero1 = plan_memory(shape, _full(devices=devices, strategy="zero1")).lines
    assert (zero1["weights"], zero1["gradients"]) == (2 * psi, 2 * psi)
    assert zero1["optimizer state"] == pytest.approx(12 * psi / devices)
    zero2 = plan_memory(shape, _full(devices=devices, strategy="zero2")).lines
    assert zero2["weights"] == 2 * psi
    assert zero2["gradients"] == pytest.approx(2 * psi / devices)
    full = plan_memory(shape, _full(devices=devices, strategy="zero3")).lines
    assert full["gradients"] == pytest.approx(2 * psi / devices)
    assert full["optimizer state"] == pytest.approx(12 * psi / devices)
    # Sharded weights plus the units gathered just in time: two decoder layers, or the
    # embeddings + head (the larger), in 2 bytes.
    layer = 4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096
    edges = 2 * 32000 * 4096 + 4096
    assert full["weights"] == pytest.approx(2 * psi / devices + 2 * max(2 * layer, edges))
    fsdp = plan_memory(shape, _full(devices=devices, strategy="fsdp")).lines
    assert fsdp == full


def test_ddp_keeps_a_bucket_copy_of_gradients_and_offload_moves_optimizer_to_host():
    psi = llama_7b_params()
    shape = llama_shape(**LLAMA_7B)
    ddp = plan_memory(shape, _full(devices=4, strategy="ddp"))
    assert ddp.lines["DDP gradient buckets"] == 2 * psi
    offload = plan_memory(shape, _full(devices=4, strategy="zero2-offload"))
    assert offload.lines["optimizer state"] == 0
    assert offload.host["optimizer state (offloaded)"] == pytest.approx(12 * psi / 4)


def test_lora_trains_only_adapters():
    shape = llama_shape(**LLAMA_7B)
    plan = plan_memory(shape, PlanRequest(method="lora", precision="bf16", lora_r=16))
    adapters = 32 * 4 * 16 * (4096 + 4096)  # q, k, v, o: r·(in + out) each, per layer
    assert plan.trainable_params == adapters
    assert plan.lines["weights"] == 2 * (llama_7b_params() + adapters)
    assert plan.lines["gradients"] == 2 * adapters
    assert plan.lines["optimizer state"] == 4 * adapters  # two bf16 moments


def test_qlora_base_is_4_bit_nf4_with_double_quantized_constants():
    shape = llama_shape(**LLAMA_7B)
    plan = plan_memory(shape, PlanRequest(method="qlora", precision="bf16", lora_r=16))
    projections = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)
    nf4 = (4 + 8 / 64 + 32 / (64 * 256)) / 8  # QLoRA §3: 4.127 bits per parameter
    rest = llama_7b_params() - projections      # embeddings, norms, head: fp32 after peft
    adapters = 32 * 4 * 16 * (4096 + 4096)
    assert plan.lines["weights"] == pytest.approx(projections * nf4 + rest * 4 + adapters * 2)


def test_online_stages_add_generation_and_ppo_models():
    shape = llama_shape(**LLAMA_7B)
    grpo = plan_memory(shape, PlanRequest(stage="grpo", method="lora", batch_size=16,
                                          seq_len=1024))
    assert grpo.lines["KV cache (generation)"] == 16 * 1024 * 32 * 2 * 4096 * 2
    assert grpo.request.resolved_reference == "adapter"
    assert "generation" in grpo.phases
    ppo = plan_memory(shape, PlanRequest(stage="ppo", method="full", batch_size=4))
    assert ppo.lines["reward model"] == 2 * llama_7b_params()
    assert ppo.lines["value model"] > ppo.model_states  # its states plus its activations


def test_gradients_count_in_forward_only_when_accumulated():
    shape = llama_shape(**LLAMA_7B)
    one = plan_memory(shape, _full(grad_accum=1))
    two = plan_memory(shape, _full(grad_accum=2))
    assert (two.phases["forward + backward"] - one.phases["forward + backward"]
            == pytest.approx(one.lines["gradients"]))
    assert one.total == max(one.phases.values())


def _saved_tensor_bytes(model, *inputs) -> int:
    """Bytes of the distinct storages autograd keeps for backward (parameters excluded)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(*inputs)
    return sum(seen.values())


@pytest.mark.parametrize("method", ["full", "lora"])
def test_activation_formula_matches_what_autograd_saves(method):
    torch.manual_seed(0)
    h, f, layers, vocab, rows, seq = 256, 704, 3, 512, 3, 64
    config = LlamaConfig(vocab_size=vocab, hidden_size=h, intermediate_size=f,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         tie_word_embeddings=True)
    lm = LlamaForCausalLM(config)
    lm.config._attn_implementation = "sdpa"
    if method == "lora":
        lm = apply_lora(lm, LoraSettings(r=8))
    ids = torch.randint(0, vocab, (rows, seq))
    attention = torch.ones(rows, seq, dtype=torch.long)
    attention[0, -5:] = 0  # padding: transformers passes a mask to SDPA
    completion = torch.zeros(rows, seq, dtype=torch.long)
    completion[:, seq // 2:] = 1
    completion *= attention
    scored = int(completion[:, 1:].sum())
    measured = _saved_tensor_bytes(CompletionLogprobModel(lm), ids, attention, completion)

    shape, tokens, e = shape_from_config(config), rows * seq, 4
    planned = (layers * layer_bytes_per_token(shape, e, method, lora_r=8) * tokens
               + (4 * h + (2 * e * h if method == "full" else 0)) * tokens  # final norm
               + (e * h * scored if method == "full" else 0)                  # head input
               + layers * e * rows * seq * seq                                # SDPA masks
               + scored * vocab * e)                                          # kept logits
    assert planned == pytest.approx(measured, rel=0.02)


def test_batch_rows_per_stage():
    assert PlanRequest(stage="sft", batch_size=4).batch == Batch(4, 512, 4 * 256)
    # DPO: one [prompt | chosen | rejected] row per pair, or chosen and rejected rows.
    assert PlanRequest(stage="dpo", batch_size=4).batch == Batch(4, 256 + 2 * 256, 8 * 256)
    assert PlanRequest(stage="dpo", batch_size=4, prefix_sharing=False).batch == \
        Batch(8, 512, 8 * 256)
    assert PlanRequest(stage="rm", batch_size=4).batch == Batch(8, 512, 0)


def test_cheapest_fix_picks_the_first_change_that_fits():
    shape = llama_shape(**LLAMA_7B)
    replicas = _full(devices=8, strategy="ddp")
    fix = cheapest_fix(shape, replicas, 80e9)
    assert "zero2" in fix.summary[0] and fix.plan.fits(80e9)
    live_reference = PlanRequest(stage="dpo", method="full", precision="mixed", batch_size=1,
                                 seq_len=256, devices=8, strategy="zero3", reference="device")
    need = plan_memory(shape, live_reference).total
    fix = cheapest_fix(shape, live_reference, need - 1e9)
    assert fix.summary == ["precompute the reference log-probs (reference.precompute=true)"]
    assert cheapest_fix(shape, _full(), 1e9) is None


def test_memory_sizes():
    assert parse_size("80GB") == 80e9
    assert parse_size("80 GiB") == 80 * 2**30
    assert parse_size("512MB") == 512e6
    assert parse_size("24") == 24e9
    with pytest.raises(ConfigError, match="cannot read memory size"):
        parse_size("lots")


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown sharding strategy 'zero4'.*valid: none"):
        plan_memory(llama_shape(**LLAMA_7B), _full(strategy="zero4"))
    with pytest.raises(ConfigError, match="unknown precision"):
        plan_memory(llama_shape(**LLAMA_7B), _full(precision="fp8"))
    with pytest.raises(ModelError, match="no config.json"):
        load_shape(str(tmp_path))


def test_shape_from_a_model_folder(tiny_model_dir):
    shape = load_shape(str(tiny_model_dir))
    model = LlamaForCausalLM.from_pretrained(tiny_model_dir)
    assert shape.params == sum(p.numel() for p in model.parameters())
    assert shape.architecture_params == shape.params  # the Llama formula, tied embeddings


def _cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["prefalign", *args])
    code = 0
    try:
        main()
    except SystemExit as exit_info:
        code = exit_info.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_plan_command(monkeypatch, capsys, tmp_path):
    args = ["plan", "--hidden", "4096", "--layers", "32", "--heads", "32", "--intermediate",
            "11008", "--vocab", "32000", "--method", "full", "--precision", "mixed"]
    code, out, _ = _cli(monkeypatch, capsys, *args, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["bytes_per_trainable_parameter"] == 16
    assert data["per_device"]["optimizer state"] == 12 * llama_7b_params()
    code, out, _ = _cli(monkeypatch, capsys, *args, "--device-memory", "80GB")
    assert "fits in 80.00 GB: no" in out and "cheapest change that fits" in out
    code, _, err = _cli(monkeypatch, capsys, *args, "--strategy", "zero9")
    assert code == 2 and err.startswith("error: unknown sharding strategy 'zero9'")
    code, _, err = _cli(monkeypatch, capsys, "plan", "--model", str(tmp_path))
    assert code == 2 and "no config.json" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "method"), [("sft", "lora"), ("dpo", "full")])
def test_plan_within_25_percent_of_a_real_run(stage, method):
    """Two of the four cases of docs/memory.md (``prefalign plan measure --table``)."""
    from prefalign.plan.measure import MeasureCase, measure

    result = measure(MeasureCase(stage=stage, method=method))
    assert abs(result.error) < 0.25, result
