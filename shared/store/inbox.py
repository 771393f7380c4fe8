"""A thread's inbox and lease: who runs its next turn, and handing over.

The inbox is a list of the thread's unfinished job ids, oldest first (the
job scripts in jobs.py append and remove them); the lease is held by
whoever runs the thread's turn or deletes it, the hold while its head job's
retry waits, the missed mark when a nudge was turned away, and the kicked
mark for a while after the recovery sweep nudged it; the pending set (one per
bucket of threads on a Redis Cluster, keys.py) names the threads whose
inbox is not empty. Every step that reads and changes
them together is one Lua script, so two workers never see them half-changed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import cast

from redis.asyncio import Redis
from redis.asyncio.lock import Lock

from shared.redis_client import redis_now
from shared.store._script import Script
from shared.store.job import Job, JobStatus
from shared.store.jobs import JobStore
from shared.store.keys import (
    RECOVERY_LOCK_KEY,
    hold_key,
    inbox_key,
    kicked_key,
    missed_key,
    pending_key,
    pending_keys,
    thread_lock_key,
)

# Takes the thread's lease (as `token`, for `lease_ms`): {1, the inbox's head
# or nothing}, or {0} when the lease is held or the thread is on hold; then
# the nudge is turned away, and noted (for `note_seconds`) so the lease's
# holder (or the held job's retry) passes the thread on.
_TAKE_KEYS, _TAKE_ARGS = ("lock", "hold", "inbox", "missed"), ("token", "lease_ms", "note_seconds")
_TAKE = """
if not redis.call('SET', lock, token, 'NX', 'PX', lease_ms) then
  redis.call('SET', missed, '1', 'EX', note_seconds)
  return {0}
end
if redis.call('EXISTS', hold) == 1 then
  redis.call('DEL', lock)
  redis.call('SET', missed, '1', 'EX', note_seconds)
  return {0}
end
return {1, redis.call('LINDEX', inbox, 0)}
"""
# {1 if it released the lease, the inbox's head or nothing, 1 if nudges were
# turned away}: first releases the lease if `token` is its holder's ("":
# only looks). The jobs behind the head whose nudges were turned away have
# none left: the note stays until the head is the last job, so each holder
# passes the thread on in turn. A thread with an empty inbox stops being
# pending.
_NEXT_KEYS, _NEXT_ARGS = ("inbox", "pending", "lock", "missed"), ("thread_id", "token")
_NEXT = """
local released, was_missed = 0, 0
if token ~= '' then
  if redis.call('GET', lock) == token then
    redis.call('DEL', lock)
    released = 1
  end
  was_missed = redis.call('EXISTS', missed)
  if was_missed == 1 and redis.call('LLEN', inbox) <= 1 then redis.call('DEL', missed) end
