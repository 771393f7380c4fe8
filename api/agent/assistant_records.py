"""The gateway's view of the assistants made through the API
(shared/store/assistants.py): the API's models in, the API's models out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from redis.asyncio import Redis

from api.agent.assistant_schemas import Assistant, AssistantVersion
from shared.store.assistants import Assistants


class Taken(Exception):
    """The assistant id is in use (by this key or another)."""


class AssistantRecords:
    def __init__(self, redis: Redis) -> None:
        self.store = Assistants(redis)

    async def create(self, owner: str, version: AssistantVersion,
                     keep_existing: bool) -> Assistant:
        """Stores a new assistant at version 1. If the id is taken, raises
        Taken, unless `keep_existing` and it is `owner`'s: then returns it."""
        assistant = Assistant(**version.model_dump(), updated_at=version.created_at)
        if await self.store.create(owner, version.assistant_id, version.created_at.timestamp(),
                                   assistant.model_dump_json(), version.model_dump_json()):
            return assistant
        existing = await self.get(owner, version.assistant_id)
        if keep_existing and existing is not None:
            return existing
        raise Taken(version.assistant_id)

    async def get(self, owner: str, assistant_id: str) -> Assistant | None:
        """The assistant's current version; None if there is none, or it is
        another key's."""
        current = await self.store.current(owner, assistant_id)
        return None if current is None else Assistant.model_validate_json(current)

    async def all_of(self, owner: str) -> list[Assistant]:
        """Every assistant `owner` made, oldest first."""
        return [Assistant.model_validate_json(raw) for raw in await self.store.all_current(owner)]

    async def add_version(self, owner: str, assistant_id: str,
                          change: Callable[[Assistant, int], AssistantVersion]) -> Assistant | None:
        """Stores `change(current, next version number)` as the assistant's
        new current version; None if the assistant is not `owner`'s."""
        def make(raw: str, number: int) -> tuple[str, str]:
            current = Assistant.model_validate_json(raw)
            version = change(current, number)
            updated = Assistant(**version.model_dump(exclude={"created_at"}),
                                created_at=current.created_at, updated_at=version.created_at)
            return updated.model_dump_json(), version.model_dump_json()

        updated = await self.store.add_version(owner, assistant_id, make)
        return None if updated is None else Assistant.model_validate_json(updated)

    async def use_version(self, owner: str, assistant_id: str,
                          number: int) -> tuple[bool, Assistant | None]:
        """Makes version `number` current: (whether the version exists, the
        assistant then); the assistant is None if it is not `owner`'s."""
        def make(raw: str, raw_version: str) -> str:
            current = Assistant.model_validate_json(raw)
            version = AssistantVersion.model_validate_json(raw_version)
            return Assistant(**version.model_dump(exclude={"created_at"}),
                             created_at=current.created_at,
                             updated_at=datetime.now(UTC)).model_dump_json()

        exists, assistant = await self.store.use_version(owner, assistant_id, number, make)
        return exists, None if assistant is None else Assistant.model_validate_json(assistant)

    async def versions(self, owner: str, assistant_id: str) -> list[AssistantVersion] | None:
        """Every version, newest first; None if the assistant is not `owner`'s."""
        found = await self.store.versions(owner, assistant_id)
        if found is None:
            return None
        return sorted((AssistantVersion.model_validate_json(raw) for raw in found),
                      key=lambda v: v.version, reverse=True)

    async def delete(self, owner: str, assistant_id: str) -> bool:
        """Deletes the assistant and every version; False if it is not `owner`'s."""
        return await self.store.delete(owner, assistant_id)
