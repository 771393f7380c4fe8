"""Traces: one chat turn is one trace, from the gateway's request through the
queue to the worker's run, its LLM call and its S3 writes, exported over
OTLP/HTTP to a receiver on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import stack_of_its_own
from tests.otlp import OtlpReceiver, Span
from tests.stack import Stack

pytestmark = [pytest.mark.e2e]

MODEL = "llama-3.3-70b-versatile"  # the stack's GROQ_MODEL


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def traced(s3_endpoint: str, receiver: OtlpReceiver,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own exporting to the receiver, its spans sent every 100 ms."""
    with stack_of_its_own(s3_endpoint, tmp_path_factory.mktemp("traced"), workers=1,
                          OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
                          OTEL_BSP_SCHEDULE_DELAY="100") as stack:
        yield stack


def _under(spans: list[Span], root: Span) -> list[Span]:
    """The spans below `root` in its trace."""
    children: dict[str, list[Span]] = {}
    for span in spans:
        children.setdefault(span.parent_id, []).append(span)
    found, todo = [], [root.span_id]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.span_id)
    return found


def _the_turn(spans: list[Span], thread_id: str) -> dict[str, Span] | None:
    """The request, run, LLM and PutObject spans of the thread's turn, if all
    have arrived in one trace, each where it belongs in it."""
    for run in spans:
        if run.name != "turn" or run.attributes.get("chat.thread.id") != thread_id:
            continue
        trace = [s for s in spans if s.trace_id == run.trace_id]
        request = next((s for s in trace if s.span_id == run.parent_id), None)
        below = _under(trace, run)
        llm = next((s for s in below if s.attributes.get("gen_ai.operation.name") == "chat"),
                   None)
        put = next((s for s in below if s.attributes.get("rpc.method") == "PutObject"), None)
        if request and llm and put:
            return {"request": request, "run": run, "llm": llm, "put": put}
    return None


def test_a_turn_is_one_trace_from_the_request_to_the_llm_and_s3(
        traced: Stack, receiver: OtlpReceiver) -> None:
    words = "trace this turn"
    reply = traced.client.post("/chat", json={"message": words})
    assert reply.status_code == 200, reply.text
    thread_id = reply.json()["thread_id"]

    turn = receiver.wait_for(lambda spans: _the_turn(spans, thread_id), timeout=30)

    request, run, llm, put = turn["request"], turn["run"], turn["llm"], turn["put"]
    assert request.service == "chat-gateway"
    assert request.kind == "SERVER"
    assert request.name == "POST /chat"
    assert run.service == "chat-worker"
    assert run.attributes["chat.job.id"] == reply.json()["job_id"]
    assert llm.service == "chat-worker"
    assert llm.kind == "CLIENT"
    assert llm.name == f"chat {MODEL}"
    assert llm.attributes["gen_ai.provider.name"] == "groq"
    assert llm.attributes["gen_ai.request.model"] == MODEL
    assert llm.attributes["gen_ai.conversation.id"] == thread_id
    assert llm.attributes["gen_ai.usage.input_tokens"] > 0
    assert llm.attributes["gen_ai.usage.output_tokens"] > 0
    assert put.kind == "CLIENT"
    assert put.attributes["rpc.system"] == "aws-api"
    assert put.attributes["rpc.service"] == "S3"
    assert put.attributes["http.status_code"] == 200
    # Users' words stay out of every span (the fake LLM's reply repeats them).
    assert not [s for s in receiver.spans
                if any(words in str(v) for v in s.attributes.values())]
    # The Celery task that carried the nudge is linked from the run.
    tasks = {s.span_id: s for s in receiver.spans
             if s.scope == "opentelemetry.instrumentation.celery"}
    assert any(tasks[link].name == "run/chat.run_turn"
               for link in run.links if link in tasks), run.links
    # The gateway's publish of that task is in the request's trace, though a
    # thread of its own sends it (api/publisher.py).
    published = receiver.wait_for(lambda spans: [
        s for s in spans if s.name == "apply_async/chat.run_turn"
        and s.trace_id == request.trace_id], timeout=10)
    assert [s.service for s in published] == ["chat-gateway"], published


def test_background_commands_make_no_traces_of_their_own(
        traced: Stack, receiver: OtlpReceiver) -> None:
    # The gateway's event hub and the worker's cancel watch wait on Redis all
    # the time: none of those commands may start a trace.
    traced.client.get("/readyz").raise_for_status()
    roots = [s for s in receiver.spans if not s.parent_id]
    assert {s.scope for s in roots} <= {"opentelemetry.instrumentation.fastapi",
                                        "opentelemetry.instrumentation.celery"}, roots
    assert not [s for s in roots if s.name.startswith("GET /readyz")]
