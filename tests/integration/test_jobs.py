"""The job store against a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from shared.ids import new_id
from shared.jobs import Job, JobStatus, JobStore
from shared.threads import ACTIVITY_KEY


@pytest.fixture
async def jobs(redis_url: str) -> AsyncIterator[JobStore]:
    redis = Redis.from_url(redis_url, decode_responses=True)
    yield JobStore(redis, ttl=86400)
    await redis.aclose()


def a_job() -> Job:
    return Job(job_id=new_id(), thread_id=new_id(), message="hi", language="English")


async def test_a_job_goes_from_queued_to_succeeded(jobs: JobStore) -> None:
    job = a_job()
    job = await jobs.create(job)

    started = await jobs.start(job.job_id)
    assert started is not None
    assert (started.status, started.attempt) == (JobStatus.RUNNING, 1)
    assert await jobs.succeed(started, "hello")

    done = await jobs.get(job.job_id)
    assert done is not None
    assert (done.status, done.response) == (JobStatus.SUCCEEDED, "hello")
    assert done.finished_at is not None and done.finished_at >= done.created_at
    assert await jobs.redis.ttl(jobs.job_key(job.job_id)) > 86000
    assert await jobs.redis.ttl(jobs.events_key(job.job_id)) > 86000
    assert await jobs.redis.zscore(ACTIVITY_KEY, job.thread_id) == job.created_at


async def test_the_first_outcome_stands(jobs: JobStore) -> None:
    job = a_job()
    job = await jobs.create(job)
    assert await jobs.cancel(job, only_if_queued=True)

    assert not await jobs.succeed(job, "too late")
    assert not await jobs.fail(job, "too late", 502)
    started = await jobs.start(job.job_id)
    assert started is not None and started.status == JobStatus.CANCELLED
    events = await jobs.read_events(job.job_id)
    assert [e.type for e in events] == ["cancelled"]


async def test_a_running_job_is_not_cancelled_by_the_queued_only_path(jobs: JobStore) -> None:
    job = a_job()
    job = await jobs.create(job)
    await jobs.start(job.job_id)

    assert not await jobs.cancel(job, only_if_queued=True)
    await jobs.request_cancel(job.job_id)
    assert await jobs.cancel_requested(job.job_id)


async def test_wait_wakes_on_the_terminal_event(jobs: JobStore) -> None:
    job = a_job()
    job = await jobs.create(job)

    waiter = asyncio.create_task(jobs.wait(job.job_id, seconds=5))
    await asyncio.sleep(0.05)
    await jobs.succeed(job, "woke")
    event = await asyncio.wait_for(waiter, 2)

    assert event is not None
    assert (event.type, event.data["response"]) == ("done", "woke")


async def test_wait_returns_none_after_the_timeout(jobs: JobStore) -> None:
    job = a_job()
    job = await jobs.create(job)
    assert await jobs.wait(job.job_id, seconds=0.2) is None


async def test_a_late_reader_still_gets_the_outcome(jobs: JobStore) -> None:
    job = a_job()
    job = await jobs.create(job)
    await jobs.fail(job, "LLM rejected the request", 502)

    event = await jobs.wait(job.job_id, seconds=1)

    assert event is not None
    assert event.data == {"detail": "LLM rejected the request", "job_id": job.job_id}
    failed = await jobs.get(job.job_id)
    assert failed is not None and failed.http_status == 502


async def test_requeue_moves_only_a_running_job(jobs: JobStore) -> None:
    job = a_job()
    job = await jobs.create(job)
    await jobs.start(job.job_id)
    await jobs.requeue(job.job_id)
    assert (await jobs.get(job.job_id)).status == JobStatus.QUEUED  # type: ignore[union-attr]

    await jobs.cancel(job)
    await jobs.requeue(job.job_id)
    assert (await jobs.get(job.job_id)).status == JobStatus.CANCELLED  # type: ignore[union-attr]


async def test_created_at_follows_the_order_of_the_inbox(jobs: JobStore) -> None:
    thread = new_id()
    created = await asyncio.gather(*(
        jobs.create(Job(job_id=new_id(), thread_id=thread, message=str(n), language="English"))
        for n in range(30)))

    inbox = await jobs.redis.lrange(f"chat:thread:{thread}:inbox", 0, -1)
    by_time = sorted(created, key=lambda job: job.created_at)
    assert [job.job_id for job in by_time] == inbox
