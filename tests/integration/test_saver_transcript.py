"""The transcript against a real S3 server: pages, costs, sealing races, encryption, migration.

The chat graph keeps a window of messages in its state; the saver keeps
every message in the transcript, sealed into segments. Races are staged
request by request on the sync saver's plans, so each interleaving is exact.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import Checkpoint, CheckpointTuple, empty_checkpoint

from graphs.chat import build_graph
from graphs.llm import ECHO_LABEL, EchoChatModel
from shared.checkpoint import CheckpointConflict, S3Saver, S3SaverError
from shared.checkpoint import _puts as puts
from shared.checkpoint._codec import FORMAT_VERSION, version_of
from shared.checkpoint._requests import Locked, Plan, PlanCursor, Put, Request
from shared.conversation import human_message
from tests.helpers import VARIANTS, RequestCounter, all_objects, read_transcript, thread

LEGACY = Path(__file__).parent.parent / "data" / "format2_thread.json"
KEYS = {"plain": None, "encrypted": bytes(range(32))}


async def chat(saver: Any, thread_id: str, turns: range, window: int = 4) -> None:
    graph = build_graph(EchoChatModel(), saver, 1000, window_messages=window)
    for n in turns:
        await graph.ainvoke(
            {"messages": [human_message(f"j{n}", f"question {n}", 1700000000.0 + n)]},
            {"configurable": {"thread_id": thread_id}}, durability="exit")


def texts_of(turns: range) -> list[str]:
    return [t for n in turns for t in (f"question {n}", f"{ECHO_LABEL} question {n}")]


@pytest.mark.parametrize("make_saver", VARIANTS, indirect=True)
@pytest.mark.parametrize("encryption", list(KEYS))
async def test_pages_walk_the_whole_conversation_across_segments(
    make_saver: Any, encryption: str
) -> None:
    options = {"transcript": "messages", "segment_size": 5, "encryption_key": KEYS[encryption]}
    await chat(make_saver(**options), "walk", range(13))

    latest = await make_saver(**options).aget_tuple(thread("walk"))
    assert latest is not None and len(latest.checkpoint["channel_values"]["messages"]) == 4
    for limit in (1, 4, 7, 100):
        # Cold, as a gateway that never saw the thread.
        messages = await read_transcript(make_saver(**options), "walk", limit=limit)
        assert [m.content for m in messages] == texts_of(range(13))
        assert [type(m) for m in messages] == [HumanMessage, AIMessage] * 13


@pytest.mark.parametrize("make_saver", VARIANTS, indirect=True)
async def test_a_turn_and_a_page_cost_the_same_at_any_length(make_saver: Any) -> None:
    options = {"transcript": "messages", "segment_size": 6, "keep_last": 3}
    per_turn = []
    with RequestCounter(make_saver().client) as requests:
        for n in range(30):
            await chat(make_saver(**options), "long", range(n, n + 1))  # a cold worker each turn
            per_turn.append(requests.take())
        # Every turn: one GET and one PUT of the head; a turn that seals, one more PUT.
        assert all(ops["GetObject"] == 1 for ops in per_turn)
        assert {ops["PutObject"] for ops in per_turn} == {1, 2}
        assert all(set(ops) == {"GetObject", "PutObject"} for ops in per_turn)
        sealing = sum(ops["PutObject"] == 2 for ops in per_turn)
        assert sealing == (60 - 6) // 6  # each segment once, as soon as it is committed

        before = None
        while True:
            page = await make_saver(**options).aget_transcript("long", before=before, limit=6)
            assert page is not None
            assert sum(requests.take().values()) <= 2
            if page.start == 0:
                break
            before = page.start


@pytest.mark.parametrize("role", ["another thread's head", "another segment"])
async def test_an_object_moved_elsewhere_fails_to_decrypt(
    make_saver: Any, sync_client: Any, bucket: str, prefix: str, role: str
) -> None:
    options = {"transcript": "messages", "segment_size": 4, "encryption_key": KEYS["encrypted"]}
    saver = make_saver(**options)
    await chat(saver, "source", range(6))
    await chat(saver, "victim", range(1))
    keys = list(await all_objects(sync_client, bucket, prefix))
    segments = sorted(k for k in keys if k.startswith("source/") and "/seg/" in k)
    assert len(segments) == 2
    source, target = {
        "another thread's head": ("source/ns./head", "victim/ns./head"),
        "another segment": (segments[0], segments[1]),
    }[role]
    sync_client.copy_object(Bucket=bucket, Key=prefix + target,
                            CopySource={"Bucket": bucket, "Key": prefix + source})

    reader = make_saver(**options)
    with pytest.raises(S3SaverError, match="decrypt"):
        if role == "another segment":
            await read_transcript(reader, "source", limit=4)
        else:
            await reader.aget_tuple(thread("victim"))


async def test_copy_and_delete_carry_the_segments(
    make_saver: Any, sync_client: Any, bucket: str, prefix: str
) -> None:
    options = {"transcript": "messages", "segment_size": 4, "encryption_key": KEYS["encrypted"]}
    saver = make_saver(**options)
    await chat(saver, "original", range(7))
    await saver.acopy_thread("original", "copy")
    await chat(saver, "copy", range(7, 8))

    copied = await read_transcript(make_saver(**options), "copy")
    original = await read_transcript(make_saver(**options), "original")
    assert [m.content for m in copied] == texts_of(range(8))
    assert [m.content for m in original] == texts_of(range(7))
    await saver.adelete_thread("copy")
    await saver.adelete_thread("original")
    assert await all_objects(sync_client, bucket, prefix) == {}


# --- races, staged request by request ----------------------------------------------------


def steps(saver: S3Saver, plan: Plan[Any]) -> Generator[Request, None, Any]:
    """Run a plan on the sync saver's store, yielding each request before it is sent."""
    cursor = PlanCursor(plan)
    while (step := cursor.next()) is not None:
        try:
            if isinstance(step, Locked):
                cursor.reply((yield from steps(saver, step.plan)))
            else:
                assert isinstance(step, Request.__args__)  # type: ignore[attr-defined]
                yield step
                cursor.reply(saver._store.execute(step))
        except S3SaverError as exc:
            cursor.fail(exc)
    return cursor.value


