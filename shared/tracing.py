"""OpenTelemetry traces, off unless the standard OTEL_* variables ask for them.

One trace per run: the gateway's request span (FastAPI's instrumentation),
the worker's span of the run (`run_span`), and under it the run's Redis
commands, S3 requests (aiobotocore's instrumentation, from
opentelemetry-instrumentation-botocore) and chat-model calls (the GenAI
spans of opentelemetry-instrumentation-genai-langchain). Celery's
instrumentation adds a span per task sent and run.

The request's context reaches the worker in the job's record (`Job.trace`),
not only in the task's headers: a task is only a nudge for its thread, so
the job a worker runs may be another one than the task named (a turn passed
on by the thread's previous one, or a nudge the recovery sweep sent). The
run span takes the record's context as its parent and links the task's span.

Off (no variable set), nothing here imports the SDK: `current_context` and
`run_span` cost a test of one global.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context

if TYPE_CHECKING:
    from fastapi import FastAPI

# Probes and scrapes every few seconds would each make a trace of their own.
DEFAULT_EXCLUDED_URLS = "healthz,readyz,metrics,static"
SUPPORTED_EXPORTERS = frozenset({"otlp", "console"})
SUPPORTED_PROTOCOLS = frozenset({"http/protobuf"})

_tracer: trace.Tracer | None = None
_NOTHING: AbstractContextManager[None] = contextlib.nullcontext()


def wanted(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the OTEL_* variables ask for traces: an OTLP endpoint, or an
    exporter other than `none`, and the SDK not disabled."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER")
    if exporters is not None:
        return any(e.strip().lower() not in ("", "none") for e in exporters.split(","))
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def setup_tracing(service: str, *, chat_models: bool = False,
                  env: Mapping[str, str] = os.environ) -> bool:
    """Turns tracing on in this process if the OTEL_* variables ask for it;
    returns whether it is on. Once per process; later calls change nothing.

    `service`: the service.name unless OTEL_SERVICE_NAME (or service.name in
    OTEL_RESOURCE_ATTRIBUTES) names one. `chat_models`: also trace
    LangChain's chat-model calls (the worker). A setting this cannot honour
    stops the process with one line naming it.
    """
    global _tracer
    if _tracer is not None:
        return True
    if not wanted(env):
        return False
    exporters = _exporter_names(env)
    provider = _provider(service, exporters)
    trace.set_tracer_provider(provider)
    _instrument(provider, chat_models)
    _tracer = provider.get_tracer(__name__)
    return True


def _exporter_names(env: Mapping[str, str]) -> list[str]:
    names = [e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    names = [n for n in names if n and n != "none"]
    for name in names:
        if name not in SUPPORTED_EXPORTERS:
            _refuse(f"OTEL_TRACES_EXPORTER: {name!r} is not available here "
                    f"(one of {', '.join(sorted(SUPPORTED_EXPORTERS))})")
    if "otlp" in names:
        for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
            protocol = env.get(variable)
            if protocol is not None:
                if protocol.strip().lower() not in SUPPORTED_PROTOCOLS:
                    _refuse(f"{variable}: only http/protobuf is installed, not {protocol!r}")
                break
    return names


def _refuse(line: str) -> None:
    print(f"invalid configuration: {line}", file=sys.stderr)
    raise SystemExit(2)


def _provider(service: str, exporters: Sequence[str]) -> Any:
    # The SDK reads the rest of the OTEL_* variables itself: endpoint, headers,
    # timeout and compression (the exporter), OTEL_BSP_* (the batch
    # processor), OTEL_TRACES_SAMPLER (the provider), OTEL_RESOURCE_ATTRIBUTES.
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service}))
    provider = TracerProvider(resource=resource)
    for name in exporters:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    return provider


def _instrument(provider: Any, chat_models: bool) -> None:
    from opentelemetry.instrumentation.botocore import AiobotocoreInstrumentor
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    children_only = ChildrenOnly(provider)
    RedisInstrumentor().instrument(tracer_provider=children_only)
    AiobotocoreInstrumentor().instrument(tracer_provider=children_only)
    CeleryInstrumentor().instrument(tracer_provider=provider)
    if chat_models:
        from opentelemetry.instrumentation.genai.langchain import LangChainInstrumentor

        # It declares the `langchain` package as what it instruments; what it
        # hooks (langchain-core's callback managers, LangGraph's Pregel) is
        # all we have of it.
        LangChainInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)


def instrument_app(app: FastAPI) -> None:
    """A server span per request to the gateway, if tracing is on."""
    if _tracer is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    excluded = os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", DEFAULT_EXCLUDED_URLS)
    # exclude_spans: no span per ASGI message (every SSE event would be one).
    FastAPIInstrumentor.instrument_app(app, excluded_urls=excluded,
                                       exclude_spans=["receive", "send"])


def current_context() -> str | None:
    """The current trace context as a job's record carries it (the W3C
    headers, as JSON); None when tracing is off or no span is current."""
    if _tracer is None:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return json.dumps(carrier, separators=(",", ":")) if carrier else None


def run_span(carried: str | None, job_id: str, thread_id: str) -> AbstractContextManager[None]:
    """The worker's span of one run of a job, a child of the request that
    queued it (`carried`: its `current_context`), linked to the task's span.
    Without a carried context it is a child of the current span (the task's)."""
    if _tracer is None:
        return _NOTHING
    return _run_span(_tracer, carried, job_id, thread_id)


@contextlib.contextmanager
def _run_span(tracer: trace.Tracer, carried: str | None, job_id: str,
              thread_id: str) -> Iterator[None]:
    parent, links = None, []
    request = _extract(carried)
    if request is not None:
        parent = request
        here = trace.get_current_span().get_span_context()
        if here.is_valid:
            links.append(trace.Link(here))
    with tracer.start_as_current_span(
            "turn", context=parent, links=links,
            attributes={"chat.job.id": job_id, "chat.thread.id": thread_id}):
        yield


def _extract(carried: str | None) -> Context | None:
    if not carried:
        return None
    try:
        carrier = json.loads(carried)
    except ValueError:
        return None  # a record written by something else: the run is traced alone
    if not isinstance(carrier, dict):
        return None
    context = propagate.extract({str(k): str(v) for k, v in carrier.items()})
    return context if trace.get_current_span(context).get_span_context().is_valid else None


class ChildrenOnly(trace.TracerProvider):
    """A provider whose tracers start spans only inside a trace already begun.

    For Redis and S3: their instrumentations would make a trace of one span
    of every command sent outside a request or a task, and the processes'
    background loops send one every few milliseconds (the gateway's blocking
    XREADs for waiting clients, the worker's cancel watch, the recovery sweep).
    """

    def __init__(self, provider: trace.TracerProvider) -> None:
        self._provider = provider

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _ChildTracer(self._provider.get_tracer(*args, **kwargs))


class _ChildTracer(trace.Tracer):
    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def start_span(self, name: str, context: Context | None = None,
                   *args: Any, **kwargs: Any) -> trace.Span:
        if not trace.get_current_span(context).get_span_context().is_valid:
            return trace.INVALID_SPAN
        return self._tracer.start_span(name, context, *args, **kwargs)

    # The API's own decorator is private; what callers get is the same kind
    # of context manager.
    @contextlib.contextmanager
    def start_as_current_span(  # type: ignore[override]
            self, name: str, context: Context | None = None,
            *args: Any, **kwargs: Any) -> Iterator[trace.Span]:
        if not trace.get_current_span(context).get_span_context().is_valid:
            yield trace.INVALID_SPAN
            return
        with self._tracer.start_as_current_span(name, context, *args, **kwargs) as span:
            yield span
