"""The HTTP models of the LangGraph Server API's threads and runs, and what
every model shares (assistants' are in api.agent.assistant_schemas).

Shapes follow the API the `langgraph-sdk` client speaks. Fields the gateway
does not honour are typed `null` (what the SDK sends when they are unset):
a request that sets one is refused with a 422 naming it, rather than run
without it. The schema so says exactly what is accepted.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from api.errors import TOO_LARGE
from shared.ids import ID_PATTERN, MAX_ID_LENGTH

StreamModeName = Literal["values", "updates", "messages", "messages-tuple", "custom",
                         "events", "debug", "tasks", "checkpoints"]
MultitaskStrategy = Literal["reject", "enqueue", "interrupt", "rollback"]
RunStatus = Literal["pending", "running", "error", "success", "timeout", "interrupted"]
ThreadStatus = Literal["idle", "busy", "interrupted", "error"]
Metadata = dict[str, Any]
# What one thread, run or assistant may keep of a client's metadata, once
# merged: enough for tags and ids, too little to fill Redis with.
METADATA_MAX_KEYS = 64
METADATA_MAX_BYTES = 16 * 1024


def metadata_fits(value: Metadata) -> bool:
    return (len(value) <= METADATA_MAX_KEYS
            and len(json.dumps(value, separators=(",", ":"))) <= METADATA_MAX_BYTES)


def _fits(value: Metadata) -> Metadata:
    if not metadata_fits(value):
        # Answered 413 (api.errors), as a body over its limit is.
        raise PydanticCustomError(TOO_LARGE, METADATA_LIMITS)
    return value


METADATA_LIMITS = (f"metadata holds at most {METADATA_MAX_KEYS} keys and "
                   f"{METADATA_MAX_BYTES} bytes as JSON")
# Metadata a client asks to store.
MetadataIn = Annotated[Metadata, AfterValidator(_fits)]
Id = Annotated[str, Field(pattern=ID_PATTERN, max_length=MAX_ID_LENGTH)]
Unsupported = Annotated[None, Field(None, description="Not supported here: omit it, or null.")]


class Strict(BaseModel):
    # A misspelt or unknown field is refused, not ignored.
    model_config = ConfigDict(extra="forbid")


def _json_integer(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    return value


# An integer as JSON has them (3, or 3.0), not what pydantic's lax mode also
# takes (true, "3"): the schema says which requests are accepted.
JsonInt = Annotated[int, BeforeValidator(_json_integer)]


def refuse_unsupported(*names: str) -> Any:
    """A validator that refuses any value but null in the fields `names`."""
    def refuse(cls: type, value: object) -> None:
        if value is not None:
            raise ValueError("not supported by this server")

    return field_validator(*names, mode="before")(classmethod(refuse))


# --- the run's input, config and context ------------------------------------------

class RunConfig(Strict):
    # Other keys of configurable are the graph's (or the caller's) own.
    configurable: dict[str, Any] | None = None
    tags: list[str] | None = None
    # The bounds before the validator, or they are lost from the JSON schema.
    recursion_limit: Annotated[int, Field(ge=1, le=10_000),
                               BeforeValidator(_json_integer)] | None = None


class RunCommand(Strict):
    """Goes on from an interrupt: `resume` answers it; `update` writes to the
    state first; `goto` names the node(s) to run next."""

    resume: Any = None
    update: dict[str, Any] | list[Any] | None = None
    goto: str | list[str] | dict[str, Any] | list[dict[str, Any]] | None = None


class RunCheckpoint(Strict):
    """A checkpoint of the thread's root graph to start the run from (a branch)."""

    checkpoint_id: Id | None = None
    checkpoint_ns: Literal[""] = ""
    thread_id: str | None = None
    checkpoint_map: dict[str, Any] | None = None


NodeNames = Literal["*"] | list[str]


