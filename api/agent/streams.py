"""A run's stream: its job's event log, as the LangGraph Server API streams it.

The reply's tokens are the same events a /chat stream shows, so in mode
`messages-tuple` they arrive as the worker writes them. Modes `values` and
`updates` show the state the turn stored, when it ends. Every event keeps
the position of the job event it came from, so a client resumes with
Last-Event-ID whatever the mode: when one job event makes several stream
events, only the last carries the id, and a resume repeats the group whole.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent

from api.agent import state
from api.agent.schemas import GRAPH_ID
from api.deps import Services
from api.sse import KEEPALIVE_SECONDS, REBUILT, job_event_log
from shared.conversation import reply_id
from shared.jobs import Event, Job

NODE = "answer"


def run_path(job: Job) -> str:
    return f"/threads/{job.thread_id}/runs/{job.job_id}"


def _chunk(job: Job, text: str) -> list[dict[str, Any]]:
    """A `messages-tuple` part: the message chunk, and where it came from."""
    message: dict[str, Any] = {
        "type": "AIMessageChunk", "content": text, "id": reply_id(job.job_id), "name": None,
        "additional_kwargs": {}, "response_metadata": {}, "tool_calls": [],
        "invalid_tool_calls": [], "tool_call_chunks": [], "usage_metadata": None}
    where = {"langgraph_node": NODE, "langgraph_step": 1, "graph_id": GRAPH_ID,
             "thread_id": job.thread_id, "run_id": job.job_id}
    return [message, where]


async def _parts(services: Services, job: Job, event: Event,
                 modes: list[str]) -> list[tuple[str, Any]]:
    """The stream events (name, data) that one job event makes."""
    if event.type == "token":
        return [("messages", _chunk(job, event.data["text"]))] if "messages-tuple" in modes else []
    if event.type == "reset":
        # The run started over after a crash: its earlier tokens are void.
        return [("metadata", {"run_id": job.job_id, "attempt": event.data["attempt"]})]
    if event.type == "error":
        return [("error", {"error": "RunError", "message": event.data["detail"]})]
    if event.type != "done" or not {"updates", "values"} & set(modes):
        return []  # a cancelled run's stream just ends; its status says interrupted
    saved = await state.latest(services.saver, job.thread_id)
    parts: list[tuple[str, Any]] = []
    if "updates" in modes:
        parts.append(("updates", {NODE: {"messages": state.turn_messages(saved, job.job_id)}}))
    if "values" in modes:
        parts.append(("values", state.values_of(saved)))
    return parts


async def _events(services: Services, job: Job, modes: list[str], after: str,
                  then: Callable[[], Awaitable[None]] | None) -> AsyncIterator[ServerSentEvent]:
    if after == "0-0":
        yield ServerSentEvent(json.dumps({"run_id": job.job_id, "attempt": 1}), event="metadata")
    ended = False
    async for event in job_event_log(services.hub, services.jobs, job, after):
        if event is None:
            continue  # sse-starlette's pings keep the connection alive
        parts = await _parts(services, job, event, modes)
        for n, (name, data) in enumerate(parts, start=1):
            last = n == len(parts) and event.id != REBUILT
            yield ServerSentEvent(json.dumps(data, default=str), event=name,
                                  id=event.id if last else None)
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
