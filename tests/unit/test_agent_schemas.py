"""The LangGraph Server API's requests and the assistant's description, without servers."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import ValidationError

from api.agent.assistants import GRAPH_DRAWING
from api.agent.schemas import RunCreate, ThreadCreate
from worker.graph import build_graph


def run(**fields: Any) -> RunCreate:
    return RunCreate.model_validate({
        "assistant_id": "chat", "input": {"messages": [{"role": "user", "content": "hi"}]},
        **fields})


def test_the_assistant_s_drawing_is_the_graph_s() -> None:
    graph = build_graph(FakeListChatModel(responses=["x"]), InMemorySaver(), 1000)
    assert graph.get_graph().to_json() == GRAPH_DRAWING


def test_the_language_comes_from_the_context_then_the_config() -> None:
    configured = {"configurable": {"language": "French", "user_id": "u1"}}
    assert run().language() == "English"
    assert run(config=configured).language() == "French"
    assert run(config=configured, context={"language": "Italian"}).language() == "Italian"


@pytest.mark.parametrize("fields", [
    {"command": {"resume": "x"}}, {"webhook": "https://x.test/"}, {"after_seconds": 5},
    {"interrupt_before": ["answer"]}, {"checkpoint_id": "c1"},
    {"multitask_strategy": "rollback"}, {"stream_mode": ["values", "events"]},
    {"on_disconnect": "cancel"}, {"context": {"language": "French", "model": "x"}},
    {"config": {"configurable": {"language": "42"}}},
])
def test_what_a_run_cannot_do_is_refused_by_name(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as refused:
        run(**fields)
    assert next(iter(fields)) in str(refused.value)


@pytest.mark.parametrize("messages", [
    [], [{"role": "user", "content": " \n"}], [{"role": "assistant", "content": "hi"}],
    [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
])
def test_a_run_s_input_is_one_message_from_the_user(messages: list[Any]) -> None:
    with pytest.raises(ValidationError):
        run(input={"messages": messages})


def test_what_the_sdk_sends_unset_is_accepted() -> None:
    # runs.stream sends these two whatever the caller sets; the rest only when set.
    assert run(stream_subgraphs=False, stream_resumable=False).modes() == ["values"]
    assert run(webhook=None, command=None, checkpoint=None).webhook is None
    assert ThreadCreate.model_validate({"metadata": {"graph_id": "chat"}}).ttl is None
    with pytest.raises(ValidationError, match="ttl"):
        ThreadCreate.model_validate({"ttl": {"ttl": 5, "strategy": "delete"}})
