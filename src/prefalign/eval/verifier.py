"""Pass rate of a policy on held-out prompts, checked by a task's verifier."""

from __future__ import annotations

from prefalign.errors import ConfigError
from prefalign.eval.generate import generate
from prefalign.intervals import wilson_interval
from prefalign.tasks import get_task, passes


def pass_rate(lm, tokenizer, records: list[dict], verifier: str, *, max_new_tokens: int = 8,
              batch_size: int = 16, use_chat_template: bool = True) -> dict:
    """Greedy-generate for each record's prompt and check it with the verifier of task
    ``verifier`` (strict: partial credit fails); the rate with a 95% interval, and the
    task's own metrics of the completions under ``metrics`` when it has some."""
    task = get_task(verifier)
    if task.verifier is None:
        raise ConfigError(f"task '{verifier}' has no verifier")
    check = task.verifier()
    completions = generate(lm, tokenizer, [r["prompt"] for r in records],
                           max_new_tokens=max_new_tokens, batch_size=batch_size,
                           use_chat_template=use_chat_template)
    passed = [passes(check, c, r) for c, r in zip(completions, records)]
    low, high = wilson_interval(sum(passed), len(passed))
    metrics = task.metrics(records, completions) if task.metrics is not None else {}
    examples = [{"prompt": str(r["prompt"]), "completion": c, "ok": ok}
                for r, c, ok in list(zip(records, completions, passed))[:5]]
    return {"pass_rate": sum(passed) / max(len(passed), 1), "ci_low": low, "ci_high": high,
            "n": len(passed), "metrics": metrics, "examples": examples}
