"""Agents: tools, scorers, the ReAct protocol, the harness (resume), the task sets
(an oracle scores 100% on both scores, a random agent near 0), an endpoint model."""

from __future__ import annotations

import json
import threading
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tests.test_sweep import run_cli

from prefalign.agents.agents import AgentSettings, react_loop
from prefalign.agents.backends import Reply
from prefalign.agents.chains import chain_task_set
from prefalign.agents.harness import AgentSpec, run_agent
from prefalign.agents.protocol import parse_turn
from prefalign.agents.scoring import call_matches, exact, numeric, refusal, sequence_score, token_f1
from prefalign.agents.tasks import SHIPPED, load_task_set
from prefalign.agents.tools import Document, ToolContext, call_tool
from prefalign.agents.trajectory import Trajectory
from prefalign.errors import DataError

DOCS = {d.id: d for d in (
    Document("d1", "Veldt Observatory", "The Veldt Observatory was founded in 1874 by Ada "
             "Marrow on Corran Hill."),
    Document("d2", "Ada Marrow", "Ada Marrow was born in 1840 in Quenport."),
)}


# -- tools --------------------------------------------------------------------------

def test_search_lists_matching_documents_and_nothing_for_unknown_entities():
    context = ToolContext(DOCS)
    found = call_tool("search", "When was the Veldt Observatory founded?", context)
    assert found.splitlines()[0].startswith("[d1] Veldt Observatory: The Veldt")
    assert call_tool("search", "Ada Marrow", context).splitlines()[0].startswith("[d2]")
    assert call_tool("search", "Zorblax Institute director", context) == "No results."
    assert call_tool("read_document", "[d2]", context).startswith("Ada Marrow\nAda Marrow was")
    assert call_tool("read_document", "d9", context).startswith("error: no document")


@pytest.mark.parametrize("expression", ["(3 + 4) * 2 / 3", "2 ** 10 - 1", "7 // 2 + 7 % 2",
                                        "-1.5 * 4", "1/3 + 1/6"])
def test_calculator_is_exact_arithmetic(expression):
    tree = expression.replace(" ", "")
    expected = eval(compile(tree, "<test>", "eval"),  # noqa: S307 - the test's own literal
                    {"__builtins__": {}}, {})
    value = Fraction(expected).limit_denominator(10**6)
    got = call_tool("calculator", expression, ToolContext())
    if value.denominator == 1:
        assert got == str(value.numerator)
    else:
        assert float(got) == pytest.approx(float(value), rel=1e-9)


@pytest.mark.parametrize("expression", ["__import__('os')", "x + 1", "2 ** 1000", "1 / 0",
                                        "'a' * 3"])
def test_calculator_refuses_anything_but_arithmetic(expression):
    assert call_tool("calculator", expression, ToolContext()).startswith("error:")


def test_unknown_tools_and_files_are_error_lines():
    context = ToolContext(files={"notes.txt": "hello"})
    assert call_tool("read_file", "notes.txt", context) == "hello"
    assert call_tool("read_file", "note.txt", context) == \
        "error: no file 'note.txt' (files: notes.txt)"
    assert call_tool("browse", "x", context).startswith("error: unknown tool 'browse'")
    assert call_tool("run_python", "print(2 + 3)", context).endswith("stdout:\n5")


# -- scorers --------------------------------------------------------------------------

def test_answer_scorers():
    assert exact("The Veldt Observatory.", "veldt observatory") == 1.0
    assert exact("1875", "1874") == 0.0
    assert numeric("about 1,234.5 km", 1234.5) == 1.0 and numeric("none", 3) == 0.0
    # token F1 written out: answer {ada, marrow, born}, reference {ada, marrow}
    assert token_f1("Ada Marrow born", "Ada Marrow") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert refusal("I could not find any information about it.") == 1.0
    assert refusal("It was founded in 1874.") == 0.0


def test_sequence_score_is_the_ordered_share_of_expected_calls():
    expected = [("search", "Veldt Observatory founded"), ("read_document", "d1"),
                ("calculator", "1874 - 1840")]
    assert sequence_score(expected, [("search", "Veldt Observatory"),
                                      ("calculator", "2 + 2"), ("read_document", "d1"),
                                      ("calculator", "34")]) == 1.0
    # the right calls in the wrong order: the longest common subsequence is 2 of 3
    assert sequence_score(expected, [("read_document", "d1"), ("search", "Veldt Observatory"),
                                     ("calculator", "1874-1840")]) == pytest.approx(2 / 3)
    assert sequence_score(expected, [("search", "Ada Marrow"), ("read_document", "d2")]) == 0
    assert sequence_score([], []) == 1.0 and sequence_score([], [("search", "x")]) == 0.0
    assert call_matches(("calculator", "(1874-1840)"), ("calculator", "34"))
    assert not call_matches(("search", "Ada Marrow"), ("search", "Veldt Observatory founded"))
    fixed = "def mean(xs):\n    return sum(xs) / len(xs)\nassert mean([1, 3]) == 2"
    assert call_matches(("run_python", "def mean(xs):\n    return sum(xs) // len(xs)\n"
                                       "print(mean([1, 3]))"), ("run_python", fixed))
    assert not call_matches(("run_python", "debug the"), ("run_python", fixed))


