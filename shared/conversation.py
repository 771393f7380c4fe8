"""How a turn's messages are stored in the thread, known to both sides.

Each message carries the time it was accepted or written, as a UNIX time in
`additional_kwargs`, so history can show it without a second lookup. A
thread's checkpoints name its owner in their metadata (OWNER_FIELD), so
ownership survives Redis; a stored thread's Summary is what the list of
conversations (shared.store.conversations) is rebuilt from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from shared.checkpoint import AsyncS3Saver

CREATED_AT = "created_at"
# The checkpoint metadata's key for the digest of the API key that owns the thread.
OWNER_FIELD = "owner"
TITLE_CHARS = 80


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


def title_of(message: str) -> str:
    """The message on one line, cut to TITLE_CHARS characters."""
    line = " ".join(message.split())
    return line if len(line) <= TITLE_CHARS else line[:TITLE_CHARS - 1] + "…"


def stored_owner(metadata: Mapping[str, Any]) -> str:
    """The owner recorded in a checkpoint's metadata (the worker writes it); "" for none."""
    owner = metadata.get(OWNER_FIELD, "")
    return owner if isinstance(owner, str) else ""


@dataclass(frozen=True)
class Summary:
    """What the list of conversations shows of a stored thread."""

    owner: str
    title: str
    messages: int
    written: float  # epoch seconds of its last stored message


async def summarize(saver: AsyncS3Saver, thread_id: str) -> Summary | None:
    """A stored thread's summary, from its transcript: the newest message and
    the first (two reads at most, whatever its length); None if not stored."""
    newest = await saver.aget_transcript(thread_id, limit=1)
    if newest is None:
        return None
    first = newest if newest.start == 0 else await saver.aget_transcript(
        thread_id, before=1, limit=1)
    shown = [e.value for e in (first.entries if first else []) if role_of(e.value) is not None]
    written = (datetime.fromisoformat(newest.entries[-1].ts).timestamp() if newest.entries
               else datetime.now(UTC).timestamp())
    return Summary(stored_owner(newest.metadata),
                   title_of(str(shown[0].content)) if shown else "",
                   newest.start + len(newest.entries), written)
