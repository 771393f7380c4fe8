"""One chat turn: run the graph for a job and record what came of it.

The Celery task is a thin shell around `run_turn`; everything here is plain
async code that can be tested without a worker.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio.lock import Lock

from shared.conversation import human_message, reply_id
from shared.jobs import Job
from shared.queue import MAX_COUNTDOWN
from shared.threads import ACTIVITY_KEY, thread_lock_key
from worker.errors import RejectedError, TransientError, TurnError, classify
from worker.runtime import Resources

log = structlog.get_logger("worker.turn")

CANCEL_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Outcome:
    """What the task should do next: nothing, or run the job again after `retry_in` s."""

    retry_in: float | None = None


DONE = Outcome()


def backoff(failures: int) -> float:
    """Exponential backoff with full jitter, capped below the visibility timeout."""
    return random.uniform(0.5, min(MAX_COUNTDOWN, 2.0**failures))


async def run_turn(res: Resources, job_id: str) -> Outcome:
    """Runs the job's turn once; never raises for a failure the job can record."""
    job = await res.jobs.start(job_id)
    if job is None:
        log.warning("job_unknown", job_id=job_id)
        return DONE
    if job.finished:
        # Cancelled while queued, or redelivered after it finished.
        log.info("job_already_finished", job_id=job_id, status=job.status)
        return DONE
    structlog.contextvars.bind_contextvars(job_id=job_id, thread_id=job.thread_id)
    try:
        return await _attempt(res, job)
    finally:
        structlog.contextvars.unbind_contextvars("job_id", "thread_id")


async def _attempt(res: Resources, job: Job) -> Outcome:
    lock = Lock(res.redis, thread_lock_key(job.thread_id),
                timeout=res.settings.TURN_TIME_LIMIT + 5, blocking=False)
    try:
        if not await lock.acquire():
            # Another turn holds the thread: come back soon, without holding a slot.
            await res.jobs.requeue(job.job_id)
            return Outcome(retry_in=random.uniform(0.05, 0.25))
        try:
            reply = await _answer(res, job)
        finally:
            await _release(lock)
    except BaseException as exc:
        error = classify(exc) if isinstance(exc, Exception) else None
        if error is None:
            raise
        return await _failed(res, job, error)
    if reply is None:
        await res.jobs.cancel(job.job_id)
        log.info("turn_cancelled")
        return DONE
    await res.redis.zadd(ACTIVITY_KEY, {job.thread_id: job.created_at}, gt=True)
    await res.jobs.succeed(job, reply)
    log.info("turn_succeeded", attempt=job.attempt)
    return DONE


async def _release(lock: Lock) -> None:
    try:
        await lock.release()
    except Exception:  # expired or Redis gone: the lease runs out by itself
        log.warning("thread_lock_release_failed")


async def _answer(res: Resources, job: Job) -> str | None:
    """The reply, stored in the thread with its message; None if the job was cancelled."""
    config: dict[str, Any] = {"configurable": {"thread_id": job.thread_id}}
    turn_input = {"pending": human_message(job.job_id, job.message, job.created_at),
                  "language": job.language}
    run = asyncio.ensure_future(
        res.graph.ainvoke(turn_input, config, durability="exit"))  # type: ignore[call-overload]
    try:
        async with asyncio.timeout(res.settings.TURN_TIME_LIMIT):
            while not run.done():
                await asyncio.wait({run}, timeout=CANCEL_POLL_SECONDS)
                if not run.done() and await res.jobs.cancel_requested(job.job_id):
                    run.cancel()
                    await asyncio.gather(run, return_exceptions=True)
                    return None
    finally:
        if not run.done():
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
    state = run.result()
    wanted = reply_id(job.job_id)
    return next(str(m.content) for m in state["messages"] if m.id == wanted)


async def _failed(res: Resources, job: Job, error: TurnError) -> Outcome:
    if isinstance(error, RejectedError):
        await res.jobs.fail(job.job_id, str(error), 502)
        log.warning("turn_rejected", error=str(error))
        return DONE
    assert isinstance(error, TransientError)
    failures = await res.jobs.count_failure(job.job_id)
    if failures > res.settings.TURN_MAX_RETRIES:
        detail = f"{error} (gave up after {failures} attempts)"
        await res.jobs.fail(job.job_id, detail, 504 if error.timed_out else 502)
        log.warning("turn_failed", error=detail)
        return DONE
    await res.jobs.requeue(job.job_id)
    delay = error.retry_after if error.retry_after is not None else backoff(failures)
    log.info("turn_retry", error=str(error), failures=failures, retry_in=delay)
    return Outcome(retry_in=min(delay, MAX_COUNTDOWN))
