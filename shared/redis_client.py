"""The one way the gateway and the workers open Redis."""

from __future__ import annotations

from redis.asyncio import Redis

# Blocking reads (XREAD BLOCK) wait at most this long per call, so a dead
# connection is noticed within SOCKET_TIMEOUT and a live one never times out.
SOCKET_TIMEOUT = 10.0
MAX_BLOCK_MS = 5000


def make_redis(url: str) -> Redis:
    return Redis.from_url(url, decode_responses=True, socket_timeout=SOCKET_TIMEOUT,
                          socket_connect_timeout=2, health_check_interval=30)
