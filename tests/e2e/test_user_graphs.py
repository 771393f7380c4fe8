"""A user's own graphs, declared in their own langgraph.json outside the repository,
run through the official SDK on a stack of their own.

The graphs (tests/data/user_graphs/agent.py) are copied to a temporary
directory, so the workers and the gateway can only find them through
LANGGRAPH_CONFIG.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.helpers import stack_of_its_own, user_project
from tests.stack import Stack

pytestmark = [pytest.mark.e2e]



@pytest.fixture(scope="module")
def graphs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return user_project(tmp_path_factory.mktemp("their-project"))


@pytest.fixture(scope="module")
def theirs(s3_endpoint: str, graphs_dir: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Their stack: two workers that recover a dead one's thread fast."""
    with stack_of_its_own(s3_endpoint, tmp_path_factory.mktemp("user-graphs"), workers=2,
                          LANGGRAPH_CONFIG=str(graphs_dir / "langgraph.json"),
                          THREAD_LEASE_SECONDS="3", RECOVERY_INTERVAL_SECONDS="1",
                          RECOVERY_STALL_SECONDS="3") as stack:
        yield stack


@pytest.fixture
async def client(theirs: Stack) -> AsyncIterator[LangGraphClient]:
    async with get_client(url=str(theirs.client.base_url), api_key=None) as sdk:
        yield sdk


async def new_thread(client: LangGraphClient) -> str:
    return str((await client.threads.create())["thread_id"])


async def test_state_lives_over_two_runs_and_custom_events_stream(
        client: LangGraphClient) -> None:
    thread_id = await new_thread(client)
    first = await client.runs.wait(thread_id, "counter", input={"count": 0})
    parts = [p async for p in client.runs.stream(
        thread_id, "counter", input={}, stream_mode=["custom", "updates", "values"])]

    assert isinstance(first, dict) and first["count"] == 1
    events = [p.event for p in parts]
    assert events[0] == "metadata" and "custom" in events and "updates" in events
    assert next(p.data for p in parts if p.event == "custom") == {"progress": "counting"}
    update = next(p.data for p in parts if p.event == "updates")
    assert update["step"]["count"] == 2 and update["step"]["steps"] == ["step 2"]
    assert [p.data for p in parts if p.event == "values"][-1]["count"] == 2
    run_id = parts[0].data["run_id"]
    replayed = [p async for p in client.runs.join_stream(thread_id, run_id,
                                                          last_event_id="-1")]
    assert [p.event for p in replayed] == events  # "-1": the whole run again
    state = await client.threads.get_state(thread_id)
    assert state["values"]["steps"] == ["step 1", "step 2"]
    assert state["metadata"]["graph_id"] == "counter"


async def test_every_stream_mode_and_subgraphs_are_named_as_langgraph_names_them(
        client: LangGraphClient) -> None:
    thread_id = await new_thread(client)
    modes = ["values", "updates", "messages", "messages-tuple", "custom", "events", "debug",
             "tasks", "checkpoints"]
    parts = [p async for p in client.runs.stream(thread_id, "nested", input={"count": 1},
                                                 stream_mode=modes, stream_subgraphs=True)]
    names = [p.event for p in parts]

    root = {n for n in names if "|" not in n}
    assert root >= {"metadata", "values", "updates", "events", "debug", "tasks", "checkpoints"}
    # With messages-tuple asked too, the messages come as tuples only, as
    # langgraph dev streams them (tests/e2e/test_reference_shapes.py).
    assert not any(n.startswith("messages/") for n in names)
    inner = {n.split("|")[0] for n in names if "|" in n}
    assert inner >= {"values", "updates", "tasks", "custom"}  # the writer is the subgraph's
    assert all(n.split("|")[1].startswith("inner:") for n in names if "|" in n)
    started = next(p.data for p in parts if p.event == "events")
    assert (started["event"], started["name"]) == ("on_chain_start", "nested")
    checkpoint = next(p.data for p in parts if p.event == "debug"
                      and p.data["type"] == "checkpoint")
    assert checkpoint["payload"]["checkpoint"]["thread_id"] == thread_id
    assert "owner" not in checkpoint["payload"]["metadata"]
    assert [p.data for p in parts if p.event == "values"][-1]["count"] == 2


