"""Holding a turn's checkpoint writes until the turn is known to succeed.

LangGraph saves a checkpoint when a run ends, also when it raised or was
cancelled (with `durability="exit"` too), and that checkpoint holds the run's
input. A failed or cancelled turn must leave the thread's stored objects as
they were, byte for byte. So the graph's checkpointer is this wrapper: reads
go to the S3 saver, and writes made inside `deferred()` are held in memory;
`commit` carries them out once the turn has a reply and is not cancelled,
and otherwise they are dropped. Carried out together: however many steps
the run saved, each head it touched is written once, and all of it lands or
none does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from itertools import groupby
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    copy_checkpoint,
)

from shared.checkpoint import AsyncS3Saver, PutItem, WritesItem

# Each held put or writes, with the saver that would have stored it (a graph
# compiled with its own types allowed has a saver of its own).
HeldWrites = list[tuple[AsyncS3Saver, PutItem | WritesItem]]


@dataclass
class _Deferral:
    writes: HeldWrites
    metadata: dict[str, Any]


# The turn running in this context, if it defers its writes. Tasks LangGraph
# starts inside a run copy the context, so they see the same one.
_held: ContextVar[_Deferral | None] = ContextVar("held_checkpoint_writes", default=None)


class DeferredSaver(BaseCheckpointSaver[str]):
    """The S3 saver, with writes held back inside `deferred()`."""

    def __init__(self, saver: AsyncS3Saver) -> None:
        super().__init__(serde=saver.serde)
        self.saver = saver

    @contextmanager
    def deferred(self, metadata: dict[str, Any] | None = None) -> Iterator[HeldWrites]:
        """Holds the writes made in this context (and tasks started from it);
        the checkpoints it stores get `metadata` too (the thread's owner, which
        is stored with the thread but is not the run's to stream)."""
        held: HeldWrites = []
        token = _held.set(_Deferral(held, metadata or {}))
        try:
            yield held
        finally:
            _held.reset(token)

    @staticmethod
    async def commit(held: HeldWrites) -> None:
        """Carries out held writes, in the order they were made, one batch
        (one write of each head) per saver."""
        for saver, items in groupby(held, key=lambda entry: entry[0]):
            await saver.aput_batch([item for _, item in items])

    def with_allowlist(self, extra_allowlist: Collection[tuple[str, ...]]) -> DeferredSaver:
        # The inner saver serialises, so it is the one that needs the types.
        return DeferredSaver(self.saver.with_allowlist(extra_allowlist))  # type: ignore[arg-type]

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self.saver.aget_tuple(config)

    async def alist(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None,
                    limit: int | None = None) -> AsyncIterator[CheckpointTuple]:
        async for item in self.saver.alist(config, filter=filter, before=before, limit=limit):
            yield item

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint,
                   metadata: CheckpointMetadata, new_versions: ChannelVersions,
                   ) -> RunnableConfig:
        held = _held.get()
        if held is None:
            return await self.saver.aput(config, checkpoint, metadata, new_versions)
        stored = cast(CheckpointMetadata, {**metadata, **held.metadata})
        held.writes.append((self.saver, PutItem(config, copy_checkpoint(checkpoint), stored,
                                                dict(new_versions))))
        # What the saver would answer: the stored checkpoint's address.
        return {"configurable": {
            "thread_id": config["configurable"]["thread_id"],
            "checkpoint_ns": config["configurable"].get("checkpoint_ns", ""),
            "checkpoint_id": checkpoint["id"],
        }}

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                          task_id: str, task_path: str = "") -> None:
        held = _held.get()
        if held is None:
            await self.saver.aput_writes(config, writes, task_id, task_path)
        else:
            held.writes.append((self.saver, WritesItem(config, list(writes), task_id,
                                                       task_path)))

    async def adelete_thread(self, thread_id: str) -> None:
        await self.saver.adelete_thread(thread_id)

    def get_next_version(self, current: str | None, channel: None) -> str:
        return self.saver.get_next_version(current, channel)