class RunCreate(Strict):
    """A run of the assistant's graph on the thread (or on a new one, for a stateless run)."""

    # The schema says what the gateway checks (400): `input` or `command`, not
    # both (either may be null or left out).
    model_config = ConfigDict(json_schema_extra={"not": {
        "required": ["input", "command"],
        "properties": {"input": {"type": "object"}, "command": {"type": "object"}}}})

    assistant_id: str = Field(description="A graph id, or an assistant's id.")
    input: dict[str, Any] | None = Field(
        None, description="The graph's input, checked against its input schema.")
    command: RunCommand | None = None
    config: RunConfig | None = None
    context: dict[str, Any] | None = None
    metadata: MetadataIn | None = None
    checkpoint: RunCheckpoint | None = None
    checkpoint_id: Id | None = None
    stream_mode: StreamModeName | list[StreamModeName] = "values"
    # strict: `true` or `false`, as JSON has them, not 1 or "yes".
    stream_subgraphs: bool = Field(False, strict=True)
    # Every run's events are kept (for the job's retention time), so every
    # stream can be resumed with Last-Event-ID.
    stream_resumable: bool = Field(False, strict=True)
    multitask_strategy: MultitaskStrategy = "enqueue"
    if_not_exists: Literal["create", "reject"] = "reject"
    # A run goes on when its client leaves (it is a job on the queue).
    on_disconnect: Literal["continue"] | None = None
    on_completion: Literal["delete", "keep"] | None = None
    # By default every step's checkpoint is kept ("async", as the LangGraph
    # Server does); "exit" keeps the run's last only. Either way the run's
    # checkpoints are written together, when it has ended.
    durability: Literal["sync", "async", "exit"] | None = None
    interrupt_before: NodeNames | None = None
    interrupt_after: NodeNames | None = None
    checkpoint_during: Unsupported = None
    feedback_keys: Unsupported = None
    webhook: Unsupported = None
    after_seconds: Unsupported = None
    langsmith_tracer: Unsupported = None
    strict_resume: Unsupported = None

    _refused = refuse_unsupported(
        "checkpoint_during", "feedback_keys", "webhook", "after_seconds", "langsmith_tracer",
        "strict_resume")

    def modes(self) -> list[str]:
        return [self.stream_mode] if isinstance(self.stream_mode, str) else list(self.stream_mode)

    def start_checkpoint(self) -> str | None:
        """The checkpoint the run starts from: `checkpoint_id`, `checkpoint`'s,
        or the one `config.configurable` names."""
        if self.checkpoint_id is not None:
            return self.checkpoint_id
        if self.checkpoint is not None and self.checkpoint.checkpoint_id is not None:
            return self.checkpoint.checkpoint_id
        named = (self.config.configurable or {}).get("checkpoint_id") if self.config else None
        return named if isinstance(named, str) else None

    def graph_config(self) -> dict[str, Any]:
        """The config the graph gets from the caller: `configurable` without
        the keys that are the server's to set (the thread, the checkpoint,
        LangGraph's own `__` keys)."""
        if self.config is None:
            return {}
        config = self.config.model_dump(exclude_none=True)
        if "configurable" in config:
            config["configurable"] = {
                k: v for k, v in config["configurable"].items()
                if k not in ("thread_id", "checkpoint_id", "checkpoint_ns")
                and not k.startswith("__")}
        return config


