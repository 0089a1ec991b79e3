"""``report.md`` of a MiniGrid pipeline run: results table, checks, figures, data and timings.

Reads what the stages left in the run directory (``eval/``, ``data/summary.json``,
``pipeline.json``) and writes ``report.md`` plus ``figures/*.png``. Every rate
comes with its 95% Wilson interval and its counts; the checks state plainly
whether base < SFT < DPO, SFT < multi-turn GRPO and DPO ≤ DPO + best-of-n in
closed-loop success and whether DPO makes fewer perturbation-type errors than
SFT, and whether the intervals separate them. Sections follow on reward hacking
in best-of-n, the SFT policy's practice against the executor, the GRPO rounds,
training, data and time.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from prefalign.engine.rundir import atomic_write_text
from prefalign.errors import PrefalignError
from prefalign.pipeline.minigrid.config import STAGE_ORDER
from prefalign.pipeline.minigrid.figures import (
    error_types,
    short_environment,
    success_by_environment,
)
from prefalign.tasks.minigrid.metrics import ERROR_NAMES

METRICS = (("closed_loop_success", "closed-loop success"),
           ("single_step_success", "single-step success"),
           ("grammar_valid", "grammar valid"), ("expert_agreement", "expert agreement"),
           ("perturbation_errors", "perturbation-type errors"))


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def fmt(value: dict) -> str:
    """``0.617 [0.528, 0.699] (74/120)``; ``n/a`` without data."""
    if not value["n"]:
        return "n/a"
    low, high = value["ci95"]
    return f"{value['rate']:.3f} [{low:.3f}, {high:.3f}] ({value['k']}/{value['n']})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _compare(a: dict, b: dict, relation: str) -> bool:
    """Whether rate(a) relation rate(b) holds (``<`` or ``<=``)."""
    if a["rate"] is None or b["rate"] is None:
        return False
    return a["rate"] < b["rate"] if relation == "<" else a["rate"] <= b["rate"]


def _separated(a: dict, b: dict) -> bool:
    """The 95% intervals do not overlap."""
    return a["ci95"][1] < b["ci95"][0] or b["ci95"][1] < a["ci95"][0]


def _statement(label: str, left: dict, right: dict, relation: str) -> str:
    holds = "holds" if _compare(left, right, relation) else "does not hold"
    overlap = "do not overlap" if _separated(left, right) else "overlap"
    return (f"- {label}: **{holds}** ({left['rate']:.3f} vs {right['rate']:.3f}; "
            f"the intervals {overlap})")


def checks(policies: dict[str, dict]) -> list[str]:
    """Plain statements of the acceptance comparisons that the evaluated policies allow."""
    overall = {name: values["overall"] for name, values in policies.items()}
    lines = [_statement(f"closed-loop success {a} {rel} {b}", overall[a]["closed_loop_success"],
                        overall[b]["closed_loop_success"], rel)
             for a, b, rel in (("base", "sft", "<"), ("sft", "dpo", "<"), ("sft", "rl", "<"),
                               ("dpo", "dpo_best_of_n", "<="))
             if a in overall and b in overall]
    if "dpo" in overall and "dpo_best_of_n" in overall:
        greedy = overall["dpo"]["closed_loop_success"]
        reranked = overall["dpo_best_of_n"]["closed_loop_success"]
        worse = reranked["ci95"][1] < greedy["ci95"][0]
        lines.append(f"- closed-loop success of dpo_best_of_n not worse than greedy dpo (its "
                     f"interval does not lie below greedy's): "
                     f"**{'does not hold' if worse else 'holds'}** "
                     f"({reranked['rate']:.3f} vs {greedy['rate']:.3f})")
    if "sft" in overall and "dpo" in overall:
        lines.append(_statement("perturbation-type error rate dpo < sft",
                                overall["dpo"]["perturbation_errors"],
                                overall["sft"]["perturbation_errors"], "<"))
    return lines


def _error_shares(results: dict[str, dict]) -> tuple[dict, dict]:
    failures, perturbations = {}, {}
    for name, result in results.items():
        single = result["overall"]["single_step"]
        decisions = max(single["decisions"], 1)
        failures[name] = {k: v / decisions for k, v in single["errors"].items()}
        perturbations[name] = {k: v / decisions for k, v in single["perturbation_matches"].items()}
    return failures, perturbations


def _error_table(results: dict[str, dict]) -> list[str]:
    error_names = list(ERROR_NAMES.values())
    rows = []
    for name, result in results.items():
        single, loop = result["overall"]["single_step"], result["overall"]["closed_loop"]
        rows.append([name, str(single["decisions"])]
                    + [str(single["errors"].get(e, 0)) for e in error_names]
                    + [str(v) for v in single["perturbation_matches"].values()]
                    + [", ".join(f"{k} {v}" for k, v in loop["failures"].items() if v) or "-"])
    perturbation_names = list(next(iter(results.values()))["overall"]["single_step"]
                              ["perturbation_matches"])
    return _table(["policy", "decisions", *error_names, *perturbation_names,
                   "closed-loop failures"], rows)


def _training_lines(state: dict) -> list[str]:
    lines = []
    labels = {"sft": "SFT (held-out)", "dpo": "DPO (held-out pairs)",
              "rm": "reward model (held-out pairs)"}
    baseline = (state.get("rm", {}).get("summary") or {}).get("perturbation_only_eval") or {}
    for stage, label in labels.items():
        summary = state.get(stage, {}).get("summary") or {}
        metrics = summary.get("eval") or {}
        shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()
                          if isinstance(v, (int, float)))
        if shown:
            lines.append(f"- {label}: {summary.get('steps', '?')} steps; {shown}")
    shown = ", ".join(f"{k} {v:.4g}" for k, v in baseline.items() if isinstance(v, (int, float)))
    if shown:
        lines.append(f"- reward model of perturbation pairs alone (held-out pairs): {shown}")
    return lines


def _practice_lines(summary: dict | None, rounds: list | None,
                    alerts: dict | None = None) -> list[str]:
    """What the SFT policy's practice against the executor gave, and the GRPO rounds."""
    lines = []
    practice = (summary or {}).get("practice")
    if practice:
        lines += ["## Practice against the executor", "",
                  f"The SFT policy played {practice['episodes_accomplished']['n']} training "
                  f"episodes, sampling proposals in each of {practice['states']} states: "
                  f"episodes accomplished {fmt(practice['episodes_accomplished'])}, proposals "
                  f"that passed the execution contract {fmt(practice['proposals_passed'])}. "
                  f"{practice['pairs_found']} on-policy pairs (a passing proposal against a "
                  f"failing one, same state; {practice['pairs_refused_held_out']} refused as "
                  "held-out states); failure types of the rejected proposals: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(practice["rejected_failures"].items()))
                  + ". Training pairs by source: "
                  + ", ".join(f"{k} {v}" for k, v in summary["pairs_per_source"].items()) + ".",
                  ""]
    if rounds:
        lines += ["## Multi-turn GRPO against the executor", "",
                  "Practice episodes accomplished per round (sampled at the training "
                  "temperature), sequences with a non-zero advantage, mean KL to the SFT "
                  "reference.", ""]
        lines += _table(["round", "episodes accomplished", "mean subgoal return", "sequences",
                         "KL"],
                        [[str(r["round"]), fmt(r["accomplished"]),
                          f"{r['mean_subgoal_return']:.2f}", str(r["sequences"]),
                          f"{r.get('kl', 0.0):.4f}"] for r in rounds])
        found = (alerts or {}).get("alerts", [])
        lines += ["", "Reward-hacking monitor during the run (proposal length z-score after a "
                  "five-turn warm-up, KL to the reference rising three rounds running): "
                  + ("; ".join(f"round {a['step']}: {a['message']}" for a in found)
                     if found else "no alert") + ".", ""]
    return lines