end
local head = redis.call('LINDEX', inbox, 0)
if not head then redis.call('SREM', pending, thread_id) end
return {released, head, was_missed}
"""
# A turned-away nudge is remembered this long; past it, the sweep finds the job.
MISSED_SECONDS = 3600
KICK_SECONDS = 60
SWEEP_BATCH = 500


@dataclass
class Sweep:
    stalled: list[str] = field(default_factory=list)
    unstoppable: list[Job] = field(default_factory=list)


class Inbox:
    def __init__(self, redis: Redis, jobs: JobStore) -> None:
        self.redis = redis
        self.jobs = jobs
        self._next = Script(redis, _NEXT_KEYS, _NEXT_ARGS, _NEXT)
        self._take = Script(redis, _TAKE_KEYS, _TAKE_ARGS, _TAKE)

    def lease(self, thread_id: str, seconds: float, wait: float | None = None) -> Lock:
        """The thread's lease (not yet acquired): whoever holds it runs or
        deletes the thread. `wait`: how long acquire() blocks for it (None:
        it does not block)."""
        if wait is None:
            return Lock(self.redis, thread_lock_key(thread_id), timeout=seconds,
                        blocking=False)
        return Lock(self.redis, thread_lock_key(thread_id), timeout=seconds,
                    blocking_timeout=wait)

    async def busy(self, thread_id: str) -> bool:
        """Whether the thread has a turn queued or running."""
        return bool(await self.redis.llen(inbox_key(thread_id)))

    async def first(self, thread_id: str) -> str | None:
        """The id at the head of the inbox, as it is (nothing dropped or changed)."""
        return cast(str | None, await self.redis.lindex(inbox_key(thread_id), 0))

    async def next_id(self, thread_id: str) -> str | None:
        """The job at the head of the inbox (None, and no longer pending, if empty)."""
        return (await self._next_after(thread_id, ""))[1]

    async def release(self, thread_id: str, lease: Lock) -> tuple[bool, str | None]:
        """Releases the thread's lease and, in the same step, finds whom to pass
        the thread on to: whether the lease was still ours, and the inbox's
        head if a nudge was turned away while we held it (else None: the
        nudges of jobs accepted meanwhile are still on their way)."""
        owned, head, missed = await self._next_after(
            thread_id, cast(bytes, lease.local.token).decode())
        return owned, head if missed else None

    async def _next_after(self, thread_id: str, token: str) -> tuple[bool, str | None, bool]:
        released, head, missed = await self._next(
            inbox=inbox_key(thread_id), pending=pending_key(thread_id),
            lock=thread_lock_key(thread_id), missed=missed_key(thread_id), thread_id=thread_id,
            token=token)
        return released == 1, cast(str | None, head), missed == 1

    async def head(self, thread_id: str) -> Job | None:
        """The unfinished job at the head of the inbox, dropping ended or expired ones."""
        while (job_id := await self.next_id(thread_id)) is not None:
            job = await self.jobs.get(job_id)
            if job is not None and not job.finished:
                return job
            await self.redis.lrem(inbox_key(thread_id), 0, job_id)
        return None

    async def take(self, thread_id: str, lease: Lock) -> tuple[bool, str | None]:
        """Takes the thread's lease, with a look at its inbox, in one step:
        whether this worker runs the thread now, and the inbox's head.

        Not if another worker holds the lease, or the thread is on hold (its
        head job's retry is scheduled): the nudge is noted as turned away,
        and the holder, or the retry, passes the thread on when it releases.
        """
        token = uuid.uuid1().hex
        reply = await self._take(
            lock=thread_lock_key(thread_id), hold=hold_key(thread_id),
            inbox=inbox_key(thread_id), missed=missed_key(thread_id), token=token,
            lease_ms=int(cast(float, lease.timeout) * 1000), note_seconds=MISSED_SECONDS)
        if reply[0] != 1:
            return False, None
        lease.local.token = token.encode()  # ours: renew and release it as a Lock
        return True, cast(str | None, reply[1] if len(reply) > 1 else None)

    async def hold(self, thread_id: str, seconds: float) -> None:
        """Nobody runs the thread's head job for `seconds`: its retry is scheduled."""
        await self.redis.set(hold_key(thread_id), "1", px=max(1, int(seconds * 1000)))

    async def claim_sweep(self, ms: int) -> bool:
        """True for the one worker that sweeps now: the claim lasts `ms`."""
        return bool(await self.redis.set(RECOVERY_LOCK_KEY, "1", nx=True, px=ms))

    async def sweep(self, stall_seconds: float, cancel_grace: float,
                    lost_after: float, backlog: int) -> Sweep:
        """Looks at the head job of every pending thread for what needs a push.

        Stalled: nobody runs the thread, nor will (no lease, no hold) while
        its head job is `running` (its worker died), or has been `queued` for
        over `stall_seconds` while the broker's queue is empty (`backlog`, the
        task messages no worker has taken), or for over
        `lost_after` in any case (its nudge was lost with its worker; behind
        a backlog, a queued job is normally just waiting its turn, and a
        nudge for each would double the backlog). Each is reported at most
        once a minute.

        Unstoppable: a running job whose cancel was asked over `cancel_grace`
        seconds ago and which still runs: its worker did not stop it.
        """
        found = Sweep()
        now = await redis_now(self.redis)  # the clock of created_at and cancel_requested
        for key in pending_keys():  # one per bucket of threads on a Redis Cluster
            cursor = 0
            while True:
                cursor, batch = await self.redis.sscan(key, cursor, count=SWEEP_BATCH)
                await self._sweep_batch(cast(list[str], batch), now, found, stall_seconds,
                                        cancel_grace, lost_after, backlog)
                if cursor == 0:
                    break
        return found

    async def _sweep_batch(self, thread_ids: list[str], now: float, found: Sweep,
                           stall_seconds: float, cancel_grace: float, lost_after: float,
                           backlog: int) -> None:
        # A batch of threads costs two round trips, not two per thread: the
        # sweep runs beside the turns, in the same process.
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
