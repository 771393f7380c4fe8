"""Deleting a conversation, for DELETE /chat/history and DELETE /threads alike."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import structlog
from redis.exceptions import LockError

from api.agent.records import ThreadRecords
from api.deps import Services
from api.errors import Unavailable
from shared.conversation import stored_owner

log = structlog.get_logger("api.conversations")

# How long a delete may hold the thread: S3 deletes of a long conversation.
DELETE_LEASE_SECONDS = 60


async def stored_metadata(services: Services, stored: str) -> Mapping[str, Any] | None:
    """The metadata of the thread's latest checkpoint, or None; a thread still
    under its bare id is moved first (shared.legacy_threads)."""
    return await services.legacy.read(stored, lambda: services.saver.aget_metadata(stored))


async def exists_for(services: Services, stored: str, owner: str) -> bool:
    """True if the thread is stored, or has turns on their way, and is `owner`'s
    (which its stored id says; what is stored with it must agree)."""
    saved = await stored_metadata(services, stored)
    if saved is not None:
        return not owner or stored_owner(saved) == owner
    return await services.inbox.busy(stored)


async def erase(services: Services, stored: str) -> None:
    """Deletes the conversation for good; its queued and running jobs end
    cancelled. Unavailable (503), with nothing deleted, if a turn being stored
    holds the thread past the wait."""
    jobs = services.jobs
    doomed = await jobs.cancel_thread(stored)
    # A running turn stops within a second of its cancel and releases the
    # thread's lease without storing anything; one already storing its turn
    # finishes first. Holding the lease keeps any other turn from starting
    # until the objects are gone.
    lease = services.inbox.lease(stored, DELETE_LEASE_SECONDS,
                                 wait=2 * services.settings.THREAD_LEASE_SECONDS)
    if not await lease.acquire():
        log.warning("thread_delete_busy")
        raise Unavailable("the conversation is busy storing a turn: nothing was deleted, "
                          "try again", headers={"Retry-After": "5"})
    try:
        doomed += await jobs.cancel_thread(stored)  # those accepted while we waited
        ran = await ThreadRecords(services.redis).run_ids(stored)
        await services.saver.adelete_thread(stored)
        await services.conversations.forget(stored)
        # A job whose commit had begun could not be cancelled (its write may
        # have landed). It is gone with the conversation now; left queued, its
        # retry would store the turn again and bring the conversation back.
        for job_id in dict.fromkeys(doomed):
            job = await jobs.get(job_id)
            if job is not None:
                await jobs.cancel(job)
        # Gone from Redis too: no job shows the conversation's words for long.
        await jobs.forget_words([*ran, *doomed])
    finally:
        with contextlib.suppress(LockError):
            await lease.release()
    # Messages sent since start a new conversation; their nudges found the
    # lease taken, so the thread is handed on here.
    head = await services.inbox.first(stored)
    if head is not None:
        await services.publisher.send(head)
    log.info("thread_deleted")
