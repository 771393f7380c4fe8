"""Jobs in Redis: one hash per job (its record) and one stream per job (its events).

The stream is the result channel: the worker appends events (`token`, `reset`,
and one terminal `done`/`error`/`cancelled`), and readers block on it with
XREAD. Unlike pub/sub, a reader that comes late or reconnects misses nothing.
Both keys expire `ttl` seconds after the job's last change.
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

from shared.redis_client import MAX_BLOCK_MS
from shared.threads import ACTIVITY_KEY, PENDING_KEY, inbox_key


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
TERMINAL_EVENTS = frozenset({"done", "error", "cancelled"})
STREAM_MAXLEN = 20_000
_QUEUED = (JobStatus.QUEUED.value,)
_UNFINISHED = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)

# Status checks and writes must be one atomic step: a job that was cancelled
# or already finished must never be flipped back by a late worker.
_FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if not string.find(ARGV[5], ',' .. status .. ',', 1, true) then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'type', ARGV[2], 'data', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
redis.call('LREM', KEYS[3], 0, redis.call('HGET', KEYS[1], 'job_id'))
return 1
"""
_START = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return nil end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then
  return redis.call('HGETALL', KEYS[1])
end
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1], 'task_id', ARGV[4])
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
if attempt > 1 then
  -- What an earlier attempt streamed is void: readers start the reply over.
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'type', 'reset',
             'data', '{"attempt": ' .. attempt .. '}')
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return redis.call('HGETALL', KEYS[1])
"""
_CREATE = """
local t = redis.call('TIME')
local now = t[1] .. '.' .. string.format('%06d', t[2])
redis.call('HSET', KEYS[1], 'created_at', now, unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[4], 'GT', now, ARGV[3])
return now
"""
_REQUEUE = """
if redis.call('HGET', KEYS[1], 'status') == 'running' then
  redis.call('HSET', KEYS[1], 'status', 'queued')
