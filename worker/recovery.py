"""The recovery sweep, run by the workers themselves on a timer.

Every RECOVERY_INTERVAL_SECONDS, one worker process (whichever takes the
sweep's Redis lease first) nudges the threads whose worker died mid-turn or
whose nudge was lost, and stops the jobs whose worker did not honour a
cancel. No beat is needed: a SIGKILLed worker's turn runs again within
THREAD_LEASE_SECONDS plus about one interval.

It runs in a thread of the worker's main process, on an event loop and a
Redis client of its own, apart from the turns.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import structlog
from celery import Celery

from shared.queue import QUEUE, nudge_lost_after, queue_depths, send_turn
from shared.redis_client import state_redis
from shared.settings import Settings
from shared.store.inbox import Inbox, Sweep
from shared.store.jobs import JobStore

log = structlog.get_logger("worker.recovery")

# A running job gets this long to stop by itself after a cancel (it normally
# takes one Redis round trip) before the sweep ends it cancelled; its worker,
# if it is alive but deaf, then finds it may not store the turn.
CANCEL_GRACE = 2.0


async def sweep_once(inbox: Inbox, settings: Settings,
                     backlog: Callable[[], int]) -> Sweep | None:
    """The sweep's findings, or None if another worker swept this interval.
    `backlog` counts the turns' task messages no worker has taken yet."""
    interval_ms = int(settings.RECOVERY_INTERVAL_SECONDS * 1000)
    # Expires a little before the next tick, so some worker always takes it then.
    if not await inbox.claim_sweep(max(1, interval_ms * 9 // 10)):
        return None
    return await inbox.sweep(settings.RECOVERY_STALL_SECONDS, CANCEL_GRACE,
                               nudge_lost_after(settings), backlog())


class RecoveryTimer(threading.Thread):
    """Sweeps every RECOVERY_INTERVAL_SECONDS until stopped."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        super().__init__(name="recovery-sweep", daemon=True)
        self.app = app
        self.settings = settings
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        with asyncio.Runner() as runner:
            redis = state_redis(self.settings, 4)
            jobs = JobStore(redis, self.settings.JOB_TTL_SECONDS)
            inbox = Inbox(redis, jobs)
            try:
                while not self._stopped.wait(self.settings.RECOVERY_INTERVAL_SECONDS):
                    try:
                        found = runner.run(sweep_once(inbox, self.settings, self._backlog))
                        if found is not None:
                            self._act(runner, jobs, found)
                    except Exception as exc:  # Redis down: the next tick tries again
                        log.warning("recovery_sweep_failed", error=type(exc).__name__)
            finally:
                runner.run(redis.aclose())

    def _backlog(self) -> int:
        # Blocking (kombu), which is fine here: the sweep has a thread of its own.
        return queue_depths(self.app)[QUEUE]

    def _act(self, runner: asyncio.Runner, jobs: JobStore, found: Sweep) -> None:
        for job_id in found.stalled:
            log.warning("thread_stalled", job_id=job_id)
            send_turn(self.app, job_id)
        for job in found.unstoppable:
            log.warning("cancel_by_sweep", job_id=job.job_id)
            runner.run(jobs.cancel(job))
