"""Every Redis key the gateway and the workers use, named in one place.

Turns on one thread run one at a time, in the order the gateway accepted
them: each thread has an inbox (a list of job ids, appended on accept), and
whichever worker holds the thread's lease runs the job at its head. A thread
whose head job must wait (rate limit, retry backoff) is put on hold, so no
other worker jumps the queue meanwhile.

Every id that reaches a key here has passed `shared.ids.is_valid_id`, or is a
digest: what a client sent never becomes part of a key unchecked. A thread is
named by its stored id (`shared.ids.stored_thread_id`: the client's id, behind
its owner's digest when auth is on), so two keys' threads of one id are two.

On a Redis Cluster (REDIS_CLUSTER), a script or a transaction may only name
keys of one hash slot, so keys there carry a hash tag saying which keys go
together (on one Redis they carry none, and keep the names they always had):
- a thread's bucket, `{t<n>}`: every key of the thread and of its jobs, and
  the bucket's share of the indexes of all threads (pending, activity). A
  thread's bucket is a hash of its stored id (one of BUCKETS), and a job's id
  ends with its thread's bucket (`shared.ids.new_job_id`), so a job's keys are
  found from its id alone. The sweeps read every bucket's index in turn.
- an owner, `{o<owner>}`: the owner's lists of threads, and its clients'
  unfinished jobs, checked together when a job is accepted.
- `{assistants}`: every assistant and the owners' lists of them;
  `{llm}`: the global LLM limit's window and pause.
"""

from __future__ import annotations

import functools
import zlib

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from shared.settings import get_settings

PREFIX = "chat:"
# How many buckets a Redis Cluster's threads are spread over (a job id's last
# two hex digits name one): enough to spread them over dozens of masters, and
# few enough that a gateway's event reader, which blocks on one connection
# per slot it waits in (api/events.py), holds at most this many.
BUCKETS = 64


@functools.cache
def hash_tagged() -> bool:
    """Whether keys carry hash tags: the state is on a Redis Cluster."""
    return get_settings().REDIS_CLUSTER


def _tagged(tag: str) -> str:
    return f"{PREFIX}{{{tag}}}:" if hash_tagged() else PREFIX


def bucket_of_thread(thread_id: str) -> int:
    """The bucket of a thread's keys on a Redis Cluster (see the module's docstring)."""
    return zlib.crc32(thread_id.encode()) % BUCKETS


def bucket_of_job(job_id: str) -> int:
    """The bucket a job's id names: its thread's (see shared.ids.new_job_id).
    An id that names none (not made here) gets bucket 0, where no job is."""
    try:
        return int(job_id[-2:], 16) % BUCKETS
    except ValueError:
        return 0


def _in_bucket(bucket: int) -> str:
    return _tagged(f"t{bucket}")


def job_key(job_id: str) -> str:
    """Hash: the job's record (jobs.py)."""
    return f"{_in_bucket(bucket_of_job(job_id))}job:{job_id}"


def events_key(job_id: str) -> str:
    """Stream: the job's events, read by waiting clients and SSE streams."""
    return f"{job_key(job_id)}:events"


def gateway_wake_key(process: str, slot: int | None = None) -> str:
    """Stream a gateway process appends to, to wake its own blocked event reader.
    On a Redis Cluster a read names keys of one hash slot only, so each reader
    has its own, hash-tagged into the `slot` it reads."""
    key = f"{PREFIX}gateway:{process}:wake"
    return key if slot is None else f"{key}:{{{slot_tags()[slot]}}}"


@functools.cache
def slot_tags() -> tuple[str, ...]:
    """For each of Redis Cluster's 16384 hash slots, a hash tag that falls in it:
    the first decimal number that does (about 170,000 tries, some 0.1 s, once)."""
    tags: dict[int, str] = {}
    number = 0
    while len(tags) < REDIS_CLUSTER_HASH_SLOTS:
        tags.setdefault(key_slot(str(number).encode()), str(number))
        number += 1
    return tuple(tags[slot] for slot in range(REDIS_CLUSTER_HASH_SLOTS))


# Pub/sub channel: the id of each running job asked to stop. Every worker
# process listens; the one running the job stops it.
CANCELS_CHANNEL = f"{PREFIX}cancels"


def _buckets() -> range:
    return range(BUCKETS if hash_tagged() else 1)


def activity_key(thread_id: str) -> str:
    """Sorted set: thread id -> time of its last accepted or finished turn
    (Redis's clock), for the threads of `thread_id`'s bucket; read by cleanup."""
    return f"{_in_bucket(bucket_of_thread(thread_id))}threads:activity"


def activity_keys() -> list[str]:
    """Every bucket's activity index (one on a single Redis)."""
    return [f"{_in_bucket(bucket)}threads:activity" for bucket in _buckets()]


def pending_key(thread_id: str) -> str:
    """Set: the threads of `thread_id`'s bucket whose inbox is not empty; the
    recovery sweep looks only at these."""
    return f"{_in_bucket(bucket_of_thread(thread_id))}threads:pending"


