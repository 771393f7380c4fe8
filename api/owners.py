"""Which API key a thread belongs to.

The record that lasts is in the thread's storage: the worker writes the
owner (its key's digest) into the metadata of every checkpoint it saves
(worker/turn.py), so it survives restarts and Redis losing its data. Reads
of a stored thread check that metadata.

Posting needs an answer before the first checkpoint exists, and one answer
across all gateways, so Redis holds a cache: the first key to post to a
thread claims it with SET NX. On a cache miss the checkpoint decides, when
there is one. A thread stored without an owner (made while auth was off)
belongs to no key.

With auth off every owner is "" and nothing here is consulted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from shared.checkpoint import AsyncS3Saver
from shared.conversation import stored_owner
from shared.store.owners import OwnerCache


async def load(saver: AsyncS3Saver, thread_id: str) -> Mapping[str, Any] | None:
    """The metadata of the thread's latest checkpoint (not its messages), or None."""
    return await saver.aget_metadata(thread_id)


class ThreadOwners:
    """The accept path's view of thread ownership: Redis, backed by storage."""

    def __init__(self, redis: Redis, saver: AsyncS3Saver, ttl: int) -> None:
        self.saver = saver
        # Renewed on every post, so the cache outlives no idle thread by much.
        self.cache = OwnerCache(redis, ttl)

    async def claim_new(self, thread_id: str, owner: str) -> None:
        """Records the owner of a thread whose id the gateway has just made."""
        await self.cache.put(thread_id, owner)

    async def cached(self, thread_id: str) -> str | None:
        """The owner Redis knows of, if any."""
        return await self.cache.get(thread_id)

    async def claim(self, thread_id: str, owner: str) -> bool:
        """True if the thread is `owner`'s, taking it if no one has it yet."""
        cached = await self.cache.get(thread_id)
        if cached is None:
            saved = await load(self.saver, thread_id)
            candidate = owner if saved is None else stored_owner(saved)
            if await self.cache.put_first(thread_id, candidate):
                cached = candidate
            else:
                cached = await self.cache.get(thread_id)
        if cached != owner:
            return False
        await self.cache.renew(thread_id)
        return True
