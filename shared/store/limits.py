"""Moving-window limits on Redis, shared by every process that counts the same thing.

A moving window: no window of `period` seconds holds more than `calls` hits.
Token buckets and GCRA let up to 2N-1 hits into a window sized for N, so they
will not do for a limit that a provider or a tenant relies on. `MovingWindow`
is the `limits` library's (one atomic Lua script per hit). `FairWindow` is
ours, as `limits` has no shares: the same window, shared fairly between the
clients that want it, in one script per hit too.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import cast

from limits import RateLimitItemPerSecond
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis

from shared.store._script import Script
from shared.store._window_storage import close_storage, window_storage
from shared.store.keys import CLIENT_LIMIT_PREFIX, llm_limit_prefix, llm_pause_key


class MovingWindow:
    """Counts hits per name in Redis, on the caller's connection pool (on a
    Redis Cluster, a client of its own: see _window_storage.py)."""

    def __init__(self, redis: Redis, key_prefix: str, calls: int, period: int) -> None:
        self._item = RateLimitItemPerSecond(calls, period)
        self._storage = window_storage(redis, key_prefix)
        self._limiter = MovingWindowRateLimiter(self._storage)

    async def aclose(self) -> None:
        await close_storage(self._storage)

    async def hit(self, name: str) -> float:
        """Counts one hit now: 0.0 if it fits, else the seconds until one would
        (nothing counted)."""
        if await self._limiter.hit(self._item, name):
            return 0.0
        return await self._wait(name)

    async def _wait(self, name: str) -> float:
        stats = await self._limiter.get_window_stats(self._item, name)
        # The limits library stamps its windows with this process's clock, so
        # the wait is counted on it too (not on Redis's, as the rest here).
        return max(0.05, stats.reset_time - time.time())


# One hit for `client`, as `member` (a new one): `hits`, the window's hits
# (member -> start time); `mine`, the client's own; `waiting`, the clients
# turned away lately (client -> time). While other clients wait, a client
# gets at most an equal share of the window's `calls` per `period` seconds.
# Returns "0" when the hit is counted, else the seconds to wait before
# trying again.
_FAIR_HIT_KEYS, _FAIR_HIT_ARGS = ("hits", "mine", "waiting"), ("calls", "period", "client",
                                                               "member")
_FAIR_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local most, seconds = tonumber(calls), tonumber(period)
for _, key in ipairs({hits, mine}) do redis.call('ZREMRANGEBYSCORE', key, '-inf', now - seconds) end
-- A client turned away waits up to a window to try again: it counts as
-- waiting for two.
redis.call('ZREMRANGEBYSCORE', waiting, '-inf', now - 2 * seconds)
local function turned_away(wait)
  redis.call('ZADD', waiting, now, client)
  redis.call('EXPIRE', waiting, math.ceil(2 * seconds))
  return tostring(math.max(0.05, wait))
end
if redis.call('ZCARD', hits) >= most then
  local oldest = redis.call('ZRANGE', hits, 0, 0, 'WITHSCORES')
  return turned_away(tonumber(oldest[2]) + seconds - now)
end
local others = redis.call('ZCARD', waiting)
if redis.call('ZSCORE', waiting, client) then others = others - 1 end
if others > 0 and redis.call('ZCARD', mine) >= math.max(1, math.floor(most / (others + 1))) then
  return turned_away(seconds / most)
end
for _, key in ipairs({hits, mine}) do
  redis.call('ZADD', key, now, member)
  redis.call('EXPIRE', key, math.ceil(seconds))
end
redis.call('ZREM', waiting, client)
return '0'
"""
# Pauses every LLM call for `ms`, keeping the later of two pauses: a short
# Retry-After must not cut a long one. The pause is the key's time to live,
# on Redis's clock, which every worker reads alike.
_PAUSE_KEYS, _PAUSE_ARGS = ("pause",), ("ms",)
_PAUSE = """
if tonumber(ms) > redis.call('PTTL', pause) then
  redis.call('SET', pause, '1', 'PX', ms)
end
"""


class FairWindow:
    """A moving window of `calls` hits per `period` seconds, shared fairly:
    while other clients are waiting for it, no client gets more than an
    equal share (so one client's backlog cannot hold it, and another's first
    hit comes within about one share of the window)."""

    def __init__(self, redis: Redis, key_prefix: str, calls: int, period: int) -> None:
        self._calls, self._period = calls, period
        self._prefix = key_prefix
        self._hit = Script(redis, _FAIR_HIT_KEYS, _FAIR_HIT_ARGS, _FAIR_HIT)

    async def hit(self, client: str) -> float:
        """Counts one hit of `client` now: 0.0 if it fits, else the seconds
        to wait before trying again (nothing counted)."""
        wait = await self._hit(
            hits=f"{self._prefix}:hits", mine=f"{self._prefix}:client:{client or '-'}",
            waiting=f"{self._prefix}:waiting", calls=self._calls, period=self._period,
            client=client or "-", member=uuid.uuid4().hex)
        return float(cast(str, wait))


def client_window(redis: Redis, requests: int, window_seconds: int) -> MovingWindow:
    """The per-client request limit at the gateway (api/ratelimit.py)."""
    return MovingWindow(redis, CLIENT_LIMIT_PREFIX, requests, window_seconds)


class LlmWindow(FairWindow):
    """The global LLM limit's window (worker/ratelimit.py), and the pause a
    provider's 429 puts on every worker."""

    def __init__(self, redis: Redis, calls: int, period: int) -> None:
        super().__init__(redis, llm_limit_prefix(), calls, period)
        self._redis = redis
        self._pause = Script(redis, _PAUSE_KEYS, _PAUSE_ARGS, _PAUSE)

    async def paused_for(self) -> float:
        """The seconds left of the pause (0.0: none)."""
        ms = await self._redis.pttl(llm_pause_key())
        return ms / 1000 if ms > 0 else 0.0

    async def pause(self, seconds: float) -> None:
        """Stops every worker's LLM calls for `seconds` (a provider's Retry-After)."""
        await self._pause(pause=llm_pause_key(), ms=max(1, math.ceil(seconds * 1000)))
