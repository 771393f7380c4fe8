"""Each owner's list of conversations, kept in Redis so listing costs no S3 LIST.

Per owner, a sorted set of thread ids by last activity (Redis's clock); per
thread, a hash with its title (its first message, cut short), its message
count and its owner. The job scripts (jobs.py) write both, in the same step
that accepts a job (the thread comes first, titled by the message if it is
new) and that ends one (a stored turn adds its two messages; a new thread
whose every turn failed or was cancelled leaves the list). The same steps
move the activity index (thread id -> time of its last accepted or finished
turn), by which cleanup (worker/cleanup.py) finds idle conversations. (On a
Redis Cluster the list is in its owner's slot and the rest in the thread's:
there, the owner's part is a step of its own, keys.py.)

Redis can lose them. A full scan of S3 (cleanup's reconcile) then
summarises each stored thread from its transcript
(shared.conversation.summarize), and leaves a mark of a complete index behind
(one per bucket of threads, on a Redis Cluster: keys.threads_indexed_key);
until a thread's bucket has its mark, a thread the lists do not know is marked `partial`
(unless the gateway has just made its id), as its stored messages are not
counted here, and the scan summarises it again.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from redis.asyncio import Redis
from redis.asyncio.lock import Lock

from shared.conversation import Summary
from shared.ids import STORED_THREAD
from shared.store import agent_threads
from shared.store._script import Script
from shared.store.keys import (
    CLEANUP_LOCK_KEY,
    RECONCILED_KEY,
    THREADS_REBUILD_ASKED_KEY,
    activity_key,
    activity_keys,
    agent_thread_key,
    agent_threads_key,
    hash_tagged,
    owner_threads_key,
    thread_info_key,
    thread_runs_key,
    threads_indexed_keys,
)

# The fields of a thread's info hash.
OWNER, TITLE, MESSAGES, PARTIAL = "owner", "title", "messages", "partial"
# A time as Redis prints a score (%.17g of a positive time: no exponent), and
# a thread's stored id.
CURSOR_PATTERN = rf"^([0-9]{{1,17}}(?:\.[0-9]{{1,17}})?):({STORED_THREAD.pattern})$"
CURSOR = re.compile(CURSOR_PATTERN.removeprefix("^").removesuffix("$"))

# One page of `limit` threads, newest first, after the cursor (`score`, or
# "" for the first page, and `after`, a thread id): ties at the cursor's
# score come in reverse order of id, as ZRANGE REV gives them.
_PAGE_KEYS, _PAGE_ARGS = ("owner_threads",), ("limit", "score", "after")
_PAGE = """
local want = tonumber(limit)
local out = {}
local top = '+inf'
if score ~= '' then
  for _, id in ipairs(redis.call('ZRANGE', owner_threads, score, score, 'BYSCORE', 'REV')) do
    if #out >= want * 2 then break end
    if id < after then
      table.insert(out, id)
      table.insert(out, score)
    end
  end
  top = '(' .. score
end
local left = want - #out / 2
if left > 0 then
  local older = redis.call('ZRANGE', owner_threads, top, '-inf', 'BYSCORE', 'REV',
                           'LIMIT', 0, left, 'WITHSCORES')
  for _, item in ipairs(older) do table.insert(out, item) end
end
return out
"""
# Forgets an expired thread, only if no turn touched it since it was read
# as expired (its activity is still at most `cutoff`): its place in the
# activity index, its info, and its record and runs of the LangGraph API.
# 1 if it did; the caller then takes it out of its owner's lists.
_FORGET_IF_IDLE_KEYS = ("activity", "info", "agent_record", "runs")
_FORGET_IF_IDLE_ARGS = ("thread_id", "cutoff")
_FORGET_IF_IDLE = """
local score = redis.call('ZSCORE', activity, thread_id)
if score and tonumber(score) <= tonumber(cutoff) then
  redis.call('DEL', info, agent_record, runs)
  return redis.call('ZREM', activity, thread_id)
end
return 0
"""


# Moves what Redis keeps of an owner's thread from its bare id (`old`, as
# threads were stored before their ids were private to their key) to its
# stored id (`new`), if the record or the info names `owner`: each key, unless
# the new place has one already, and its place in the indexes. Only on one
# Redis: a Redis Cluster came after ids were private to their key, so no
# thread on it has a bare id (and `old` and `new` are in two slots there).
_ADOPT_KEYS = ("old_record", "new_record", "old_runs", "new_runs", "old_info", "new_info",
               "owner_threads", "agent_threads", "activity")
_ADOPT_ARGS = ("owner", "old", "new")
_ADOPT = f"""
if redis.call('HGET', old_record, '{agent_threads.OWNER}') ~= owner
    and redis.call('HGET', old_info, '{OWNER}') ~= owner then
  return 0
