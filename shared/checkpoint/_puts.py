"""Writing checkpoints: `put`, `put_writes`, and a run's puts and writes in one batch.

Each builds on the head the saver holds (or reads it), changes it in memory
and writes it back with one conditional PUT (`_plans.write`). A run that
saves a checkpoint per step (LangGraph's `durability="async"`) makes several
`put`s and `put_writes` in a row: `put_batch` applies them in order to the
head read once, so they cost one PUT of each head they touch and land
together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata

from ._cache import Loaded
from ._layout import checkpoint_config, config_target, validate_id
from ._plans import load, moved, rewrite, write
from ._requests import Locked, Plan
from ._state import State, retain
from .base import BaseS3Saver, merge_writes
from .errors import CheckpointConflict


def put(
    saver: BaseS3Saver,
    config: RunnableConfig,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    new_versions: ChannelVersions,
) -> Plan[RunnableConfig]:
    """Store a checkpoint; it becomes the latest if its id is the highest."""
    thread_id, ns, parent_id = config_target(config)
    checkpoint_id = validate_id(checkpoint["id"], "checkpoint_id")
    record = saver._dump_record(config, checkpoint, metadata, parent_id)

    def locked() -> Plan[None]:
        loaded = yield from load_to_put(saver, thread_id, ns, parent_id, checkpoint_id)
        state = loaded.state.copy() if loaded else State()
        saver._store_values(state, record, checkpoint["channel_values"], str(checkpoint["ts"]))
        state.records[checkpoint_id] = record
        yield from write_retained(saver, thread_id, ns, loaded, state)

    yield Locked(thread_id, ns, locked())
    return checkpoint_config(thread_id, ns, checkpoint_id)


def load_to_put(saver: BaseS3Saver, thread_id: str, ns: str, parent_id: str | None,
                checkpoint_id: str) -> Plan[Loaded | None]:
    """The head a put builds on: the one this saver holds, or a read of it."""
    loaded = saver.cache.get(thread_id, ns)
    if loaded is None and not saver.cache.is_absent(thread_id, ns):
        loaded = yield from load(saver, thread_id, ns)
        latest = loaded.state.latest_id() if loaded else None
        # A writer that never saw the thread may only build on its latest.
        if latest is not None and latest not in (parent_id, checkpoint_id):
            raise CheckpointConflict(moved(thread_id, ns))
    return loaded


def write_retained(saver: BaseS3Saver, thread_id: str, ns: str, loaded: Loaded | None,
                   state: State) -> Plan[None]:
    """Writes the head with the checkpoints `keep_last` retains."""
    if saver.keep_last is not None:
        state = retain(state, saver.keep_last)
    try:
        yield from write(saver, thread_id, ns, loaded, state)
    except CheckpointConflict as exc:
        saver.cache.forget(thread_id, ns)
        raise CheckpointConflict(moved(thread_id, ns)) from exc


def put_writes(
    saver: BaseS3Saver,
    config: RunnableConfig,
    writes: Sequence[tuple[str, Any]],
    task_id: str,
    task_path: str,
) -> Plan[None]:
    """Store a task's writes against a checkpoint (which may not be stored yet)."""
    thread_id, ns, checkpoint_id = config_target(config)
    if checkpoint_id is None:
        raise ValueError("put_writes needs config['configurable']['checkpoint_id']")
    new = saver._dump_writes(writes, task_id, task_path)

    def add(state: State) -> State | None:
        merged = merge_writes(state.writes.get(checkpoint_id, ()), new)
        if merged is None:
            return None
        changed = state.copy()
        changed.writes[checkpoint_id] = tuple(merged)
        return changed

    # Writes to a checkpoint do not depend on the head: on a conflict, merge again.
    yield Locked(thread_id, ns, rewrite(saver, thread_id, ns, add, cached=True))



@dataclass(frozen=True)
class PutItem:
    """One `put`: the arguments of `aput`."""

    config: RunnableConfig
    checkpoint: Checkpoint
    metadata: CheckpointMetadata
    new_versions: ChannelVersions


@dataclass(frozen=True)
class WritesItem:
    """One `put_writes`: the arguments of `aput_writes`."""

    config: RunnableConfig
    writes: Sequence[tuple[str, Any]]
    task_id: str
    task_path: str = ""


Item = PutItem | WritesItem


def put_batch(saver: BaseS3Saver, items: Sequence[Item]) -> Plan[None]:
    """Store `items` in order, one head write per (thread, namespace) they touch."""
    groups: dict[tuple[str, str], list[Item]] = {}
    for item in items:
        thread_id, ns, _ = config_target(item.config)
        groups.setdefault((thread_id, ns), []).append(item)
    for (thread_id, ns), group in groups.items():
        yield Locked(thread_id, ns, _store(saver, thread_id, ns, group))


def _store(saver: BaseS3Saver, thread_id: str, ns: str, items: list[Item]) -> Plan[None]:
    # The run's first checkpoint is the one that builds on what is stored.
    first = next((i for i in items if isinstance(i, PutItem)), None)
    if first is None:
        loaded = saver.cache.get(thread_id, ns)
        if loaded is None and not saver.cache.is_absent(thread_id, ns):
            loaded = yield from load(saver, thread_id, ns)
    else:
        _, _, parent_id = config_target(first.config)
        loaded = yield from load_to_put(saver, thread_id, ns, parent_id,
                                        first.checkpoint["id"])
    state = loaded.state.copy() if loaded else State()
    for item in items:
        _apply(saver, state, item)
    yield from write_retained(saver, thread_id, ns, loaded, state)


def _apply(saver: BaseS3Saver, state: State, item: Item) -> None:
    if isinstance(item, PutItem):
        _, _, parent_id = config_target(item.config)
        checkpoint_id = validate_id(item.checkpoint["id"], "checkpoint_id")
        record = saver._dump_record(item.config, item.checkpoint, item.metadata, parent_id)
        saver._store_values(state, record, item.checkpoint["channel_values"],
                            str(item.checkpoint["ts"]))
        state.records[checkpoint_id] = record
        return
    _, _, target = config_target(item.config)
    if target is None:
        raise ValueError("put_writes needs config['configurable']['checkpoint_id']")
    new = saver._dump_writes(item.writes, item.task_id, item.task_path)
    merged = merge_writes(state.writes.get(target, ()), new)
    if merged is not None:
        state.writes[target] = tuple(merged)
