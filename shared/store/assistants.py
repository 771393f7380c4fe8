"""Assistants made through the LangGraph Server API: what Redis keeps of them, version by version.

A graph's default assistant is not stored: it is made from langgraph.json
(api.agent.assistants). An assistant a client makes is one hash (see
keys.assistant_key) holding every version and which one is current, and an
entry in its owner's index. It belongs to the key that made it; to any other
key it does not exist. Assistants are configuration, not conversation: they
do not expire. The current assistant and each version are kept as the API
writes them (JSON: api.agent.assistant_records); this module owns the keys,
the fields and the transactions that change them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from redis.asyncio import Redis
from redis.exceptions import WatchError

from shared.store.keys import assistant_key, owner_assistants_key

T = TypeVar("T")

OWNER, CURRENT, VERSIONS = "owner", "current", "versions"
# How often a write retries when another write changed the assistant meanwhile.
_WRITE_ATTEMPTS = 5


def _version_field(version: int) -> str:
    return f"v:{version}"


class Assistants:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def create(self, owner: str, assistant_id: str, created_at: float, current: str,
                     version: str) -> bool:
        """Stores a new assistant (`current`) at version 1 (`version`); False
        if the id is taken, by this key or another."""
        key = assistant_key(assistant_id)
        for _ in range(_WRITE_ATTEMPTS):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    if await pipe.hget(key, OWNER) is not None:
                        return False
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hset(key, mapping={OWNER: owner, CURRENT: current, VERSIONS: 1,
                                            _version_field(1): version})
                    pipe.zadd(owner_assistants_key(owner), {assistant_id: created_at})
                    await pipe.execute()
                    return True
                except WatchError:
                    continue
        return False  # others kept writing it: taken

    async def current(self, owner: str, assistant_id: str) -> str | None:
        """The assistant as it is now; None if there is none, or it is another key's."""
        holder, current = await self.redis.hmget(assistant_key(assistant_id), OWNER, CURRENT)
        return cast(str, current) if holder == owner and current is not None else None

    async def all_current(self, owner: str) -> list[str]:
        """Every assistant `owner` made, as it is now, oldest first."""
        ids = cast(list[str], await self.redis.zrange(owner_assistants_key(owner), 0, -1))
        async with self.redis.pipeline(transaction=False) as pipe:
            for assistant_id in ids:
                pipe.hmget(assistant_key(assistant_id), OWNER, CURRENT)
            found = await pipe.execute()
        return [current for holder, current in found if holder == owner and current is not None]

    async def add_version(self, owner: str, assistant_id: str,
                          make: Callable[[str, int], tuple[str, str]]) -> str | None:
        """Stores a new version: `make(current, its number)` gives the
        assistant then and the version. The assistant then; None if it is not
        `owner`'s."""
        key = assistant_key(assistant_id)

        async def write(pipe: Any, current: str) -> str:
            number = int(await pipe.hget(key, VERSIONS) or 0) + 1
            updated, version = make(current, number)
            pipe.multi()
            pipe.hset(key, mapping={CURRENT: updated, VERSIONS: number,
                                    _version_field(number): version})
            return updated

        return await self._change(owner, assistant_id, write)

    async def use_version(self, owner: str, assistant_id: str, number: int,
                          make: Callable[[str, str], str]) -> tuple[bool, str | None]:
        """Makes version `number` current, as `make(current, the version)`
        says it then is: (whether the version exists, the assistant then);
        the assistant is None if it is not `owner`'s."""
        key = assistant_key(assistant_id)
        exists = True

        async def write(pipe: Any, current: str) -> str:
            nonlocal exists
            version = await pipe.hget(key, _version_field(number))
            pipe.multi()
            if version is None:
                exists = False
                return current
            updated = make(current, version)
            pipe.hset(key, CURRENT, updated)
            return updated

        assistant = await self._change(owner, assistant_id, write)
        return exists, assistant

    async def versions(self, owner: str, assistant_id: str) -> list[str] | None:
        """Every version, in no order; None if the assistant is not `owner`'s."""
        fields = cast(dict[str, str], await self.redis.hgetall(assistant_key(assistant_id)))
        if fields.get(OWNER) != owner or CURRENT not in fields:
            return None
        return [raw for name, raw in fields.items() if name.startswith("v:")]

    async def delete(self, owner: str, assistant_id: str) -> bool:
        """Deletes the assistant and every version; False if it is not `owner`'s."""
        async def write(pipe: Any, _: str) -> bool:
            pipe.multi()
            pipe.delete(assistant_key(assistant_id))
            pipe.zrem(owner_assistants_key(owner), assistant_id)
            return True

        return bool(await self._change(owner, assistant_id, write))

    async def _change(self, owner: str, assistant_id: str,
                      write: Callable[[Any, str], Awaitable[T]]) -> T | None:
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
                    result = await write(pipe, cast(str, current))
                    await pipe.execute()
                    return result
                except WatchError:
                    continue
        raise WatchError(f"assistant {assistant_id} kept changing")
