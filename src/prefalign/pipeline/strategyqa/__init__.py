"""The StrategyQA ask-and-draft pipeline: answer SFT (A), reasoning SFT (B), the Phase-B
model's drafts, draft-conditioned DPO (C), dev accuracy with the no-draft and
shuffled-draft ablations, attribution on the draft, report.

``stages`` declares and registers it (``PIPELINE``, registered as ``strategyqa``, the
pipeline the ``strategyqa`` task names); ``config`` is its config
(``configs/strategyqa.yaml``).
"""

from prefalign.pipeline.strategyqa.config import StrategyQAPipelineConfig
from prefalign.pipeline.strategyqa.stages import PIPELINE

__all__ = ["PIPELINE", "StrategyQAPipelineConfig"]
