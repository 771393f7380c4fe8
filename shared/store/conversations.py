"""Each owner's list of conversations, kept in Redis so listing costs no S3 LIST.

Per owner, a sorted set of thread ids by last activity (Redis's clock); per
thread, a hash with its title (its first message, cut short), its message
count and its owner. The job scripts in shared/store/jobs.py write both, in the
same step that accepts a job (the thread comes first, titled by the message
if it is new) and that ends one (a stored turn adds its two messages; a new
thread whose every turn failed or was cancelled leaves the list).

Redis can lose them. A full scan of S3 (cleanup's reconcile, worker/cleanup.py)
then summarises each stored thread from its transcript (shared.conversation.summarize), and leaves
THREADS_INDEXED_KEY behind; until that mark exists, a thread the lists do
not know is marked `partial` (unless the gateway has just made its id), as
its stored messages are not counted here, and the scan summarises it again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from redis.asyncio import Redis

from shared.conversation import Summary
from shared.ids import MAX_ID_LENGTH
from shared.store.keys import (
    ACTIVITY_KEY,
    agent_thread_key,
    agent_threads_key,
    owner_threads_key,
    thread_info_key,
    thread_runs_key,
)

# The fields of a thread's info hash.
OWNER, TITLE, MESSAGES, PARTIAL = "owner", "title", "messages", "partial"
# A time as Redis prints a score (%.17g of a positive time: no exponent), and a thread id.
CURSOR_PATTERN = rf"^([0-9]{{1,17}}(?:\.[0-9]{{1,17}})?):([A-Za-z0-9_-]{{1,{MAX_ID_LENGTH}}})$"
CURSOR = re.compile(CURSOR_PATTERN.removeprefix("^").removesuffix("$"))

# One page, newest first, after the cursor (score, thread id): ties at the
# cursor's score come in reverse order of id, as ZRANGE REV gives them.
# KEYS owner's threads; ARGV limit + 1, cursor score or "", cursor thread id.
_PAGE = """
local want = tonumber(ARGV[1])
local out = {}
local top = '+inf'
if ARGV[2] ~= '' then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[1], ARGV[2], ARGV[2], 'BYSCORE', 'REV')) do
    if #out >= want * 2 then break end
    if id < ARGV[3] then
      table.insert(out, id)
      table.insert(out, ARGV[2])
    end
  end
  top = '(' .. ARGV[2]
end
local left = want - #out / 2
if left > 0 then
  local rest = redis.call('ZRANGE', KEYS[1], top, '-inf', 'BYSCORE', 'REV',
                          'LIMIT', 0, left, 'WITHSCORES')
  for _, item in ipairs(rest) do table.insert(out, item) end
end
return out
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
    """Reads the lists, and writes what the job scripts do not: deletes and rebuilds."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._page = redis.register_script(_PAGE)

    async def page(self, owner: str, limit: int,
                   before: str | None = None) -> tuple[list[ListedConversation], str | None]:
        """Up to `limit` of the owner's threads, newest activity first, older
        than the `before` cursor; and the cursor of the next page, if any."""
        score, after = parse_cursor(before) if before is not None else ("", "")
        flat = cast(list[str], await self._page(keys=[owner_threads_key(owner)],
                                                args=[limit + 1, score, after]))
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

    async def forget(self, thread_id: str) -> None:
        """Takes a deleted thread out of its owner's lists and of cleanup's
        index, and deletes what Redis keeps of it beside its jobs."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(thread_info_key(thread_id), OWNER)
            pipe.hget(agent_thread_key(thread_id), OWNER)
            owner, agent_owner = await pipe.execute()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(owner_threads_key(owner or ""), thread_id)
            pipe.zrem(agent_threads_key(agent_owner or ""), thread_id)
            pipe.delete(thread_info_key(thread_id), agent_thread_key(thread_id),
                        thread_runs_key(thread_id))
            pipe.zrem(ACTIVITY_KEY, thread_id)
            await pipe.execute()

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
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(thread_info_key(thread_id), mapping={
                OWNER: summary.owner, TITLE: summary.title, MESSAGES: summary.messages})
            pipe.hdel(thread_info_key(thread_id), PARTIAL)
            # GT: a turn that finished meanwhile has the later time.
            pipe.zadd(owner_threads_key(summary.owner), {thread_id: summary.written}, gt=True)
            await pipe.execute()
