"""AsyncS3Saver against a real S3 server (moto in server mode): graphs, safety, cost."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import Checkpoint, empty_checkpoint
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, interrupt

from shared.checkpoint import AsyncS3Saver, CheckpointConflict, S3SaverError, S3Unavailable
from tests import servers

PREFIX = "chat_histories/"


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


async def echo(state: State) -> dict[str, list[AnyMessage]]:
    return {"messages": [AIMessage(content=f"echo: {state['messages'][-1].content}")]}


async def approve(state: State) -> dict[str, list[AnyMessage]]:
    answer = interrupt("approve?")
    return {"messages": [AIMessage(content=f"approved: {answer}")]}


def chat_graph(saver: AsyncS3Saver, node: Any = echo) -> Any:
    builder = StateGraph(State)
    builder.add_node("reply", node)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder.compile(checkpointer=saver)


class RequestCounter:
    """Counts the HTTP requests a client sends, by S3 operation."""

    def __init__(self, client: Any) -> None:
        self.ops: Counter[str] = Counter()
        client.meta.events.register("before-send.s3", self._on_send)

    def _on_send(self, event_name: str, **_: Any) -> None:
        self.ops[event_name.rsplit(".", 1)[-1]] += 1

    def take(self) -> Counter[str]:
        ops, self.ops = self.ops, Counter()
        return ops


def open_saver(endpoint: str, bucket: str, prefix: str = PREFIX) -> Any:
    return AsyncS3Saver.from_conn_string(
        f"s3://{bucket}/{prefix}", endpoint_url=endpoint, region_name="us-east-1"
    )


@pytest.fixture
async def saver(s3_endpoint: str, s3_bucket: str) -> AsyncIterator[AsyncS3Saver]:
    async with open_saver(s3_endpoint, s3_bucket) as opened:
        await opened.setup()
        yield opened


def thread(thread_id: str, ns: str = "") -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}


def new_checkpoint(**values: Any) -> Checkpoint:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = values
    checkpoint["channel_versions"] = dict.fromkeys(values, 1)
    return checkpoint


async def all_keys(saver: AsyncS3Saver, bucket: str) -> list[str]:
    response = await saver.client.list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in response.get("Contents", [])]


@pytest.mark.parametrize("durability", ["exit", "async", "sync"])
async def test_graph_two_turns_keep_all_messages(saver: AsyncS3Saver, durability: Any) -> None:
    graph = chat_graph(saver)
    config = thread("chat-1")
    await graph.ainvoke({"messages": [HumanMessage("hello")]}, config, durability=durability)
    await graph.ainvoke({"messages": [HumanMessage("again")]}, config, durability=durability)

    latest = await saver.aget_tuple(config)

    assert latest is not None
    messages = latest.checkpoint["channel_values"]["messages"]
    assert [(type(m), m.content) for m in messages] == [
        (HumanMessage, "hello"),
        (AIMessage, "echo: hello"),
        (HumanMessage, "again"),
        (AIMessage, "echo: again"),
    ]
    assert latest.parent_config is not None
    assert latest.metadata["source"] == "loop"


async def test_interrupt_and_resume_round_trip_pending_writes(saver: AsyncS3Saver) -> None:
    graph = chat_graph(saver, approve)
    config = thread("chat-interrupt")
    await graph.ainvoke({"messages": [HumanMessage("deploy")]}, config, durability="exit")

    paused = await saver.aget_tuple(config)
    assert paused is not None and paused.pending_writes
    assert any(channel == "__interrupt__" for _, channel, _ in paused.pending_writes)

    result = await graph.ainvoke(Command(resume="yes"), config, durability="exit")
    assert [m.content for m in result["messages"]] == ["deploy", "approved: yes"]


async def test_delete_thread_leaves_threads_sharing_its_prefix(
    saver: AsyncS3Saver, s3_bucket: str
) -> None:
    for thread_id in ("t1", "t10", "t1.x"):
        for ns in ("", "child:1"):
            stored = await saver.aput(thread(thread_id, ns), new_checkpoint(), {"step": 0}, {})
            await saver.aput_writes(stored, [("ch", thread_id)], "task-1")

    await saver.adelete_thread("t1")

    assert await saver.aget_tuple(thread("t1")) is None
    assert await saver.aget_tuple(thread("t1", "child:1")) is None
    for survivor in ("t10", "t1.x"):
        found = await saver.aget_tuple(thread(survivor))
        assert found is not None and found.pending_writes == [("task-1", "ch", survivor)]
    assert not [k for k in await all_keys(saver, s3_bucket) if k.startswith(f"{PREFIX}t1/")]
    # The thread can start over after a delete.
    assert await saver.aput(thread("t1"), new_checkpoint(), {"step": 0}, {})


@pytest.mark.parametrize(
    "bad_id", ["../x", "a/b", "", "..", ".", "a b", "x" * 257, "t\n1", "é", None]
)
async def test_unsafe_thread_ids_are_rejected_before_any_request(
    saver: AsyncS3Saver, bad_id: Any
) -> None:
    requests = RequestCounter(saver.client)
    config = thread(bad_id)

    with pytest.raises(ValueError, match="thread_id"):
        await saver.aget_tuple(config)
    with pytest.raises(ValueError, match="thread_id"):
        await saver.aput(config, new_checkpoint(), {}, {})
    with pytest.raises(ValueError, match="thread_id"):
        await saver.aput_writes({**config, "configurable": {**config["configurable"],
                                                            "checkpoint_id": "x"}}, [], "t")
    with pytest.raises(ValueError, match="thread_id"):
        await saver.adelete_thread(bad_id)
    with pytest.raises(ValueError, match="thread_id"):
        _ = [t async for t in saver.alist(config)]
    assert sum(requests.take().values()) == 0


async def test_namespaces_are_encoded_into_safe_keys(saver: AsyncS3Saver, s3_bucket: str) -> None:
    namespaces = ["", "parent:abc|child:def", "../../etc/passwd", "a/b", "ünï cödé"]
    for ns in namespaces:
        metadata: Any = {"ns": ns}
        stored = await saver.aput(thread("t-ns", ns), new_checkpoint(ns=ns), metadata, {})
        assert stored["configurable"]["checkpoint_ns"] == ns

    for ns in namespaces:
        found = await saver.aget_tuple(thread("t-ns", ns))
        assert found is not None
        assert found.checkpoint["channel_values"] == {"ns": ns}
        assert found.config["configurable"]["checkpoint_ns"] == ns
    keys = await all_keys(saver, s3_bucket)
    assert keys and all(k.startswith(f"{PREFIX}t-ns/ns.") for k in keys)
    assert all(k.count("/") in (3, 4) and ".." not in k for k in keys)


async def test_stale_writer_gets_conflict_and_leaves_nothing(
    s3_endpoint: str, s3_bucket: str
) -> None:
    config = thread("shared-thread")
    async with (
        open_saver(s3_endpoint, s3_bucket) as a,
        open_saver(s3_endpoint, s3_bucket) as b,
    ):
        root = await a.aput(config, new_checkpoint(), {"step": 0}, {})
        seen_by_a = await a.aget_tuple(config)
        seen_by_b = await b.aget_tuple(config)
        assert seen_by_a is not None and seen_by_b is not None

        winner = new_checkpoint(turn="a")
        await a.aput(seen_by_a.config, winner, {"step": 1}, {})
        with pytest.raises(CheckpointConflict, match="another writer"):
            await b.aput(seen_by_b.config, new_checkpoint(turn="b"), {"step": 1}, {})

        latest = await b.aget_tuple(config)
        assert latest is not None and latest.checkpoint["id"] == winner["id"]
        listed = [t.checkpoint["id"] async for t in b.alist(config)]
        assert listed == [winner["id"], root["configurable"]["checkpoint_id"]]

        # Having re-read the thread, B writes on top of A's turn.
        retried = new_checkpoint(turn="b")
        await b.aput(latest.config, retried, {"step": 2}, {})
        newest = await a.aget_tuple(config)
        assert newest is not None and newest.checkpoint["id"] == retried["id"]


async def test_single_writer_never_conflicts_with_itself(saver: AsyncS3Saver) -> None:
    config = thread("busy")
    for step in range(5):
        stored = await saver.aput(config, new_checkpoint(step=step), {"step": step}, {})
        await saver.aput_writes(stored, [("ch", step)], f"task-{step}")
        config = stored
    latest = await saver.aget_tuple(thread("busy"))
    assert latest is not None and latest.pending_writes == [("task-4", "ch", 4)]


async def test_s3_down_raises_unavailable() -> None:
    closed = f"http://127.0.0.1:{servers.free_port()}"
    async with AsyncS3Saver.from_conn_string(
        "s3://any-bucket/p", endpoint_url=closed, region_name="us-east-1"
    ) as saver:
        # Concurrently: each call spends a few seconds in botocore's retries.
        outcomes = await asyncio.gather(
            saver.setup(), saver.aget_tuple(thread("t1")), return_exceptions=True
        )
    assert all(isinstance(o, S3Unavailable) for o in outcomes), outcomes
    assert all(isinstance(o, BaseException) and o.__cause__ is not None for o in outcomes)


async def test_missing_bucket_is_an_error_not_an_outage(s3_endpoint: str) -> None:
    async with open_saver(s3_endpoint, "no-such-bucket-here") as saver:
        with pytest.raises(S3SaverError, match="no-such-bucket-here") as raised:
            await saver.setup()
        assert not isinstance(raised.value, S3Unavailable)


async def test_requests_per_turn_do_not_grow(saver: AsyncS3Saver) -> None:
    graph = chat_graph(saver)
    config = thread("long-chat")
    requests = RequestCounter(saver.client)
    per_turn: list[Counter[str]] = []
    for turn in range(20):
        await graph.ainvoke({"messages": [HumanMessage(f"turn {turn}")]}, config,
                            durability="exit")
        per_turn.append(requests.take())

    assert per_turn[0] == Counter(GetObject=1, PutObject=2)  # head miss, checkpoint, head
    assert per_turn[1] == Counter(GetObject=2, PutObject=2)
    assert per_turn[19] == per_turn[1]

    latest = await saver.aget_tuple(config)
    assert requests.take() == Counter(GetObject=2)
    assert latest is not None and len(latest.checkpoint["channel_values"]["messages"]) == 40


async def test_latest_read_fetches_writes_only_when_flagged(saver: AsyncS3Saver) -> None:
    stored = await saver.aput(thread("flag"), new_checkpoint(), {"step": 0}, {})
    requests = RequestCounter(saver.client)

    await saver.aput_writes(stored, [("a", 1), ("b", 2)], "task")
    assert requests.take() == Counter(PutObject=2)  # create writes object, flag the head

    found = await saver.aget_tuple(thread("flag"))
    assert requests.take() == Counter(GetObject=3)
    assert found is not None and found.pending_writes == [("task", "a", 1), ("task", "b", 2)]

    await saver.aput(stored, new_checkpoint(), {"step": 1}, {})
    requests.take()
    child = await saver.aget_tuple(thread("flag"))
    assert requests.take() == Counter(GetObject=2)
    assert child is not None and child.pending_writes == []


async def test_writes_stored_before_their_checkpoint_are_found(saver: AsyncS3Saver) -> None:
    # LangGraph's async durability may save a step's writes before its checkpoint.
    parent = await saver.aput(thread("early"), new_checkpoint(), {"step": 0}, {})
    child = new_checkpoint()
    child_config: RunnableConfig = {
        "configurable": {**parent["configurable"], "checkpoint_id": child["id"]}
    }
    await saver.aput_writes(child_config, [("ch", "early")], "task")
    await saver.aput(parent, child, {"step": 1}, {})

    latest = await saver.aget_tuple(thread("early"))
    assert latest is not None and latest.checkpoint["id"] == child["id"]
    assert latest.pending_writes == [("task", "ch", "early")]
