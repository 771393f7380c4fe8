"""A run's stream: its job's event log, as the LangGraph Server API streams it.

The worker writes one event per stream part of the modes the run asked for,
named as the LangGraph Server names them (`values`, `updates|sub:1`, ...),
so most events go out as they are. The legacy `messages` mode is shaped here
from the message chunks (`messages/metadata`, `messages/partial`,
`messages/complete`). Every event keeps the position of the job event it
came from, so a client resumes with Last-Event-ID whatever the mode: when one
job event makes several stream events, only the last carries the id, and a
resume repeats the group whole.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import Services
from api.sse import KEEPALIVE_SECONDS, REBUILT, job_event_log
from shared.ids import shown_thread_id
from shared.job_events import Event
from shared.runs import MESSAGE_EVENT
from shared.store.job import Job


def _json(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


def run_path(job: Job) -> str:
    return f"/threads/{shown_thread_id(job.thread_id)}/runs/{job.job_id}"


class _Messages:
    """The legacy `messages` mode: each message's metadata once, then the
    message so far after each chunk, or the whole message when it came whole."""

    def __init__(self) -> None:
        self._so_far: dict[str, dict[str, Any]] = {}

    def parts(self, data: list[Any]) -> list[tuple[str, Any]]:
        message, metadata = data
        message_id = str(message.get("id"))
        out: list[tuple[str, Any]] = []
        known = self._so_far.get(message_id)
        if known is None:
            out.append(("messages/metadata", {message_id: {"metadata": metadata}}))
        if not str(message.get("type", "")).endswith("Chunk"):
            self._so_far[message_id] = message
            return [*out, ("messages/complete", [message])]
        if known is None:
            known = {**message, "type": "ai", "content": ""}
            known.pop("tool_call_chunks", None)
            known.pop("chunk_position", None)
        known = {**known, "content": _joined(known.get("content"), message.get("content"))}
        self._so_far[message_id] = known
        return [*out, ("messages/partial", [known])]


def _blocks(content: Any) -> list[Any]:
    if isinstance(content, list):
        return content
    return [{"type": "text", "text": content}] if content else []


def _joined(before: Any, more: Any) -> Any:
    if isinstance(before, str) and isinstance(more, str):
        return before + more
    return [*_blocks(before), *_blocks(more)]


class _Shaper:
    """The stream events one job event makes for the modes asked for."""

    def __init__(self, job: Job, modes: list[str]) -> None:
        self.job = job
        self.modes = set(modes)
        self.tuples = "messages-tuple" in self.modes
        # Asked for both, the LangGraph Server streams the tuples only.
        self.legacy = _Messages() if "messages" in self.modes and not self.tuples else None

    def parts(self, event: Event) -> list[tuple[str, str]]:
        """(name, data as JSON text); what the worker wrote goes out as it is."""
        if event.type == "reset":
            # The run started over after a crash: what it streamed before is void.
            if self.legacy is not None:
                self.legacy = _Messages()
            return [("metadata", _json({"run_id": self.job.job_id,
                                        "attempt": event.data["attempt"]}))]
        if event.type == "error":
            return [("error", _json({"error": "RunError", "message": event.data["detail"]}))]
        if event.terminal:
            return []  # the stream ends; the run's status says how
        mode = event.type.split("|", 1)[0]
        if mode == MESSAGE_EVENT:
            parts: list[tuple[str, str]] = []
            if self.tuples:
                parts.append((event.type, event.raw))
            if self.legacy is not None:
                parts += [(name, _json(data)) for name, data in self.legacy.parts(event.data)]
            return parts
        return [(event.type, event.raw)] if mode in self.modes else []


async def _events(services: Services, job: Job, modes: list[str], after: str,
                  then: Callable[[], Awaitable[None]] | None) -> AsyncIterator[ServerSentEvent]:
    if after == "0-0":
        yield ServerSentEvent(_json({"run_id": job.job_id, "attempt": 1}), event="metadata")
    shaper = _Shaper(job, modes)
    ended = False
    async for event in job_event_log(services.hub, services.jobs, job, after):
        if event is None:
            continue  # sse-starlette's pings keep the connection alive
        parts = shaper.parts(event)
        for n, (name, data) in enumerate(parts, start=1):
            last = n == len(parts) and event.id != REBUILT
            yield ServerSentEvent(data, event=name, id=event.id if last else None)
        ended = event.terminal
    if ended and then is not None:
        await then()


def run_stream(services: Services, job: Job, modes: list[str], after: str = "0-0",
               then: Callable[[], Awaitable[None]] | None = None) -> EventSourceResponse:
    """The run's events after `after`, until it ends; `then` runs after its end
    has been streamed (a stateless run deletes its thread)."""
    # Location: where the SDK reconnects (with Last-Event-ID) if the stream drops.
    headers = {"Location": f"{run_path(job)}/stream", "Content-Location": run_path(job),
               "Cache-Control": "no-cache"}
    return EventSourceResponse(_events(services, job, modes, after, then),
                               ping=KEEPALIVE_SECONDS, headers=headers)
