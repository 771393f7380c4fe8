"""The global LLM rate limit, shared by every worker through Redis.

No window of RATE_LIMIT_PERIOD seconds holds more than RATE_LIMIT_CALLS starts,
across all workers (shared/store/limits.py). Celery's own `rate_limit` is a token
bucket in each worker: three workers would run three times the limit. The
window is shared fairly between clients (API keys, or addresses): while
another client's runs wait for it, one client gets an equal share at most,
so a key with hundreds of turns queued cannot make every other key wait
behind them.

A provider 429 with Retry-After pauses every worker: the pause is a Redis key
that expires when the provider said to come back (its time to live is the
pause, so no worker's clock enters it).
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackHandler
from redis.asyncio import Redis

from shared import metrics
from shared.store.limits import LlmWindow
from worker.errors import RateLimited


class LlmRateLimit:
    """Decides whether an LLM call may start now, or how long to wait."""

    def __init__(self, redis: Redis, calls: int, period: int) -> None:
        self._window = LlmWindow(redis, calls, period)

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
        paused = await self._window.paused_for()
        if paused > 0:
            raise RateLimited(paused)
        wait = await self._window.hit(client)
        if wait > 0:
            raise RateLimited(wait)

    async def pause(self, seconds: float) -> None:
        """Stops every worker's LLM calls for `seconds` (a provider's Retry-After)."""
        await self._window.pause(seconds)


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
