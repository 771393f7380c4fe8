"""Redis keys about threads, shared by the gateway and the workers.

Turns on one thread run one at a time, in the order the gateway accepted
them: each thread has an inbox (a list of job ids, appended on accept), and
whichever worker holds the thread's lease runs the job at its head. A thread
whose head job must wait (rate limit, retry backoff) is put on hold, so no
other worker jumps the queue meanwhile.
"""

from __future__ import annotations

# Sorted set: thread id -> time of its last accepted turn; read by cleanup.
ACTIVITY_KEY = "chat:threads:activity"


def thread_lock_key(thread_id: str) -> str:
    """The lease a worker holds while it runs a turn on the thread."""
    return f"chat:thread:{thread_id}:lock"


# Set: threads whose inbox is not empty; the recovery sweep looks only at these.
PENDING_KEY = "chat:threads:pending"


def inbox_key(thread_id: str) -> str:
    """List of the thread's unfinished job ids, oldest first."""
    return f"chat:thread:{thread_id}:inbox"


def hold_key(thread_id: str) -> str:
    """Present while the thread's head job waits for a scheduled retry."""
    return f"chat:thread:{thread_id}:hold"


# Lease held by the one cleanup pass running at a time.
CLEANUP_LOCK_KEY = "chat:cleanup:lock"

# Present until the next full S3 scan is due; Redis losing it triggers a scan.
RECONCILED_KEY = "chat:cleanup:reconciled"
