"""The OpenAI-compatible HTTP judge against a small stdlib server: log-probs, the text
fallback, retries with backoff, the cache, and one clear line when the server is gone."""

from __future__ import annotations

import json
import math
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from tests.conftest import write_jsonl

from prefalign.cli import main
from prefalign.judges import build_judge
from prefalign.judges.http_client import JudgeServerError
from prefalign.tasks import arithmetic


class ChatServer:
    """A chat-completions endpoint: answers "A" with log-probs derived from the question
    length (so the two orders differ), or rejects log-probs, or fails ``fail`` times."""

    def __init__(self, *, logprobs: bool = True, fail: int = 0):
        self.logprobs, self.fail, self.requests = logprobs, fail, []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append(body)
                if owner.fail > 0:
                    owner.fail -= 1
                    return self._send(503, {"error": "busy"})
                if "logprobs" in body and not owner.logprobs:
                    return self._send(400, {"error": "logprobs not supported"})
                self._send(200, owner.answer(body))

            def _send(self, code, payload):
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def logprobs_for(question: str) -> tuple[float, float]:
        return -0.1 - (len(question) % 7) / 10, -1.5

    def answer(self, body):
        question = body["messages"][0]["content"]
        la, lb = self.logprobs_for(question)
        choice = {"message": {"role": "assistant", "content": "B"}}
        if "logprobs" in body:
            top = [{"token": "A", "logprob": la}, {"token": " B", "logprob": lb},
                   {"token": "The", "logprob": -4.0}]
            choice["logprobs"] = {"content": [{"token": "A", "logprob": la,
                                               "top_logprobs": top}]}
        return {"choices": [choice], "usage": {"prompt_tokens": 50, "completion_tokens": 1}}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def chat_server(request):
    server = ChatServer(**getattr(request, "param", {}))
    yield server
    server.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_logprobs_give_the_preference_and_the_cache_saves_requests(chat_server, tmp_path):
    from prefalign.judges.rubric import read_rubric, render

    judge = build_judge(f"http:{chat_server.url}#judge", cache_dir=tmp_path, concurrency=2)
    prompts, a, b = ["What is 2 + 2?", "Say hi"], ["4", "hi"], ["five", "go away"]
    verdicts = judge.compare(prompts, a, b)
    rubric = read_rubric()
    for p, x, y, verdict in zip(prompts, a, b, verdicts):
        def p_a(question):
            la, lb = ChatServer.logprobs_for(question)
            return math.exp(la) / (math.exp(la) + math.exp(lb))

        assert verdict.first_order == pytest.approx(p_a(render(rubric, p, x, y)))
        assert verdict.swapped_order == pytest.approx(1 - p_a(render(rubric, p, y, x)))
    assert all(r["model"] == "judge" and r["max_tokens"] == 1 for r in chat_server.requests)
    assert judge.stats.requests == 4 and judge.stats.prompt_tokens == 200
    judge.compare(prompts, a, b)
    assert judge.stats.requests == 4 and len(chat_server.requests) == 4
    assert judge.stats.hits == 4


@pytest.mark.parametrize("chat_server", [{"logprobs": False}], indirect=True)
def test_a_server_without_logprobs_is_read_by_its_text_answer(chat_server):
    judge = build_judge(f"http:{chat_server.url}#m", cache=False)
    verdict = judge.compare(["q"], ["x"], ["y"])[0]
    assert verdict.first_order == 0.0 and verdict.swapped_order == 1.0 and verdict.tie
    assert verdict.raw == ["B", "B"]


@pytest.mark.parametrize("chat_server", [{"fail": 2}], indirect=True)
def test_server_errors_are_retried_with_backoff(chat_server):
    judge = build_judge(f"http:{chat_server.url}#m", cache=False, backoff=0.01, retries=3,
                        concurrency=1)
    judge.compare(["q"], ["x"], ["y"])
    assert judge.stats.retries == 2 and len(chat_server.requests) == 4


@pytest.mark.parametrize("chat_server", [{"fail": 99}], indirect=True)
def test_a_failing_server_ends_in_one_line_naming_the_url(chat_server):
    judge = build_judge(f"http:{chat_server.url}#m", cache=False, backoff=0.01, retries=2)
    with pytest.raises(JudgeServerError, match=f"{chat_server.url}/v1/chat/completions"):
        judge.compare(["q"], ["x"], ["y"])


def test_unreachable_server_through_the_cli(monkeypatch, capsys, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    data = write_jsonl(tmp_path / "p.jsonl", arithmetic.preference_records(3, seed=1))
    monkeypatch.setattr(sys, "argv", ["prefalign", "eval", "judge", "--judge", f"http:{url}#m",
                                      "--data", str(data), "--no-cache", "--retries", "2",
                                      "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert exit_info.value.code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"error: judge server {url}/v1/") and "2 attempt" in lines[0]
