"""Jobs: poll one, or cancel it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Path
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from api.deps import OwnerDep, ServicesDep
from api.errors import Conflict, NotFound
from api.routes.chat import ERRORS
from api.schemas import CancelAccepted, ErrorBody, JobView
from api.sse import parse_last_event_id, stream_response
from shared.ids import ID_PATTERN
from shared.jobs import Job, JobStatus

router = APIRouter(tags=["jobs"])

JobIdPath = Annotated[str, Path(pattern=ID_PATTERN, max_length=128)]


def _time(stamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(stamp, UTC) if stamp is not None else None


async def _job(services: ServicesDep, job_id: str, owner: str) -> Job:
    job = await services.jobs.get(job_id)
    if job is None or job.owner != owner:
        raise NotFound("no such job (unknown, or expired after its retention time)")
    return job


@router.get("/chat/jobs/{job_id}", response_model=JobView, response_model_exclude_none=True,
            responses=ERRORS)
async def get_job(job_id: JobIdPath, services: ServicesDep, owner: OwnerDep) -> JobView:
    """A job's status, and its reply or error once it has ended."""
    job = await _job(services, job_id, owner)
    return JobView(
        job_id=job.job_id, thread_id=job.thread_id, status=job.status.value,
        response=job.response, language=job.language if job.response is not None else None,
        error=job.error, created_at=_time(job.created_at) or datetime.now(UTC),
        finished_at=_time(job.finished_at),
    )


@router.get(
    "/chat/jobs/{job_id}/events", response_class=EventSourceResponse,
    responses={**ERRORS, 400: {"model": ErrorBody}, 200: {
        "description": "The job's events (Server-Sent Events), from its start or after "
                       "Last-Event-ID; the stream ends after the terminal event.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
async def job_events(job_id: JobIdPath, services: ServicesDep, owner: OwnerDep,
                     last_event_id: Annotated[str | None, Header(
                         alias="Last-Event-ID", max_length=64)] = None) -> EventSourceResponse:
    """Stream a job's events: tokens, resets, and its outcome."""
    after = parse_last_event_id(last_event_id)
    job = await _job(services, job_id, owner)
    return stream_response(services.jobs, job, after)


@router.post("/chat/jobs/{job_id}/cancel", status_code=202, response_model=CancelAccepted,
             responses=ERRORS)
async def cancel_job(job_id: JobIdPath, services: ServicesDep,
                     owner: OwnerDep) -> JSONResponse:
    """Cancel a job: a queued one never runs, a running one stops; nothing is stored."""
    job = await _job(services, job_id, owner)
    if job.finished:
        raise Conflict(f"the job has already ended ({job.status})", job_id=job_id)
    await services.jobs.request_cancel(job_id)
    # A queued job ends here; a running one is stopped by its worker, which
    # watches the flag. The status check and the change are one atomic step.
    if not await services.jobs.cancel(job, only_if_queued=True):
        latest = await services.jobs.get(job_id)
        if latest is not None and latest.finished and latest.status != JobStatus.CANCELLED:
            raise Conflict(f"the job has already ended ({latest.status})", job_id=job_id)
    body = CancelAccepted(job_id=job_id, status="cancelling")
    return JSONResponse(body.model_dump(), status_code=202)
