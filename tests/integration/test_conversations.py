"""The lists of conversations as the job scripts write them, on a real redis-server."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from shared.ids import new_id
from shared.store.conversations import Conversations
from shared.store.job import Job
from shared.store.jobs import JobStore
from shared.store.keys import owner_threads_key, thread_info_key, threads_indexed_keys
from tests.helpers import a_job, accept, empty_database


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    async with empty_database(redis_url, 6) as client:
        for mark in threads_indexed_keys():
            await client.set(mark, "1")
        yield client


def owned(job: Job, owner: str) -> Job:
    return dataclasses.replace(job, owner=owner)


async def run(jobs: JobStore, job: Job, reply: str | None) -> None:
    """Starts the job and ends it: stored with `reply`, or failed without one."""
    started = await jobs.start(job.job_id)
    assert started is not None
    if reply is None:
        await jobs.fail(started, "refused", 502)
    else:
        await jobs.succeed(started, reply)


async def test_an_accepted_thread_is_listed_first_and_counts_its_stored_turns(
        redis: Redis) -> None:
    jobs, index = JobStore(redis, ttl=600), Conversations(redis)
    first = await accept(jobs, owned(a_job(message="first"), "me"))
    second = await accept(jobs, owned(a_job(message="second"), "me"))
    listed, _ = await index.page("me", 10)
    assert [(t.thread_id, t.title, t.messages) for t in listed] == [
        (second.thread_id, "second", 0), (first.thread_id, "first", 0)]

    await run(jobs, first, "ok")
    again = await accept(jobs, owned(a_job(first.thread_id, "later"), "me"))
    await run(jobs, again, "ok")

    listed, _ = await index.page("me", 10)
    assert [(t.thread_id, t.title, t.messages) for t in listed] == [
        (first.thread_id, "first", 4), (second.thread_id, "second", 0)]
    assert (await index.page("someone else", 10))[0] == []


async def test_a_new_thread_leaves_the_list_when_its_only_turns_store_nothing(
        redis: Redis) -> None:
    jobs, index = JobStore(redis, ttl=600), Conversations(redis)
    doomed = await accept(jobs, owned(a_job(message="doomed"), "me"))
    waiting = await accept(jobs, owned(a_job(doomed.thread_id, "waiting"), "me"))

    await run(jobs, doomed, None)
    assert [t.thread_id for t in (await index.page("me", 10))[0]] == [doomed.thread_id]
    await run(jobs, waiting, None)

    assert (await index.page("me", 10))[0] == []
    assert not await redis.exists(thread_info_key(doomed.thread_id))


async def test_a_failed_turn_on_a_stored_thread_keeps_it(redis: Redis) -> None:
    jobs, index = JobStore(redis, ttl=600), Conversations(redis)
    kept = await accept(jobs, owned(a_job(message="kept"), "me"))
    await run(jobs, kept, "ok")
    await run(jobs, await accept(jobs, owned(a_job(kept.thread_id, "no"), "me")), None)

    [thread], _ = await index.page("me", 10)
    assert (thread.thread_id, thread.title, thread.messages) == (kept.thread_id, "kept", 2)


async def test_without_the_mark_an_unknown_thread_is_partial(redis: Redis) -> None:
    jobs, index = JobStore(redis, ttl=600), Conversations(redis)
    await redis.delete(*threads_indexed_keys())
    job = await accept(jobs, owned(a_job(message="after a loss"), "me"))

    made = await jobs.create(owned(a_job(message="new id"), "me"), 10, 10, new_thread=True)
    unknown = new_id()

    assert await index.unsummarized([job.thread_id, unknown]) == [job.thread_id, unknown]
    assert await index.unsummarized([made.thread_id]) == []
    for mark in threads_indexed_keys():
        await redis.set(mark, "1")
    known = await accept(jobs, owned(a_job(message="after the scan"), "me"))
    assert await index.unsummarized([known.thread_id]) == []


async def test_pages_walk_ties_once_each(redis: Redis) -> None:
    index = Conversations(redis)
    ids = [f"t{n}" for n in range(7)]
    await redis.zadd(owner_threads_key("me"), {t: 5.0 for t in ids[:4]} | {t: 3.0 for t in ids[4:]})
    seen, cursor = [], None
    while True:
        page, cursor = await index.page("me", 2, cursor)
        seen += [t.thread_id for t in page]
        if cursor is None:
            break
    assert seen == ["t3", "t2", "t1", "t0", "t6", "t5", "t4"]
