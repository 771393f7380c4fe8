"""The gateway's event reader against a real redis-server, and a Redis Cluster."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from api.errors import TooManyRequests, Unavailable
from api.events import EventHub, Subscription
from shared.job_events import Event
from shared.redis_client import MAX_BLOCK_MS, make_redis
from shared.store.keys import events_key
from tests import servers

# Well under a read's block: an event that waited for one to end is late.
PROMPT = MAX_BLOCK_MS / 1000 / 3


@pytest.fixture
async def hub(redis_url: str) -> AsyncIterator[EventHub]:
    redis = Redis.from_url(redis_url, decode_responses=True)
    yield EventHub(redis, capacity=10)
    await redis.aclose()


async def test_a_subscriber_joining_during_a_read_from_earlier_misses_nothing(
        hub: EventHub) -> None:
    job_id = "hub-join-during-read"
    key = events_key(job_id)
    await hub.redis.delete(key)
    ids = [await hub.redis.xadd(key, {"type": "token", "data": f'{{"n": {n}}}'})
           for n in range(3)]
    async with hub.subscribe(job_id, "client", after=ids[1]) as late:
        reader = hub._readers[None]  # the hub is not started: the test reads
        read = asyncio.create_task(hub._read_once(reader))
        await asyncio.sleep(0)  # the read is on its way, from ids[1]
        async with hub.subscribe(job_id, "client", after="0-0") as early:
            await read
            await hub._read_once(reader)

            got = [(await early.next(1)) for _ in range(3)]
            assert [e.id for e in got if e is not None] == ids
            last = await late.next(1)
            assert last is not None and last.id == ids[2]
            assert await late.next(0.05) is None  # nothing twice
    await hub.redis.delete(key)


async def test_one_client_holds_its_share_of_the_places_and_no_more(redis_url: str) -> None:
    redis = Redis.from_url(redis_url, decode_responses=True)
    hub = EventHub(redis, capacity=3, per_client=2)
    try:
        async with hub.subscribe("j1", "a"), hub.subscribe("j2", "a"):
            with pytest.raises(TooManyRequests, match="one key may"):
                hub.admit("a")
            hub.admit("b")
            async with hub.subscribe("j3", "b"):
                with pytest.raises(Unavailable, match="too many clients"):
                    hub.admit("c")
        hub.admit("a")  # its places are free again
    finally:
        await redis.aclose()


def _slot(job_id: str) -> int:
    return key_slot(events_key(job_id).encode())


def _node(redis: RedisCluster, job_id: str) -> str:
    node = redis.get_node_from_key(events_key(job_id))
    assert node is not None
    return node.name


async def _jobs(redis: Redis | RedisCluster) -> tuple[list[str], str]:
    """Jobs whose streams lie in slots of their own, on every node of a
    cluster, and one more whose stream shares the first one's slot."""
    ids = (f"hub-{uuid.uuid4().hex}" for _ in itertools.count())
    if not isinstance(redis, RedisCluster):
        return [next(ids) for _ in range(3)], next(ids)
    await redis.initialize()
    by_slot: dict[int, str] = {}
    nodes: set[str] = set()
    while len(by_slot) < 6 or len(nodes) < 3:
        job_id = next(ids)
        by_slot.setdefault(_slot(job_id), job_id)
        nodes = {_node(redis, j) for j in by_slot.values()}
    jobs = list(by_slot.values())
    return jobs, next(j for j in ids if _slot(j) == _slot(jobs[0]))


async def _take(sub: Subscription, count: int) -> list[Event]:
    got: list[Event] = []
    for _ in range(count):
        event = await sub.next(PROMPT)
        assert event is not None, f"{sub.job_id}: {len(got)} of {count} events came in time"
        got.append(event)
    return got


async def test_subscribers_joining_blocked_reads_get_every_event_once_in_order(
        server: tuple[str, bool]) -> None:
    url, cluster = server
    redis = make_redis(url, 32, cluster=cluster)
    jobs, sharing = await _jobs(redis)
    first = jobs[0]
    keys = [events_key(j) for j in [*jobs, sharing]]

    async def add(job_id: str, n: int) -> str:
        return str(await redis.xadd(events_key(job_id), {"type": "token", "data": f"{n}"}))

    hub = EventHub(redis, capacity=50)
    hub.start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            early = await stack.enter_async_context(hub.subscribe(first, "a"))
            opening = await add(first, 0)
            assert [e.id for e in await _take(early, 1)] == [opening]
            # The first job's read is blocked now. A job of the same slot, and a
            # second subscriber from the start of the first job, join it: both
            # have events already written, which they get without waiting out
            # that block.
            before = await add(sharing, 0)
            shared = await stack.enter_async_context(hub.subscribe(sharing, "b"))
            late = await stack.enter_async_context(hub.subscribe(first, "b", after="0-0"))
            assert [e.id for e in await _take(shared, 1)] == [before]
            assert [e.id for e in await _take(late, 1)] == [opening]
            # Jobs of other slots (on a cluster, on every node) join while
            # those reads block.
            others = {j: await stack.enter_async_context(hub.subscribe(j, "c"))
                      for j in jobs[1:]}
            sent: dict[str, list[str]] = {j: [] for j in [*jobs, sharing]}
            for n in range(1, 21):
                for job_id in sent:
                    sent[job_id].append(await add(job_id, n))

            for sub in [*others.values(), shared]:
                assert [e.id for e in await _take(sub, 20)] == sent[sub.job_id]
            for sub in (early, late):
                assert [e.id for e in await _take(sub, 20)] == sent[first]
            for sub in [early, late, shared, *others.values()]:
                assert await sub.next(0.05) is None  # nothing twice
            assert hub.healthy
            expected = {_slot(j) for j in sent} if cluster else {None}
            assert set(hub._readers) == expected
            woken = list(hub._wake_renewals)
            assert woken  # the joins woke a blocked read
        await hub.aclose()
        assert not await redis.exists(*woken)  # closing deletes the wake streams
    finally:
        await hub.aclose()
        for key in keys:
            await redis.delete(key)
        await redis.aclose()


async def _until(condition: Callable[[], bool], within: float = 5.0) -> None:
    for _ in range(int(within / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not so after {within}s")


async def test_the_hub_is_unhealthy_while_reads_fail_and_catches_up_after(
        redis_url: str) -> None:
    proxy = servers.TcpProxy(int(redis_url.rsplit(":", 1)[1].split("/")[0])).start()
    redis = make_redis(f"redis://127.0.0.1:{proxy.port}/0", 8)
    direct = Redis.from_url(redis_url, decode_responses=True)
    job_id = f"hub-{uuid.uuid4().hex}"
    hub = EventHub(redis, capacity=10)
    hub.start()
    try:
        async with hub.subscribe(job_id, "a") as sub:
            await _until(lambda: hub._readers[None].blocked)
            proxy.stop()
            await _until(lambda: not hub.healthy)
            written = await direct.xadd(events_key(job_id), {"type": "token", "data": "1"})
            proxy.start()
            event = await sub.next(5)
            assert event is not None and event.id == written
            assert hub.healthy
    finally:
        await hub.aclose()
        await direct.delete(events_key(job_id))
        await direct.aclose()
        await redis.aclose()
        proxy.stop()
