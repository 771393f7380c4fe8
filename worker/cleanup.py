"""Deleting conversations idle longer than SESSION_TTL_SECONDS (run by Beat).

Expired threads are found through the activity index (a sorted set the turns
update), so a pass costs in proportion to what expired, not to the bucket.
A thread is deleted only under its turn lock, and only if no turn touched it
since the index was read.
"""

from __future__ import annotations

import time
from typing import cast

import structlog
from redis.asyncio.lock import Lock

from shared.threads import ACTIVITY_KEY, thread_lock_key
from worker.runtime import Resources

log = structlog.get_logger("worker.cleanup")

BATCH = 500


async def cleanup_idle_threads(res: Resources) -> int:
    """Deletes every thread idle past the TTL; returns how many were deleted."""
    cutoff = time.time() - res.settings.SESSION_TTL_SECONDS
    deleted = 0
    while True:
        expired = cast(list[tuple[str, float]], await res.redis.zrangebyscore(
            ACTIVITY_KEY, "-inf", cutoff, start=0, num=BATCH, withscores=True))
        if not expired:
            break
        for thread_id, seen in expired:
            deleted += await _delete_if_idle(res, thread_id, seen)
        if len(expired) < BATCH:
            break
    log.info("cleanup_done", deleted=deleted)
    return deleted


async def _delete_if_idle(res: Resources, thread_id: str, seen: float) -> int:
    lock = Lock(res.redis, thread_lock_key(thread_id), timeout=60, blocking=False)
    if not await lock.acquire():
        return 0  # a turn is running on it: it is active
    try:
        if await res.redis.zscore(ACTIVITY_KEY, thread_id) != seen:
            return 0  # a turn finished since we looked
        await res.saver.adelete_thread(thread_id)
        await res.redis.zrem(ACTIVITY_KEY, thread_id)
        log.info("thread_deleted", thread_id=thread_id)
        return 1
    finally:
        await lock.release()
