"""The global LLM rate limit, shared by every worker through Redis.

No window of RATE_LIMIT_PERIOD seconds holds more than RATE_LIMIT_CALLS starts,
across all workers (shared/ratelimit.py). Celery's own `rate_limit` is a token
bucket in each worker: three workers would run three times the limit. The
window is shared fairly between clients (API keys, or addresses): while
another client's runs wait for it, one client gets an equal share at most,
so a key with hundreds of turns queued cannot make every other key wait
behind them.

A provider 429 with Retry-After pauses every worker: the pause is a Redis key
that expires when the provider said to come back.
"""

from __future__ import annotations

import time
from typing import Any

from langchain_core.callbacks import AsyncCallbackHandler
from redis.asyncio import Redis

from shared import metrics
from shared.ratelimit import FairWindow
from shared.store.keys import LLM_LIMIT_PREFIX, LLM_PAUSE_KEY
from worker.errors import RateLimited

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
        self._window = FairWindow(redis, LLM_LIMIT_PREFIX, calls, period)
        self._pause = redis.register_script(_PAUSE)

    async def count_turn(self, client: str) -> float:
        """Counts the run's first LLM call as the run begins: 0.0 if it may
        go on, else the seconds to wait (nothing counted).

        Counting here rather than looking first and counting at the call saves
        a script per turn: the run's gate (`LlmGate(prepaid=True)`) lets its
        first call through without counting it again. A run that fails before
        its call has used a slot: the window errs towards fewer calls, never
        more.
        """
        try:
            await self.acquire(client)
        except RateLimited as limited:
            return limited.retry_after or 0.05
        return 0.0

    async def acquire(self, client: str) -> None:
        """Counts one call of `client`'s starting now, or raises RateLimited
        with the wait."""
        paused = await self._paused_for()
        if paused > 0:
            raise RateLimited(paused)
        wait = await self._window.hit(client)
        if wait > 0:
            raise RateLimited(wait)

    async def _paused_for(self) -> float:
        paused = await self._redis.get(LLM_PAUSE_KEY)
        return max(0.0, float(paused) - time.time()) if paused is not None else 0.0

    async def pause(self, seconds: float) -> None:
        """Stops every worker's LLM calls for `seconds` (a provider's Retry-After)."""
        await self._pause(keys=[LLM_PAUSE_KEY], args=[time.time() + seconds])


class LlmGate(AsyncCallbackHandler):
    """Holds every chat-model call of one run to the global limit, whatever graph makes it.

    LangChain tells the run's callbacks when a chat model call starts;
    raising there stops the call before its request is sent. `prepaid`: the
    run's first call was counted when it began (`count_turn`).
    """

    raise_error = True  # LangChain swallows a handler's errors unless this is set
    run_inline = True  # awaited in place, not gathered as a task of its own
    # Only a chat model's start matters: no other event is sent here at all
    # (not even each token, which would cost a task per token).
    ignore_llm = True
    ignore_chain = True
    ignore_agent = True
    ignore_retriever = True
    ignore_retry = True
    ignore_custom_event = True

    def __init__(self, limiter: LlmRateLimit, client: str, prepaid: bool) -> None:
        self._limiter = limiter
        self._client = client
        self._prepaid = prepaid

    async def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        if self._prepaid:
            self._prepaid = False
        else:
            await self._limiter.acquire(self._client)  # raises when the call may not start
        metrics.LLM_CALLS.inc()
