"""The job store against a real redis-server."""

from __future__ import annotations

import asyncio
import time

import pytest

from shared.ids import new_id
from shared.store.job import JobStatus
from shared.store.jobs import CANCELLED_TTL_SECONDS, JobStore, Refused
from shared.store.keys import activity_key, client_jobs_key, events_key, inbox_key, job_key
from tests.helpers import a_job, accept


async def test_a_job_goes_from_queued_to_succeeded(jobs: JobStore) -> None:
    job = await accept(jobs, a_job())

    started = await jobs.start(job.job_id)
    assert started is not None
    assert (started.status, started.attempt) == (JobStatus.RUNNING, 1)
    assert await jobs.begin_commit(job.job_id)
    assert await jobs.succeed(started, "hello")

    done = await jobs.get(job.job_id)
    assert done is not None
    assert (done.status, done.response) == (JobStatus.SUCCEEDED, "hello")
    assert done.finished_at is not None and done.finished_at >= done.created_at
    assert await jobs.redis.ttl(job_key(job.job_id)) > 86000
    assert await jobs.redis.ttl(events_key(job.job_id)) > 86000
    # Accepting and storing a turn both mark the thread active, on Redis's clock.
    assert await jobs.redis.zscore(activity_key(job.thread_id), job.thread_id) == done.finished_at


async def test_the_first_outcome_stands(jobs: JobStore) -> None:
    job = await accept(jobs, a_job())
    assert await jobs.cancel(job, only_if_queued=True)

    assert not await jobs.succeed(job, "too late")
    assert not await jobs.fail(job, "too late", 502)
    started = await jobs.start(job.job_id)
    assert started is not None and started.status == JobStatus.CANCELLED
    events = await jobs.read_events(job.job_id)
    assert [e.type for e in events] == ["cancelled"]
    # It stored nothing: its record (the run, its metadata) is kept an hour, not two days.
    for key in (job_key(job.job_id), events_key(job.job_id)):
        assert 0 < await jobs.redis.ttl(key) <= CANCELLED_TTL_SECONDS


async def test_a_running_job_is_asked_to_stop_not_ended(jobs: JobStore) -> None:
    job = await accept(jobs, a_job())
    await jobs.start(job.job_id)

    assert not await jobs.cancel(job, only_if_queued=True)
    assert await jobs.ask_cancel(job.job_id) == "cancelling"
    assert await jobs.cancels_requested([job.job_id]) == [job.job_id]
    # The worker then finds it may not store its turn.
    assert not await jobs.begin_commit(job.job_id)


async def test_a_cancel_after_the_commit_began_is_too_late(jobs: JobStore) -> None:
    job = await accept(jobs, a_job())
    await jobs.start(job.job_id)
    assert await jobs.begin_commit(job.job_id)

    assert await jobs.ask_cancel(job.job_id) == "ended"
    assert await jobs.cancels_requested([job.job_id]) == []
    # Even while a failed write waits for its retry: it may have landed.
    await jobs.requeue(job.job_id)
    assert await jobs.ask_cancel(job.job_id) == "ended"


async def test_a_cancel_of_a_finished_or_unknown_job_is_refused(jobs: JobStore) -> None:
    job = await accept(jobs, a_job())
    await jobs.fail(job, "no", 502)
    assert await jobs.ask_cancel(job.job_id) == "ended"
    assert await jobs.ask_cancel(new_id()) == "unknown"


async def test_a_full_thread_or_client_refuses_and_records_nothing(jobs: JobStore) -> None:
    thread, client = new_id(), new_id()
    for _ in range(2):
        await jobs.create(a_job(thread, client=client), max_in_thread=2, max_for_client=5)

    refused = a_job(thread, client=client)
    with pytest.raises(Refused) as full:
        await jobs.create(refused, max_in_thread=2, max_for_client=5)
    assert full.value.what == "thread"
    with pytest.raises(Refused) as busy:
        await jobs.create(a_job(client=client), max_in_thread=2, max_for_client=2)
    assert busy.value.what == "client"

    assert not await jobs.redis.exists(job_key(refused.job_id))
    assert await jobs.redis.llen(inbox_key(thread)) == 2
    assert await jobs.redis.scard(client_jobs_key("", client)) == 2


async def test_an_ended_job_frees_its_clients_place(jobs: JobStore) -> None:
    client = new_id()
    first = await jobs.create(a_job(client=client), max_in_thread=5, max_for_client=1)
    await jobs.cancel(first)

    await jobs.create(a_job(client=client), max_in_thread=5, max_for_client=1)


async def test_failures_are_timed_from_the_first_one(jobs: JobStore) -> None:
    job = await accept(jobs, a_job())
    # Accepted long ago: that is not time spent failing.
    await jobs.redis.hset(job_key(job.job_id), "created_at", str(time.time() - 1200))

    failures, failing_for = await jobs.count_failure(job.job_id, counts=False)
    assert (failures, failing_for) == (0, 0.0)
    await jobs.redis.hset(job_key(job.job_id), "first_failure_at", str(time.time() - 30))
    failures, failing_for = await jobs.count_failure(job.job_id, counts=True)
    assert failures == 1
    assert 29 < failing_for < 60


async def test_cancel_thread_ends_queued_jobs_and_flags_running_ones(jobs: JobStore) -> None:
    thread = new_id()
    running = await accept(jobs, a_job(thread))
    queued = await accept(jobs, a_job(thread))
    await jobs.start(running.job_id)

    assert await jobs.cancel_thread(thread) == [running.job_id, queued.job_id]

    assert (await jobs.get(queued.job_id)).status == JobStatus.CANCELLED  # type: ignore[union-attr]
    assert (await jobs.get(running.job_id)).status == JobStatus.RUNNING  # type: ignore[union-attr]
    assert await jobs.cancels_requested([running.job_id]) == [running.job_id]


async def test_a_late_reader_still_gets_the_outcome(jobs: JobStore) -> None:
    job = await accept(jobs, a_job())
    await jobs.fail(job, "LLM rejected the request", 502)

    (event,) = await jobs.read_events(job.job_id)

    assert event.terminal
    assert event.data == {"detail": "LLM rejected the request", "job_id": job.job_id}
    failed = await jobs.get(job.job_id)
    assert failed is not None and failed.http_status == 502


async def test_requeue_moves_only_a_running_job(jobs: JobStore) -> None:
    job = await accept(jobs, a_job())
    await jobs.start(job.job_id)
    await jobs.requeue(job.job_id)
    assert (await jobs.get(job.job_id)).status == JobStatus.QUEUED  # type: ignore[union-attr]

    await jobs.cancel(job)
    await jobs.requeue(job.job_id)
    assert (await jobs.get(job.job_id)).status == JobStatus.CANCELLED  # type: ignore[union-attr]


async def test_created_at_follows_the_order_of_the_inbox(jobs: JobStore) -> None:
    thread = new_id()
    created = await asyncio.gather(*(accept(jobs, a_job(thread, str(n))) for n in range(30)))

    inbox = await jobs.redis.lrange(inbox_key(thread), 0, -1)
    by_time = sorted(created, key=lambda job: job.created_at)
    assert [job.job_id for job in by_time] == inbox
