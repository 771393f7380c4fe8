"""The per-client request limit at the gateway, shared by every gateway through Redis.

No window of CLIENT_RATE_WINDOW_SECONDS holds more than CLIENT_RATE_LIMIT
requests of one client. A client is its API key's digest, or its address's
digest when auth is off: what the client sent never becomes part of a Redis key.
"""

from __future__ import annotations

import math

from redis.asyncio import Redis

from api.errors import TooManyRequests
from shared.store.limits import client_window


class ClientRateLimit:
    """Counts each client's requests; `check` raises TooManyRequests over the limit."""

    def __init__(self, redis: Redis, requests: int, window_seconds: int) -> None:
        self._window = client_window(redis, requests, window_seconds)

    async def aclose(self) -> None:
        await self._window.aclose()

    async def check(self, client: str) -> None:
        """Counts one request of `client` (a digest), or raises with when to retry."""
        wait = await self._window.hit(client)
        if wait > 0:
            # Whole seconds, rounded up: a client that waits that long gets in.
            raise TooManyRequests("too many requests; retry after the time in Retry-After",
                                  headers={"Retry-After": str(max(1, math.ceil(wait)))})
