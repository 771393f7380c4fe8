"""A run: what a worker is asked to do with a graph on a thread.

Every job is a run, whichever API queued it: POST /chat queues runs of the
chat graph, the LangGraph Server API runs of any graph. The gateway checks
it and writes it, as JSON, into the job's record; the worker reads it back
from there, so it lives and expires with the job.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.conversation import human_id
from shared.graphs import assistant_id_of
from shared.scoped_saver import thread_config

# The stream modes a run may ask for, as the LangGraph Server names them.
STREAM_MODES = ("values", "updates", "messages", "messages-tuple", "custom", "events",
                "debug", "tasks", "checkpoints")
# The checkpoint metadata key naming the run that stored it: a run that finds
# its own id there after a crash was stored already.
RUN_ID_FIELD = "run_id"
# The event a worker writes for a message chunk, whichever of the two message
# modes asked for it (the gateway shapes "messages" from it).
MESSAGE_EVENT = "messages"


@dataclass(frozen=True)
class RunSpec:
    """What to run: the graph, its input or command, and how to stream it."""

    graph_id: str
    assistant_id: str
    input: Any = None
    command: dict[str, Any] | None = None
    # The run's config (configurable, tags, recursion_limit) and context.
    config: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] | None = None
    # The checkpoint to start from (a branch), else the thread's latest.
    checkpoint_id: str | None = None
    stream_mode: list[str] = field(default_factory=lambda: ["values"])
    stream_subgraphs: bool = False
    interrupt_before: list[str] | str | None = None
    interrupt_after: list[str] | str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    multitask_strategy: str = "enqueue"
    # "exit" (POST /chat's) keeps the run's last checkpoint only; "async" and
    # "sync" (the LangGraph Server API's default) keep every step's. Either
    # way they are written together when the run has ended (worker.deferred).
    durability: str = "exit"
    # Consecutive chunks of a message may go out as one (a /chat stream joins
    # them anyway); the LangGraph Server API shows each chunk as it came.
    join_chunks: bool = False
    # A stateless run whose thread goes once its outcome has been shown.
    temporary: bool = False

    def to_json(self) -> str:
        """The run as JSON, without the fields left at their defaults (it is
        written with every job and read with every turn)."""
        default = RunSpec(self.graph_id, self.assistant_id)
        given = {k: v for k, v in asdict(self).items() if v != getattr(default, k)
                 or k in ("graph_id", "assistant_id")}
        return json.dumps(given, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> RunSpec:
        return cls(**json.loads(raw))

    def langgraph_config(self, run_id: str, stored_thread: str) -> dict[str, Any]:
        """The LangGraph config the run's graph gets: the thread (the id its
        client knows, and the stored one for the checkpointer: see
        shared.scoped_saver) and checkpoint, the run's own configurable, and
        the metadata every checkpoint it stores records."""
        # The ids the LangGraph Server gives a run's graph in its configurable
        # (graphs written for it read them there).
        configurable = thread_config(
            stored_thread, self.checkpoint_id or None, **self.config.get("configurable", {}),
            run_id=run_id, graph_id=self.graph_id, assistant_id=self.assistant_id)["configurable"]
        # LangGraph copies config["metadata"] into every checkpoint it saves
        # (and into what it streams: the owner is added by the checkpointer
        # instead). Kept short: every retained checkpoint of the thread stores
        # it, and the head holding them is read and written whole by every run.
        config: dict[str, Any] = {"configurable": configurable,
                                  "metadata": self.run_metadata(run_id)}
        for name in ("tags", "recursion_limit"):
            if self.config.get(name) is not None:
                config[name] = self.config[name]
        return config

    def run_metadata(self, run_id: str) -> dict[str, Any]:
        """The run's metadata as its checkpoints record it: the caller's, and
        the ids the LangGraph Server adds."""
        return {**self.metadata, "graph_id": self.graph_id, "assistant_id": self.assistant_id,
                RUN_ID_FIELD: run_id}

    def worker_modes(self) -> list[str]:
        """The modes the worker streams the graph in: the run's own (both
        message modes are LangGraph's "messages"), and "updates", which tell
        the worker about interrupts and the run's reply."""
        modes = {MESSAGE_EVENT if m == "messages-tuple" else m for m in self.stream_mode}
        modes.discard("events")  # a separate stream (astream_events), see the worker
        modes.add("updates")
        return sorted(modes)


def chat_run(graph_id: str, job_id: str, message: str, language: str,
             first: bool = False) -> RunSpec:
    """The run of one chat message (POST /chat): its message as the input, the
    reply language in the context, its chunks joined for a /chat stream.

    A turn keeps its last checkpoint only, which the next turn branches from
    when this turn's message is edited. The `first` turn of a new thread has
    none before it, so it keeps every step's, the empty one it starts from
    too (written in the same PUT: the turn costs no request more).
    """
    # The worker stamps it with the time the gateway accepted it (graph_run.stamped).
    human = {"type": "human", "content": message, "id": human_id(job_id)}
    return RunSpec(graph_id=graph_id, assistant_id=assistant_id_of(graph_id),
                   input={"messages": [human]}, context={"language": language},
                   stream_mode=["messages-tuple"], join_chunks=True,
                   durability="async" if first else "exit")


def run_of_record(raw: Mapping[str, str]) -> str:
    """A job record's run; for a record the version before runs wrote (a chat
    message and its language, queued before an upgrade), the chat run it meant."""
    run = raw.get("run", "")
    if "message" not in raw or '"graph_id"' in run:
        return run
    return chat_run("chat", raw["job_id"], raw["message"],
                    raw.get("language") or "English").to_json()
