"""Celery tasks: thin shells that parse the payload and call plain async code."""

from __future__ import annotations

from typing import Any

import structlog
from celery import Task
from redis.exceptions import RedisError

from shared.ids import is_valid_id
from shared.queue import CLEANUP_TASK, TURN_TASK
from worker.celery_app import app
from worker.cleanup import cleanup_idle_threads
from worker.runtime import get_runtime
from worker.turn import backoff, run_turn

log = structlog.get_logger("worker.tasks")


@app.task(name=TURN_TASK, bind=True, max_retries=None)
def run_turn_task(self: Task[Any, Any], job_id: str) -> None:
    """Runs one chat turn; the job's record says how it ended."""
    if not is_valid_id(job_id):
        log.error("bad_job_id")
        return
    runtime = get_runtime()
    try:
        outcome = runtime.run(run_turn(runtime.resources, job_id))
    except RedisError:
        # Redis is down, so the job could not record anything: run it again
        # later. If even the retry can't be sent, the message was never
        # acknowledged and Redis hands it out again after the visibility timeout.
        log.warning("turn_redis_down", job_id=job_id)
        raise self.retry(countdown=backoff(min(self.request.retries + 1, 5))) from None
    except Exception:
        log.exception("turn_crashed", job_id=job_id)
        runtime.run(runtime.resources.jobs.fail(job_id, "internal error in the worker", 502))
        return
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)


@app.task(name=CLEANUP_TASK)
def cleanup_task() -> int:
    """Deletes conversations idle longer than SESSION_TTL_SECONDS."""
    runtime = get_runtime()
    return runtime.run(cleanup_idle_threads(runtime.resources))