end
local moves = {{{{old_record, new_record}}, {{old_runs, new_runs}}, {{old_info, new_info}}}}
for _, pair in ipairs(moves) do
  if redis.call('EXISTS', pair[1]) == 1 and redis.call('RENAMENX', pair[1], pair[2]) == 0 then
    redis.call('DEL', pair[1])
  end
end
for _, index in ipairs({{owner_threads, agent_threads, activity}}) do
  local score = redis.call('ZSCORE', index, old)
  if score then
    redis.call('ZADD', index, 'GT', score, new)
    redis.call('ZREM', index, old)
  end
end
return 1
"""


class BadCursor(ValueError):
    """A `before` cursor that no page of the list ever gave."""


@dataclass(frozen=True)
class ListedConversation:
    """A row of an owner's list of conversations."""

    thread_id: str
    title: str
    updated_at: datetime
    messages: int


def cursor_of(score: str, thread_id: str) -> str:
    return f"{score}:{thread_id}"


def parse_cursor(cursor: str) -> tuple[str, str]:
    """The (score, thread id) a cursor names; BadCursor if it is not one."""
    found = CURSOR.fullmatch(cursor)
    if found is None:
        raise BadCursor(cursor)
    # repr: Redis parses it back to the same double, whatever spelling came in.
    return repr(float(found[1])), found[2]


