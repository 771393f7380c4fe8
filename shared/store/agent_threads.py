"""Threads and runs of the LangGraph Server API: what Redis keeps beside the jobs.

A thread's conversation is in S3, like any other; what the API adds (its
metadata, creation time, owner) is a small hash in Redis, indexed per owner
by last update for search. A run is a job (a POST /chat's too); the
thread's runs are indexed by creation so they can be listed. The record
lives as long as the conversation: writing it counts as activity, and it
goes when the conversation is deleted (by a client, or by cleanup once idle
SESSION_TTL_SECONDS: conversations.Conversations.forget and forget_if_idle). The
run index expires with the jobs it points to.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

from redis.asyncio import Redis

from shared.store._script import NOW, Script
from shared.store.job import Job
from shared.store.keys import (
    activity_key,
    agent_thread_key,
    agent_threads_key,
    hash_tagged,
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

# The record's fields; each metadata key is a field of its own, prefixed.
OWNER, CREATED_AT, UPDATED_AT = "owner", "created_at", "updated_at"

# What an upsert did.
WROTE, UNCHANGED, TOO_LARGE, NO_ROOM = 1, 0, -1, -2

# Creates, updates or touches a thread's record and its place in cleanup's
# activity index; the metadata comes as field/value pairs after the named
# arguments. Mode "create" does nothing to an existing record, "update"
# nothing to a missing one, "ensure" either. `max_keys` and `max_bytes`: the
# most metadata the record may hold once merged ("0": no limit); `room`
# "0": the owner has no room for another thread. Returns {WROTE, the time},
# or {UNCHANGED}, {TOO_LARGE} (the metadata would pass its limits) or
# {NO_ROOM}; nothing is written but for WROTE.
_UPSERT_CHECKS = f"""
local exists = redis.call('EXISTS', record) == 1
if (exists and mode == 'create') or (not exists and mode == 'update') then
  return {{{UNCHANGED}}}
end
if not exists and room == '0' then return {{{NO_ROOM}}} end
if max_keys ~= '0' then
  local sizes = {{}}
  if exists then
    local all = redis.call('HGETALL', record)
    for i = 1, #all, 2 do
      if string.sub(all[i], 1, {len(META_PREFIX)}) == '{META_PREFIX}' then
        sizes[all[i]] = #all[i] + #all[i + 1]
      end
    end
  end
  for i = REST, #ARGV, 2 do sizes[ARGV[i]] = #ARGV[i] + #ARGV[i + 1] end
  local count, bytes = 0, 0
  for _, size in pairs(sizes) do count = count + 1; bytes = bytes + size end
  if count > tonumber(max_keys) or bytes > tonumber(max_bytes) then return {{{TOO_LARGE}}} end
end
"""
# Makes or updates the record (`exists`: it was there), merging the
# metadata pairs from REST on, and marks the thread active.
_WRITE = f"""
if not exists then
  redis.call('HSET', record, '{CREATED_AT}', now, '{OWNER}', owner)
end
if #ARGV >= REST then redis.call('HSET', record, unpack(ARGV, REST)) end
redis.call('HSET', record, '{UPDATED_AT}', now)
redis.call('ZADD', activity, 'GT', now, thread_id)
"""
# The owner's part, where every key is on one Redis: whether the owner has
# room for a new thread (`max_threads`, "0": no limit), and the thread's
# place in its owner's index. On a Redis Cluster the owner's index is in
# another slot, and AgentThreads does both around the script.
_ROOM = """
local room = '1'
if max_threads ~= '0' and not redis.call('ZSCORE', owner_index, thread_id)
    and redis.call('ZCARD', owner_index) >= tonumber(max_threads) then room = '0' end
"""
_LIST = "redis.call('ZADD', owner_index, now, thread_id)\n"
_WROTE = f"return {{{WROTE}, now}}\n"
_UPSERT_KEYS = ("record", "activity")
_UPSERT_ARGS = ("owner", "thread_id", "mode", "max_keys", "max_bytes")
_UPSERT = NOW + _UPSERT_CHECKS + _WRITE + _WROTE
_UPSERT_LISTED = NOW + _ROOM + _UPSERT_CHECKS + _WRITE + _LIST + _WROTE

# A queued job listed among its thread's runs, the record made or merged
# with the server's own metadata (no client limits apply), in one step.
_ADD_RUN_KEYS = ("record", "activity", "runs")
_ADD_RUN_ARGS = ("owner", "thread_id", "run_id", "created_at", "ttl")
_ADD_RUN = NOW + """
local exists = redis.call('EXISTS', record) == 1
""" + _WRITE + """
redis.call('ZADD', runs, created_at, run_id)
redis.call('EXPIRE', runs, ttl)
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
        thread_id=thread_id, owner=raw.get(OWNER, ""), busy=queued > 0,
        created_at=float(raw[CREATED_AT]), updated_at=float(raw[UPDATED_AT]),
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


