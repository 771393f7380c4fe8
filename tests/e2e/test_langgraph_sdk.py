"""The official LangGraph SDK (`langgraph-sdk`) against the real stack, async and sync.

Runs are jobs: ChatGroq on the workers answers through the Groq-like server,
so what the SDK gets is checked against what the LLM was asked and sent.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.client import LangGraphClient, SyncLangGraphClient
from langgraph_sdk.errors import ConflictError, NotFoundError, UnprocessableEntityError

from shared.graphs import assistant_id_of
from tests.helpers import stack_of_its_own
from tests.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("fresh_llm")]

GRAPH = "chat"
POLL_SECONDS = 0.02


def said(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def contents(values: dict[str, Any]) -> list[str]:
    return [m["content"] for m in values.get("messages", [])]


def words(count: int) -> str:
    """The reply the Groq-like server streams when told `reply_tokens=count`."""
    return " ".join(f"w{n}" for n in range(count))


async def status_becomes(client: LangGraphClient, thread_id: str, run_id: str, status: str,
                         within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while (await client.runs.get(thread_id, run_id))["status"] != status:
        assert time.monotonic() < deadline, f"the run did not become {status} in {within}s"
        await asyncio.sleep(POLL_SECONDS)


def asked_llm(stack: Stack, text: str, count: int, within: float = 30.0) -> list[Any]:
    """The LLM calls whose last message is `text`, once there are `count` of them."""
    deadline = time.monotonic() + within
    while len(calls := [c for c in stack.llm_calls()
                        if c["messages"][-1]["content"] == text]) < count:
        assert time.monotonic() < deadline, f"{count} calls for {text!r} did not come"
        time.sleep(POLL_SECONDS)
    return calls


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[LangGraphClient]:
    async with get_client(url=str(stack.client.base_url), api_key=None) as sdk:
        yield sdk


@pytest.fixture
def sync_client(stack: Stack) -> Iterator[SyncLangGraphClient]:
    with get_sync_client(url=str(stack.client.base_url), api_key=None) as sdk:
        yield sdk


async def test_wait_answers_with_the_thread_state(client: LangGraphClient,
                                                  stack: Stack) -> None:
    thread = await client.threads.create(metadata={"topic": "greetings"})

    values = await client.runs.wait(thread["thread_id"], GRAPH, input=said("bonjour"),
                                    config={"configurable": {"language": "French"}})

    assert contents(values) == ["bonjour", "echo: bonjour"]
    assert [m["type"] for m in values["messages"]] == ["human", "ai"]
    assert "French" in stack.llm_calls()[-1]["messages"][0]["content"]


@pytest.mark.parametrize("mode", ["values", "updates", "messages-tuple"])
def test_each_stream_mode_shows_the_reply_the_tokens_make(
        sync_client: SyncLangGraphClient, stack: Stack, mode: str) -> None:
    stack.control(reply_tokens=30, token_delay=0.005)
    thread = sync_client.threads.create()

    parts = list(sync_client.runs.stream(thread["thread_id"], GRAPH, input=said("talk"),
                                         stream_mode=mode))

    assert parts[0].event == "metadata"
    run_id = parts[0].data["run_id"]
    final = contents(sync_client.threads.get_state(thread["thread_id"])["values"])
    assert final == ["talk", words(30)]
    if mode == "messages-tuple":
        tokens = [p.data[0]["content"] for p in parts if p.event == "messages"]
        assert len(tokens) > 1
        assert "".join(tokens) == final[-1]
        assert {p.data[1]["run_id"] for p in parts if p.event == "messages"} == {run_id}
    elif mode == "values":
        assert contents(parts[-1].data) == final
    else:
        # The node's own update: the reply (and the message, stamped with its time).
        assert contents(parts[-1].data["answer"])[-1] == final[-1]
    assert sync_client.runs.get(thread["thread_id"], run_id)["status"] == "success"


async def test_all_modes_at_once_agree(client: LangGraphClient, stack: Stack) -> None:
    stack.control(reply_tokens=20, token_delay=0.005)
    thread = await client.threads.create()

    parts = [p async for p in client.runs.stream(
        thread["thread_id"], GRAPH, input=said("all"),
        stream_mode=["messages-tuple", "updates", "values"], stream_resumable=True)]

    events = [p.event for p in parts]
    assert events[0] == "metadata"
    assert events[-2:] == ["updates", "values"]
    tokens = "".join(p.data[0]["content"] for p in parts if p.event == "messages")
    assert tokens == words(20) == contents(parts[-1].data)[-1]


async def test_a_dropped_stream_resumes_after_last_event_id(client: LangGraphClient,
                                                            stack: Stack) -> None:
    stack.control(reply_tokens=60, token_delay=0.02)
    thread = await client.threads.create()
    run = await client.runs.create(thread["thread_id"], GRAPH, input=said("long"),
                                   stream_mode="messages-tuple")

    first = []
    async for part in client.runs.join_stream(thread["thread_id"], run["run_id"]):
        first.append(part)
        if sum(p.event == "messages" for p in first) == 5:
            break  # the client drops
    rest = [p async for p in client.runs.join_stream(
        thread["thread_id"], run["run_id"], last_event_id=first[-1].id)]

    text = "".join(p.data[0]["content"] for p in first + rest if p.event == "messages")
    assert text == words(60)
    assert rest[0].event == "messages"  # no second `metadata`: it resumed, not restarted


async def test_a_background_run_is_joined(client: LangGraphClient) -> None:
    thread = await client.threads.create()

    run = await client.runs.create(thread["thread_id"], GRAPH, input=said("later"),
                                   metadata={"from": "test"})
    values = await client.runs.join(thread["thread_id"], run["run_id"])

    assert run["status"] in ("pending", "running")
    assert contents(values) == ["later", "echo: later"]
    done = await client.runs.get(thread["thread_id"], run["run_id"])
    assert done["status"] == "success"
    assert done["metadata"] == {"from": "test", "graph_id": GRAPH,
                                "assistant_id": assistant_id_of(GRAPH)}
    listed = await client.runs.list(thread["thread_id"])
    assert [r["run_id"] for r in listed] == [run["run_id"]]


async def test_cancel_a_running_run_closes_the_llm_call(client: LangGraphClient,
                                                        stack: Stack) -> None:
    thread = await client.threads.create()
    await client.runs.wait(thread["thread_id"], GRAPH, input=said("keep"))
    stack.control(reply_tokens=400, token_delay=0.02)
    run = await client.runs.create(thread["thread_id"], GRAPH, input=said("stop me"),
                                   stream_mode="messages-tuple")
    async for part in client.runs.join_stream(thread["thread_id"], run["run_id"]):
        if part.event == "messages":
            break  # the reply is on its way

    cancelled_at = time.time()
    await client.runs.cancel(thread["thread_id"], run["run_id"], wait=True)

    assert (await client.runs.get(thread["thread_id"], run["run_id"]))["status"] == "interrupted"
    call = stack.llm_calls()[-1]
    assert call["disconnected_at"] is not None
    assert call["disconnected_at"] - cancelled_at < 1.0
    state = await client.threads.get_state(thread["thread_id"])
    assert contents(state["values"]) == ["keep", "echo: keep"]
    with pytest.raises(NotFoundError):  # nothing left to cancel, as langgraph dev says
        await client.runs.cancel(thread["thread_id"], run["run_id"])


async def test_reject_refuses_and_enqueue_waits_on_a_busy_thread(
        client: LangGraphClient, stack: Stack) -> None:
    thread_id = (await client.threads.create())["thread_id"]
    stack.control(hold=True)
    first = await client.runs.create(thread_id, GRAPH, input=said("first"))

    with pytest.raises(ConflictError):
        await client.runs.create(thread_id, GRAPH, input=said("rejected"),
                                 multitask_strategy="reject")
    queued = await client.runs.create(thread_id, GRAPH, input=said("queued"),
                                      multitask_strategy="enqueue")
    assert (await client.threads.get(thread_id))["status"] == "busy"
    stack.control(hold=False)

    await client.runs.join(thread_id, first["run_id"])
    values = await client.runs.join(thread_id, queued["run_id"])
    assert contents(values) == ["first", "echo: first", "queued", "echo: queued"]
    assert all(c["messages"][-1]["content"] != "rejected" for c in stack.llm_calls())
    assert (await client.threads.get(thread_id))["status"] == "idle"


async def test_interrupt_cancels_the_running_run_then_runs(client: LangGraphClient,
                                                           stack: Stack) -> None:
    thread_id = (await client.threads.create())["thread_id"]
    stack.control(hold=True)
    first = await client.runs.create(thread_id, GRAPH, input=said("old"))
    await status_becomes(client, thread_id, first["run_id"], "running")

    second = await client.runs.create(thread_id, GRAPH, input=said("new"),
                                      multitask_strategy="interrupt")
    stack.control(hold=False)
    values = await client.runs.join(thread_id, second["run_id"])

    assert contents(values) == ["new", "echo: new"]
    assert (await client.runs.get(thread_id, first["run_id"]))["status"] == "interrupted"


async def test_state_and_history_after_several_runs(client: LangGraphClient) -> None:
    thread_id = (await client.threads.create())["thread_id"]
    for text in ("one", "two", "three"):
        await client.runs.wait(thread_id, GRAPH, input=said(text))

    state = await client.threads.get_state(thread_id)
    history = await client.threads.get_history(thread_id, limit=10)

    assert contents(state["values"]) == ["one", "echo: one", "two", "echo: two",
                                         "three", "echo: three"]
    assert state["next"] == [] and state["checkpoint"]["thread_id"] == thread_id
    assert "owner" not in state["metadata"]
    assert history[0] == state
    # Newest first, each an earlier state of the same conversation.
    sizes = [len(h["values"].get("messages", [])) for h in history]
    assert sizes == sorted(sizes, reverse=True)
    for older in history[1:]:
        older_messages = contents(older["values"])
        assert older_messages == contents(state["values"])[:len(older_messages)]
    if len(history) > 1:
        before = await client.threads.get_history(
            thread_id, before={"checkpoint_id": history[0]["checkpoint"]["checkpoint_id"]})
        assert before == history[1:len(before) + 1]


async def test_a_run_and_a_chat_message_on_one_thread_see_each_other(
        client: LangGraphClient, stack: Stack) -> None:
    thread_id = (await client.threads.create())["thread_id"]
    await client.runs.wait(thread_id, GRAPH, input=said("from the sdk"))

    posted = stack.client.post("/chat", json={"message": "from chat", "thread_id": thread_id})
    values = await client.runs.wait(thread_id, GRAPH, input=said("sdk again"))

    assert posted.status_code == 200
    assert contents(values) == ["from the sdk", "echo: from the sdk", "from chat",
                                "echo: from chat", "sdk again", "echo: sdk again"]
    history = stack.client.get(f"/chat/history/{thread_id}").json()["messages"]
    assert [m["content"] for m in history] == contents(values)
    # Both sides sent the whole conversation to the LLM.
    assert [m["content"] for m in stack.llm_calls()[-1]["messages"][1:]] == contents(values)[:-1]
    # The chat message is one of the thread's runs.
    runs = await client.runs.list(thread_id)
    assert len(runs) == 3 and runs[1]["run_id"] == posted.json()["job_id"]
    assert {r["status"] for r in runs} == {"success"}
    assert runs[1]["assistant_id"] == assistant_id_of(GRAPH)
    # A thread made by POST /chat is a thread here too, found by its graph.
    made = stack.client.post("/chat", json={"message": "chat first"}).json()["thread_id"]
    assert contents((await client.threads.get(made))["values"]) == [
        "chat first", "echo: chat first"]
    found = await client.threads.search(metadata={"graph_id": GRAPH}, limit=100)
    assert made in [t["thread_id"] for t in found]


async def test_stateless_runs_delete_their_thread_unless_kept(client: LangGraphClient) -> None:
    made: list[str] = []

    def note(run: Any) -> None:
        made.append(run["thread_id"])

    values = await client.runs.wait(None, GRAPH, input=said("once"), on_run_created=note)
    parts = [p async for p in client.runs.stream(None, GRAPH, input=said("twice"),
                                                 on_completion="keep", on_run_created=note)]
    kept = await client.runs.create(None, GRAPH, input=said("thrice"), on_completion="keep")

    assert contents(values) == ["once", "echo: once"]
    assert contents(parts[-1].data) == ["twice", "echo: twice"]
    with pytest.raises(NotFoundError):
        await client.threads.get(made[0])
    assert contents((await client.threads.get(made[1]))["values"]) == ["twice", "echo: twice"]
    assert contents(await client.runs.join(kept["thread_id"], kept["run_id"])) == [
        "thrice", "echo: thrice"]


async def test_threads_are_made_annotated_copied_and_deleted(client: LangGraphClient) -> None:
    thread = await client.threads.create(metadata={"user": "u1", "topic": "t"})
    thread_id = thread["thread_id"]
    await client.runs.wait(thread_id, GRAPH, input=said("remember"))

    with pytest.raises(ConflictError):
        await client.threads.create(thread_id=thread_id)
    again = await client.threads.create(thread_id=thread_id, if_exists="do_nothing")
    updated = await client.threads.update(thread_id, metadata={"topic": "u", "n": 2})
    copy = await client.threads.copy(thread_id)
    found = await client.threads.search(metadata={"user": "u1", "topic": "u"})

    # A run writes its graph and assistant into its thread's metadata.
    ran = {"graph_id": GRAPH, "assistant_id": assistant_id_of(GRAPH)}
    assert again["metadata"] == {"user": "u1", "topic": "t", **ran}
    assert updated["metadata"] == {"user": "u1", "topic": "u", "n": 2, **ran}
    assert copy["thread_id"] != thread_id
    assert copy["metadata"] == updated["metadata"]
    assert contents(copy["values"]) == ["remember", "echo: remember"]
    assert {t["thread_id"] for t in found} == {thread_id, copy["thread_id"]}
    assert found[0]["thread_id"] == copy["thread_id"]  # newest first
    await client.threads.delete(thread_id)
    with pytest.raises(NotFoundError):
        await client.threads.get(thread_id)
    with pytest.raises(NotFoundError):  # its runs went with it, as the LangGraph Server says
        await client.runs.list(thread_id)
    with pytest.raises(httpx.HTTPStatusError) as gone:  # a wait's errors are httpx's own
        await client.runs.wait(thread_id, GRAPH, input=said("gone"))
    assert gone.value.response.status_code == 404
    assert contents((await client.threads.get(copy["thread_id"]))["values"]) == [
        "remember", "echo: remember"]


async def test_the_chat_assistant(client: LangGraphClient) -> None:
    [assistant] = await client.assistants.search(graph_id=GRAPH,
                                                 metadata={"created_by": "system"})
    graph = await client.assistants.get_graph(assistant["assistant_id"])
    schemas = await client.assistants.get_schemas(GRAPH)

    assert assistant == await client.assistants.get(GRAPH)
    assert assistant["graph_id"] == GRAPH
    assert [n["id"] for n in graph["nodes"]] == ["__start__", "answer", "__end__"]
    assert "messages" in schemas["input_schema"]["properties"]
    assert "language" in schemas["context_schema"]["properties"]
    with pytest.raises(NotFoundError):  # as the LangGraph Server answers it
        await client.assistants.search(graph_id="other")
    # As langgraph dev tells them apart: no such assistant (a UUID) 404, an id
    # that is neither an assistant's nor a graph's 422.
    with pytest.raises(NotFoundError):
        await client.assistants.get(str(uuid.uuid4()))
    with pytest.raises(UnprocessableEntityError):
        await client.assistants.get("other")


async def test_what_is_not_supported_is_refused_by_name(client: LangGraphClient) -> None:
    thread_id = (await client.threads.create())["thread_id"]
    for unsupported in ({"webhook": "http://x.test/"}, {"after_seconds": 5},
                        {"stream_mode": "everything"}, {"multitask_strategy": "sometimes"}):
        with pytest.raises(UnprocessableEntityError) as refused:
            await client.runs.create(thread_id, GRAPH, input=said("hi"),
                                     **unsupported)  # type: ignore[arg-type]
        assert next(iter(unsupported)) in refused.value.response.text
    # The stack's model (a Groq model of text only, its profile says) gets no image.
    picture = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]}
    with pytest.raises(UnprocessableEntityError) as refused:
        await client.runs.create(thread_id, GRAPH, input=picture)
    assert "input.messages.0.content.1: a 'image_url' block" in refused.value.response.text
    with pytest.raises(UnprocessableEntityError):
        await client.runs.create(thread_id, "another-graph", input=said("hi"))
    with pytest.raises(NotFoundError):
        await client.runs.create(thread_id, str(uuid.uuid4()), input=said("hi"))
    with pytest.raises(NotFoundError):
        await client.runs.create("no-such-thread", GRAPH, input=said("hi"))
    with pytest.raises(NotFoundError):
        await client.runs.list("no-such-thread")
    made = await client.runs.wait("made-on-demand-" + thread_id, GRAPH, input=said("hi"),
                                  if_not_exists="create")
    assert contents(made) == ["hi", "echo: hi"]
    assert (await client.runs.list(thread_id)) == []


# --- with API keys: each key sees its own -------------------------------------

KEY_A, KEY_B = "sdk-key-a-0123456789", "sdk-key-b-0123456789"


@pytest.fixture(scope="module")
def secure(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack with two API keys."""
    with stack_of_its_own(s3_endpoint, tmp_path_factory.mktemp("sdk-secure"), workers=1,
                          API_KEYS=f"{KEY_A},{KEY_B}") as stack:
        yield stack


