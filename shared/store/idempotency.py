"""Idempotency-Key claims: the same key and body within TTL_SECONDS name the same job.

One string per (owner, key): the body's digest and the job's id. The key is
hashed, so whatever the client sent never becomes part of a Redis key.
"""

from __future__ import annotations

import hashlib
from typing import cast

from redis.asyncio import Redis

from shared.store import keys

TTL_SECONDS = 24 * 3600


def _key(owner: str, idempotency_key: str) -> str:
    digest = hashlib.sha256(f"{owner}\0{idempotency_key}".encode()).hexdigest()
    return keys.idempotency_key(digest)


async def claim(redis: Redis, owner: str, idempotency_key: str, body: bytes,
                job_id: str) -> str | None:
    """The job that owns this key: `job_id` if the key is new, else the
    earlier one; None when the key was used with a different body."""
    body_hash = hashlib.sha256(body).hexdigest()
    key = _key(owner, idempotency_key)
    mine = f"{body_hash}:{job_id}"
    if await redis.set(key, mine, nx=True, ex=TTL_SECONDS):
        return job_id
    earlier = cast(str | None, await redis.get(key))
    if earlier is None:  # expired between the two calls: take it
        await redis.set(key, mine, ex=TTL_SECONDS)
        return job_id
    earlier_hash, _, earlier_job = earlier.partition(":")
    return earlier_job if earlier_hash == body_hash else None


async def release(redis: Redis, owner: str, idempotency_key: str) -> None:
    """Forgets a key whose job could not be queued, so a retry can queue it."""
    await redis.delete(_key(owner, idempotency_key))
