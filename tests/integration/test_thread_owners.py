"""Thread ownership on the accept path: the Redis claim, and storage when Redis forgets."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from api.owners import ThreadOwners
from shared.checkpoint import AsyncS3Saver
from shared.redis_client import make_redis
from shared.store.keys import owner_key


class StoredThreads:
    """Stands in for the saver: the metadata of each thread's latest checkpoint."""

    def __init__(self, **metadata: dict[str, Any]) -> None:
        self.metadata = metadata

    async def aget_metadata(self, thread_id: str) -> dict[str, Any] | None:
        return self.metadata.get(thread_id)


@pytest.fixture
async def make_owners(redis_url: str) -> AsyncIterator[Any]:
    redis = make_redis(redis_url, 8)

    def build(stored: StoredThreads) -> ThreadOwners:
        return ThreadOwners(redis, cast(AsyncS3Saver, stored), ttl=60)

    yield build
    await redis.aclose()


def new_thread() -> str:
    return f"t-{uuid.uuid4().hex}"


async def test_the_first_owner_to_post_keeps_the_thread(make_owners: Any) -> None:
    owners, thread = make_owners(StoredThreads()), new_thread()

    assert await owners.claim(thread, "alice")
    assert not await owners.claim(thread, "bob")
    assert await owners.claim(thread, "alice")
    assert 0 < await owners.cache.redis.ttl(owner_key(thread)) <= 60


async def test_racing_owners_of_a_new_thread_get_one_winner(make_owners: Any) -> None:
    owners, thread = make_owners(StoredThreads()), new_thread()

    won = await asyncio.gather(*(owners.claim(thread, f"owner{n}") for n in range(8)))

    assert sorted(won) == [False] * 7 + [True]


async def test_storage_decides_when_redis_has_forgotten(make_owners: Any) -> None:
    thread, legacy = new_thread(), new_thread()
    stored: dict[str, dict[str, Any]] = {thread: {"owner": "alice"}, legacy: {"step": 1}}
    owners = make_owners(StoredThreads(**stored))

    assert not await owners.claim(thread, "bob")
    assert await owners.claim(thread, "alice")
    # Stored while auth was off: nobody's, so no key may take it over.
    assert not await owners.claim(legacy, "bob")
    assert not await owners.claim(legacy, "alice")


async def test_a_thread_the_gateway_made_is_its_poster_s_at_once(make_owners: Any) -> None:
    owners, thread = make_owners(StoredThreads()), new_thread()

    await owners.claim_new(thread, "alice")

    assert not await owners.claim(thread, "bob")
    assert await owners.claim(thread, "alice")