def sealed_then_paused(saver: S3Saver, plan: Plan[Any]) -> Generator[Request, None, Any]:
    """Start ``plan`` and stop it right after it sealed a segment (before its head PUT)."""
    run = steps(saver, plan)
    request = next(run)
    while not (isinstance(request, Put) and "/seg/" in request.key):
        request = next(run)
    following = next(run)  # performs the segment PUT, stops before the next request
    assert isinstance(following, Put) and following.key.endswith("/head")
    return run


def finish(run: Generator[Request, None, Any]) -> Any:
    try:
        while True:
            next(run)
    except StopIteration as stop:
        return stop.value


def child(saver: S3Saver, latest: CheckpointTuple, *added: str) -> Checkpoint:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {
        "messages": [*latest.checkpoint["channel_values"]["messages"], *added]}
    version = latest.checkpoint["channel_versions"]["messages"]
    checkpoint["channel_versions"] = {"messages": saver.get_next_version(version, None)}
    return checkpoint


def turn(saver: S3Saver, *added: str) -> RunnableConfig:
    latest = saver.get_tuple(thread("raced"))
    assert latest is not None
    return saver.put(latest.config, child(saver, latest, *added), {}, {})


@pytest.fixture
def raced(sync_client: Any, bucket: str, prefix: str) -> Any:
    """Builds sync savers on a thread whose committed tail holds a full segment (4)."""

    def build() -> S3Saver:
        return S3Saver(sync_client, bucket, prefix, transcript="messages", segment_size=4)

    first = build()
    root = empty_checkpoint()
    root["channel_values"] = {"messages": []}
    root["channel_versions"] = {"messages": first.get_next_version(None, None)}
    first.put(thread("raced"), root, {}, {})
    turn(first, "m0", "m1")
    turn(first, "m2", "m3")
    return build


