"""The LangGraph Server API's requests, and graphs' inputs and drawings, without servers."""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

import pytest
from langchain_groq import ChatGroq
from langgraph.graph import StateGraph
from pydantic import SecretStr, ValidationError

from api.agent.graph_views import schemas_of
from api.agent.inputs import check_input, first_text
from api.agent.schemas import RunCreate, ThreadCreate
from api.errors import Invalid
from graphs.llm import EchoChatModel, input_block_types
from shared.graphs import GraphEntry, GraphRegistry


def run(**fields: Any) -> RunCreate:
    return RunCreate.model_validate({
        "assistant_id": "chat", "input": {"messages": [{"role": "user", "content": "hi"}]},
        **fields})


class CountState(TypedDict):
    count: int
    notes: Annotated[list[str], lambda a, b: a + b]


def counter() -> GraphEntry:
    builder = StateGraph(CountState)
    builder.add_node("step", lambda state: {"count": state["count"] + 1})
    builder.add_edge("__start__", "step")
    return GraphEntry("counter", "test:counter", builder)


def test_the_chat_assistant_s_drawing_and_schemas_are_its_graph_s() -> None:
    entry = GraphRegistry.load(None).entries["chat"]
    drawing = entry.compiled(None).get_graph().to_json()
    assert [n["id"] for n in drawing["nodes"]] == ["__start__", "answer", "__end__"]
    schemas = schemas_of(entry)
    assert "messages" in (schemas.input_schema or {})["properties"]
    assert "language" in (schemas.context_schema or {})["properties"]


@pytest.mark.parametrize("fields", [
    {"webhook": "https://x.test/"}, {"after_seconds": 5}, {"stream_mode": ["values", "nope"]},
    {"on_disconnect": "cancel"}, {"multitask_strategy": "sometimes"},
])
def test_what_a_run_cannot_do_is_refused_by_name(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as refused:
        run(**fields)
    assert next(iter(fields)) in str(refused.value)


def test_a_run_may_resume_branch_and_stop_before_nodes() -> None:
    body = run(input=None, command={"resume": {"ok": True}}, checkpoint_id="c1",
               interrupt_before=["answer"], stream_mode=["values", "custom", "events"])
    assert body.command is not None and body.command.resume == {"ok": True}
    assert body.start_checkpoint() == "c1"
    assert body.modes() == ["values", "custom", "events"]
    assert run(checkpoint={"checkpoint_id": "c2"}).start_checkpoint() == "c2"


def test_an_input_the_graph_does_not_take_is_refused_naming_the_field() -> None:
    with pytest.raises(Invalid, match=r"input\.count"):
        check_input(counter(), {"count": "not a number"})
    with pytest.raises(Invalid, match=r"input\.colour: not an input"):
        check_input(counter(), {"count": 1, "colour": "red"})
    assert check_input(counter(), {"count": 1, "notes": ["a"]}) == {"count": 1, "notes": ["a"]}


def test_messages_are_taken_in_every_form_langchain_takes() -> None:
    chat = GraphRegistry.load(None).entries["chat"]
    for messages in ([{"role": "user", "content": "hi"}],
                     [{"type": "human", "content": [{"type": "text", "text": "hi"}]}]):
        assert check_input(chat, {"messages": messages}) == {"messages": messages}
    assert first_text({"messages": [{"role": "user", "content": "first"}]}) == "first"
    assert first_text({"count": 3}) == ""


IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


def chat_taking(*kinds: str) -> GraphEntry:
    chat = GraphRegistry.load(None).entries["chat"]
    return GraphEntry("chat", chat.spec, chat.target, None, lambda: kinds or None)


def test_a_block_the_graph_s_model_cannot_take_is_refused_naming_it() -> None:
    said = {"messages": [{"role": "user", "content": [{"type": "text", "text": "see"}, IMAGE]}]}

    with pytest.raises(Invalid, match=r"input\.messages\.0\.content\.1: a 'image_url' block"
                                      r".*it takes: text\)"):
        check_input(chat_taking("text"), said)
    assert check_input(chat_taking("text", "image_url"), said) == said
    assert check_input(chat_taking(), said) == said  # a model of no known profile


def test_a_model_s_profile_says_which_blocks_it_takes() -> None:
    text_only = ChatGroq(model="llama-3.3-70b-versatile", api_key=SecretStr("unused"))
    vision = ChatGroq(model="meta-llama/llama-4-scout-17b-16e-instruct",
                      api_key=SecretStr("unused"))

    assert input_block_types(text_only) == {"text"}
    assert input_block_types(vision) == {"text", "image", "image_url"}
    assert input_block_types(EchoChatModel()) == {"text"}


def test_what_the_sdk_sends_unset_is_accepted() -> None:
    # runs.stream sends these two whatever the caller sets; the rest only when set.
    assert run(stream_subgraphs=False, stream_resumable=False).modes() == ["values"]
    assert run(webhook=None, command=None, checkpoint=None).webhook is None
    assert ThreadCreate.model_validate({"metadata": {"graph_id": "chat"}}).ttl is None
    with pytest.raises(ValidationError, match="ttl"):
        ThreadCreate.model_validate({"ttl": {"ttl": 5, "strategy": "delete"}})


def test_the_server_s_own_configurable_keys_are_not_the_caller_s() -> None:
    body = run(config={"configurable": {"user_id": "u1", "thread_id": "other",
                                        "checkpoint_id": "c3", "__pregel_x": 1},
                       "tags": ["a"]})
    assert body.graph_config() == {"configurable": {"user_id": "u1"}, "tags": ["a"]}
    assert body.start_checkpoint() == "c3"  # checked by the gateway like checkpoint_id
