"""Runs: on a thread or stateless, in the background, waited for, or streamed."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse

from api import conversations
from api.agent import run_jobs
from api.agent.records import RecordsDep, ThreadRecords
from api.agent.schemas import Run, RunCreate, RunStatus, StreamModeName
from api.agent.streams import run_path, run_stream
from api.deps import ClientDep, OwnerDep, Services, ServicesDep, StoredThreadDep, limit_client
from api.errors import Conflict, NotFound
from api.openapi_responses import Responses, errors
from api.sse import LAST_EVENT_ID_SCHEMA, parse_last_event_id
from shared.ids import ID_PATTERN, MAX_ID_LENGTH
from shared.store.job import Job

router = APIRouter(tags=["runs"], dependencies=[Depends(limit_client)])

IdPath = Annotated[str, Path(pattern=ID_PATTERN, max_length=MAX_ID_LENGTH)]
# "-1" asks for the run's events from the start, as the LangGraph SDK's joins do.
FROM_THE_START = "-1"
_RUN_EVENT_ID = {
    **LAST_EVENT_ID_SCHEMA,
    "pattern": LAST_EVENT_ID_SCHEMA["pattern"].replace("^(", f"^({FROM_THE_START}|", 1),
    "description": LAST_EVENT_ID_SCHEMA["description"] + ' "-1": from the start.'}
LastEventId = Annotated[str, Header(alias="Last-Event-ID", json_schema_extra=_RUN_EVENT_ID)]
_RUN_STREAM: Responses = {200: {
    "description": "The run's events (Server-Sent Events): `metadata` first, then those of "
                   "its stream modes (`messages` for messages-tuple), `error` if it failed; "
                   "the stream ends with the run. Resume with Last-Event-ID.",
    # `itemSchema` (OpenAPI 3.2) describes each event; its data is JSON.
    "content": {"text/event-stream": {"itemSchema": {
        "type": "object", "required": ["event", "data"], "properties": {
            "event": {"type": "string", "description": "`metadata`, a stream mode (with "
                                                       "`|namespace` for a subgraph's), "
                                                       "`error`."},
            "data": {"type": "string", "contentMediaType": "application/json"},
            "id": {"type": "string", "pattern": r"^\d+-\d+$"}}}}}}}
_OUTCOME: Responses = {200: {
    "description": "Once the run has ended: the thread's state values, or `__error__` "
                   "(`error`, `message`) if it failed. Blank lines keep the connection "
                   "alive until then.",
    "content": {"application/json": {"schema": {"type": "object"}}}}}


class StatelessBackgroundRun(RunCreate):
    # Its thread can only be deleted by someone who waits for its end.
    on_completion: Literal["keep"] = Field(
        description="A background stateless run keeps its thread.")


class RunsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A page costs a read per run before it: bounded, so no listing loads a
    # thread's every run into the gateway.
    limit: int = Field(10, ge=1, le=100)
    offset: int = Field(0, ge=0, le=1000)
    status: RunStatus | None = None


class CancelQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wait: bool = Field(False, description="Answer once the run has ended.")
    action: Literal["interrupt"] = "interrupt"


class JoinStreamQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Empty: the run's own modes (the SDK sends an unset mode as an empty value).
    stream_mode: list[StreamModeName | Literal[""]] = []
    cancel_on_disconnect: Literal["false", "0"] = "false"


async def _start(services: Services, records: ThreadRecords, owner: str, client: str,
                 body: RunCreate, stored: str | None, waiting: bool) -> Job:
    if waiting:
        services.hub.admit(client)  # refused before anything is queued
    return await run_jobs.start(services, records, owner, client, body, stored)


def _waited(services: Services, job: Job,
            records: ThreadRecords | None = None) -> StreamingResponse:
    then = None
    if records is not None:  # a stateless run that deletes its thread
        async def then() -> None:
            await conversations.erase(services, job.thread_id)
    return StreamingResponse(run_jobs.waited(services, job, then), media_type="application/json",
                             headers={"Location": f"{run_path(job)}/join",
                                      "Content-Location": run_path(job)})


def _deletes_thread(body: RunCreate) -> bool:
    return body.on_completion != "keep"


@router.post("/threads/{thread_id}/runs", response_model=Run, responses=errors(400, 404, 409))
async def create_run(stored: StoredThreadDep, body: RunCreate, services: ServicesDep,
                     records: RecordsDep, owner: OwnerDep, client: ClientDep) -> Run:
    """Queue a run on the thread; it goes on in the background."""
    job = await _start(services, records, owner, client, body, stored, waiting=False)
    return run_jobs.run_view(job)


@router.post("/threads/{thread_id}/runs/wait", response_model=None,
             responses={**errors(400, 404, 409), **_OUTCOME})
async def wait_run(stored: StoredThreadDep, body: RunCreate, services: ServicesDep,
                   records: RecordsDep, owner: OwnerDep, client: ClientDep) -> Any:
    """Queue a run on the thread and answer with the thread's state once it has ended."""
    job = await _start(services, records, owner, client, body, stored, waiting=True)
    return _waited(services, job)


@router.post("/threads/{thread_id}/runs/stream", response_class=EventSourceResponse,
             responses={**errors(400, 404, 409), **_RUN_STREAM})
async def stream_run(stored: StoredThreadDep, body: RunCreate, services: ServicesDep,
                     records: RecordsDep, owner: OwnerDep,
                     client: ClientDep) -> EventSourceResponse:
    """Queue a run on the thread and stream it."""
    job = await _start(services, records, owner, client, body, stored, waiting=True)
    return run_stream(services, job, body.modes())