# -- protocol and loop ----------------------------------------------------------------

def test_turns_parse_into_actions_and_answers():
    code = "def f(x):\n    return [x[0]]\nprint(f([1]))"
    turn = parse_turn(f"Thought: run it\nAction: run_python[{code}]\n")
    assert (turn.kind, turn.tool, turn.text) == ("action", "run_python", code)
    assert parse_turn("Thought: done\nFinal Answer: 1874").text == "1874"
    assert parse_turn("Final Answer: ```python\nx = 1\n```").text == "x = 1"
    assert parse_turn("I think it is 1874").kind == "invalid"


class ScriptedModel:
    """Replies from a list, recording the messages it was shown."""

    name = "scripted-model"

    def __init__(self, replies: list[str]):
        self.replies, self.seen = list(replies), []

    def reply(self, messages, stop, max_new_tokens) -> Reply:
        self.seen.append(messages)
        return Reply(self.replies.pop(0), 10, 5, 0.01)


@pytest.mark.parametrize("memory", ["flat", "scratchpad"])
def test_react_runs_tools_and_memory_decides_what_the_model_sees(memory):
    task = chain_task_set(per_hop=1, hops=(2,)).tasks[0]
    tasks = chain_task_set(per_hop=1, hops=(2,))
    first, second = (name for _, name in task.oracle)
    model = ScriptedModel([f"Scratchpad: nothing yet\nThought: look\nAction: search[{first}]",
                           f"Scratchpad: {first} -> ?\nThought: next\nAction: search[{second}]",
                           f"Thought: done\nFinal Answer: {task.answer}"])
    trajectory = Trajectory(task.id, "chains", task.category, task.level, "react", memory, "m")
    answer = react_loop(task, model, ToolContext(tasks.documents), trajectory,
                        AgentSettings(memory=memory))
    assert answer == task.answer
    assert trajectory.tool_calls == list(task.oracle)
    last = model.seen[-1]
    observations = [m for m in last if m["content"].startswith("Observation:")]
    if memory == "flat":
        assert len(last) == 2 + 4 and len(observations) == 2
    else:  # the task, the latest scratchpad, the last turn and its observation
        assert len(last) == 2 + 3 and len(observations) == 1
        assert last[2]["content"] == f"Scratchpad: {first} -> ?"


# -- task sets ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", SHIPPED)
def test_the_oracle_scores_everything_and_a_random_agent_next_to_nothing(name, tmp_path):
    task_set = load_task_set(name)
    assert len(task_set.tasks) >= {"benchmark": 36, "gaia": 30, "chains": 35, "code": 12}[name]
    oracle = run_agent(AgentSpec("oracle", AgentSettings()), [task_set], tmp_path / "o")
    assert [r["answer_score"] for r in oracle] == [1.0] * len(task_set.tasks)
    assert [r["sequence_score"] for r in oracle] == [1.0] * len(task_set.tasks)
    rand = run_agent(AgentSpec("random", AgentSettings()), [task_set], tmp_path / "r")
    assert sum(r["answer_score"] for r in rand) / len(rand) <= 0.1
    assert sum(r["sequence_score"] for r in rand) / len(rand) <= 0.15


def test_chain_splits_share_no_person():
    test, train = chain_task_set("test"), chain_task_set("train", per_hop=14)
    test_people = {d.title for d in test.documents.values()}
    train_text = " ".join(f"{d.title} {d.text}" for d in train.documents.values())
    assert test_people and not any(person in train_text for person in test_people)
    assert {t.level for t in test.tasks} == set(range(2, 9))


def test_a_killed_run_resumes_with_the_tasks_left(tmp_path):
    task_set = chain_task_set(per_hop=1)
    out = tmp_path / "run"
    run_agent(AgentSpec("oracle", AgentSettings()), [task_set], out, limit=None)
    path = out / "trajectories.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3]) + "\n" + lines[3][:40])  # killed mid-write
    calls = []
    spec = AgentSpec("oracle", AgentSettings())
    import prefalign.agents.harness as harness

    original = harness.run_task
    harness.run_task = lambda s, t, ts: calls.append(t.id) or original(s, t, ts)
    try:
        records = run_agent(spec, [task_set], out)
    finally:
        harness.run_task = original
    assert calls == [t.id for t in task_set.tasks[3:]]
    assert [r["task_id"] for r in records] == [t.id for t in task_set.tasks]


