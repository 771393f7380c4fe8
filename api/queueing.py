"""Queueing a job: the one path from an accepted turn to the workers.

POST /chat and the runs of the LangGraph Server API both come through here,
so both get the same limits and leave nothing behind when queueing fails.
"""

from __future__ import annotations

import contextlib
import dataclasses

import structlog
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from api.agent.records import ThreadRecords
from api.deps import Services
from api.errors import BUSY_RETRY_AFTER, ApiError, TooManyRequests, Unavailable
from shared.runs import RunSpec
from shared.store.job import Job
from shared.store.jobs import Refused
from shared.tracing import current_context

log = structlog.get_logger("api.queueing")

_REFUSALS = {
    "thread": "too many messages queued on this thread; retry after the time in Retry-After",
    "client": "too many of your jobs are queued; retry after the time in Retry-After",
    "threads": "you have as many conversations as one key may (MAX_THREADS_PER_CLIENT): "
               "delete some, or wait for idle ones to expire",
}


async def queue_job(services: Services, job: Job, max_in_thread: int,
                    busy: ApiError | None = None, new_thread: bool = False) -> Job:
    """Records the job at the end of its thread's inbox, then sends its task.

    Raises TooManyRequests (429) when the thread already holds
    `max_in_thread` jobs, or `busy` instead if given, or when the client is
    over its limit; nothing is queued then. On any other failure the job's
    record is removed (best effort, as Redis may be what failed). A broker
    that is down is 503 with the job taken back, unless a worker has it
    already (the thread's previous turn passed it on).
    `new_thread`: the gateway made the thread's id just now (so the list of
    conversations knows it starts empty).
    """
    if (context := current_context()) is not None:
        job = dataclasses.replace(job, trace=context)
    try:
        job = await services.jobs.create(job, max_in_thread,
                                         services.settings.MAX_QUEUED_PER_CLIENT,
                                         new_thread=new_thread,
                                         max_threads=services.settings.MAX_THREADS_PER_CLIENT)
    except Refused as exc:
        if exc.what == "thread" and busy is not None:
            raise busy from None
        # A full inbox or client empties as jobs end; a key's threads do not.
        retry = {} if exc.what == "threads" else {"Retry-After": str(BUSY_RETRY_AFTER)}
        raise TooManyRequests(_REFUSALS[exc.what], headers=retry) from None
    except Exception:
        with contextlib.suppress(Exception):
            await services.jobs.delete(job)
        raise
    # Recorded first, sent second: a gateway that dies in between leaves a
    # job without a nudge, which the recovery sweep finds (worker/recovery.py).
    try:
        await services.publisher.send(job.job_id)
    except OperationalError as exc:
        log.warning("dependency_down", dependency="broker", error=type(exc).__name__)
        if await services.jobs.withdraw(job):
            raise Unavailable("the task queue (broker) is unavailable: nothing was queued, "
                              "try again later", headers={"Retry-After": "5"}) from None
    # The thread and its runs as the LangGraph Server API lists them, for a
    # POST /chat as for a run. The job is accepted already: a Redis that
    # fails now costs the listing, not the job.
    spec = RunSpec.from_json(job.run)
    try:
        await ThreadRecords(services.redis).add_run(
            job, {"graph_id": spec.graph_id, "assistant_id": spec.assistant_id},
            services.settings.JOB_TTL_SECONDS)
    except RedisError as exc:
        log.warning("run_not_listed", job_id=job.job_id, error=type(exc).__name__)
    return job
