"""Reward-model commands: ``rm`` (train), ``eval rm`` (diagnose), ``data filter-by-rm``,
``data rm-flywheel`` and ``rewards score`` (check a composite's components on a file)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from prefalign.cli.common import CONFIG_OPTION, OVERRIDES_ARGUMENT, RESUME_OPTION, print_result
from prefalign.cli.confighelp import config_epilog
from prefalign.cli.data import data_app
from prefalign.config import RewardConfig, load_config

rewards_app = typer.Typer(help="Reward functions: list them, and score a file with a "
                          "weighted composite to check its components.", no_args_is_help=True)


class FilterKey(str, Enum):
    abs_margin = "abs_margin"
    margin = "margin"


MODEL_OPTION = typer.Option(..., "--model", "-m", help="Reward-model directory (a run's "
                            "final/ folder).", show_default=False)
KEEP_OPTION = typer.Option(0.8, "--keep", help="Fraction of pairs to keep, largest key first.")
BY_OPTION = typer.Option(FilterKey.abs_margin, "--by", help="abs_margin: |r_c − r_r| "
                         "(clear-cut pairs either way); margin: r_c − r_r (also drops pairs "
                         "the model thinks mislabelled).")
BATCH_OPTION = typer.Option(16, "--batch-size", help="Sequences per scoring forward pass.")
EVAL_OUT_OPTION = typer.Option(None, "--out", "-o", help="Where rm_eval.json and "
                               "figures/ go (default: the model's run directory).")
DESTINATION_ARGUMENT = typer.Argument(..., help="Where to write the kept pairs (.jsonl).",
                                      show_default=False)
WEIGHTS_OPTION = typer.Option(..., "--config", "-c", help="YAML list of components "
                              "{name, weight, params, label?, squash?}.", show_default=False)
SCORES_OUT_OPTION = typer.Option(None, "--out", "-o", help="Also write each row's "
                                 "components and total here (.jsonl).")


def default_eval_dir(model: Path) -> Path:
    """Where ``eval rm`` writes: the run directory of ``runs/<name>/final``, else the model dir."""
    model = model.resolve()
    return model.parent if model.name == "final" else model


def held_out_file(model: Path) -> Path:
    """The held-out pairs a training run wrote next to ``model`` (its ``final/``)."""
    from prefalign.errors import ConfigError
    from prefalign.stages.reward import HELD_OUT_FILE

    path = default_eval_dir(model) / HELD_OUT_FILE
    if not path.is_file():
        raise ConfigError(f"no --data given and no {HELD_OUT_FILE} next to {model}; "
                          f"name the held-out pairs with --data")
    return path


def _response_field(record: dict, line: int, source: str) -> str:
    from prefalign.errors import DataError

    for name in ("response", "completion"):
        if isinstance(record.get(name), str):
            return record[name]
    raise DataError("expected a 'response' (or 'completion') text field", file=source,
                    line=line, field="response")


def rm(config: Path | None = CONFIG_OPTION,
       overrides: list[str] | None = OVERRIDES_ARGUMENT,
       resume: bool = RESUME_OPTION) -> None:
    """Train a reward model: scalar head on a causal LM; LoRA, full or frozen backbone."""
    from prefalign.stages.reward import run_reward

    cfg = load_config(RewardConfig, config, overrides or [])
    print_result(cfg.run_dir, run_reward(cfg, resume=resume))

def eval_rm(
    model: Path = MODEL_OPTION,
    data: str | None = typer.Option(None, "--data", "-d", help="Held-out preference "
                                       "pairs (file, hf:NAME or builtin:NAME); default: "
                                       "the run's heldout.jsonl."),
    out: Path | None = EVAL_OUT_OPTION,
    batch_size: int = BATCH_OPTION,
    probe_limit: int = typer.Option(200, "--probe-limit", help="Pairs used by the "
                                    "filler-paragraph probe (0: all)."),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads."),
) -> None:
    """Accuracy, score spread, calibration (ECE, reliability diagram) and length bias."""
    import torch

    from prefalign.eval.rm import evaluate_reward_model
    from prefalign.rewards.model import RewardModel
    from prefalign.tasks import load_source

    if threads is not None:
        torch.set_num_threads(threads)
    reward_model = RewardModel.load(model, feature_cache=True)
    records = load_source(data or str(held_out_file(model)), "preference")
    out_dir = out or default_eval_dir(model)
    result = evaluate_reward_model(reward_model, records, out_dir, batch_size,
                                   probe_limit or None)
    probe = result["filler_probe"]
    typer.echo(f"accuracy {result['accuracy']:.4f} on {result['pairs']} pairs; "
               f"ECE {result['ece']:.4f}; reward mean {result['reward_mean']:.3f} "
               f"std {result['reward_std']:.3f}; margin {result['margin_mean']:.3f}")
    typer.echo(f"length bias: pearson(score, words) {result['length_score_pearson']:.3f}; "
               f"filler paragraph changes the score by {probe['mean_delta']:+.3f} on "
               f"average (up for {probe['increased_fraction']:.0%} of responses)")
    typer.echo(f"wrote {out_dir / 'rm_eval.json'} and {out_dir / 'figures'}")

def filter_by_rm_command(
    source: str = typer.Argument(..., help="Preference pairs (file, hf:NAME or "
                                 "builtin:NAME).", show_default=False),
    destination: Path = DESTINATION_ARGUMENT,
    model: Path = MODEL_OPTION,
    keep: float = KEEP_OPTION,
    by: FilterKey = BY_OPTION,
    batch_size: int = BATCH_OPTION,
) -> None:
    """Keep the pairs with the largest reward-model margin."""
    from prefalign.stages.reward_filter import filter_by_rm

    counts = filter_by_rm(source, destination, model, keep, by.value, batch_size)
    typer.echo(f"kept {counts['kept']} of {counts['read']} pairs by {by.value} "
               f"(kept margins ≥ {counts['kept_margin_min']:.3f}; "
               f"{counts['negative_margin_pairs']} pairs had a negative margin); "
               f"wrote {destination}")

def rm_flywheel(
    config: Path | None = CONFIG_OPTION,
    overrides: list[str] | None = OVERRIDES_ARGUMENT,
    cycles: int = typer.Option(2, "--cycles", help="Filter → retrain → rescore cycles "
                               "after the first reward model."),
    keep: float = KEEP_OPTION,
    by: FilterKey = BY_OPTION,
) -> None:
    """Train an RM, keep its top pairs by margin, retrain; held-out accuracy per cycle."""
    from prefalign.stages.reward_filter import run_flywheel

    cfg = load_config(RewardConfig, config, overrides or [])
    summary = run_flywheel(cfg, cycles, keep, by.value)
    for entry in summary:
        typer.echo(f"cycle {entry['cycle']}: {entry['train_pairs']} pairs, held-out "
                   f"accuracy {entry['heldout_accuracy']:.4f}")
    typer.echo(f"wrote {cfg.run_dir / 'flywheel.json'}")

def list_rewards() -> None:
    """Names of every registered reward function."""
    from prefalign.rewards import available_rewards

    typer.echo("\n".join(available_rewards()))

def score(
    source: str = typer.Argument(..., help="Rows with 'prompt' and 'response' (or "
                                 "'completion'); other fields reach verifiers.",
                                 show_default=False),
    config: Path = WEIGHTS_OPTION,
    out: Path | None = SCORES_OUT_OPTION,
) -> None:
    """Score responses with a weighted composite and report every component."""
    from prefalign.data.load import read_rows, write_jsonl
    from prefalign.data.schema import validate_records
    from prefalign.rewards import build_composite, load_composite_spec
    from prefalign.rewards.composite import component_summary

    composite = build_composite(load_composite_spec(config))
    numbered = list(read_rows(source))
    records = validate_records(numbered, "prompt", file=source)
    responses = [_response_field(r, line, source) for r, (line, _) in zip(records, numbered)]
    prompts = [r["prompt"] for r in records]
    components = composite.components(prompts, responses, records)
    total = composite.combine(components)
    summary = component_summary(composite, components, total)
    typer.echo(f"{len(records)} responses scored by {len(composite.parts)} components")
    typer.echo(f"{'component':<20}{'weight':>8}{'mean':>9}{'std':>9}{'min':>9}{'max':>9}"
               f"{'w·mean':>9}{'corr':>7}")
    for label, row in summary.items():
        if label == "total":
            continue
        typer.echo(f"{label:<20}{row['weight']:>8.3g}{row['mean']:>9.4f}{row['std']:>9.4f}"
                   f"{row['min']:>9.4f}{row['max']:>9.4f}{row['weighted_mean']:>9.4f}"
                   f"{row['corr_with_total']:>7.2f}")
    t = summary["total"]
    typer.echo(f"{'total':<20}{'':>8}{t['mean']:>9.4f}{t['std']:>9.4f}{t['min']:>9.4f}"
               f"{t['max']:>9.4f}")
    if out is not None:
        write_jsonl([{"index": i, "total": float(total[i]),
                      **{label: float(v[i]) for label, v in components.items()}}
                     for i in range(len(records))], out)
        typer.echo(f"wrote {out}")


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    """Add the reward-model commands to the root, ``eval``, ``data`` and ``rewards`` apps."""
    app.command(epilog=config_epilog(RewardConfig))(rm)
    eval_app.command("rm")(eval_rm)
    data_app.command("filter-by-rm")(filter_by_rm_command)
    data_app.command("rm-flywheel", epilog=config_epilog(RewardConfig))(rm_flywheel)
    rewards_app.command("list")(list_rewards)
    rewards_app.command("score")(score)
    app.add_typer(rewards_app, name="rewards")
