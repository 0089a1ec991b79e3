"""``prefalign eval prm``: process vs outcome reward models on step-labelled solutions,
and best-of-n on a policy's own samples."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer


def _named(specs: list[str]) -> dict[str, str]:
    from prefalign.errors import ConfigError

    named = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--model {spec!r}: expected NAME=PATH, e.g. prm=runs/prm")
        named[name] = path
    return named


SAMPLE_CHUNK = 8  # problems per generate call; a chunk's samples are saved as soon as they exist


def _samples(policy: str, problems: list[dict], n: int, max_new_tokens: int,
             temperature: float, seed: int, chat_template: bool, path: Path
             ) -> list[list[str]]:
    """``n`` samples per problem, appended to ``path`` (JSONL) chunk by chunk, each chunk
    seeded by ``chunk_seed(seed, c)``; a re-run keeps the chunks already there."""
    from prefalign.log import say
    from prefalign.stages.sampling import PolicySampler, SamplerSettings, chunk_seed, chunks

    stored = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                stored.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut short by a kill: sample from there again
    matches = [s for s, p in zip(stored, problems)
               if s["prompt"] == p["prompt"] and len(s["samples"]) == n]
    done = len(matches) - len(matches) % SAMPLE_CHUNK if len(matches) < len(problems) \
        else len(problems)
    groups = [s["samples"] for s in matches[:done]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(s) + "\n" for s in matches[:done]))
    if done == len(problems):
        return groups
    sampler = PolicySampler(policy, SamplerSettings(samples=n, max_new_tokens=max_new_tokens,
                                                    temperature=temperature,
                                                    batch_size=SAMPLE_CHUNK,
                                                    use_chat_template=chat_template))
    started = time.perf_counter()
    with path.open("a", encoding="utf-8") as handle:
        for index, part in enumerate(chunks(len(problems), SAMPLE_CHUNK)):
            if part.start < done:
                continue
            batch = [problems[i] for i in part]
            for problem, group in zip(batch, sampler(batch, chunk_seed(seed, index))):
                groups.append(group)
                handle.write(json.dumps({"prompt": problem["prompt"],
                                         "answer": problem["answer"], "samples": group}) + "\n")
            handle.flush()
            say("samples", f"{part.stop}/{len(problems)} problems "
                           f"{time.perf_counter() - started:.0f}s")
    return groups


def eval_prm(model: list[str] = typer.Option(..., "--model", help="NAME=PATH of a step "
                                             "reward model (repeatable): prm=runs/prm"),
             data: str = typer.Option(..., "--data", help="Step-labelled solutions: a "
                                      "`steps` file or a task source, e.g. "
                                      "'gsm8k_steps:path=../shared/data/gsm8k&split=test&n=500'."),
             policy: str | None = typer.Option(None, "--policy", help="Also rerank this "
                                               "model's own samples (a saved model or run)."),
             problems: str | None = typer.Option(None, "--problems", help="With --policy: "
                                                 "GSM8K problems, e.g. "
                                                 "'gsm8k:path=../shared/data/gsm8k&split=test'."),
             samples: int = typer.Option(4, "--samples", min=1, help="Samples per problem."),
             max_problems: int | None = typer.Option(None, "--max-problems", min=1,
                                                     help="Rerank on the first N problems."),
             max_new_tokens: int = typer.Option(256, "--max-new-tokens"),
             temperature: float = typer.Option(0.7, "--temperature"),
             seed: int = typer.Option(0, "--seed"),
             chat_template: bool = typer.Option(True, "--chat-template/--no-chat-template",
                                                help="Render the policy's prompts with its "
                                                "chat template (as SFT does by default)."),
             out: Path = typer.Option(Path("prm-eval"), "--out", help="Report folder.")
             ) -> None:
    """PRM vs ORM: critical case, step accuracy and AUROC, first-error localisation,
    best-of-n on constructed candidates and (with --policy) on the policy's samples.

    Writes prm_eval.json and prm_eval.md into --out.
    """
    from prefalign.engine.rundir import atomic_write_json, atomic_write_text
    from prefalign.errors import ConfigError
    from prefalign.eval.prm import evaluate_steps, markdown_table, rerank_samples, solution_steps
    from prefalign.rewards.step_model import StepRewardModel
    from prefalign.tasks import load_source

    models = {name: StepRewardModel.load(path) for name, path in _named(model).items()}
    records = load_source(data, "steps")
    unlabelled = next((i for i, r in enumerate(records)
                       if "labels" not in r or "final_correct" not in r), None)
    if unlabelled is not None:
        raise ConfigError(f"--data {data}: record {unlabelled} has no labels/final_correct")
    summary: dict = {"data": data, "solutions": len(records),
                     "problems": len({r.get("problem", json.dumps(r["prompt"]))
                                      for r in records}), "models": {}}
    for name, step_model in models.items():
        started = time.perf_counter()
        probabilities = step_model.step_probabilities([r["prompt"] for r in records],
                                                      [r["steps"] for r in records])
        summary["models"][name] = {"objective": step_model.objective,
                                   **evaluate_steps(records, probabilities,
                                                    step_model.aggregation),
                                   "seconds": round(time.perf_counter() - started, 1)}
    if policy is not None:
        if not problems:
            raise ConfigError("--policy needs --problems (GSM8K problems to sample on)")
        prompts = load_source(problems, "prompt")[:max_problems]
        out.mkdir(parents=True, exist_ok=True)
        groups = _samples(policy, prompts, samples, max_new_tokens, temperature, seed,
                          chat_template, out / "samples.jsonl")
        flat = [(p["prompt"], solution_steps(text) or [text.strip() or "(empty)"])
                for p, group in zip(prompts, groups) for text in group]
        scores = {}
        for name, step_model in models.items():
            values = step_model.score([f[0] for f in flat], [f[1] for f in flat])
            scores[name] = [values[i * samples:(i + 1) * samples] for i in range(len(prompts))]
        summary["samples"] = {"policy": policy, **rerank_samples(prompts, groups, scores)}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "prm_eval.json", summary)
    atomic_write_text(out / "prm_eval.md", markdown_table(summary))
    typer.echo(markdown_table(summary) + f"\nreport: {out / 'prm_eval.md'}")


def register(eval_app: typer.Typer) -> None:
    eval_app.command("prm")(eval_prm)
