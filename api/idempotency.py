"""Idempotency-Key: the same key and body within 24 h return the same job
(the claims are kept by shared/store/idempotency.py)."""

from __future__ import annotations

from redis.asyncio import Redis

from api.errors import Conflict
from shared.store import idempotency as claims
from shared.store.idempotency import release

__all__ = ["claim", "release"]


async def claim(redis: Redis, owner: str, idempotency_key: str, body: bytes,
                job_id: str) -> str:
    """The job that owns this key: `job_id` if the key is new, else the earlier one.

    Raises Conflict when the key was used with a different body.
    """
    earlier = await claims.claim(redis, owner, idempotency_key, body, job_id)
    if earlier is None:
        raise Conflict("Idempotency-Key was already used with a different request body")
    return earlier