async def test_a_resume_on_a_thread_not_interrupted_is_answered_as_langgraph_does(
        client: LangGraphClient) -> None:
    fresh = await new_thread(client)
    started = await client.runs.wait(fresh, "approve", command={"resume": "x"})
    # Nothing was waiting for it: the graph runs from its start, to its interrupt.
    assert isinstance(started, dict) and started["__interrupt__"][0]["value"] == {
        "question": "ok?"}

    done = await new_thread(client)
    first = await client.runs.wait(done, "counter", input={})
    again = await client.runs.wait(done, "counter", command={"resume": "x"})
    assert again == first  # nothing was waiting: nothing runs
    assert (await client.runs.list(done))[0]["status"] == "success"


async def test_an_interrupt_waits_for_a_resume(client: LangGraphClient) -> None:
    thread_id = await new_thread(client)
    paused = await client.runs.wait(thread_id, "approve", input={"messages": []})
    thread = await client.threads.get(thread_id)
    state = await client.threads.get_state(thread_id)

    assert isinstance(paused, dict) and paused["__interrupt__"][0]["value"] == {"question": "ok?"}
    assert thread["status"] == "interrupted"
    assert state["next"] == ["ask"]
    assert state["tasks"][0]["interrupts"][0]["value"] == {"question": "ok?"}

    done = await client.runs.wait(thread_id, "approve", command={"resume": "yes"})
    assert isinstance(done, dict)
    assert [m["content"] for m in done["messages"]] == ["answer: yes"]
    assert (await client.threads.get(thread_id))["status"] == "idle"
    assert (await client.threads.get_state(thread_id))["next"] == []


async def test_a_run_from_an_earlier_checkpoint_is_a_branch(client: LangGraphClient) -> None:
    thread_id = await new_thread(client)
    for _ in range(3):
        await client.runs.wait(thread_id, "counter", input={})
    history = await client.threads.get_history(thread_id, limit=20)
    # The first run's last checkpoint (every step's is kept, as langgraph dev keeps them).
    after_first = next(s for s in reversed(history) if s["values"].get("count") == 1
                       and not s["next"])["checkpoint"]["checkpoint_id"]
    old_head = history[0]["checkpoint"]["checkpoint_id"]

    branched = await client.runs.wait(thread_id, "counter", input={},
                                      checkpoint_id=after_first)

    assert isinstance(branched, dict) and branched["count"] == 2
    assert branched["steps"] == ["step 1", "step 2"]
    states = {s["checkpoint_id"]: s for s in await client.threads.get_history(thread_id,
                                                                             limit=50)}
    assert states[old_head]["values"]["count"] == 3  # the other branch is kept
    walked, at = [], (await client.threads.get_state(thread_id))["checkpoint_id"]
    while at is not None and at != after_first:  # from the new head back to the fork
        walked.append(at)
        at = states[at]["parent_checkpoint_id"]
    assert at == after_first and old_head not in walked


async def test_a_state_is_read_at_a_checkpoint_and_updated_as_a_node(
        client: LangGraphClient) -> None:
    thread_id = await new_thread(client)
    await client.runs.wait(thread_id, "counter", input={"count": 1})
    first = (await client.threads.get_state(thread_id))["checkpoint"]["checkpoint_id"]
    await client.runs.wait(thread_id, "counter", input={})

    updated = await client.threads.update_state(thread_id, {"count": 10}, as_node="step")
    after = await client.runs.wait(thread_id, "counter", input={})
    at_first = await client.threads.get_state(thread_id, checkpoint_id=first)
    by_body = await client.threads.get_state(thread_id, checkpoint={"checkpoint_id": first})

    assert updated["checkpoint"]["checkpoint_id"]
    assert isinstance(after, dict) and after["count"] == 11  # went on from the update
    assert at_first["values"]["count"] == 2 and by_body["values"] == at_first["values"]
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await client.threads.update_state(thread_id, {"count": 1}, as_node="nowhere")
    assert refused.value.response.status_code == 400  # as langgraph dev answers


async def test_an_ended_run_is_deleted_and_a_running_one_is_not(
        client: LangGraphClient, tmp_path: Path) -> None:
    thread_id = await new_thread(client)
    ended = await client.runs.create(thread_id, "counter", input={})
    await client.runs.join(thread_id, ended["run_id"])
    held = await client.runs.create(thread_id, "counter", input={"gate": str(tmp_path)})
    try:
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await client.runs.delete(thread_id, held["run_id"])
        assert refused.value.response.status_code == 409
    finally:
        (tmp_path / "go").touch()
    await client.runs.join(thread_id, held["run_id"])

    await client.runs.delete(thread_id, ended["run_id"])

    assert [r["run_id"] for r in await client.runs.list(thread_id)] == [held["run_id"]]
    with pytest.raises(httpx.HTTPStatusError) as gone:
        await client.runs.get(thread_id, ended["run_id"])
    assert gone.value.response.status_code == 404
    assert (await client.threads.get_state(thread_id))["values"]["count"] == 2  # stays


