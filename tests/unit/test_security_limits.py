"""The gateway's limits: body size, request ids, and the per-client rate limit (real Redis)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from api.errors import TooManyRequests
from api.ratelimit import ClientRateLimit
from shared.ids import is_valid_id
from shared.redis_client import make_redis
from tests.unit.test_api import app_client


def test_a_declared_oversized_body_is_413_json_unread() -> None:
    with app_client(MAX_BODY_BYTES=2048) as client:
        reply = client.post("/chat", content=b"{" + b" " * 4096 + b"}",
                            headers={"content-type": "application/json"})
    assert reply.status_code == 413
    assert reply.json() == {"detail": "request body too large (limit 2048 bytes)"}


def test_a_chunked_oversized_body_is_cut_off_at_the_limit() -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: only counting can stop it
        for _ in range(100):
            yield b" " * 1024

    with app_client(MAX_BODY_BYTES=2048) as client:
        reply = client.post("/chat", content=chunks(), headers={"content-type": "application/json"})
    assert reply.status_code == 413
    assert "too large" in reply.json()["detail"]


def test_the_largest_valid_request_fits_under_the_default_limit() -> None:
    # Every character outside the BMP, escaped as json.dumps does by default.
    body = json.dumps({"message": "\U0001f600" * 32_000, "language": "x" * 64,
                       "thread_id": "t" * 128}).encode()
    with app_client() as client:
        reply = client.post("/chat", content=body, headers={"content-type": "application/json"})
    assert len(body) > 380_000
    assert reply.status_code == 503  # past the limit and validation, on to the missing Redis


def test_a_valid_request_id_is_echoed_and_any_other_replaced() -> None:
    with app_client() as client:
        assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers[
            "x-request-id"] == "abc-123"
        for bad in ("a/b", "x" * 129, "a b"):
            given = client.get("/healthz", headers={"X-Request-ID": bad}).headers["x-request-id"]
            assert given != bad
            assert is_valid_id(given)


async def test_the_client_limit_counts_per_client_in_a_moving_window(redis_url: str) -> None:
    redis = make_redis(redis_url, 8)
    try:
        await _exhaust_and_recover(ClientRateLimit(redis, 3, 1))
    finally:
        await redis.aclose()


async def _exhaust_and_recover(limit: ClientRateLimit) -> None:
    client, other = "client-a-" + "0" * 20, "client-b-" + "0" * 20
    for _ in range(3):
        await limit.check(client)
    with pytest.raises(TooManyRequests) as refused:
        await limit.check(client)
    assert refused.value.headers == {"Retry-After": "1"}
    await limit.check(other)

    await asyncio.sleep(1.05)
    await limit.check(client)


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
