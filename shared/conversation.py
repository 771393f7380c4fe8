"""How a turn's messages are stored in the thread, known to both sides.

Each message carries the time it was accepted or written, as a UNIX time in
`additional_kwargs`, so history can show it without a second lookup.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

CREATED_AT = "created_at"


def human_message(job_id: str, text: str, created_at: float) -> HumanMessage:
    """A chat turn's message (tests and benchmarks run the chat graph with
    it); its id is the job's, so a re-run replaces rather than appends."""
    return HumanMessage(content=text, id=human_id(job_id),
                        additional_kwargs={CREATED_AT: created_at})


def human_id(job_id: str) -> str:
    return f"{job_id}-human"


def message_time(message: BaseMessage) -> datetime:
    return datetime.fromtimestamp(float(message.additional_kwargs.get(CREATED_AT, 0.0)), UTC)


def role_of(message: BaseMessage) -> Literal["human", "assistant"] | None:
    """`human` or `assistant` for conversation messages, None for anything else."""
    if isinstance(message, HumanMessage):
        return "human"
    if isinstance(message, AIMessage):
        return "assistant"
    return None
