"""Threads and runs of the LangGraph Server API: what Redis keeps beside the jobs.

A thread's conversation is in S3, like any other; what the API adds (its
metadata, creation time, owner) is a small hash in Redis, indexed per owner
by last update for search. A run is a job; the thread's runs are indexed by
creation so they can be listed. Both expire: a thread's record
SESSION_TTL_SECONDS after its last run or update (when cleanup also deletes
an idle conversation), the run index with the jobs it points to.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, cast

from fastapi import Depends
from redis.asyncio import Redis

from api.deps import ServicesDep
from shared.keys import agent_thread_key, agent_threads_key, inbox_key, thread_runs_key

T = TypeVar("T")
META_PREFIX = "m:"
# Entries of an index read per round while a filtered search fills its page.
SCAN_BATCH = 200

# Creates, updates or touches a thread's record and its place in its owner's
# index: KEYS record, index; ARGV ttl, owner, thread id, mode, then field/value
# pairs of metadata. Mode "create" does nothing to an existing record,
# "update" nothing to a missing one, "ensure" either. Returns 1 if it wrote.
_UPSERT = """
local t = redis.call('TIME')
local now = t[1] .. '.' .. string.format('%06d', t[2])
local exists = redis.call('EXISTS', KEYS[1]) == 1
if (exists and ARGV[4] == 'create') or (not exists and ARGV[4] == 'update') then
  return 0
end
if not exists then
  redis.call('HSET', KEYS[1], 'created_at', now, 'owner', ARGV[2])
end
redis.call('HSET', KEYS[1], 'updated_at', now, unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], now, ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 1
"""


@dataclass(frozen=True)
class ThreadRecord:
    thread_id: str
    owner: str
    created_at: float
    updated_at: float
    metadata: dict[str, Any]
    # Whether the thread had an unfinished run or message when it was read.
    busy: bool = False

    def matches(self, metadata: dict[str, Any]) -> bool:
        """True if every key of `metadata` has the same value here."""
        return all(key in self.metadata and self.metadata[key] == value
                   for key, value in metadata.items())


def _record(thread_id: str, raw: dict[str, str], queued: int) -> ThreadRecord:
    return ThreadRecord(
        thread_id=thread_id, owner=raw.get("owner", ""), busy=queued > 0,
        created_at=float(raw["created_at"]), updated_at=float(raw["updated_at"]),
        metadata={name.removeprefix(META_PREFIX): json.loads(value)
                  for name, value in raw.items() if name.startswith(META_PREFIX)})


async def scan_index(redis: Redis, key: str, newest_first: bool, offset: int, limit: int,
                     load: Callable[[list[str]], Awaitable[list[T | None]]],
                     keep: Callable[[T], bool]) -> list[T]:
    """The page `offset`..`offset + limit` of the index's members that load
    (None for a member whose record has expired, which is then dropped from
    the index) and that `keep` keeps, in the index's order."""
    kept: list[T] = []
    start = 0
    while len(kept) < offset + limit:
        members = cast(list[str], await redis.zrange(key, start, start + SCAN_BATCH - 1,
                                                     desc=newest_first))
        if not members:
            break
        loaded = await load(members)
        gone = [m for m, item in zip(members, loaded, strict=True) if item is None]
        if gone:
            await redis.zrem(key, *gone)
        kept += [item for item in loaded if item is not None and keep(item)]
        start += len(members) - len(gone)
    return kept[offset:offset + limit]


class ThreadRecords:
    def __init__(self, redis: Redis, ttl: int) -> None:
        self.redis = redis
        self.ttl = ttl
        self._upsert = redis.register_script(_UPSERT)

    async def write(self, thread_id: str, owner: str,
                    mode: Literal["create", "update", "ensure"],
                    metadata: dict[str, Any] | None = None) -> bool:
        """Writes the record as `mode` says (see _UPSERT); True if it wrote.

        Metadata is merged key by key, as the LangGraph Server API does.
        """
        pairs = [item for key, value in (metadata or {}).items()
                 for item in (META_PREFIX + key, json.dumps(value, sort_keys=True))]
        wrote = await self._upsert(keys=[agent_thread_key(thread_id), agent_threads_key(owner)],
                                   args=[self.ttl, owner, thread_id, mode, *pairs])
        return cast(int, wrote) == 1

    async def get(self, thread_id: str) -> ThreadRecord | None:
        return (await self.get_many([thread_id]))[0]

    async def get_many(self, thread_ids: list[str]) -> list[ThreadRecord | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for thread_id in thread_ids:
                pipe.hgetall(agent_thread_key(thread_id))
                pipe.llen(inbox_key(thread_id))
            replies = await pipe.execute()
        raws = cast(list[dict[str, str]], replies[0::2])
        queued = cast(list[int], replies[1::2])
        return [_record(t, raw, n) if raw else None
                for t, raw, n in zip(thread_ids, raws, queued, strict=True)]

    async def search(self, owner: str, newest_first: bool, offset: int, limit: int,
                     keep: Callable[[ThreadRecord], bool]) -> list[ThreadRecord]:
        """The owner's threads that `keep` keeps, by last update."""
        return await scan_index(self.redis, agent_threads_key(owner), newest_first, offset,
                                limit, self.get_many, keep)

    async def delete(self, thread_id: str, owner: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(agent_thread_key(thread_id), thread_runs_key(thread_id))
            pipe.zrem(agent_threads_key(owner), thread_id)
            await pipe.execute()

    async def remove_run(self, thread_id: str, run_id: str) -> None:
        await self.redis.zrem(thread_runs_key(thread_id), run_id)

    async def add_run(self, thread_id: str, run_id: str, created_at: float,
                      ttl: int) -> None:
        key = thread_runs_key(thread_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {run_id: created_at})
            pipe.expire(key, ttl)
            await pipe.execute()


def get_records(services: ServicesDep) -> ThreadRecords:
    return ThreadRecords(services.redis, services.settings.SESSION_TTL_SECONDS)


RecordsDep = Annotated[ThreadRecords, Depends(get_records)]
