"""Celery tasks: thin shells that parse the payload and call plain async code."""

from __future__ import annotations

from typing import Any

import structlog
from celery import Task
from redis.exceptions import RedisError

from shared.ids import is_valid_id
from shared.metrics import TURNS_RUNNING
from shared.queue import CLEANUP_TASK, TURN_TASK, send_turn
from worker.celery_app import app, settings
from worker.cleanup import PASS_TIME_LIMIT, cleanup_idle_threads
from worker.runtime import get_runtime
from worker.turn import backoff, drain_next

log = structlog.get_logger("worker.tasks")

# A backstop only: the turn bounds its own run with TURN_TIME_LIMIT; this
# bounds what comes around it (taking the thread, storing the turn).
TASK_TIME_LIMIT = settings.TURN_TIME_LIMIT + 15


@app.task(name=TURN_TASK, bind=True, max_retries=None)
def run_turn_task(self: Task[Any, Any], job_id: str) -> None:
    """Runs the next turn of the job's thread; the job records say how it ended."""
    if not is_valid_id(job_id):
        log.error("bad_job_id")
        return
    runtime = get_runtime()
    try:
        with TURNS_RUNNING.track_inprogress():
            step = runtime.run(drain_next(runtime.resources, job_id, self.request.id or ""),
                               timeout=TASK_TIME_LIMIT)
    except RedisError:
        # Redis is down, so nothing could be recorded: run again later. If even
        # the retry can't be sent, the job still waits in its thread's inbox,
        # and the recovery sweep nudges the thread once Redis is back.
        log.warning("turn_redis_down", job_id=job_id)
        raise self.retry(countdown=backoff(min(self.request.retries + 1, 5))) from None
    if step.retry_in is not None:
        raise self.retry(countdown=step.retry_in)
    if step.next_job is not None:
        send_turn(app, step.next_job)


@app.task(name=CLEANUP_TASK)
def cleanup_task() -> int:
    """Deletes conversations idle longer than SESSION_TTL_SECONDS; returns how many."""
    runtime = get_runtime()
    res = runtime.resources
    report = runtime.run(cleanup_idle_threads(res.settings, res.redis, res.saver),
                         timeout=PASS_TIME_LIMIT)
    for job_id in report.waiting_jobs:
        send_turn(app, job_id)
    return report.deleted
