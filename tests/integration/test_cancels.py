"""A worker process's cancel watch against a real redis-server."""

from __future__ import annotations

import asyncio

from shared.store.jobs import JobStore
from tests.helpers import a_job, accept
from worker.cancels import CancelWatch


async def test_a_running_job_hears_its_cancel(jobs: JobStore) -> None:
    watch = CancelWatch(jobs.redis, jobs)
    watch.start()
    try:
        job = await accept(jobs, a_job())
        other = await accept(jobs, a_job())
        with watch.watching(job.job_id) as asked, watch.watching(other.job_id) as not_asked:
            await jobs.start(job.job_id)
            await jobs.start(other.job_id)
            # The request may be published before the subscription is up:
            # then the watch's catch-up finds it.
            assert await jobs.ask_cancel(job.job_id) == "cancelling"
            await asyncio.wait_for(asked.wait(), timeout=5)
            assert not not_asked.is_set()
    finally:
        await watch.stop()


async def test_a_request_made_while_no_one_listened_is_found(jobs: JobStore) -> None:
    job = await accept(jobs, a_job())
    await jobs.start(job.job_id)
    assert await jobs.ask_cancel(job.job_id) == "cancelling"

    watch = CancelWatch(jobs.redis, jobs)
    with watch.watching(job.job_id) as asked:
        watch.start()
        try:
            await asyncio.wait_for(asked.wait(), timeout=5)
        finally:
            await watch.stop()


async def test_a_request_published_to_a_listening_watch_arrives(jobs: JobStore) -> None:
    watch = CancelWatch(jobs.redis, jobs)
    job = await accept(jobs, a_job())
    await jobs.start(job.job_id)
    with watch.watching(job.job_id) as asked:
        watch.start()
        try:
            # Subscribed: the catch-up found nothing, so only the message can set it.
            await asyncio.wait_for(watch.listening.wait(), timeout=5)
            assert not asked.is_set()
            await jobs.ask_cancel(job.job_id)
            await asyncio.wait_for(asked.wait(), timeout=5)
        finally:
            await watch.stop()

