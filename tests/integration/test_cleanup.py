"""Cleanup passes against a real redis-server and a real S3 server (moto)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.lock import Lock

from shared.checkpoint import AsyncS3Saver, S3Unavailable
from shared.ids import new_id
from shared.settings import Settings
from shared.store import inbox
from shared.store.keys import (
    CLEANUP_LOCK_KEY,
    RECONCILED_KEY,
    activity_keys,
    inbox_key,
    owner_threads_key,
    thread_info_key,
    thread_lock_key,
)
from worker import cleanup
from worker.cleanup import Cleanup, Outcome, cleanup_idle_threads

# These tests run on one Redis, which has one activity index.
ACTIVITY = activity_keys()[0]

PREFIX = "chat_histories/"
OLD = 10_000.0  # seconds idle: far past any TTL used here
TTL = 600

MakeCleanup = Callable[..., Cleanup]


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    # A database of its own: other tests write to the shared activity index.
    client = Redis.from_url(redis_url.rsplit("/", 1)[0] + "/9", decode_responses=True)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def saver(s3_endpoint: str, s3_bucket: str) -> AsyncIterator[AsyncS3Saver]:
    async with AsyncS3Saver.from_conn_string(f"s3://{s3_bucket}/{PREFIX}", endpoint_url=s3_endpoint,
                                             region_name="us-east-1") as opened:
        yield opened


@pytest.fixture
def make(redis: Redis, saver: AsyncS3Saver, s3_bucket: str) -> MakeCleanup:
    def build(ttl: int = TTL) -> Cleanup:
        settings = Settings(_env_file=None, S3_BUCKET_NAME=s3_bucket,  # type: ignore[call-arg]
                            S3_PREFIX=PREFIX, SESSION_TTL_SECONDS=ttl)
        return Cleanup(settings, redis, saver)
    return build


@dataclass
class Bucket:
    """The test's bucket, seen directly (not through the saver)."""

    client: Any
    name: str

    async def put(self, key: str) -> None:
        await self.client.put_object(Bucket=self.name, Key=key, Body=b"x")

    async def store(self, thread_id: str, segments: int = 2) -> None:
        """A thread as the saver lays it out: a head and sealed transcript segments."""
        await self.put(f"{PREFIX}{thread_id}/ns./head")
        for n in range(segments):
            await self.put(f"{PREFIX}{thread_id}/ns./seg/0123456789abcdef/{n:08d}")

    async def keys(self, prefix: str = "") -> list[str]:
        found = await self.client.list_objects_v2(Bucket=self.name, Prefix=prefix)
        return [str(item["Key"]) for item in found.get("Contents", ())]

    async def thread_ids(self) -> set[str]:
        return {k.removeprefix(PREFIX).split("/")[0] for k in await self.keys(PREFIX)}


@pytest.fixture
def bucket(saver: AsyncS3Saver, s3_bucket: str) -> Bucket:
    return Bucket(saver.client, s3_bucket)


async def threads(bucket: Bucket, redis: Redis, count: int, idle: float) -> list[str]:
    """`count` stored threads, indexed as last active `idle` seconds ago."""
    ids = [new_id() for _ in range(count)]
    await asyncio.gather(*(bucket.store(t) for t in ids))
    await redis.zadd(ACTIVITY, {t: time.time() - idle for t in ids})
    await redis.set(RECONCILED_KEY, "1")
    return ids


def counting(saver: AsyncS3Saver, monkeypatch: pytest.MonkeyPatch,
             before: Callable[[str], Awaitable[None]] | None = None) -> Counter[str]:
    """Counts the saver's deletes per thread, running `before` ahead of each."""
    calls: Counter[str] = Counter()
    real = saver.adelete_thread

    async def adelete_thread(thread_id: str) -> None:
        calls[thread_id] += 1
        if before is not None:
            await before(thread_id)
        await real(thread_id)

    monkeypatch.setattr(saver, "adelete_thread", adelete_thread)
    return calls


