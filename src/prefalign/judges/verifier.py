"""``verifier:TASK``: a task's programmatic verifier as a pointwise judge.

The score of a response is the verifier's score for it (1 passes; partial credit
in (0, 1)). A verifier is a pure function of (response, record), cheap and
exact, so its judgments are computed directly rather than cached; ``stats``
counts them. Each record's ``metadata`` fields (where a preference pair keeps
its answer) are read next to its own fields; a record without a field the
verifier reads is a ``DataError`` naming the record and the field.
"""

from __future__ import annotations

from prefalign.errors import ConfigError, DataError
from prefalign.judges.cache import JudgeStats
from prefalign.tasks import Verifier, get_task


class VerifierJudge:
    """Pointwise judge ``score_i = verifier.score(response_i, record_i)``."""

    def __init__(self, verifier: Verifier, task: str):
        self.verifier, self.name = verifier, f"verifier:{task}"
        self.required_fields = tuple(verifier.required_fields)
        self.stats = JudgeStats()

    def score(self, prompts: list[str], responses: list[str],
              records: list[dict] | None = None) -> list[float]:
        if records is None or len(records) != len(prompts):
            raise DataError(f"judge {self.name} needs one record per prompt with the "
                            f"field(s) {', '.join(self.required_fields)}", field=
                            self.required_fields[0] if self.required_fields else None)
        views = [check_fields({**(r.get("metadata") or {}), **r}, self.required_fields,
                              self.name, i) for i, r in enumerate(records)]
        self.stats.requests += len(responses)
        return [float(self.verifier.score(resp, view)) for resp, view in zip(responses, views)]


def check_fields(record: dict, fields: tuple[str, ...], judge: str, index: int) -> dict:
    """``record`` if it has every field in ``fields``, else a ``DataError`` naming one."""
    for name in fields:
        if name not in record:
            raise DataError(f"judge {judge} reads field '{name}', which this record lacks "
                            f"(record {index + 1}; prompts for a verifier judge must carry "
                            f"its fields, e.g. a task's prompt or preference records)",
                            field=name)
    return record


def build_verifier_judge(task: str, **options) -> VerifierJudge:
    """``verifier:TASK`` (``options`` such as ``cache_dir`` do not apply and are ignored)."""
    spec = get_task(task)
    if spec.verifier is None:
        raise ConfigError(f"task '{task}' has no verifier, so 'verifier:{task}' cannot judge")
    return VerifierJudge(spec.verifier(), task)
