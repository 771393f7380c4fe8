"""The Groq fake must satisfy the real groq SDK and ChatGroq, or the tests built on it lie."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import groq
import httpx
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_groq import ChatGroq

from tests.fakes.fake_groq_server import split_tokens
from tests.servers import Server, free_port

MODEL = "llama-3.3-70b-versatile"


@pytest.fixture(scope="module")
def fake_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("fake_groq") / "fake_groq.log"
    server = Server("fake-groq", [sys.executable, "-m", "tests.fakes.fake_groq_server",
                                  "--port", str(port)], port, log).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
async def control(fake_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the test endpoints; each test starts with no faults and no calls."""
    async with httpx.AsyncClient(base_url=fake_url, timeout=10) as client:
        await client.post("/_control/reset")
        await client.delete("/_calls")
        yield client
        await client.post("/_control/reset")


class Chats:
    """Builds real ChatGroq clients on one httpx client, so the test can close its sockets."""

    def __init__(self, base_url: str, http: httpx.AsyncClient) -> None:
        self.base_url = base_url
        self.http = http

    def __call__(self, streaming: bool = False) -> ChatGroq:
        return ChatGroq(model=MODEL, api_key="x", base_url=self.base_url,  # type: ignore[arg-type]
                        max_retries=0, streaming=streaming, http_async_client=self.http)


@pytest.fixture
async def chat(fake_url: str) -> AsyncIterator[Chats]:
    # ChatGroq never closes the client it builds; with filterwarnings=error the leaked
    # sockets would fail whichever test the garbage collector happens to run in.
    async with httpx.AsyncClient(timeout=10) as http:
        yield Chats(fake_url, http)


