"""The global LLM window shared fairly between clients, against a real redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from shared.store.limits import FairWindow
from tests.helpers import empty_database

PERIOD = 1


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    async with empty_database(redis_url, 7) as client:
        yield client


async def first_hit(window: FairWindow, client: str, within: float = 5.0) -> float:
    """Tries as a worker would (waiting what it is told) until `client`'s hit
    counts; the seconds that took."""
    started = time.monotonic()
    while (wait := await window.hit(client)) > 0:
        assert time.monotonic() - started < within, f"{client} never got a call"
        await asyncio.sleep(wait)
    return time.monotonic() - started


async def test_alone_a_client_has_the_whole_window(redis: Redis) -> None:
    window = FairWindow(redis, "test:fair", calls=4, period=60)

    assert [await window.hit("a") for _ in range(4)] == [0.0] * 4
    wait = await window.hit("a")

    assert 59 < wait <= 60  # until its first call leaves the window


async def test_while_another_waits_a_client_gets_its_share_only(redis: Redis) -> None:
    window = FairWindow(redis, "test:fair", calls=4, period=PERIOD)
    assert [await window.hit("a") for _ in range(4)] == [0.0] * 4
    assert await window.hit("b") > 0  # the window is full: b waits
    assert await window.hit("a") > 0

    await first_hit(window, "a")  # the window has moved on
    second = await window.hit("a")
    third = await window.hit("a")  # over its share (2 of 4) while b waits
    b_waited = await first_hit(window, "b", within=PERIOD)

    assert second == 0.0 and third > 0
    assert b_waited < PERIOD / 2  # b's call came within one share of the window
    assert await window.hit("a") == 0.0  # no one waits now: a has the rest
