"""The checkpointer graphs run with: a client's thread id outside, its stored id inside.

A thread id a client chooses is its key's own, so a thread is stored and
keyed under `shared.ids.stored_thread_id(owner, thread_id)`. A graph still
sees the id its client knows, in `configurable.thread_id` (graphs written for
the LangGraph Server read it there), and so does every config LangGraph
returns (state, history, stream events). The stored id travels beside it in
the configurable under STORED_THREAD_KEY, which LangGraph passes on to the
checkpointer and, being a dunder key, copies into no checkpoint's metadata.
This wrapper puts the stored id in each config it hands the saver it wraps,
and the client's id back in each config it returns (what is shown of a
config leaves the stored id out: `hidden_config`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)

from shared.ids import shown_thread_id

STORED_THREAD_KEY = "__stored_thread_id__"


def thread_config(stored: str, checkpoint_id: str | None = None,
                  **configurable: Any) -> RunnableConfig:
    """The config of a stored thread (at a checkpoint, if named) as a graph
    is given it: the client's id, with the stored one beside it."""
    values: dict[str, Any] = {**configurable, "thread_id": shown_thread_id(stored),
                              STORED_THREAD_KEY: stored}
    if checkpoint_id is not None:
        values["checkpoint_id"] = checkpoint_id
    return cast(RunnableConfig, {"configurable": values})


def _inward(config: RunnableConfig) -> RunnableConfig:
    configurable = dict(config.get("configurable") or {})
    stored = configurable.pop(STORED_THREAD_KEY, None)
    if stored is None:
        return config
    return cast(RunnableConfig, {**config, "configurable": {**configurable, "thread_id": stored}})


def _outward(config: RunnableConfig | None, asked: RunnableConfig) -> RunnableConfig | None:
    """`config` (from the inner saver) naming the thread as `asked` did. The
    stored id stays in it: LangGraph hands configs it got back to the
    checkpointer again (`aupdate_state` writes to the config `aput` returned)."""
    asked_for = (asked.get("configurable") or {})
    if config is None or STORED_THREAD_KEY not in asked_for:
        return config
    configurable = {**(config.get("configurable") or {}), "thread_id": asked_for["thread_id"],
                    STORED_THREAD_KEY: asked_for[STORED_THREAD_KEY]}
    return cast(RunnableConfig, {**config, "configurable": configurable})


def _tuple_outward(found: CheckpointTuple, asked: RunnableConfig) -> CheckpointTuple:
    return found._replace(config=cast(RunnableConfig, _outward(found.config, asked)),
                          parent_config=_outward(found.parent_config, asked))


def hidden_config(config: Any) -> Any:
    """A config as a client is shown it: without the stored thread id."""
    if not isinstance(config, dict) or not isinstance(config.get("configurable"), dict):
        return config
    if STORED_THREAD_KEY not in config["configurable"]:
        return config
    configurable = {k: v for k, v in config["configurable"].items() if k != STORED_THREAD_KEY}
    return {**config, "configurable": configurable}


class ScopedSaver(BaseCheckpointSaver[str]):
    """`saver`, addressed by the stored thread id a config carries beside the
    client's. A thread found without a checkpoint may be one stored before its
    id was private to its key: `on_missing` moves it (shared.legacy_threads),
    and then it is read again."""

    def __init__(self, saver: BaseCheckpointSaver[str],
                 on_missing: Callable[[str], Awaitable[bool]] | None = None) -> None:
        super().__init__(serde=saver.serde)
        self.saver = saver
        self.on_missing = on_missing

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        inner = _inward(config)
        found = await self.saver.aget_tuple(inner)
        configurable = config.get("configurable") or {}
        stored = configurable.get(STORED_THREAD_KEY)
        # The root namespace's miss only: a move brings every namespace.
        if (found is None and isinstance(stored, str) and self.on_missing is not None
                and not configurable.get("checkpoint_ns") and await self.on_missing(stored)):
            found = await self.saver.aget_tuple(inner)
        return None if found is None else _tuple_outward(found, config)

    async def alist(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None,
                    limit: int | None = None) -> AsyncIterator[CheckpointTuple]:
        inner = None if config is None else _inward(config)
        async for found in self.saver.alist(
                inner, filter=filter, before=None if before is None else _inward(before),
                limit=limit):
            yield found if config is None else _tuple_outward(found, config)

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint,
                   metadata: CheckpointMetadata, new_versions: ChannelVersions,
                   ) -> RunnableConfig:
        stored = await self.saver.aput(_inward(config), checkpoint, metadata, new_versions)
        return cast(RunnableConfig, _outward(stored, config))

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                          task_id: str, task_path: str = "") -> None:
        await self.saver.aput_writes(_inward(config), writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self.saver.adelete_thread(thread_id)  # a stored id: no config to read it from

    def get_next_version(self, current: str | None, channel: None) -> str:
        return self.saver.get_next_version(current, channel)

    def with_allowlist(self, extra_allowlist: Collection[tuple[str, ...]]) -> ScopedSaver:
        return ScopedSaver(self.saver.with_allowlist(extra_allowlist), self.on_missing)
