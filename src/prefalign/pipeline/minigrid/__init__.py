"""The MiniGrid pipeline: data → SFT → DPO → reward model → evaluation → report.

``stages`` declares and registers it (``PIPELINE``, registered as ``minigrid``,
the pipeline the ``minigrid`` task names); ``config`` is its config
(``MinigridPipelineConfig``, ``configs/minigrid.yaml``), ``data`` its data stage
(seed-split expert traces and preference pairs), ``evaluation`` its evaluation
of every policy on held-out episodes, ``report`` and ``figures`` its report.
"""

from prefalign.pipeline.minigrid.config import MinigridPipelineConfig
from prefalign.pipeline.minigrid.stages import PIPELINE

__all__ = ["PIPELINE", "MinigridPipelineConfig"]
