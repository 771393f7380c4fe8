"""The chat graph with fake models and LangGraph's in-memory saver (unit tests only)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from graphs.chat import build_graph, system_prompt
from graphs.llm import ECHO_LABEL, EchoChatModel
from shared.conversation import human_id


class FailingFakeModel(FakeListChatModel):
    def _call(self, *args: Any, **kwargs: Any) -> str:
        raise RuntimeError("provider down")


def config(thread: str) -> Any:
    return {"configurable": {"thread_id": thread}}


async def turn(graph: Any, thread: str, job: str, text: str) -> dict[str, Any]:
    state: dict[str, Any] = await graph.ainvoke(
        {"messages": [HumanMessage(text, id=human_id(job))]}, config(thread),
        context={"language": "English"}, durability="exit")
    return state


async def test_a_turn_stores_the_message_and_its_reply_together() -> None:
    graph = build_graph(FakeListChatModel(responses=["hi!", "again"]), InMemorySaver(), 1000)

    await turn(graph, "t", "j1", "hello")
    state = await turn(graph, "t", "j2", "and again")

    messages = state["messages"]
    assert [type(m) for m in messages] == [HumanMessage, AIMessage] * 2
    assert [m.content for m in messages] == ["hello", "hi!", "and again", "again"]
    assert messages[0].id == human_id("j1")


async def test_a_failed_llm_call_adds_no_reply() -> None:
    # The graph alone: LangGraph still saves the input on exit; the worker
    # holds those writes back (worker/deferred.py, tested against S3).
    saver = InMemorySaver()
    await turn(build_graph(FakeListChatModel(responses=["ok"]), saver, 1000), "t", "j1", "a")

    with pytest.raises(RuntimeError):
        await turn(build_graph(FailingFakeModel(responses=[]), saver, 1000), "t", "j2", "b")

    graph = build_graph(FakeListChatModel(responses=["fine"]), saver, 1000)
    state = (await graph.aget_state(config("t"))).values
    assert [type(m) for m in state["messages"]] == [HumanMessage, AIMessage, HumanMessage]


async def test_running_a_stored_job_again_adds_nothing() -> None:
    model = FakeListChatModel(responses=["first", "second"])
    graph = build_graph(model, InMemorySaver(), 1000)

    await turn(graph, "t", "j1", "hello")
    state = await turn(graph, "t", "j1", "hello")

    assert [m.content for m in state["messages"]] == ["hello", "first"]


async def test_the_prompt_names_the_language_and_the_context_is_trimmed() -> None:
    seen: list[Any] = []

    class RecordingFakeModel(FakeListChatModel):
        def _call(self, messages: Any, *args: Any, **kwargs: Any) -> str:
            seen.append(messages)
            return "ok"

    graph = build_graph(RecordingFakeModel(responses=["ok"]), InMemorySaver(), 60)
    for n in range(10):
        await graph.ainvoke({"messages": [HumanMessage(f"message number {n}")]}, config("t"),
                            context={"language": "Welsh"}, durability="exit")

    last = seen[-1]
    assert last[0].content == system_prompt("Welsh")
    assert "Welsh" in last[0].content
    assert last[-1].content == "message number 9"
    assert len(last) < 21  # older turns trimmed to fit the token budget
    assert isinstance(last[1], HumanMessage)


async def test_echo_model_is_labelled_and_streams_word_by_word() -> None:
    model = EchoChatModel()
    chunks = [c.content async for c in model.astream([HumanMessage("a b c")])]

    assert "".join(chunks) == f"{ECHO_LABEL} a b c"
    assert len(chunks) > 3
    assert (await model.ainvoke([HumanMessage("x")])).content == f"{ECHO_LABEL} x"


async def test_the_state_keeps_a_window_of_the_newest_messages() -> None:
    replies = [f"r{i}" for i in range(6)]
    graph = build_graph(FakeListChatModel(responses=replies), InMemorySaver(), 1000,
                        window_messages=4)

    for i in range(6):
        state = await turn(graph, "t", f"j{i}", f"q{i}")

    assert [m.content for m in state["messages"]] == ["q4", "r4", "q5", "r5"]


async def test_a_redelivered_job_is_not_stored_twice_with_a_window() -> None:
    graph = build_graph(FakeListChatModel(responses=["r0", "r1", "r2"]), InMemorySaver(), 1000,
                        window_messages=2)
    await turn(graph, "t", "j0", "q0")
    await turn(graph, "t", "j1", "q1")

    again = await turn(graph, "t", "j1", "q1")

    assert [m.content for m in again["messages"]] == ["q1", "r1"]


def test_a_window_must_hold_a_turn() -> None:
    with pytest.raises(ValueError, match="window_messages"):
        build_graph(FakeListChatModel(responses=[]), InMemorySaver(), 1000, window_messages=1)
