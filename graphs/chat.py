"""The built-in chat graph: one node that answers the thread's newest message.

A run's input is the user's message (`{"messages": [...]}`); LangGraph adds
it to the state and the node answers it in the thread's context, in the
run's language (`context.language`, else `config.configurable.language`,
else English). A run stores one checkpoint when it ends, so the message and
its reply enter the thread together; a run that fails stores neither (the
worker holds its writes until it has succeeded).

`messages` is a window: the node drops the oldest messages beyond
`window_messages`, so the checkpoint a turn loads and saves does not grow
with the conversation. The saver's transcript keeps every message.

A message whose id is already in the state replaces it rather than being
added (LangGraph's `add_messages`): a turn that ran again after its reply was
stored finds its reply there and adds nothing.
"""

from __future__ import annotations

import asyncio
import weakref
from datetime import UTC, datetime
from typing import Annotated, Any

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
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import get_runtime
from typing_extensions import TypedDict

from graphs.llm import build_llm, input_block_types
from shared.conversation import CREATED_AT
from shared.settings import get_settings

DEFAULT_LANGUAGE = "English"


class ChatState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


class ChatContext(TypedDict, total=False):
    language: str


def system_prompt(language: str) -> str:
    return (
        "You are a helpful assistant in a chat with a user. "
        f"Always answer in {language}, whatever language the user writes in."
    )


def language_of(config: RunnableConfig, context: ChatContext | None) -> str:
    """The reply language: the run's context, else its configurable, else English."""
    configurable = config.get("configurable", {})
    return str((context or {}).get("language") or configurable.get("language")
               or DEFAULT_LANGUAGE)


# The settings' chat model, one per event loop: its HTTP client is bound to
# the loop that made it (a worker process has one loop).
_models: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BaseChatModel] = (
    weakref.WeakKeyDictionary())


def settings_model() -> BaseChatModel:
    loop = asyncio.get_running_loop()
    model = _models.get(loop)
    if model is None:
        model = _models[loop] = build_llm(get_settings())
    return model


def chat_graph(llm: BaseChatModel | None = None, context_max_tokens: int | None = None,
               window_messages: int | None = None) -> StateGraph[Any, Any, Any, Any]:
    """The chat graph, not compiled. `llm`: the model (default: the settings'
    provider); `context_max_tokens`: what the model sees of the thread
    (default CONTEXT_MAX_TOKENS); `window_messages`: the messages kept in the
    state (None keeps all)."""
    if window_messages is not None and window_messages < 2:
        raise ValueError("window_messages must hold at least one turn (2 messages)")
    max_tokens = context_max_tokens or get_settings().CONTEXT_MAX_TOKENS

    async def answer(state: ChatState, config: RunnableConfig) -> dict[str, Any]:
        history = state.get("messages", [])
        if not history or not isinstance(history[-1], HumanMessage):
            return {}  # answered already (a turn that ran again), or nothing asked
        context = trim_messages(
            history,
            max_tokens=max_tokens,
            strategy="last",
            token_counter=count_tokens_approximately,
            start_on="human",
            end_on="human",
        )
        model = llm or settings_model()
        language = language_of(config, get_runtime(ChatContext).context)
        answer = await model.ainvoke([SystemMessage(system_prompt(language)), *context])
        reply = AIMessage(
            content=answer.text,
            id=answer.id,
            additional_kwargs={CREATED_AT: datetime.now(UTC).timestamp()},
            response_metadata=answer.response_metadata,
        )
        overflow = 0 if window_messages is None else len(history) + 1 - window_messages
        dropped = [RemoveMessage(id=m.id) for m in history[:max(overflow, 0)] if m.id]
        return {"messages": [*dropped, reply]}

    graph = StateGraph(ChatState, context_schema=ChatContext)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    return graph


def build_graph(llm: BaseChatModel, checkpointer: BaseCheckpointSaver[Any],
                context_max_tokens: int, window_messages: int | None = None,
                ) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The chat graph compiled with `checkpointer` (tests and benchmarks)."""
    return chat_graph(llm, context_max_tokens, window_messages).compile(
        checkpointer=checkpointer)


def content_block_types() -> frozenset[str] | None:
    """What the settings' model takes in a message (see shared.graphs): text,
    and images, audio or files if its profile says so; None (any block) if
    it has no profile."""
    return input_block_types(build_llm(get_settings()))


def _served() -> StateGraph[Any, Any, Any, Any]:
    return chat_graph(window_messages=get_settings().CONTEXT_WINDOW_MESSAGES)


# What langgraph.json names (`graphs.chat:graph`): the settings' model and window.
graph = _served()
