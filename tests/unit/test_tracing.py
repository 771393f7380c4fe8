"""shared.tracing without servers: when it turns on, and how a run's span
joins the request's trace. A provider of the test's own, never the global one."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import tracing
from shared.store.job import Job


@pytest.fixture
def exported() -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


@pytest.mark.parametrize(("env", "on"), [
    ({}, False),
    ({"OTEL_SERVICE_NAME": "x"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4318"}, False),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4318"}, False),
])
def test_on_only_when_the_otel_variables_ask(env: dict[str, str], on: bool) -> None:
    assert tracing.wanted(env) is on


@pytest.mark.parametrize("env", [
    {"OTEL_TRACES_EXPORTER": "zipkin"},
    {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
])
def test_a_setting_it_cannot_honour_stops_the_process_naming_it(
        env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        tracing.setup_tracing("test", env=env)
    line = capsys.readouterr().err.strip()
    assert line.startswith("invalid configuration: OTEL_")


def test_off_it_carries_nothing_and_opens_no_span() -> None:
    assert tracing.current_context() is None
    with tracing.run_span('{"traceparent": "x"}', "job", "thread"):
        assert not trace.get_current_span().get_span_context().is_valid


def test_the_run_span_is_a_child_of_the_request_and_links_the_task(
        exported: tuple[trace.Tracer, InMemorySpanExporter]) -> None:
    tracer, exporter = exported
    with tracer.start_as_current_span("POST /chat") as request:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
    with tracer.start_as_current_span("run/chat.run_turn") as task, \
            tracing._run_span(tracer, json.dumps(carrier), "j1", "t1"):
        pass
    run = next(s for s in exporter.get_finished_spans() if s.name == "turn")
    assert run.parent is not None
    assert run.parent.span_id == request.get_span_context().span_id
    assert run.context.trace_id == request.get_span_context().trace_id
    assert [link.context.span_id for link in run.links] == [task.get_span_context().span_id]
    assert dict(run.attributes or {}) == {"chat.job.id": "j1", "chat.thread.id": "t1"}


@pytest.mark.parametrize("carried", [None, "", "not json", "[1]", '{"traceparent": "bad"}'])
def test_without_a_usable_context_the_run_is_a_child_of_the_task(
        exported: tuple[trace.Tracer, InMemorySpanExporter], carried: str | None) -> None:
    tracer, exporter = exported
    with tracer.start_as_current_span("run/chat.run_turn") as task, \
            tracing._run_span(tracer, carried, "j1", "t1"):
        pass
    run = next(s for s in exporter.get_finished_spans() if s.name == "turn")
    assert run.parent is not None and run.parent.span_id == task.get_span_context().span_id
    assert not run.links


def test_children_only_starts_no_trace(
        exported: tuple[trace.Tracer, InMemorySpanExporter]) -> None:
    tracer, exporter = exported
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    children = tracing.ChildrenOnly(provider).get_tracer("redis")
    with children.start_as_current_span("XREAD") as alone:
        assert not alone.is_recording()
    assert not children.start_span("GET").is_recording()
    with tracer.start_as_current_span("POST /chat"), \
            children.start_as_current_span("EVALSHA") as inside:
        assert inside.is_recording()
    assert [s.name for s in exporter.get_finished_spans()] == ["EVALSHA", "POST /chat"]


def test_the_job_record_keeps_the_context_and_stores_nothing_without_one() -> None:
    job = Job(job_id="j", thread_id="t", created_at=1.0)
    assert "trace" not in job.to_redis()
    carried = Job(job_id="j", thread_id="t", created_at=1.0, trace='{"traceparent":"00-x"}')
    assert Job.from_redis(carried.to_redis()).trace == carried.trace
