"""POST /chat and the conversation history."""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api import idempotency
from api.deps import OwnerDep, ServicesDep
from api.errors import Conflict, JobFailed, NotFound
from api.schemas import ChatReply, ChatRequest, ErrorBody, History, HistoryMessage, JobAccepted
from api.sse import stream_response
from shared.conversation import message_time, role_of
from shared.ids import ID_PATTERN, new_id
from shared.jobs import Event, Job
from shared.queue import TURN_TASK
from shared.threads import ACTIVITY_KEY

router = APIRouter(tags=["chat"])
log = structlog.get_logger("api.chat")

ThreadIdPath = Annotated[str, Path(pattern=ID_PATTERN, max_length=128)]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (401, 404, 409, 422, 429, 502, 503, 504)}


def accepted(job: Job) -> JSONResponse:
    body = JobAccepted(job_id=job.job_id, thread_id=job.thread_id,
                       status="running" if job.status == "running" else "queued")
    return JSONResponse(body.model_dump(), status_code=202,
                        headers={"Location": f"/chat/jobs/{job.job_id}"})


async def finished(services: ServicesDep, event: Event) -> ChatReply:
    if event.type == "done":
        return ChatReply(**event.data)
    job_id = event.data["job_id"]
    if event.type == "cancelled":
        raise Conflict("the job was cancelled", job_id=job_id)
    job = await services.jobs.get(job_id)
    raise JobFailed(event.data["detail"], job_id, (job and job.http_status) or 502)


@router.post(
    "/chat", response_model=ChatReply,
    responses={
        **ERRORS,
        200: {"description": "The reply; with `stream=true`, the job's events (SSE).",
              "content": {"text/event-stream": {"schema": {"type": "string"}}}},
        202: {"model": JobAccepted, "description": "Queued; poll Location."},
    },
)
async def post_chat(
    body: ChatRequest,
    request: Request,
    services: ServicesDep,
    owner: OwnerDep,
    wait: bool = True,
    stream: Annotated[bool, Query(description="Answer at once with the job's events "
                                              "(Server-Sent Events).")] = False,
    wait_seconds: Annotated[float | None, Query(
        alias="timeout", ge=0, le=300, description="Seconds to wait for the reply.")] = None,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=128)] = None,
) -> Any:
    """Queue a message; wait for the reply (200) or get the job to poll (202)."""
    jobs = services.jobs
    job_id = new_id()
    if idempotency_key is not None:
        canonical = json.dumps(body.model_dump(), sort_keys=True).encode()
        earlier = await idempotency.claim(services.redis, owner, idempotency_key,
                                          canonical, job_id)
        if earlier != job_id:
            job = await jobs.get(earlier)
            if job is None:
                raise NotFound("the job of this Idempotency-Key has expired")
            return await _respond(services, job, wait, wait_seconds, stream)
    job = Job(job_id=job_id, thread_id=body.thread_id or new_id(), message=body.message,
              language=body.language, owner=owner)
    try:
        job = await jobs.create(job)
        await run_in_threadpool(services.celery.send_task, TURN_TASK,
                                args=[job.job_id], task_id=job.job_id)
    except Exception:
        # Not queued: leave nothing behind that says it was (best effort, as
        # Redis may be what failed).
        with contextlib.suppress(Exception):
            if idempotency_key is not None:
                await idempotency.release(services.redis, owner, idempotency_key)
            await jobs.delete(job)
        raise
    log.info("job_accepted", job_id=job.job_id, thread_id=job.thread_id)
    return await _respond(services, job, wait, wait_seconds, stream)


async def _respond(services: ServicesDep, job: Job, wait: bool,
                   wait_seconds: float | None, stream: bool) -> Any:
    if stream:
        return stream_response(services.jobs, job)
    if wait:
        limit = services.settings.CHAT_WAIT_TIMEOUT if wait_seconds is None else wait_seconds
        event = await services.jobs.wait(job.job_id, limit)
        if event is not None:
            return await finished(services, event)
        job = await services.jobs.get(job.job_id) or job
    return accepted(job)


@router.get("/chat/history/{thread_id}", response_model=History, responses=ERRORS)
async def get_history(thread_id: ThreadIdPath, services: ServicesDep,
                      _owner: OwnerDep) -> History:
    """The conversation's messages, oldest first."""
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    saved = await services.saver.aget_tuple(config)  # type: ignore[arg-type]
    messages = saved.checkpoint["channel_values"].get("messages", []) if saved else []
    shown = [HistoryMessage(content=str(m.content), role=role, timestamp=message_time(m))
             for m in messages if (role := role_of(m)) is not None]
    if not shown:
        raise NotFound("no such thread")
    return History(thread_id=thread_id, messages=shown)


@router.delete("/chat/history/{thread_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses=ERRORS)
async def delete_history(thread_id: ThreadIdPath, services: ServicesDep,
                         _owner: OwnerDep) -> Response:
    """Delete the conversation from storage."""
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    if await services.saver.aget_tuple(config) is None:  # type: ignore[arg-type]
        raise NotFound("no such thread")
    await services.saver.adelete_thread(thread_id)
    await services.redis.zrem(ACTIVITY_KEY, thread_id)
    log.info("thread_deleted", thread_id=thread_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
