"""Running turns (runs of a graph): one thread at a time, in order, within the global rate limit.

The Celery task is a thin shell around `drain_next`; everything here is plain
async code that can be tested without a worker.

A task is a nudge for one thread rather than an order to run one job: it
takes the thread's lease and runs the job at the head of the thread's inbox,
so turns apply in the order the gateway accepted them whichever worker gets
which message. A task that finds the lease taken just ends: the holder hands
the thread on (`NextStep.next_job`) when it is done. If the holder dies, its
lease runs out and the recovery sweep nudges the thread again.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio.lock import Lock
from redis.exceptions import LockError

from shared import metrics
from shared.conversation import OWNER_FIELD
from shared.queue import MAX_COUNTDOWN
from shared.runs import RunSpec
from shared.store.job import Job
from shared.tracing import run_span
from worker.errors import RejectedError, TransientError, TurnError, classify
from worker.graph_run import RunOutcome, run_graph, stored_already
from worker.runtime import Resources

log = structlog.get_logger("worker.turn")

# A turn that keeps failing because storage is down gives up after this long,
# counted from its first failure (not from its acceptance: a job that waited
# in a backlog has not been failing).
STORAGE_OUTAGE_LIMIT = 900
# A run still going this long after its cancel is cancelled again (see stop).
CANCEL_AGAIN_SECONDS = 0.5


@dataclass(frozen=True)
class NextStep:
    """What the task does next: run again after `retry_in` s, or nudge `next_job`."""

    retry_in: float | None = None
    next_job: str | None = None


DONE = NextStep()


class LeaseLost(Exception):
    """Another worker may have taken the thread over: this one must stop."""


def backoff(failures: int) -> float:
    """Exponential backoff with full jitter, capped at MAX_COUNTDOWN."""
    return random.uniform(0.5, min(MAX_COUNTDOWN, 2.0**failures))


async def drain_next(res: Resources, job_id: str, task_id: str = "") -> NextStep:
    """Runs the next turn of the job's thread, unless another worker is on it."""
    nudged = await res.jobs.get(job_id)
    if nudged is None:
        log.warning("job_unknown", job_id=job_id)
        return DONE
    thread_id = nudged.thread_id
    lease = res.inbox.lease(thread_id, res.settings.THREAD_LEASE_SECONDS)
    taken, head_id = await res.inbox.take(thread_id, lease)
    if not taken:  # whoever holds it, or the held job's retry, passes it on
        return DONE
    released = False
    try:
        job = None
        if head_id is not None:
            # Most often the nudge's own job is next: no need to read it again
            # (its start re-checks it, atomically).
            job = (nudged if nudged.job_id == head_id and not nudged.finished
                   else await res.inbox.head(thread_id))
        if job is not None:
            structlog.contextvars.bind_contextvars(job_id=job.job_id, thread_id=thread_id)
            with run_span(job.trace, job.job_id, thread_id):
                outcome = await _run(res, job, lease, task_id)
            if outcome.retry_in is not None:
                await res.inbox.hold(thread_id, outcome.retry_in)
                return outcome
        # A job whose nudge was turned away while we held the lease (even if
        # we ran nothing) waits for us: release, and pass the thread on.
        owned, next_job = await res.inbox.release(thread_id, lease)
        released = True
        if not owned:
            log.warning("thread_lease_lost")
        return NextStep(next_job=next_job)
    finally:
        structlog.contextvars.unbind_contextvars("job_id", "thread_id")
        if not released:
            await _release(lease)


async def _release(lease: Lock) -> None:
    try:
        await lease.release()
    except LockError:
        log.warning("thread_lease_lost")


async def _run(res: Resources, job: Job, lease: Lock, task_id: str) -> NextStep:
    wait = await res.limiter.count_turn(job.client)
    if wait > 0:
        log.info("turn_rate_limited", retry_in=round(wait, 3))
        metrics.LLM_LIMIT_WAIT.inc(min(wait, MAX_COUNTDOWN))
        return NextStep(retry_in=min(wait, MAX_COUNTDOWN))
    with res.cancels.watching(job.job_id) as asked:
        return await _start(res, job, lease, task_id, asked)


