"""Export a trained model: LoRA merged into full weights, a model card, an optional Hub push."""

from prefalign.export.card import model_card
from prefalign.export.hub import push_to_hub
from prefalign.export.merge import ExportResult, export_model, find_model_dir

__all__ = ["ExportResult", "export_model", "find_model_dir", "model_card", "push_to_hub"]