def _audit_lines(audits: dict | None) -> list[str]:
    """The reward-hacking signals of best-of-n, per reward model, with their alerts."""
    if not audits:
        return []
    lines = ["## Reward hacking in best-of-n", "",
             "The same best-of-n candidates scored by each reward model. Invalid pick: the "
             "top-scored candidate does not parse although a parsing one was sampled (such "
             "text never passes the executor). The evaluated policy ranks parsing "
             "candidates only (the grammar guard); these signals are for the unguarded "
             "argmax.", ""]
    rows = []
    for name, audit in audits.items():
        z = [("n/a" if audit[key] is None else f"{audit[key]:.2f}")
             for key in ("length_z", "disagreement_z")]
        alerts = "; ".join(a["message"] for a in audit["alerts"]) or "none"
        rows.append([name, fmt(audit["invalid_pick"]), *z, alerts])
    lines += _table(["reward model", "invalid pick", "length z", "disagreement z", "alerts"],
                    rows)
    return lines + [""]


def _data_lines(data: dict) -> list[str]:
    seeds = data["seeds"]
    test_envs = data.get("test_environments", data["environments"])
    lines = [f"- training environments: {', '.join(map(short_environment, data['environments']))}"
             f"; held-out test environments: {', '.join(map(short_environment, test_envs))}",
             f"- demonstrations: the first {data.get('demo_episodes', '?')} training seeds of "
             f"each environment, {data.get('noisy_sft_examples', 0)} of the SFT examples "
             f"replaced by a perturbation (demo_noise {data.get('demo_noise', 0.0)})",
             f"- seeds: train {seeds['train'][0]}–{seeds['train'][1] - 1}, "
             f"validation {seeds['validation'][0]}–{seeds['validation'][1] - 1}, "
             f"test {seeds['test'][0]}–{seeds['test'][1] - 1}",
             f"- records: {', '.join(f'{k} {v}' for k, v in data['counts'].items())}; "
             f"prompt style {data['prompt_style']}",
             "- SFT examples per environment: "
             + ", ".join(f"{short_environment(k)} {v}"
                         for k, v in data["sft_per_environment"].items()),
             "- training pairs per environment: "
             + ", ".join(f"{short_environment(k)} {v}"
                         for k, v in data["pairs_per_environment"].items()),
             "- training pairs per perturbation: "
             + ", ".join(f"{k} {v}" for k, v in data["pairs_per_perturbation"].items())
             + f" ({data['rejected_failing']} rejected subgoals fail when executed)",
             "", "Held-out states that also occur word for word in training episodes "
             "(`context_overlap` of the test seeds' expert states). Seed-disjoint splits are "
             "not content-disjoint in small rooms; "
             + ("training states that occur in a test trace were removed."
                if data["exclude_test_states"] else
                "training states that occur in a test trace were kept."), ""]
    before = data["test_state_overlap"]["before_exclusion"]
    after = data["test_state_overlap"]["after_exclusion"]
    rows = [[short_environment(env), f"{before[env]['shared']}/{before[env]['total']}",
             f"{after[env]['shared']}/{after[env]['total']}"]
            for env in [*data.get("test_environments", data["environments"]), "all"]]
    return lines + _table(["environment", "test states seen in training (raw)",
                           "after exclusion"], rows)


