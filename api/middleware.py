"""ASGI middleware: request ids, the access log and the request metrics, the
body size limit, and JSON bodies sent without their content type.

Both are plain ASGI rather than Starlette's BaseHTTPMiddleware, which would
run the app in another task and buffer nothing we want buffered.
"""

from __future__ import annotations

import json
import time

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import metrics
from shared.ids import is_valid_id, new_id

REQUEST_ID_HEADER = "X-Request-ID"
# Probed every few seconds by orchestrators: their lines would drown the rest.
PROBES = frozenset({"/healthz", "/readyz"})
log = structlog.get_logger("api.access")


class RequestId:
    """Names every request: a valid incoming X-Request-ID, or a new id.

    The id is bound to the log context for the request's whole life and
    echoed in the response; each request then gets one `request` log line
    naming its route (not its raw path, which nothing has validated yet),
    and is counted in the metrics by the same route. The latency counted is
    the time to the response's first byte: a stream's whole life says
    nothing of how fast the gateway answered.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        request_id = offered if is_valid_id(offered) else new_id()
        status = 500
        started = time.monotonic()
        answered: float | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = message["status"]
                answered = time.monotonic()
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        # Each request runs in its own task, so what it binds stays its own.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            write = log.debug if route in PROBES else log.info
            write("request", method=scope["method"], route=route, status=status,
                  duration_ms=round((time.monotonic() - started) * 1000, 1))
            method = scope["method"]
            metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
            metrics.HTTP_LATENCY.labels(method, route).observe(
                (answered or time.monotonic()) - started)


class BodyTooLarge(HTTPException):
    """Raised from `receive` while the app reads the body; FastAPI passes
    HTTPExceptions through its body parsing, so the handlers render it."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large (limit {limit} bytes)")


class BodyLimit:
    """Rejects bodies over `limit` bytes with 413 before they are read whole.

    A Content-Length over the limit is refused before a byte is read; a body
    without one (chunked) is counted as it streams in and cut off at the limit.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.limit:
            await self._refuse(send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            # Read somewhere FastAPI's handlers do not reach (a stream's
            # disconnect watcher): answer here if nothing was sent yet.
            if started:
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": BodyTooLarge(self.limit).detail}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class JsonBodies:
    """Reads a request body sent as `text/plain` (or with no content type) as JSON.

    Proxies in front of LangGraph UIs (agent-chat-ui's `/api` route) forward
    JSON bodies without their Content-Type, and a browser's `fetch` with a
    string body says `text/plain`; the LangGraph Server reads them as JSON.
    Every body this API takes is JSON, so nothing else is meant by them.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            kind = Headers(scope=scope).get("content-type", "")
            if kind == "" or kind.split(";")[0].strip().lower() == "text/plain":
                headers = MutableHeaders(scope=scope)
                headers["content-type"] = "application/json"
        await self.app(scope, receive, send)
