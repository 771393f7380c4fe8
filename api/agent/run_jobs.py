"""A run of the LangGraph Server API is a job: the one mapping between the two.

The job carries the run (shared.runs.RunSpec) like any other, so a run gets
the same queue, order, rate limit, retries and recovery as a POST /chat.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, cast

from api import conversations
from api.agent import state
from api.agent.assistants import merged_config, resolve
from api.agent.inputs import check_input, first_text
from api.agent.records import ThreadRecords
from api.agent.schemas import MultitaskStrategy, Run, RunCreate, RunStatus
from api.deps import Services
from api.errors import BadRequest, Conflict, NotFound
from api.queueing import queue_job
from api.sse import job_event_log
from shared.ids import new_id, new_job_id, shown_thread_id, stored_thread_id
from shared.runs import RunSpec
from shared.scoped_saver import hidden_config
from shared.store.job import Job, JobStatus

NO_SUCH_THREAD = "no such thread"
NO_SUCH_CHECKPOINT = "no such checkpoint in this thread"
NO_SUCH_RUN = "no such run (unknown, or expired after its retention time)"
_STATUS: dict[JobStatus, RunStatus] = {
    JobStatus.QUEUED: "pending", JobStatus.RUNNING: "running", JobStatus.SUCCEEDED: "success",
    JobStatus.FAILED: "error", JobStatus.CANCELLED: "interrupted"}


def _time(stamp: float) -> datetime:
    return datetime.fromtimestamp(stamp, UTC)


def spec_of(job: Job) -> RunSpec:
    """The run, as start() (or POST /chat) recorded it."""
    return RunSpec.from_json(job.run)


def run_view(job: Job) -> Run:
    spec = spec_of(job)
    status = _STATUS[job.status]
    if job.status == JobStatus.FAILED and job.http_status == 504:
        status = "timeout"
    # The run's own arguments, named as the LangGraph Server names them.
    arguments = {"input": spec.input, "command": spec.command,
              "config": hidden_config(spec.langgraph_config(job.job_id, job.thread_id)),
              "context": spec.context or {}, "stream_mode": spec.stream_mode,
              "interrupt_before": spec.interrupt_before,
              "interrupt_after": spec.interrupt_after, "webhook": None, "feedback_keys": None,
              "temporary": spec.temporary, "subgraphs": spec.stream_subgraphs,
              # Every run's events are kept: any stream of it can be resumed.
              "resumable": True, "checkpoint_during": spec.durability != "exit",
              "durability": spec.durability}
    return Run(run_id=job.job_id, thread_id=shown_thread_id(job.thread_id),
               assistant_id=spec.assistant_id, created_at=_time(job.created_at),
               updated_at=_time(job.finished_at or job.started_at or job.created_at),
               status=status, metadata={**spec.metadata, "graph_id": spec.graph_id,
                                        "assistant_id": spec.assistant_id},
               arguments=arguments,
               multitask_strategy=cast(MultitaskStrategy, spec.multitask_strategy))


async def check_thread(services: Services, records: ThreadRecords, stored: str,
                       owner: str, create: bool = False) -> None:
    """404 unless the thread exists and is `owner`'s, or (`create`) may be created."""
    record = await records.get(stored)
    if record is None and not create and not await conversations.exists_for(
            services, stored, owner):
        # A thread made with no run before ids were private was moved meanwhile.
        record = await records.get(stored)
        if record is None:
            raise NotFound(NO_SUCH_THREAD)
    if record is not None and record.owner != owner:
        raise NotFound(NO_SUCH_THREAD)