class Run(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    run_id: str
    thread_id: str
    assistant_id: str
    created_at: datetime
    updated_at: datetime
    status: RunStatus
    metadata: Metadata
    # "kwargs" in JSON: a field of that name would shadow the model's own
    # __init__(**kwargs) for type checkers.
    arguments: dict[str, Any] = Field(alias="kwargs")
    multitask_strategy: MultitaskStrategy


# --- threads --------------------------------------------------------------------

class Thread(BaseModel):
    thread_id: str
    created_at: datetime
    updated_at: datetime
    state_updated_at: datetime | None = None
    metadata: Metadata
    status: ThreadStatus
    config: dict[str, Any] = Field(default_factory=dict)
    values: dict[str, Any] | None
    # A thread no run has touched has no state, hence neither of these (as
    # the LangGraph Server shows it): they are left unset then, and the
    # routes answer a thread without its unset fields.
    error: Any = None
    interrupts: dict[str, list[Any]] | None = None


class ThreadCreate(Strict):
    thread_id: Id | None = None
    metadata: MetadataIn | None = None
    if_exists: Literal["raise", "do_nothing"] | None = None
    supersteps: Unsupported = None
    ttl: Unsupported = None

    _refused = refuse_unsupported("supersteps", "ttl")


class ThreadPatch(Strict):
    metadata: MetadataIn | None = None
    ttl: Unsupported = None

    _refused = refuse_unsupported("ttl")


class ThreadSearch(Strict):
    metadata: Metadata | None = None
    ids: list[Id] | None = Field(None, max_length=1000)
    status: ThreadStatus | None = None
    limit: JsonInt = Field(10, ge=1, le=100)
    offset: JsonInt = Field(0, ge=0, le=10_000)
    sort_by: Literal["updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None
    values: Unsupported = None
    select: Unsupported = None
    extract: Unsupported = None

    _refused = refuse_unsupported("values", "select", "extract")


class CheckpointRef(BaseModel):
    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str | None


class ThreadState(BaseModel):
    values: dict[str, Any]
    next: list[str]
    tasks: list[dict[str, Any]]
    # None for a thread with no checkpoint yet.
    checkpoint: CheckpointRef | None
    metadata: Metadata | None
    created_at: str | None
    parent_checkpoint: CheckpointRef | None
    interrupts: list[Any]
    checkpoint_id: str | None = None
    parent_checkpoint_id: str | None = None

    @model_validator(mode="after")
    def _ids(self) -> ThreadState:
        # The ids again at the top, as the LangGraph Server shows them too.
        self.checkpoint_id = self.checkpoint.checkpoint_id if self.checkpoint else None
        self.parent_checkpoint_id = (self.parent_checkpoint.checkpoint_id
                                     if self.parent_checkpoint else None)
        return self


class CheckpointSelector(Strict):
    """A checkpoint of the thread's root graph (the only namespace it has)."""

    checkpoint_id: Id | None = None
    checkpoint_ns: Literal[""] = ""
    thread_id: str | None = None
    checkpoint_map: dict[str, Any] | None = None


class StateUpdate(Strict):
    """Writes `values` into the thread's state as if node `as_node` had returned
    them, from its latest checkpoint or the one named."""

    values: dict[str, Any] | list[Any] | None = None
    as_node: str | None = Field(None, max_length=256)
    checkpoint: CheckpointSelector | None = None
    checkpoint_id: Id | None = None

    def start_checkpoint(self) -> str | None:
        if self.checkpoint_id is not None:
            return self.checkpoint_id
        return self.checkpoint.checkpoint_id if self.checkpoint is not None else None


class StateUpdated(BaseModel):
    checkpoint: CheckpointRef
    # The same checkpoint again, as the config a client passes on, and its id.
    configurable: CheckpointRef
    checkpoint_id: str | None


class CheckpointAt(Strict):
    checkpoint: CheckpointSelector
    subgraphs: bool = Field(False, strict=True)


class HistoryQuery(Strict):
    limit: JsonInt = Field(10, ge=1, le=1000)
    before: Id | CheckpointSelector | None = Field(
        None, description="A checkpoint id, or a checkpoint: only older ones are listed.")
    metadata: Metadata | None = None
    checkpoint: CheckpointSelector | None = None
    select: Unsupported = None

    _refused = refuse_unsupported("select")

    def before_id(self) -> str | None:
        if isinstance(self.before, CheckpointSelector):
            return self.before.checkpoint_id
        return self.before
