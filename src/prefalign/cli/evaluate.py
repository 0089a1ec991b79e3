"""``prefalign eval policy`` (any policy against its reference) and ``prefalign eval
compare`` (several policies on the same prompts and seeds)."""

from __future__ import annotations

from pathlib import Path

import typer

from prefalign.cli.common import OVERRIDES_ARGUMENT

RUN_DIR_ARGUMENT = typer.Argument(None, help="An online run directory (with config.yaml and "
                                  "final/): evaluated as configured by the run.",
                                  show_default=False)
MODEL_OPTION = typer.Option(None, "--model", help="The policy: a run directory of any stage, "
                            "a saved model, an adapter, 'embedded', 'tiny' or a hub id.")
REFERENCE_OPTION = typer.Option(None, "--reference", help="The reference (KL, win rate): "
                                "like --model; default the run's starting model, else the "
                                "model itself (compare: the baseline's).")
PROMPTS_OPTION = typer.Option(None, "--prompts", help="Prompts: a file or a task source, "
                              "e.g. 'builtin:arithmetic?split=test&n=64'.")
JUDGE_OPTION = typer.Option(None, "--judge", help="A judge, repeatable: rm:PATH, hf-rm:ID, "
                            "verifier:TASK, lm:MODEL, http:URL[#model].")
OUT_OPTION = typer.Option(None, "--out", help="Report folder.")
MAX_NEW_OPTION = typer.Option(64, "--max-new-tokens", help="Answer length limit.")
TEMPERATURE_OPTION = typer.Option(0.0, "--temperature", help="Answer temperature (0: greedy).")
KL_SAMPLES_OPTION = typer.Option(1, "--kl-samples", help="Samples per prompt for the KL "
                                 "(0: no KL).")
SEED_OPTION = typer.Option(0, "--seed", help="Sampling and bootstrap seed.")
BATCH_OPTION = typer.Option(16, "--batch-size", help="Generation and scoring batch size.")
MAX_PROMPT_OPTION = typer.Option(None, "--max-prompt-length", min=1,
                                 help="Keep the last N tokens of longer prompts (multi-turn "
                                 "chats); default: whole prompts.")


def _judges(specs: list[str] | None) -> list:
    from prefalign.judges.base import build_judge

    return [build_judge(spec) for spec in specs or []]


def _records(prompts: str | None) -> list[dict]:
    from prefalign.errors import ConfigError
    from prefalign.tasks import load_source

    if not prompts:
        raise ConfigError("--prompts is required (a file or a task source such as "
                          "'builtin:arithmetic?n=64')")
    return load_source(prompts, "prompt")


def _settings(max_new_tokens: int, temperature: float, kl_samples: int, seed: int,
              batch_size: int, max_prompt_length: int | None):
    from prefalign.eval.compare import CompareSettings

    return CompareSettings(max_new_tokens=max_new_tokens, temperature=temperature,
                           kl_samples=kl_samples, seed=seed, batch_size=batch_size,
                           max_prompt_length=max_prompt_length)


def _online_run(run_dir: Path, out: Path | None, overrides: list[str]) -> None:
    from prefalign.stages.online.evaluate_run import evaluate_run

    evaluation, paths = evaluate_run(run_dir, overrides, out)
    summary = ", ".join(f"{k}={v:.4g}" for k, v in evaluation.metrics.items())
    typer.echo(f"{summary}\nreport: {paths['examples']}, {paths['histogram']}")


