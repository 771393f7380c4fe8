"""Throttling: the savers retry 503 SlowDown with backoff, then give up as S3Unavailable.

``FakeThrottlingProxy`` is a fake: a small HTTP proxy in front of the real S3
server that answers the next N requests (or all of them) with S3's
``503 SlowDown`` error, and forwards everything else untouched.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from langchain_core.messages import HumanMessage

from shared.checkpoint import RetryPolicy, S3Unavailable
from tests.helpers import chat_graph, open_saver, setup, thread

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "expect"}


class FakeThrottlingProxy(ThreadingHTTPServer):
    """Forwards to ``upstream``; answers SlowDown to the next ``throttle`` requests."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = urlsplit(upstream).netloc
        self.throttle = 0  # -1: throttle everything
        self.throttled = 0
        self.forwarded = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def take_turn(self) -> bool:
        """Whether to throttle the request being handled."""
        with self.lock:
            if self.throttle == 0:
                self.forwarded += 1
                return False
            if self.throttle > 0:
                self.throttle -= 1
            self.throttled += 1
            return True


class _Handler(BaseHTTPRequestHandler):
    server: FakeThrottlingProxy
    # HTTP/1.1, so "Expect: 100-continue" (aiohttp waits for it) is answered.
    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        self.close_connection = True
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.server.take_turn():
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(SLOW_DOWN)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(SLOW_DOWN)
            return
        upstream = http.client.HTTPConnection(self.server.upstream, timeout=10)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        payload = response.read()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in _HOP_BY_HOP | {"content-length"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        upstream.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[FakeThrottlingProxy]:
    server = FakeThrottlingProxy(s3_endpoint)
    thread_ = threading.Thread(target=server.serve_forever, daemon=True)
    thread_.start()
    yield server
    server.shutdown()
    server.server_close()


RETRY = RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.2)


@pytest.mark.parametrize("variant", ["async", "sync"])
async def test_slow_down_is_retried_with_backoff(
    proxy: FakeThrottlingProxy, s3_bucket: str, variant: str
) -> None:
    async with open_saver(variant, proxy.url, s3_bucket, retry=RETRY) as saver:
        await setup(saver)
        graph = chat_graph(saver)
        proxy.throttle = 3  # each of the next 3 requests: one 503 SlowDown
        started = time.monotonic()
        await graph.ainvoke({"messages": [HumanMessage("hello")]}, thread("throttled"),
                            durability="exit")
        waited = time.monotonic() - started
        latest = await saver.aget_tuple(thread("throttled"))

    assert proxy.throttled == 3
    assert latest is not None and len(latest.checkpoint["channel_values"]["messages"]) == 2
    assert waited >= 0.025 + 0.05 + 0.1  # three growing waits, each at least half its ceiling


@pytest.mark.parametrize("variant", ["async", "sync"])
async def test_lasting_slow_down_becomes_unavailable(
    proxy: FakeThrottlingProxy, s3_bucket: str, variant: str
) -> None:
    async with open_saver(variant, proxy.url, s3_bucket, retry=RETRY) as saver:
        proxy.throttle = -1
        with pytest.raises(S3Unavailable, match="SlowDown") as raised:
            await saver.aget_tuple(thread("throttled"))
    assert proxy.throttled == RETRY.attempts  # one request, tried 4 times
    assert raised.value.__cause__ is not None
