"""The one rule for identifiers that reach an S3 key, a Redis key or a log line."""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid

from shared.store.keys import bucket_of_thread

MAX_ID_LENGTH = 128
ID_PATTERN = rf"^[A-Za-z0-9_-]{{1,{MAX_ID_LENGTH}}}$"
_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_ID_LENGTH}}}")


def is_valid_id(value: object) -> bool:
    # fullmatch, not `$`: Python's `$` also accepts a trailing newline.
    return isinstance(value, str) and _ID.fullmatch(value) is not None


# A thread as it is stored and keyed: a client's thread id, prefixed with its
# owner's digest and a dot when auth is on. A client's id has no dot, so the
# two parts never blur.
STORED_THREAD = re.compile(rf"(?:[0-9a-f]{{32}}\.)?[A-Za-z0-9_-]{{1,{MAX_ID_LENGTH}}}")


def stored_thread_id(owner: str, thread_id: str) -> str:
    """Where `owner`'s thread `thread_id` is stored and keyed. A thread id a
    client chooses is its key's own: two keys using the same id have two
    threads, and neither can tell whether the other's exists. With auth off
    (owner "") it is the id itself."""
    return f"{owner}.{thread_id}" if owner else thread_id


def shown_thread_id(stored: str) -> str:
    """The id a client knows a stored thread by."""
    return stored.rpartition(".")[2]


def is_stored_thread_id(value: object) -> bool:
    return isinstance(value, str) and STORED_THREAD.fullmatch(value) is not None


def new_id() -> str:
    """A new UUID in its usual dashed form, as the LangGraph Server's ids are."""
    return str(uuid.uuid4())


def new_job_id(thread_id: str) -> str:
    """A new job's id: a UUID whose last two hex digits name its thread's
    bucket (shared.store.keys), so that on a Redis Cluster the job's keys,
    found from its id alone, sit in the slot of its thread's."""
    digits = uuid.uuid4().hex[:30] + f"{bucket_of_thread(thread_id):02x}"
    return str(uuid.UUID(digits))


def digest_id(value: str, key: bytes | None = None) -> str:
    """A valid id standing for a value that must itself never be stored or
    logged (an API key, a client's address): the first 128 bits of its
    HMAC-SHA256 under the server's `key` (OWNER_ID_SECRET), or without one of
    its plain SHA-256, which a guess of the value can be checked against."""
    if key is None:
        return hashlib.sha256(value.encode()).hexdigest()[:32]
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


# A UUID as an assistant's id is written: dashed, or its 32 hex digits.
UUID_PATTERN = (r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?"
                r"[0-9A-Fa-f]{12}")
_UUID = re.compile(UUID_PATTERN)


def is_uuid(value: str) -> bool:
    return _UUID.fullmatch(value) is not None


def assistant_id_pattern(graph_ids: list[str]) -> str:
    """What names an assistant: a UUID, or one of `graph_ids`."""
    return "^(" + "|".join([UUID_PATTERN, *(re.escape(g) for g in sorted(graph_ids))]) + ")$"