def test_a_malformed_task_file_names_file_line_and_field(tmp_path):
    good = {"id": "t1", "category": "c", "instruction": "Say hi", "tools": ["search"],
            "scorer": "exact", "answer": "hi", "expected_tools": ["search"],
            "oracle": [["search", "hi"]]}
    bad = {**good, "id": "t2", "scorer": "vibes"}
    (tmp_path / "mine.tasks.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataError, match=r"mine.tasks.jsonl:2: field 'scorer': unknown 'vibes'"):
        load_task_set("mine", tmp_path)
    no_answer = {**good, "answer": None}
    (tmp_path / "mine.tasks.jsonl").write_text(json.dumps(no_answer) + "\n")
    with pytest.raises(DataError, match=r":1: field 'answer'"):
        load_task_set("mine", tmp_path)


# -- an OpenAI-compatible endpoint through the command line -------------------------------

class ReActServer:
    """A chat endpoint that plays the oracle of one chain task in ReAct turns."""

    def __init__(self, replies: list[str]):
        self.replies, self.requests = list(replies), []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self._send({"data": [{"id": "scripted"}]})

            def do_POST(self):
                owner.requests.append(json.loads(self.rfile.read(
                    int(self.headers["Content-Length"]))))
                text = owner.replies.pop(0)
                self._send({"choices": [{"message": {"role": "assistant", "content": text}}],
                            "usage": {"prompt_tokens": 100, "completion_tokens": 20}})

            def _send(self, payload):
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_react_against_an_openai_compatible_endpoint(tmp_path, capsys):
    task = chain_task_set().tasks[0]
    turns = [f"Thought: find\nAction: search[{name}]" for _, name in task.oracle]
    server = ReActServer(turns + [f"Final Answer: {task.answer}"])
    try:
        code = run_cli("eval", "agent", "--agent", "react", "--model", server.url, "--tasks",
                       "chains", "--limit", "1", "--out", str(tmp_path))
    finally:
        server.server.shutdown()
        server.server.server_close()
    assert code == 0
    record = json.loads((tmp_path / "trajectories.jsonl").read_text().splitlines()[0])
    assert record["answer_score"] == 1.0 and record["sequence_score"] == 1.0
    assert record["prompt_tokens"] == 100 * len(server.requests)
    assert all(r["stop"] == ["Observation:"] and r["temperature"] == 0.0
               for r in server.requests)
    assert Path(tmp_path / "report.md").read_text().count("| react |") >= 2


def test_agent_sft_rows_are_the_react_turns_of_successful_trajectories(tmp_path, capsys):
    task_set = chain_task_set(per_hop=1, hops=(2, 3))
    out = tmp_path / "run"
    oracle = run_agent(AgentSpec("oracle", AgentSettings()), [task_set], out)
    failed = run_agent(AgentSpec("random", AgentSettings()), [task_set], tmp_path / "rand")
    tasks = {f"chains/{t.id}": t for t in task_set.tasks}
    from prefalign.agents.sft_data import sft_rows

    rows, passed = sft_rows(oracle + failed, tasks)
    assert passed == 2  # the random agent's trajectories fail the filter
    assert len(rows) == (2 + 1) + (3 + 1)  # one row per tool call, plus the final answer
    last = rows[3 + 1 + 2]["messages"]  # the 3-hop task's final row
    task = task_set.tasks[1]
    assert last[-1]["role"] == "assistant"
    assert last[-1]["content"].endswith(f"Final Answer: {task.answer}")
    actions = [m["content"] for m in last if m["role"] == "assistant"][:-1]
    assert [parse_turn(a).text for a in actions] == [name for _, name in task.oracle]
    observations = [m["content"] for m in last if m["content"].startswith("Observation:")]
    assert len(observations) == 3 and f"mentor was {task.answer}" in observations[-1]


def test_agent_report_merges_runs_into_one_table_and_one_hops_figure(tmp_path, capsys):
    task_set = chain_task_set(per_hop=2, hops=(2, 3))
    run_agent(AgentSpec("oracle", AgentSettings()), [task_set], tmp_path / "oracle")
    run_agent(AgentSpec("random", AgentSettings()), [task_set], tmp_path / "random")
    code = run_cli("eval", "agent-report", str(tmp_path / "oracle"), str(tmp_path / "random"),
                   "--out", str(tmp_path / "merged"))
    assert code == 0
    rows = json.loads((tmp_path / "merged" / "report.json").read_text())["rows"]
    overall = {r["agent"]: r for r in rows if r["category"] == "all"}
    assert set(overall) == {"oracle", "random"}
    assert overall["oracle"]["n"] == overall["random"]["n"] == 4
    assert overall["oracle"]["answer"]["mean"] == 1.0
    assert overall["random"]["answer"]["mean"] < 1.0
    assert (tmp_path / "merged" / "figures" / "hops.png").stat().st_size > 0
    code = run_cli("eval", "agent-report", str(tmp_path / "missing"), "--out",
                   str(tmp_path / "merged"))
    assert code != 0 and "missing/trajectories.jsonl: no trajectories" in capsys.readouterr().err


def test_memory_figure_draws_groups_of_three_failed_tasks(tmp_path):
    from prefalign.agents.report import memory_figure

    records = [{"agent": "react", "memory": "flat", "model": "m", "level": hops,
                "answer_score": 0.0} for hops in (2, 3) for _ in range(3)]
    path = memory_figure(records, tmp_path / "hops.png")
    assert path.stat().st_size > 0
