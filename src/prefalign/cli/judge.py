"""``eval judge``: a judge's agreement with gold preference labels."""

from __future__ import annotations

import json
from pathlib import Path

import typer

JUDGE_OPTION = typer.Option(..., "--judge", "-j", help="Judge spec: rm:PATH, hf-rm:ID_OR_PATH, "
                            "verifier:TASK, lm:MODEL (e.g. lm:embedded) or "
                            "http:BASE_URL[#model].", show_default=False)
DATA_OPTION = typer.Option(..., "--data", "-d", help="Labelled pairs {prompt, chosen, rejected}: "
                           "a file, a task source (builtin:arithmetic?split=test) or hf:NAME.",
                           show_default=False)


def register(eval_app: typer.Typer) -> None:
    """Add ``eval judge`` to the ``eval`` group."""
    eval_app.command("judge")(eval_judge)


def eval_judge(
    judge: str = JUDGE_OPTION,
    data: str = DATA_OPTION,
    n: int = typer.Option(200, "--n", min=1, help="Judge the first N pairs."),
    out: Path = typer.Option(Path("runs/judge-eval"), "--out", "-o",
                             help="Directory for judge_eval.json and judge_eval.md."),
    rubric: Path | None = typer.Option(None, "--rubric", help="Rubric file of a pairwise "
                                       "judge ({prompt}, {response_a}, {response_b})."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Keep judgments on disk "
                               "(<prefalign cache>/judgments) and reuse them."),
    concurrency: int = typer.Option(4, "--concurrency", min=1,
                                    help="Requests in flight at once (http judges)."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds per request (http judges)."),
    retries: int = typer.Option(3, "--retries", min=1, help="Attempts per request (http)."),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads."),
) -> None:
    """Report a judge's agreement with gold labels: accuracy, position bias, tie rate,
    each with a 95% Wilson interval. Pairwise judges are asked in both orders."""
    from prefalign.judges import build_judge
    from prefalign.judges.agreement import agreement_markdown, judge_agreement
    from prefalign.tasks import load_source

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    pairs = load_source(data, "preference")[:n]
    built = build_judge(judge, rubric=rubric, cache=cache, concurrency=concurrency,
                        timeout=timeout, retries=retries)
    result = judge_agreement(built, pairs)
    result["data"] = data
    out.mkdir(parents=True, exist_ok=True)
    (out / "judge_eval.json").write_text(json.dumps(result, indent=2) + "\n")
    markdown = agreement_markdown(result, data)
    (out / "judge_eval.md").write_text(markdown)
    typer.echo(markdown)
    typer.echo(f"written: {out / 'judge_eval.json'}, {out / 'judge_eval.md'}")
