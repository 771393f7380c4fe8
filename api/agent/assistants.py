"""Assistants: each graph's default one, and those a key makes, with versions.

Each graph of langgraph.json (shared.graphs) has the assistant the LangGraph
Server would make for it at start, with the same id (derived from the graph
id); a graph id is taken wherever an assistant id is. Default assistants are
shared by every key and set by langgraph.json, so no key may change them. A
key makes assistants of its own (a graph with its config, context and
metadata): shared.store.assistants keeps them in Redis.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import uuid4

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response

from api import conversations
from api.agent.assistant_records import AssistantRecords, Taken
from api.agent.assistant_schemas import (
    Assistant,
    AssistantCreate,
    AssistantFilter,
    AssistantLatest,
    AssistantPatch,
    AssistantSearch,
    AssistantSettings,
    AssistantVersion,
    AssistantVersionsQuery,
)
from api.agent.records import RecordsDep
from api.agent.schemas import METADATA_LIMITS, metadata_fits
from api.deps import OwnerDep, Services, ServicesDep, limit_client
from api.errors import Conflict, Forbidden, Invalid, NotFound, TooLarge
from api.openapi_responses import errors
from shared.graphs import GraphEntry, GraphRegistry
from shared.ids import is_uuid

router = APIRouter(tags=["assistants"], dependencies=[Depends(limit_client)])

# When the declared graphs were loaded: the default assistants' creation time.
_STARTED = datetime.now(UTC)
# Threads a `delete_threads` deletes at a time.
_DELETE_BATCH = 100

AssistantIdPath = Annotated[str, Path(max_length=128,
                                      description="A graph id, or an assistant's id.")]


def _unknown(registry: GraphRegistry, name: str) -> NotFound:
    known = ", ".join(sorted(registry.entries))
    return NotFound(f"no such assistant or graph: {name!r} (graphs: {known})")


def find_graph(registry: GraphRegistry, graph_id: str) -> GraphEntry:
    """The graph of `graph_id` (or of a default assistant's id); 404 otherwise."""
    entry = registry.find(graph_id)
    if entry is None:
        raise _unknown(registry, graph_id)
    return entry


def default_assistant(entry: GraphEntry) -> Assistant:
    return Assistant(
        assistant_id=entry.assistant_id, graph_id=entry.graph_id, config={}, context={},
        metadata={"created_by": "system"}, version=1, name=entry.graph_id,
        description=entry.description, created_at=_STARTED, updated_at=_STARTED)


def _records(services: Services) -> AssistantRecords:
    return AssistantRecords(services.redis)


async def resolve(services: Services, owner: str,
                  assistant_id: str) -> tuple[Assistant, GraphEntry]:
    """The assistant named (a default one by its id or its graph's, or one
    `owner` made) and its graph; 422 for what cannot be an assistant's id,
    404 for one that is no assistant of `owner`'s."""
    entry = services.graphs.find(assistant_id)
    if entry is not None:
        return default_assistant(entry), entry
    if not is_uuid(assistant_id):
        # As the LangGraph Server tells them apart: an id that cannot be an
        # assistant's is a bad request, a well-formed one not found.
        known = ", ".join(sorted(services.graphs.entries))
        raise Invalid(f"assistant_id {assistant_id!r}: neither an assistant's id (a UUID) "
                      f"nor a graph id (graphs: {known})")
    made = await _records(services).get(owner, assistant_id)
    if made is None:
        raise _unknown(services.graphs, assistant_id)
    return made, find_graph(services.graphs, made.graph_id)


async def _own(services: Services, owner: str, assistant_id: str) -> None:
    """403 for a default assistant, 404 unless `owner` made the assistant."""
    if services.graphs.find(assistant_id) is not None:
        raise Forbidden("a graph's default assistant is set by langgraph.json and shared "
                        "by every key: create an assistant of your own to change it")
    await resolve(services, owner, assistant_id)


def _config_and_context(settings: AssistantSettings,
                        base: Assistant | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The assistant's config and context from `settings`, else from `base`,
    kept equal as the LangGraph Server keeps them: `context` is
    `config.configurable` under its newer name."""
    config = (settings.config.model_dump(exclude_none=True) if settings.config is not None
              else dict(base.config) if base is not None else {})
    if settings.context is not None:
        context = dict(settings.context)
        config["configurable"] = dict(context)
    elif config.get("configurable"):
        context = dict(config["configurable"])
    else:
        context = dict(base.context) if base is not None else {}
        if context:
            config["configurable"] = dict(context)
    return config, context


def merged_config(assistant: Assistant, run_config: dict[str, Any]) -> dict[str, Any]:
    """A run's config: the assistant's, with the run's own on top (key by
    key inside `configurable`)."""
    configurable = {**assistant.config.get("configurable", {}),
                    **run_config.get("configurable", {})}
    merged = {**assistant.config, **run_config}
    if configurable:
        merged["configurable"] = configurable
    return merged


def _matches(assistant: Assistant, query: AssistantFilter) -> bool:
    return (query.graph_id in (None, assistant.graph_id)
            and (query.name is None or query.name.lower() in assistant.name.lower())
            and all(assistant.metadata.get(k) == v
                    for k, v in (query.metadata or {}).items()))


async def _visible(services: Services, owner: str, query: AssistantFilter) -> list[Assistant]:
    if query.graph_id is not None:
        find_graph(services.graphs, query.graph_id)
    everyone = [*map(default_assistant, services.graphs.entries.values()),
                *await _records(services).all_of(owner)]
    return [a for a in everyone if _matches(a, query)]


@router.post("/assistants", response_model=Assistant, responses=errors(400, 404, 409))
async def create_assistant(body: AssistantCreate, services: ServicesDep,
                           owner: OwnerDep) -> Assistant:
    """Makes an assistant of a graph, with its config, context and metadata.
    A taken id is 409, or (`if_exists` "do_nothing") the assistant already there."""
    entry = find_graph(services.graphs, body.graph_id)
    assistant_id = str(body.assistant_id or uuid4())
    if services.graphs.find(assistant_id) is not None:
        raise Conflict(f"assistant {assistant_id} already exists")
    config, context = _config_and_context(body, None)
    version = AssistantVersion(
        assistant_id=assistant_id, graph_id=entry.graph_id, config=config, context=context,
        metadata=body.metadata or {}, version=1, name=body.name or "Untitled",
        description=body.description, created_at=datetime.now(UTC))
    try:
        return await _records(services).create(owner, version,
                                                keep_existing=body.if_exists == "do_nothing")
    except Taken:
        raise Conflict(f"assistant {assistant_id} already exists") from None


@router.post("/assistants/search", response_model=list[Assistant],
             responses=errors(400, 404))
async def search_assistants(body: AssistantSearch, services: ServicesDep,
                            owner: OwnerDep) -> list[Assistant]:
    """The assistants that match: each graph's default one and the key's own,
    newest first unless `sort_by` says otherwise."""
    found = await _visible(services, owner, body)
    sort_by = body.sort_by or "created_at"
    found.sort(key=lambda a: (str(getattr(a, sort_by)).lower(), a.assistant_id),
               reverse=body.sort_order != "asc")
    return found[body.offset:body.offset + body.limit]


@router.post("/assistants/count", response_model=int, responses=errors(400, 404))
async def count_assistants(body: AssistantFilter, services: ServicesDep,
                           owner: OwnerDep) -> int:
    """How many assistants match."""
    return len(await _visible(services, owner, body))


@router.api_route("/assistants/search", methods=["GET", "PATCH", "DELETE"],
                  include_in_schema=False)
@router.api_route("/assistants/count", methods=["GET", "PATCH", "DELETE"],
                  include_in_schema=False)
async def not_an_assistant() -> None:
    """405: /assistants/search and /assistants/count are themselves, not an
    assistant named "search" (the routes of /assistants/{assistant_id} would
    take them so)."""
    raise HTTPException(status_code=405)


@router.get("/assistants/{assistant_id}", response_model=Assistant, responses=errors(404))
async def get_assistant(assistant_id: AssistantIdPath, services: ServicesDep,
                        owner: OwnerDep) -> Assistant:
    """The assistant (its current version)."""
    return (await resolve(services, owner, assistant_id))[0]


@router.patch("/assistants/{assistant_id}", response_model=Assistant,
              responses=errors(400, 403, 404))
async def patch_assistant(assistant_id: AssistantIdPath, body: AssistantPatch,
                          services: ServicesDep, owner: OwnerDep) -> Assistant:
    """Makes a new version of the assistant, from the current one with what
    the body gives (metadata is merged key by key), and makes it current."""
    await _own(services, owner, assistant_id)
    graph_id = find_graph(services.graphs, body.graph_id).graph_id if body.graph_id else None

    def change(current: Assistant, number: int) -> AssistantVersion:
        config, context = _config_and_context(body, current)
        metadata = {**current.metadata, **(body.metadata or {})}
        if not metadata_fits(metadata):
            raise TooLarge(f"{METADATA_LIMITS}, merged with the assistant's")
        return AssistantVersion(
            assistant_id=assistant_id, graph_id=graph_id or current.graph_id, config=config,
            context=context, metadata=metadata,
            version=number, name=body.name if body.name is not None else current.name,
            description=(body.description if body.description is not None
                         else current.description),
            created_at=datetime.now(UTC))

    updated = await _records(services).add_version(owner, assistant_id, change)
    if updated is None:
        raise NotFound(f"no such assistant: {assistant_id!r}")
    return updated


@router.delete("/assistants/{assistant_id}", status_code=204, response_class=Response,
               responses=errors(403, 404))
async def delete_assistant(assistant_id: AssistantIdPath, services: ServicesDep,
                           records: RecordsDep, owner: OwnerDep,
                           delete_threads: Annotated[bool, Query(
                               description="Also delete the key's threads whose metadata "
                                           "names this assistant.")] = False) -> Response:
    """Deletes the assistant and its versions. Runs already accepted finish
    with the settings they were accepted with."""
    await _own(services, owner, assistant_id)
    if delete_threads:
        threads = await records.search(
            owner, True, 0, 10_000, lambda t: t.metadata.get("assistant_id") == assistant_id)
        for start in range(0, len(threads), _DELETE_BATCH):
            await asyncio.gather(*(conversations.erase(services, t.thread_id)
                                   for t in threads[start:start + _DELETE_BATCH]))
    if not await _records(services).delete(owner, assistant_id):
        raise NotFound(f"no such assistant: {assistant_id!r}")
    return Response(status_code=204)


@router.post("/assistants/{assistant_id}/versions", response_model=list[AssistantVersion],
             responses=errors(400, 404))
async def list_versions(assistant_id: AssistantIdPath, body: AssistantVersionsQuery,
                        services: ServicesDep, owner: OwnerDep) -> list[AssistantVersion]:
    """The assistant's versions, newest first (a default assistant has one)."""
    assistant, _ = await resolve(services, owner, assistant_id)
    if services.graphs.find(assistant_id) is not None:
        versions: list[AssistantVersion] = [AssistantVersion(**assistant.model_dump())]
    else:
        versions = await _records(services).versions(owner, assistant.assistant_id) or []
    versions = [v for v in versions
                if all(v.metadata.get(k) == value for k, value in (body.metadata or {}).items())]
    return versions[body.offset:body.offset + body.limit]


@router.post("/assistants/{assistant_id}/latest", response_model=Assistant,
             responses=errors(400, 403, 404))
async def set_latest_version(assistant_id: AssistantIdPath, body: AssistantLatest,
                             services: ServicesDep, owner: OwnerDep) -> Assistant:
    """Makes an earlier (or later) version the current one."""
    await _own(services, owner, assistant_id)
    exists, assistant = await _records(services).use_version(owner, assistant_id, body.version)
    if assistant is None:
        raise NotFound(f"no such assistant: {assistant_id!r}")
    if not exists:
        raise NotFound(f"assistant {assistant_id} has no version {body.version}")
    return assistant