class AgentThreads:
    """The LangGraph Server API's thread records, and their threads' runs."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        # On one Redis, each write is one script with the owner's part in it;
        # on a Redis Cluster, the owner's part is a step of its own (keys.py).
        self._one_slot = not hash_tagged()
        self._upsert = Script(redis, _UPSERT_KEYS, (*_UPSERT_ARGS, "room"), _UPSERT)
        self._upsert_listed = Script(redis, (*_UPSERT_KEYS, "owner_index"),
                                     (*_UPSERT_ARGS, "max_threads"), _UPSERT_LISTED)
        self._add_run = Script(redis, _ADD_RUN_KEYS, _ADD_RUN_ARGS, _ADD_RUN + "return now\n")
        self._add_run_listed = Script(redis, (*_ADD_RUN_KEYS, "owner_index"), _ADD_RUN_ARGS,
                                      _ADD_RUN + _LIST)

    async def upsert(self, thread_id: str, owner: str,
                     mode: Literal["create", "update", "ensure"],
                     metadata: dict[str, Any] | None = None, max_keys: int = 0,
                     max_bytes: int = 0, max_threads: int = 0) -> int:
        """Writes a client's change to the record as `mode` says (see
        _UPSERT), merging metadata key by key as the LangGraph Server API
        does: WROTE, UNCHANGED, TOO_LARGE or NO_ROOM.

        On a Redis Cluster the owner's room for a new thread is read first,
        in the owner's slot: two keys' creates at once may pass `max_threads`
        by one each there."""
        names: dict[str, Any] = {
            "record": agent_thread_key(thread_id), "activity": activity_key(thread_id),
            "owner": owner, "thread_id": thread_id, "mode": mode, "max_keys": max_keys,
            "max_bytes": max_bytes}
        max_threads = max_threads if owner else 0
        if self._one_slot:
            reply = await self._upsert_listed(**names, owner_index=agent_threads_key(owner),
                                              max_threads=max_threads, rest=_pairs(metadata))
            return cast(int, reply[0])
        room = True
        if max_threads:
            index = agent_threads_key(owner)
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zscore(index, thread_id)
                pipe.zcard(index)
                listed, count = await pipe.execute()
            room = listed is not None or count < max_threads
        reply = await self._upsert(**names, room=int(room), rest=_pairs(metadata))
        if reply[0] == WROTE:
            await self._list(owner, thread_id, reply[1])
        return cast(int, reply[0])

    async def _list(self, owner: str, thread_id: str, at: str) -> None:
        """Moves the thread up in its owner's index (by last update)."""
        await self.redis.zadd(agent_threads_key(owner), {thread_id: at})

    async def get(self, thread_id: str) -> ThreadRecord | None:
        return (await self.get_many([thread_id]))[0]

    async def get_many(self, thread_ids: list[str]) -> list[ThreadRecord | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for thread_id in thread_ids:
                pipe.hgetall(agent_thread_key(thread_id))
                pipe.llen(inbox_key(thread_id))  # busy: in the same round trip
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

    async def runs(self, thread_id: str, offset: int, limit: int,
                   load: Callable[[list[str]], Awaitable[list[Job | None]]],
                   keep: Callable[[Job], bool]) -> list[Job]:
        """The thread's runs that `load` finds and `keep` keeps, newest first."""
        return await scan_index(self.redis, thread_runs_key(thread_id), True, offset, limit,
                                load, keep)

    async def run_ids(self, thread_id: str) -> list[str]:
        """The ids of the thread's runs (its jobs) still kept."""
        return cast(list[str], await self.redis.zrange(thread_runs_key(thread_id), 0, -1))

    async def remove_run(self, thread_id: str, run_id: str) -> None:
        await self.redis.zrem(thread_runs_key(thread_id), run_id)

    async def add_run(self, job: Job, metadata: dict[str, Any], ttl: int) -> None:
        """Lists the queued job among its thread's runs (for `ttl` seconds,
        as long as jobs are kept), and merges `metadata` into the thread's
        record, making it if the thread has none."""
        names: dict[str, Any] = {
            "record": agent_thread_key(job.thread_id), "activity": activity_key(job.thread_id),
            "runs": thread_runs_key(job.thread_id), "owner": job.owner,
            "thread_id": job.thread_id, "run_id": job.job_id, "created_at": job.created_at,
            "ttl": ttl}
        if self._one_slot:
            await self._add_run_listed(**names, owner_index=agent_threads_key(job.owner),
                                       rest=_pairs(metadata))
        else:
            at = await self._add_run(**names, rest=_pairs(metadata))
            await self._list(job.owner, job.thread_id, at)


def _pairs(metadata: dict[str, Any] | None) -> list[str]:
    return [item for key, value in (metadata or {}).items()
            for item in (META_PREFIX + key, json.dumps(value, sort_keys=True))]
