"""Load a causal language model and its tokenizer from one name.

A name is ``embedded`` (the offline default, SmolLM2-135M-Instruct), ``tiny``
(a tiny random chat model for smoke tests), a local directory (a saved model,
or a saved LoRA adapter whose base is named in ``adapter_config.json``), or a
Hugging Face Hub id. Options choose the dtype and device and add LoRA adapters,
or 4-bit QLoRA (Dettmers et al. 2023) on a CUDA GPU.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from prefalign.errors import ConfigError, ModelError
from prefalign.models.embedded import (
    EMBEDDED_DIRNAME,
    ensure_embedded,
    make_staging_dir,
    models_cache_dir,
    progress_bars,
    replace_dir,
)
from prefalign.models.lora import LoraSettings, apply_lora

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
QLORA_HINT = "QLoRA needs a CUDA GPU and bitsandbytes (pip install prefalign[qlora])"


def tiny_model_path() -> Path:
    """The cached tiny test model, created on first use."""
    final = models_cache_dir() / "tiny"
    if (final / "config.json").is_file():
        return final
    from prefalign.models.tiny import save_tiny_model

    staging = make_staging_dir(final)
    try:
        with progress_bars(False):
            save_tiny_model(staging)
        replace_dir(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _looks_like_path(name: str) -> bool:
    return (name.startswith((".", "/", "~")) or name.count("/") > 1
            or (os.sep != "/" and os.sep in name))


def resolve_model_source(name: str) -> str:
    """Turn a model name into something ``from_pretrained`` accepts.

    ``embedded`` and ``tiny`` become their cache directories (created if
    needed), an existing directory is returned as is, a path that does not
    exist is an error, and anything else is passed through as a hub id.
    """
    if name == "embedded":
        return str(ensure_embedded())
    if name == "tiny":
        return str(tiny_model_path())
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists():
        raise ModelError(f"model path is a file, not a directory: {name}")
    if _looks_like_path(name):
        raise ModelError(f"model path does not exist: {name}")
    return name


def portable_name(name: str, source: str) -> str:
    """The name to record as a model's origin: local directories (the cache
    folders of ``embedded`` and ``tiny`` included) become absolute, so plain
    ``peft`` can load a saved adapter's base; hub ids stay as they are."""
    path = Path(source)
    return str(path.resolve()) if path.is_dir() else source


def _short_name_for_cache_path(base: str) -> str | None:
    """``embedded``/``tiny`` for a recorded cache folder that is absent here
    (an adapter made on another machine or with another PREFALIGN_CACHE)."""
    folder = Path(base)
    if folder.exists() or folder.parent.name != "models":
        return None
    return {EMBEDDED_DIRNAME: "embedded", "tiny": "tiny"}.get(folder.name)


def is_adapter_dir(source: str) -> bool:
    """True when ``source`` is a local directory holding a saved peft adapter."""
    return (Path(source) / "adapter_config.json").is_file()


def adapter_base_name(source: str) -> str:
    """The base model an adapter directory was trained on."""
    config_path = Path(source) / "adapter_config.json"
    try:
        base = json.loads(config_path.read_text()).get("base_model_name_or_path")
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"unreadable adapter config {config_path}: {err}") from err
    if not base:
        raise ModelError(f"{config_path} does not name its base model "
                         f"(base_model_name_or_path is empty)")
    return _short_name_for_cache_path(base) or base


def require_model_dir(source: str) -> None:
    """Raise ``ModelError`` for a local directory that holds no model config."""
    path = Path(source)
    if path.is_dir() and not (path / "config.json").is_file():
        raise ModelError(f"not a model directory: {source} (no config.json)")


