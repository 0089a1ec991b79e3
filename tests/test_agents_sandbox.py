"""The code sandbox: every attack is stopped and reported, and the next run still works."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from prefalign.agents.sandbox import SandboxLimits, _isolate_network, run_code

FAST = SandboxLimits(wall_seconds=5, cpu_seconds=2, memory_bytes=256 * 2**20,
                     output_bytes=4096)


def _last_error(result) -> str:
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def test_plain_code_runs_and_reads_its_own_files():
    result = run_code("import json\nprint(json.dumps({'n': len(open('data.txt').read())}))",
                      files={"data.txt": "hello"}, limits=FAST)
    assert result.status == "ok" and result.exit_code == 0
    assert result.stdout == '{"n": 5}\n'


def test_files_written_inside_the_folder_come_back_and_the_folder_is_gone():
    result = run_code("import os\nopen('out.txt', 'w').write(os.getcwd())", keep=("out.txt",),
                      limits=FAST)
    assert result.ok
    folder = result.files["out.txt"]
    assert "prefalign-sandbox-" in folder and not os.path.exists(folder)


def test_a_traceback_is_an_error_with_the_traceback_kept():
    result = run_code("def f(x):\n    return 1 / x\nf(0)\n", limits=FAST)
    assert result.status == "error" and result.exit_code == 1
    assert "ZeroDivisionError" in _last_error(result) and 'main.py", line 2' in result.stderr


ATTACKS = {
    "read /etc/passwd": "print(open('/etc/passwd').read())",
    "read through a relative path": "print(open('../../../../etc/hostname').read())",
    "os.open outside": "import os\nos.open('/etc/passwd', os.O_RDONLY)",
    "list the root": "import os\nprint(os.listdir('/'))",
    "write outside": "open('/tmp/prefalign-sandbox-escape.txt', 'w').write('x')",
    "delete outside": "import os\nos.remove('/tmp/prefalign-sandbox-nothing')",
    "symlink out": "import os\nos.symlink('/etc/passwd', 'p')\nprint(open('p').read())",
    "open a socket": "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)",
    "fork bomb": "import os\nwhile True:\n    os.fork()",
    "run a shell": "import os\nos.system('echo escaped > /tmp/prefalign-sandbox-escape.txt')",
    "spawn a process": "import subprocess\nsubprocess.run(['/bin/echo', 'escaped'])",
    "fork below the audit": "import _posixsubprocess",
    "ctypes": "import ctypes\nctypes.CDLL(None).fork()",
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_attacks_are_refused_and_reported(attack):
    result = run_code(ATTACKS[attack], limits=FAST)
    assert result.status == "violation", (result.status, result.stderr)
    assert _last_error(result).startswith("PermissionError: sandbox:")
    assert not os.path.exists("/tmp/prefalign-sandbox-escape.txt")


def test_unbounded_allocation_stops_at_the_memory_limit():
    result = run_code("chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))",
                      limits=FAST)
    assert result.status == "memory_limit" and "MemoryError" in result.stderr


def test_a_busy_loop_stops_at_the_cpu_limit():
    started = time.perf_counter()
    result = run_code("while True:\n    pass", limits=FAST)
    assert result.status == "cpu_limit"
    assert time.perf_counter() - started < FAST.wall_seconds


def test_sleeping_forever_stops_at_the_wall_clock():
    limits = SandboxLimits(wall_seconds=1.5, cpu_seconds=2)
    result = run_code("import time\ntime.sleep(1000)", limits=limits)
    assert result.status == "timeout" and 1.4 < result.seconds < 5


def test_endless_output_is_capped_and_stopped():
    result = run_code("while True:\n    print('x' * 100)", limits=FAST)
    assert result.status == "output_limit"
    assert len(result.stdout.encode()) <= FAST.output_bytes and result.seconds < 5


def test_the_harness_keeps_going_after_every_attack():
    statuses = [run_code(code, limits=FAST).status for code in
                ("import os\nwhile True:\n    os.fork()", "while True:\n    pass",
                 "print(open('/etc/passwd').read())")]
    assert statuses == ["violation", "cpu_limit", "violation"]
    assert run_code("print(6 * 7)", limits=FAST).stdout == "42\n"


def _loopback_server() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    threading.Thread(target=lambda: server.accept(), daemon=True).start()
    return server, server.getsockname()[1]


def test_the_network_namespace_cuts_even_loopback():
    """Below the guard: a process in the sandbox's network namespace cannot reach a
    server on this machine's loopback (skipped where the kernel refuses namespaces)."""
    probe = subprocess.run([sys.executable, "-c", "import ctypes; import sys; "
                            "sys.exit(ctypes.CDLL(None).unshare(0x40000000) != 0)"])
    if probe.returncode != 0:
        pytest.skip("no permission to create a network namespace here")
    server, port = _loopback_server()
    try:
        code = (f"import socket\ns = socket.socket()\ns.settimeout(2)\n"
                f"print(s.connect_ex(('127.0.0.1', {port})))")
        here = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert here.stdout.strip() == "0"  # reachable without the namespace
        isolated = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  preexec_fn=_isolate_network)
        assert isolated.stdout.strip() not in ("", "0"), isolated.stderr
    finally:
        server.close()
    assert run_code("print(1)", limits=FAST).network_isolated
