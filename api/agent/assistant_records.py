"""Assistants made through the API: what Redis keeps of them, version by version.

A graph's default assistant is not stored: it is made from langgraph.json
(api.agent.assistants). An assistant a client makes is one hash (see
shared.store.keys.assistant_key) holding every version and which one is current,
and an entry in its owner's index. It belongs to the key that made it; to
any other key it does not exist. Assistants are configuration, not
conversation: they do not expire.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import WatchError

from api.agent.assistant_schemas import Assistant, AssistantVersion
from shared.store.keys import assistant_key, owner_assistants_key

OWNER = "owner"
CURRENT = "current"
VERSIONS = "versions"
# How often a write retries when another write changed the assistant meanwhile.
_WRITE_ATTEMPTS = 5


def _version_field(version: int) -> str:
    return f"v:{version}"


class Taken(Exception):
    """The assistant id is in use (by this key or another)."""


class AssistantRecords:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def create(self, owner: str, version: AssistantVersion,
                     keep_existing: bool) -> Assistant:
        """Stores a new assistant at version 1. If the id is taken, raises
        Taken, unless `keep_existing` and it is `owner`'s: then returns it."""
        key = assistant_key(version.assistant_id)
        assistant = Assistant(**version.model_dump(), updated_at=version.created_at)
        for _ in range(_WRITE_ATTEMPTS):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    holder = await pipe.hget(key, OWNER)
                    if holder is not None:
                        break
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hset(key, mapping={
                        OWNER: owner, CURRENT: assistant.model_dump_json(), VERSIONS: 1,
                        _version_field(1): version.model_dump_json()})
                    pipe.zadd(owner_assistants_key(owner),
                              {version.assistant_id: version.created_at.timestamp()})
                    await pipe.execute()
                    return assistant
                except WatchError:
                    continue
        existing = await self.get(owner, version.assistant_id)
        if keep_existing and existing is not None:
            return existing
        raise Taken(version.assistant_id)

    async def get(self, owner: str, assistant_id: str) -> Assistant | None:
        """The assistant's current version; None if there is none, or it is
        another key's."""
        holder, current = await self.redis.hmget(assistant_key(assistant_id), OWNER, CURRENT)
        if holder != owner or current is None:
            return None
        return Assistant.model_validate_json(current)

    async def all_of(self, owner: str) -> list[Assistant]:
        """Every assistant `owner` made, oldest first."""
        ids = cast(list[str], await self.redis.zrange(owner_assistants_key(owner), 0, -1))
        async with self.redis.pipeline(transaction=False) as pipe:
            for assistant_id in ids:
                pipe.hmget(assistant_key(assistant_id), OWNER, CURRENT)
            found = await pipe.execute()
        return [Assistant.model_validate_json(current) for holder, current in found
                if holder == owner and current is not None]

    async def add_version(self, owner: str, assistant_id: str,
                          change: Callable[[Assistant, int], AssistantVersion]) -> Assistant | None:
        """Stores `change(current, next version number)` as the assistant's
        new current version; None if the assistant is not `owner`'s."""
        async def write(pipe: Any, current: Assistant) -> Assistant:
            number = int(await pipe.hget(assistant_key(assistant_id), VERSIONS) or 0) + 1
            version = change(current, number)
            updated = Assistant(**version.model_dump(exclude={"created_at"}),
                                created_at=current.created_at, updated_at=version.created_at)
            pipe.multi()
            pipe.hset(assistant_key(assistant_id), mapping={
                CURRENT: updated.model_dump_json(), VERSIONS: number,
                _version_field(number): version.model_dump_json()})
            return updated

        updated: Assistant | None = await self._change(owner, assistant_id, write)
        return updated

    async def use_version(self, owner: str, assistant_id: str,
                          number: int) -> tuple[bool, Assistant | None]:
        """Makes version `number` current: (whether the version exists, the
        assistant then); the assistant is None if it is not `owner`'s."""
        exists = True

        async def write(pipe: Any, current: Assistant) -> Assistant:
            nonlocal exists
            raw = await pipe.hget(assistant_key(assistant_id), _version_field(number))
            if raw is None:
                exists = False
                pipe.multi()
                return current
            version = AssistantVersion.model_validate_json(raw)
            updated = Assistant(**version.model_dump(exclude={"created_at"}),
                                created_at=current.created_at, updated_at=datetime.now(UTC))
            pipe.multi()
            pipe.hset(assistant_key(assistant_id), CURRENT, updated.model_dump_json())
            return updated

        assistant = await self._change(owner, assistant_id, write)
        return exists, assistant

    async def versions(self, owner: str, assistant_id: str) -> list[AssistantVersion] | None:
        """Every version, newest first; None if the assistant is not `owner`'s."""
        fields = cast(dict[str, str], await self.redis.hgetall(assistant_key(assistant_id)))
        if fields.get(OWNER) != owner or CURRENT not in fields:
            return None
        found = [AssistantVersion.model_validate_json(raw) for name, raw in fields.items()
                 if name.startswith("v:")]
        return sorted(found, key=lambda v: v.version, reverse=True)

    async def delete(self, owner: str, assistant_id: str) -> bool:
        """Deletes the assistant and every version; False if it is not `owner`'s."""
        async def write(pipe: Any, current: Assistant) -> bool:
            pipe.multi()
            pipe.delete(assistant_key(assistant_id))
            pipe.zrem(owner_assistants_key(owner), assistant_id)
            return True

        return bool(await self._change(owner, assistant_id, write))

    async def _change(self, owner: str, assistant_id: str,
                      write: Callable[[Any, Assistant], Awaitable[Any]]) -> Any:
        """Runs `write` on the current assistant in a transaction that fails,
        and is retried, if another write changed the assistant meanwhile."""
        key = assistant_key(assistant_id)
        for _ in range(_WRITE_ATTEMPTS):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    holder, current = await pipe.hmget(key, OWNER, CURRENT)
                    if holder != owner or current is None:
                        return None
                    result = await write(pipe, Assistant.model_validate_json(current))
                    await pipe.execute()
                    return result
                except WatchError:
                    continue
        raise WatchError(f"assistant {assistant_id} kept changing")