def policy(run_dir: Path | None = RUN_DIR_ARGUMENT, model: str | None = MODEL_OPTION,
           reference: str | None = REFERENCE_OPTION, prompts: str | None = PROMPTS_OPTION,
           judge: list[str] | None = JUDGE_OPTION,
           best_of: int = typer.Option(1, "--best-of", min=1, help="Also evaluate the "
                                       "policy as best-of-N."),
           rerank: str | None = typer.Option(None, "--rerank", help="Pointwise judge that "
                                             "picks the best of N."),
           threshold: float | None = typer.Option(None, "--threshold", help="Rejection "
                                                  "sampling: keep the first of N scoring "
                                                  "at least this, else the best."),
           out: Path | None = OUT_OPTION, max_new_tokens: int = MAX_NEW_OPTION,
           temperature: float = TEMPERATURE_OPTION, kl_samples: int = KL_SAMPLES_OPTION,
           seed: int = SEED_OPTION, batch_size: int = BATCH_OPTION,
           max_prompt_length: int | None = MAX_PROMPT_OPTION,
           overrides: list[str] | None = OVERRIDES_ARGUMENT) -> None:
    """Policy vs reference: reward, win rate, KL, length, pass rate (and best-of-N).

    `eval policy RUN_DIR` on an online run evaluates it as configured (key=value
    overrides allowed); otherwise give --model (or a run directory of any stage),
    --prompts and --judge.
    """
    from prefalign.errors import ConfigError
    from prefalign.eval.any_policy import evaluate_policy, headline
    from prefalign.eval.compare_report import write_comparison
    from prefalign.stages.online.evaluate_run import is_online_run

    if run_dir is not None and model is None and not judge and is_online_run(run_dir):
        _online_run(run_dir, out, overrides or [])
        return
    if overrides:
        raise ConfigError(f"key=value overrides apply to an online run only: {overrides[0]}")
    model = model or (str(run_dir) if run_dir is not None else None)
    if model is None:
        raise ConfigError("give a policy: --model M (or an online run directory)")
    records, judges = _records(prompts), _judges(judge)
    rerank_judge = _judges([rerank])[0] if rerank else None
    if best_of > 1 and rerank_judge is None:
        raise ConfigError("--best-of needs --rerank JUDGE (a pointwise judge)")
    comparison = evaluate_policy(
        model, records, judges, reference=reference, best_of=best_of, rerank=rerank_judge,
        threshold=threshold, source=prompts,
        settings=_settings(max_new_tokens, temperature, kl_samples, seed, batch_size,
                           max_prompt_length))
    paths = write_comparison(comparison, out or Path("policy-eval"), judges)
    summary = ", ".join(f"{k}={v:.4g}" for k, v in headline(comparison).items())
    typer.echo(f"{summary}\nreport: {paths['markdown']}, {paths['html']}")


def compare(policies: list[str] = typer.Argument(..., help="Policies: run directories, "
                                                 "saved models, adapters or hub ids."),
            prompts: str | None = PROMPTS_OPTION, judge: list[str] | None = JUDGE_OPTION,
            baseline: str | None = typer.Option(None, "--baseline", help="The policy win "
                                                "rates are against (default the first)."),
            reference: str | None = REFERENCE_OPTION,
            out: Path = typer.Option(Path("compare"), "--out", help="Report folder."),
            max_new_tokens: int = MAX_NEW_OPTION, temperature: float = TEMPERATURE_OPTION,
            kl_samples: int = KL_SAMPLES_OPTION, seed: int = SEED_OPTION,
            batch_size: int = BATCH_OPTION,
            max_prompt_length: int | None = MAX_PROMPT_OPTION,
            best_of: int = typer.Option(1, "--best-of", min=1, help="Also compare the "
                                        "baseline as best-of-N, reranked by --rerank."),
            rerank: str | None = typer.Option(None, "--rerank", help="Pointwise judge that "
                                              "picks the best of N (e.g. the reward model "
                                              "the policies trained against).")) -> None:
    """Several policies on the same prompts and seeds: one table, figures, HTML.

    Writes compare.json, compare.md and a self-contained compare.html into --out.
    """
    from prefalign.errors import ConfigError
    from prefalign.eval.compare import Candidate, compare_policies
    from prefalign.eval.compare_report import write_comparison
    from prefalign.eval.policies import resolve_policy

    baseline = baseline or policies[0]
    if baseline not in policies:
        raise ConfigError(f"--baseline {baseline} is not one of the policies: "
                          f"{', '.join(policies)}")
    sources = [resolve_policy(p) for p in policies]
    candidates = [Candidate(source, source.label) for source in sources]
    rerank_judge = _judges([rerank])[0] if rerank else None
    if best_of > 1:
        if rerank_judge is None:
            raise ConfigError("--best-of needs --rerank JUDGE (a pointwise judge)")
        base = sources[policies.index(baseline)]
        candidates.append(Candidate(base, f"{base.label} best-of-{best_of}", best_of,
                                    rerank_judge))
    ref = resolve_policy(reference, reference) if reference else None
    records, judges = _records(prompts), _judges(judge)
    comparison = compare_policies(
        candidates, records, judges, baseline=policies.index(baseline), reference=ref,
        source=prompts,
        settings=_settings(max_new_tokens, temperature, kl_samples, seed, batch_size,
                           max_prompt_length))
    paths = write_comparison(comparison, out, judges)
    typer.echo(f"{len(candidates)} policies on {len(records)} prompts\n"
               f"report: {paths['markdown']}, {paths['html']}")


def register(eval_app: typer.Typer) -> None:
    eval_app.command("policy")(policy)
    eval_app.command("compare")(compare)
