"""Jobs in Redis: one hash per job (its record) and one stream per job (its events).

The stream is the result channel: the worker appends events (the run's
stream parts, named by their stream mode; `reset`; and one terminal
`done`/`error`/`cancelled`), and readers block on it with XREAD. Unlike
pub/sub, a reader that comes late or reconnects misses nothing (a reader's
view of an entry is `shared.job_events.Event`). Both keys expire `ttl`
seconds after the job's last change.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from shared import metrics
from shared.conversation import title_of
from shared.job_events import Event, StreamReply, parse_events
from shared.runs import run_of_record
from shared.store.keys import (
    ACTIVITY_KEY,
    CANCELS_CHANNEL,
    PENDING_KEY,
    THREADS_INDEXED_KEY,
    client_jobs_key,
    events_key,
    inbox_key,
    job_key,
    owner_threads_key,
    thread_info_key,
)


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
STREAM_MAXLEN = 20_000
# How long a deleted conversation's ended jobs stay readable (see forget_words).
FORGET_SECONDS = 60
# How long a cancelled job is kept: it stored nothing (see JobStore.cancel).
CANCELLED_TTL_SECONDS = 3600
_QUEUED = (JobStatus.QUEUED.value,)
_UNFINISHED = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)

# Status checks and writes must be one atomic step: a job that was cancelled
# or already finished must never be flipped back by a late worker. Times are
# Redis's clock, so every gateway and worker agrees on them.
_NOW = """
local t = redis.call('TIME')
local now = t[1] .. '.' .. string.format('%06d', t[2])
"""
# A new thread whose turns all ended without storing anything is no
# conversation: it leaves its owner's list. Arguments: inbox, owner's
# threads, thread info keys, thread id.
_FORGET_IF_EMPTY = """
local function forget_if_empty(inbox, owner_threads, info, thread_id)
  if redis.call('HGET', info, 'messages') == '0' and redis.call('LLEN', inbox) == 0 then
    redis.call('ZREM', owner_threads, thread_id)
    redis.call('DEL', info)
  end
end
"""
# Ends a job: KEYS job, events, inbox, client's jobs, activity, owner's threads,
# thread info; ARGV ttl, event type, event data, stream maxlen, ",statuses it
# may end from,", "1" for a stored turn, the thread's title, its owner, the
# job's id, its thread's id, then field/value pairs.
_FINISH = _NOW + _FORGET_IF_EMPTY + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if not string.find(ARGV[5], ',' .. status .. ',', 1, true) then return 0 end
redis.call('HSET', KEYS[1], 'finished_at', now, unpack(ARGV, 11))
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'type', ARGV[2], 'data', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
local job_id, thread_id = ARGV[9], ARGV[10]
redis.call('LREM', KEYS[3], 0, job_id)
redis.call('SREM', KEYS[4], job_id)
if ARGV[6] == '1' then
  redis.call('ZADD', KEYS[5], 'GT', now, thread_id)
  redis.call('ZADD', KEYS[6], 'GT', now, thread_id)
  redis.call('HSET', KEYS[7], 'owner', ARGV[8])
  -- The turn stored two messages; the first stored one names the thread.
  if redis.call('HINCRBY', KEYS[7], 'messages', 2) == 2 then
    redis.call('HSET', KEYS[7], 'title', ARGV[7])
  end
else
  forget_if_empty(KEYS[3], KEYS[6], KEYS[7], thread_id)
end
return 1
"""
_START = _NOW + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return nil end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then
  return redis.call('HGETALL', KEYS[1])
end
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', now, 'task_id', ARGV[3])
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
if attempt > 1 then
  -- What an earlier attempt streamed is void: readers start the reply over.
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'type', 'reset',
             'data', '{"attempt": ' .. attempt .. '}')
  redis.call('EXPIRE', KEYS[2], ARGV[1])