end
"""


@dataclass(frozen=True)
class Job:
    """What the gateway accepted, and what became of it."""

    job_id: str
    thread_id: str
    message: str
    language: str
    status: JobStatus = JobStatus.QUEUED
    created_at: float = field(default_factory=time.time)
    owner: str = ""
    attempt: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    response: str | None = None
    error: str | None = None
    http_status: int | None = None
    task_id: str = ""
    cancel_requested: float | None = None

    def to_redis(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_redis(cls, raw: Mapping[str, str]) -> Job:
        def number(name: str) -> float | None:
            return float(raw[name]) if name in raw else None

        http_status = raw.get("http_status")
        return cls(
            job_id=raw["job_id"],
            thread_id=raw["thread_id"],
            message=raw.get("message", ""),
            language=raw.get("language", ""),
            status=JobStatus(raw["status"]),
            created_at=float(raw["created_at"]),
            owner=raw.get("owner", ""),
            attempt=int(raw.get("attempt", "0")),
            started_at=number("started_at"),
            finished_at=number("finished_at"),
            response=raw.get("response"),
            error=raw.get("error"),
            http_status=int(http_status) if http_status else None,
            task_id=raw.get("task_id", ""),
            cancel_requested=number("cancel_requested"),
        )

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_EVENTS


class JobStore:
    """Reads and writes job records and event streams in Redis."""

    def __init__(self, redis: Redis, ttl: int, prefix: str = "chat:") -> None:
        self.redis = redis
        self.ttl = ttl
        self.prefix = prefix
        self._finish = redis.register_script(_FINISH)
        self._start = redis.register_script(_START)
        self._requeue = redis.register_script(_REQUEUE)
        self._create = redis.register_script(_CREATE)

    def job_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def events_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:events"

    async def create(self, job: Job) -> Job:
        """Records an accepted job at the end of its thread's inbox.

        Also marks the thread active, so cleanup spares it, and pending, so
        the recovery sweep finds it if its worker dies. The acceptance time is
        Redis's clock at the moment of the append, so across any number of
        gateways the jobs of a thread are in `created_at` order.
        """
        keys = [self.job_key(job.job_id), inbox_key(job.thread_id), PENDING_KEY, ACTIVITY_KEY]
        fields = [item for pair in job.to_redis().items() if pair[0] != "created_at"
                  for item in pair]
        created = await self._create(keys=keys, args=[self.ttl, job.job_id, job.thread_id,
                                                      *fields])
        return dataclasses.replace(job, created_at=float(created))

    async def delete(self, job: Job) -> None:
        """Forgets a job that could not be queued."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.job_key(job.job_id), self.events_key(job.job_id))
            pipe.lrem(inbox_key(job.thread_id), 0, job.job_id)
            await pipe.execute()

    async def get(self, job_id: str) -> Job | None:
        raw = await self.redis.hgetall(self.job_key(job_id))
        return Job.from_redis(cast(dict[str, str], raw)) if raw else None

    async def start(self, job_id: str, task_id: str = "") -> Job | None:
        """Marks the job running in Celery task `task_id` and counts the attempt.

        A finished job is left as it is. A job that runs again gets a `reset`
        event: what its earlier attempt streamed is void.
        """
        keys = [self.job_key(job_id), self.events_key(job_id)]
        flat = await self._start(keys=keys, args=[time.time(), self.ttl, STREAM_MAXLEN, task_id])
        if not flat:
            return None
        return Job.from_redis(dict(zip(flat[::2], flat[1::2], strict=True)))

    async def requeue(self, job_id: str) -> None:
        """Back to `queued` while a retry waits; a finished job is left as it is."""
        await self._requeue(keys=[self.job_key(job_id)])

    async def append_tokens(self, job_id: str, text: str) -> None:
        """Appends the next piece of the reply to the job's event stream."""
        key = self.events_key(job_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(key, {"type": "token", "data": json.dumps({"text": text})},
                      maxlen=STREAM_MAXLEN, approximate=True)
            # After the XADD: EXPIRE on a key that does not exist yet does nothing.
            pipe.expire(key, self.ttl)
            await pipe.execute()

    async def count_failure(self, job_id: str) -> int:
        """Counts one more transient failure of the job; returns the count."""
        return int(await self.redis.hincrby(self.job_key(job_id), "failures", 1))

    async def request_cancel(self, job_id: str) -> None:
        await self.redis.hset(self.job_key(job_id), "cancel_requested", str(time.time()))

    async def cancel_requested(self, job_id: str) -> bool:
        flag = await self.redis.hget(self.job_key(job_id), "cancel_requested")
        return flag is not None

    async def succeed(self, job: Job, response: str) -> bool:
        body = {"response": response, "language": job.language,
                "thread_id": job.thread_id, "job_id": job.job_id}
        return await self._end(job, JobStatus.SUCCEEDED, "done", body, response=response)

    async def fail(self, job: Job, detail: str, http_status: int) -> bool:
        body = {"detail": detail, "job_id": job.job_id}
        return await self._end(job, JobStatus.FAILED, "error", body,
                               error=detail, http_status=http_status)

    async def cancel(self, job: Job, only_if_queued: bool = False) -> bool:
        """Ends the job cancelled; with `only_if_queued`, only if no worker has it."""
        froms = _QUEUED if only_if_queued else _UNFINISHED
        return await self._end(job, JobStatus.CANCELLED, "cancelled", {"job_id": job.job_id},
                               from_statuses=froms)

    async def _end(self, job: Job, status: JobStatus, event: str, body: dict[str, Any],
                   from_statuses: tuple[str, ...] = (), **fields: str | int) -> bool:
        """Records the outcome, appends the terminal event and takes the job out
        of its thread's inbox, in one step.

        Only a job in one of `from_statuses` (default: any unfinished one) is
        changed; returns False otherwise: the first outcome stands.
        """
        from_statuses = from_statuses or _UNFINISHED
        pairs: list[str | int | float] = ["status", status, "finished_at", time.time()]
        for name, value in fields.items():
            pairs += [name, value]
        ending = "," + ",".join(from_statuses) + ","
        args = [self.ttl, event, json.dumps(body), STREAM_MAXLEN, ending, *pairs]
        keys = [self.job_key(job.job_id), self.events_key(job.job_id), inbox_key(job.thread_id)]
        done = await self._finish(keys=keys, args=args)
        return cast(int, done) == 1

    async def read_events(self, job_id: str, after: str = "0-0",
                          block_ms: int | None = None) -> list[Event]:
        reply = await self.redis.xread({self.events_key(job_id): after}, block=block_ms)
        events = []
        for _stream, entries in cast(list[tuple[str, list[tuple[str, dict[str, str]]]]],
                                     reply or []):
            for entry_id, fields in entries:
                events.append(Event(entry_id, fields["type"], json.loads(fields["data"])))
        return events

    async def wait(self, job_id: str, seconds: float) -> Event | None:
        """Blocks on the job's stream until its terminal event, or None after `seconds`."""
        deadline = time.monotonic() + seconds
        after = "0-0"
        while (left := deadline - time.monotonic()) > 0:
            block_ms = min(MAX_BLOCK_MS, max(1, int(left * 1000)))
            for event in await self.read_events(job_id, after, block_ms):
                if event.terminal:
                    return event
                after = event.id
        return None
