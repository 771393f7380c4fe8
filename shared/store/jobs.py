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
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.typing import EncodableT, FieldT

from shared import metrics
from shared.conversation import title_of
from shared.job_events import Event, StreamReply, parse_events
from shared.store import _job_scripts as lua
from shared.store._script import Script
from shared.store.job import (
    CANCEL_REQUESTED,
    CREATED_AT,
    RESPONSE,
    STATUS,
    TITLE,
    Job,
    JobStatus,
    done_body,
)
from shared.store.keys import (
    CANCELS_CHANNEL,
    activity_key,
    client_jobs_key,
    events_key,
    hash_tagged,
    inbox_key,
    job_key,
    owner_threads_key,
    pending_key,
    thread_info_key,
    threads_indexed_key,
)

STREAM_MAXLEN = 20_000
# How long a deleted conversation's ended jobs stay readable (see forget_words).
FORGET_SECONDS = 60
# How long a cancelled job is kept: it stored nothing (see JobStore.cancel).
CANCELLED_TTL_SECONDS = 3600
_QUEUED = (JobStatus.QUEUED.value,)
_UNFINISHED = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)

class Refused(Exception):
    """The job was not queued: its thread's inbox or its client's jobs are
    full, or its owner has no room for another thread (`what` says which)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class JobStore:
    """Reads and writes job records and event streams in Redis."""

    def __init__(self, redis: Redis, ttl: int) -> None:
        self.redis = redis
        self.ttl = ttl
        # On one Redis, accepting and ending a job are one script each; on a
        # Redis Cluster, the owner's part is a step of its own (keys.py).
        self._one_slot = not hash_tagged()
        self._finish = Script(redis, lua.FINISH_KEYS, lua.FINISH_ARGS, lua.FINISH)
        self._finish_all = Script(redis, lua.FINISH_ALL_KEYS, lua.FINISH_ARGS, lua.FINISH_ALL)
        self._owner_after_script = Script(redis, lua.OWNER_AFTER_KEYS, lua.OWNER_AFTER_ARGS,
                                          lua.OWNER_AFTER)
        self._start = Script(redis, lua.START_KEYS, lua.START_ARGS, lua.START)
        self._requeue = Script(redis, ("job",), (), lua.REQUEUE)
        self._reserve = Script(redis, lua.RESERVE_KEYS, lua.RESERVE_ARGS, lua.RESERVE)
        self._create = Script(redis, lua.CREATE_KEYS, lua.CREATE_ARGS, lua.CREATE)
        self._accept = Script(redis, lua.ACCEPT_KEYS, lua.ACCEPT_ARGS, lua.ACCEPT)
        self._withdraw = Script(redis, lua.WITHDRAW_KEYS, lua.WITHDRAW_ARGS, lua.WITHDRAW)
        self._commit = Script(redis, ("job",), (), lua.COMMIT)
        self._ask_cancel = Script(redis, ("job",), lua.ASK_CANCEL_ARGS, lua.ASK_CANCEL)
        self._failure = Script(redis, ("job",), ("counts",), lua.FAILURE)

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
        nudge (the gateway's api/publisher.py).

        Two steps, as on a Redis Cluster the owner's keys and the thread's are
        in two slots: the owner's first (the client's count and the list;
        taken back if the thread's inbox is full), then the thread's.
        """
        owner_part: dict[str, Any] = {
            "client_jobs": client_jobs_key(job.owner, job.client),
            "owner_threads": owner_threads_key(job.owner),
            "max_for_client": max_for_client, "max_threads": max_threads if job.owner else 0}
        thread_part: dict[str, Any] = {
            "job": job_key(job.job_id), "inbox": inbox_key(job.thread_id),
            "pending": pending_key(job.thread_id), "activity": activity_key(job.thread_id),
            "info": thread_info_key(job.thread_id),
            "indexed": threads_indexed_key(job.thread_id), "max_in_thread": max_in_thread,
            "title": title_of(job.title), "owner": job.owner,
            "new_thread": "1" if new_thread else "0"}
        common: dict[str, Any] = {"ttl": self.ttl, "job_id": job.job_id,
                                         "thread_id": job.thread_id}
        fields = [item for pair in job.to_redis().items() if pair[0] != CREATED_AT
                  for item in pair]
        if self._one_slot:
            reply = await self._accept(**common, **owner_part, **thread_part, rest=fields)
        else:
            reserved = await self._reserve(**common, **owner_part)
            if reserved[0] != "ok":
                raise Refused(reserved[0])
            reply = await self._create(**common, **thread_part, rest=fields)
            if reply[0] != "ok":
                await self._owner_after(job, forgot=reserved[1] == 1)
        if reply[0] != "ok":
            raise Refused(reply[0])
        return dataclasses.replace(job, created_at=float(reply[1]))

    async def _owner_after(self, job: Job, forgot: bool = False,
                           stored_at: str | None = None) -> None:
        """The owner's part of a job's end, withdrawal or refusal (see
        _job_scripts.OWNER_AFTER), where it is a step of its own.

        On a Redis Cluster a process dying between the two steps leaves the
        job counted among its client's for as long as the client keeps
        queueing (the set expires a job lifetime after its last change), or
        the thread in its owner's list until cleanup or a delete."""
        await self._owner_after_script(
            client_jobs=client_jobs_key(job.owner, job.client),
            owner_threads=owner_threads_key(job.owner), job_id=job.job_id,
            thread_id=job.thread_id, stored_at=stored_at or "", forgot=int(forgot))

    async def delete(self, job: Job) -> None:
        """Forgets a job that could not be queued."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(job_key(job.job_id), events_key(job.job_id))
            pipe.lrem(inbox_key(job.thread_id), 0, job.job_id)
            await pipe.execute()
        await self._owner_after(job)

    async def withdraw(self, job: Job) -> bool:
        """Takes back a job whose nudge could not be sent, as if it had never
        been accepted: False if a worker has started it already (the thread's
        previous turn passed it on), and then it stays accepted."""
        reply = await self._withdraw(
            job=job_key(job.job_id), events=events_key(job.job_id),
            inbox=inbox_key(job.thread_id), info=thread_info_key(job.thread_id),
            job_id=job.job_id)
        if reply[0] != 1:
            return False
        await self._owner_after(job, forgot=reply[1] == 1)
        return True

    async def forget_words(self, job_ids: list[str]) -> None:
        """For ended jobs of a deleted conversation: their reply and title go
        now; the rest of their records (the run, with its input) and their
        events within FORGET_SECONDS, so a client still reading one gets its end."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hdel(job_key(job_id), TITLE, RESPONSE)
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
        flat = await self._start(job=job_key(job_id), events=events_key(job_id),
                                 ttl=self.ttl, maxlen=STREAM_MAXLEN, task_id=task_id)
        if not flat:
            return None
        return Job.from_redis(dict(zip(flat[::2], flat[1::2], strict=True)))

    async def requeue(self, job_id: str) -> None:
        """Back to `queued` while a retry waits; a finished job is left as it is."""
        await self._requeue(job=job_key(job_id))

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
        failures, since = await self._failure(job=job_key(job_id), counts=int(counts))
        return int(failures), float(since)

    async def ask_cancel(self, job_id: str) -> str:
        """Flags an unfinished job to stop: "cancelling"; "ended" if it has
        finished or is storing its turn (too late); "unknown"."""
        return cast(str, await self._ask_cancel(job=job_key(job_id), channel=CANCELS_CHANNEL,
                                                job_id=job_id))

    @staticmethod
    async def subscribe_cancels(pubsub: PubSub) -> None:
        """Subscribes to the ids of running jobs asked to stop (ask_cancel publishes them)."""
        await pubsub.subscribe(CANCELS_CHANNEL)

    async def cancels_requested(self, job_ids: list[str]) -> list[str]:
        """Those of the jobs whose cancel has been asked."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hexists(job_key(job_id), CANCEL_REQUESTED)
            asked = await pipe.execute()
        return [job_id for job_id, flag in zip(job_ids, asked, strict=True) if flag]

    async def begin_commit(self, job_id: str) -> bool:
        """Claims the right to store the turn; False if a cancel came first.

        After it, a cancel answers that the job has ended: what is being
        stored will be.
        """
        return cast(int, await self._commit(job=job_key(job_id))) == 1

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
        of its thread's inbox, in one step; then out of its client's count.

        Only a job in one of `from_statuses` (default: any unfinished one) is
        changed; returns False otherwise: the first outcome stands. `active`
        marks the thread active (a stored turn) and counts its two messages
        in the owner's list of conversations. `ttl`: how long the ended job
        is kept (default: the store's).
        """
        from_statuses = from_statuses or _UNFINISHED
        pairs: list[str | int] = [STATUS, status]
        for name, value in fields.items():
            pairs += [name, value]
        ending = "," + ",".join(from_statuses) + ","
        names: dict[str, Any] = {
            "job": job_key(job.job_id), "events": events_key(job.job_id),
            "inbox": inbox_key(job.thread_id), "activity": activity_key(job.thread_id),
            "info": thread_info_key(job.thread_id),
            "ttl": ttl or self.ttl, "event": event, "data": json.dumps(body),
            "maxlen": STREAM_MAXLEN, "from_statuses": ending, "stored": "1" if active else "0",
            "title": title_of(job.title), "owner": job.owner, "job_id": job.job_id,
            "thread_id": job.thread_id}
        if self._one_slot:
            reply = await self._finish_all(
                **names, client_jobs=client_jobs_key(job.owner, job.client),
                owner_threads=owner_threads_key(job.owner), rest=pairs)
        else:
            reply = await self._finish(**names, rest=pairs)
            if isinstance(reply, list):
                await self._owner_after(job, forgot=reply[1] == 1,
                                        stored_at=reply[0] if active else None)
        if not isinstance(reply, list):  # 0 or -1: another outcome came first, or no job
            return False
        ended = reply[0]
        metrics.TURNS.labels(status.value).inc()
        if job.started_at is not None:  # both on Redis's clock
            metrics.TURN_DURATION.labels(status.value).observe(
                max(0.0, float(ended) - job.started_at))
        return True

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
