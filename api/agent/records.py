"""The gateway's view of the LangGraph Server API's thread records
(shared/store/agent_threads.py): a client's write, checked against its
limits, with their refusals as HTTP errors."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Depends

from api.agent.schemas import METADATA_LIMITS, METADATA_MAX_BYTES, METADATA_MAX_KEYS
from api.deps import ServicesDep
from api.errors import TooLarge, TooManyRequests
from shared.store.agent_threads import NO_ROOM, TOO_LARGE, WROTE, AgentThreads


class ThreadRecords(AgentThreads):
    async def write(self, thread_id: str, owner: str,
                    mode: Literal["create", "update", "ensure"],
                    metadata: dict[str, Any] | None = None, max_threads: int = 0) -> bool:
        """Writes a client's change to the record as `mode` says; True if it
        wrote. TooLarge (413) if the merged metadata would pass its limits,
        TooManyRequests (429) if it makes a thread and `owner` (with auth on)
        has `max_threads` already."""
        wrote = await self.upsert(thread_id, owner, mode, metadata, METADATA_MAX_KEYS,
                                  METADATA_MAX_BYTES, max_threads)
        if wrote == TOO_LARGE:
            raise TooLarge(f"{METADATA_LIMITS}, merged with the thread's")
        if wrote == NO_ROOM:
            raise TooManyRequests("you have as many threads as one key may "
                                  "(MAX_THREADS_PER_CLIENT): delete some, or wait for idle "
                                  "ones to expire")
        return wrote == WROTE


def get_records(services: ServicesDep) -> ThreadRecords:
    return ThreadRecords(services.redis)


RecordsDep = Annotated[ThreadRecords, Depends(get_records)]
