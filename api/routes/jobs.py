"""Jobs: poll one, stream its events, or cancel it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Header, Path
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from api.chat_runs import language_of, stream_response
from api.deps import OwnerDep, ServicesDep, limit_client
from api.errors import Conflict, NotFound
from api.openapi_responses import SSE_CONTENT, errors
from api.schemas import CancelAccepted, JobView
from api.sse import LAST_EVENT_ID_SCHEMA, parse_last_event_id
from shared.ids import ID_PATTERN, MAX_ID_LENGTH, shown_thread_id
from shared.store.job import Job

router = APIRouter(tags=["jobs"], dependencies=[Depends(limit_client)])

JobIdPath = Annotated[str, Path(pattern=ID_PATTERN, max_length=MAX_ID_LENGTH)]


def _time(stamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(stamp, UTC) if stamp is not None else None


async def _job(services: ServicesDep, job_id: str, owner: str) -> Job:
    """The job; 404 if it is unknown or expired, or if another key made it."""
    structlog.contextvars.bind_contextvars(job_id=job_id)
    job = await services.jobs.get(job_id)
    if job is None or job.owner != owner:
        raise NotFound("no such job (unknown, or expired after its retention time)")
    structlog.contextvars.bind_contextvars(thread_id=job.thread_id)
    return job


@router.get("/chat/jobs/{job_id}", response_model=JobView, response_model_exclude_none=True,
            responses=errors(404))
async def get_job(job_id: JobIdPath, services: ServicesDep, owner: OwnerDep) -> JobView:
    """A job's status, and its reply or error once it has ended."""
    job = await _job(services, job_id, owner)
    return JobView(
        job_id=job.job_id, thread_id=shown_thread_id(job.thread_id), status=job.status.value,
        response=job.response, language=language_of(job) if job.response is not None else None,
        error=job.error, created_at=_time(job.created_at) or datetime.now(UTC),
        finished_at=_time(job.finished_at),
    )


@router.get(
    "/chat/jobs/{job_id}/events", response_class=EventSourceResponse,
    responses={**errors(400, 404), 200: {
        "description": "The job's events (Server-Sent Events), from its start or after "
                       "Last-Event-ID; the stream ends after the terminal event.",
        "content": SSE_CONTENT}},
)
async def job_events(job_id: JobIdPath, services: ServicesDep, owner: OwnerDep,
                     last_event_id: Annotated[str, Header(
                         alias="Last-Event-ID", json_schema_extra=LAST_EVENT_ID_SCHEMA)] = "",
                     ) -> EventSourceResponse:
    """Stream a job's events: tokens, resets, and its outcome."""
    after = parse_last_event_id(last_event_id)
    job = await _job(services, job_id, owner)
    services.hub.admit(job.client)
    return stream_response(services.hub, services.jobs, job, after)


@router.post("/chat/jobs/{job_id}/cancel", status_code=202, response_model=CancelAccepted,
             responses=errors(404, 409))
async def cancel_job(job_id: JobIdPath, services: ServicesDep,
                     owner: OwnerDep) -> JSONResponse:
    """Cancel a job: a queued one never runs, a running one stops; nothing is stored."""
    job = await _job(services, job_id, owner)
    # The worker claims a job before it stores its turn (JobStore.begin_commit):
    # a cancel after that is too late, and says so.
    if await services.jobs.ask_cancel(job_id) != "cancelling":
        latest = await services.jobs.get(job_id) or job
        state = latest.status if latest.finished else "storing its reply"
        raise Conflict(f"the job has already ended ({state})", job_id=job_id)
    # A queued job ends here; a running one is stopped by its worker, which
    # watches the flag.
    await services.jobs.cancel(job, only_if_queued=True)
    body = CancelAccepted(job_id=job_id, status="cancelling")
    return JSONResponse(body.model_dump(), status_code=202)
