"""The global LLM rate limit, shared by every worker through Redis.

A moving window (the `limits` library's, one atomic Lua script per hit): no
window of RATE_LIMIT_PERIOD seconds holds more than RATE_LIMIT_CALLS starts,
across all workers. Celery's own `rate_limit` is per worker, and token
buckets let up to 2N-1 calls into a window, so neither will do.

A provider 429 with Retry-After pauses every worker: the pause is a Redis key
that expires when the provider said to come back.
"""

from __future__ import annotations

import time

from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis

from worker.errors import RateLimited

PAUSE_KEY = "chat:llm:paused_until"
_LIMIT_KEY = "llm-calls"

# Keeps the later of two pauses: a short Retry-After must not cut a long one.
_PAUSE = """
local deadline = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if deadline > current then
  redis.call('SET', KEYS[1], ARGV[1], 'PXAT', math.ceil(deadline * 1000))
end
"""


class LlmRateLimit:
    """Decides whether an LLM call may start now, or how long to wait."""

    def __init__(self, redis: Redis, redis_url: str, calls: int, period: int) -> None:
        self._redis = redis
        self._item = RateLimitItemPerSecond(calls, period)
        storage = RedisStorage(f"async+{redis_url}", implementation="redispy",
                               key_prefix="chat:ratelimit")
        self._limiter = MovingWindowRateLimiter(storage)
        self._pause = redis.register_script(_PAUSE)

    async def wait_needed(self) -> float:
        """The seconds to wait before a call could start (0: now), counting nothing.

        A cheap look before a turn's work begins; `acquire` decides.
        """
        paused = await self._paused_for()
        if paused > 0:
            return paused
        if await self._limiter.test(self._item, _LIMIT_KEY):
            return 0.0
        return await self._until_free()

    async def acquire(self) -> None:
        """Counts one call starting now, or raises RateLimited with the wait.

        Called right before the LLM request, so the window counts real starts.
        """
        paused = await self._paused_for()
        if paused > 0:
            raise RateLimited(paused)
        if not await self._limiter.hit(self._item, _LIMIT_KEY):
            raise RateLimited(await self._until_free())

    async def _paused_for(self) -> float:
        paused = await self._redis.get(PAUSE_KEY)
        return max(0.0, float(paused) - time.time()) if paused is not None else 0.0

    async def _until_free(self) -> float:
        stats = await self._limiter.get_window_stats(self._item, _LIMIT_KEY)
        return max(0.05, stats.reset_time - time.time())

    async def pause(self, seconds: float) -> None:
        """Stops every worker's LLM calls for `seconds` (a provider's Retry-After)."""
        await self._pause(keys=[PAUSE_KEY], args=[time.time() + seconds])
