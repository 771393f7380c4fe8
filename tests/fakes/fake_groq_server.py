"""A test fake standing in for Groq's API (``POST /openai/v1/chat/completions``).

It is not Groq: it answers ``"echo: " + <last user message>`` so that the real
``groq`` SDK, and ``langchain_groq.ChatGroq`` on top of it, can run against it
without a network or an API key. Point a client at it with
``ChatGroq(base_url="http://127.0.0.1:PORT", api_key="x", max_retries=0)`` or
``GROQ_API_BASE=http://127.0.0.1:PORT``; the SDK appends
``/openai/v1/chat/completions`` to the base URL itself.

Run it with ``python -m tests.fakes.fake_groq_server --port PORT``.

Test-only endpoints:

* ``GET /_calls`` lists every chat request received (see :class:`Call`);
  ``DELETE /_calls`` forgets them.
* ``POST /_control`` with a JSON object sets any of the fields of
  :class:`Faults`; ``GET /_control`` shows them; ``POST /_control/reset``
  restores the defaults.
* A request whose last user message contains ``FAIL_400`` is rejected with a
  400 ``invalid_request_error``, so tests can provoke a rejection without a
  control call.
* ``GET /health`` answers 200 once the server is up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

FAIL_400_MARKER = "FAIL_400"
CHAT_PATH = "/openai/v1/chat/completions"

JSON = dict[str, Any]


@dataclass
class Faults:
    """Behaviour settable at runtime through ``POST /_control``."""

    token_delay: float = 0.0  # seconds between two streamed tokens
    delay: float = 0.0  # seconds before the first byte of any answer
    fail_429: int = 0  # the next N chat requests are rate limited
    retry_after: float = 1.0  # the retry-after header (seconds) sent with those 429s
    fail_500: int = 0  # the next N chat requests fail with a 500
    reply_tokens: int | None = None  # reply "w0 w1 ..." of this many words instead of the echo
    hold: bool = False  # while true, answers wait (after `delay`) until it is set false

    def update(self, changes: JSON) -> None:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown control fields: {', '.join(unknown)}")
        for name, value in changes.items():
            setattr(self, name, _check_control_value(name, value))


def _check_control_value(name: str, value: Any) -> Any:
    # Reject bad values at the control call so a typo fails the test that made it,
    # not some later chat request.
    if name == "reply_tokens" and value is None:
        return None
    if name == "hold":
        if not isinstance(value, bool):
            raise ValueError("hold must be true or false")
        return value
    if name in {"fail_429", "fail_500", "reply_tokens"}:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a non-negative number")
    return float(value)


@dataclass
class Call:
    """One chat request as the fake saw it."""

    received_at: float
    request: JSON
    model: str | None
    stream: bool
    messages: list[JSON]
    status: int = 200
    # Set when the client went away before the whole answer was sent.
    disconnected_at: float | None = None
    finished_at: float | None = None
    tokens_sent: int = 0


@dataclass
class FakeGroq:
    """The server's whole mutable state; one per app."""

    faults: Faults = field(default_factory=Faults)
    calls: list[Call] = field(default_factory=list)
    # Set while answers may go out: cleared by `hold`, set again when it ends.
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.released.set()

    def apply(self, faults: Faults) -> None:
        self.faults = faults
        if faults.hold:
            self.released.clear()
        else:
            self.released.set()

    def take_fault(self) -> int | None:
        """The status the next request must fail with, if any, using up one injection."""
        if self.faults.fail_429 > 0:
            self.faults.fail_429 -= 1
            return 429
        if self.faults.fail_500 > 0:
            self.faults.fail_500 -= 1
            return 500
        return None


# --- reply content ---------------------------------------------------------


