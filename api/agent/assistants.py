"""Assistants: one default assistant per declared graph, with its drawing and schemas.

Each graph of langgraph.json (shared.graphs) has the assistant the LangGraph
Server would make for it at start, with the same id (derived from the graph
id); a graph id is taken wherever an assistant id is.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, TypeAdapter, create_model

from api.agent.schemas import Assistant, AssistantSearch, GraphSchema
from api.deps import OwnerDep, ServicesDep, limit_client
from api.errors import Invalid, NotFound
from api.openapi_responses import errors
from shared.graphs import Graph, GraphEntry, GraphRegistry

router = APIRouter(tags=["assistants"], dependencies=[Depends(limit_client)])

# When the declared graphs were loaded: the default assistants' creation time.
_STARTED = datetime.now(UTC)

AssistantIdPath = Annotated[str, Path(max_length=128,
                                      description="A graph id, or an assistant's id.")]


def find_graph(registry: GraphRegistry, assistant_id: str) -> GraphEntry:
    """The graph of `assistant_id` (an assistant's id or a graph id); 404 otherwise."""
    entry = registry.find(assistant_id)
    if entry is not None:
        return entry
    known = ", ".join(sorted(registry.entries))
    # As the LangGraph Server tells them apart: an id that cannot be an
    # assistant's (not a UUID) is a bad request, a well-formed one not found.
    try:
        uuid.UUID(assistant_id)
    except ValueError:
        raise Invalid(f"assistant_id {assistant_id!r}: neither an assistant's id (a UUID) "
                      f"nor a graph id (graphs: {known})") from None
    raise NotFound(f"no such assistant: {assistant_id!r} (graphs: {known})")


def assistant_of(entry: GraphEntry) -> Assistant:
    return Assistant(
        assistant_id=entry.assistant_id, graph_id=entry.graph_id, config={}, context={},
        metadata={"created_by": "system"}, version=1, name=entry.graph_id,
        description=entry.description, created_at=_STARTED, updated_at=_STARTED)


def _drawn(entry: GraphEntry) -> Graph:
    # A graph made per run is drawn as an empty config makes it.
    return entry.compiled(None)


def _state_schema(graph: Any) -> dict[str, Any]:
    # As the LangGraph Server describes a state: one field per channel a
    # client sees (its update type, or any when pydantic cannot describe it),
    # in a model named after the graph.
    fields: dict[str, Any] = {}
    for name in graph.stream_channels_list:
        update_type = graph.channels[name].UpdateType
        try:
            TypeAdapter(update_type).json_schema()
            fields[name] = (update_type, None)
        except Exception:
            fields[name] = (Any, None)
    model = cast(type[BaseModel], create_model(graph.get_name("State"), **fields))
    return model.model_json_schema()


def _schema(make: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
    # A type pydantic cannot describe (a typing.TypedDict on Python 3.11) has no schema.
    try:
        return make()
    except Exception:
        return None


def _schemas(graph_id: str, graph: Any) -> GraphSchema:
    return GraphSchema(
        graph_id=graph_id, input_schema=_schema(graph.get_input_jsonschema),
        output_schema=_schema(graph.get_output_jsonschema),
        state_schema=_schema(lambda: _state_schema(graph)),
        config_schema={}, context_schema=_schema(graph.get_context_jsonschema))


def schemas_of(entry: GraphEntry) -> GraphSchema:
    return _schemas(entry.graph_id, _drawn(entry))


@router.post("/assistants/search", response_model=list[Assistant], responses=errors(400))
async def search_assistants(body: AssistantSearch, services: ServicesDep,
                            _: OwnerDep) -> list[Assistant]:
    """The assistants that match: one per declared graph."""
    found = [assistant_of(e) for e in services.graphs.entries.values()
             if body.graph_id in (None, e.graph_id) and body.name in (None, e.graph_id)]
    found = [a for a in found
             if all(a.metadata.get(k) == v for k, v in (body.metadata or {}).items())]
    if body.sort_by is not None:
        found.sort(key=lambda a: str(getattr(a, body.sort_by or "name")),
                   reverse=body.sort_order == "desc")
    return found[body.offset:body.offset + body.limit]


@router.get("/assistants/{assistant_id}", response_model=Assistant, responses=errors(404))
async def get_assistant(assistant_id: AssistantIdPath, services: ServicesDep,
                        _: OwnerDep) -> Assistant:
    """The assistant."""
    return assistant_of(find_graph(services.graphs, assistant_id))


@router.get("/assistants/{assistant_id}/graph", response_model=dict[str, Any],
            responses=errors(404))
async def get_graph(assistant_id: AssistantIdPath, services: ServicesDep, _: OwnerDep,
                    xray: Annotated[bool | int, Query()] = False) -> dict[str, Any]:
    """The assistant's graph, as nodes and edges (`xray`: subgraphs drawn inside)."""
    graph = _drawn(find_graph(services.graphs, assistant_id))
    drawing: dict[str, Any] = graph.get_graph(xray=xray).to_json()
    for node in drawing["nodes"]:
        # A node is drawn with its name; its Python class is not the client's business.
        if isinstance(node.get("data"), dict):
            node["data"].pop("id", None)
    return drawing


@router.get("/assistants/{assistant_id}/schemas", response_model=GraphSchema,
            responses=errors(404))
async def get_schemas(assistant_id: AssistantIdPath, services: ServicesDep,
                      _: OwnerDep) -> GraphSchema:
    """The JSON schemas of the graph's input, output, state, config and context."""
    return schemas_of(find_graph(services.graphs, assistant_id))


@router.get("/assistants/{assistant_id}/subgraphs", response_model=dict[str, dict[str, Any]],
            responses=errors(404))
async def get_subgraphs(assistant_id: AssistantIdPath, services: ServicesDep, _: OwnerDep,
                        recurse: bool = False) -> dict[str, dict[str, Any]]:
    """The schemas of the graph's subgraphs, by namespace."""
    entry = find_graph(services.graphs, assistant_id)
    return {namespace: _schemas(entry.graph_id, sub).model_dump(exclude={"graph_id"})
            for namespace, sub in _drawn(entry).get_subgraphs(recurse=recurse)}
