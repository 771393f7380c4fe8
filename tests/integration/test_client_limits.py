"""The per-client rate limit on real Redis: a moving window per client."""

from __future__ import annotations

import asyncio
import time
from typing import cast

import pytest
from redis.asyncio import Redis

from api.errors import TooManyRequests
from api.ratelimit import ClientRateLimit
from shared.redis_client import make_redis
from tests.helpers import app_client


async def test_the_client_limit_counts_per_client_in_a_moving_window(
        server: tuple[str, bool]) -> None:
    url, cluster = server
    redis = make_redis(url, 8, cluster=cluster)
    limit = ClientRateLimit(cast(Redis, redis), 3, 1)
    try:
        await _exhaust_and_recover(limit)
    finally:
        await limit.aclose()
        await redis.aclose()


async def _exhaust_and_recover(limit: ClientRateLimit) -> None:
    client, other = "client-a-" + "0" * 20, "client-b-" + "0" * 20
    for _ in range(3):
        await limit.check(client)
    with pytest.raises(TooManyRequests) as refused:
        await limit.check(client)
    assert refused.value.headers == {"Retry-After": "1"}
    await limit.check(other)

    deadline = time.monotonic() + 5
    while True:  # the window of 1 s moves on
        try:
            await limit.check(client)
            return
        except TooManyRequests:
            assert time.monotonic() < deadline, "the limit did not let the client in again"
            await asyncio.sleep(0.05)


def test_without_auth_the_client_is_its_address(redis_url: str) -> None:
    with app_client(REDIS_URL=redis_url, CLIENT_RATE_LIMIT=2,
                    CLIENT_RATE_WINDOW_SECONDS=30) as client:
        codes = [client.get(f"/chat/jobs/none{n}").status_code for n in range(3)]
        probes = [client.get("/healthz").status_code for _ in range(3)]
        over = client.post("/chat", json={"message": "hi"})
    assert codes == [404, 404, 429]
    assert probes == [200, 200, 200]
    assert over.status_code == 429
    assert int(over.headers["retry-after"]) <= 30
