"""POST /chat and the conversation history."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Header, Query, Response, status
from fastapi.responses import JSONResponse
from langchain_core.messages import BaseMessage
from pydantic.json_schema import SkipJsonSchema

from api import conversations, idempotency
from api.chat_runs import chat_event, chat_job, stream_response
from api.deps import ClientDep, OwnerDep, ServicesDep, StoredThreadDep, limit_client
from api.errors import ApiError, BadRequest, Conflict, JobFailed, NotFound
from api.openapi_responses import SSE_CONTENT, errors
from api.queueing import queue_job
from api.schemas import (
    HISTORY_CURSOR,
    ChatQuery,
    ChatReply,
    ChatRequest,
    History,
    HistoryMessage,
    HistoryQuery,
    JobAccepted,
)
from shared.checkpoint import TranscriptEntry
from shared.conversation import CREATED_AT, message_time, role_of, stored_owner
from shared.ids import new_id, new_job_id, shown_thread_id, stored_thread_id
from shared.job_events import Event
from shared.storage import MESSAGES_CHANNEL
from shared.store.job import Job

router = APIRouter(tags=["chat"], dependencies=[Depends(limit_client)])
log = structlog.get_logger("api.chat")

NO_SUCH_THREAD = "no such thread"
_CURSOR = re.compile(HISTORY_CURSOR)


def accepted(job: Job) -> JSONResponse:
    body = JobAccepted(job_id=job.job_id, thread_id=shown_thread_id(job.thread_id),
                       status="running" if job.status == "running" else "queued")
    return JSONResponse(body.model_dump(), status_code=202,
                        headers={"Location": f"/chat/jobs/{job.job_id}"})


async def finished(services: ServicesDep, job: Job, event: Event) -> ChatReply:
    if event.type == "done":
        shown = chat_event(job, event)
        assert shown is not None
        return ChatReply(**shown.data)
    job_id = event.data["job_id"]
    if event.type == "cancelled":
        raise Conflict("the job was cancelled", job_id=job_id)
    ended = await services.jobs.get(job_id)
    raise JobFailed(event.data["detail"], job_id, (ended and ended.http_status) or 502)


@router.post(
    "/chat", response_model=ChatReply,
    responses={
        **errors(400, 404, 409, 502, 504),
        200: {"description": "The reply; with `stream=true`, the job's events (SSE).",
              "content": SSE_CONTENT,
              "headers": {"X-Job-Id": {"description": "The job (with `stream=true`).",
                                       "schema": {"type": "string"}}}},
        202: {"model": JobAccepted, "description": "Queued; poll Location.",
              "headers": {"Location": {"description": "The job to poll.",
                                       "schema": {"type": "string"}}}},
    },
)
async def post_chat(
    body: ChatRequest,
    services: ServicesDep,
    owner: OwnerDep,
    client: ClientDep,
    query: Annotated[ChatQuery, Query()],
    idempotency_key: Annotated[
        str | SkipJsonSchema[None],
        Header(alias="Idempotency-Key", min_length=1, max_length=128)] = None,
) -> Any:
    """Queue a message; wait for the reply (200) or get the job to poll (202)."""
    jobs = services.jobs
    if query.wait or query.stream:
        # Refused before anything is queued, so a retry cannot make a second turn.
        services.hub.admit(client)
    stored = stored_thread_id(owner, body.thread_id or new_id())
    job_id = new_job_id(stored)
    if idempotency_key is not None:
        canonical = json.dumps(body.model_dump(), sort_keys=True).encode()
        earlier = await idempotency.claim(services.redis, owner, idempotency_key,
                                          canonical, job_id)
        if earlier != job_id:
            job = await jobs.get(earlier)
            if job is None:
                raise NotFound("the job of this Idempotency-Key has expired")
            return await _respond(services, job, query)
    job = chat_job(services.settings.CHAT_GRAPH_ID, job_id, stored, body.message,
                   body.language, owner, client, first=body.thread_id is None)
    structlog.contextvars.bind_contextvars(job_id=job_id, thread_id=stored)
    try:
        job = await queue_job(services, job, services.settings.MAX_QUEUED_PER_THREAD,
                              new_thread=body.thread_id is None)
    except Exception:
        # Not queued: the key may be used again (best effort, as Redis may be
        # what failed).
        if idempotency_key is not None:
            with contextlib.suppress(Exception):
                await idempotency.release(services.redis, owner, idempotency_key)
        raise
    log.info("job_accepted", chars=len(body.message), user_message=body.message)
    try:
        return await _respond(services, job, query)
    except ApiError:
        raise  # the job's own outcome: failed (502/504) or cancelled (409)
    except Exception:
        # Queued is queued: the job goes on, and the client gets it to poll,
        # never an error it might answer by sending the message again.
        log.warning("wait_abandoned", exc_info=True)
        return accepted(job)


async def _respond(services: ServicesDep, job: Job, query: ChatQuery) -> Any:
    if query.stream:
        return stream_response(services.hub, services.jobs, job)
    if query.wait:
        limit = services.settings.CHAT_WAIT_TIMEOUT if query.timeout is None else query.timeout
        event = await _wait(services, job, limit)
        if event is not None:
            return await finished(services, job, event)
        job = await services.jobs.get(job.job_id) or job
    return accepted(job)


async def _wait(services: ServicesDep, job: Job, seconds: float) -> Event | None:
    """The job's terminal event, or None after `seconds` or while Redis is down."""
    deadline = time.monotonic() + seconds
    async with services.hub.subscribe(job.job_id, job.client) as sub:
        while (left := deadline - time.monotonic()) > 0:
            event = await sub.next(min(left, 1.0))
            if event is not None and event.terminal:
                return event
            if event is None and not services.hub.healthy:
                return None
    return None


