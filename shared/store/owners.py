"""The cache of which API key's digest owns a thread (api/owners.py says why).

One string per thread, renewed on every post so it outlives no idle thread
by much; the lasting record is in the thread's checkpoints.
"""

from __future__ import annotations

from typing import cast

from redis.asyncio import Redis

from shared.store.keys import owner_key


class OwnerCache:
    def __init__(self, redis: Redis, ttl: int) -> None:
        self.redis = redis
        self.ttl = ttl

    async def get(self, thread_id: str) -> str | None:
        return cast(str | None, await self.redis.get(owner_key(thread_id)))

    async def put(self, thread_id: str, owner: str) -> None:
        await self.redis.set(owner_key(thread_id), owner, ex=self.ttl)

    async def put_first(self, thread_id: str, owner: str) -> bool:
        """Records `owner` unless the thread has one already: of gateways
        racing for a new thread, exactly one wins. True if this one did."""
        return bool(await self.redis.set(owner_key(thread_id), owner, nx=True, ex=self.ttl))

    async def renew(self, thread_id: str) -> None:
        await self.redis.expire(owner_key(thread_id), self.ttl)
