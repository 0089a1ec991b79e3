"""Scalar heads on a language-model backbone: reward models and value models.

``ScalarHeadModel`` replaces a causal LM's vocabulary head with one linear unit
``v = w·h + b`` on the final hidden state ``h``. Read at the last token of a
sequence it is a Bradley-Terry reward model (Ouyang et al. 2022, "Training
language models to follow instructions with human feedback", §3.5: a 6B LM with
its unembedding replaced by a scalar output); read at every token it is the PPO
value head ``V(s_t)`` of the same paper.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from prefalign.errors import ModelError

HEAD_WEIGHTS = "scalar_head.safetensors"
HEAD_CONFIG = "scalar_head.json"


def backbone_of(causal_lm: nn.Module) -> nn.Module:
    """The base transformer of a causal LM (``model.model`` for Llama,
    ``model.transformer`` for GPT-2), looking through peft wrappers so LoRA
    layers stay inside it."""
    from peft import PeftModel

    inner = causal_lm.get_base_model() if isinstance(causal_lm, PeftModel) else causal_lm
    if hasattr(inner, "get_decoder"):
        decoder = inner.get_decoder()
        if decoder is not None and decoder is not inner:
            return decoder
    backbone = getattr(inner, "base_model", inner)
    if backbone is inner:
        raise ModelError(f"cannot find the base transformer of {type(inner).__name__}")
    return backbone


class ScalarHeadModel(nn.Module):
    """A transformer backbone with a scalar linear head on its last hidden state.

    Shapes: ``input_ids``, ``attention_mask`` are ``[B, T]`` (right padding, mask
    1 on real tokens); ``forward`` returns ``[B]`` values read at the last real
    token of each row; ``forward_all`` returns ``[B, T]`` values, one per token.
    The head is ``nn.Linear(hidden, 1)`` with weight ~ N(0, 1/(hidden+1)) and
    zero bias, kept in float32 whatever the backbone's dtype.
    """

    def __init__(self, backbone: nn.Module, hidden_size: int, source: str = ""):
        super().__init__()
        self.backbone = backbone
        self.hidden_size = hidden_size
        self.source = source
        self.head = nn.Linear(hidden_size, 1, dtype=torch.float32)
        nn.init.normal_(self.head.weight, std=1.0 / math.sqrt(hidden_size + 1))
        nn.init.zeros_(self.head.bias)
        self.head.to(next(backbone.parameters()).device)

    @classmethod
    def from_causal_lm(cls, causal_lm: nn.Module, source: str | None = None) -> ScalarHeadModel:
        """A fresh scalar head on the backbone of ``causal_lm`` (plain or peft-wrapped).

        The backbone's modules are shared, not copied: LoRA adapters trained
        through this model are the adapters of ``causal_lm``.
        """
        config = causal_lm.config
        hidden_size = getattr(config, "hidden_size", None) or config.n_embd
        origin = source if source is not None else getattr(causal_lm, "name_or_path", "") or ""
        return cls(backbone_of(causal_lm), hidden_size, origin)

    def hidden_states(self, input_ids: torch.Tensor,
                      attention_mask: torch.Tensor | None = None,
                      position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Final hidden states ``[B, T, H]`` of the backbone. A 4-D boolean mask
        ``[B, 1, T, T]`` (prefix-shared rows) is converted for the backbone's attention."""
        if attention_mask is not None and attention_mask.dim() == 4:
            from prefalign.models.token_logprobs import attention_mask_4d

            attention_mask = attention_mask_4d(self.backbone, attention_mask)
        output = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                               position_ids=position_ids, use_cache=False)
        return output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]

    def values_at(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  positions: torch.Tensor, position_ids: torch.Tensor | None = None
                  ) -> torch.Tensor:
        """Values ``[B, K]`` read at ``positions`` ``[B, K]`` of each row.

        For prefix-shared pairs (``prefalign.data.collate_shared``): the mask is
        the boolean ``[B, 1, T, T]`` that keeps chosen and rejected apart, and the
        positions are the last chosen and the last rejected token, so one row gives
        both rewards and the prompt is computed once.
        """
        hidden = self.hidden_states(input_ids, attention_mask, position_ids)
        rows = torch.arange(hidden.shape[0], device=hidden.device).unsqueeze(1)
        picked = hidden[rows, positions.to(hidden.device)]
        return self.head(picked.to(self.head.weight.dtype)).squeeze(-1)

    def forward_all(self, input_ids: torch.Tensor,
                    attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-token values ``[B, T]``: the PPO value head, ``V(prefix up to t)``."""
        hidden = self.hidden_states(input_ids, attention_mask)
        return self.head(hidden.to(self.head.weight.dtype)).squeeze(-1)

    def forward(self, input_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Sequence values ``[B]``, read at each row's last non-padding token.

        The last real position is ``max{t : mask[b, t] = 1}`` (the whole row when
        there is no mask); only those ``B`` hidden states go through the head.
        """
        hidden = self.hidden_states(input_ids, attention_mask)
        batch, length = input_ids.shape
        if attention_mask is None:
            last = torch.full((batch,), length - 1, device=hidden.device)
        else:
            positions = torch.arange(length, device=hidden.device).expand(batch, length)
            last = torch.where(attention_mask.bool(), positions, 0).max(dim=-1).values
        rows = torch.arange(batch, device=hidden.device)
        final = hidden[rows, last]
        return self.head(final.to(self.head.weight.dtype)).squeeze(-1)

    def freeze_backbone(self) -> None:
        """Train only the head: every backbone parameter stops requiring grad."""
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(False)
        for parameter in self.head.parameters():
            parameter.requires_grad_(True)

    def save(self, path: str | Path) -> Path:
        """Write the head into directory ``path``: weights (safetensors) and a json
        with the hidden size and the backbone source. Each file is written to a
        temporary name and renamed, so a killed save leaves the old files intact."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {name: t.detach().to("cpu", torch.float32).contiguous()
                   for name, t in self.head.state_dict().items()}
        weights_tmp = path / (HEAD_WEIGHTS + ".tmp")
        save_file(tensors, str(weights_tmp))
        config_tmp = path / (HEAD_CONFIG + ".tmp")
        config_tmp.write_text(json.dumps(
            {"hidden_size": self.hidden_size, "backbone_source": self.source}, indent=2) + "\n")
        os.replace(weights_tmp, path / HEAD_WEIGHTS)
        os.replace(config_tmp, path / HEAD_CONFIG)
        return path

    def load(self, path: str | Path) -> None:
        """Load head weights saved by ``save`` from directory ``path``."""
        config = read_head_config(path)
        if config["hidden_size"] != self.hidden_size:
            raise ModelError(f"the scalar head in {path} has hidden size {config['hidden_size']}, "
                             f"but this backbone has {self.hidden_size}")
        tensors = load_file(str(Path(path) / HEAD_WEIGHTS))
        device = self.head.weight.device
        self.head.load_state_dict({k: v.to(device) for k, v in tensors.items()})


def read_head_config(path: str | Path) -> dict:
    """The json written next to a saved scalar head."""
    config_path = Path(path) / HEAD_CONFIG
    if not config_path.is_file() or not (Path(path) / HEAD_WEIGHTS).is_file():
        raise ModelError(f"no scalar head in {path} (expected {HEAD_WEIGHTS} and {HEAD_CONFIG})")
    try:
        return json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ModelError(f"unreadable {config_path}: {err}") from err


def load_scalar_head_model(path: str | Path, **load_options) -> tuple[ScalarHeadModel, object]:
    """Rebuild a saved reward or value model: ``(ScalarHeadModel, tokenizer)``.

    The backbone comes from ``path`` itself when the model (or its adapter) was
    saved there, otherwise from the recorded backbone source; ``load_options``
    go to ``load_model`` (dtype, device, lora, ...).
    """
    from prefalign.models.load import load_model

    path = Path(path)
    config = read_head_config(path)
    saved_here = (path / "config.json").is_file() or (path / "adapter_config.json").is_file()
    source = str(path) if saved_here else config.get("backbone_source") or ""
    if not source:
        raise ModelError(f"the scalar head in {path} records no backbone source")
    causal_lm, tokenizer = load_model(source, **load_options)
    model = ScalarHeadModel.from_causal_lm(causal_lm, source=source)
    model.load(path)
    return model, tokenizer
