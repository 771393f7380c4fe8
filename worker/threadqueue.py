"""The worker's side of a thread's inbox: who runs next, and handing over.

See shared/threads.py for the keys. Every step that reads and changes the
inbox together is one Lua script, so two workers never see it half-changed.
"""

from __future__ import annotations

import time
from typing import cast

from redis.asyncio import Redis

from shared.jobs import Job, JobStatus, JobStore
from shared.threads import PENDING_KEY, hold_key, inbox_key, thread_lock_key

# The next job id, or nothing; a thread with an empty inbox stops being pending.
_NEXT = """
local head = redis.call('LINDEX', KEYS[1], 0)
if not head then redis.call('SREM', KEYS[2], ARGV[1]) end
return head
"""
KICK_SECONDS = 60


class ThreadQueue:
    def __init__(self, redis: Redis, jobs: JobStore) -> None:
        self.redis = redis
        self.jobs = jobs
        self._next = redis.register_script(_NEXT)

    async def next_id(self, thread_id: str) -> str | None:
        """The job at the head of the inbox (None, and no longer pending, if empty)."""
        head = await self._next(keys=[inbox_key(thread_id), PENDING_KEY], args=[thread_id])
        return cast(str | None, head)

    async def head(self, thread_id: str) -> Job | None:
        """The unfinished job at the head of the inbox, dropping ended or expired ones."""
        while (job_id := await self.next_id(thread_id)) is not None:
            job = await self.jobs.get(job_id)
            if job is not None and not job.finished:
                return job
            await self.redis.lrem(inbox_key(thread_id), 0, job_id)
        return None

    async def held(self, thread_id: str) -> bool:
        return bool(await self.redis.exists(hold_key(thread_id)))

    async def hold(self, thread_id: str, seconds: float) -> None:
        """Nobody runs the thread's head job for `seconds`: its retry is scheduled."""
        await self.redis.set(hold_key(thread_id), "1", px=max(1, int(seconds * 1000)))

    async def stalled(self, stall_seconds: float) -> list[str]:
        """Head jobs of threads that nobody runs, nor will: their worker died.

        A thread with no lease and no hold whose head job is `running`, or has
        been `queued` for over `stall_seconds`, is stalled. Each is reported
        at most once a minute, so a long queue is not flooded with duplicates
        (which would be harmless, just wasted).
        """
        heads = []
        now = time.time()
        async for thread_id in self.redis.sscan_iter(PENDING_KEY, count=500):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.exists(thread_lock_key(thread_id), hold_key(thread_id))
                pipe.lindex(inbox_key(thread_id), 0)
                busy, head_id = await pipe.execute()
            if head_id is None:
                await self.next_id(thread_id)
                continue
            if busy:
                continue
            job = await self.jobs.get(head_id)
            if job is None or job.finished:
                await self.head(thread_id)  # drops it, so the next one is reported next time
                continue
            waited = now - (job.started_at or job.created_at)
            if job.status == JobStatus.RUNNING or waited > stall_seconds:
                kick = f"chat:thread:{thread_id}:kicked"
                if await self.redis.set(kick, "1", nx=True, ex=KICK_SECONDS):
                    heads.append(job.job_id)
        return heads
