"""Graphs a user brings, for the end-to-end tests: copied to a temporary
directory outside the repository and declared there in a langgraph.json.

- `counter`: counts its runs in the thread's state, streams a custom event,
  and can be held at a gate (a file) to be killed mid-run;
- `approve`: stops at an interrupt() until a run resumes it;
- `boom`: raises, with a message that must not reach the client;
- `made_per_run`: `counter`, made by a function of the run's config;
- `nested`: `counter` as the one node of an outer graph (a subgraph);
- `talker`: a chat model that streams a fixed reply token by token (offline).
"""

from __future__ import annotations

import asyncio
import operator
from pathlib import Path
from typing import Annotated, Any

from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt
from typing_extensions import TypedDict


class State(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    count: int
    steps: Annotated[list[str], operator.add]
    # A directory: the node notes each start in it, and waits for a file "go" there.
    gate: str


async def step(state: State) -> dict[str, Any]:
    get_stream_writer()({"progress": "counting"})
    if gate := state.get("gate"):
        folder = Path(gate)
        with (folder / "starts").open("a") as starts:
            starts.write("started\n")
        for _ in range(3000):  # at most 30 s
            if (folder / "go").exists():
                break
            await asyncio.sleep(0.01)
    n = state.get("count", 0) + 1
    return {"count": n, "steps": [f"step {n}"], "messages": [AIMessage(f"count is {n}")]}


def ask(state: State) -> dict[str, Any]:
    answer = interrupt({"question": "ok?"})
    return {"messages": [AIMessage(f"answer: {answer}")]}


def explode(state: State) -> dict[str, Any]:
    raise ValueError("a secret the client must not see")


# Streams its reply a character at a time, as a real chat model streams tokens.
model = FakeListChatModel(responses=["hi there"])


async def talk(state: State) -> dict[str, Any]:
    return {"messages": [await model.ainvoke(state.get("messages", []))]}


def one_node(name: str, action: Any) -> StateGraph[Any, Any, Any, Any]:
    builder = StateGraph(State)
    builder.add_node(name, action)
    builder.add_edge(START, name)
    builder.add_edge(name, END)
    return builder


counter = one_node("step", step)
approve = one_node("ask", ask).compile()
boom = one_node("explode", explode)


def made_per_run(config: RunnableConfig) -> StateGraph[Any, Any, Any, Any]:
    return one_node("step", step)


nested = one_node("inner", one_node("step", step).compile())
talker = one_node("talk", talk)
