"""A thread's state as the LangGraph Server API shows it, read from its checkpoints.

The thread's graph (named in its checkpoints' metadata) reads its own state
through the S3 saver (`aget_state`, `aget_state_history`), so next nodes,
tasks and interrupts are LangGraph's own account; by way of
shared.scoped_saver, so its configs name the thread as its client does. A
thread whose graph is not declared (any more) shows its stored values only. The owner recorded in
each checkpoint's metadata is not shown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any, cast

from langgraph.checkpoint.base import CheckpointTuple
from langgraph.types import StateSnapshot

from api.agent.schemas import CheckpointRef, ThreadState
from api.deps import Services
from shared import wire
from shared.conversation import OWNER_FIELD
from shared.graphs import Graph
from shared.scoped_saver import thread_config


async def latest(services: Services, stored: str,
                 checkpoint_id: str | None = None) -> CheckpointTuple | None:
    """The thread's latest checkpoint (or the one named), or None; its
    configs name the thread as its client does."""
    return await services.checkpointer.aget_tuple(thread_config(stored, checkpoint_id))


def graph_of(services: Services, saved: CheckpointTuple | None) -> Graph | None:
    """The thread's graph, compiled with the saver; None if it is not declared."""
    if saved is None:
        return None
    entry = services.graphs.find(str(saved.metadata.get("graph_id") or
                                     services.settings.CHAT_GRAPH_ID))
    if entry is None:
        return None
    return entry.compiled(services.checkpointer, saved.config)


def values_of(saved: CheckpointTuple | None) -> dict[str, Any]:
    """The stored channel values as JSON ({} for a thread with no run yet)."""
    if saved is None:
        return {}
    values = {k: v for k, v in saved.checkpoint["channel_values"].items()
              if not k.startswith("__") and not k.startswith("branch:")}
    return cast(dict[str, Any], wire.jsonable(values))


async def snapshot(services: Services, stored: str,
                   checkpoint_id: str | None = None) -> StateSnapshot | None:
    """The graph's state at the thread's latest checkpoint (or the one named)."""
    saved = await latest(services, stored, checkpoint_id)
    graph = graph_of(services, saved)
    if graph is None:
        return None
    return await graph.aget_state(thread_config(stored, checkpoint_id))


def saved_at(saved: CheckpointTuple) -> datetime:
    return datetime.fromisoformat(saved.checkpoint["ts"]).astimezone(UTC)


def ref_of(config: Mapping[str, Any] | None) -> CheckpointRef | None:
    if config is None:
        return None
    configurable = config["configurable"]
    return CheckpointRef(thread_id=configurable["thread_id"],
                         checkpoint_ns=configurable.get("checkpoint_ns", ""),
                         checkpoint_id=configurable.get("checkpoint_id"))


def _shown_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (metadata or {}).items() if k != OWNER_FIELD}


def empty_state() -> ThreadState:
    """The state of a thread no run has touched: no checkpoint, no metadata."""
    return ThreadState(values={}, next=[], tasks=[], metadata=None, created_at=None,
                       checkpoint=None, parent_checkpoint=None, interrupts=[])


def _interrupts(found: Any) -> list[dict[str, Any]]:
    """Interrupts as a thread's state shows them: their id and value, and the
    schema of the answer when the graph gave one."""
    return [{"id": i.id, "value": wire.jsonable(i.value),
             **({"response_schema": i.response_schema} if i.response_schema is not None
                else {})} for i in found]


def from_snapshot(shot: StateSnapshot) -> ThreadState:
    """The API's view of a LangGraph state snapshot."""
    checkpoint = ref_of(shot.config)
    assert checkpoint is not None
    tasks = [{"id": t.id, "name": t.name, "path": list(t.path),
              "error": t.error if isinstance(t.error, str | None) else repr(t.error),
              "interrupts": _interrupts(t.interrupts),
              "checkpoint": None, "state": None, "result": wire.jsonable(t.result)}
             for t in shot.tasks]
    values = shot.values if isinstance(shot.values, dict) else {"value": shot.values}
    return ThreadState(values=wire.jsonable(values), next=list(shot.next), tasks=tasks,
                       interrupts=_interrupts(shot.interrupts),
                       checkpoint=checkpoint, parent_checkpoint=ref_of(shot.parent_config),
                       metadata=_shown_metadata(shot.metadata), created_at=shot.created_at)


def from_saved(saved: CheckpointTuple | None) -> ThreadState:
    """The stored values only, for a thread whose graph is not declared."""
    if saved is None:
        return empty_state()
    checkpoint = ref_of(saved.config)
    assert checkpoint is not None
    return ThreadState(
        values=values_of(saved), next=[], tasks=[], interrupts=[],
        checkpoint=checkpoint, parent_checkpoint=ref_of(saved.parent_config),
        metadata=_shown_metadata(saved.metadata), created_at=saved.checkpoint["ts"])


async def thread_state(services: Services, saved: CheckpointTuple | None) -> ThreadState:
    """The state at `saved` (the thread's latest checkpoint, or another)."""
    graph = graph_of(services, saved)
    if graph is None or saved is None:
        return from_saved(saved)
    shot = await graph.aget_state(saved.config)
    return from_snapshot(shot)


async def final_values(services: Services, stored: str) -> dict[str, Any]:
    """The thread's state values once a run has ended, as a waited run shows
    them: with the interrupts it stopped at under `__interrupt__`, as the
    `values` stream shows them."""
    saved = await latest(services, stored)
    graph = graph_of(services, saved)
    if graph is None or saved is None:
        return from_saved(saved).values
    shot = await graph.aget_state(saved.config)
    values = from_snapshot(shot).values
    if shot.interrupts:
        return {**values, "__interrupt__": wire.jsonable(list(shot.interrupts))}
    return values


async def history(services: Services, stored: str, saved: CheckpointTuple | None,
                  checkpoint_id: str | None, before_id: str | None,
                  metadata: dict[str, Any] | None, limit: int) -> AsyncIterator[ThreadState]:
    """The states at the checkpoints the store keeps, newest first."""
    config = thread_config(stored, checkpoint_id)
    before = thread_config(stored, before_id) if before_id is not None else None
    graph = graph_of(services, saved)
    if graph is None:
        async for item in services.checkpointer.alist(config, filter=metadata, before=before,
                                                      limit=limit):
            yield from_saved(item)
        return
    async for shot in graph.aget_state_history(config, filter=metadata, before=before,
                                               limit=limit):
        yield from_snapshot(shot)


def interrupts_of(state: ThreadState) -> dict[str, list[Any]]:
    """The thread's pending interrupts by task, as a thread shows them."""
    return {t["id"]: t["interrupts"] for t in state.tasks if t["interrupts"]}
