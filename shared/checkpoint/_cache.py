"""What one saver remembers of the namespaces it read or wrote.

The remembered head ETag is the saver's *view*: its next write must match it,
so a saver that read a thread before another writer moved it gets
``CheckpointConflict`` instead of forking the conversation. The remembered
content lets a write follow a read without reading again, and lets a read of
an unchanged head cost one GET answered 304. Forgetting (LRU eviction) only
costs requests, never correctness.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import NamedTuple

from ._state import State

DEFAULT_CACHE_BYTES = 32 * 2**20
_MAX_ABSENT = 10_000


class Loaded(NamedTuple):
    """One namespace as last read or written: its head's ETag, size and content.

    ``legacy`` marks a head of the previous format: the next write replaces it
    and deletes the objects it named.
    """

    etag: str
    size: int
    state: State
    legacy: bool = False


class StateCache:
    """Thread-safe LRU of ``Loaded`` namespaces, bounded by their stored size.

    Args:
        max_bytes: Bound on the summed object sizes kept (0 keeps nothing).
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str], Loaded] = OrderedDict()
        # Namespaces last seen missing: a write right after may create without a GET.
        self._absent: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._bytes = 0
        self._mutex = threading.Lock()

    def get(self, thread_id: str, checkpoint_ns: str) -> Loaded | None:
        """Return what is remembered of a namespace, if anything."""
        with self._mutex:
            found = self._entries.get((thread_id, checkpoint_ns))
            if found is not None:
                self._entries.move_to_end((thread_id, checkpoint_ns))
            return found

    def is_absent(self, thread_id: str, checkpoint_ns: str) -> bool:
        """Whether the namespace was missing when this saver last looked."""
        with self._mutex:
            return (thread_id, checkpoint_ns) in self._absent

    def mark_absent(self, thread_id: str, checkpoint_ns: str) -> None:
        """Remember that a namespace has no head."""
        with self._mutex:
            self._drop((thread_id, checkpoint_ns))
            self._absent[(thread_id, checkpoint_ns)] = None
            while len(self._absent) > _MAX_ABSENT:
                self._absent.popitem(last=False)

    def put(self, thread_id: str, checkpoint_ns: str, loaded: Loaded) -> None:
        """Remember a namespace as just read or written."""
        with self._mutex:
            self._drop((thread_id, checkpoint_ns))
            size = loaded.size
            if size > self.max_bytes:
                return
            self._entries[(thread_id, checkpoint_ns)] = loaded
            self._bytes += size
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))

    def forget(self, thread_id: str, checkpoint_ns: str | None = None) -> None:
        """Drop one namespace, or every namespace of a thread."""
        with self._mutex:
            for key in [k for k in (*self._entries, *self._absent) if k[0] == thread_id]:
                if checkpoint_ns is None or key[1] == checkpoint_ns:
                    self._drop(key)

    def _drop(self, key: tuple[str, str]) -> None:
        self._absent.pop(key, None)
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.size
