"""Moving-window limits on Redis, shared by every process that counts the same thing.

A moving window: no window of `period` seconds holds more than `calls` hits.
Token buckets and GCRA let up to 2N-1 hits into a window sized for N, so they
will not do for a limit that a provider or a tenant relies on. `MovingWindow`
is the `limits` library's (one atomic Lua script per hit). `FairWindow` is
ours, as `limits` has no shares: the same window, shared fairly between the
clients that want it, in one script per hit too.
"""

from __future__ import annotations

import time
import uuid
from typing import cast

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


# One hit for `client`: KEYS the window's hits (member -> start time), the
# client's own hits, the clients turned away lately (client -> time); ARGV
# calls, period (s), client, a new member. While other clients wait, a client
# gets at most an equal share of the window's calls. Returns "0" when the hit
# is counted, else the seconds to wait before trying again.
_FAIR_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local calls, period = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 1, 2 do redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - period) end
-- A client turned away waits up to a window to try again: it counts as
-- waiting for two.
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 2 * period)
local function turned_away(wait)
  redis.call('ZADD', KEYS[3], now, ARGV[3])
  redis.call('EXPIRE', KEYS[3], math.ceil(2 * period))
  return tostring(math.max(0.05, wait))
end
if redis.call('ZCARD', KEYS[1]) >= calls then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return turned_away(tonumber(oldest[2]) + period - now)
end
local others = redis.call('ZCARD', KEYS[3])
if redis.call('ZSCORE', KEYS[3], ARGV[3]) then others = others - 1 end
if others > 0 and redis.call('ZCARD', KEYS[2]) >= math.max(1, math.floor(calls / (others + 1))) then
  return turned_away(period / calls)
end
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], now, ARGV[4])
  redis.call('EXPIRE', KEYS[i], math.ceil(period))
end
redis.call('ZREM', KEYS[3], ARGV[3])
return '0'
"""


class FairWindow:
    """A moving window of `calls` hits per `period` seconds, shared fairly:
    while other clients are waiting for it, no client gets more than an
    equal share (so one client's backlog cannot hold it, and another's first
    hit comes within about one share of the window)."""

    def __init__(self, redis: Redis, key_prefix: str, calls: int, period: int) -> None:
        self._calls, self._period = calls, period
        self._prefix = key_prefix
        self._hit = redis.register_script(_FAIR_HIT)

    async def hit(self, client: str) -> float:
        """Counts one hit of `client` now: 0.0 if it fits, else the seconds
        to wait before trying again (nothing counted)."""
        keys = [f"{self._prefix}:hits", f"{self._prefix}:client:{client or '-'}",
                f"{self._prefix}:waiting"]
        wait = await self._hit(keys=keys, args=[self._calls, self._period, client or "-",
                                                uuid.uuid4().hex])
        return float(cast(str, wait))