def _setup_lines(root: Path) -> list[str]:
    """One line on what was trained, from the run's resolved ``config.yaml``."""
    path = root / "config.yaml"
    if not path.is_file():
        return []
    cfg = yaml.safe_load(path.read_text())
    sft, dpo, rm, evaluation = cfg["sft"], cfg["dpo"], cfg["rm"], cfg["eval"]

    def tuning(section: dict) -> str:
        return "LoRA" if section["lora"] else "a full fine-tune"

    beta = f" (beta {dpo['loss']['beta']})" if dpo["loss"].get("beta") is not None else ""
    sources = " and ".join(cfg.get("onpolicy", {}).get("sources", ["perturbation"]))
    return [f"Setup: base model `{cfg['model']}`; {cfg['data']['prompt_style']} prompts "
            f"{'with' if cfg['use_chat_template'] else 'without'} the chat template; SFT "
            f"with {tuning(sft)} at lr {sft['train']['lr']}; {dpo['loss']['name']}{beta} with "
            f"{tuning(dpo)} on the SFT model at lr {dpo['train']['lr']}, the SFT model as "
            f"reference, on {sources} pairs; "
            f"multi-turn GRPO: {cfg.get('rl', {}).get('rounds', 0)} rounds of "
            f"{cfg.get('rl', {}).get('seeds_per_round', '?')} starts x "
            f"{cfg.get('rl', {}).get('episodes_per_seed', '?')} episodes from the SFT model; "
            f"reward model: {rm['tuning']} backbone of the DPO model; "
            f"best-of-{evaluation['best_of_n']} at temperature {evaluation['temperature']} "
            f"({evaluation.get('best_of_n_guard', 'none')} guard).", ""]