async def test_thread_search_shows_each_key_only_its_own(secure: Stack) -> None:
    url = str(secure.client.base_url)
    async with (get_client(url=url, api_key=KEY_A) as a, get_client(url=url, api_key=KEY_B) as b,
                get_client(url=url, api_key=None) as nobody):
        mine = await a.threads.create(metadata={"team": "red"})
        theirs = await b.threads.create(metadata={"team": "red"})
        await a.runs.wait(mine["thread_id"], GRAPH, input=said("secret"))

        assert [t["thread_id"] for t in await a.threads.search(metadata={"team": "red"})] == [
            mine["thread_id"]]
        assert [t["thread_id"] for t in await b.threads.search()] == [theirs["thread_id"]]
        with pytest.raises(NotFoundError):
            await b.threads.get(mine["thread_id"])
        with pytest.raises(NotFoundError):
            await b.threads.get_state(mine["thread_id"])
        with pytest.raises(NotFoundError):
            await b.runs.create(mine["thread_id"], GRAPH, input=said("intrude"))
        with pytest.raises(NotFoundError):
            await b.runs.list(mine["thread_id"])
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await nobody.threads.search()
        assert refused.value.response.status_code == 401
        # The key in a Bearer header is the same caller.
        bearer = secure.client.get(f"/threads/{mine['thread_id']}",
                                   headers={"Authorization": f"Bearer {KEY_A}"})
        assert contents(bearer.json()["values"]) == ["secret", "echo: secret"]
        # A state written by the owner stays the owner's.
        await a.threads.update_state(mine["thread_id"], {"messages": [
            {"type": "ai", "content": "edited"}]}, as_node="answer")
        assert contents((await a.threads.get_state(mine["thread_id"]))["values"])[-1] == "edited"
        with pytest.raises(NotFoundError):
            await b.threads.update_state(mine["thread_id"], {"messages": []})
        with pytest.raises(NotFoundError):
            await b.threads.get_state(mine["thread_id"])
        # The id is A's own: B making a thread of it makes B's, and A's stays A's.
        same = await b.threads.create(thread_id=mine["thread_id"], metadata={"team": "blue"})
        assert same["thread_id"] == mine["thread_id"] and same["values"] is None
        assert (await b.threads.get(mine["thread_id"]))["metadata"] == {"team": "blue"}
        assert (await a.threads.get(mine["thread_id"]))["metadata"]["team"] == "red"
        with pytest.raises(ConflictError):
            await a.threads.create(thread_id=mine["thread_id"])


