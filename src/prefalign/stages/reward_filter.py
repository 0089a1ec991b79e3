"""Data filtering by reward margin, and the filter → retrain → rescore flywheel.

A trained reward model scores each pair's margin ``Δ = r(x, y_c) − r(x, y_r)``.
Keeping the pairs with the largest ``|Δ|`` (``by="abs_margin"``) keeps the
pairs the model finds clear-cut, whichever way; keeping the largest signed
``Δ`` (``by="margin"``) also drops the pairs the model believes mislabelled
(``Δ < 0``). The flywheel repeats: train a reward model on the pool, score the
whole pool with it, keep the top fraction, retrain on what was kept, and
measure each cycle's reward model on one fixed held-out set, so that whether
filtering helps is a measured number, not a hope.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from prefalign.config import RewardConfig
from prefalign.data.load import write_jsonl
from prefalign.engine.rundir import atomic_write_json
from prefalign.errors import ConfigError, DataError
from prefalign.log import say
from prefalign.rewards.model import RewardModel
from prefalign.stages.common import load_train_eval
from prefalign.tasks import load_source

FilterBy = Literal["abs_margin", "margin"]
FILTER_KEYS = ("abs_margin", "margin")


def pair_margins(model: RewardModel, records: list[dict], batch_size: int = 16) -> torch.Tensor:
    """``r(x, y_c) − r(x, y_r)`` for every pair, ``[N]``."""
    prompts = [r["prompt"] for r in records]
    scores = model.score(prompts + prompts, [r["chosen"] for r in records]
                         + [r["rejected"] for r in records], batch_size)
    return scores[:len(records)] - scores[len(records):]


def select_by_margin(margins: torch.Tensor, keep: float, by: FilterBy) -> list[int]:
    """Indices (in input order) of the ``round(keep·N)`` pairs with the largest key,
    ``|Δ|`` or ``Δ``; ties keep the earlier pair."""
    if not 0 < keep <= 1:
        raise ConfigError(f"keep must be in (0, 1], got {keep}")
    if by not in FILTER_KEYS:
        raise ConfigError(f"unknown filter key '{by}'; valid: {', '.join(FILTER_KEYS)}")
    key = margins.abs() if by == "abs_margin" else margins
    count = max(1, round(keep * margins.numel()))
    order = torch.argsort(-key.double(), stable=True)[:count]
    return sorted(order.tolist())


def filter_by_rm(source: str, destination: str | Path, model_path: str | Path, keep: float,
                 by: FilterBy = "abs_margin", batch_size: int = 16) -> dict[str, float]:
    """Write the ``keep`` fraction of the pairs in ``source`` with the largest margin key."""
    records = load_source(source, "preference")
    if not records:
        raise DataError(f"{source}: no preference pairs")
    scorer = RewardModel.load(model_path, feature_cache=True)
    margins = pair_margins(scorer, records, batch_size)
    kept = select_by_margin(margins, keep, by)
    write_jsonl([records[i] for i in kept], destination)
    kept_margins = margins[kept]
    return {"read": len(records), "kept": len(kept), "dropped": len(records) - len(kept),
            "negative_margin_pairs": int((margins < 0).sum()),
            "kept_margin_mean": float(kept_margins.mean()),
            "kept_margin_min": float(kept_margins.min())}


def run_flywheel(cfg: RewardConfig, cycles: int, keep: float,
                 by: FilterBy = "abs_margin") -> list[dict[str, float]]:
    """Cycle 0 trains on the whole pool; cycle ``c ≥ 1`` trains on the top ``keep``
    fraction of the pool by the margins of cycle ``c − 1``'s model. Every cycle is
    evaluated on the same held-out pairs. Runs go to ``runs/<name>/cycle-<c>``;
    the per-cycle summary to ``runs/<name>/flywheel.json``."""
    from prefalign.stages.reward import run_reward

    if cycles < 1:
        raise ConfigError(f"cycles must be at least 1, got {cycles}")
    if cfg.objective != "pairwise":
        raise ConfigError("the flywheel filters preference pairs; it needs objective=pairwise")
    select_by_margin(torch.zeros(1), keep, by)
    root = cfg.run_dir
    pool, held_out = load_train_eval(cfg.data, "preference", cfg.train.seed)
    if not held_out:
        raise ConfigError("the flywheel needs held-out pairs: set data.eval or "
                          "data.eval_fraction > 0")
    eval_file = write_jsonl(held_out, root / "data" / "eval.jsonl")
    train_file = write_jsonl(pool, root / "data" / "cycle-0.jsonl")
    summary, train_count = [], len(pool)
    for cycle in range(cycles + 1):
        cycle_cfg = cfg.model_copy(update={
            "name": f"{cfg.name}/cycle-{cycle}", "output_dir": cfg.output_dir,
            "data": cfg.data.model_copy(update={"train": str(train_file),
                                                "eval": str(eval_file), "max_examples": None})})
        result = run_reward(cycle_cfg)
        entry = {"cycle": cycle, "train_pairs": train_count,
                 "heldout_accuracy": result.eval_metrics.get("accuracy"),
                 "heldout_ece": result.eval_metrics.get("ece")}
        if cycle < cycles:
            scorer = RewardModel.load(cycle_cfg.run_dir / "final",
                                      feature_cache=cfg.cache_features)
            margins = pair_margins(scorer, pool, cfg.feature_batch_size)
            kept = select_by_margin(margins, keep, by)
            entry["pool_negative_margin_pairs"] = int((margins < 0).sum())
            train_file = write_jsonl([pool[i] for i in kept],
                                     root / "data" / f"cycle-{cycle + 1}.jsonl")
            train_count = len(kept)
        summary.append(entry)
        say("rm flywheel", f"cycle {cycle}: {entry['train_pairs']} training pairs, "
                           f"held-out accuracy {entry['heldout_accuracy']:.4f}")
        atomic_write_json(root / "flywheel.json", summary)
    return summary
