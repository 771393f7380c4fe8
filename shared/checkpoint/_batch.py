"""Several puts and writes of one run stored in one write of each head they touch.

A run that saves a checkpoint per step (LangGraph's `durability="async"`)
makes several `put`s and `put_writes` in a row. Stored one by one, each
would cost a conditional PUT of the head; applied in order to the head read
once, they cost one, and they land together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata

from ._layout import config_target, validate_id
from ._plans import load, load_to_put, write_retained
from ._requests import Locked, Plan
from ._state import State
from .base import BaseS3Saver, merge_writes


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
