"""A ReAct agent whose model is a real llama.cpp server (the embedded model's GGUF) on
127.0.0.1, started and stopped by the fixture of tests/test_judges_llama.py."""

from __future__ import annotations

import json

from tests.test_judges_llama import llama_server, pytestmark  # noqa: F401 - fixture, skip

from prefalign.agents.agents import AgentSettings
from prefalign.agents.backends import load_chat_model
from prefalign.agents.chains import chain_task_set
from prefalign.agents.harness import AgentSpec, run_agent


def test_react_agent_through_a_llama_cpp_server(llama_server, tmp_path):  # noqa: F811
    url, _ = llama_server
    model = load_chat_model(f"{url}/v1#smollm2")
    task_set = chain_task_set(per_hop=1, hops=(2,))
    spec = AgentSpec("react", AgentSettings(max_steps=2, max_new_tokens=40), model)
    records = run_agent(spec, [task_set], tmp_path)
    saved = [json.loads(line) for line in (tmp_path / "trajectories.jsonl").open()]
    assert len(records) == len(saved) == 1
    record = saved[0]
    model_turns = [s for s in record["steps"] if s["kind"] == "model"]
    assert 1 <= len(model_turns) <= 2
    assert all(s["prompt_tokens"] > 0 and s["completion_tokens"] > 0 for s in model_turns)
    assert all("Observation:" not in s["text"] for s in model_turns)  # the stop string held
    assert 0.0 <= record["answer_score"] <= 1.0 and 0.0 <= record["sequence_score"] <= 1.0
