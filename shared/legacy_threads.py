"""Threads stored before a thread id was private to its key, moved on first read.

Until then a thread was stored and keyed under its bare id, whichever key
owned it (the owner was recorded with it). Now key X's thread T lives at
`X.T` (shared.ids.stored_thread_id). When X's read of `X.T` finds no
checkpoint, the thread may still be under `T`: if Redis names X the owner of
`T` (its info or its record; a full scan of S3 writes the info again if
Redis lost it), it is moved (its checkpoints copied, then what Redis keeps of
it, then the old objects deleted) and the read is made again. So a read that
finds nothing costs one Redis round trip more. A crash after the copy leaves
the rest to cleanup: `X.T` has its checkpoints, and the old objects are
deleted when idle, as any other; the copy merges into what is there, so
doing it twice loses nothing.

Threads made with auth off have no owner and stay where they are, as do
threads no key reads again: cleanup deletes those when idle, as any other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from redis.exceptions import LockError

from shared.checkpoint import AsyncS3Saver
from shared.conversation import stored_owner
from shared.store.conversations import Conversations
from shared.store.inbox import Inbox

log = structlog.get_logger("shared.legacy_threads")

T = TypeVar("T")

# How long a move may hold the thread: a copy of a long conversation.
MOVE_LEASE_SECONDS = 60


class LegacyThreads:
    """Moves a key's thread from its bare id to its stored id."""

    def __init__(self, saver: AsyncS3Saver, conversations: Conversations,
                 inbox: Inbox | None = None) -> None:
        self.saver = saver
        self.conversations = conversations
        # The gateway takes the thread's lease (if no turn holds it), so no
        # turn writes the thread while its old objects are copied in; a
        # worker holds it already while it runs a turn (inbox None).
        self.inbox = inbox

    async def read(self, stored: str, read: Callable[[], Awaitable[T | None]]) -> T | None:
        """`read()` of the thread `stored` names; made again if it found
        nothing and the thread was then moved from its bare id."""
        found = await read()
        if found is None and await self.adopt(stored):
            found = await read()
        return found

    async def adopt(self, stored: str) -> bool:
        """Moves the thread `stored` names from its bare id if it is there and
        is its owner's; True if anything moved (read the thread again then)."""
        owner, _, bare = stored.rpartition(".")
        # Cheap first: what the old code stored of an owner's thread, Redis
        # names the owner of (its info or its record; a full scan of S3
        # writes the info again if Redis lost it).
        if not owner or owner not in await self.conversations.owners(bare):
            return False
        if self.inbox is None:
            return await self._move(owner, bare, stored)
        lease = self.inbox.lease(stored, MOVE_LEASE_SECONDS)
        if not await lease.acquire():
            return False  # a turn holds it: that turn's worker moves it
        try:
            return await self._move(owner, bare, stored)
        finally:
            with contextlib.suppress(LockError):
                await lease.release()

    async def _move(self, owner: str, bare: str, stored: str) -> bool:
        metadata = await self.saver.aget_metadata(bare)
        if metadata is not None and stored_owner(metadata) != owner:
            metadata = None  # another key's (or no key's): not this one to move
        if metadata is not None:
            await self.saver.acopy_thread(bare, stored)
        moved = await self.conversations.adopt(bare, stored, owner)
        if metadata is not None:
            await self.saver.adelete_thread(bare)
        if metadata is not None or moved:
            log.info("thread_moved_to_stored_id", thread_id=stored)
        return metadata is not None or moved