# --- a worker killed mid-run --------------------------------------------------

@pytest.fixture(scope="module")
def crashing(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Two workers that recover a dead one's thread fast (short leases, frequent sweeps)."""
    with stack_of_its_own(s3_endpoint, tmp_path_factory.mktemp("sdk-crash"), workers=2,
                          THREAD_LEASE_SECONDS="3", RECOVERY_INTERVAL_SECONDS="1",
                          RECOVERY_STALL_SECONDS="3") as stack:
        yield stack


async def test_a_run_whose_worker_is_sigkilled_still_succeeds_stored_once(
        crashing: Stack) -> None:
    async with get_client(url=str(crashing.client.base_url), api_key=None) as client:
        thread_id = (await client.threads.create())["thread_id"]
        crashing.control(hold=True)
        run = await client.runs.create(thread_id, GRAPH, input=said("survive"))
        asked_llm(crashing, "survive", 1)  # the LLM call is under way, held
        holder = next(w for w in crashing.workers if run["run_id"] in w.log())

        holder.kill()  # SIGKILL to the worker and its children
        crashing.control(hold=False)
        values = await client.runs.join(thread_id, run["run_id"])

        assert contents(values) == ["survive", "echo: survive"]
        assert (await client.runs.get(thread_id, run["run_id"]))["status"] == "success"
        assert len(asked_llm(crashing, "survive", 2)) == 2  # the killed attempt, and the stored
        crashing.workers.remove(holder)


def test_a_proxy_s_bodies_without_their_content_type_are_read(stack: Stack) -> None:
    # agent-chat-ui's /api proxy forwards JSON as text/plain.
    made = stack.client.post("/threads", content=b'{"metadata": {"graph_id": "chat"}}',
                             headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert made.status_code == 200, made.text
    found = stack.client.post("/threads/search", content=b'{"ids": ["%s"]}' % made.json()[
        "thread_id"].encode(), headers={"Content-Type": "text/plain"})
    assert [t["thread_id"] for t in found.json()] == [made.json()["thread_id"]]


def first_seen(history: list[Any], message_id: str) -> dict[str, Any]:
    """The oldest state holding the message (history is newest first)."""
    return [s for s in history
            if any(m.get("id") == message_id for m in s["values"].get("messages", []))][-1]


async def test_a_reply_is_regenerated_and_a_message_edited_as_use_stream_does(
        client: LangGraphClient, stack: Stack) -> None:
    thread_id = (await client.threads.create())["thread_id"]
    await client.runs.wait(thread_id, GRAPH, input=said("first"))
    second = await client.runs.wait(thread_id, GRAPH, input=said("second"))
    assert isinstance(second, dict)
    reply, asked = second["messages"][-1], second["messages"][-2]
    history = await client.threads.get_history(thread_id, limit=10)

    # Regenerate: no input, from the checkpoint before the reply (it holds "second").
    before_reply = first_seen(history, reply["id"])["parent_checkpoint"]
    again = await client.runs.wait(thread_id, GRAPH, input=None, checkpoint=before_reply)
    assert isinstance(again, dict)
    assert contents(again) == ["first", "echo: first", "second", "echo: second"]
    assert again["messages"][-1]["id"] != reply["id"]  # a new reply, on a branch
    assert len(asked_llm(stack, "second", 2)) == 2

    # Edit: the new message, from the checkpoint before the old one entered.
    before_asked = first_seen(history, asked["id"])["parent_checkpoint"]
    edited = await client.runs.wait(thread_id, GRAPH, input=said("second, edited"),
                                    checkpoint=before_asked)
    assert isinstance(edited, dict)
    assert contents(edited) == ["first", "echo: first", "second, edited",
                                "echo: second, edited"]
    branches = await client.threads.get_history(thread_id, limit=50)
    assert {reply["id"], again["messages"][-1]["id"]} <= {
        m["id"] for s in branches for m in s["values"].get("messages", [])}
