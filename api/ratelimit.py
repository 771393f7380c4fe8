"""The per-client request limit at the gateway, shared by every gateway through Redis.

A moving window (the `limits` library's, as for the LLM limit in
worker/ratelimit.py, but under its own key prefix): no window of
CLIENT_RATE_WINDOW_SECONDS holds more than CLIENT_RATE_LIMIT requests of one
client. A client is its API key's digest, or its address's digest when auth
is off: what the client sent never becomes part of a Redis key.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import ConnectionPool

from api.errors import TooManyRequests
from shared.redis_client import SOCKET_TIMEOUT

KEY_PREFIX = "chat:clientlimit"


class ClientRateLimit:
    """Counts each client's requests; `check` raises TooManyRequests over the limit."""

    def __init__(self, redis_url: str, requests: int, window_seconds: int) -> None:
        self._item = RateLimitItemPerSecond(requests, window_seconds)
        # Our own pool, so the lifespan can close it (the storage has no close).
        self._pool = ConnectionPool.from_url(redis_url, socket_timeout=SOCKET_TIMEOUT,
                                             socket_connect_timeout=2)
        # limits documents `connection_pool` but types its options as scalars.
        storage = RedisStorage(f"async+{redis_url}", implementation="redispy",
                               key_prefix=KEY_PREFIX,
                               connection_pool=self._pool)  # type: ignore[arg-type]
        self._limiter = MovingWindowRateLimiter(storage)

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def check(self, client: str) -> None:
        """Counts one request of `client` (a digest), or raises with when to retry."""
        if await self._limiter.hit(self._item, client):
            return
        stats = await self._limiter.get_window_stats(self._item, client)
        # Whole seconds, rounded up: a client that waits that long gets in.
        wait = max(1, math.ceil(stats.reset_time - time.time()))
        raise TooManyRequests("too many requests; retry after the time in Retry-After",
                              headers={"Retry-After": str(wait)})
