"""Deleting conversations idle longer than SESSION_TTL_SECONDS (run by Beat).

Expired threads are found through the activity index (a sorted set: thread
id -> time of its last accepted turn), so a pass costs in proportion to what
expired, not to the bucket. Redis can lose that index, so a slower, full
scan of S3 puts back every stored thread it lacks (`reconcile`).

Safety does not rest on a single pass running: a pass holds a lease so a
second one (another beat, a redelivered task) skips, but each thread is also
deleted only under its turn lock, after reading its activity again, and its
index entry goes only once its objects are gone, so a failed delete is
retried by the next pass and a repeated one finds nothing to do.

Cleanup holding a thread's lock is, to the turns, like another turn holding
it: a turn task that finds it taken just ends, trusting the holder to hand
the thread on. So cleanup reports the jobs left waiting in such inboxes, and
the task nudges them, as a turn would.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import structlog
from botocore.exceptions import BotoCoreError, ClientError
from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError

from shared import metrics
from shared.checkpoint import AsyncS3Saver, S3SaverError
from shared.conversation import summarize
from shared.ids import is_stored_thread_id, is_valid_id
from shared.redis_client import redis_now
from shared.settings import Settings
from shared.store.conversations import Conversations
from shared.store.inbox import Inbox
from shared.store.jobs import JobStore

log = structlog.get_logger("worker.cleanup")

T = TypeVar("T")

BATCH = 500
CONCURRENCY = 16
# The pass renews its lease after every page, so only a dead pass lets it lapse.
PASS_LEASE_SECONDS = 300
# Celery's own limit for the task, above the turn-sized default: a first scan
# of a large bucket takes minutes.
PASS_TIME_LIMIT = 3600
DELETE_LEASE_SECONDS = 60
# Well inside the thread lock's lease: a delete must never outlive the lock, or a
# turn could start writing while old objects are still being removed.
DELETE_BUDGET_SECONDS = 30

class Outcome(StrEnum):
    DELETED = "deleted"
    BUSY = "busy"  # a turn holds the thread's lock
    ACTIVE = "active"  # a turn was accepted since the index was read
    GONE = "gone"  # another pass (or DELETE /chat/history) removed it first
    FAILED = "failed"  # S3 refused or was too slow; the next pass retries
    DROPPED = "dropped"  # not a valid id: an index entry that can name no data


# Entries that stay in the expired range, so the next page starts after them.
_STAYING = frozenset({Outcome.BUSY, Outcome.FAILED})


@dataclass
class Report:
    """What a pass did, and the jobs it must hand on (see the module's docstring)."""

    deleted: int = 0
    waiting_jobs: list[str] = field(default_factory=list)


async def cleanup_idle_threads(settings: Settings, redis: Redis, saver: AsyncS3Saver) -> Report:
    """Runs one cleanup pass."""
    cleanup = Cleanup(settings, redis, saver)
    deleted = await cleanup.run()
    return Report(deleted, cleanup.waiting_jobs)


class Cleanup:
    """One cleanup pass over the activity index (and, when due, over S3)."""

    def __init__(self, settings: Settings, redis: Redis, saver: AsyncS3Saver) -> None:
        self.settings = settings
        self.redis = redis
        self.saver = saver
        self.waiting_jobs: list[str] = []
        self.index = Conversations(redis)
        self.inbox = Inbox(redis, JobStore(redis, settings.JOB_TTL_SECONDS))

    async def run(self) -> int:
        lease = self.index.cleanup_lease(PASS_LEASE_SECONDS)
        if not await lease.acquire():
            log.info("cleanup_skipped", reason="another pass is running")
            return 0
        started = time.monotonic()
        try:
            reindexed = await self.reconcile_if_due(lease)
            counts = await self.delete_expired(lease)
        finally:
            await _release(lease)
        metrics.CLEANUP_PASSES.inc()
        metrics.CLEANUP_DELETED.inc(counts[Outcome.DELETED])
        log.info("cleanup_done", reindexed=reindexed, **{o.value: counts[o] for o in Outcome},
                 seconds=round(time.monotonic() - started, 3))
        return counts[Outcome.DELETED]

    async def delete_expired(self, lease: Lock | None = None) -> Counter[Outcome]:
        """Deletes every thread idle past the TTL; counts what became of each."""
        # The index's scores are Redis's clock, and so must the cutoff be.
        cutoff = await redis_now(self.redis) - self.settings.SESSION_TTL_SECONDS
        counts: Counter[Outcome] = Counter()
        for part in range(self.index.activity_parts()):
            staying = 0
            while True:
                page = await self.index.idle_since(cutoff, staying, BATCH, part)
                outcomes = await _concurrently(self._delete_if_idle(t, cutoff) for t in page)
                counts.update(outcomes)
                # Entries that left the range meanwhile make this skip a few:
                # the next pass gets them.
                staying += sum(o in _STAYING for o in outcomes)
                await _renew(lease)
                if len(page) < BATCH:
                    break
        return counts

    async def _delete_if_idle(self, thread_id: str, cutoff: float) -> Outcome:
        if not is_stored_thread_id(thread_id):
            await self.index.drop_activity(thread_id)
            log.warning("cleanup_dropped_bad_index_entry")
            return Outcome.DROPPED
        lock = self.inbox.lease(thread_id, DELETE_LEASE_SECONDS)
        if not await lock.acquire():
            return Outcome.BUSY
        try:
            return await self._delete_locked(thread_id, cutoff)
        finally:
            await _release(lock)
            await self._hand_on(thread_id)

    async def _hand_on(self, thread_id: str) -> None:
        head = await self.inbox.first(thread_id)
        if head is not None and is_valid_id(head):
            self.waiting_jobs.append(head)

    async def _delete_locked(self, thread_id: str, cutoff: float) -> Outcome:
        # Read again under the lock: a job accepted since the page was read moved it.
        score = await self.index.last_active(thread_id)
        if score is None:
            return Outcome.GONE
        if score > cutoff:
            return Outcome.ACTIVE
        try:
            async with asyncio.timeout(DELETE_BUDGET_SECONDS):
                await self.saver.adelete_thread(thread_id)
        except (S3SaverError, TimeoutError) as exc:
            log.warning("thread_delete_failed", thread_id=thread_id, error=str(exc))
            return Outcome.FAILED
        await self.index.forget_if_idle(thread_id, cutoff)
        idle = cutoff + self.settings.SESSION_TTL_SECONDS - score  # Redis's clock, both
        log.info("thread_deleted", thread_id=thread_id, idle_seconds=round(idle))
        return Outcome.DELETED

    async def reconcile_if_due(self, lease: Lock | None = None) -> int:
        """Runs the full S3 scan if its time has come, or the index or the
        owners' lists of threads are gone."""
        if not await self.index.scan_due():
            return 0
        try:
            added = await self.reconcile(lease)
        except (BotoCoreError, ClientError, OSError) as exc:
            # Not marked done, so the next pass tries again; deleting needs no scan.
            log.warning("cleanup_reconcile_failed", error=str(exc))
            return 0
        await self.index.scanned(self.settings.CLEANUP_RECONCILE_SECONDS)
        return added

    async def reconcile(self, lease: Lock | None = None) -> int:
        """Indexes every thread stored in S3 but missing from the index, and
        puts those missing from their owners' lists back; returns how many
        were missing from the index."""
        added = 0
        bucket, prefix = self.settings.S3_BUCKET_NAME, self.settings.S3_PREFIX
        async for ids in list_thread_ids(self.saver.client, bucket, prefix):
            await _concurrently(self._list(t) for t in await self.index.unsummarized(ids))
            missing = await self.index.unindexed(ids)
            if missing:
                seen = await _concurrently(self._last_activity(t) for t in missing)
                # NX: a turn accepted meanwhile has the better time.
                added += await self.index.index_activity(dict(zip(missing, seen, strict=True)))
            await _renew(lease)
        log.info("cleanup_reconciled", reindexed=added)
        return added

    async def _list(self, thread_id: str) -> None:
        """Puts a stored thread back in its owner's list, from its transcript."""
        try:
            summary = await summarize(self.saver, thread_id)
        except Exception as exc:
            # One unreadable thread must not keep every other one out of the lists.
            log.warning("thread_summary_failed", thread_id=thread_id, error=type(exc).__name__)
            return
        if summary is not None:
            await self.index.record(thread_id, summary)

    async def _last_activity(self, thread_id: str) -> float:
        key_prefix = f"{self.settings.S3_PREFIX}{thread_id}/"
        newest = await last_modified(self.saver.client, self.settings.S3_BUCKET_NAME, key_prefix)
        # Nothing left to date it by: 'now' (Redis's, as every score in the
        # index) gives it the full TTL, never an early delete. S3 truncates to
        # whole seconds: round up, so the TTL is never cut short.
        return newest + 1 if newest is not None else await redis_now(self.redis)


async def list_thread_ids(client: Any, bucket: str, prefix: str) -> AsyncIterator[list[str]]:
    """Yields the ids of the threads stored under `prefix`, a page at a time."""
    paginator = client.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        names = [str(p["Prefix"])[len(prefix):-1] for p in page.get("CommonPrefixes", ())]
        ids = [n for n in names if is_stored_thread_id(n)]
        if len(ids) < len(names):
            # Not ours to delete, and not safe to name in a log line.
            log.warning("cleanup_skipped_foreign_keys", count=len(names) - len(ids))
        yield ids


async def last_modified(client: Any, bucket: str, prefix: str) -> float | None:
    """The newest LastModified (epoch seconds) of the objects under `prefix`."""
    newest: float | None = None
    paginator = client.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", ()):
            stamp = item["LastModified"].timestamp()
            newest = stamp if newest is None else max(newest, stamp)
    return newest


async def _concurrently(work: Iterable[Awaitable[T]]) -> list[T]:
    """Awaits all of `work`, at most CONCURRENCY at a time, results in order."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(item: Awaitable[T]) -> T:
        async with gate:
            return await item

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(item)) for item in work]
    return [task.result() for task in tasks]


async def _renew(lease: Lock | None) -> None:
    if lease is not None:
        await lease.reacquire()


async def _release(lock: Lock) -> None:
    try:
        await lock.release()
    except LockError:  # the lease ran out: nothing left to release
        log.warning("cleanup_lock_expired", lock=str(lock.name))