async def calls(control: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await control.get("/_calls")
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()
    return result


def test_split_tokens_joins_back() -> None:
    assert split_tokens("echo: hi there") == ["echo: ", "hi ", "there"]
    for text in ["", "one", "  lead", "a  b\nc ", "w0 w1 w2"]:
        assert "".join(split_tokens(text)) == text


async def test_health(control: httpx.AsyncClient) -> None:
    assert (await control.get("/health")).status_code == 200


async def test_ainvoke_echoes_last_user_message(
    chat: Chats, control: httpx.AsyncClient
) -> None:
    reply = await chat().ainvoke([SystemMessage("be brief"), HumanMessage("hi")])
    assert reply.content == "echo: hi"
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["output_tokens"] == 2

    [call] = await calls(control)
    assert call["model"] == MODEL
    assert call["stream"] is False
    assert call["messages"][-1] == {"role": "user", "content": "hi"}
    assert call["request"]["messages"][0]["role"] == "system"
    assert call["status"] == 200
    assert abs(call["received_at"] - time.time()) < 30
    assert call["disconnected_at"] is None


async def test_base_url_from_groq_api_base_env(
    fake_url: str, chat: Chats, control: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The app configures ChatGroq through GROQ_API_BASE, so that path must reach the fake too.
    monkeypatch.setenv("GROQ_API_BASE", fake_url)
    llm = ChatGroq(model=MODEL, api_key="x", max_retries=0,  # type: ignore[arg-type]
                   http_async_client=chat.http)
    assert (await llm.ainvoke("via env")).content == "echo: via env"


async def test_astream_yields_word_chunks(chat: Chats, control: httpx.AsyncClient) -> None:
    await control.post("/_control", json={"token_delay": 0.01})
    pieces = [c.content async for c in chat(streaming=True).astream("one two three")]
    text_pieces = [p for p in pieces if p]
    assert "".join(str(p) for p in text_pieces) == "echo: one two three"
    assert len(text_pieces) == 4

    [call] = await calls(control)
    assert call["stream"] is True
    assert call["tokens_sent"] == 4
    assert call["disconnected_at"] is None
    assert call["finished_at"] - call["received_at"] >= 0.03


async def test_ainvoke_with_streaming_true_gathers_the_stream(
    chat: Chats, control: httpx.AsyncClient
) -> None:
    reply = await chat(streaming=True).ainvoke("hello")
    assert reply.content == "echo: hello"
    assert (await calls(control))[0]["stream"] is True


async def test_reply_tokens_replaces_the_echo(chat: Chats, control: httpx.AsyncClient) -> None:
    await control.post("/_control", json={"reply_tokens": 5})
    reply = await chat().ainvoke("ignored")
    assert reply.content == "w0 w1 w2 w3 w4"


async def test_fail_429_raises_rate_limit_with_retry_after(
    chat: Chats, control: httpx.AsyncClient
) -> None:
    await control.post("/_control", json={"fail_429": 1, "retry_after": 7})
    with pytest.raises(groq.RateLimitError) as caught:
        await chat().ainvoke("hi")
    assert caught.value.response.headers["retry-after"] == "7"
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["code"] == "rate_limit_exceeded"
    # Only the next N requests fail.
    assert (await chat().ainvoke("hi")).content == "echo: hi"
    assert [c["status"] for c in await calls(control)] == [429, 200]


async def test_fail_500_raises_internal_server_error(
    chat: Chats, control: httpx.AsyncClient
) -> None:
    await control.post("/_control", json={"fail_500": 1})
    with pytest.raises(groq.InternalServerError):
        await chat(streaming=True).ainvoke("hi")


async def test_fail_400_marker_raises_bad_request(
    chat: Chats, control: httpx.AsyncClient
) -> None:
    with pytest.raises(groq.BadRequestError) as caught:
        await chat().ainvoke("please FAIL_400 now")
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "invalid_request_error"


async def test_delay_holds_the_answer(chat: Chats, control: httpx.AsyncClient) -> None:
    await control.post("/_control", json={"delay": 0.3})
    started = time.monotonic()
    await chat().ainvoke("slow")
    assert time.monotonic() - started >= 0.3


async def test_hold_keeps_answers_until_released(chat: Chats, control: httpx.AsyncClient) -> None:
    await control.post("/_control", json={"hold": True})
    answer = asyncio.create_task(chat().ainvoke("held"))
    deadline = time.monotonic() + 5
    while not await calls(control):
        assert time.monotonic() < deadline, "the request never arrived"
        await asyncio.sleep(0.02)
    assert not answer.done()

    released = (await control.post("/_control", json={"hold": False})).json()

    assert released["hold"] is False
    assert (await asyncio.wait_for(answer, 5)).content == "echo: held"
    assert (await control.post("/_control", json={"hold": 1})).status_code == 400


async def test_client_disconnect_mid_stream_is_recorded(
    fake_url: str, control: httpx.AsyncClient
) -> None:
    await control.post("/_control", json={"token_delay": 0.2, "reply_tokens": 50})
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "x"}]}
    async with httpx.AsyncClient(base_url=fake_url, timeout=10) as client, client.stream(
        "POST", "/openai/v1/chat/completions", json=body
    ) as response:
        async for line in response.aiter_lines():
            if '"content": "w0 "' in line:
                break
    left_at = time.time()

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        [call] = await calls(control)
        if call["disconnected_at"] is not None:
            break
        await asyncio.sleep(0.05)
    assert call["disconnected_at"] is not None
    assert call["disconnected_at"] - left_at < 1
    assert call["finished_at"] is None
    assert call["tokens_sent"] < 50


async def test_control_rejects_unknown_or_bad_fields(control: httpx.AsyncClient) -> None:
    assert (await control.post("/_control", json={"nope": 1})).status_code == 400
    assert (await control.post("/_control", json={"fail_429": -1})).status_code == 400
    settings = (await control.post("/_control", json={"token_delay": 0.5})).json()
    assert settings["token_delay"] == 0.5
    assert (await control.post("/_control/reset")).json()["token_delay"] == 0.0


def test_module_docstring_says_it_is_a_fake() -> None:
    source = Path(__file__).resolve().parents[1] / "fakes" / "fake_groq_server.py"
    assert "test fake" in source.read_text().split('"""')[1]
