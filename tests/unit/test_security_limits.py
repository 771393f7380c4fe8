"""The gateway's limits without servers: body size and request ids."""

from __future__ import annotations

import json
from collections.abc import Iterator

from shared.ids import (
    MAX_ID_LENGTH,
    digest_id,
    is_stored_thread_id,
    is_valid_id,
    shown_thread_id,
    stored_thread_id,
)
from tests.helpers import app_client


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


def test_a_thread_id_is_stored_behind_its_owner_and_shown_without() -> None:
    owner = digest_id("some-api-key-0123456789")
    longest = "x" * MAX_ID_LENGTH

    for thread_id in ("t", "conv-1", longest, "0123456789abcdef0123456789abcdef"):
        stored = stored_thread_id(owner, thread_id)
        assert stored == f"{owner}.{thread_id}"
        assert shown_thread_id(stored) == thread_id
        assert is_stored_thread_id(stored)
        assert stored != stored_thread_id(digest_id("another-key-0123456789"), thread_id)
        # With auth off (no owner) a thread is stored under its own id.
        assert stored_thread_id("", thread_id) == shown_thread_id(thread_id) == thread_id
    for bad in ("", "a.b", f"{owner}.", f"{owner}.a.b", "XYZ.t", f"{owner}x.t",
                "x" * (MAX_ID_LENGTH + 1), "../t", None):
        assert not is_stored_thread_id(bad), bad