@router.post("/runs", response_model=Run, responses=errors(400, 404))
async def create_stateless_run(body: StatelessBackgroundRun, services: ServicesDep,
                               records: RecordsDep, owner: OwnerDep, client: ClientDep) -> Run:
    """Queue a run on a new thread; it goes on in the background."""
    job = await _start(services, records, owner, client, body, None, waiting=False)
    return run_jobs.run_view(job)


@router.post("/runs/wait", response_model=None, responses={**errors(400, 404), **_OUTCOME})
async def wait_stateless_run(body: RunCreate, services: ServicesDep, records: RecordsDep,
                             owner: OwnerDep, client: ClientDep) -> Any:
    """Run on a new thread and answer with its state once it has ended; the thread
    is deleted then unless `on_completion` is "keep"."""
    job = await _start(services, records, owner, client, body, None, waiting=True)
    return _waited(services, job, records if _deletes_thread(body) else None)


@router.post("/runs/stream", response_class=EventSourceResponse,
             responses={**errors(400, 404), **_RUN_STREAM})
async def stream_stateless_run(body: RunCreate, services: ServicesDep, records: RecordsDep,
                               owner: OwnerDep, client: ClientDep) -> EventSourceResponse:
    """Run on a new thread and stream it; the thread is deleted once the stream
    has shown the end, unless `on_completion` is "keep"."""
    job = await _start(services, records, owner, client, body, None, waiting=True)
    then = None
    if _deletes_thread(body):
        async def then() -> None:
            await conversations.erase(services, job.thread_id)
    return run_stream(services, job, body.modes(), then=then)


@router.get("/threads/{thread_id}/runs", response_model=list[Run], responses=errors(404))
async def list_runs(stored: StoredThreadDep, services: ServicesDep, records: RecordsDep,
                    owner: OwnerDep, query: Annotated[RunsQuery, Query()]) -> list[Run]:
    """The thread's runs made through this API, newest first."""
    return await run_jobs.list_runs(services, records, stored, owner, query.offset,
                                    query.limit, query.status)


@router.get("/threads/{thread_id}/runs/{run_id}", response_model=Run, responses=errors(404))
async def get_run(stored: StoredThreadDep, run_id: IdPath, services: ServicesDep,
                  owner: OwnerDep) -> Run:
    """The run."""
    return run_jobs.run_view(await run_jobs.find(services, stored, run_id, owner))


@router.post("/threads/{thread_id}/runs/{run_id}/cancel", status_code=202,
             response_class=Response, responses={**errors(404), **_OUTCOME,
                                                 202: {"description": "Cancelling."}})
async def cancel_run(stored: StoredThreadDep, run_id: IdPath, services: ServicesDep,
                     owner: OwnerDep, query: Annotated[CancelQuery, Query()]) -> Response:
    """Cancel the run: a pending one never starts, a running one stops; nothing is
    stored. With `wait`, answer as a join does once it has ended."""
    job = await run_jobs.find(services, stored, run_id, owner)
    if query.wait:
        services.hub.admit(job.client)
    # The worker claims a job before it stores its turn: a cancel after that
    # is too late. The LangGraph Server answers 404 then: no run to cancel.
    if await services.jobs.ask_cancel(run_id) != "cancelling":
        raise NotFound("no run to cancel: it has ended, or is storing its result")
    await services.jobs.cancel(job, only_if_queued=True)
    if query.wait:
        return _waited(services, job)
    return Response(status_code=202)


@router.delete("/threads/{thread_id}/runs/{run_id}", status_code=204, response_class=Response,
               responses={**errors(404, 409), 204: {"description": "Deleted."}})
async def delete_run(stored: StoredThreadDep, run_id: IdPath, services: ServicesDep,
                     records: RecordsDep, owner: OwnerDep) -> Response:
    """Forget an ended run: its record and its events (what it stored stays)."""
    job = await run_jobs.find(services, stored, run_id, owner)
    if not job.finished:
        raise Conflict("the run is pending or running: cancel it first")
    await services.jobs.delete(job)
    await records.remove_run(stored, run_id)
    return Response(status_code=204)


@router.get("/threads/{thread_id}/runs/{run_id}/join", response_model=None,
            responses={**errors(404), **_OUTCOME})
async def join_run(stored: StoredThreadDep, run_id: IdPath, services: ServicesDep,
                   owner: OwnerDep) -> Any:
    """Wait for the run to end and answer with the thread's state."""
    job = await run_jobs.find(services, stored, run_id, owner)
    services.hub.admit(job.client)
    return _waited(services, job)


@router.get("/threads/{thread_id}/runs/{run_id}/stream", response_class=EventSourceResponse,
            responses={**errors(400, 404), **_RUN_STREAM})
async def join_run_stream(stored: StoredThreadDep, run_id: IdPath, services: ServicesDep,
                          owner: OwnerDep, query: Annotated[JoinStreamQuery, Query()],
                          last_event_id: LastEventId = "") -> EventSourceResponse:
    """Stream the run from its start, or from just after Last-Event-ID."""
    after = parse_last_event_id("" if last_event_id == FROM_THE_START else last_event_id)
    job = await run_jobs.find(services, stored, run_id, owner)
    services.hub.admit(job.client)
    modes: list[str] = [m for m in query.stream_mode if m] or run_jobs.spec_of(job).stream_mode
    return run_stream(services, job, modes, after)
