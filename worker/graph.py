"""The chat graph: one node that answers the pending message in the thread's context.

The human message and the reply enter the conversation in one write, at the
end of the node. If the LLM call fails or the turn is cancelled, LangGraph
still saves a checkpoint on exit, but `messages` is untouched: the turn
stores neither message.

`messages` is a window: the node drops the oldest messages beyond
`window_messages`, so the checkpoint a turn loads and saves does not grow
with the conversation. The saver's transcript keeps every message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    trim_messages,
)
from langchain_core.messages.utils import count_tokens_approximately
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph

from shared.conversation import CREATED_AT, job_of, reply_id


class ChatState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    language: str
    pending: HumanMessage | None


def system_prompt(language: str) -> str:
    return (
        "You are a helpful assistant in a chat with a user. "
        f"Always answer in {language}, whatever language the user writes in."
    )


def build_graph(llm: BaseChatModel, checkpointer: BaseCheckpointSaver[Any],
                context_max_tokens: int,
                before_call: Callable[[], Awaitable[None]] | None = None,
                window_messages: int | None = None,
                ) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The compiled graph; `before_call` runs right before each LLM request
    (the global rate limit: it raises to stop the call); `window_messages`
    bounds the messages kept in the state (None keeps all)."""
    if window_messages is not None and window_messages < 2:
        raise ValueError("window_messages must hold at least one turn (2 messages)")

    async def answer(state: ChatState) -> dict[str, Any]:
        pending = state.get("pending")
        if pending is None:
            return {}
        history = state.get("messages", [])
        if any(m.id == pending.id for m in history):
            # The same job ran before and was stored (a redelivery): nothing to
            # add. Turns of a thread are applied in order, so a redelivered
            # job is the last one stored: its messages are in any window.
            return {"pending": None}
        context = trim_messages(
            [*history, pending],
            max_tokens=context_max_tokens,
            strategy="last",
            token_counter=count_tokens_approximately,
            start_on="human",
            end_on="human",
        )
        if before_call is not None:
            await before_call()
        answer = await llm.ainvoke([SystemMessage(system_prompt(state["language"])), *context])
        reply = AIMessage(
            content=answer.text,
            id=reply_id(job_of(pending)),
            additional_kwargs={CREATED_AT: datetime.now(UTC).timestamp()},
            response_metadata=answer.response_metadata,
        )
        overflow = 0 if window_messages is None else len(history) + 2 - window_messages
        dropped = [RemoveMessage(id=m.id) for m in history[:max(overflow, 0)] if m.id]
        return {"messages": [*dropped, pending, reply], "pending": None}

    graph = StateGraph(ChatState)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    return graph.compile(checkpointer=checkpointer)