end
return redis.call('HGETALL', KEYS[1])
"""
# Accepts a job unless its thread's inbox or its client's jobs are full, or
# it starts a thread its owner has no room for: KEYS job, inbox, pending,
# activity, client's jobs, owner's threads, thread info, the threads-indexed
# mark; ARGV ttl, job id, thread id, inbox limit, client limit, title, owner,
# "1" if the gateway made the thread's id, the owner's thread limit ("0":
# none), then field/value pairs.
_CREATE = _NOW + """
if redis.call('LLEN', KEYS[2]) >= tonumber(ARGV[4]) then return {'thread'} end
if redis.call('SCARD', KEYS[5]) >= tonumber(ARGV[5]) then return {'client'} end
if ARGV[9] ~= '0' and not redis.call('ZSCORE', KEYS[6], ARGV[3])
    and redis.call('ZCARD', KEYS[6]) >= tonumber(ARGV[9]) then return {'threads'} end
redis.call('HSET', KEYS[1], 'created_at', now, unpack(ARGV, 10))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[4], 'GT', now, ARGV[3])
redis.call('SADD', KEYS[5], ARGV[2])
redis.call('EXPIRE', KEYS[5], ARGV[1])
redis.call('ZADD', KEYS[6], 'GT', now, ARGV[3])
if redis.call('HSETNX', KEYS[7], 'owner', ARGV[7]) == 1 then
  redis.call('HSET', KEYS[7], 'title', ARGV[6])
  if ARGV[8] == '1' or redis.call('EXISTS', KEYS[8]) == 1 then
    -- A new id, or the index holds every stored thread: it has no messages yet.
    redis.call('HSET', KEYS[7], 'messages', 0)
  else
    -- Redis lost the index: what S3 holds of this thread is not known here.
    redis.call('HSET', KEYS[7], 'partial', 1)
  end
