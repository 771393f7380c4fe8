"""Redis keys about threads, shared by the gateway and the workers."""

from __future__ import annotations

# Sorted set: thread id -> time of its last accepted turn; read by cleanup.
ACTIVITY_KEY = "chat:threads:activity"


def thread_lock_key(thread_id: str) -> str:
    """The lease a worker holds while it runs a turn on the thread."""
    return f"chat:thread:{thread_id}:lock"
