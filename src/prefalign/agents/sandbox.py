"""Run untrusted Python code in a sandbox: a separate process with limits.

Each run gets a fresh temporary working folder holding the code (``main.py``) and
any given files, and a child process started with

- ``python -I -S -B``: isolated mode, no ``site`` (no installed packages: the
  standard library only), no bytecode written;
- a new session (its own process group, killed as a whole at the end, so nothing it
  started outlives it), an environment of its own (``HOME`` = the folder);
- resource limits (``setrlimit``): CPU seconds, address space (memory), file size,
  no core files, and the number of processes (the kernel ignores this one for root,
  where the guard's refusal of new processes is what holds);
- a new network namespace (``unshare(CLONE_NEWNET)``) where the kernel allows it —
  no interface but a down loopback — and in any case the guard of
  :mod:`prefalign.agents.sandbox_guard`, which refuses sockets, new processes,
  ``ctypes`` and every file access outside the folder (reading the standard
  library aside);
- a wall-clock limit, and caps on the output kept: more than ``output_bytes`` on
  stdout or stderr stops the run.

The result says how the run ended: ``ok``, ``error`` (an exception or a non-zero
exit), ``timeout`` (wall clock), ``cpu_limit``, ``memory_limit``, ``output_limit``
or ``violation`` (the guard refused something), with the output kept, so a harness
records it and goes on.
"""

from __future__ import annotations

import ctypes
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from prefalign.agents.sandbox_guard import GUARD

CLONE_NEWNET = 0x40000000
MAIN = "main.py"


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one run: wall and CPU seconds, memory, output kept, file size."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 5
    memory_bytes: int = 512 * 2**20
    output_bytes: int = 64 * 2**10
    file_bytes: int = 16 * 2**20
    processes: int = 16


@dataclass
class SandboxResult:
    """How a run ended (module docstring), its output, exit code and duration."""

    status: str
    stdout: str
    stderr: str
    exit_code: int | None
    seconds: float
    network_isolated: bool
    files: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _isolate_network() -> bool:
    """Enter a new network namespace; False where the kernel refuses (no privilege)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.unshare(CLONE_NEWNET) == 0
    except (OSError, AttributeError):
        return False


def _limit(limits: SandboxLimits, network: list) -> None:
    """In the child, before exec: limits, and the network namespace."""
    soft_cpu = max(1, int(limits.cpu_seconds))
    resource.setrlimit(resource.RLIMIT_CPU, (soft_cpu, soft_cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
    if not _isolate_network():
        os.write(network[1], b"0")


class _CappedReader(threading.Thread):
    """Reads a pipe to the end, keeping at most ``cap`` bytes; ``over`` once exceeded."""

    def __init__(self, pipe, cap: int, on_over):
        super().__init__(daemon=True)
        self.pipe, self.cap, self.on_over = pipe, cap, on_over
        self.data, self.over = bytearray(), False

    def run(self) -> None:
        while chunk := self.pipe.read1(65536):
            room = self.cap - len(self.data)
            self.data += chunk[:max(room, 0)]
            if len(chunk) > room and not self.over:
                self.over = True
                self.on_over()

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _status(code: int | None, stderr: str, timed_out: bool, over: bool,
            limits: SandboxLimits, cpu: float) -> str:
    if over:
        return "output_limit"
    if timed_out:
        return "timeout"
    if code in (-signal.SIGXCPU, -signal.SIGKILL) and cpu >= limits.cpu_seconds - 0.5:
        return "cpu_limit"
    if "PermissionError: sandbox:" in stderr:
        return "violation"
    if "MemoryError" in stderr:
        return "memory_limit"
    return "ok" if code == 0 else "error"


def run_code(code: str, files: dict[str, str] | None = None,
             limits: SandboxLimits | None = None, keep: tuple[str, ...] = ()) -> SandboxResult:
    """Run ``code`` as ``main.py`` in a fresh folder holding ``files`` (relative path →
    text), under ``limits``; ``keep``: files of the folder to return after the run."""
    limits = limits or SandboxLimits()
    folder = Path(tempfile.mkdtemp(prefix="prefalign-sandbox-"))
    try:
        for name, text in {**(files or {}), MAIN: code}.items():
            path = (folder / name).resolve()
            if folder.resolve() not in path.parents:
                raise ValueError(f"sandbox file {name!r} is outside the working folder")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return _run(folder, limits, keep)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(folder: Path, limits: SandboxLimits, keep: tuple[str, ...]) -> SandboxResult:
    network = os.pipe()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(folder), "LANG": "C.UTF-8",
           "PYTHONHASHSEED": "0", "PYTHONIOENCODING": "utf-8"}
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen(
        [sys.executable, "-I", "-S", "-B", "-c", GUARD, MAIN], cwd=folder, env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True, preexec_fn=lambda: _limit(limits, network))
    os.close(network[1])
    readers = [_CappedReader(pipe, limits.output_bytes, lambda: _kill_group(process))
               for pipe in (process.stdout, process.stderr)]
    for reader in readers:
        reader.start()
    timed_out = False
    try:
        process.wait(timeout=limits.wall_seconds)
    except subprocess.TimeoutExpired:
        timed_out = True
    _kill_group(process)
    process.wait()
    for reader in readers:
        reader.join(timeout=5)
    isolated = os.read(network[0], 1) != b"0"
    os.close(network[0])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    stdout, stderr = readers[0].text(), readers[1].text()
    kept = {name: (folder / name).read_text(errors="replace") for name in keep
            if (folder / name).is_file()}
    return SandboxResult(_status(process.returncode, stderr, timed_out,
                                 any(r.over for r in readers), limits, cpu),
                         stdout, stderr, process.returncode,
                         time.perf_counter() - started, isolated, kept)
