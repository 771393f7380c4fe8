"""A thread's state as the LangGraph Server API shows it, read from its checkpoints.

Reads go through the saver's public LangGraph interface (`aget_tuple`,
`alist`), so they show whatever the saver keeps. The state's values are the
conversation's messages, each in LangChain's message format; the channels
the graph uses within a turn (the pending message, the turn's language) and
the owner recorded in each checkpoint's metadata are not shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from langchain_core.messages import BaseMessage
from langgraph.checkpoint.base import CheckpointTuple

from api.agent.schemas import CheckpointRef, ThreadState
from shared.checkpoint import AsyncS3Saver
from shared.conversation import human_id, reply_id
from shared.threads import OWNER_FIELD


async def latest(saver: AsyncS3Saver, thread_id: str) -> CheckpointTuple | None:
    """The thread's latest checkpoint (its window of recent messages), or None."""
    config: dict[str, Any] = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    return await saver.aget_tuple(config)  # type: ignore[arg-type]


def values_of(saved: CheckpointTuple | None) -> dict[str, Any]:
    """The state's values: {"messages": [...]}, or {} for a thread with no turn yet."""
    if saved is None:
        return {}
    messages: list[BaseMessage] = saved.checkpoint["channel_values"].get("messages", [])
    return {"messages": [m.model_dump() for m in messages]}


def turn_messages(saved: CheckpointTuple | None, job_id: str) -> list[dict[str, Any]]:
    """The message and the reply a job added to the thread."""
    if saved is None:
        return []
    ids = {human_id(job_id), reply_id(job_id)}
    return [m.model_dump() for m in saved.checkpoint["channel_values"].get("messages", [])
            if m.id in ids]


def saved_at(saved: CheckpointTuple) -> datetime:
    return datetime.fromisoformat(saved.checkpoint["ts"]).astimezone(UTC)


def _ref(config: Mapping[str, Any] | None) -> CheckpointRef | None:
    if config is None:
        return None
    configurable = config["configurable"]
    return CheckpointRef(thread_id=configurable["thread_id"],
                         checkpoint_ns=configurable.get("checkpoint_ns", ""),
                         checkpoint_id=configurable.get("checkpoint_id"))


def thread_state(thread_id: str, saved: CheckpointTuple | None) -> ThreadState:
    """The state at a checkpoint; an empty one for a thread with none yet.

    A turn runs the graph to its end before anything is stored, so a stored
    state never has a next node to run, a task or an interrupt.
    """
    if saved is None:
        return ThreadState(values={}, next=[], tasks=[], metadata={}, created_at=None,
                           checkpoint=CheckpointRef(thread_id=thread_id, checkpoint_ns="",
                                                    checkpoint_id=None),
                           parent_checkpoint=None, interrupts=[])
    checkpoint = _ref(saved.config)
    assert checkpoint is not None
    return ThreadState(
        values=values_of(saved), next=[], tasks=[], interrupts=[],
        checkpoint=checkpoint, parent_checkpoint=_ref(saved.parent_config),
        metadata={k: v for k, v in saved.metadata.items() if k != OWNER_FIELD},
        created_at=saved.checkpoint["ts"])
