"""Run a sweep's jobs, each as its own ``python -m prefalign <stage> ...`` process.

A job's run directory is the stage's own (``name=<id> output_dir=<its parent>``);
the runner adds ``cell.log`` (the process's stdout and stderr, one block per
attempt) and, when the process ends, ``cell.json``: the exact command, the
overrides, seconds, exit code and the log's last line. A job is

* ``done`` when ``cell.json`` records exit code 0 and ``final/`` and ``eval.json``
  exist: it is skipped;
* ``resume`` when it has checkpoints (its own or a phase's) but is not done (killed,
  interrupted, failed after a checkpoint): it runs again with ``--resume``;
* ``new`` otherwise: it runs from the start.

A done job whose recorded arguments differ from those the sweep file gives now
stops the sweep before anything runs: its results would not be the file's.

Shared runs go first, in order of declaration; a cell that needs a shared run
which did not finish fails without running. Cells run ``max_parallel`` at a time
(a pool of threads, each waiting on its process). A failed job is reported and
the others go on. Each process has its own session, so Ctrl-C reaches the sweep
alone; it forwards one SIGINT to every running stage (which saves a checkpoint
and exits 130, recorded in ``cell.json``), starts nothing more, and re-raises.
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from prefalign.engine.checkpoint import list_checkpoints
from prefalign.engine.rundir import atomic_write_json
from prefalign.errors import ConfigError, PrefalignError
from prefalign.log import say
from prefalign.sweep.spec import Job, Sweep

RECORD_FILE = "cell.json"
LOG_FILE = "cell.log"
RESUME_FLAG = "--resume"


@dataclass
class JobOutcome:
    """What happened to a job in this invocation: ``skipped`` (done before),
    ``done`` or ``failed`` (``message``: the log's last line, or why it did not run)."""

    job: Job
    status: str
    exit_code: int | None = None
    seconds: float = 0.0
    message: str = ""


def job_args(sweep: Sweep, job: Job) -> list[str]:
    """The stage command's arguments (after ``prefalign``), without ``--resume``."""
    config = ["--config", job.config] if job.config else []
    run_dir = sweep.job_dir(job)
    return [job.stage, *config, *(f"{k}={v}" for k, v in job.overrides),
            f"name={job.id}", f"output_dir={run_dir.parent}"]


def with_resume(args: list[str]) -> list[str]:
    """``args`` with ``--resume`` after the stage name."""
    return [args[0], RESUME_FLAG, *args[1:]]


def read_record(run_dir: Path) -> dict | None:
    """The job's ``cell.json``, or None when it has none."""
    path = run_dir / RECORD_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise PrefalignError(f"unreadable {path}: {error}; delete it to run the cell "
                             f"again") from None


def _has_checkpoints(run_dir: Path) -> bool:
    return bool(list_checkpoints(run_dir / "checkpoints")) or any(
        list_checkpoints(phase / "checkpoints") or (phase / "done.json").exists()
        for phase in run_dir.glob("phase-*"))


def job_state(sweep: Sweep, job: Job) -> str:
    """``done``, ``resume`` or ``new`` (module docstring)."""
    run_dir = sweep.job_dir(job)
    record = read_record(run_dir)
    if (record is not None and record.get("exit_code") == 0 and (run_dir / "final").is_dir()
            and (run_dir / "eval.json").is_file()):
        return "done"
    return "resume" if _has_checkpoints(run_dir) else "new"


def changed(sweep: Sweep, job: Job) -> bool:
    """Whether ``job`` is done with other arguments than the sweep file gives now."""
    return (job_state(sweep, job) == "done"
            and read_record(sweep.job_dir(job)).get("args") != job_args(sweep, job))


def check_unchanged(sweep: Sweep, jobs: list[Job]) -> None:
    """A ``ConfigError`` when a done job ran with other arguments than the file gives."""
    changed_jobs = [job for job in jobs if changed(sweep, job)]
    if changed_jobs:
        first = sweep.job_dir(changed_jobs[0])
        raise ConfigError(f"{sweep.path}: {len(changed_jobs)} finished run(s) used other "
                          f"settings than the file gives now (first: {first}, see its "
                          f"{RECORD_FILE}); delete them to run them again, or give the sweep "
                          f"a new name")


class _Processes:
    """The running stage processes, so that an interrupt reaches each once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: set[subprocess.Popen] = set()
        self.stopping = False

    def start(self, command: list[str], log) -> subprocess.Popen | None:
        with self.lock:
            if self.stopping:
                return None
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
            self.running.add(process)
            return process

    def finished(self, process: subprocess.Popen) -> None:
        with self.lock:
            self.running.discard(process)

    def interrupt(self) -> None:
        with self.lock:
            self.stopping = True
            for process in self.running:
                process.send_signal(signal.SIGINT)


def _last_line(log_path: Path, offset: int) -> str:
    with open(log_path, "rb") as handle:
        handle.seek(offset)
        text = handle.read().decode("utf-8", errors="replace")
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def run_job(sweep: Sweep, job: Job, processes: _Processes) -> JobOutcome:
    """Run ``job`` unless done; write its ``cell.json`` when its process ends."""
    state = job_state(sweep, job)
    if state == "done":
        return JobOutcome(job, "skipped", 0)
    run_dir = sweep.job_dir(job)
    run_dir.mkdir(parents=True, exist_ok=True)
    args = job_args(sweep, job)
    command = [sys.executable, "-m", "prefalign",
               *(with_resume(args) if state == "resume" else args)]
    log_path = run_dir / LOG_FILE
    with open(log_path, "ab") as log:
        offset = log.tell()
        log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n".encode())
        log.flush()
        start = time.monotonic()
        process = processes.start(command, log)
        if process is None:
            return JobOutcome(job, "failed", message="not started: the sweep was interrupted")
        say("sweep", f"{job.id}: {'resuming' if state == 'resume' else 'started'}")
        code = process.wait()
        processes.finished(process)
    seconds = time.monotonic() - start
    last = _last_line(log_path, offset)
    atomic_write_json(run_dir / RECORD_FILE, {
        "id": job.id, "stage": job.stage, "config": job.config, "values": job.values,
        "seed": job.seed, "overrides": dict(job.overrides), "args": args, "command": command,
        "resumed": state == "resume", "exit_code": code, "seconds": round(seconds, 3),
        "last_line": last, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    if job_state(sweep, job) != "done":
        reason = last if code else f"exit 0 but no final/ or no eval.json in {run_dir}"
        say("sweep", f"{job.id}: failed (exit {code}): {reason}")
        return JobOutcome(job, "failed", code, seconds, reason)
    say("sweep", f"{job.id}: done in {seconds:.0f}s")
    return JobOutcome(job, "done", code, seconds)


def _blocked(job: Job, outcomes: dict[str, JobOutcome]) -> JobOutcome | None:
    """A failed outcome when a shared run that ``job`` needs did not finish."""
    for name in job.needs:
        if outcomes[name].status == "failed":
            return JobOutcome(job, "failed", message=f"needs shared run '{name}', which did "
                              f"not finish")
    return None


def _shared_outcome(sweep: Sweep, job: Job) -> JobOutcome:
    """A shared run as ``--cell`` finds it: done, or a failure saying what to run first."""
    if job_state(sweep, job) == "done":
        return JobOutcome(job, "skipped", 0)
    return JobOutcome(job, "failed", message="not finished: run the sweep with "
                      "--shared-only first")


def run_sweep(sweep: Sweep, max_parallel: int = 1, cells: list[int] | None = None,
              shared_only: bool = False) -> list[JobOutcome]:
    """Run every shared run, then every cell (``cells``: only these indexes, whose
    shared runs must be done; ``shared_only``: only the shared runs), skipping done
    jobs. The outcomes, shared runs first."""
    if max_parallel < 1:
        raise ConfigError(f"--max-parallel must be at least 1, got {max_parallel}")
    chosen = [] if shared_only else [sweep.cells[i] for i in
                                     (range(len(sweep.cells)) if cells is None else cells)]
    check_unchanged(sweep, sweep.shared + chosen)
    processes = _Processes()
    outcomes: dict[str, JobOutcome] = {}
    pool = ThreadPoolExecutor(max_workers=max_parallel)
    try:
        needed = {name for job in chosen for name in job.needs}
        for job in sweep.shared:
            if cells is None:
                outcomes[job.id] = _blocked(job, outcomes) or pool.submit(
                    run_job, sweep, job, processes).result()
            elif job.id in needed:
                outcomes[job.id] = _shared_outcome(sweep, job)
        futures = [pool.submit(lambda j=job: _blocked(j, outcomes)
                               or run_job(sweep, j, processes)) for job in chosen]
        cell_outcomes = [future.result() for future in futures]
    except KeyboardInterrupt:
        processes.interrupt()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return list(outcomes.values()) + cell_outcomes


def plan_lines(sweep: Sweep) -> list[str]:
    """One line per job: its index (cells), id, state (``done``, ``changed``: done with
    other settings, ``resume``, ``new``) and the command it would run."""
    lines = []
    for job in sweep.shared + sweep.cells:
        state = "changed" if changed(sweep, job) else job_state(sweep, job)
        args = with_resume(job_args(sweep, job)) if state == "resume" else job_args(sweep, job)
        where = f"shared {job.id}" if job.is_shared else f"cell {job.index} {job.id}"
        lines.append(f"{where} [{state}]: {shlex.join(['prefalign', *args])}")
    return lines