async def test_a_graph_made_per_run_is_served_too(client: LangGraphClient) -> None:
    thread_id = await new_thread(client)
    values = await client.runs.wait(thread_id, "made_per_run", input={"count": 41})
    assistants = await client.assistants.search(graph_id="made_per_run")

    assert isinstance(values, dict) and values["count"] == 42
    assert assistants[0]["description"] == "counter, per run"


async def test_a_graph_that_raises_ends_in_error_with_a_fixed_text(
        client: LangGraphClient) -> None:
    thread_id = await new_thread(client)
    await client.runs.wait(thread_id, "counter", input={})
    before = await client.threads.get_state(thread_id)
    parts = [p async for p in client.runs.stream(thread_id, "boom", input={})]
    runs = await client.runs.list(thread_id)

    error = next(p.data for p in parts if p.event == "error")
    assert "secret" not in str(error)
    assert runs[0]["status"] == "error"
    after = await client.threads.get_state(thread_id)
    assert after["checkpoint"] == before["checkpoint"]  # nothing of it stored


async def test_bad_runs_are_refused_naming_what_is_wrong(client: LangGraphClient) -> None:
    thread_id = await new_thread(client)
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await client.runs.wait(thread_id, "counter", input={"count": "many"})
    assert refused.value.response.status_code == 422
    assert refused.value.response.json()["detail"].startswith("input.count:")
    # As langgraph dev answers: not an assistant id nor a graph id 422, an
    # assistant id (a UUID) of no assistant 404.
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await client.runs.create(thread_id, "nope", input={})
    assert refused.value.response.status_code == 422 and "nope" in refused.value.response.text
    unknown = str(uuid.uuid4())
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await client.runs.create(thread_id, unknown, input={})
    assert refused.value.response.status_code == 404 and unknown in refused.value.response.text
    other = await new_thread(client)
    await client.runs.wait(other, "counter", input={})
    foreign = (await client.threads.get_state(other))["checkpoint"]["checkpoint_id"]
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await client.runs.create(thread_id, "counter", input={}, checkpoint_id=foreign)
    assert refused.value.response.status_code == 404
    assert "checkpoint" in refused.value.response.json()["detail"]
    assert await client.runs.list(thread_id) == []  # nothing was queued


async def test_a_run_whose_worker_is_sigkilled_is_stored_once(
        client: LangGraphClient, theirs: Stack, tmp_path: Path) -> None:
    thread_id = await new_thread(client)
    starts = tmp_path / "starts"
    run = await client.runs.create(thread_id, "counter", input={"gate": str(tmp_path)})
    deadline = time.monotonic() + 30
    while not starts.exists():  # the node is running, held at its gate
        assert time.monotonic() < deadline, "the run did not start"
        await asyncio.sleep(0.02)
    holder = next(w for w in theirs.workers if run["run_id"] in w.log())

    holder.kill()  # SIGKILL to the worker and its children
    theirs.workers.remove(holder)
    try:
        (tmp_path / "go").touch()
        values = await client.runs.join(thread_id, run["run_id"])
    finally:
        theirs.add_workers(1)  # the module's stack keeps two workers

    assert isinstance(values, dict) and values["count"] == 1 and values["steps"] == ["step 1"]
    assert starts.read_text().count("started") == 2  # the killed attempt, and the stored one
    assert (await client.runs.get(thread_id, run["run_id"]))["status"] == "success"


def test_a_graph_that_cannot_be_imported_stops_the_process_naming_it(
        tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import no_such_module_here\n")
    (tmp_path / "langgraph.json").write_text('{"graphs": {"broken": "./broken.py:graph"}}')
    started = subprocess.run(
        [sys.executable, "-c", "import worker.celery_app"], capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", "LANGGRAPH_CONFIG": str(tmp_path / "langgraph.json")},
        timeout=60, cwd=Path(__file__).parent.parent.parent)

    assert started.returncode == 2
    lines = started.stderr.strip().splitlines()
    assert len(lines) == 1 and "'broken'" in lines[0] and "no_such_module_here" in lines[0]