class Conversations:
    """Reads the lists and the activity index, and writes what the job
    scripts do not: deletes, expiry and rebuilds."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._page = Script(redis, _PAGE_KEYS, _PAGE_ARGS, _PAGE)
        self._forget_if_idle = Script(redis, _FORGET_IF_IDLE_KEYS, _FORGET_IF_IDLE_ARGS,
                                      _FORGET_IF_IDLE)
        self._adopt = Script(redis, _ADOPT_KEYS, _ADOPT_ARGS, _ADOPT)

    async def page(self, owner: str, limit: int,
                   before: str | None = None) -> tuple[list[ListedConversation], str | None]:
        """Up to `limit` of the owner's threads, newest activity first, older
        than the `before` cursor; and the cursor of the next page, if any."""
        score, after = parse_cursor(before) if before is not None else ("", "")
        flat = cast(list[str], await self._page(owner_threads=owner_threads_key(owner),
                                                limit=limit + 1, score=score, after=after))
        found = list(zip(flat[::2], flat[1::2], strict=True))
        more = len(found) > limit
        found = found[:limit]
        async with self.redis.pipeline(transaction=False) as pipe:
            for thread_id, _ in found:
                pipe.hmget(thread_info_key(thread_id), TITLE, MESSAGES)
            infos = await pipe.execute()
        threads = [ListedConversation(thread_id, title or "",
                                      datetime.fromtimestamp(float(at), UTC), int(count or 0))
                   for (thread_id, at), (title, count) in zip(found, infos, strict=True)]
        last = found[-1] if found else None
        return threads, cursor_of(last[1], last[0]) if more and last else None

    async def owner_of(self, thread_id: str) -> str:
        owner = await self.redis.hget(thread_info_key(thread_id), OWNER)
        return cast(str | None, owner) or ""

    async def owners(self, thread_id: str) -> tuple[str, str]:
        """The owner in the thread's info, and in its record of the LangGraph API."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(thread_info_key(thread_id), OWNER)
            pipe.hget(agent_thread_key(thread_id), agent_threads.OWNER)
            owner, agent_owner = await pipe.execute()
        return owner or "", agent_owner or ""

    async def forget(self, thread_id: str) -> None:
        """Takes a deleted thread out of cleanup's index and deletes what Redis
        keeps of it beside its jobs, then takes it out of its owner's lists."""
        owner, agent_owner = await self.owners(thread_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(thread_info_key(thread_id), agent_thread_key(thread_id),
                        thread_runs_key(thread_id))
            pipe.zrem(activity_key(thread_id), thread_id)
            await pipe.execute()
        await self._unlist(thread_id, owner, agent_owner)

    async def _unlist(self, thread_id: str, owner: str, agent_owner: str) -> None:
        """Takes a thread out of its owner's lists: a step of its own, as on a
        Redis Cluster they are in the owner's slot, not the thread's."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(owner_threads_key(owner), thread_id)
            pipe.zrem(agent_threads_key(agent_owner), thread_id)
            await pipe.execute()

    async def adopt(self, old: str, new: str, owner: str) -> bool:
        """Moves `owner`'s thread from its bare id `old` to its stored id `new`
        (shared.legacy_threads); False if Redis has nothing of it that is `owner`'s."""
        if hash_tagged():
            return False  # see _ADOPT
        return bool(await self._adopt(
            old_record=agent_thread_key(old), new_record=agent_thread_key(new),
            old_runs=thread_runs_key(old), new_runs=thread_runs_key(new),
            old_info=thread_info_key(old), new_info=thread_info_key(new),
            owner_threads=owner_threads_key(owner), agent_threads=agent_threads_key(owner),
            activity=activity_key(old), owner=owner, old=old, new=new))

    async def unsummarized(self, thread_ids: list[str]) -> list[str]:
        """Those of `thread_ids` the lists lack, or hold only in part."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for thread_id in thread_ids:
                pipe.hmget(thread_info_key(thread_id), OWNER, PARTIAL)
            infos = await pipe.execute()
        return [t for t, (owner, partial) in zip(thread_ids, infos, strict=True)
                if owner is None or partial is not None]

    async def record(self, thread_id: str, summary: Summary) -> None:
        """Puts a stored thread in its owner's list, as its transcript says."""
        # Not a transaction: the info is in the thread's slot, the list in the
        # owner's, and either alone is put right by the next scan.
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(thread_info_key(thread_id), mapping={
                OWNER: summary.owner, TITLE: summary.title, MESSAGES: summary.messages})
            pipe.hdel(thread_info_key(thread_id), PARTIAL)
            # GT: a turn that finished meanwhile has the later time.
            pipe.zadd(owner_threads_key(summary.owner), {thread_id: summary.written}, gt=True)
            await pipe.execute()

    async def forget_if_idle(self, thread_id: str, cutoff: float) -> bool:
        """Forgets an expired thread as `forget` does, unless a turn touched it
        since it was read as idle (its activity is past `cutoff` now)."""
        owner, agent_owner = await self.owners(thread_id)
        forgot = bool(await self._forget_if_idle(
            activity=activity_key(thread_id), info=thread_info_key(thread_id),
            agent_record=agent_thread_key(thread_id), runs=thread_runs_key(thread_id),
            thread_id=thread_id, cutoff=repr(cutoff)))
        if forgot:
            await self._unlist(thread_id, owner, agent_owner)
        return forgot

    # The activity index: thread id -> time of its last accepted or finished
    # turn (Redis's clock), in parts (one per bucket of threads on a Redis
    # Cluster, keys.py). The job scripts move it; cleanup reads it.

    @staticmethod
    def activity_parts() -> int:
        return len(activity_keys())

    async def idle_since(self, cutoff: float, skip: int, count: int, part: int = 0) -> list[str]:
        """Up to `count` threads of the index's `part` last active at or
        before `cutoff`, oldest first, past the first `skip` of them."""
        return cast(list[str], await self.redis.zrangebyscore(
            activity_keys()[part], "-inf", cutoff, start=skip, num=count))

    async def last_active(self, thread_id: str) -> float | None:
        return await self.redis.zscore(activity_key(thread_id), thread_id)

    async def drop_activity(self, thread_id: str) -> None:
        await self.redis.zrem(activity_key(thread_id), thread_id)

    async def unindexed(self, thread_ids: list[str]) -> list[str]:
        """Those of `thread_ids` the activity index lacks."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for thread_id in thread_ids:
                pipe.zscore(activity_key(thread_id), thread_id)
            scores = await pipe.execute()
        return [t for t, score in zip(thread_ids, scores, strict=True) if score is None]

    async def index_activity(self, seen: dict[str, float]) -> int:
        """Adds threads to the activity index at the times given; a thread
        already there keeps its time (a turn accepted meanwhile has the better
        one). How many it added."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for thread_id, at in seen.items():
                pipe.zadd(activity_key(thread_id), {thread_id: at}, nx=True)
            return sum(await pipe.execute())

    def cleanup_lease(self, seconds: float) -> Lock:
        """The lease of the one cleanup pass running at a time (not yet acquired;
        acquire() does not wait)."""
        return Lock(self.redis, CLEANUP_LOCK_KEY, timeout=seconds, blocking=False)

    # The marks of a complete index (see the module's docstring).

    async def complete(self) -> bool:
        """Whether the lists hold every stored thread (the last full scan's
        marks are there)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for mark in threads_indexed_keys():
                pipe.exists(mark)
            return all(await pipe.execute())

    async def ask_rebuild(self, seconds: int) -> bool:
        """True for the first to ask in `seconds`: that one asks for the scan."""
        return bool(await self.redis.set(THREADS_REBUILD_ASKED_KEY, "1", nx=True, ex=seconds))

    async def scan_due(self) -> bool:
        """Whether a full scan is due: its time has come, or the activity
        index or the lists are gone."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(RECONCILED_KEY)
            for key in activity_keys():
                pipe.zcard(key)
            for mark in threads_indexed_keys():
                pipe.exists(mark)
            marked, *counts = await pipe.execute()
        parts = len(activity_keys())
        return not (marked and sum(counts[:parts]) and all(counts[parts:]))

    async def scanned(self, next_in: int) -> None:
        """Marks a full scan done: the lists are complete, and the next scan
        is due in `next_in` seconds."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(RECONCILED_KEY, str(time.time()), ex=next_in)
            for mark in threads_indexed_keys():
                pipe.set(mark, str(time.time()))
            await pipe.execute()
