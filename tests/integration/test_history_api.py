"""GET /chat/history pages, through the gateway, on a real S3 server and Redis.

The conversation is written by the worker's graph through the saver as the
worker opens it (a window of messages in the state, every message in the
transcript), then read back page by page as a client would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from graphs.chat import build_graph
from graphs.llm import EchoChatModel
from shared.conversation import human_message
from shared.settings import Settings
from shared.storage import open_saver


@pytest.fixture
def settings(s3_endpoint: str, s3_bucket: str, redis_url: str) -> Settings:
    return Settings(_env_file=None, S3_ENDPOINT_URL=s3_endpoint,  # type: ignore[call-arg]
                    S3_BUCKET_NAME=s3_bucket, REDIS_URL=redis_url, CONTEXT_WINDOW_MESSAGES=4)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


async def converse(settings: Settings, thread_id: str, turns: int) -> None:
    async with open_saver(settings) as saver:
        graph = build_graph(EchoChatModel(), saver, 1000,
                            window_messages=settings.CONTEXT_WINDOW_MESSAGES)
        for n in range(turns):
            await graph.ainvoke(
                {"messages": [human_message(f"job{n}", f"question {n}", 1700000000.0 + n)]},
                {"configurable": {"thread_id": thread_id}}, durability="exit")


def walk(client: TestClient, thread_id: str, limit: int) -> list[dict[str, Any]]:
    pages: list[list[dict[str, Any]]] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        reply = client.get(f"/chat/history/{thread_id}", params=params)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert 0 < len(body["messages"]) <= limit
        pages.append(body["messages"])
        if body["next_before"] is None:
            return [m for page in reversed(pages) for m in page]
        params = {"limit": limit, "before": body["next_before"]}


async def test_pages_from_the_newest_walk_the_whole_conversation(
    settings: Settings, client: TestClient
) -> None:
    await converse(settings, "paged", 120)  # 240 messages: two sealed segments and a tail

    for limit in (7, 100, 1000):
        messages = walk(client, "paged", limit)
        assert [m["content"] for m in messages[::2]] == [f"question {n}" for n in range(120)]
        assert [m["role"] for m in messages] == ["human", "assistant"] * 120
        stamps = [m["timestamp"] for m in messages[::2]]
        assert stamps == sorted(stamps)
    newest = client.get("/chat/history/paged", params={"limit": 3}).json()
    assert [m["content"] for m in newest["messages"]][-1].endswith("question 119")


@pytest.mark.parametrize("cursor", ["abc", "-1", "1.5", "9" * 13, ""])
async def test_a_malformed_cursor_is_400(settings: Settings, client: TestClient,
                                         cursor: str) -> None:
    await converse(settings, "cursored", 1)
    reply = client.get("/chat/history/cursored", params={"before": cursor})
    assert reply.status_code == 400
    assert "before" in reply.json()["detail"]


def test_an_unknown_thread_is_404(client: TestClient) -> None:
    assert client.get("/chat/history/nobody-here").status_code == 404
