"""A comparison written out: ``compare.json`` (every row and answer), ``compare.md``
(the table and example answers) and ``compare.html`` (the same, with the figures
embedded), plus the figures as PNG files under ``figures/``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from prefalign.engine.rundir import atomic_write_json, atomic_write_text
from prefalign.eval.compare_figures import comparison_figures
from prefalign.eval.compare_html import comparison_html
from prefalign.eval.compare_table import KL_KEYS, reward_judge


def _interval(stats: dict, key: str = "mean", digits: int = 3) -> str:
    return (f"{stats[key]:.{digits}f} [{stats['ci_low']:.{digits}f}, "
            f"{stats['ci_high']:.{digits}f}]")


def _number(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table_cells(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the comparison table (text shared by Markdown and HTML)."""
    judges = list(rows[0]["rewards"])
    verifiers = list(rows[0]["pass"])
    wins = list(rows[0].get("win_rates", {}))
    header = ["policy"] + [f"reward {j} (mean ± std [95% CI])" for j in judges]
    header += [f"pass rate {j} [Wilson 95%]" for j in verifiers]
    for win in wins:
        header += [f"win rate vs baseline ({win}) [95% CI]",
                   f"length-controlled win rate ({win})"]
    header += ["KL k1/k3 per seq", "KL k1/k3 per token", "length (tokens)", "verbose openers",
               "reward per nat KL"]
    cells = []
    for row in rows:
        line = [row["policy"] + (f" (best of {row['best_of']})" if row["best_of"] > 1 else "")]
        for judge in judges:
            stats = row["rewards"][judge]
            line.append(f"{stats['mean']:.3f} ± {stats['std']:.3f} "
                        f"[{stats['ci_low']:.3f}, {stats['ci_high']:.3f}]")
        line += [f"{_interval(row['pass'][v], 'rate')} ({row['pass'][v]['passed']}/{row['n']})"
                 for v in verifiers]
        for win in wins:
            won = row["win_rates"][win]
            flips = "" if "position_flip_rate" not in won else (
                f"; ties {won['tie_rate']:.2f}, order flips {won['position_flip_rate']:.2f}")
            line += [_interval(won, "rate") + flips, f"{won['length_controlled']:.3f}"]
        if "kl_k1_seq" in row:
            line += [f"{row['kl_k1_seq']:.3f} / {row['kl_k3_seq']:.3f}",
                     f"{row['kl_k1_token']:.4f} / {row['kl_k3_token']:.4f}"]
        else:
            bound = row.get("kl_bound")
            line += [f"≤ {bound:.3f} to its base" if bound is not None else "–", "–"]
        line += [f"{row['length']:.1f}", f"{row['verbose_opener_rate']:.3f}",
                 _number(row["reward_per_kl"])]
        cells.append(line)
    return header, cells


def _escape_md(text: str, limit: int = 200) -> str:
    text = text if len(text) <= limit else text[:limit - 1] + "…"
    return text.replace("|", "\\|").replace("\n", "<br>") or "(empty)"


def comparison_markdown(comparison, examples: int = 5) -> str:
    """The table, the settings and a few prompts with every policy's answer."""
    header, cells = table_cells(comparison.rows)
    lines = [f"# Policy comparison on {len(comparison.prompts)} prompts", "",
             f"Baseline: {comparison.baseline}; KL reference: {comparison.reference}; "
             f"judges: {', '.join(comparison.judges)}.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(line) + " |" for line in cells]
    lines += ["", "## Examples", "", "| prompt | " + " | ".join(
        a.label for a in comparison.answers) + " |", "|" + "---|" * (1 + len(comparison.answers))]
    for i, prompt in enumerate(comparison.prompts[:examples]):
        lines.append(f"| {_escape_md(prompt)} | " + " | ".join(
            _escape_md(a.texts[i]) for a in comparison.answers) + " |")
    return "\n".join(lines) + "\n"


def comparison_json(comparison) -> dict:
    """Every row, the settings and each policy's answers and scores."""
    return {"baseline": comparison.baseline, "reference": comparison.reference,
            "judges": comparison.judges, "settings": asdict(comparison.settings),
            "kl_keys": list(KL_KEYS), "rows": comparison.rows,
            "answers": [{"policy": a.label, "texts": a.texts, "lengths": a.lengths,
                         "scores": a.scores,
                         "verdicts": {judge: None if verdicts is None else [
                             {"p_first": v.p_first, "tie": v.tie, "first_order": v.first_order,
                              "swapped_order": v.swapped_order} for v in verdicts]
                             for judge, verdicts in a.verdicts.items()}}
                        for a in comparison.answers],
            "prompts": comparison.prompts}


def write_comparison(comparison, out_dir: str | Path, judges: list) -> dict[str, Path]:
    """``compare.json``, ``compare.md``, ``compare.html`` and ``figures/*.png`` in ``out_dir``."""
    out = Path(out_dir)
    judge = reward_judge(judges)
    figures = comparison_figures(comparison, judge.name if judge else None, out / "figures")
    paths = {"json": out / "compare.json", "markdown": out / "compare.md",
             "html": out / "compare.html", **figures}
    atomic_write_json(paths["json"], comparison_json(comparison))
    atomic_write_text(paths["markdown"], comparison_markdown(comparison))
    header, cells = table_cells(comparison.rows)
    atomic_write_text(paths["html"], comparison_html(comparison, header, cells, figures))
    return paths
