"""POST /chat and the /chat/jobs routes: an adapter over runs of the chat graph.

A chat message is a run of the graph named by CHAT_GRAPH_ID, with the
message as its input and the reply language in its context; the run
streams its message chunks, which the /chat stream shows as `token` events,
and ends `done` with the reply (the run's last AI message).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent

from api.events import EventHub
from api.sse import KEEPALIVE_SECONDS, REBUILT, job_event_log
from shared.ids import shown_thread_id
from shared.job_events import Event
from shared.runs import MESSAGE_EVENT, RunSpec, chat_run
from shared.store.job import Job
from shared.store.jobs import JobStore

DEFAULT_LANGUAGE = "English"


def chat_job(graph_id: str, job_id: str, thread_id: str, message: str, language: str,
             owner: str, client: str, first: bool = False) -> Job:
    """The job of one chat message: a run of the chat graph (`first`: on a new thread)."""
    return Job(job_id=job_id, thread_id=thread_id, title=message, owner=owner, client=client,
               run=chat_run(graph_id, job_id, message, language, first).to_json())


def language_of(job: Job) -> str:
    """The reply language the chat job asked for."""
    context = RunSpec.from_json(job.run).context if job.run else None
    return str((context or {}).get("language") or DEFAULT_LANGUAGE)


def chat_event(job: Job, event: Event) -> Event | None:
    """The /chat form of a run's event: message chunks as `token` text, `done`
    with the reply's language; None for what a chat stream does not show."""
    if event.type == "done":
        return Event.of(event.id, "done", {"response": event.data.get("response", ""),
                                        "language": language_of(job),
                                        "thread_id": shown_thread_id(job.thread_id),
                                        "job_id": job.job_id})
    if event.type == MESSAGE_EVENT:
        message: dict[str, Any] = event.data[0]
        text = message.get("content")
        if message.get("type") == "AIMessageChunk" and isinstance(text, str) and text:
            return Event.of(event.id, "token", {"text": text})
        return None
    if event.type in ("token", "reset", "error", "cancelled"):
        return event
    return None


async def _chat_events(hub: EventHub, jobs: JobStore, job: Job,
                       after: str) -> AsyncIterator[ServerSentEvent]:
    async for event in job_event_log(hub, jobs, job, after):
        shown = chat_event(job, event) if event is not None else None
        if shown is not None:
            yield ServerSentEvent(shown.raw, event=shown.type,
                                  id=shown.id if shown.id != REBUILT else None)


def stream_response(hub: EventHub, jobs: JobStore, job: Job,
                    after: str = "0-0") -> EventSourceResponse:
    """The chat job's events as Server-Sent Events."""
    return EventSourceResponse(_chat_events(hub, jobs, job, after), ping=KEEPALIVE_SECONDS,
                               headers={"X-Job-Id": job.job_id, "Cache-Control": "no-cache"})
