"""A run's held checkpoint writes (worker/deferred.py) carried out against S3 in one batch."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage

from shared.checkpoint import AsyncS3Saver
from tests.helpers import RequestCounter, chat_graph, thread
from worker.deferred import DeferredSaver


def steps(history: list[Any]) -> list[tuple[Any, ...]]:
    """What a reader sees of each checkpoint, without its (time-based) ids."""
    return [(t.metadata["step"], t.metadata["source"],
             [m.content for m in t.checkpoint["channel_values"].get("messages", [])],
             len(t.pending_writes or [])) for t in history]


async def test_every_step_of_a_run_lands_in_one_write_of_the_head(
        async_client: Any, bucket: str, prefix: str) -> None:
    saver = AsyncS3Saver(async_client, bucket, prefix)
    deferred = DeferredSaver(saver)
    one_by_one = chat_graph(saver)
    held_graph = chat_graph(deferred)
    for n in range(2):
        said = {"messages": [HumanMessage(f"turn {n}")]}
        await one_by_one.ainvoke(said, thread("one-by-one"), durability="async")
        with deferred.deferred() as held:
            await held_graph.ainvoke(said, thread("batched"), durability="async")
        stored = [t async for t in saver.alist(thread("batched"))]
        assert len(stored) == 3 * n  # held: nothing of this run stored yet
        with RequestCounter(async_client) as requests:
            await deferred.commit(held)
        assert requests.ops["PutObject"] == 1  # three checkpoints and their writes

    expected = [t async for t in saver.alist(thread("one-by-one"))]
    batched = [t async for t in saver.alist(thread("batched"))]
    assert len(batched) == 6 and steps(batched) == steps(expected)
    assert batched[0].parent_config == {"configurable": {
        "thread_id": "batched", "checkpoint_ns": "",
        "checkpoint_id": batched[1].checkpoint["id"]}}
