"""Run a stage for a few steps in this process and report its peak memory (RSS).

``python -m prefalign.plan.probe '{"stage": "sft", "config": {...}}'`` runs the
real stage function (``run_sft`` or ``run_preference``) and prints one JSON
line: the resident set size before the model was loaded (``baseline``) and the
peak resident set size over steps 2 … k (``peak``). The peak is reset after
step 1 (Linux ``/proc/self/clear_refs``), so loading, the reference pass and
the first step's lazy optimizer-state allocation do not count, and it is read
at the end of step k, before the final evaluation and save.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")


def _status_bytes(key: str) -> int | None:
    if not _STATUS.exists():
        return None
    for line in _STATUS.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return None


def current_rss() -> int:
    return _status_bytes("VmRSS") or 0


def peak_rss() -> int:
    """Peak RSS since start or the last reset (``ru_maxrss`` where /proc is missing)."""
    return _status_bytes("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Restart peak tracking from the current RSS (Linux ≥ 4.0); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def main(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    if spec["stage"] == "sft":
        from prefalign.config import SFTConfig
        from prefalign.stages.sft import run_sft as run

        cfg = SFTConfig.model_validate(spec["config"])
    else:
        from prefalign.config import PreferenceConfig
        from prefalign.stages.preference import run_preference as run

        cfg = PreferenceConfig.model_validate(spec["config"])
    baseline = current_rss()
    record = {"baseline": baseline, "peak": None, "reset": False}

    def on_step_end(step: int, metrics: dict) -> None:
        if step == 1:
            record["reset"] = reset_peak_rss()
        else:
            record["peak"] = peak_rss()

    run(cfg, on_step_end=on_step_end)
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
