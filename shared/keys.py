"""Every Redis key the gateway and the workers use, named in one place.

Turns on one thread run one at a time, in the order the gateway accepted
them: each thread has an inbox (a list of job ids, appended on accept), and
whichever worker holds the thread's lease runs the job at its head. A thread
whose head job must wait (rate limit, retry backoff) is put on hold, so no
other worker jumps the queue meanwhile.

Every id that reaches a key here has passed `shared.ids.is_valid_id`, or is a
digest: what a client sent never becomes part of a key unchecked.
"""

from __future__ import annotations

PREFIX = "chat:"


def job_key(job_id: str) -> str:
    """Hash: the job's record (shared/jobs.py)."""
    return f"{PREFIX}job:{job_id}"


def events_key(job_id: str) -> str:
    """Stream: the job's events, read by waiting clients and SSE streams."""
    return f"{PREFIX}job:{job_id}:events"


def gateway_wake_key(process: str) -> str:
    """Stream a gateway process appends to, to wake its own blocked event reader."""
    return f"{PREFIX}gateway:{process}:wake"


# Sorted set: thread id -> time of its last accepted or finished turn (Redis's
# clock); read by cleanup.
ACTIVITY_KEY = f"{PREFIX}threads:activity"

# Set: threads whose inbox is not empty; the recovery sweep looks only at these.
PENDING_KEY = f"{PREFIX}threads:pending"


def thread_lock_key(thread_id: str) -> str:
    """The lease a worker holds while it runs a turn on the thread."""
    return f"{PREFIX}thread:{thread_id}:lock"


def inbox_key(thread_id: str) -> str:
    """List of the thread's unfinished job ids, oldest first."""
    return f"{PREFIX}thread:{thread_id}:inbox"


def hold_key(thread_id: str) -> str:
    """Present while the thread's head job waits for a scheduled retry."""
    return f"{PREFIX}thread:{thread_id}:hold"


def kicked_key(thread_id: str) -> str:
    """Present for a while after the recovery sweep nudged the thread."""
    return f"{PREFIX}thread:{thread_id}:kicked"


def owner_key(thread_id: str) -> str:
    """The digest of the API key that owns the thread (a cache of its storage)."""
    return f"{PREFIX}thread:{thread_id}:owner"


def client_jobs_key(client: str) -> str:
    """Set of a client's unfinished job ids (`client` is a digest)."""
    return f"{PREFIX}client:{client}:jobs"


def idempotency_key(digest: str) -> str:
    """A job claimed by an Idempotency-Key (`digest` hashes the owner and the key)."""
    return f"{PREFIX}idem:{digest}"


# Moving windows of the `limits` library live under these prefixes.
LLM_LIMIT_PREFIX = f"{PREFIX}ratelimit"
CLIENT_LIMIT_PREFIX = f"{PREFIX}clientlimit"

# The time until which a provider's 429 pauses every LLM call.
LLM_PAUSE_KEY = f"{PREFIX}llm:paused_until"

# Lease held by the worker running the recovery sweep, so one runs at a time.
RECOVERY_LOCK_KEY = f"{PREFIX}recovery:lock"

# Lease held by the one cleanup pass running at a time.
CLEANUP_LOCK_KEY = f"{PREFIX}cleanup:lock"

# Present until the next full S3 scan is due; Redis losing it triggers a scan.
RECONCILED_KEY = f"{PREFIX}cleanup:reconciled"