def _text_of(content: Any) -> str:
    # OpenAI-style content may be a list of parts; only text parts matter here.
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def last_user_text(messages: Sequence[JSON]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def reply_text(messages: Sequence[JSON], reply_tokens: int | None) -> str:
    if reply_tokens is not None:
        return " ".join(f"w{i}" for i in range(reply_tokens))
    return "echo: " + last_user_text(messages)


def split_tokens(text: str) -> list[str]:
    """Words, each with the whitespace after it, so that joining them gives back ``text``."""
    return [part for part in re.split(r"(?<=\s)(?=\S)", text) if part]


def _usage(messages: Sequence[JSON], reply: str) -> JSON:
    prompt = sum(len(_text_of(m.get("content")).split()) for m in messages)
    completion = len(reply.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "queue_time": 0.0,
        "prompt_time": 0.0,
        "completion_time": 0.0,
        "total_time": 0.0,
    }


def error_body(message: str, type_: str, code: str | None = None) -> JSON:
    error: JSON = {"message": message, "type": type_}
    if code is not None:
        error["code"] = code
    return {"error": error}


def _seconds_header(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


# --- the chat answer, as a raw ASGI response -------------------------------

Sender = Callable[[Send], Awaitable[None]]


class WatchedAnswer(Response):
    """Sends an answer while watching for the client going away.

    Starlette's own StreamingResponse only notices a disconnect on some ASGI
    spec versions and then just cancels; this records *when* it happened, which
    cancellation tests assert on, and covers the pre-answer ``delay`` too.
    """

    def __init__(self, call: Call, delay: float, body: Sender, released: asyncio.Event) -> None:
        super().__init__(status_code=call.status)
        self.call = call
        self.delay = delay
        self.sender = body
        self.released = released

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        work = asyncio.create_task(self._send(send))
        watch = asyncio.create_task(_wait_for_disconnect(receive))
        done, _ = await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            watch.cancel()
            try:
                work.result()
            except OSError:
                self.call.disconnected_at = time.time()
            return
        self.call.disconnected_at = time.time()
        work.cancel()
        # Waiting for the cancelled sender keeps its exception from being logged as lost.
        await asyncio.gather(work, return_exceptions=True)

    async def _send(self, send: Send) -> None:
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        await self.released.wait()
        await self.sender(send)
        self.call.finished_at = time.time()


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _json_sender(status: int, body: JSON, headers: dict[str, str] | None = None) -> Sender:
    payload = json.dumps(body).encode()
    raw_headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(payload)).encode())]
    raw_headers += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]

    async def send_json(send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": payload})

    return send_json


def _sse(data: JSON | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    return f"data: {text}\n\n".encode()


def _stream_sender(call: Call, reply: str, token_delay: float) -> Sender:
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    request_id = f"req_{uuid.uuid4().hex}"
    created = int(time.time())  # Groq stamps every chunk of one completion alike.
    usage = _usage(call.messages, reply)
    include_usage = bool((call.request.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: JSON, finish_reason: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _sse({
            "id": completion_id, "object": "chat.completion.chunk", "created": created,
            "model": call.model, "system_fingerprint": "fp_fake", "choices": [choice], **extra,
        })

    async def send_stream(send: Send) -> None:
        async def body(data: bytes) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": True})

        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
            (b"x-request-id", request_id.encode()),
        ]})
        # Groq opens with an empty assistant delta carrying the request id.
        await body(chunk({"role": "assistant", "content": ""}, x_groq={"id": request_id}))
        for i, token in enumerate(split_tokens(reply)):
            if i and token_delay > 0:
                await asyncio.sleep(token_delay)
            await body(chunk({"content": token}))
            call.tokens_sent += 1
        # ...and closes with an empty delta, the finish reason and usage under x_groq.
        await body(chunk({}, "stop", x_groq={"id": request_id, "usage": usage}))
        if include_usage:
            await body(_sse({
                "id": completion_id, "object": "chat.completion.chunk",
                "created": created, "model": call.model, "choices": [], "usage": usage,
            }))
        await body(_sse("[DONE]"))
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return send_stream


def _completion_body(call: Call, reply: str) -> JSON:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": call.model,
        "system_fingerprint": "fp_fake",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": reply},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": _usage(call.messages, reply),
        "x_groq": {"id": f"req_{uuid.uuid4().hex}"},
    }


# --- routes -----------------------------------------------------------------


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse(error_body(message, "invalid_request_error"), status_code=400)


async def _read_json_object(request: Request) -> JSON | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def create_app(state: FakeGroq | None = None) -> Starlette:
    state = state or FakeGroq()

    async def chat_completions(request: Request) -> Response:
        received_at = time.time()
        body = await _read_json_object(request)
        if body is None:
            return _bad_request("request body must be a JSON object")
        raw_messages = body.get("messages")
        messages = [m for m in raw_messages if isinstance(m, dict)] \
            if isinstance(raw_messages, list) else []
        call = Call(received_at=received_at, request=body, model=body.get("model"),
                    stream=bool(body.get("stream")), messages=messages)
        state.calls.append(call)
        faults = state.faults

        sender: Sender
        if not messages or not isinstance(call.model, str):
            call.status = 400
            sender = _json_sender(400, error_body(
                "'messages' and 'model' are required", "invalid_request_error"))
        elif FAIL_400_MARKER in last_user_text(messages):
            call.status = 400
            sender = _json_sender(400, error_body(
                f"request rejected by the fake: the message contains {FAIL_400_MARKER}",
                "invalid_request_error", "invalid_request"))
        elif (status := state.take_fault()) == 429:
            call.status = 429
            sender = _json_sender(429, error_body(
                f"Rate limit reached for model `{call.model}` (injected by the fake). "
                f"Please try again in {faults.retry_after}s.",
                "tokens", "rate_limit_exceeded",
            ), {"retry-after": _seconds_header(faults.retry_after)})
        elif status == 500:
            call.status = 500
            sender = _json_sender(500, error_body(
                "Internal Server Error (injected by the fake)", "internal_server_error"))
        else:
            reply = reply_text(messages, faults.reply_tokens)
            sender = (_stream_sender(call, reply, faults.token_delay) if call.stream
                      else _json_sender(200, _completion_body(call, reply)))
        return WatchedAnswer(call, faults.delay, sender, state.released)

    async def list_calls(request: Request) -> Response:
        return JSONResponse([asdict(c) for c in state.calls])

    async def clear_calls(request: Request) -> Response:
        state.calls.clear()
        return JSONResponse({"cleared": True})

    async def get_control(request: Request) -> Response:
        return JSONResponse(asdict(state.faults))

    async def set_control(request: Request) -> Response:
        changes = await _read_json_object(request)
        if changes is None:
            return _bad_request("control body must be a JSON object")
        faults = Faults(**asdict(state.faults))
        try:
            faults.update(changes)
        except ValueError as exc:
            return _bad_request(str(exc))
        state.apply(faults)
        return JSONResponse(asdict(state.faults))

    async def reset_control(request: Request) -> Response:
        state.apply(Faults())
        return JSONResponse(asdict(state.faults))

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[
        Route(CHAT_PATH, chat_completions, methods=["POST"]),
        Route("/_calls", list_calls, methods=["GET"]),
        Route("/_calls", clear_calls, methods=["DELETE"]),
        Route("/_control", get_control, methods=["GET"]),
        Route("/_control", set_control, methods=["POST"]),
        Route("/_control/reset", reset_control, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
    ])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-delay", type=float, default=0.0,
                        help="initial seconds between streamed tokens")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    state = FakeGroq(faults=Faults(token_delay=args.token_delay))
    uvicorn.run(create_app(state), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
