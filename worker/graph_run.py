"""Running one run of any declared graph, its state in S3, its stream in Redis.

The graph is compiled with the worker's checkpointer (the S3 saver, holding
the run's writes until the run has succeeded: `worker.deferred`; and seeing
the thread by its stored id while the graph sees the client's:
`shared.scoped_saver`). It starts
from the thread's latest checkpoint, or from the one the run names (a
branch), and streams the modes the run asked for into the job's events. A
run ends at the graph's end or at an interrupt(); either way what it stores
(its last checkpoint, or every step's, as its `durability` says) is written
together once it has ended.

Nothing here knows any graph: the chat graph is one among others.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, cast

from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import Command

from shared import metrics
from shared.conversation import CREATED_AT, OWNER_FIELD
from shared.graphs import Graph
from shared.runs import MESSAGE_EVENT, RUN_ID_FIELD, RunSpec
from shared.scoped_saver import hidden_config
from shared.store.job import Job
from worker.errors import RejectedError
from worker.ratelimit import LlmGate
from worker.runtime import Resources
from worker.streaming import EventBatcher, event_type

INTERRUPT = "__interrupt__"


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: the text of its last AI message, and whether it
    stopped at an interrupt()."""

    reply: str
    interrupted: bool


class UnknownGraph(RejectedError):
    """The run names a graph this worker does not declare (its langgraph.json
    differs from the gateway's)."""

    def __init__(self, graph_id: str) -> None:
        super().__init__(f"unknown graph {graph_id!r}", "the run's graph is not served here")


def run_config(job: Job, spec: RunSpec) -> dict[str, Any]:
    """The LangGraph config of the run (`RunSpec.langgraph_config`), with the
    run id LangChain's callbacks and events name the root run by."""
    return {**spec.langgraph_config(job.job_id, job.thread_id),
            "run_id": uuid.UUID(hex=job.job_id)}


async def stored_already(res: Resources, job: Job) -> RunOutcome | None:
    """What an earlier attempt of the job stored, if it got that far (it was
    killed between storing the run and recording its end)."""
    config = {"configurable": {"thread_id": job.thread_id, "checkpoint_ns": ""}}
    saved = await res.saver.aget_tuple(cast(RunnableConfig, config))
    if saved is None or saved.metadata.get(RUN_ID_FIELD) != job.job_id:
        return None
    values = saved.checkpoint["channel_values"]
    interrupted = any(w[1] == INTERRUPT for w in saved.pending_writes or [])
    return RunOutcome(last_ai_text(values), interrupted)


