"""The HTTP judge against a real llama.cpp server (``llama-cpp-python[server]``) serving
the embedded model's GGUF file, started and stopped here on 127.0.0.1.

Skipped, with the reason, when the ``judge`` extra is not installed or the GGUF file is
neither cached nor downloadable; CI installs the extra (``EXTRAS=dev,judge``).
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from prefalign.errors import PrefalignError
from prefalign.judges import build_judge
from prefalign.judges.http_client import JudgeServerError

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                reason="llama-cpp-python[server] is not installed "
                                       "(pip install 'prefalign[judge]')")


def _gguf():
    from prefalign.judges.gguf import ensure_embedded_gguf

    try:
        return ensure_embedded_gguf()
    except PrefalignError as err:
        pytest.skip(f"the embedded model's GGUF file is not cached and cannot be fetched: {err}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def llama_server(request, tmp_path):
    port, log = _free_port(), (tmp_path / "llama-server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(_gguf()), "--host",
         "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2",
         "--logits_all", "true", "--model_alias", "smollm2"],
        stdout=log, stderr=subprocess.STDOUT)  # a file: its verbose log would fill a pipe
    request.addfinalizer(lambda: (process.kill(), process.wait(timeout=30), log.close()))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (tmp_path / "llama-server.log").read_text()[-2000:]
            pytest.fail(f"llama.cpp server exited: {tail}")
        try:
            urllib.request.urlopen(f"{url}/v1/models", timeout=2).read()
            return url, process
        except OSError:
            time.sleep(0.5)
    pytest.fail("llama.cpp server did not start within 180 s")


def test_pairwise_judgment_through_llama_cpp_both_orders_and_cache(llama_server, tmp_path):
    url, _ = llama_server
    judge = build_judge(f"http:{url}#smollm2", cache_dir=tmp_path, concurrency=1, timeout=300)
    prompts = ["What is the capital of France?", "What is 2 + 2?"]
    good, bad = ["The capital of France is Paris.", "2 + 2 = 4."], ["I like turtles.", "5"]
    verdicts = judge.compare(prompts, good, bad)
    assert len(verdicts) == 2 and judge.stats.misses == 4
    assert judge.stats.requests - judge.stats.retries == 4  # one answered request per order
    for verdict in verdicts:
        assert 0.0 <= verdict.first_order <= 1.0 and 0.0 <= verdict.swapped_order <= 1.0
        assert len(verdict.raw) == 2
        assert verdict.p_first == pytest.approx((verdict.first_order + verdict.swapped_order) / 2)
    assert judge.stats.prompt_tokens > 0
    again = build_judge(f"http:{url}#smollm2", cache_dir=tmp_path)
    assert [v.p_first for v in again.compare(prompts, good, bad)] == \
        [v.p_first for v in verdicts]
    assert again.stats.requests == 0 and again.stats.hits == 4


def test_server_killed_mid_run_is_retried_then_one_clear_line(llama_server):
    url, process = llama_server
    judge = build_judge(f"http:{url}#smollm2", cache=False, retries=3, backoff=0.05)
    judge.compare(["Say hello."], ["Hello!"], ["No."])
    process.kill()
    process.wait(timeout=30)
    with pytest.raises(JudgeServerError) as info:
        judge.compare(["Say goodbye."], ["Goodbye!"], ["No."])
    message = str(info.value)
    assert f"{url}/v1/chat/completions" in message and "3 attempt" in message
    assert "\n" not in message and judge.stats.retries >= 2
