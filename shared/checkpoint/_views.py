"""What one saver process knows about the threads it touched, and their locks."""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from typing import NamedTuple, TypeVar

_MAX_ENTRIES = 10_000  # bounded: a worker serves many threads over its life
_K = TypeVar("_K")
_V = TypeVar("_V")


class Head(NamedTuple):
    """A version of a (thread, namespace) head object."""

    checkpoint_id: str
    etag: str
    has_writes: bool


class Views:
    """Per (thread, namespace): the head version last read or written, and a lock.

    The remembered ETag is the writer's "view": the next head update must
    match it. Also remembers which checkpoints this saver stored writes for,
    since LangGraph may store a checkpoint's writes before the checkpoint.
    Forgetting (LRU eviction) only costs extra requests, never correctness of
    stored data.
    """

    def __init__(self) -> None:
        self._heads: OrderedDict[tuple[str, str], Head] = OrderedDict()
        self._written: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def lock(self, thread_id: str, ns: str) -> asyncio.Lock:
        """Return the lock serialising this process's calls on one (thread, namespace)."""
        lock = self._locks.get((thread_id, ns))
        if lock is None:
            lock = self._locks[(thread_id, ns)] = asyncio.Lock()
        return lock

    def head(self, thread_id: str, ns: str) -> Head | None:
        """Return the head version this process last saw, if remembered."""
        return self._heads.get((thread_id, ns))

    def remember(self, thread_id: str, ns: str, head: Head | None) -> None:
        """Record the head version just read or written (``None``: there is no head)."""
        if head is None:
            self._heads.pop((thread_id, ns), None)
        else:
            _touch(self._heads, (thread_id, ns), head)

    def note_writes(self, thread_id: str, ns: str, checkpoint_id: str) -> None:
        """Record that this process stored writes for a checkpoint."""
        _touch(self._written, (thread_id, ns, checkpoint_id), None)

    def has_writes(self, thread_id: str, ns: str, checkpoint_id: str) -> bool:
        """Whether writes are known to exist for a checkpoint."""
        seen = self._heads.get((thread_id, ns))
        if seen is not None and seen.checkpoint_id == checkpoint_id and seen.has_writes:
            return True
        return (thread_id, ns, checkpoint_id) in self._written

    def forget_thread(self, thread_id: str) -> None:
        """Drop everything known about a (deleted) thread."""
        for head_key in [k for k in self._heads if k[0] == thread_id]:
            del self._heads[head_key]
        for written_key in [k for k in self._written if k[0] == thread_id]:
            del self._written[written_key]


def _touch(entries: OrderedDict[_K, _V], key: _K, value: _V) -> None:
    entries[key] = value
    entries.move_to_end(key)
    while len(entries) > _MAX_ENTRIES:
        entries.popitem(last=False)
