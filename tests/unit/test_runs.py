"""The run model as it crosses the queue (no servers)."""

from __future__ import annotations

import json

from shared.runs import RunSpec, chat_run
from shared.store.job import Job


def test_a_run_crosses_the_queue_whole_and_short() -> None:
    full = RunSpec("agent", "a1", input={"n": 1}, command=None, config={"tags": ["x"]},
                   context={"language": "Welsh"}, checkpoint_id="c1",
                   stream_mode=["values", "messages-tuple"], stream_subgraphs=True,
                   interrupt_before=["ask"], metadata={"k": "v"}, durability="async",
                   join_chunks=True)
    plain = RunSpec("agent", "a1")

    assert RunSpec.from_json(full.to_json()) == full
    assert RunSpec.from_json(plain.to_json()) == plain
    assert json.loads(plain.to_json()) == {"graph_id": "agent", "assistant_id": "a1"}


def test_the_worker_streams_what_the_run_asked_and_updates() -> None:
    asked = RunSpec("g", "a", stream_mode=["messages-tuple", "custom", "events"])
    # Both message modes are LangGraph's "messages"; "events" is a stream of its own.
    assert asked.worker_modes() == ["custom", "messages", "updates"]


def test_a_job_queued_before_runs_existed_is_read_as_its_chat_run() -> None:
    old = {"job_id": "j1", "thread_id": "t1", "status": "queued", "created_at": "1.0",
           "message": "hello", "language": "French"}
    job = Job.from_redis(old)
    spec = RunSpec.from_json(job.run)

    assert job.title == "hello"
    assert spec == chat_run("chat", "j1", "hello", "French")
    assert spec.input == {"messages": [{"type": "human", "content": "hello", "id": "j1-human"}]}
    assert Job.from_redis({**old, "run": spec.to_json()}).run == spec.to_json()
