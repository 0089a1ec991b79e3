"""``report.md`` of the StrategyQA pipeline: the accuracy table against the majority class
and the recipe's targets, the drafts, the breakdowns that explain a miss, the
attribution figures and the training curves of every phase."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from prefalign.engine.rundir import atomic_write_text  # noqa: E402
from prefalign.report.curves import plot_training_curves  # noqa: E402

LABELS = {"A": "A: answer SFT", "B": "B: reasoning SFT", "C": "C: draft-conditioned DPO",
          "C_no_draft": "C without the draft", "C_shuffled": "C with another question's draft"}


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _cell(row: dict) -> str:
    low, high = row["ci95"]
    return f"{row['rate']:.3f} [{low:.3f}, {high:.3f}] ({row['k']}/{row['n']})"


def targets(rows: dict, attribution: dict) -> list[tuple[str, str, bool]]:
    """The recipe's targets: (target, measured, met)."""
    a, b, c = rows["A"]["rate"], rows["B"]["rate"], rows["C"]["rate"]
    no_draft, shuffled = rows["C_no_draft"]["rate"], rows["C_shuffled"]["rate"]
    checks = [("B ≥ A + 7 points", f"B − A = {100 * (b - a):+.1f}", b >= a + 0.07),
              ("C ≥ A + 10 points", f"C − A = {100 * (c - a):+.1f}", c >= a + 0.10),
              ("C ≥ no-draft + 3 points", f"C − no-draft = {100 * (c - no_draft):+.1f}",
               c >= no_draft + 0.03),
              ("shuffled draft below full draft", f"C − shuffled = {100 * (c - shuffled):+.1f}",
               shuffled < c)]
    if attribution.get("examples"):
        after = attribution["after"]["mean_draft_share"]
        checks.append(("attribution on draft tokens ≥ 20% after DPO",
                       f"{100 * after:.1f}% (before: "
                       f"{100 * attribution['before']['mean_draft_share']:.1f}%)", after >= 0.2))
    return checks


def _accuracy_figure(rows: dict, majority: float, path: Path) -> None:
    names = list(LABELS)
    rates = [rows[n]["rate"] for n in names]
    errors = [[r - rows[n]["ci95"][0] for n, r in zip(names, rates)],
              [rows[n]["ci95"][1] - r for n, r in zip(names, rates)]]
    fig, axis = plt.subplots(figsize=(7, 3.4))
    axis.bar(range(len(names)), rates, yerr=errors, capsize=4, color="#4c72b0")
    axis.axhline(majority, color="grey", linestyle="--", label=f"majority class {majority:.3f}")
    axis.set_xticks(range(len(names)), [n.replace("_", " ") for n in names])
    axis.set_ylabel("dev accuracy (95% Wilson)")
    axis.set_ylim(0, 1)
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _attribution_figure(attribution: dict, path: Path, shown: int = 3) -> None:
    examples = attribution["examples"]
    fig, axes = plt.subplots(1 + min(shown, len(examples)), 1,
                             figsize=(9, 2.2 * (1 + min(shown, len(examples)))), squeeze=False)
    top = axes[0][0]
    for e in examples:
        top.plot([0, 1], [e["before"]["draft_share"], e["after"]["draft_share"]], "o-",
                 color="#4c72b0", alpha=0.6)
    top.set_xticks([0, 1], ["Phase B (before DPO)", "Phase C (after)"])
    top.set_ylabel("draft share")
    top.set_title("share of |attribution| on draft tokens, per question")
    for axis, e in zip((row[0] for row in axes[1:]), examples):
        start, end = e["draft_tokens"]
        for label, colour in (("before", "#999999"), ("after", "#c44e52")):
            values = [abs(v) for v in e[label]["attributions"]]
            axis.plot(values, color=colour, label=label, linewidth=1)
        axis.axvspan(start, end, color="#4c72b0", alpha=0.15, label="draft")
        axis.set_title(f"{e['qid']}: |a_t| per token, answer '{e['word']}'", fontsize=9)
        axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curves(root: Path, figures: Path, self_guided: bool) -> list[tuple[str, Path]]:
    runs = [("Phase A", root / "answer_sft"), ("Phase B", root / "reasoning_sft")]
    runs += [(f"Phase C, schedule phase {p.name.split('-')[-1]}", p)
             for p in sorted((root / "dpo").glob("phase-*"))]
    if not runs[2:]:
        runs.append(("Phase C", root / "dpo"))
    if self_guided:
        runs += [("self-guided epoch", p) for p in sorted((root / "self_guided").glob("phase-*"))]
    drawn = []
    for label, run in runs:
        metrics = run / "metrics.jsonl"
        if metrics.is_file():
            name = run.relative_to(root).as_posix().replace("/", "-")
            out = plot_training_curves(metrics, figures / f"curve-{name}.png",
                                       keys=("loss", "rewards/accuracy"))
            if out is not None:
                drawn.append((label, out))
    return drawn


