"""Batching a run's events toward the job's event stream (no servers)."""

from __future__ import annotations

import asyncio
import json

from langchain_core.messages import AIMessageChunk

from worker.streaming import EventBatcher, event_type

META = {"langgraph_node": "answer"}


def recording_batcher() -> tuple[EventBatcher, list[list[tuple[str, str]]], asyncio.Event]:
    """A batcher whose batches land in a list; the event is set at each batch."""
    sent: list[list[tuple[str, str]]] = []
    arrived = asyncio.Event()

    async def send(events: list[tuple[str, str]]) -> None:
        sent.append(events)
        arrived.set()

    return EventBatcher(send), sent, arrived


def texts(batch: list[tuple[str, str]]) -> list[str]:
    return [json.loads(data)[0]["content"] for _, data in batch]


async def chunk(batcher: EventBatcher, text: str, message_id: str = "m1") -> None:
    await batcher.add("messages", (AIMessageChunk(content=text, id=message_id), META))


async def test_the_first_event_goes_out_at_once_then_chunks_of_a_message_join() -> None:
    batcher, sent, arrived = recording_batcher()
    await chunk(batcher, "Hello")
    assert [texts(b) for b in sent] == [["Hello"]]

    arrived.clear()
    for word in [" a", " b", " c"]:
        await chunk(batcher, word)
    assert len(sent) == 1  # inside the window: held back
    async with asyncio.timeout(5):
        await arrived.wait()  # flushed by the timer, without a next event
    assert texts(sent[1]) == [" a b c"]

    await chunk(batcher, " d")
    await batcher.close()
    assert "".join(t for b in sent for t in texts(b)) == "Hello a b c d"


async def test_other_messages_and_modes_stay_apart_and_in_order() -> None:
    batcher, sent, _ = recording_batcher()
    await batcher.add("custom", {"progress": 1})
    await chunk(batcher, "x", "m1")
    await chunk(batcher, "y", "m2")
    await batcher.add(event_type("updates", ("sub:1",)), {"step": {"n": 1}})
    await batcher.close()
    types = [t for b in sent for t, _ in b]
    assert types == ["custom", "messages", "messages", "updates|sub:1"]


async def test_a_slow_send_keeps_the_batches_in_order() -> None:
    # The timer's batch is still being sent when the next event finds the
    # window over: the later batch must wait for it, not overtake it.
    sent: list[str] = []
    first_send = asyncio.Event()
    release = asyncio.Event()

    async def send(events: list[tuple[str, str]]) -> None:
        if events[0][0] == "custom" and json.loads(events[0][1]) == 2:
            first_send.set()
            await release.wait()
        sent.extend(data for _, data in events)

    batcher = EventBatcher(send)
    await batcher.add("custom", 1)
    await batcher.add("custom", 2)  # held, then sent by the timer, slowly
    async with asyncio.timeout(5):
        await first_send.wait()
    later = asyncio.create_task(batcher.add("custom", 3))
    await asyncio.sleep(0)
    release.set()
    await later
    await batcher.close()

    assert sent == ["1", "2", "3"]
