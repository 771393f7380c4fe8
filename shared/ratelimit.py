"""Moving-window limits on Redis, shared by every process that counts the same thing.

The `limits` library's moving window (one atomic Lua script per hit): no
window of `period` seconds holds more than `calls` hits of one name. Token
buckets and GCRA let up to 2N-1 hits into a window sized for N, so they will
not do for a limit that a provider or a tenant relies on.
"""

from __future__ import annotations

import time

from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis


class MovingWindow:
    """Counts hits per name in Redis, on the caller's connection pool."""

    def __init__(self, redis: Redis, key_prefix: str, calls: int, period: int) -> None:
        self._item = RateLimitItemPerSecond(calls, period)
        # limits documents `connection_pool` but types its options as scalars.
        storage = RedisStorage(
            "async+redis://", implementation="redispy", key_prefix=key_prefix,
            connection_pool=redis.connection_pool)  # type: ignore[arg-type]
        self._limiter = MovingWindowRateLimiter(storage)

    async def hit(self, name: str) -> float:
        """Counts one hit now: 0.0 if it fits, else the seconds until one would
        (nothing counted)."""
        if await self._limiter.hit(self._item, name):
            return 0.0
        return await self._wait(name)

    async def _wait(self, name: str) -> float:
        stats = await self._limiter.get_window_stats(self._item, name)
        return max(0.05, stats.reset_time - time.time())