def _self_guided_section(summary: dict) -> list[str]:
    lines = ["", "## The self-guided loop", "",
             "The Phase-C model redrafted the Phase-C questions (the question alone), the "
             "pairs were rebuilt by the same flip rule, and one more DPO epoch ran from the "
             f"Phase-C weights ({summary['steps']} steps).", "",
             "| redrafts on | accuracy | no answer | says yes |", "|---|---|---|---|"]
    lines += [f"| {name} questions | {_cell(part['accuracy'])} | {part['no_answer']} | "
              f"{part['says_yes']} |" for name, part in summary["drafts"].items()]
    lines += ["", "| row | dev accuracy [95% Wilson] | no answer | says yes | agrees with "
              "Phase B's draft |", "|---|---|---|---|---|"]
    for name, label in (("C_self_guided", "C + self-guided epoch, Phase B's draft"),
                        ("C_self_guided_no_draft", "C + self-guided epoch, no draft")):
        row = summary["rows"][name]
        lines.append(f"| {label} | {_cell(row)} | {row['no_answer']} | {row['says_yes']} | "
                     f"{row['agrees_with_draft']}/{row['n']} |")
    return lines


def write_strategyqa_report(root: Path, self_guided: bool = False) -> Path:
    """Write ``root/report.md`` and ``root/figures`` (with the self-guided loop's section
    when ``self_guided``); return the report's path."""
    evaluation = _read(root / "eval" / "summary.json")
    data = _read(root / "data" / "summary.json")
    drafts = _read(root / "drafts" / "summary.json")
    attribution = _read(root / "attribution" / "summary.json")
    rows, majority = evaluation["rows"], data["majority_baseline"]
    figures = root / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    _accuracy_figure(rows, majority["rate"], figures / "accuracy.png")
    lines = ["# StrategyQA: ask-and-draft alignment", "",
             f"{evaluation['questions']} evaluation questions, none of whose content occurs "
             f"in training. Questions per set: " + ", ".join(
                 f"{k} {v}" for k, v in data["counts"].items()) + ".", "",
             "| row | dev accuracy [95% Wilson] | no answer | says yes | words per reply |",
             "|---|---|---|---|---|",
             f"| majority class ('{majority['answer']}') | {_cell(majority)} | | | |"]
    for name, label in LABELS.items():
        row = rows[name]
        lines.append(f"| {label} | {_cell(row)} | {row['no_answer']} | {row['says_yes']} | "
                     f"{row['mean_words']:.1f} |")
    lines += ["", "![accuracy](figures/accuracy.png)", "", "## The recipe's targets", "",
              "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {t} | {m} | {'yes' if ok else 'no'} |" for t, m, ok in targets(rows, attribution)]
    lines += ["", "## The drafts (Phase B's greedy replies)", "",
              "| questions | accuracy | no answer | says yes |", "|---|---|---|---|"]
    lines += [f"| {name} | {_cell(part['accuracy'])} | {part['no_answer']} | "
              f"{part['says_yes']} |" for name, part in drafts.items()]
    lines += ["", "## Where the answers come from", "",
              "Accuracy split by whether the Phase-B draft was right, and agreement with it:", "",
              "| row | draft right | draft wrong | agrees with the draft |", "|---|---|---|---|"]
    for name in ("C", "C_no_draft", "C_shuffled"):
        part = evaluation["breakdown"][name]
        by = part["by_draft"]
        lines.append(f"| {name} | {_cell(by['draft right']) if 'draft right' in by else '–'} | "
                     f"{_cell(by['draft wrong']) if 'draft wrong' in by else '–'} | "
                     f"{_cell(part['agrees_with_draft'])} |")
    lines += ["", "By the question's first word (row C):", "", "| first word | accuracy |",
              "|---|---|"]
    lines += [f"| {w} | {_cell(v)} |" for w, v in evaluation["breakdown"]["C"]["by_first_word"]
              .items()]
    if self_guided:
        lines += _self_guided_section(_read(root / "self_guided" / "summary.json"))
    quality = evaluation.get("question_quality")
    if quality:
        lines += ["", "## Clarifying questions: Phase C against Phase B", ""]
        if quality.get("compared"):
            low, high = quality["decided_ci95"]
            lines.append(
                f"Judge {quality['judge']} on the {quality['compared']} of "
                f"{quality['questions']} questions where both state sub-questions, both orders: "
                f"C preferred {quality['c_wins']}, B {quality['b_wins']}, ties {quality['ties']}; "
                f"win rate of C {quality['win_rate']:.3f} (ties ½); among decided comparisons "
                f"[{low:.3f}, {high:.3f}]; the verdict flips with the order in "
                f"{100 * quality['position_flips']:.0f}% of comparisons.")
        else:
            lines.append(f"No question where both Phase B and Phase C state sub-questions "
                         f"(judge {quality['judge']}).")
    if attribution.get("examples"):
        _attribution_figure(attribution, figures / "attribution.png")
        lines += ["", "## Attribution on the draft", "",
                  f"Integrated gradients ({attribution['steps']} steps, zero baseline) of the "
                  "log-probability of Phase C's final answer word, over the input embeddings of "
                  "Phase C's prompt and reply; the same text under both models. Mean share of "
                  f"|attribution| on draft tokens: before DPO "
                  f"{attribution['before']['mean_draft_share']:.3f}, after "
                  f"{attribution['after']['mean_draft_share']:.3f} "
                  f"({len(attribution['examples'])} questions; mean |completeness gap| "
                  f"{attribution['before']['mean_abs_delta']:.3f} / "
                  f"{attribution['after']['mean_abs_delta']:.3f}).", "",
                  "![attribution](figures/attribution.png)"]
    curves = _curves(root, figures, self_guided)
    if curves:
        lines += ["", "## Training curves", ""]
        lines += [f"{label}:\n\n![{label}]({path.relative_to(root)})\n" for label, path in curves]
    path = root / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
