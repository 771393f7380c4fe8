"""The graphs' checkpointer (shared.scoped_saver) on the S3 saver, against a real S3 server:
a thread stored under its stored id, seen by the graph and by every config by the client's."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig

from shared.checkpoint import AsyncS3Saver
from shared.ids import stored_thread_id
from shared.scoped_saver import STORED_THREAD_KEY, ScopedSaver, hidden_config, thread_config
from tests.helpers import State, all_objects, chat_graph

OWNER = "0123456789abcdef0123456789abcdef"
STORED = stored_thread_id(OWNER, "chosen")


def seen_ids() -> tuple[list[str], Any]:
    seen: list[str] = []

    async def answer(state: State, config: RunnableConfig) -> dict[str, list[AnyMessage]]:
        seen.append(config["configurable"]["thread_id"])
        return {"messages": [AIMessage(content=f"echo: {state['messages'][-1].content}")]}

    return seen, answer


async def test_a_graph_sees_the_client_s_id_and_stores_under_the_stored_one(
        async_client: Any, sync_client: Any, bucket: str, prefix: str) -> None:
    inner = AsyncS3Saver(async_client, bucket, prefix)
    seen, answer = seen_ids()
    graph = chat_graph(ScopedSaver(inner), node=answer)
    config = thread_config(STORED)

    await graph.ainvoke({"messages": [HumanMessage("one")]}, config)
    await graph.ainvoke({"messages": [HumanMessage("two")]}, config)
    state = await graph.aget_state(config)
    history = [shot async for shot in graph.aget_state_history(config)]
    updated = await graph.aupdate_state(config, {"messages": [AIMessage("edited")]},
                                        as_node="reply")

    assert seen == ["chosen", "chosen"]
    assert state.config["configurable"]["thread_id"] == "chosen"
    assert {shot.config["configurable"]["thread_id"] for shot in history} == {"chosen"}
    assert updated["configurable"]["thread_id"] == "chosen"
    stored = await all_objects(sync_client, bucket, prefix)
    assert stored and all(key.startswith(f"{STORED}/") for key in stored)
    # The update (a put, then its writes to the config the put returned)
    # went to the stored thread too.
    latest = await inner.aget_tuple({"configurable": {"thread_id": STORED}})
    assert latest is not None
    assert latest.checkpoint["channel_values"]["messages"][-1].content == "edited"
    # What a client is shown of a config leaves the stored id out.
    assert STORED_THREAD_KEY in state.config["configurable"]
    assert STORED_THREAD_KEY not in hidden_config(state.config)["configurable"]


async def test_a_miss_asks_on_missing_once_and_reads_again(
        async_client: Any, bucket: str, prefix: str) -> None:
    inner = AsyncS3Saver(async_client, bucket, prefix)
    asked: list[str] = []

    async def move(stored: str) -> bool:
        asked.append(stored)
        await chat_graph(inner).ainvoke({"messages": [HumanMessage("moved in")]},
                                        {"configurable": {"thread_id": stored}})
        return True

    scoped = ScopedSaver(inner, on_missing=move)
    found = await scoped.aget_tuple(thread_config(STORED))
    again = await scoped.aget_tuple(thread_config(STORED))
    other_ns = await scoped.aget_tuple(thread_config(STORED, checkpoint_ns="sub"))

    assert asked == [STORED]  # once: the second read found it, a subgraph's miss asks not
    assert found is not None and again is not None and other_ns is None
    assert found.config["configurable"]["thread_id"] == "chosen"
    assert found.checkpoint["channel_values"]["messages"][0].content == "moved in"