async def test_a_pass_deletes_expired_threads_and_keeps_the_rest(
        make: MakeCleanup, bucket: Bucket, redis: Redis) -> None:
    expired = await threads(bucket, redis, 5, idle=OLD)
    fresh = await threads(bucket, redis, 3, idle=1)
    for thread in expired + fresh:  # as the job scripts list them
        await redis.hset(thread_info_key(thread), mapping={"owner": "o", "messages": 2})
        await redis.zadd(owner_threads_key("o"), {thread: 1.0})

    assert await make().run() == 5

    assert await bucket.thread_ids() == set(fresh)
    assert set(await redis.zrange(ACTIVITY, 0, -1)) == set(fresh)
    assert set(await redis.zrange(owner_threads_key("o"), 0, -1)) == set(fresh)
    assert not await redis.exists(*map(thread_info_key, expired))
    assert not await redis.exists(CLEANUP_LOCK_KEY, *map(thread_lock_key, expired))


async def test_a_thread_running_a_turn_is_kept_until_the_turn_ends(
        make: MakeCleanup, bucket: Bucket, redis: Redis) -> None:
    [busy] = await threads(bucket, redis, 1, idle=OLD)
    turn = Lock(redis, thread_lock_key(busy), timeout=30)
    assert await turn.acquire()

    assert await make().run() == 0
    assert await bucket.thread_ids() == {busy}

    await turn.release()
    assert await make().run() == 1
    assert await bucket.thread_ids() == set()


