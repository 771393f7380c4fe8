"""Assistants a key makes, through the official LangGraph SDK, against the real stack:
made, found, versioned, run with their settings, deleted; each key's own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import ConflictError, NotFoundError

from shared.graphs import assistant_id_of
from tests.helpers import stack_of_its_own
from tests.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("fresh_llm")]

GRAPH = "chat"


def said(text: str) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[LangGraphClient]:
    async with get_client(url=str(stack.client.base_url), api_key=None) as sdk:
        yield sdk


def system_prompt_of_last_call(stack: Stack) -> str:
    prompt: str = stack.llm_calls()[-1]["messages"][0]["content"]
    return prompt


async def test_an_assistant_is_made_versioned_and_runs_with_its_settings(
        client: LangGraphClient, stack: Stack) -> None:
    tag = uuid.uuid4().hex
    made = await client.assistants.create(GRAPH, context={"language": "French"},
                                          metadata={"tag": tag, "stage": "draft"},
                                          name="French helper", description="answers in French")
    assistant_id = made["assistant_id"]

    thread_id = (await client.threads.create())["thread_id"]
    await client.runs.wait(thread_id, assistant_id, input=said("bonjour"))
    french = system_prompt_of_last_call(stack)
    patched = await client.assistants.update(assistant_id, context={"language": "German"},
                                             metadata={"stage": "live"})
    await client.runs.wait(thread_id, assistant_id, input=said("hallo"))
    german = system_prompt_of_last_call(stack)
    versions = await client.assistants.get_versions(assistant_id)
    back = await client.assistants.set_latest(assistant_id, 1)

    assert made["graph_id"] == GRAPH and made["version"] == 1
    assert made["context"] == {"language": "French"}
    assert made["config"] == {"configurable": {"language": "French"}}
    assert "French" in french and "German" in german
    assert patched["version"] == 2 and patched["name"] == "French helper"
    assert patched["metadata"] == {"tag": tag, "stage": "live"}  # merged key by key
    assert patched["created_at"] == made["created_at"]
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[1]["context"] == {"language": "French"}
    assert back["version"] == 1 and back["context"] == {"language": "French"}
    assert (await client.assistants.get(assistant_id))["version"] == 1
    # The thread and its runs name the assistant that ran.
    thread = await client.threads.get(thread_id)
    assert thread["metadata"]["assistant_id"] == assistant_id
    assert thread["metadata"]["graph_id"] == GRAPH
    assert {r["assistant_id"] for r in await client.runs.list(thread_id)} == {assistant_id}
    # Found by graph, by part of its name in any case, by metadata; counted.
    found = await client.assistants.search(metadata={"tag": tag})
    assert [a["assistant_id"] for a in found] == [assistant_id]
    by_name = await client.assistants.search(name="FRENCH", graph_id=GRAPH)
    assert assistant_id in [a["assistant_id"] for a in by_name]
    assert await client.assistants.count(metadata={"tag": tag}) == 1
    # Its graph's drawing and schemas are its graph's.
    assert await client.assistants.get_schemas(assistant_id) == \
        await client.assistants.get_schemas(GRAPH)

    await client.assistants.delete(assistant_id)

    with pytest.raises(NotFoundError):
        await client.assistants.get(assistant_id)
    with pytest.raises(NotFoundError):
        await client.runs.create(thread_id, assistant_id, input=said("gone"))


async def test_a_taken_id_conflicts_unless_asked_to_keep_it(client: LangGraphClient) -> None:
    assistant_id = str(uuid.uuid4())
    first = await client.assistants.create(GRAPH, assistant_id=assistant_id, name="one")

    with pytest.raises(ConflictError):
        await client.assistants.create(GRAPH, assistant_id=assistant_id, name="two")
    kept = await client.assistants.create(GRAPH, assistant_id=assistant_id, name="three",
                                          if_exists="do_nothing")
    with pytest.raises(ConflictError):  # a default assistant's id is taken too
        await client.assistants.create(GRAPH, assistant_id=assistant_id_of(GRAPH))

    assert kept == first
    await client.assistants.delete(assistant_id)


async def test_default_assistants_are_not_a_key_s_to_change(client: LangGraphClient) -> None:
    default = assistant_id_of(GRAPH)
    for change in (client.assistants.update(default, metadata={"x": 1}),
                   client.assistants.delete(default),
                   client.assistants.set_latest(default, 1)):
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await change
        assert refused.value.response.status_code == 403
        assert "langgraph.json" in refused.value.response.json()["detail"]

    versions = await client.assistants.get_versions(GRAPH)

    assert [v["version"] for v in versions] == [1]
    assert (await client.assistants.get(default))["metadata"] == {"created_by": "system"}


async def test_bad_assistants_are_refused_by_name(client: LangGraphClient,
                                                  stack: Stack) -> None:
    cases = [
        ({"graph_id": "nope"}, 404, "nope"),
        ({"graph_id": GRAPH, "assistant_id": "not-a-uuid"}, 422, "assistant_id"),
        ({"graph_id": GRAPH, "config": {"configurable": {"a": 1}}, "context": {"a": 1}},
         422, "context"),
        ({"graph_id": GRAPH, "colour": "red"}, 422, "colour"),
    ]
    for body, status, named in cases:
        reply = stack.client.post("/assistants", json=body)
        assert reply.status_code == status, (body, reply.text)
        assert named in reply.text
    with pytest.raises(NotFoundError):
        await client.assistants.update(str(uuid.uuid4()), metadata={"a": 1})
    made = await client.assistants.create(GRAPH)
    with pytest.raises(NotFoundError):
        await client.assistants.set_latest(made["assistant_id"], 7)
    await client.assistants.delete(made["assistant_id"])


async def test_delete_threads_deletes_the_assistant_s_threads(client: LangGraphClient) -> None:
    made = await client.assistants.create(GRAPH, name="short-lived")
    used = (await client.threads.create())["thread_id"]
    await client.runs.wait(used, made["assistant_id"], input=said("hi"))
    other = (await client.threads.create())["thread_id"]
    await client.runs.wait(other, GRAPH, input=said("hi"))

    await client.assistants.delete(made["assistant_id"], delete_threads=True)

    with pytest.raises(NotFoundError):
        await client.threads.get(used)
    assert (await client.threads.get(other))["thread_id"] == other


# --- with API keys: each key sees its own -------------------------------------

KEY_A, KEY_B = "assistants-key-a", "assistants-key-b"


@pytest.fixture(scope="module")
def secure(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack with two API keys."""
    with stack_of_its_own(s3_endpoint, tmp_path_factory.mktemp("assistants-secure"),
                          workers=1, API_KEYS=f"{KEY_A},{KEY_B}") as stack:
        yield stack


async def test_an_assistant_is_its_key_s_alone(secure: Stack) -> None:
    url = str(secure.client.base_url)
    async with get_client(url=url, api_key=KEY_A) as a, get_client(url=url, api_key=KEY_B) as b:
        mine = await a.assistants.create(GRAPH, name="mine")
        assistant_id = mine["assistant_id"]

        for intrusion in (b.assistants.get(assistant_id),
                          b.assistants.update(assistant_id, name="theirs"),
                          b.assistants.delete(assistant_id),
                          b.assistants.get_versions(assistant_id),
                          b.runs.create(None, assistant_id, input=said("hi"),
                                        on_completion="keep")):
            with pytest.raises(NotFoundError):
                await intrusion
        with pytest.raises(ConflictError):
            await b.assistants.create(GRAPH, assistant_id=assistant_id, if_exists="do_nothing")
        theirs = [x["assistant_id"] for x in await b.assistants.search(limit=100)]

        assert assistant_id not in theirs and assistant_id_of(GRAPH) in theirs
        assert (await a.assistants.get(assistant_id))["name"] == "mine"