def pending_keys() -> list[str]:
    """Every bucket's pending set (one on a single Redis)."""
    return [f"{_in_bucket(bucket)}threads:pending" for bucket in _buckets()]


def _of_thread(thread_id: str, part: str) -> str:
    return f"{_in_bucket(bucket_of_thread(thread_id))}thread:{thread_id}:{part}"


def thread_lock_key(thread_id: str) -> str:
    """The lease a worker holds while it runs a turn on the thread."""
    return _of_thread(thread_id, "lock")


def inbox_key(thread_id: str) -> str:
    """List of the thread's unfinished job ids, oldest first."""
    return _of_thread(thread_id, "inbox")


def hold_key(thread_id: str) -> str:
    """Present while the thread's head job waits for a scheduled retry."""
    return _of_thread(thread_id, "hold")


def missed_key(thread_id: str) -> str:
    """Present when a nudge for the thread was turned away (its lease was held,
    or it was on hold): whoever next releases the lease passes the thread on."""
    return _of_thread(thread_id, "missed")


def kicked_key(thread_id: str) -> str:
    """Present for a while after the recovery sweep nudged the thread."""
    return _of_thread(thread_id, "kicked")


def agent_thread_key(thread_id: str) -> str:
    """Hash: a thread of the LangGraph Server API: created_at, updated_at, owner,
    and each metadata key as a field `m:<key>` holding its JSON value."""
    return _of_thread(thread_id, "agent")


def agent_threads_key(owner: str) -> str:
    """Sorted set: an owner's threads of the LangGraph Server API by last update
    (`owner` is a digest; "" with auth off)."""
    return f"{_of_owner(owner)}agent:threads:{owner or 'anyone'}"


def _of_owner(owner: str) -> str:
    return _tagged(f"o{owner or '-'}")


def assistant_key(assistant_id: str) -> str:
    """Hash: an assistant made through the API: `owner`, `current` (its
    latest version's JSON), `versions` (a counter) and `v:<n>` per version."""
    return f"{_tagged('assistants')}assistant:{assistant_id}"


def owner_assistants_key(owner: str) -> str:
    """Sorted set: an owner's assistants made through the API, by creation
    (`owner` is a digest; "" with auth off)."""
    return f"{_tagged('assistants')}owner:{owner or '-'}:assistants"


def thread_runs_key(thread_id: str) -> str:
    """Sorted set: the thread's runs of the LangGraph Server API (job ids) by creation."""
    return _of_thread(thread_id, "runs")


def thread_info_key(thread_id: str) -> str:
    """Hash: what the list of conversations shows of the thread (conversations.py)."""
    return _of_thread(thread_id, "info")


def owner_threads_key(owner: str) -> str:
    """Sorted set: an owner's thread ids by last activity (`owner` is a digest,
    or "" with auth off, which gets a name no digest can have)."""
    return f"{_of_owner(owner)}owner:{owner or '-'}:threads"


def threads_indexed_key(thread_id: str) -> str:
    """Present once a full S3 scan has put every stored thread of
    `thread_id`'s bucket into the owners' lists; Redis losing it means the
    lists may lack threads (conversations.py)."""
    return f"{_in_bucket(bucket_of_thread(thread_id))}threads:indexed"


def threads_indexed_keys() -> list[str]:
    """Every bucket's mark of a complete index (one on a single Redis)."""
    return [f"{_in_bucket(bucket)}threads:indexed" for bucket in _buckets()]

# Present for a while after a gateway asked for the lists to be rebuilt.
THREADS_REBUILD_ASKED_KEY = f"{PREFIX}threads:rebuild-asked"


def client_jobs_key(owner: str, client: str) -> str:
    """Set of a client's unfinished job ids (`client` is a digest), beside
    the lists of `owner`, the key it calls with."""
    return f"{_of_owner(owner)}client:{client}:jobs"


def idempotency_key(digest: str) -> str:
    """A job claimed by an Idempotency-Key (`digest` hashes the owner and the key)."""
    return f"{PREFIX}idem:{digest}"


# The moving window of the per-client request limit (the `limits` library's:
# one key per client) lives under this prefix.
CLIENT_LIMIT_PREFIX = f"{PREFIX}clientlimit"


def llm_limit_prefix() -> str:
    """Where the global LLM limit's window lives (limits.FairWindow's keys)."""
    return f"{_tagged('llm')}ratelimit"


def llm_pause_key() -> str:
    """The time until which a provider's 429 pauses every LLM call."""
    return f"{_tagged('llm')}llm:paused_until"

# Lease held by the worker running the recovery sweep, so one runs at a time.
RECOVERY_LOCK_KEY = f"{PREFIX}recovery:lock"

# Lease held by the one cleanup pass running at a time.
CLEANUP_LOCK_KEY = f"{PREFIX}cleanup:lock"

# Present until the next full S3 scan is due; Redis losing it triggers a scan.
RECONCILED_KEY = f"{PREFIX}cleanup:reconciled"
