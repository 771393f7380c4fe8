"""The chat model, built from settings: Groq, any OpenAI-compatible server, or echo."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, ModelProfile
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from shared.settings import Settings

ECHO_LABEL = "[echo model: no LLM configured]"

# Content block types (LangChain's own and the OpenAI format's) by the flag
# of a model's profile that says whether it takes them.
_BLOCKS_BY_PROFILE_FLAG = {
    "text_inputs": ("text",),
    "image_inputs": ("image", "image_url"),
    "audio_inputs": ("audio", "input_audio"),
    "video_inputs": ("video",),
    "attachment": ("file", "text-plain"),
}


def input_block_types(llm: BaseChatModel) -> frozenset[str] | None:
    """The content block types the model takes, as its profile (LangChain's
    model profiles) says; None when it has no profile (any may go through)."""
    profile = llm.profile
    if not profile:
        return None
    return frozenset({"text"}).union(*(
        blocks for flag, blocks in _BLOCKS_BY_PROFILE_FLAG.items()
        if profile.get(flag)))


class EchoChatModel(BaseChatModel):
    """Offline and deterministic: repeats the last human message, labelled as such."""

    # It repeats text: an image or a file would be lost on it.
    profile: ModelProfile | None = ModelProfile(text_inputs=True, text_outputs=True)

    @property
    def _llm_type(self) -> str:
        return "echo"

    def _reply(self, messages: list[BaseMessage]) -> str:
        last = next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)
        return f"{ECHO_LABEL} {last.text if last else ''}".rstrip()

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        message = AIMessage(content=self._reply(messages))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        for word in self._words(messages):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word))

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        # LangChain reports each chunk to the callbacks (and so to LangGraph's
        # "messages" stream) by itself.
        for word in self._words(messages):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word))

    def _words(self, messages: list[BaseMessage]) -> list[str]:
        words = self._reply(messages).split(" ")
        return [w + " " for w in words[:-1]] + words[-1:]


def build_llm(settings: Settings) -> BaseChatModel:
    """The provider's chat model, with its own retries off: the queue owns retries."""
    provider = settings.llm_provider
    if provider == "groq":
        from langchain_groq import ChatGroq

        assert settings.GROQ_API_KEY is not None
        return ChatGroq(  # type: ignore[call-arg]
            model=settings.GROQ_MODEL,
            api_key=settings.GROQ_API_KEY,
            base_url=settings.GROQ_API_BASE,
            max_retries=0,
            timeout=settings.LLM_TIMEOUT_SECONDS,
            max_tokens=settings.LLM_MAX_TOKENS,
            streaming=True,
        )
    if provider == "openai":
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(
            model=settings.OPENAI_MODEL or "",
            base_url=settings.OPENAI_BASE_URL,
            # Local servers (Ollama, vLLM, llama.cpp) accept any key.
            api_key=settings.OPENAI_API_KEY or "not-needed",
            max_retries=0,
            timeout=settings.LLM_TIMEOUT_SECONDS,
            max_completion_tokens=settings.LLM_MAX_TOKENS,
            streaming=True,
        )
    return EchoChatModel()
