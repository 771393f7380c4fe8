"""Taking and handing on a thread in a worker, against a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from redis.asyncio import Redis
from redis.asyncio.lock import Lock

from shared.settings import Settings
from shared.store.inbox import Inbox
from shared.store.jobs import JobStore
from shared.store.keys import thread_lock_key
from tests import helpers
from tests.helpers import empty_database
from worker.runtime import Resources
from worker.turn import NextStep, drain_next


class InboxRacedFake(Inbox):
    """Fake for this test: a job is accepted on the thread just after the lease
    is taken, as a gateway may do at any moment; its nudge finds the lease
    taken and ends, so the holder must pass the thread on."""

    late: str | None = None

    async def take(self, thread_id: str, lease: Lock) -> tuple[bool, str | None]:
        taken = await super().take(thread_id, lease)
        if self.late is None:
            self.late = (await helpers.accept(self.jobs, helpers.a_job(thread_id))).job_id
            its_nudge = Lock(self.redis, thread_lock_key(thread_id), timeout=10)
            assert await super().take(thread_id, its_nudge) == (False, None)
        return taken


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    async with empty_database(redis_url, 4) as client:
        yield client


async def test_a_job_accepted_while_a_stale_nudge_holds_the_thread_is_handed_on(
        redis: Redis) -> None:
    jobs = JobStore(redis, ttl=3600)
    inbox = InboxRacedFake(redis, jobs)
    # Only what the path of a nudge with nothing to run touches.
    res = cast(Resources, cast(Any, type("Res", (), {
        "settings": Settings(_env_file=None), "redis": redis,
        "jobs": jobs, "inbox": inbox})))
    stale = await helpers.accept(jobs, helpers.a_job())
    await jobs.succeed(stale, "done")  # its turn ran already: this nudge is a duplicate

    step = await drain_next(res, stale.job_id)

    assert inbox.late is not None
    assert step == NextStep(next_job=inbox.late)
