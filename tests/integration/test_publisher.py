"""The gateway's turn publisher against a real redis-server as the broker."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator

import pytest
import redis
from kombu.exceptions import OperationalError

from api.publisher import TurnPublisher
from shared.queue import QUEUE, TURN_TASK, make_celery
from shared.settings import Settings
from tests import servers


@pytest.fixture
def broker_url(redis_url: str) -> Iterator[str]:
    """A database of its own, emptied after."""
    url = redis_url.removesuffix("/0") + "/7"
    yield url
    with redis.Redis.from_url(url) as store:
        store.flushdb()


def publisher_for(url: str) -> TurnPublisher:
    settings = Settings(_env_file=None, REDIS_URL=url)  # type: ignore[call-arg]
    return TurnPublisher(make_celery(settings, "gateway"))


async def test_concurrent_nudges_all_reach_the_queue_as_turn_tasks(broker_url: str) -> None:
    publisher = publisher_for(broker_url)
    publisher.start()
    try:
        await asyncio.gather(*(publisher.send(f"job{n}") for n in range(50)))
    finally:
        publisher.stop()

    with redis.Redis.from_url(broker_url) as store:
        messages = [json.loads(raw) for raw in store.lrange(QUEUE, 0, -1)]
    assert len(messages) == 50
    assert {m["headers"]["task"] for m in messages} == {TURN_TASK}
    job_ids = {json.loads(base64.b64decode(m["body"]))[0][0] for m in messages}
    assert job_ids == {f"job{n}" for n in range(50)}


async def test_a_broker_that_is_down_fails_every_waiting_nudge() -> None:
    # Nothing listens on this port.
    publisher = publisher_for(f"redis://127.0.0.1:{servers.free_port()}/0")
    publisher.start()
    try:
        results = await asyncio.wait_for(asyncio.gather(
            *(publisher.send(f"job{n}") for n in range(3)), return_exceptions=True), 30)
    finally:
        publisher.stop()

    assert all(isinstance(r, OperationalError) for r in results), results