def _ref(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """A checkpoint as a `debug` event names it (None if the config names none)."""
    configurable = (config or {}).get("configurable") or {}
    if not configurable.get("thread_id") or not configurable.get("checkpoint_id"):
        return None
    ref = {"checkpoint_id": configurable["checkpoint_id"],
           "thread_id": configurable["thread_id"]}
    if "checkpoint_ns" in configurable:
        ref["checkpoint_ns"] = configurable["checkpoint_ns"] or ""
    if "checkpoint_map" in configurable:
        ref["checkpoint_map"] = configurable["checkpoint_map"]
    return ref


def _task(task: Any) -> Any:
    # A subgraph's task names its checkpoint; its config says no more than that.
    configurable = ((task.get("state") or {}).get("configurable")
                    if isinstance(task, dict) and isinstance(task.get("state"), dict) else None)
    if not configurable:
        return task
    shown = hidden_config({"configurable": configurable})["configurable"]
    return {**{k: v for k, v in task.items() if k != "state"}, "checkpoint": shown}


def _shown(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint without the owner stored with it, nor the thread's stored id."""
    shown = {key: hidden_config(value) if key in ("config", "parent_config") else value
             for key, value in checkpoint.items()}
    metadata = checkpoint.get("metadata")
    if isinstance(metadata, dict) and OWNER_FIELD in metadata:
        shown["metadata"] = {k: v for k, v in metadata.items() if k != OWNER_FIELD}
    return shown


def for_client(mode: str, data: Any) -> Any:
    """A stream part as the client sees it: a checkpoint without the owner
    stored with it nor the thread's stored id, and a `debug` checkpoint with
    the checkpoint, its parent and its subgraph tasks' checkpoints named, as
    the LangGraph Server names them."""
    if mode == "checkpoints" and isinstance(data, dict):
        return _shown(data)
    if mode != "debug" or not isinstance(data, dict) or data.get("type") != "checkpoint":
        return data
    payload = _shown(data.get("payload") or {})
    return {**data, "payload": {**payload, "checkpoint": _ref(payload.get("config")),
                                "parent_checkpoint": _ref(payload.get("parent_config")),
                                "tasks": [_task(t) for t in payload.get("tasks", [])]}}


def stamped(graph_input: Any, accepted_at: float) -> Any:
    """The run's input with each message given as a dict stamped with the time
    the gateway accepted the run (Redis's clock) unless it has a time: history
    shows when a message was sent, and the turns of a thread in that order."""
    if not isinstance(graph_input, dict) or not isinstance(graph_input.get("messages"), list):
        return graph_input
    messages = []
    for message in graph_input["messages"]:
        if isinstance(message, dict):
            extra = message.get("additional_kwargs") or {}
            if CREATED_AT not in extra:
                message = {**message, "additional_kwargs": {**extra, CREATED_AT: accepted_at}}
        messages.append(message)
    return {**graph_input, "messages": messages}


def last_ai_text(value: Any) -> str:
    """The text of the last AI message in a state's values or a node's update."""
    found = ""
    values = value.values() if isinstance(value, dict) else [value]
    for item in values:
        for message in item if isinstance(item, list | tuple) else [item]:
            if isinstance(message, AIMessage):
                found = message.text
    return found


async def _parts(graph: Graph, graph_input: Any, config: dict[str, Any],
                 spec: RunSpec) -> AsyncGenerator[tuple[tuple[str, ...], str, Any], None]:
    """The run's stream parts as (namespace, mode, data); with the `events`
    mode, LangChain's run events (astream_events v2) come as mode "events",
    and the other modes' parts are taken from the root run's stream events."""
    options: dict[str, Any] = dict(
        context=spec.context, durability=spec.durability, stream_mode=spec.worker_modes(),
        subgraphs=spec.stream_subgraphs, interrupt_before=spec.interrupt_before,
        interrupt_after=spec.interrupt_after)
    streaming: Any = graph  # the run's modes are strings checked by the gateway
    if "events" not in spec.stream_mode:
        async for part in streaming.astream(graph_input, config, **options):
            yield part if len(part) == 3 else ((), *part)
        return
    root = str(config["run_id"])
    async for event in streaming.astream_events(graph_input, config, version="v2", **options):
        if event["event"] == "on_chain_stream" and event["run_id"] == root:
            part = event["data"]["chunk"]
            yield part if len(part) == 3 else ((), *part)
        else:
            yield (), "events", event


async def run_graph(res: Resources, job: Job, spec: RunSpec) -> RunOutcome:
    """Runs the graph to its end or its interrupt, streaming the run's modes."""
    entry = res.graphs.find(spec.graph_id)
    if entry is None:
        raise UnknownGraph(spec.graph_id)
    config = run_config(job, spec)
    config["callbacks"] = [LlmGate(res.limiter, job.client, prepaid=True)]
    graph = entry.compiled(res.checkpointer, cast(RunnableConfig, config))
    graph_input = (Command(**spec.command) if spec.command
                   else stamped(spec.input, job.created_at))
    wanted = {"messages" if m == "messages-tuple" else m for m in spec.stream_mode}
    first = True

    async def send(events: list[tuple[str, str]]) -> None:
        nonlocal first
        await res.jobs.append_events(job.job_id, events, first=first)
        first = False

    events = EventBatcher(send, join_chunks=spec.join_chunks)
    reply, interrupted = "", False
    # Timed on this process's own clock, from the run's start (a moment after
    # the job's `started_at`, which is Redis's).
    first_token, began = True, time.monotonic()
    # aclosing: leaving the loop early (cancel, error) must close the provider's
    # HTTP stream too, or the paid call goes on generating.
    parts = _parts(graph, graph_input, config, spec)
    async with contextlib.aclosing(parts):
        async for namespace, mode, data in parts:
            if mode == "updates" and not namespace and isinstance(data, dict):
                interrupted = interrupted or INTERRUPT in data
                for node, update in data.items():
                    if node != INTERRUPT and isinstance(update, dict):
                        reply = last_ai_text(update) or reply
            if mode not in wanted:
                continue
            if mode == MESSAGE_EVENT:
                metrics.LLM_TOKENS.inc()
                if first_token:
                    metrics.FIRST_TOKEN.observe(time.monotonic() - began)
                    first_token = False
            await events.add(event_type(mode, namespace), for_client(mode, data))
    await events.close()
    return RunOutcome(reply, interrupted)