async def start(services: Services, records: ThreadRecords, owner: str, client: str,
                body: RunCreate, stored: str | None) -> Job:
    """Queues the run on the thread (by its stored id), or on a new one for a
    stateless run (`stored` None), following its multitask strategy."""
    assistant, entry = await resolve(services, owner, body.assistant_id)
    if body.input is not None and body.command is not None:
        raise BadRequest("give either input or command, not both")
    graph_input = check_input(entry, body.input)
    checkpoint_id = body.start_checkpoint()
    temporary = stored is None and body.on_completion != "keep"
    if stored is None:
        stored = stored_thread_id(owner, new_id())
        if checkpoint_id is not None:
            raise NotFound(NO_SUCH_CHECKPOINT)
    else:
        await check_thread(services, records, stored, owner,
                           create=body.if_not_exists == "create")
        if checkpoint_id is not None and await state.latest(
                services, stored, checkpoint_id) is None:
            raise NotFound(NO_SUCH_CHECKPOINT)
    if body.multitask_strategy in ("interrupt", "rollback"):
        # Queued runs never start; the running one stops before it stores
        # anything (so it is rolled back too).
        await services.jobs.cancel_thread(stored)
    spec = RunSpec(
        graph_id=entry.graph_id, assistant_id=assistant.assistant_id, input=graph_input,
        command=body.command.model_dump(exclude_none=True) if body.command else None,
        config=merged_config(assistant, body.graph_config()),
        context={**assistant.context, **(body.context or {})} or None,
        checkpoint_id=checkpoint_id, stream_mode=body.modes(),
        stream_subgraphs=body.stream_subgraphs, interrupt_before=body.interrupt_before,
        interrupt_after=body.interrupt_after, metadata=body.metadata or {},
        multitask_strategy=body.multitask_strategy,
        # Every step's checkpoint, as the LangGraph Server keeps them (a client
        # edits or regenerates from them); held and written in one PUT anyway.
        durability=body.durability or "async", temporary=temporary)
    job = Job(job_id=new_job_id(stored), thread_id=stored, title=first_text(graph_input),
              owner=owner, client=client, run=spec.to_json())
    # "reject": a thread holding any unfinished job refuses, in the same atomic
    # step that would queue it.
    settings = services.settings
    job = await queue_job(
        services, job, 1 if body.multitask_strategy == "reject" else settings.MAX_QUEUED_PER_THREAD,
        busy=Conflict("the thread has a run pending or running (multitask_strategy reject)"))
    return job


async def find(services: Services, stored: str, run_id: str, owner: str) -> Job:
    """The run; 404 if unknown or expired, on another thread, or another key's."""
    job = await services.jobs.get(run_id)
    if job is None or job.run is None or job.owner != owner or job.thread_id != stored:
        raise NotFound(NO_SUCH_RUN)
    return job


async def list_runs(services: Services, records: ThreadRecords, stored: str, owner: str,
                    offset: int, limit: int, status: RunStatus | None) -> list[Run]:
    """The thread's runs, newest first; 404 for a thread that does not exist
    (or was deleted, or is another key's), as the LangGraph Server answers."""
    await check_thread(services, records, stored, owner)
    async def load(run_ids: list[str]) -> list[Job | None]:
        return list(await asyncio.gather(*(services.jobs.get(run_id) for run_id in run_ids)))

    def keep(job: Job) -> bool:
        return job.owner == owner and (status is None or run_view(job).status == status)

    jobs = await records.runs(stored, offset, limit, load, keep)
    return [run_view(job) for job in jobs]


async def outcome(services: Services, job: Job) -> dict[str, Any]:
    """What a wait or a join answers once the run has ended: the thread's
    state values, or the run's error."""
    if job.status == JobStatus.FAILED:
        return {"__error__": {"error": "RunError", "message": job.error or "failed"}}
    return await state.final_values(services, job.thread_id)


async def waited(services: Services, job: Job,
                 then: Callable[[], Awaitable[None]] | None = None) -> AsyncIterator[bytes]:
    """The body of a wait or a join: a blank line whenever the run is still
    going (JSON ignores it; proxies see a live connection), then its outcome.

    `then` runs once the outcome is read (a stateless run deletes its thread).
    """
    async for event in job_event_log(services.hub, services.jobs, job, "0-0"):
        if event is None:
            yield b"\n"
    ended = await services.jobs.get(job.job_id) or job
    body = await outcome(services, ended)
    if then is not None:
        await then()
    yield json.dumps(body, default=str).encode()