async def test_a_turn_accepted_after_the_page_was_read_keeps_its_thread(
        make: MakeCleanup, bucket: Bucket, redis: Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    [thread] = await threads(bucket, redis, 1, idle=OLD)

    class AcceptedMeanwhile(Lock):
        async def acquire(self, *args: Any, **kwargs: Any) -> bool:
            await redis.zadd(ACTIVITY, {thread: time.time()})
            return await super().acquire(*args, **kwargs)

    monkeypatch.setattr(inbox, "Lock", AcceptedMeanwhile)  # the thread lease
    counts = await make().delete_expired()

    assert counts[Outcome.ACTIVE] == 1
    assert await bucket.thread_ids() == {thread}


async def test_a_turn_accepted_during_the_delete_keeps_its_index_entry(
        make: MakeCleanup, saver: AsyncS3Saver, bucket: Bucket, redis: Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    [thread] = await threads(bucket, redis, 1, idle=OLD)
    accepted = time.time()

    async def accept(thread_id: str) -> None:
        await redis.zadd(ACTIVITY, {thread_id: accepted})

    counting(saver, monkeypatch, before=accept)
    assert await make().run() == 1

    # Its turn waits for the lock, then runs on a fresh thread that cleanup must still see.
    assert await redis.zscore(ACTIVITY, thread) == accepted


async def test_a_turn_turned_away_during_the_delete_is_handed_on(
        make: MakeCleanup, saver: AsyncS3Saver, bucket: Bucket, redis: Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    [thread] = await threads(bucket, redis, 1, idle=OLD)
    [other] = await threads(bucket, redis, 1, idle=OLD)
    job_id = new_id()

    async def accept(thread_id: str) -> None:
        if thread_id == thread:  # as JobStore.create does; its nudge finds the lock taken
            await redis.rpush(inbox_key(thread), job_id)
            await redis.zadd(ACTIVITY, {thread: time.time()})

    counting(saver, monkeypatch, before=accept)
    report = await cleanup_idle_threads(make().settings, redis, saver)

    assert report.deleted == 2
    assert report.waiting_jobs == [job_id]
    assert await bucket.thread_ids() == set()
    assert await redis.zscore(ACTIVITY, other) is None


async def test_a_failed_delete_is_retried_by_the_next_pass(
        make: MakeCleanup, saver: AsyncS3Saver, bucket: Bucket, redis: Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    expired = await threads(bucket, redis, 3, idle=OLD)
    flaky = expired[0]

    async def s3_down_once(thread_id: str) -> None:
        if thread_id == flaky and calls[flaky] == 1:
            raise S3Unavailable("S3 is down")

    calls = counting(saver, monkeypatch, before=s3_down_once)

    assert await make().run() == 2
    assert await bucket.thread_ids() == {flaky}
    assert await redis.zscore(ACTIVITY, flaky) is not None
    assert await make().run() == 1
    assert await bucket.thread_ids() == set()


@pytest.mark.parametrize("pass_lock", [True, False], ids=["whole-passes", "no-pass-lock"])
async def test_two_passes_at_once_delete_each_thread_once(
        make: MakeCleanup, saver: AsyncS3Saver, bucket: Bucket, redis: Redis,
        monkeypatch: pytest.MonkeyPatch, pass_lock: bool) -> None:
    expired = await threads(bucket, redis, 40, idle=OLD)
    calls = counting(saver, monkeypatch)

    async def one_pass() -> int:
        if pass_lock:
            report = await cleanup_idle_threads(make().settings, redis, saver)
            return report.deleted
        # Without the pass's lease, only the thread locks and the re-check keep them apart.
        counts = await make().delete_expired()
        assert counts[Outcome.FAILED] == 0
        return counts[Outcome.DELETED]

    results = await asyncio.gather(one_pass(), one_pass())

    assert sum(results) == 40
    assert not pass_lock or 0 in results  # the second pass stood aside
    assert calls == Counter(expired)
    assert await bucket.thread_ids() == set()


async def test_a_pass_ends_when_kept_entries_fill_whole_pages(
        make: MakeCleanup, bucket: Bucket, redis: Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cleanup, "BATCH", 3)
    expired = await threads(bucket, redis, 10, idle=OLD)
    turns = [Lock(redis, thread_lock_key(t), timeout=30) for t in expired[:4]]
    for turn in turns:
        assert await turn.acquire()

    async with asyncio.timeout(20):
        assert await make().run() == 6

    assert await bucket.thread_ids() == set(expired[:4])


async def test_the_scan_indexes_stored_threads_the_index_lost(
        make: MakeCleanup, bucket: Bucket, redis: Redis) -> None:
    lost = [new_id(), new_id()]
    for thread in lost:
        await bucket.store(thread)
    for foreign in (f"{PREFIX}not.an.id/x", "elsewhere/x"):
        await bucket.put(foreign)
    before = time.time()

    assert await make().reconcile_if_due() == 2

    scores = dict(await redis.zrange(ACTIVITY, 0, -1, withscores=True))
    assert set(scores) == set(lost)
    # Dated by their objects' LastModified, rounded up to the next whole second.
    assert all(before - 1 < s <= time.time() + 1 for s in scores.values())
    assert await redis.ttl(RECONCILED_KEY) > 0
    assert {f"{PREFIX}not.an.id/x", "elsewhere/x"} <= set(await bucket.keys())


async def test_the_scan_runs_when_due_or_when_the_index_is_empty(
        make: MakeCleanup, bucket: Bucket, redis: Redis) -> None:
    await redis.set(RECONCILED_KEY, "1")
    lost = new_id()
    await bucket.store(lost)
    assert await make().reconcile_if_due() == 1  # marked done, but the index is empty

    [known] = await threads(bucket, redis, 1, idle=1)  # sets the mark again
    await redis.zrem(ACTIVITY, lost)
    assert await make().reconcile_if_due() == 0  # marked done, index not empty

    await redis.delete(RECONCILED_KEY)
    assert await make().reconcile_if_due() == 1
    assert set(await redis.zrange(ACTIVITY, 0, -1)) == {lost, known}


async def test_a_thread_found_by_the_scan_gets_the_full_ttl_then_goes(
        make: MakeCleanup, bucket: Bucket, redis: Redis) -> None:
    lost = new_id()
    await bucket.store(lost)
    stored_at = time.time()

    # Dated by its objects, not guessed: too recent to go at once.
    assert await make(ttl=3).run() == 0
    deleted = 0
    while deleted == 0 and time.time() < stored_at + 15:
        await asyncio.sleep(0.2)
        deleted = await make(ttl=3).run()

    assert deleted == 1
    assert time.time() > stored_at + 2.9  # the whole TTL, give or take the clock
    assert await bucket.thread_ids() == set()
    assert await redis.zcard(ACTIVITY) == 0
