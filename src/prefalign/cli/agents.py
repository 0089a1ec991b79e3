"""`prefalign eval agent`: an agent on task sets, trajectories and a report."""

from __future__ import annotations

from pathlib import Path

import typer


def agent(agent_name: str = typer.Option(..., "--agent", help="oracle, random, zero-shot, "
                                         "react, plan-execute or planner-executor."),
          tasks: list[str] = typer.Option(..., "--tasks", help="Task set, repeatable: "
                                          "benchmark, gaia, chains, code, or a folder's "
                                          "<name> with --task-folder."),
          model: str | None = typer.Option(None, "--model", help="The model: 'embedded', a "
                                           "run directory or saved model, or an "
                                           "OpenAI-compatible endpoint http://HOST:PORT/v1"
                                           "[#model]."),
          executor: str | None = typer.Option(None, "--executor", help="planner-executor: "
                                              "a second model for the executor role."),
          memory: str = typer.Option("flat", "--memory", help="flat (every previous turn) "
                                     "or scratchpad (the model's rolling notes)."),
          max_steps: int = typer.Option(8, "--max-steps", min=1, help="Turns per task."),
          max_new_tokens: int = typer.Option(192, "--max-new-tokens", min=1,
                                             help="Reply length per turn."),
          limit: int | None = typer.Option(None, "--limit", min=1, help="First N tasks of "
                                           "each set."),
          task_folder: Path | None = typer.Option(None, "--task-folder", help="Folder of "
                                                  "<name>.tasks.jsonl (default: shipped)."),
          out: Path = typer.Option(Path("runs/agents"), "--out", help="Output folder: "
                                   "trajectories.jsonl, report.md/json (resumes).")) -> None:
    """Run an agent on task sets: answer and tool-sequence scores with intervals.

    Every trajectory (messages, tool calls, results, timing, tokens) goes to
    OUT/trajectories.jsonl as each task finishes; a re-run skips finished tasks.
    """
    from prefalign.agents.agents import AGENTS, MEMORIES, AgentSettings
    from prefalign.agents.backends import load_chat_model
    from prefalign.agents.harness import AgentSpec, run_agent
    from prefalign.agents.tasks import load_task_set
    from prefalign.errors import ConfigError

    if agent_name not in AGENTS:
        raise ConfigError(f"--agent: unknown {agent_name!r}; agents: {', '.join(AGENTS)}")
    if memory not in MEMORIES:
        raise ConfigError(f"--memory: unknown {memory!r}; memories: {', '.join(MEMORIES)}")
    if agent_name not in ("oracle", "random") and model is None:
        raise ConfigError(f"--agent {agent_name} needs --model")
    task_sets = [load_task_set(name, task_folder) for name in tasks]
    chat = load_chat_model(model) if model and agent_name not in ("oracle", "random") else None
    second = load_chat_model(executor) if executor else None
    spec = AgentSpec(agent_name, AgentSettings(memory, max_steps, max_new_tokens), chat,
                     second)
    records = run_agent(spec, task_sets, out, limit)
    report = _write_outputs(records, out)
    typer.echo(f"{len(records)} tasks\nreport: {report}")


def _write_outputs(records: list[dict], out: Path) -> Path:
    """report.md/json in ``out``, and figures/hops.png when chain tasks are among them."""
    from prefalign.agents.report import memory_figure, write_report

    paths = write_report(records, out)
    chains = [r for r in records if r["task_set"] == "chains"]
    if chains:
        memory_figure(chains, out / "figures" / "hops.png")
    return paths["markdown"]


def agent_sft(trajectories: Path = typer.Argument(..., help="trajectories.jsonl of "
                                                 "`prefalign eval agent`."),
              out: Path = typer.Option(..., "--out", "-o", help="SFT JSONL ({messages})."),
              min_answer: float = typer.Option(1.0, "--min-answer", help="Keep trajectories "
                                               "whose answer score is at least this."),
              min_sequence: float = typer.Option(1.0, "--min-sequence", help="... and whose "
                                                 "tool-sequence score is at least this."),
              task_folder: Path | None = typer.Option(None, "--task-folder", help="Folder of "
                                                      "the task sets (default: shipped).")
              ) -> None:
    """Successful agent trajectories → `messages` SFT rows in the ReAct format, one row
    per assistant turn (tool calls and observations as the conversation holds them)."""
    from prefalign.agents.sft_data import sft_rows
    from prefalign.agents.tasks import load_task_set
    from prefalign.agents.trajectory import read_trajectories
    from prefalign.data.load import write_jsonl
    from prefalign.errors import DataError

    records = read_trajectories(trajectories)
    if not records:
        raise DataError(f"{trajectories}: no trajectories")
    tasks = {f"{name}/{task.id}": task for name in sorted({r["task_set"] for r in records})
             for task in load_task_set(name, task_folder).tasks}
    rows, passed = sft_rows(records, tasks, min_answer, min_sequence)
    write_jsonl(rows, out)
    typer.echo(f"{passed} of {len(records)} trajectories passed; {len(rows)} rows → {out}")


def agent_report(runs: list[Path] = typer.Argument(..., help="Output folders of "
                                                 "`prefalign eval agent`."),
                 out: Path = typer.Option(..., "--out", "-o", help="Folder for the merged "
                                          "report.md/json and figures/hops.png.")) -> None:
    """Several agent runs in one report (the agents × task sets table) and one memory
    figure (answer accuracy against hops, a line per agent, memory and model)."""
    from prefalign.agents.trajectory import read_trajectories
    from prefalign.errors import DataError

    records = []
    for run in runs:
        found = read_trajectories(run / "trajectories.jsonl")
        if not found:
            raise DataError(f"{run / 'trajectories.jsonl'}: no trajectories")
        records += found
    report = _write_outputs(records, out)
    typer.echo(f"{len(records)} tasks from {len(runs)} runs\nreport: {report}")


def register(eval_app: typer.Typer, data_app: typer.Typer) -> None:
    eval_app.command("agent")(agent)
    eval_app.command("agent-report")(agent_report)
    data_app.command("agent-sft")(agent_sft)