end
return {'ok', now}
"""
# Takes back a job no worker has started, as if never accepted: KEYS job,
# events, inbox, client's jobs, owner's threads, thread info; ARGV job id,
# thread id. 1 if it did.
_WITHDRAW = _FORGET_IF_EMPTY + """
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('LREM', KEYS[3], 0, ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
forget_if_empty(KEYS[3], KEYS[5], KEYS[6], ARGV[2])
return 1
"""
# Back to `queued` while a retry waits; a finished job is left as it is.
_REQUEUE = """
if redis.call('HGET', KEYS[1], 'status') == 'running' then
  redis.call('HSET', KEYS[1], 'status', 'queued')
end
"""
# The worker is about to store the turn: from here on it cannot be cancelled.
# 0 if it was cancelled (or ended) first.
_COMMIT = """
local s = redis.call('HMGET', KEYS[1], 'status', 'cancel_requested')
if s[1] ~= 'running' or s[2] then return 0 end
redis.call('HSET', KEYS[1], 'committing', '1')
return 1
"""
# Asks a running job to stop: 'cancelling', or 'ended' when it is past the
# point of no return (finished, or storing its turn), or 'unknown'.
_ASK_CANCEL = _NOW + """
local s = redis.call('HMGET', KEYS[1], 'status', 'committing')
if not s[1] then return 'unknown' end
if s[1] ~= 'running' and s[1] ~= 'queued' then return 'ended' end
if s[2] then return 'ended' end
redis.call('HSET', KEYS[1], 'cancel_requested', now)
if s[1] == 'running' then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return 'cancelling'
"""
# One more transient failure: {failures that used up a retry, seconds since
# the first failure of any kind}.
_FAILURE = _NOW + """
redis.call('HSETNX', KEYS[1], 'first_failure_at', now)
local n = redis.call('HINCRBY', KEYS[1], 'failures', tonumber(ARGV[1]))
local since = tonumber(now) - tonumber(redis.call('HGET', KEYS[1], 'first_failure_at'))
return {n, tostring(since)}
"""


class Refused(Exception):
    """The job was not queued: its thread's inbox or its client's jobs are
    full, or its owner has no room for another thread (`what` says which)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


@dataclass(frozen=True)
class Job:
    """What the gateway accepted, and what became of it."""

    job_id: str
    thread_id: str
    # The run's first human message: what names a new thread in its owner's list.
    title: str = ""
    status: JobStatus = JobStatus.QUEUED
    created_at: float = field(default_factory=time.time)
    owner: str = ""
    # Who is charged for it in the per-client limit: the owner, or a digest
    # of the address when auth is off.
    client: str = ""
    attempt: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    response: str | None = None
    error: str | None = None
    http_status: int | None = None
    task_id: str = ""
    cancel_requested: float | None = None
    # The run (shared.runs.RunSpec as JSON), kept in the job's record so it
    # lives and expires with it.
    run: str = ""
    # The run ended at an interrupt(): the thread waits for a resume.
    interrupted: bool = False
    # The trace context of the request that queued it (shared.tracing), which
    # the worker's spans of the run join; None (not stored) with tracing off.
    trace: str | None = None

    def to_redis(self) -> dict[str, str]:
        return {k: str(int(v)) if isinstance(v, bool) else str(v)
                for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_redis(cls, raw: Mapping[str, str]) -> Job:
        def number(name: str) -> float | None:
            return float(raw[name]) if name in raw else None

        http_status = raw.get("http_status")
        return cls(
            job_id=raw["job_id"],
            thread_id=raw["thread_id"],
            title=raw.get("title", raw.get("message", "")),
            status=JobStatus(raw["status"]),
            created_at=float(raw["created_at"]),
            owner=raw.get("owner", ""),
            client=raw.get("client", ""),
            attempt=int(raw.get("attempt", "0")),
            started_at=number("started_at"),
            finished_at=number("finished_at"),
            response=raw.get("response"),
            error=raw.get("error"),
            http_status=int(http_status) if http_status else None,
            task_id=raw.get("task_id", ""),
            cancel_requested=number("cancel_requested"),
            run=run_of_record(raw),
            interrupted=raw.get("interrupted") == "1",
            trace=raw.get("trace"),
        )

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


def done_body(job: Job, response: str, interrupted: bool) -> dict[str, Any]:
    """The data of a job's `done` event (also rebuilt from its record)."""
    return {"response": response, "thread_id": job.thread_id, "job_id": job.job_id,
            "interrupted": interrupted}


class JobStore:
    """Reads and writes job records and event streams in Redis."""

    def __init__(self, redis: Redis, ttl: int) -> None:
        self.redis = redis
        self.ttl = ttl
        self._finish = redis.register_script(_FINISH)
        self._start = redis.register_script(_START)
        self._requeue = redis.register_script(_REQUEUE)
        self._create = redis.register_script(_CREATE)
        self._withdraw = redis.register_script(_WITHDRAW)
        self._commit = redis.register_script(_COMMIT)
        self._ask_cancel = redis.register_script(_ASK_CANCEL)
        self._failure = redis.register_script(_FAILURE)

    async def create(self, job: Job, max_in_thread: int, max_for_client: int,
                     new_thread: bool = False, max_threads: int = 0) -> Job:
        """Records an accepted job at the end of its thread's inbox.

        Raises Refused, recording nothing, when the thread's inbox already
        holds `max_in_thread` jobs or the client has `max_for_client`
        unfinished ones, or the job starts a thread and its owner already has
        `max_threads` (0: no limit). Also marks the thread active, so cleanup spares it,
        pending, so the recovery sweep finds it if its worker dies, and puts
        it first in its owner's list of conversations. The
        acceptance time is Redis's clock at the moment of the append, so
        across any number of gateways the jobs of a thread are in
        `created_at` order. `new_thread`: the gateway made the thread's id,
        so nothing of it can be stored yet. The caller then sends the job's
        nudge (shared.queue.send_turn).
        """
        keys = [job_key(job.job_id), inbox_key(job.thread_id), PENDING_KEY, ACTIVITY_KEY,
                client_jobs_key(job.client), owner_threads_key(job.owner),
                thread_info_key(job.thread_id), THREADS_INDEXED_KEY]
        fields = [item for pair in job.to_redis().items() if pair[0] != "created_at"
                  for item in pair]
        reply = await self._create(keys=keys, args=[
            self.ttl, job.job_id, job.thread_id, max_in_thread, max_for_client,
            title_of(job.title), job.owner, "1" if new_thread else "0",
            max_threads if job.owner else 0, *fields])
        if reply[0] != "ok":
            raise Refused(reply[0])
        return dataclasses.replace(job, created_at=float(reply[1]))

    async def delete(self, job: Job) -> None:
        """Forgets a job that could not be queued."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(job_key(job.job_id), events_key(job.job_id))
            pipe.lrem(inbox_key(job.thread_id), 0, job.job_id)
            pipe.srem(client_jobs_key(job.client), job.job_id)
            await pipe.execute()

    async def withdraw(self, job: Job) -> bool:
        """Takes back a job whose nudge could not be sent, as if it had never
        been accepted: False if a worker has started it already (the thread's
        previous turn passed it on), and then it stays accepted."""
        keys = [job_key(job.job_id), events_key(job.job_id), inbox_key(job.thread_id),
                client_jobs_key(job.client), owner_threads_key(job.owner),
                thread_info_key(job.thread_id)]
        return cast(int, await self._withdraw(keys=keys, args=[job.job_id, job.thread_id])) == 1

    async def forget_words(self, job_ids: list[str]) -> None:
        """For ended jobs of a deleted conversation: their reply and title go
        now; the rest of their records (the run, with its input) and their
        events within FORGET_SECONDS, so a client still reading one gets its end."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hdel(job_key(job_id), "title", "response")
                pipe.expire(job_key(job_id), FORGET_SECONDS)
                pipe.expire(events_key(job_id), FORGET_SECONDS)
            await pipe.execute()

    async def get(self, job_id: str) -> Job | None:
        raw = await self.redis.hgetall(job_key(job_id))
        return Job.from_redis(cast(dict[str, str], raw)) if raw else None

    async def get_many(self, job_ids: list[str]) -> list[Job | None]:
        """The jobs, in one round trip; None for an unknown one (or an empty id)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(job_key(job_id))
            raws = await pipe.execute()
        return [Job.from_redis(cast(dict[str, str], raw)) if raw else None for raw in raws]

    async def start(self, job_id: str, task_id: str = "") -> Job | None:
        """Marks the job running in Celery task `task_id` and counts the attempt.

        A finished job is left as it is. A job that runs again gets a `reset`
        event: what its earlier attempt streamed is void.
        """
        keys = [job_key(job_id), events_key(job_id)]
        flat = await self._start(keys=keys, args=[self.ttl, STREAM_MAXLEN, task_id])
        if not flat:
            return None
        return Job.from_redis(dict(zip(flat[::2], flat[1::2], strict=True)))

    async def requeue(self, job_id: str) -> None:
        """Back to `queued` while a retry waits; a finished job is left as it is."""
        await self._requeue(keys=[job_key(job_id)])

    async def append_events(self, job_id: str, events: list[tuple[str, str]],
                            first: bool) -> None:
        """Appends events (type, JSON data) of the run to the job's event
        stream, in one round trip; the `first` batch of an attempt also sets
        the stream's expiry (the job's end sets it again)."""
        key = events_key(job_id)
        if len(events) == 1 and not first:  # the usual case: no pipeline to build
            type_, data = events[0]
            await self.redis.xadd(key, {"type": type_, "data": data}, maxlen=STREAM_MAXLEN,
                                  approximate=True)
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for type_, data in events:
                fields: dict[FieldT, EncodableT] = {"type": type_, "data": data}
                pipe.xadd(key, fields, maxlen=STREAM_MAXLEN, approximate=True)
            if first:
                # After the XADD: EXPIRE on a key that does not exist yet does nothing.
                pipe.expire(key, self.ttl)
            await pipe.execute()

    async def count_failure(self, job_id: str, counts: bool) -> tuple[int, float]:
        """Notes one more transient failure of the job: how many have used up a
        retry (`counts`), and the seconds since its first failure of any kind."""
        failures, since = await self._failure(keys=[job_key(job_id)], args=[int(counts)])
        return int(failures), float(since)

    async def ask_cancel(self, job_id: str) -> str:
        """Flags an unfinished job to stop: "cancelling"; "ended" if it has
        finished or is storing its turn (too late); "unknown"."""
        return cast(str, await self._ask_cancel(keys=[job_key(job_id)],
                                                args=[CANCELS_CHANNEL, job_id]))

    async def cancels_requested(self, job_ids: list[str]) -> list[str]:
        """Those of the jobs whose cancel has been asked."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hexists(job_key(job_id), "cancel_requested")
            asked = await pipe.execute()
        return [job_id for job_id, flag in zip(job_ids, asked, strict=True) if flag]

    async def begin_commit(self, job_id: str) -> bool:
        """Claims the right to store the turn; False if a cancel came first.

        After it, a cancel answers that the job has ended: what is being
        stored will be.
        """
        return cast(int, await self._commit(keys=[job_key(job_id)])) == 1

    async def succeed(self, job: Job, response: str, interrupted: bool = False) -> bool:
        """Ends the job succeeded: `response`, the text of the run's last AI
        message; `interrupted`, the run stopped at an interrupt()."""
        body = done_body(job, response, interrupted)
        return await self._end(job, JobStatus.SUCCEEDED, "done", body, active=True,
                               response=response, interrupted=int(interrupted))

    async def fail(self, job: Job, detail: str, http_status: int) -> bool:
        body = {"detail": detail, "job_id": job.job_id}
        return await self._end(job, JobStatus.FAILED, "error", body,
                               error=detail, http_status=http_status)

    async def cancel(self, job: Job, only_if_queued: bool = False) -> bool:
        """Ends the job cancelled; with `only_if_queued`, only if no worker has it.

        A cancelled job stored nothing: its record (the run, with its input
        and metadata) is kept CANCELLED_TTL_SECONDS, not the job's full
        retention, so queueing and cancelling at once fills no Redis.
        """
        froms = _QUEUED if only_if_queued else _UNFINISHED
        return await self._end(job, JobStatus.CANCELLED, "cancelled", {"job_id": job.job_id},
                               from_statuses=froms, ttl=min(self.ttl, CANCELLED_TTL_SECONDS))

    async def _end(self, job: Job, status: JobStatus, event: str, body: dict[str, Any],
                   from_statuses: tuple[str, ...] = (), active: bool = False,
                   ttl: int | None = None, **fields: str | int) -> bool:
        """Records the outcome, appends the terminal event and takes the job out
        of its thread's inbox and its client's count, in one step.

        Only a job in one of `from_statuses` (default: any unfinished one) is
        changed; returns False otherwise: the first outcome stands. `active`
        marks the thread active (a stored turn) and counts its two messages
        in the owner's list of conversations. `ttl`: how long the ended job
        is kept (default: the store's).
        """
        from_statuses = from_statuses or _UNFINISHED
        pairs: list[str | int] = ["status", status]
        for name, value in fields.items():
            pairs += [name, value]
        ending = "," + ",".join(from_statuses) + ","
        args = [ttl or self.ttl, event, json.dumps(body), STREAM_MAXLEN, ending,
                "1" if active else "0", title_of(job.title), job.owner, job.job_id,
                job.thread_id, *pairs]
        keys = [job_key(job.job_id), events_key(job.job_id), inbox_key(job.thread_id),
                client_jobs_key(job.client), ACTIVITY_KEY, owner_threads_key(job.owner),
                thread_info_key(job.thread_id)]
        done = cast(int, await self._finish(keys=keys, args=args)) == 1
        if done:
            metrics.TURNS.labels(status.value).inc()
            if job.started_at is not None:
                metrics.TURN_DURATION.labels(status.value).observe(
                    max(0.0, time.time() - job.started_at))
        return done

    async def read_events(self, job_id: str, after: str = "0-0") -> list[Event]:
        """The job's events after `after`, without waiting."""
        reply = await self.redis.xread({events_key(job_id): after})
        return parse_events(cast(StreamReply, reply)).get(events_key(job_id), [])

    async def cancel_thread(self, thread_id: str) -> list[str]:
        """Cancels every unfinished job of the thread: queued ones end now,
        running ones are asked to stop. Returns the ids it found."""
        job_ids = cast(list[str], await self.redis.lrange(inbox_key(thread_id), 0, -1))
        for job_id in job_ids:
            job = await self.get(job_id)
            if job is not None and await self.ask_cancel(job_id) == "cancelling":
                await self.cancel(job, only_if_queued=True)
        return job_ids