async def test_a_sealing_turn_racing_another_writer(raced: Any) -> None:
    a, b = raced(), raced()
    seen_by_a, seen_by_b = a.get_tuple(thread("raced")), b.get_tuple(thread("raced"))
    assert seen_by_a is not None and seen_by_b is not None
    # B seals segment 0 and stalls; A seals it too (already there), and wins the head.
    paused = sealed_then_paused(b, puts.put(b, seen_by_b.config, child(b, seen_by_b, "b0"),
                                             {}, {}))
    a.put(seen_by_a.config, child(a, seen_by_a, "a0", "a1"), {}, {})
    with pytest.raises(CheckpointConflict):
        finish(paused)

    turn(b, "b0")  # B reloads and redoes its turn
    pages = await read_transcript(ThreadedReader(raced()), "raced", limit=3)
    assert pages == ["m0", "m1", "m2", "m3", "a0", "a1", "b0"]


async def test_a_prune_racing_a_sealing_writer_deletes_nothing_it_names(
    raced: Any, sync_client: Any, bucket: str, prefix: str
) -> None:
    writer, pruner = raced(), raced()
    seen = writer.get_tuple(thread("raced"))
    assert seen is not None
    paused = sealed_then_paused(
        writer, puts.put(writer, seen.config, child(writer, seen, "w0"), {}, {}))
    pruner.prune(["raced"])
    with pytest.raises(CheckpointConflict):
        finish(paused)
    turn(writer, "w0")
    turn(writer, "w1", "w2", "w3")
    turn(writer, "w4")  # seals a second segment after the prune

    keys = await all_objects(sync_client, bucket, prefix)
    assert sum("/seg/" in k for k in keys) == 2
    reader = raced()
    assert len(list(reader.list(thread("raced")))) == 4  # the latest kept, then three turns
    pages = await read_transcript(ThreadedReader(reader), "raced", limit=2)
    assert pages == ["m0", "m1", "m2", "m3", "w0", "w1", "w2", "w3", "w4"]


class ThreadedReader:
    """The sync saver's transcript pages behind the async call ``read_transcript`` makes."""

    def __init__(self, saver: S3Saver) -> None:
        self.saver = saver

    async def aget_transcript(self, thread_id: str, *, before: int | None, limit: int) -> Any:
        return self.saver.get_transcript(thread_id, before=before, limit=limit)


# --- the previous format ----------------------------------------------------------------


@pytest.mark.parametrize("make_saver", VARIANTS, indirect=True)
@pytest.mark.parametrize("encryption", list(KEYS))
async def test_a_thread_in_the_previous_format_is_read_and_continued(
    make_saver: Any, sync_client: Any, bucket: str, prefix: str, encryption: str
) -> None:
    stored = json.loads(LEGACY.read_text())
    for key, body in stored[encryption].items():
        sync_client.put_object(Bucket=bucket, Key=prefix + key, Body=base64.b64decode(body))
    key = base64.b64decode(stored["key"]) if encryption == "encrypted" else None
    options = {"transcript": "messages", "segment_size": 50, "keep_last": 20,
               "encryption_key": key}

    old = await make_saver(**options).aget_tuple(thread("old-thread"))
    assert old is not None
    history = old.checkpoint["channel_values"]["messages"]
    assert [m.content for m in history[::2]] == [f"question {i}" for i in range(60)]
    assert len(await read_transcript(make_saver(**options), "old-thread")) == 120

    await chat(make_saver(**options), "old-thread", range(2), window=6)

    objects = await all_objects(sync_client, bucket, prefix)
    assert not any("/base/" in k for k in objects)  # migrated: the old bases are gone
    assert version_of(objects["old-thread/ns./head"]) == FORMAT_VERSION
    assert sum("/seg/" in k for k in objects) == 2
    everything = await read_transcript(make_saver(**options), "old-thread", limit=30)
    assert [m.content for m in everything[:120]] == [m.content for m in history]
    assert [m.content for m in everything[120:]] == texts_of(range(2))
    latest = await make_saver(**options).aget_tuple(thread("old-thread"))
    assert latest is not None and len(latest.checkpoint["channel_values"]["messages"]) == 6
    if key is not None:
        assert not any(b"question 7" in body for body in objects.values())


def test_a_saver_without_a_transcript_serves_no_pages(sync_client: Any, bucket: str) -> None:
    with pytest.raises(ValueError, match="transcript"):
        S3Saver(sync_client, bucket, "p/").get_transcript("t")
