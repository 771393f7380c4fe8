"""The graph registry: langgraph.json read as the LangGraph CLI reads it (no servers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import StateGraph

from shared.graphs import GraphLoadError, GraphRegistry, assistant_id_of, load_registry

GRAPH_FILE = '''
from typing_extensions import TypedDict
from langgraph.graph import StateGraph, START

from helper import bump  # a neighbour of this file, as under `langgraph dev`

class State(TypedDict):
    n: int

builder = StateGraph(State)
builder.add_node("bump", bump)
builder.add_edge(START, "bump")
compiled = builder.compile()

def per_run(config):
    return builder
'''

HELPER_FILE = '''
def bump(state):
    return {"n": state["n"] + 1}

LIMIT = 3
'''


def declare(folder: Path, graphs: dict[str, object]) -> Path:
    (folder / "agent.py").write_text(GRAPH_FILE)
    (folder / "helper.py").write_text(HELPER_FILE)
    config = folder / "langgraph.json"
    config.write_text(json.dumps({"graphs": graphs}))
    return config


async def test_each_kind_of_entry_runs_with_the_given_saver(tmp_path: Path) -> None:
    registry = GraphRegistry.load(declare(tmp_path, {
        "built": "./agent.py:builder", "compiled": "./agent.py:compiled",
        "per_run": {"path": "./agent.py:per_run", "description": "made per run"}}))

    assert set(registry.entries) == {"chat", "built", "compiled", "per_run"}
    assert registry.entries["per_run"].description == "made per run"
    for graph_id in ("built", "compiled", "per_run"):
        saver = InMemorySaver()
        graph = registry.entries[graph_id].compiled(saver, {})
        config = {"configurable": {"thread_id": "t"}}
        assert (await graph.ainvoke({"n": 1}, config))["n"] == 2  # type: ignore[arg-type]
        assert graph.checkpointer is saver
        assert saver.get_tuple(config) is not None  # type: ignore[arg-type]


def test_a_graph_is_found_by_its_id_or_its_assistant_s(tmp_path: Path) -> None:
    registry = GraphRegistry.load(None)
    chat = registry.entries["chat"]
    assert registry.find("chat") is chat
    assert registry.find(assistant_id_of("chat")) is chat
    assert chat.assistant_id == assistant_id_of("chat")
    assert registry.find("nope") is None
    # The id `langgraph dev` (langgraph-api 0.16.7) gave a graph "counter"'s assistant.
    assert assistant_id_of("counter") == "09d6caf4-2ef3-5a8b-b1a7-114690ed5d45"


def test_a_graph_of_the_file_replaces_the_built_in_one(tmp_path: Path) -> None:
    registry = GraphRegistry.load(declare(tmp_path, {"chat": "./agent.py:builder"}))
    assert isinstance(registry.entries["chat"].target, StateGraph)
    assert registry.entries["chat"].spec == "./agent.py:builder"


@pytest.mark.parametrize(("spec", "says"), [
    ("./missing.py:graph", "no such file"),
    ("./agent.py:nothing_here", "has no attribute 'nothing_here'"),
    ("no_such_package.module:graph", "No module named 'no_such_package'"),
    ("./agent.py", 'expected "./path/to/file.py:attr"'),
    ("./helper.py:LIMIT", "not a StateGraph"),
])
def test_a_graph_that_cannot_be_loaded_is_named_with_the_reason(
        tmp_path: Path, spec: str, says: str) -> None:
    with pytest.raises(GraphLoadError) as failed:
        GraphRegistry.load(declare(tmp_path, {"mine": spec}))
    assert "'mine'" in str(failed.value) and says in str(failed.value)


def test_a_file_without_graphs_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "langgraph.json"
    config.write_text('{"dependencies": ["."]}')
    with pytest.raises(GraphLoadError, match='needs a "graphs" object'):
        GraphRegistry.load(config)


def test_a_process_stops_with_one_line_when_the_chat_graph_is_not_declared(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        load_registry(None, "no-such-graph")
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "CHAT_GRAPH_ID" in err and "'no-such-graph'" in err