def _position(cursor: str | None) -> int | None:
    """The transcript position a `next_before` cursor stands for."""
    if cursor is None:
        return None
    if not _CURSOR.fullmatch(cursor):
        raise BadRequest("before must be the next_before of an earlier page")
    return int(cursor)


def _shown(entry: TranscriptEntry) -> HistoryMessage | None:
    message = entry.value
    if not isinstance(message, BaseMessage) or (role := role_of(message)) is None:
        return None
    # Messages carry the time they were accepted; else the time they were stored.
    when = (message_time(message) if CREATED_AT in message.additional_kwargs
            else datetime.fromisoformat(entry.ts))
    return HistoryMessage(content=str(message.content), role=role, timestamp=when)


def on_current_branch(entries: Sequence[TranscriptEntry], current: Sequence[str | None],
                      window: int) -> list[TranscriptEntry]:
    """The entries of a transcript page that belong to the conversation as the
    latest checkpoint holds it (`current`: its message ids, oldest first).

    The transcript appends every message that entered a checkpoint, so after
    an edit or a regenerated reply (a run from an earlier checkpoint) it also
    holds the branch left behind. Past the first message of the latest state,
    a message that state lacks was left behind. A state shorter than the
    graph's window is the whole conversation; a longer one was trimmed, and
    what precedes its first message is older history, kept.
    """
    ids = {i for i in current if i}
    page = [getattr(e.value, "id", None) for e in entries]
    if not ids or (len(current) >= window and ids.isdisjoint(page)):
        return list(entries)  # nothing to go by, or a page of history before the window
    # Without the window's first message, the page starts after it.
    start = page.index(current[0]) if len(current) >= window and current[0] in page else 0
    return [e for i, (e, message_id) in enumerate(zip(entries, page, strict=True))
            if i < start or message_id is None or message_id in ids]


async def _current_ids(services: ServicesDep, stored: str) -> list[str | None]:
    """The message ids of the thread's latest checkpoint (its head is cached by
    the saver after the transcript read: no further S3 read in the common case)."""
    latest = await services.saver.aget_tuple(
        {"configurable": {"thread_id": stored, "checkpoint_ns": ""}})
    if latest is None:
        return []
    messages = latest.checkpoint["channel_values"].get(MESSAGES_CHANNEL) or []
    return [getattr(m, "id", None) for m in messages]


@router.get("/chat/history/{thread_id}", response_model=History, responses=errors(400, 404))
async def get_history(stored: StoredThreadDep, services: ServicesDep, owner: OwnerDep,
                      query: Annotated[HistoryQuery, Query()]) -> History:
    """A page of the conversation: its newest messages before the cursor, oldest first."""
    structlog.contextvars.bind_contextvars(thread_id=stored)
    before = _position(query.before)
    page = await services.legacy.read(stored, lambda: services.saver.aget_transcript(
        stored, before=before, limit=query.limit))
    if page is None or (owner and stored_owner(page.metadata) != owner):
        raise NotFound(NO_SUCH_THREAD)
    # Only the current branch: after an edit, what was left behind is not shown.
    entries = on_current_branch(page.entries, await _current_ids(services, stored),
                                services.settings.CONTEXT_WINDOW_MESSAGES)
    shown = [m for entry in entries if (m := _shown(entry)) is not None]
    if not shown and before is None:
        raise NotFound(NO_SUCH_THREAD)
    return History(thread_id=shown_thread_id(stored), messages=shown,
                   next_before=str(page.start) if page.start > 0 else None)


@router.delete("/chat/history/{thread_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses=errors(404))
async def delete_history(stored: StoredThreadDep, services: ServicesDep,
                         owner: OwnerDep) -> Response:
    """Delete the conversation for good; its queued and running jobs end cancelled."""
    structlog.contextvars.bind_contextvars(thread_id=stored)
    if not await conversations.exists_for(services, stored, owner):
        raise NotFound(NO_SUCH_THREAD)
    await conversations.erase(services, stored)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
