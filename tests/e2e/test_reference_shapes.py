"""Our LangGraph Server API against the reference, `langgraph dev`, on the same graphs.

Both servers run the user graphs of tests/data/user_graphs (a counter, a
streaming chat model, a subgraph, an interrupt) and get the same requests;
`tests.reference.Pair` diffs status codes, JSON keys and values (ids and
times by type only) and, for streams, event names and each event's data.
Threads are made with the same id on both, so the requests are the same;
run and checkpoint ids differ and are passed per side.

`langgraph dev` is installed once into a cache outside the checkout; the
module skips, saying why, only when that install fails (PyPI out of reach).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import stack_of_its_own, user_project
from tests.reference import Pair, Unavailable, reference_venv, start_reference

pytestmark = [pytest.mark.e2e]

GRAPHS = ["counter", "talker", "nested", "approve"]
MODES = ["values", "updates", "messages", "messages-tuple", "custom", "events", "debug",
         "tasks", "checkpoints"]
HI = {"messages": [{"role": "user", "content": "hi"}]}

# Where the reference's answers legitimately differ from ours: a pattern
# (fnmatch, on "METHOD /path: $.json.path" of a difference) and why.
ALLOWED = {
    # Which server this is, and what it runs on.
    "GET /info: $.body.version": "our own version, not langgraph-api's",
    "GET /info: $.body.host": "where a LangGraph Platform deployment runs; we are none",
    "GET /info: $.body.flags.crons": "we serve no crons (the contract leaves them out)",
    "GET /info: $.body.flags.langsmith_*": "LangSmith tracing of runs is not ours to offer",
    "GET /ok: $.body.services": "the platform's own services' health; we have /readyz",
    # What langgraph-api writes into every run's config and metadata from its
    # platform: deployment, LangSmith, its custom auth, its request bookkeeping.
    "*.langgraph_version": "platform deployment info",
    "*.langgraph_api_version": "platform deployment info",
    "*.langgraph_plan": "platform deployment info",
    "*.langgraph_host": "platform deployment info",
    "*.langgraph_api_url": "platform deployment info",
    "*.langgraph_request_id": "langgraph-api's request bookkeeping",
    "*.__request_start_time_ms__": "langgraph-api's request bookkeeping",
    "*.__after_seconds__": "langgraph-api's delayed runs (after_seconds: refused here)",
    "*.langgraph_auth_user*": "langgraph-api's custom auth; we have API keys, no user objects",
    "*.langgraph_auth_permissions": "langgraph-api's custom auth",
    "*.user_id": "langgraph-api's custom auth",
    "*.created_by": "langgraph-api's marker for runs of system-made assistants",
    "*.run_attempt": "ours: a run's attempt is in the stream's metadata event",
    "*.langsmith_session_name": "LangSmith tracing is not ours to offer",
    # We stamp each message given as a dict with the time the run was accepted,
    # so history shows when it was sent (README, "Graphs"); langgraph dev does not.
    "*.additional_kwargs.created_at": "ours: when the message was sent",
    "*.additional_kwargs": "a message given as a dict: ours holds created_at (above)",
    # A checkpoint's metadata: langgraph-api copies the thread's metadata into
    # each run's; we keep it on the thread only (every retained checkpoint
    # would store it again, and the thread's head is read whole by every run).
    "*.metadata.tag": "the thread's metadata, not copied into its checkpoints",
    "*.metadata.more": "the thread's metadata, not copied into its checkpoints",
    # A run's arguments (kwargs): ours show the config its graph gets, whose
    # metadata names the thread and run as its checkpoints record them; and
    # every run's stream can be resumed here, whatever it asked.
    "*.kwargs.config.metadata.run_id": "ours: the config the graph got",
    "*.__pregel_node_finished": "langgraph-api's own hook in a run's configurable",
    # LangGraph's savers leave the thread id out of a checkpoint's metadata
    # (get_checkpoint_metadata: it is in the checkpoint's config); ours too.
    "*.metadata.thread_id": "the thread is the checkpoint's config, not its metadata",
    "*.kwargs.resumable": "ours: every run's events are kept",
    # The state at a checkpoint named by id: ours names its (root) namespace,
    # as every other state does; langgraph dev leaves it out there only.
    "GET /threads/<id>/state/{c}: $.body.checkpoint.checkpoint_ns": "ours names the namespace",
    # The contract takes a graph id wherever an assistant id goes; langgraph dev
    # takes one in runs, and refuses it (422) on the assistants' own routes.
    **{f"GET /assistants/{graph}*: $.status": "ours takes a graph id here too"
       for graph in GRAPHS},
}


@pytest.fixture(scope="module")
def graphs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return user_project(tmp_path_factory.mktemp("their-project"))


@pytest.fixture(scope="module")
def reference(graphs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of `langgraph dev` serving the user graphs."""
    try:
        venv = reference_venv()
    except Unavailable as exc:
        pytest.skip(f"langgraph-cli[inmem] cannot be installed here: {exc}")
    server = start_reference(venv, graphs_dir / "langgraph.json",
                             tmp_path_factory.mktemp("langgraph-dev"))
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pair(reference: str, graphs_dir: Path, s3_endpoint: str,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with stack_of_its_own(s3_endpoint, tmp_path_factory.mktemp("ours"), workers=1,
                          LANGGRAPH_CONFIG=str(graphs_dir / "langgraph.json")) as ours, \
            httpx.Client(base_url=reference, timeout=90) as theirs:
        yield Pair(ours.client, theirs, ALLOWED)


def new_thread(pair: Pair, **metadata: Any) -> str:
    """A thread with the same id on both servers."""
    thread_id = str(uuid.uuid4())
    pair.ask("POST", "/threads", json={"thread_id": thread_id, "metadata": metadata})
    return thread_id


def run_ids(pair: Pair, thread_id: str,
            body: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """A background run on the thread on both servers: each side's run id."""
    ours, theirs = pair.ask("POST", f"/threads/{thread_id}/runs", json=body)
    return {"run_id": ours.body["run_id"]}, {"run_id": theirs.body["run_id"]}


def test_info_and_ok(pair: Pair) -> None:
    pair.ask("GET", "/info")
    pair.ask("GET", "/ok")
    pair.check()


@pytest.mark.parametrize("graph", GRAPHS)
def test_assistants(pair: Pair, graph: str) -> None:
    ours, _ = pair.ask("POST", "/assistants/search", json={"graph_id": graph})
    assistant_id = ours.body[0]["assistant_id"]
    for path in ("", "/graph", "/graph?xray=true", "/schemas", "/subgraphs",
                 "/subgraphs?recurse=true"):
        pair.ask("GET", f"/assistants/{assistant_id}{path}")
        pair.ask("GET", f"/assistants/{graph}{path}")  # a graph id where an assistant id goes
    pair.check()


def test_threads(pair: Pair) -> None:
    tag = str(uuid.uuid4())
    thread_id = new_thread(pair, tag=tag)
    pair.ask("POST", "/threads", json={"thread_id": thread_id, "if_exists": "do_nothing"})
    pair.ask("POST", "/threads", json={"thread_id": thread_id})  # taken: 409
    pair.ask("GET", f"/threads/{thread_id}")
    pair.ask("GET", f"/threads/{thread_id}/state")  # before any run
    # No checkpoint named: the latest, so before any run the empty state.
    pair.ask("POST", f"/threads/{thread_id}/state/checkpoint", json={"checkpoint": {}})
    pair.ask("PATCH", f"/threads/{thread_id}", json={"metadata": {"more": 1}})
    pair.ask("POST", f"/threads/{thread_id}/runs/wait",
             json={"assistant_id": "counter", "input": HI})
    pair.ask("POST", "/threads/search", json={"metadata": {"tag": tag}})
    pair.ask("POST", "/threads/search", json={"metadata": {"tag": tag}, "status": "idle"})
    pair.ask("GET", f"/threads/{thread_id}")
    ours, theirs = pair.ask("GET", f"/threads/{thread_id}/state")
    pair.ask("POST", f"/threads/{thread_id}/history", json={"limit": 10})
    at = ({"c": ours.body["checkpoint_id"]}, {"c": theirs.body["checkpoint_id"]})
    pair.ask("GET", f"/threads/{thread_id}/state/{{c}}", ids=at)
    pair.ask("POST", f"/threads/{thread_id}/state",
             json={"values": {"count": 10}, "as_node": "step"})
    pair.ask("POST", f"/threads/{thread_id}/state", json={"values": {"count": 1},
                                                          "as_node": "no_such_node"})
    pair.ask("GET", f"/threads/{thread_id}/state")
    pair.check()
    # The copy: ours shows it with the state it was given, as a GET of it
    # would; langgraph dev answers its record made before its state was copied.
    ours, theirs = pair.ask("POST", f"/threads/{thread_id}/copy", allowed={
        "*: $.body.values": "ours: the copy's state", "*: $.body.error": "the same",
        "*: $.body.interrupts": "the same", "*: $.body.config.configurable": "the same"})
    copies = ({"t": ours.body["thread_id"]}, {"t": theirs.body["thread_id"]})
    pair.ask("GET", "/threads/{t}/state", ids=copies)
    pair.ask("DELETE", "/threads/{t}", ids=copies)
    pair.ask("DELETE", f"/threads/{thread_id}")
    pair.ask("GET", f"/threads/{thread_id}")
    pair.check()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("graph", ["counter", "talker", "nested", "approve"])
def test_stream_mode(pair: Pair, graph: str, mode: str) -> None:
    thread_id = new_thread(pair)
    for subgraphs in [False, True] if graph == "nested" else [False]:
        pair.ask("POST", f"/threads/{thread_id}/runs/stream",
                 json={"assistant_id": graph, "input": HI, "stream_mode": mode,
                       "stream_subgraphs": subgraphs})
    pair.check()


def test_all_modes_at_once(pair: Pair) -> None:
    thread_id = new_thread(pair)
    pair.ask("POST", f"/threads/{thread_id}/runs/stream",
             json={"assistant_id": "talker", "input": HI, "stream_mode": MODES})
    pair.check()


def test_interrupt_and_resume(pair: Pair) -> None:
    thread_id = new_thread(pair)
    pair.ask("POST", f"/threads/{thread_id}/runs/wait",
             json={"assistant_id": "approve", "input": HI})
    pair.ask("GET", f"/threads/{thread_id}")
    pair.ask("GET", f"/threads/{thread_id}/state")
    pair.ask("POST", "/threads/search", json={"ids": [thread_id], "status": "interrupted"})
    pair.ask("POST", f"/threads/{thread_id}/runs/stream",
             json={"assistant_id": "approve", "command": {"resume": "yes"},
                   "stream_mode": ["values", "updates"]})
    pair.ask("GET", f"/threads/{thread_id}")
    pair.check()


def test_runs(pair: Pair, tmp_path: Path) -> None:
    thread_id = new_thread(pair)
    # Resumable: langgraph dev keeps its events for a join after its end.
    ids = run_ids(pair, thread_id, {"assistant_id": "counter", "input": HI,
                                    "stream_resumable": True})
    pair.ask("GET", f"/threads/{thread_id}/runs/{{run_id}}/join", ids=ids)
    pair.ask("GET", f"/threads/{thread_id}/runs/{{run_id}}", ids=ids)
    pair.ask("GET", f"/threads/{thread_id}/runs/{{run_id}}/stream", ids=ids,
             headers={"Last-Event-ID": "-1"})
    pair.ask("GET", f"/threads/{thread_id}/runs")
    pair.ask("POST", f"/threads/{thread_id}/runs/{{run_id}}/cancel", ids=ids)  # ended
    pair.ask("DELETE", f"/threads/{thread_id}/runs/{{run_id}}", ids=ids)
    pair.ask("GET", f"/threads/{thread_id}/runs/{{run_id}}", ids=ids)
    pair.check()


def test_cancel_a_running_run(pair: Pair, tmp_path: Path) -> None:
    # The counter waits for a file "go" in its gate folder: the run is running
    # when it is cancelled, on both servers.
    thread_id = new_thread(pair)
    ids = run_ids(pair, thread_id, {"assistant_id": "counter",
                                    "input": {**HI, "gate": str(tmp_path)}})
    pair.ask("POST", f"/threads/{thread_id}/runs/{{run_id}}/cancel?wait=true", ids=ids)
    pair.ask("GET", f"/threads/{thread_id}/runs/{{run_id}}", ids=ids)
    # A cancelled run stores nothing here: the thread has no state, hence no
    # config of the run that made it; langgraph dev shows its run's config.
    pair.ask("GET", f"/threads/{thread_id}",
             allowed={"*: $.body.config.configurable": "ours: no state, no run config"})
    pair.check()


def test_stateless_runs(pair: Pair) -> None:
    pair.ask("POST", "/runs/wait", json={"assistant_id": "counter", "input": HI})
    pair.ask("POST", "/runs/stream", json={"assistant_id": "counter", "input": HI,
                                           "stream_mode": ["values", "updates"]})
    pair.check()


@pytest.mark.parametrize("request_", [
    ("POST", "/threads/{t}/runs/wait", {"assistant_id": "no_such_graph", "input": HI}),
    ("POST", "/threads/{u}/runs/wait", {"assistant_id": "counter", "input": HI}),
    ("POST", "/threads/{t}/runs/stream", {"assistant_id": "counter", "input": HI,
                                          "stream_mode": "no_such_mode"}),
    ("POST", "/threads/{t}/runs/wait", {"assistant_id": "counter", "input": 5}),
    ("POST", "/threads/{t}/runs", {"assistant_id": "counter"}),
    ("GET", "/threads/{u}", None),
    ("GET", "/threads/{u}/state", None),
    ("GET", "/threads/{t}/runs/{u}", None),
    ("GET", "/assistants/no_such_graph", None),
    ("POST", "/threads", {"metadata": "not an object"}),
], ids=["unknown-assistant", "unknown-thread", "bad-stream-mode", "bad-input", "no-input",
        "get-unknown-thread", "state-of-unknown-thread", "unknown-run", "unknown-assistant-get",
        "bad-thread-body"])
def test_errors(pair: Pair, request_: tuple[str, str, Any]) -> None:
    method, path, body = request_
    thread_id = new_thread(pair)
    allowed = {}
    if body is not None and body.get("input") == 5:
        # Input that does not fit the graph's input schema: we refuse it
        # before anything is queued (issue 20, "Bad input"); langgraph dev
        # runs it and answers 200 with the run's error.
        allowed["*: $.status"] = "ours: 422 before anything is queued"
    pair.ask(method, path.format(t=thread_id, u=uuid.uuid4()), json=body, allowed=allowed)
    pair.check()


def test_assistants_crud(pair: Pair) -> None:
    assistant_id = str(uuid.uuid4())
    pair.ask("POST", "/assistants", json={"assistant_id": assistant_id, "graph_id": "counter",
                                          "name": "mine", "metadata": {"k": "v"}})
    pair.ask("PATCH", f"/assistants/{assistant_id}", json={"metadata": {"k": "w"}})
    pair.ask("POST", f"/assistants/{assistant_id}/versions", json={})
    pair.ask("POST", f"/assistants/{assistant_id}/latest", json={"version": 1})
    pair.ask("DELETE", f"/assistants/{assistant_id}")
    pair.ask("GET", f"/assistants/{assistant_id}")
    pair.check()
