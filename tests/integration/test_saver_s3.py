"""The S3 savers against a real S3 server (moto in server mode): graphs, safety, cost.

Most tests run on both savers: ``AsyncS3Saver``, and the sync ``S3Saver``
behind ``ThreadedS3Saver``, which only moves each call to a worker thread so
that one async test body drives the sync code.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import Command

from graphs.chat import build_graph
from graphs.llm import EchoChatModel
from shared.checkpoint import (
    CheckpointConflict,
    S3SaverError,
    S3Unavailable,
)
from tests import servers
from tests.helpers import (
    FAST_RETRY,
    VARIANTS,
    DeltaState,
    RequestCounter,
    all_objects,
    approve,
    chat_graph,
    delta_echo,
    new_checkpoint,
    open_saver,
    setup,
    thread,
)


@pytest.mark.parametrize("durability", ["exit", "async", "sync"])
async def test_graph_turns_keep_all_messages(saver: Any, durability: Any) -> None:
    graph = chat_graph(saver)
    config = thread("chat-1")
    await graph.ainvoke({"messages": [HumanMessage("hello")]}, config, durability=durability)
    await graph.ainvoke({"messages": [HumanMessage("again")]}, config, durability=durability)

    latest = await saver.aget_tuple(config)

    assert latest is not None
    messages = latest.checkpoint["channel_values"]["messages"]
    assert [(type(m), m.content) for m in messages] == [
        (HumanMessage, "hello"), (AIMessage, "echo: hello"),
        (HumanMessage, "again"), (AIMessage, "echo: again"),
    ]
    assert latest.parent_config is not None
    assert latest.metadata["source"] == "loop"


async def test_interrupt_and_resume_round_trip_pending_writes(saver: Any) -> None:
    graph = chat_graph(saver, approve)
    config = thread("chat-interrupt")
    await graph.ainvoke({"messages": [HumanMessage("deploy")]}, config, durability="exit")

    paused = await saver.aget_tuple(config)
    assert paused is not None and paused.pending_writes
    assert any(channel == "__interrupt__" for _, channel, _ in paused.pending_writes)

    result = await graph.ainvoke(Command(resume="yes"), config, durability="exit")
    assert [m.content for m in result["messages"]] == ["deploy", "approved: yes"]


async def test_delete_thread_leaves_threads_sharing_its_prefix(
    saver: Any, sync_client: Any, bucket: str, prefix: str
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
    keys = await all_objects(sync_client, bucket, prefix)
    assert keys and not [k for k in keys if k.startswith("t1/")]
    # The thread can start over after a delete.
    assert await saver.aput(thread("t1"), new_checkpoint(), {"step": 0}, {})


@pytest.mark.parametrize(
    "bad_id", ["../x", "a/b", "", "..", ".", "a b", "x" * 257, "t\n1", "é", None]
)
async def test_unsafe_thread_ids_are_rejected_before_any_request(saver: Any, bad_id: Any) -> None:
    config = thread(bad_id)
    with RequestCounter(saver.client) as requests:
        with pytest.raises(ValueError, match="thread_id"):
            await saver.aget_tuple(config)
        with pytest.raises(ValueError, match="thread_id"):
            await saver.aput(config, new_checkpoint(), {}, {})
        with pytest.raises(ValueError, match="thread_id"):
            await saver.aput_writes({"configurable": {**config["configurable"],
                                                      "checkpoint_id": "x"}}, [], "t")
        with pytest.raises(ValueError, match="thread_id"):
            await saver.adelete_thread(bad_id)
        with pytest.raises(ValueError, match="thread_id"):
            _ = [t async for t in saver.alist(config)]
        assert sum(requests.take().values()) == 0


async def test_namespaces_are_encoded_into_safe_keys(
    saver: Any, sync_client: Any, bucket: str, prefix: str
) -> None:
    namespaces = ["", "parent:abc|child:def", "../../etc/passwd", "a/b", "ünï cödé"]
    for ns in namespaces:
        metadata: Any = {"ns": ns}
        stored = await saver.aput(thread("t-ns", ns), new_checkpoint(ns=ns), metadata, {})
        assert stored["configurable"]["checkpoint_ns"] == ns

    for ns in namespaces:
        found = await saver.aget_tuple(thread("t-ns", ns))
        assert found is not None
        assert found.checkpoint["channel_values"] == {"ns": ns}
    listed = [t.config["configurable"]["checkpoint_ns"]
              async for t in saver.alist({"configurable": {"thread_id": "t-ns"}})]
    assert sorted(listed) == sorted(namespaces)  # across namespaces, when none is named
    keys = await all_objects(sync_client, bucket, prefix)
    assert keys and all(k.startswith("t-ns/ns.") and ".." not in k for k in keys)


@pytest.mark.parametrize("make_saver", VARIANTS, indirect=True)
async def test_stale_writer_gets_conflict_and_leaves_nothing(make_saver: Any) -> None:
    config = thread("shared-thread")
    a, b = make_saver(), make_saver()
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


async def test_single_writer_never_conflicts_with_itself(saver: Any) -> None:
    config = thread("busy")
    for step in range(5):
        stored = await saver.aput(config, new_checkpoint(step=step), {"step": step}, {})
        await saver.aput_writes(stored, [("ch", step)], f"task-{step}")
        config = stored
    latest = await saver.aget_tuple(thread("busy"))
    assert latest is not None and latest.pending_writes == [("task-4", "ch", 4)]


@pytest.mark.parametrize("variant", VARIANTS)
async def test_s3_down_raises_unavailable(variant: str) -> None:
    closed = f"http://127.0.0.1:{servers.free_port()}"
    async with open_saver(variant, closed, "any-bucket", "p", retry=FAST_RETRY) as saver:
        outcomes = await asyncio.gather(
            setup(saver), saver.aget_tuple(thread("t1")), return_exceptions=True
        )
    assert all(isinstance(o, S3Unavailable) for o in outcomes), outcomes
    assert all(isinstance(o, BaseException) and o.__cause__ is not None for o in outcomes)


@pytest.mark.parametrize("variant", VARIANTS)
async def test_missing_bucket_is_an_error_not_an_outage(s3_endpoint: str, variant: str) -> None:
    async with open_saver(variant, s3_endpoint, "no-such-bucket-here") as saver:
        with pytest.raises(S3SaverError, match="no-such-bucket-here") as raised:
            await setup(saver)
        assert not isinstance(raised.value, S3Unavailable)


@pytest.mark.parametrize("make_saver", VARIANTS, indirect=True)
async def test_keep_last_keeps_history_whole(make_saver: Any) -> None:
    graph = chat_graph(make_saver(keep_last=3))
    config = thread("pruned")
    for turn in range(8):
        await graph.ainvoke({"messages": [HumanMessage(f"turn {turn}")]}, config,
                            durability="exit")
    listed = [t async for t in make_saver().alist(config)]
    assert len(listed) == 3
    assert len(listed[0].checkpoint["channel_values"]["messages"]) == 16
    assert listed[-1].parent_config is None


async def test_writes_stored_before_their_checkpoint_are_found(saver: Any) -> None:
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


@pytest.mark.parametrize("make_saver", VARIANTS, indirect=True)
async def test_delta_channel_graphs_survive_pruning(make_saver: Any) -> None:
    graph = chat_graph(make_saver(keep_last=2), delta_echo, DeltaState)
    config = thread("delta")
    for turn in range(7):
        result = await graph.ainvoke({"messages": [HumanMessage(f"turn {turn}")]}, config,
                                     durability="exit")
        assert len(result["messages"]) == 2 * (turn + 1)
    plain = make_saver()
    await plain.aprune(["delta"], strategy="keep_latest")
    result = await chat_graph(plain, delta_echo, DeltaState).ainvoke(
        {"messages": [HumanMessage("after prune")]}, config, durability="exit")
    assert [m.content for m in result["messages"]][-4:] == [
        "turn 6", "echo: turn 6", "after prune", "echo: after prune"]
    assert len(result["messages"]) == 16


async def test_copied_threads_go_on_independently(saver: Any) -> None:
    graph = chat_graph(saver)
    await graph.ainvoke({"messages": [HumanMessage("one")]}, thread("original"))
    await saver.acopy_thread("original", "copy")
    await graph.ainvoke({"messages": [HumanMessage("two")]}, thread("copy"))
    copy = await saver.aget_tuple(thread("copy"))
    original = await saver.aget_tuple(thread("original"))
    assert copy is not None and original is not None
    assert [m.content for m in copy.checkpoint["channel_values"]["messages"]] == [
        "one", "echo: one", "two", "echo: two"]
    assert len(original.checkpoint["channel_values"]["messages"]) == 2


async def test_encryption_at_rest(
    s3_endpoint: str, sync_client: Any, bucket: str, prefix: str
) -> None:
    async with open_saver("async", s3_endpoint, bucket, prefix,
                          encryption_key=os.urandom(32)) as saver:
        await chat_graph(saver).ainvoke({"messages": [HumanMessage("my password is hunter2")]},
                                        thread("private"))
        latest = await saver.aget_tuple(thread("private"))
        assert latest is not None
        assert latest.checkpoint["channel_values"]["messages"][0].content.endswith("hunter2")
    stored = await all_objects(sync_client, bucket, prefix)
    assert stored and not any(b"hunter2" in body for body in stored.values())
    async with open_saver("async", s3_endpoint, bucket, prefix,
                          encryption_key=os.urandom(32)) as wrong:
        with pytest.raises(S3SaverError, match="decrypt"):
            await wrong.aget_tuple(thread("private"))


@pytest.mark.parametrize("make_saver", VARIANTS, indirect=True)
async def test_branches_keep_the_cost_of_a_turn_constant(make_saver: Any, sync_client: Any,
                                                         bucket: str, prefix: str) -> None:
    # Runs of the product's chat graph, every third one from the checkpoint two
    # back (a branch, as a client editing a message makes one).
    graph = build_graph(EchoChatModel(), make_saver(keep_last=5), 1000, window_messages=8)
    config: Any = thread("forks")
    sizes: dict[int, int] = {}
    for turn in range(1, 61):
        run_config = config
        if turn % 3 == 0:
            older = [t async for t in graph.checkpointer.alist(config, limit=3)][-1]
            run_config = older.config
        await graph.ainvoke({"messages": [HumanMessage(f"turn {turn}")]}, run_config,
                            durability="exit")
        if turn in (20, 60):
            listed = sync_client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}forks/")
            sizes[turn] = next(o["Size"] for o in listed["Contents"]
                               if o["Key"].endswith("/head"))

    assert sizes[60] <= sizes[20] * 1.25  # the head does not grow with the branches
    history = [t async for t in graph.checkpointer.alist(config)]
    assert len(history) == 5
    parents = {t.parent_config["configurable"]["checkpoint_id"] for t in history
               if t.parent_config}
    assert len(parents) < len(history)  # two branches share a parent