async def _start(res: Resources, job: Job, lease: Lock, task_id: str,
                 asked: asyncio.Event) -> NextStep:
    started = await res.jobs.start(job.job_id, task_id)
    if started is None or started.finished:
        return DONE
    log.info("turn_started", attempt=started.attempt)
    if started.attempt == 1 and started.started_at is not None:
        metrics.QUEUE_WAIT.observe(max(0.0, started.started_at - started.created_at))
    if started.cancel_requested is not None:  # asked while it was queued
        await res.jobs.cancel(started)
        return DONE
    try:
        outcome = await _answer(res, started, lease, asked)
    except LeaseLost:
        log.warning("turn_abandoned_lease_lost")
        return DONE
    except Exception as exc:
        error = classify(exc)
        if error is None:
            log.exception("turn_crashed")
            await res.jobs.fail(started, "internal error in the worker", 502)
            return DONE
        return await _failed(res, started, error)
    if outcome is None:
        await res.jobs.cancel(started)
        log.info("turn_cancelled")
        return DONE
    await res.jobs.succeed(started, outcome.reply, outcome.interrupted)
    log.info("turn_succeeded", attempt=started.attempt)
    return DONE


async def _answer(res: Resources, job: Job, lease: Lock,
                  asked: asyncio.Event) -> RunOutcome | None:
    """How the run ended, its state stored in the thread; None if the job was
    cancelled, and then nothing is stored.

    While the graph runs, this watches for a cancel request and renews the
    thread's lease. The graph's checkpoint writes are held until it has
    ended; they are carried out only if no cancel came first.
    """
    spec = RunSpec.from_json(job.run)
    if job.attempt > 1 and (stored := await stored_already(res, job)) is not None:
        return stored  # an earlier attempt stored it and died before saying so
    # The thread's owner is stored with each checkpoint: the gateway checks it there.
    with res.deferred.deferred({OWNER_FIELD: job.owner}) as held:
        # The task copies this context, so the graph's writes are held.
        run = asyncio.ensure_future(run_graph(res, job, spec))
    cancelled = asyncio.ensure_future(asked.wait())
    renew_every = res.settings.THREAD_LEASE_SECONDS / 3
    try:
        async with asyncio.timeout(res.settings.TURN_TIME_LIMIT):
            while not run.done():
                await asyncio.wait({run, cancelled}, timeout=renew_every,
                                   return_when=asyncio.FIRST_COMPLETED)
                if run.done():
                    break
                if cancelled.done():
                    return None
                try:
                    await lease.reacquire()
                except LockError as exc:
                    raise LeaseLost from exc
    finally:
        await stop(run, cancelled)
    outcome = run.result()
    if not await res.jobs.begin_commit(job.job_id):
        return None
    await res.deferred.commit(held)
    return outcome


async def stop(*tasks: asyncio.Future[Any]) -> None:
    """Cancels the tasks and waits until each has ended.

    A cancel can be lost inside a library (a CancelledError caught and not
    raised again); the task would then go on, and with it the provider's
    stream, which bills every token, until the reply's end. So a task still
    running CANCEL_AGAIN_SECONDS after its cancel is cancelled again.
    """
    for attempt in itertools.count():
        running = {task for task in tasks if not task.done()}
        if not running:
            break
        if attempt:
            log.warning("turn_cancel_repeated", attempt=attempt)
        for task in running:
            task.cancel()
        await asyncio.wait(running, timeout=CANCEL_AGAIN_SECONDS)
    for task in tasks:  # seen, so asyncio does not log it as never retrieved
        if not task.cancelled():
            task.exception()


async def _failed(res: Resources, job: Job, error: TurnError) -> NextStep:
    if isinstance(error, RejectedError):
        await res.jobs.fail(job, error.public, 502)
        log.warning("turn_rejected", error=error.public, provider_error=str(error))
        return DONE
    assert isinstance(error, TransientError)
    if error.rate_limited:
        metrics.LLM_RATE_LIMITED.inc()
    if error.rate_limited and error.retry_after:
        await res.limiter.pause(error.retry_after)
        metrics.LLM_LIMIT_WAIT.inc(min(error.retry_after, MAX_COUNTDOWN))
    gave_up = None
    failures, failing_for = await res.jobs.count_failure(job.job_id, error.counts)
    if error.counts:
        if failures > res.settings.TURN_MAX_RETRIES:
            gave_up = f"{error.public} (gave up after {failures} attempts)"
    else:
        failures = min(job.attempt, 5)
        if failing_for > STORAGE_OUTAGE_LIMIT:
            gave_up = f"{error.public} (gave up after {STORAGE_OUTAGE_LIMIT} s)"
    delay = error.retry_after if error.retry_after is not None else backoff(failures)
    if gave_up is not None:
        await res.jobs.fail(job, gave_up, 504 if error.timed_out else 502)
        log.warning("turn_failed", error=error.public, provider_error=str(error),
                    outcome=gave_up)
        return DONE
    await res.jobs.requeue(job.job_id)
    log.info("turn_retry", error=error.public, provider_error=str(error),
             retry_in=round(delay, 3))
    return NextStep(retry_in=min(delay, MAX_COUNTDOWN))
