"""The gateway's event reader against a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from api.errors import TooManyRequests, Unavailable
from api.events import EventHub
from shared.store.keys import events_key


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
        read = asyncio.create_task(hub._read_once())
        await asyncio.sleep(0)  # the read is on its way, from ids[1]
        async with hub.subscribe(job_id, "client", after="0-0") as early:
            await read
            await hub._read_once()

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
