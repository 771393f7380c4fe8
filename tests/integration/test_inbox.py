"""Thread inboxes and the recovery sweep against a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio.lock import Lock

from shared.store.inbox import Inbox
from shared.store.job import Job
from shared.store.jobs import JobStore
from shared.store.keys import hold_key, inbox_key, job_key, pending_key, thread_lock_key
from tests import helpers
from tests.helpers import empty_database


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[Inbox]:
    async with empty_database(redis_url, 3) as redis:
        yield Inbox(redis, JobStore(redis, ttl=3600))


async def accept(queue: Inbox, thread: str, n: int = 1) -> list[Job]:
    return [await helpers.accept(queue.jobs, helpers.a_job(thread, str(i))) for i in range(n)]


async def test_the_head_is_the_oldest_unfinished_job(queue: Inbox) -> None:
    first, second, third = await accept(queue, "t", 3)
    await queue.jobs.cancel(first)

    head = await queue.head("t")

    assert head is not None and head.job_id == second.job_id
    assert await queue.redis.lrange(inbox_key("t"), 0, -1) == [second.job_id, third.job_id]


async def test_an_empty_inbox_stops_being_pending(queue: Inbox) -> None:
    (job,) = await accept(queue, "t")
    assert await queue.redis.sismember(pending_key("t"), "t")
    await queue.jobs.succeed(job, "done")

    assert await queue.next_id("t") is None
    assert not await queue.redis.sismember(pending_key("t"), "t")


def a_lease(queue: Inbox, thread: str) -> Lock:
    return Lock(queue.redis, thread_lock_key(thread), timeout=10, blocking=False)


async def test_a_nudge_turned_away_by_the_lease_is_passed_on_at_its_release(
        queue: Inbox) -> None:
    first, second = await accept(queue, "t", 2)
    mine, theirs = a_lease(queue, "t"), a_lease(queue, "t")

    assert await queue.take("t", mine) == (True, first.job_id)
    assert await queue.take("t", theirs) == (False, None)  # second's nudge
    await queue.jobs.succeed(first, "done")

    assert await queue.release("t", mine) == (True, second.job_id)
    assert not await queue.redis.exists(thread_lock_key("t"))
    # Passed on once: the next holder has no one to pass it to.
    assert await queue.take("t", theirs) == (True, second.job_id)
    assert await queue.release("t", theirs) == (True, None)


async def test_nudges_turned_away_behind_the_head_are_passed_on_one_holder_after_another(
        queue: Inbox) -> None:
    jobs = await accept(queue, "t", 3)
    first = a_lease(queue, "t")
    assert await queue.take("t", first) == (True, jobs[0].job_id)
    for _ in jobs[1:]:  # their nudges come while the first runs
        assert await queue.take("t", a_lease(queue, "t")) == (False, None)

    holder = first
    for n, job in enumerate(jobs):
        await queue.jobs.succeed(job, "done")
        after = jobs[n + 1].job_id if n + 1 < len(jobs) else None
        assert await queue.release("t", holder) == (True, after)
        if after is not None:  # the nudge it was passed on with
            holder = a_lease(queue, "t")
            assert await queue.take("t", holder) == (True, after)


async def test_without_a_nudge_turned_away_nothing_is_passed_on(queue: Inbox) -> None:
    await accept(queue, "t", 2)  # the second's nudge is still on its way
    mine = a_lease(queue, "t")
    assert (await queue.take("t", mine))[0]

    assert await queue.release("t", mine) == (True, None)


async def test_a_lease_lost_meanwhile_is_not_released(queue: Inbox) -> None:
    await accept(queue, "t")
    mine, theirs = a_lease(queue, "t"), a_lease(queue, "t")
    assert (await queue.take("t", mine))[0]
    await queue.redis.delete(thread_lock_key("t"))  # it ran out...
    assert (await queue.take("t", theirs))[0]  # ...and another worker took the thread

    assert (await queue.release("t", mine))[0] is False
    assert await theirs.owned()


async def test_a_nudge_turned_away_by_a_hold_is_passed_on_after_the_retry(
        queue: Inbox) -> None:
    (job,) = await accept(queue, "t")
    await queue.hold("t", 10)

    assert await queue.take("t", a_lease(queue, "t")) == (False, None)
    assert not await queue.redis.exists(thread_lock_key("t"))
    await queue.redis.delete(hold_key("t"))  # the retry's time came
    retry = a_lease(queue, "t")
    assert await queue.take("t", retry) == (True, job.job_id)
    assert await queue.release("t", retry) == (True, job.job_id)


async def test_a_running_job_without_a_lease_is_stalled_once_a_minute(queue: Inbox) -> None:
    (job,) = await accept(queue, "t")
    await queue.jobs.start(job.job_id)

    first = await queue.sweep(stall_seconds=60, cancel_grace=2, lost_after=600, backlog=0)
    second = await queue.sweep(stall_seconds=60, cancel_grace=2, lost_after=600, backlog=0)

    assert first.stalled == [job.job_id]
    assert second.stalled == []


async def test_a_leased_or_held_thread_is_not_stalled(queue: Inbox) -> None:
    (leased,) = await accept(queue, "a")
    (held,) = await accept(queue, "b")
    for job in (leased, held):
        await queue.jobs.start(job.job_id)
    await queue.redis.set(thread_lock_key("a"), "token", ex=10)
    await queue.hold("b", 10)

    assert await stalled(queue, 0, 600) == []


async def stalled(queue: Inbox, stall_seconds: float, lost_after: float,
                  backlog: int = 0) -> list[str]:
    return (await queue.sweep(stall_seconds, cancel_grace=2, lost_after=lost_after,
                              backlog=backlog)).stalled


async def test_a_queued_job_is_stalled_only_after_the_stall_time(queue: Inbox) -> None:
    (job,) = await accept(queue, "t")

    assert await stalled(queue, 60, 600) == []
    assert await stalled(queue, 0, 600) == [job.job_id]


async def test_a_queued_job_behind_a_backlog_is_not_stalled(queue: Inbox) -> None:
    (job,) = await accept(queue, "t")

    assert await stalled(queue, 0, 600, backlog=1) == []
    assert await stalled(queue, 0, 600, backlog=0) == [job.job_id]


async def test_a_queued_job_waiting_too_long_is_nudged_even_behind_a_backlog(
        queue: Inbox) -> None:
    (job,) = await accept(queue, "t")

    assert await stalled(queue, 0, 60, backlog=1) == []
    assert await stalled(queue, 0, 0, backlog=1) == [job.job_id]


async def test_a_running_job_ignoring_its_cancel_is_unstoppable(queue: Inbox) -> None:
    (job,) = await accept(queue, "t")
    await queue.jobs.start(job.job_id, task_id="celery-task-1")
    await queue.redis.set(thread_lock_key("t"), "token", ex=10)
    await queue.redis.hset(job_key(job.job_id), "cancel_requested", "1.0")

    found = await queue.sweep(stall_seconds=60, cancel_grace=2, lost_after=600, backlog=0)

    assert [j.job_id for j in found.unstoppable] == [job.job_id]
    assert found.unstoppable[0].task_id == "celery-task-1"
    await queue.jobs.ask_cancel(job.job_id)  # just now: still within the grace
    again = await queue.sweep(stall_seconds=60, cancel_grace=2, lost_after=600, backlog=0)
    assert again.unstoppable == []
