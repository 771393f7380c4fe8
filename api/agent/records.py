"""Threads and runs of the LangGraph Server API: what Redis keeps beside the jobs.

A thread's conversation is in S3, like any other; what the API adds (its
metadata, creation time, owner) is a small hash in Redis, indexed per owner
by last update for search. A run is a job (a POST /chat's too); the
thread's runs are indexed by creation so they can be listed. The record
lives as long as the conversation: writing it counts as activity, and it
goes when the conversation is deleted (by a client, or by cleanup once idle
SESSION_TTL_SECONDS: shared.store.conversations.Conversations.forget, worker.cleanup). The
run index expires with the jobs it points to.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, cast

from fastapi import Depends
from redis.asyncio import Redis

from api.agent.schemas import METADATA_LIMITS, METADATA_MAX_BYTES, METADATA_MAX_KEYS
from api.deps import ServicesDep
from api.errors import TooLarge, TooManyRequests
from shared.store.job import Job
from shared.store.keys import (
    ACTIVITY_KEY,
    agent_thread_key,
    agent_threads_key,
    inbox_key,
    thread_runs_key,
)

T = TypeVar("T")
META_PREFIX = "m:"
# Entries of an index read per round while a filtered search fills its page,
# and at most per search: a filter that matches little ends with a short page
# rather than loading a whole index.
SCAN_BATCH = 200
SCAN_MAX = 5000

# Creates, updates or touches a thread's record, its place in its owner's
# index and in cleanup's activity index: KEYS record, owner's index, activity;
# ARGV owner, thread id, mode, the most metadata keys and bytes the record may
# hold once merged ("0": no limit), the most threads the owner's index may
# hold for a new one ("0": no limit), then field/value pairs of metadata.
# Mode "create" does nothing to an existing record, "update" nothing to a
# missing one, "ensure" either. Returns 1 if it wrote, 0 if not, -1 if the
# metadata would pass its limits, -2 if the owner has no room for another
# thread (nothing written).
_UPSERT = """
local t = redis.call('TIME')
local now = t[1] .. '.' .. string.format('%06d', t[2])
local exists = redis.call('EXISTS', KEYS[1]) == 1
if (exists and ARGV[3] == 'create') or (not exists and ARGV[3] == 'update') then
  return 0
end
if not exists and ARGV[6] ~= '0' and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then
  return -2
end
if ARGV[4] ~= '0' then
  local sizes = {}
  if exists then
    local all = redis.call('HGETALL', KEYS[1])
    for i = 1, #all, 2 do
      if string.sub(all[i], 1, 2) == 'm:' then sizes[all[i]] = #all[i] + #all[i + 1] end
    end
  end
  for i = 7, #ARGV, 2 do sizes[ARGV[i]] = #ARGV[i] + #ARGV[i + 1] end
  local count, bytes = 0, 0
  for _, size in pairs(sizes) do count = count + 1; bytes = bytes + size end
  if count > tonumber(ARGV[4]) or bytes > tonumber(ARGV[5]) then return -1 end
end
if not exists then
  redis.call('HSET', KEYS[1], 'created_at', now, 'owner', ARGV[1])
end
if #ARGV > 6 then redis.call('HSET', KEYS[1], unpack(ARGV, 7)) end
redis.call('HSET', KEYS[1], 'updated_at', now)
redis.call('ZADD', KEYS[2], now, ARGV[2])
redis.call('ZADD', KEYS[3], 'GT', now, ARGV[2])
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
    the index) and that `keep` keeps, in the index's order, among the first
    SCAN_MAX members."""
    kept: list[T] = []
    start = 0
    while len(kept) < offset + limit and start < SCAN_MAX:
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
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._upsert = redis.register_script(_UPSERT)

    async def write(self, thread_id: str, owner: str,
                    mode: Literal["create", "update", "ensure"],
                    metadata: dict[str, Any] | None = None, max_threads: int = 0) -> bool:
        """Writes a client's change to the record as `mode` says (see _UPSERT);
        True if it wrote. Metadata is merged key by key, as the LangGraph
        Server API does; TooLarge (413) if the merge would pass its limits,
        TooManyRequests (429) if it makes a thread and `owner` (with auth on)
        has `max_threads` already."""
        wrote = await self._upsert(
            keys=self._keys(thread_id, owner),
            args=[owner, thread_id, mode, METADATA_MAX_KEYS, METADATA_MAX_BYTES,
                  max_threads if owner else 0, *_pairs(metadata)])
        if wrote == -1:
            raise TooLarge(f"{METADATA_LIMITS}, merged with the thread's")
        if wrote == -2:
            raise TooManyRequests("you have as many threads as one key may "
                                  "(MAX_THREADS_PER_CLIENT): delete some, or wait for idle "
                                  "ones to expire")
        return cast(int, wrote) == 1

    @staticmethod
    def _keys(thread_id: str, owner: str) -> list[str]:
        return [agent_thread_key(thread_id), agent_threads_key(owner), ACTIVITY_KEY]

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

    async def run_ids(self, thread_id: str) -> list[str]:
        """The ids of the thread's runs (its jobs) still kept."""
        return cast(list[str], await self.redis.zrange(thread_runs_key(thread_id), 0, -1))

    async def remove_run(self, thread_id: str, run_id: str) -> None:
        await self.redis.zrem(thread_runs_key(thread_id), run_id)

    async def add_run(self, job: Job, metadata: dict[str, Any], ttl: int) -> None:
        """Lists the queued job among its thread's runs (for `ttl` seconds,
        as long as jobs are kept), and merges `metadata` into the thread's
        record, making it if the thread has none."""
        key = thread_runs_key(job.thread_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            # The server's own keys: never over the client's limits.
            await self._upsert(keys=self._keys(job.thread_id, job.owner),
                               args=[job.owner, job.thread_id, "ensure", 0, 0, 0,
                                     *_pairs(metadata)], client=pipe)
            pipe.zadd(key, {job.job_id: job.created_at})
            pipe.expire(key, ttl)
            await pipe.execute()


def _pairs(metadata: dict[str, Any] | None) -> list[str]:
    return [item for key, value in (metadata or {}).items()
            for item in (META_PREFIX + key, json.dumps(value, sort_keys=True))]


def get_records(services: ServicesDep) -> ThreadRecords:
    return ThreadRecords(services.redis)


RecordsDep = Annotated[ThreadRecords, Depends(get_records)]
