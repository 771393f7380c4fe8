"""The one way the gateway and the workers open Redis.

Each process has one pool, of REDIS_MAX_CONNECTIONS connections. A command
that finds them all busy waits up to POOL_WAIT_SECONDS for one instead of
failing at once (redis-py's default pool raises past its size). Nothing holds
a pooled connection for long: the gateway's waiting clients share one reader
(api/events.py), so the pool's size bounds commands in flight, not clients.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

# Blocking reads (XREAD BLOCK) wait at most this long per call, so a dead
# connection is noticed within SOCKET_TIMEOUT and a live one never times out.
SOCKET_TIMEOUT = 10.0
MAX_BLOCK_MS = 5000
POOL_WAIT_SECONDS = 5.0


def make_redis(url: str, max_connections: int) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=POOL_WAIT_SECONDS,
        decode_responses=True, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=2,
        health_check_interval=30)
    return Redis.from_pool(pool)  # the client owns the pool: aclose closes it


async def redis_now(redis: Redis) -> float:
    """Redis's clock (TIME), the one every stored time and score is on: a
    worker's or a gateway's own clock may be off from it."""
    seconds, micros = await redis.time()
    return seconds + micros / 1_000_000
