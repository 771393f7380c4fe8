"""The global LLM rate limit, shared by every worker through Redis.

No window of RATE_LIMIT_PERIOD seconds holds more than RATE_LIMIT_CALLS starts,
across all workers (shared/ratelimit.py). Celery's own `rate_limit` is a token
bucket in each worker: three workers would run three times the limit.

A provider 429 with Retry-After pauses every worker: the pause is a Redis key
that expires when the provider said to come back.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from shared.keys import LLM_LIMIT_PREFIX, LLM_PAUSE_KEY
from shared.ratelimit import MovingWindow
from worker.errors import RateLimited

_LIMIT_NAME = "llm-calls"

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

    def __init__(self, redis: Redis, calls: int, period: int) -> None:
        self._redis = redis
        self._window = MovingWindow(redis, LLM_LIMIT_PREFIX, calls, period)
        self._pause = redis.register_script(_PAUSE)

    async def wait_needed(self) -> float:
        """The seconds to wait before a call could start (0: now), counting nothing.

        A cheap look before a turn's work begins; `acquire` decides.
        """
        paused = await self._paused_for()
        if paused > 0:
            return paused
        return await self._window.wait_needed(_LIMIT_NAME)

    async def acquire(self) -> None:
        """Counts one call starting now, or raises RateLimited with the wait.

        Called right before the LLM request, so the window counts real starts.
        """
        paused = await self._paused_for()
        if paused > 0:
            raise RateLimited(paused)
        wait = await self._window.hit(_LIMIT_NAME)
        if wait > 0:
            raise RateLimited(wait)

    async def _paused_for(self) -> float:
        paused = await self._redis.get(LLM_PAUSE_KEY)
        return max(0.0, float(paused) - time.time()) if paused is not None else 0.0

    async def pause(self, seconds: float) -> None:
        """Stops every worker's LLM calls for `seconds` (a provider's Retry-After)."""
        await self._pause(keys=[LLM_PAUSE_KEY], args=[time.time() + seconds])
