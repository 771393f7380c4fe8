"""The worker's side of a thread's inbox: who runs next, and handing over.

See shared/keys.py for the keys. Every step that reads and changes the
inbox together is one Lua script, so two workers never see it half-changed.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import cast

from redis.asyncio import Redis
from redis.asyncio.lock import Lock

from shared.jobs import Job, JobStatus, JobStore
from shared.keys import PENDING_KEY, hold_key, inbox_key, kicked_key, thread_lock_key
from shared.queue import QUEUE

# {1 if it released the lease, the next job id or nothing}: first releases the
# thread's lease if ARGV[2] is its holder's token ("": leave it); a thread
# with an empty inbox stops being pending.
_NEXT = """
local released = 0
if ARGV[2] ~= '' and redis.call('GET', KEYS[3]) == ARGV[2] then
  redis.call('DEL', KEYS[3])
  released = 1
end
local head = redis.call('LINDEX', KEYS[1], 0)
if not head then redis.call('SREM', KEYS[2], ARGV[1]) end
return {released, head}
"""
KICK_SECONDS = 60
SWEEP_BATCH = 500


@dataclass
class Sweep:
    stalled: list[str] = field(default_factory=list)
    unstoppable: list[Job] = field(default_factory=list)


class ThreadQueue:
    def __init__(self, redis: Redis, jobs: JobStore) -> None:
        self.redis = redis
        self.jobs = jobs
        self._next = redis.register_script(_NEXT)

    async def next_id(self, thread_id: str) -> str | None:
        """The job at the head of the inbox (None, and no longer pending, if empty)."""
        return (await self._next_after(thread_id, ""))[1]

    async def release(self, thread_id: str, lease: Lock) -> tuple[bool, str | None]:
        """Releases the thread's lease and looks at who is next, in one step:
        whether the lease was still ours, and the inbox's head."""
        return await self._next_after(thread_id, cast(bytes, lease.local.token).decode())

    async def _next_after(self, thread_id: str, token: str) -> tuple[bool, str | None]:
        released, head = await self._next(
            keys=[inbox_key(thread_id), PENDING_KEY, thread_lock_key(thread_id)],
            args=[thread_id, token])
        return released == 1, cast(str | None, head)

    async def head(self, thread_id: str) -> Job | None:
        """The unfinished job at the head of the inbox, dropping ended or expired ones."""
        while (job_id := await self.next_id(thread_id)) is not None:
            job = await self.jobs.get(job_id)
            if job is not None and not job.finished:
                return job
            await self.redis.lrem(inbox_key(thread_id), 0, job_id)
        return None

    async def take(self, thread_id: str, lease: Lock) -> tuple[bool, bool, str | None]:
        """Takes the thread's lease, in one round trip with a look at the thread:
        whether the lease was taken; if so, whether the thread is on hold (its
        head job's retry is scheduled and will come back) and the inbox's head.
        """
        token = uuid.uuid1().hex.encode()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(thread_lock_key(thread_id), token, nx=True,
                     px=int(cast(float, lease.timeout) * 1000))
            pipe.exists(hold_key(thread_id))
            pipe.lindex(inbox_key(thread_id), 0)
            taken, held, head = await pipe.execute()
        if not taken:
            return False, False, None
        lease.local.token = token  # the lease is ours: renew and release it as a Lock
        return True, bool(held), head

    async def hold(self, thread_id: str, seconds: float) -> None:
        """Nobody runs the thread's head job for `seconds`: its retry is scheduled."""
        await self.redis.set(hold_key(thread_id), "1", px=max(1, int(seconds * 1000)))

    async def sweep(self, stall_seconds: float, cancel_grace: float,
                    lost_after: float) -> Sweep:
        """Looks at the head job of every pending thread for what needs a push.

        Stalled: nobody runs the thread, nor will (no lease, no hold) while
        its head job is `running` (its worker died), or has been `queued` for
        over `stall_seconds` while the broker's queue is empty, or for over
        `lost_after` in any case (its nudge was lost with its worker; behind
        a backlog, a queued job is normally just waiting its turn, and a
        nudge for each would double the backlog). Each is reported at most
        once a minute.

        Unstoppable: a running job whose cancel was asked over `cancel_grace`
        seconds ago and which still runs: its worker did not stop it.
        """
        found = Sweep()
        now = time.time()
        backlog = await self.redis.llen(QUEUE)
        cursor = 0
        while True:
            # A batch of threads costs two round trips, not two per thread:
            # the sweep runs beside the turns, in the same process.
            cursor, batch = await self.redis.sscan(PENDING_KEY, cursor, count=SWEEP_BATCH)
            thread_ids = cast(list[str], batch)
            async with self.redis.pipeline(transaction=False) as pipe:
                for thread_id in thread_ids:
                    pipe.exists(thread_lock_key(thread_id), hold_key(thread_id))
                    pipe.lindex(inbox_key(thread_id), 0)
                looks = await pipe.execute()
            heads = {thread_id: (busy, head_id) for thread_id, busy, head_id
                     in zip(thread_ids, looks[::2], looks[1::2], strict=True)}
            for thread_id in [t for t, (_, head_id) in heads.items() if head_id is None]:
                await self.next_id(thread_id)
                del heads[thread_id]
            jobs = await self.jobs.get_many([head_id for _, head_id in heads.values()])
            for (thread_id, (busy, _)), job in zip(heads.items(), jobs, strict=True):
                if job is None or job.finished:
                    await self.head(thread_id)  # drops it, so the next one is seen next time
                elif (job.status == JobStatus.RUNNING and job.cancel_requested is not None
                        and now - job.cancel_requested > cancel_grace):
                    found.unstoppable.append(job)
                elif (not busy and (job.status == JobStatus.RUNNING
                                    or (not backlog and now - job.created_at > stall_seconds)
                                    or now - job.created_at > lost_after)
                      and await self.redis.set(kicked_key(thread_id), "1", nx=True,
                                               ex=KICK_SECONDS)):
                    found.stalled.append(job.job_id)
            if cursor == 0:
                return found
