"""Many writers on one thread, through a real S3 server: no checkpoint is ever lost.

Each writer loops: read the latest checkpoint, append its own message, put the
child. A writer that read a thread another writer has moved since must get
``CheckpointConflict`` (and then retries). At the end, the thread's chain of
parents holds exactly the checkpoints whose ``put`` succeeded, and the latest
holds every message they appended, as does the transcript, read back page
by page. Segments are small, so that sealing happens under contention too.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import Checkpoint, CheckpointTuple, empty_checkpoint

from shared.checkpoint import AsyncS3Saver, CheckpointConflict, S3Saver
from tests.helpers import read_transcript

THREAD: RunnableConfig = {"configurable": {"thread_id": "contended", "checkpoint_ns": ""}}
# A transcript of the messages, sealed every 3 of them.
OPTIONS: dict[str, Any] = {"transcript": "messages", "segment_size": 3}


def child_of(saver: Any, latest: CheckpointTuple, label: str) -> Checkpoint:
    checkpoint = empty_checkpoint()
    messages = [*latest.checkpoint["channel_values"]["messages"], f"{label} {'x' * 40}"]
    checkpoint["channel_values"] = {"messages": messages}
    version = latest.checkpoint["channel_versions"]["messages"]
    checkpoint["channel_versions"] = {"messages": saver.get_next_version(version, None)}
    return checkpoint


def write_turns(url: str, endpoint: str, name: str, wins: int, barrier: Any,
                results: Any) -> None:
    """One OS process: ``wins`` successful puts with the sync saver."""
    with S3Saver.from_conn_string(url, endpoint_url=endpoint, region_name="us-east-1",
                                  **OPTIONS) as saver:
        won: list[str] = []
        conflicts = 0
        barrier.wait()
        while len(won) < wins:
            latest = saver.get_tuple(THREAD)
            assert latest is not None
            checkpoint = child_of(saver, latest, f"{name}-{len(won)}")
            try:
                saver.put(latest.config, checkpoint, {"writer": name}, {})
            except CheckpointConflict:
                conflicts += 1
                continue
            won.append(checkpoint["id"])
        results.put((name, won, conflicts))


async def start_thread(url: str, endpoint: str) -> None:
    async with AsyncS3Saver.from_conn_string(url, endpoint_url=endpoint,
                                             region_name="us-east-1") as saver:
        root = empty_checkpoint()
        root["channel_values"] = {"messages": []}
        root["channel_versions"] = {"messages": saver.get_next_version(None, None)}
        await saver.aput(THREAD, root, {"writer": "root"}, {})


async def chain_of(url: str, endpoint: str) -> tuple[list[str], list[str]]:
    """The ids from the latest checkpoint back to the root, and the latest's messages."""
    async with AsyncS3Saver.from_conn_string(url, endpoint_url=endpoint,
                                             region_name="us-east-1", **OPTIONS) as saver:
        every = [t async for t in saver.alist(THREAD)]
        latest = await saver.aget_tuple(THREAD)
        listed = await saver.client.list_objects_v2(
            Bucket=saver.bucket, Prefix=saver.keys.thread("contended"))
        transcript = await read_transcript(saver, "contended", limit=4)
    assert latest is not None
    # Segments were sealed while the writers raced, and hold the messages once each.
    assert any("/seg/" in o["Key"] for o in listed.get("Contents", []))
    assert transcript == latest.checkpoint["channel_values"]["messages"]
    parents = {t.checkpoint["id"]: t.parent_config for t in every}
    chain, current = [], latest.checkpoint["id"]
    while True:
        chain.append(current)
        parent = parents[current]
        if parent is None:
            return chain, latest.checkpoint["channel_values"]["messages"]
        current = parent["configurable"]["checkpoint_id"]


def assert_nothing_lost(chain: list[str], messages: list[str], won: dict[str, list[str]]) -> None:
    every_win = [cid for ids in won.values() for cid in ids]
    assert len(chain) == len(every_win) + 1  # the root, then one per successful put
    assert set(chain[:-1]) == set(every_win)
    labels = {m.split()[0] for m in messages}
    assert labels == {f"{name}-{i}" for name, ids in won.items() for i in range(len(ids))}


async def test_saver_instances_in_one_process_never_lose_a_checkpoint(
    s3_endpoint: str, s3_bucket: str
) -> None:
    url = f"s3://{s3_bucket}/in-process/"
    await start_thread(url, s3_endpoint)

    async def writer(name: str) -> tuple[list[str], int]:
        async with AsyncS3Saver.from_conn_string(url, endpoint_url=s3_endpoint,
                                                 region_name="us-east-1", **OPTIONS) as saver:
            won: list[str] = []
            conflicts = 0
            while len(won) < 8:
                latest = await saver.aget_tuple(THREAD)
                assert latest is not None
                checkpoint = child_of(saver, latest, f"{name}-{len(won)}")
                try:
                    await saver.aput(latest.config, checkpoint, {"writer": name}, {})
                except CheckpointConflict:
                    conflicts += 1
                    continue
                won.append(checkpoint["id"])
            return won, conflicts

    names = ["a", "b", "c", "d"]
    outcomes = await asyncio.gather(*(writer(n) for n in names))

    chain, messages = await chain_of(url, s3_endpoint)
    assert_nothing_lost(chain, messages, {n: o[0] for n, o in zip(names, outcomes, strict=True)})
    print("conflicts per writer:", [o[1] for o in outcomes])
    assert sum(o[1] for o in outcomes) > 0  # they did collide


async def test_writer_processes_never_lose_a_checkpoint(s3_endpoint: str, s3_bucket: str) -> None:
    url = f"s3://{s3_bucket}/processes-{uuid.uuid4().hex[:6]}/"
    await start_thread(url, s3_endpoint)
    context = multiprocessing.get_context("spawn")
    names = ["p1", "p2", "p3"]
    barrier = context.Barrier(len(names))
    results = context.Queue()
    processes = [
        context.Process(target=write_turns, args=(url, s3_endpoint, n, 10, barrier, results))
        for n in names
    ]
    for process in processes:
        process.start()
    try:
        outcomes = await asyncio.to_thread(lambda: [results.get(timeout=90) for _ in names])
    finally:
        for process in processes:
            await asyncio.to_thread(process.join, 30)
    assert all(p.exitcode == 0 for p in processes)

    chain, messages = await chain_of(url, s3_endpoint)
    assert_nothing_lost(chain, messages, {name: won for name, won, _ in outcomes})
    print("conflicts per process:", [conflicts for _, _, conflicts in outcomes])
    assert sum(conflicts for _, _, conflicts in outcomes) > 0  # they did collide