def _time_lines(state: dict, policies: dict[str, dict]) -> list[str]:
    """Seconds per stage, and per evaluated policy with its generation counts."""
    lines = []
    if state:
        lines += ["## Time", ""]
        lines += _table(["stage", "seconds"], [[name, f"{state[name]['seconds']:.0f}"]
                                               for name in STAGE_ORDER
                                               if state.get(name, {}).get("status") == "done"])
        lines.append("")
    lines += _table(["evaluated policy", "seconds", "states generated", "prompts answered"],
                    [[name, f"{values['seconds']:.0f}",
                      str(values["generation"].get("generated", "?")),
                      str(values["generation"].get("prompts", "?"))]
                     for name, values in policies.items()])
    return lines + [""]


def write_pipeline_report(root: str | Path, title: str) -> Path:
    """Write ``root/report.md`` and its figures; return the report's path."""
    root = Path(root)
    evaluation = _read(root / "eval" / "summary.json")
    if evaluation is None:
        raise PrefalignError(f"no evaluation in {root / 'eval'}; run the eval stage first")
    policies = {name: evaluation["policies"][name] for name in evaluation["order"]}
    results = {name: _read(root / "eval" / f"{name}.json") for name in policies}
    state = (_read(root / "pipeline.json") or {}).get("stages", {})
    data = _read(root / "data" / "summary.json")
    environments = evaluation["environments"]
    held_out = (data or {}).get("held_out_compositions", 0.0)
    seeds = evaluation["test_seeds"]
    if isinstance(seeds, dict):
        every = [seed for values in seeds.values() for seed in values]
        seeds = [min(every), max(every) + 1]
    episodes = next(iter(policies.values()))["overall"]["closed_loop_success"]["n"]

    success = {name: {env: values["environments"][env]["closed_loop_success"]
                      for env in environments} for name, values in policies.items()}
    for name, values in policies.items():
        success[name]["all"] = values["overall"]["closed_loop_success"]
    success_png = success_by_environment([*environments, "all"], list(policies), success,
                                         root / "figures" / "success_by_environment.png")
    errors_png = error_types(list(policies), *_error_shares(results),
                             root / "figures" / "error_types.png")

    lines = [f"# {title}", "",
             f"{episodes} held-out test episodes (seeds {seeds[0]}–{seeds[1] - 1} of "
             f"{len(environments)} environments"
             + (f", missions of compositions held out of training ({held_out:.0%} of them)"
                if held_out else "") + "); a policy proposes one subgoal per state, "
             f"the executor runs it in the real environment and judges it "
             f"(closed loop: up to {evaluation['step_budget']} subgoals per episode). "
             f"Rates with 95% Wilson intervals and counts.", "", *_setup_lines(root),
             "## Results", ""]
    lines += _table(["policy", *(label for _, label in METRICS)],
                    [[name, *(fmt(values["overall"][key]) for key, _ in METRICS)]
                     for name, values in policies.items()])
    lines += ["", "Checks:", "", *checks(policies), "",
              f"![success per environment]({success_png.relative_to(root)})", "",
              "## Per environment", ""]
    rows = [[short_environment(env), name,
             *(fmt(values["environments"][env][key]) for key, _ in METRICS[:4])]
            for env in environments for name, values in policies.items()]
    lines += _table(["environment", "policy", *(label for _, label in METRICS[:4])], rows)
    lines += ["", "## Error types", "",
              "Single-step failure counts by type, subgoals that fall in a perturbation type "
              "of the expert's decision, and why closed-loop episodes ended without success.",
              "", *_error_table(results), "",
              f"![error types]({errors_png.relative_to(root)})", ""]
    bon = policies.get("dpo_best_of_n", {}).get("generation")
    if bon:
        drawn = (f"the greedy reply and {bon['n'] - 1} samples" if bon.get("include_greedy")
                 else f"{bon['n']} samples")
        lines += ["## Best-of-n", "",
                  f"{drawn} per state at temperature {bon['temperature']}, "
                  f"reranked by the reward model: {bon['mean_distinct_candidates']} distinct "
                  f"admissible candidates per state on average; the reward model's pick "
                  f"differed from the first candidate in {bon['reranked_states']} of "
                  f"{bon['generated']} states.", ""]
    lines += _audit_lines(_read(root / "eval" / "rerank_audit.json"))
    lines += _practice_lines(_read(root / "onpolicy" / "summary.json"),
                             _read(root / "rl" / "rounds.json"), _read(root / "rl" / "alerts.json"))
    training = _training_lines(state)
    if training:
        lines += ["## Training", "", *training, ""]
    if data is not None:
        lines += ["## Data", "", *_data_lines(data), ""]
    lines += _time_lines(state, policies)
    path = root / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