def default_device() -> torch.device:
    """This process's CUDA device when there is one (``LOCAL_RANK`` under a launcher), else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def resolve_dtype(dtype: str, device: torch.device | str) -> torch.dtype:
    """The torch dtype for a dtype name; ``auto`` is bfloat16 on a CUDA device
    that supports it and float32 otherwise."""
    if dtype == "auto":
        on_cuda = torch.device(device).type == "cuda"
        return torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float32
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype '{dtype}'; expected one of: auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _has_tokenizer_files(source: str) -> bool:
    path = Path(source)
    return (path / "tokenizer_config.json").is_file() or (path / "tokenizer.json").is_file()


def load_tokenizer(name_or_path: str, *, trust_remote_code: bool = False):
    """The tokenizer of a model, with a pad token and right padding.

    A missing pad token falls back to the eos token; no token is ever added, so
    the embedding matrix never needs resizing.
    """
    from transformers import AutoTokenizer

    source = resolve_model_source(name_or_path)
    if is_adapter_dir(source) and not _has_tokenizer_files(source):
        return load_tokenizer(adapter_base_name(source), trust_remote_code=trust_remote_code)
    if not is_adapter_dir(source):
        require_model_dir(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ModelError(f"could not load the tokenizer of '{name_or_path}': "
                         f"{_first_line(err)}") from err
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(f"the tokenizer of '{name_or_path}' has neither a pad nor an eos "
                             f"token; give it a pad token before training")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def _qlora_config(compute_dtype: torch.dtype):
    """4-bit NF4 weights with double quantisation, computing in ``compute_dtype``."""
    if not torch.cuda.is_available():
        raise ModelError(QLORA_HINT)
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError as err:
        raise ModelError(QLORA_HINT) from err
    if compute_dtype == torch.float32:
        compute_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)


def _from_pretrained(name: str, source: str, dtype: torch.dtype, quantization,
                     device: torch.device, trust_remote_code: bool):
    """``AutoModelForCausalLM.from_pretrained`` with SDPA attention where the
    architecture has it; loading failures become one-line ``ModelError``s."""
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": dtype, "trust_remote_code": trust_remote_code}
    if quantization is not None:
        kwargs.update(quantization_config=quantization,
                      device_map={"": device.index if device.index is not None else 0})
    try:
        try:
            return AutoModelForCausalLM.from_pretrained(source, attn_implementation="sdpa",
                                                        **kwargs)
        except ValueError as err:
            if "sdpa" not in str(err).lower():
                raise
            return AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError, KeyError) as err:
        raise ModelError(f"could not load model '{name}': {_first_line(err)}") from err


def _load_weights(name: str, dtype: torch.dtype, quantization, device: torch.device,
                  trust_remote_code: bool):
    """The full model a name stands for; an adapter directory stands for its base
    with the adapter merged in."""
    source = resolve_model_source(name)
    if is_adapter_dir(source):
        if quantization is not None:
            raise ModelError(
                f"QLoRA cannot start from the LoRA adapter in {source}: merging into 4-bit "
                f"weights loses precision. Save it merged first "
                f"(prefalign.models.save_model(model, tokenizer, out_dir, merge_lora=True))")
        from peft import PeftModel

        base = _load_weights(adapter_base_name(source), dtype, None, device, trust_remote_code)
        try:
            model = PeftModel.from_pretrained(base, source).merge_and_unload()
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise ModelError(f"could not load the adapter in {source}: {_first_line(err)}") from err
    else:
        require_model_dir(source)
        model = _from_pretrained(name, source, dtype, quantization, device, trust_remote_code)
    origin = portable_name(name, source)
    model.name_or_path = origin
    model.config.name_or_path = origin
    return model


def load_model(name_or_path: str, *, dtype: str = "auto", device: str | torch.device | None = None,
               lora: LoraSettings | None = None, qlora: bool = False,
               trust_remote_code: bool = False):
    """Load ``(model, tokenizer)`` for a model name (see ``resolve_model_source``).

    - ``dtype``: ``auto`` (float32 on CPU, bfloat16 on CUDA with bf16 support),
      ``float32``, ``bfloat16`` or ``float16``.
    - ``device``: where the weights go; default the CUDA device of this process
      if there is one, else CPU.
    - a saved adapter directory loads its base model with the adapter merged in,
      so new ``lora`` adapters train on top of it and disabling them gives back
      the model that was saved.
    - ``lora``: wrap the model in fresh LoRA adapters (only those train).
    - ``qlora``: load the base weights in 4-bit NF4 (CUDA + bitsandbytes only)
      and train LoRA adapters on top (``lora`` or default ``LoraSettings()``);
      activation checkpointing stays the caller's choice.
    """
    target = torch.device(device) if device is not None else default_device()
    torch_dtype = resolve_dtype(dtype, target)
    quantization = _qlora_config(torch_dtype) if qlora else None
    tokenizer = load_tokenizer(name_or_path, trust_remote_code=trust_remote_code)
    model = _load_weights(name_or_path, torch_dtype, quantization, target, trust_remote_code)
    if quantization is None:
        model.to(target)
    for config in (model.config, getattr(model, "generation_config", None)):
        if config is not None and getattr(config, "pad_token_id", None) is None:
            config.pad_token_id = tokenizer.pad_token_id
    if qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        lora = lora or LoraSettings()
    if lora is not None:
        model = apply_lora(model, lora)
    return model, tokenizer


def _cache_location(source: str) -> str:
    if Path(source).is_dir():
        return str(Path(source).resolve())
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(source, "config.json")
    return str(Path(cached).parent) if isinstance(cached, str) else "not cached"


def describe_model(name_or_path: str, *, trust_remote_code: bool = False) -> dict[str, object]:
    """What a model name stands for, without loading its weights: source,
    architecture, parameter count, dtype, vocabulary, context length, chat
    template, cache location, and the LoRA adapter if it is one."""
    from transformers import AutoConfig, AutoModelForCausalLM

    source = resolve_model_source(name_or_path)
    info: dict[str, object] = {"name": name_or_path, "source": source}
    config_source = source
    if is_adapter_dir(source):
        adapter = json.loads((Path(source) / "adapter_config.json").read_text())
        info["adapter"] = (f"LoRA r={adapter.get('r')} alpha={adapter.get('lora_alpha')} "
                           f"targets={sorted(adapter.get('target_modules') or [])}")
        info["base"] = adapter_base_name(source)
        while is_adapter_dir(config_source):
            config_source = resolve_model_source(adapter_base_name(config_source))
    require_model_dir(config_source)
    try:
        config = AutoConfig.from_pretrained(config_source, trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as err:
        raise ModelError(f"could not read the config of '{name_or_path}': "
                         f"{_first_line(err)}") from err
    tokenizer = load_tokenizer(name_or_path, trust_remote_code=trust_remote_code)
    text_config = config.get_text_config()
    info.update({
        "architecture": (config.architectures or [type(skeleton).__name__])[0],
        "model_type": config.model_type,
        "parameters": sum(p.numel() for p in skeleton.parameters()),
        "dtype": str(getattr(config, "dtype", None) or "float32").replace("torch.", ""),
        "vocab_size": getattr(text_config, "vocab_size", None),
        "context_length": next((getattr(text_config, key) for key in (
            "max_position_embeddings", "n_positions", "max_seq_len")
            if getattr(text_config, key, None)), None),
        "chat_template": bool(getattr(tokenizer, "chat_template", None)),
        "cached_at": _cache_location(config_source),
    })
    return info
