"""An assistant's graph as clients draw and describe it: nodes and edges, and
the JSON schemas of its input, output, state and context (and its subgraphs')."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, TypeAdapter, create_model

from api.agent.assistant_schemas import GraphSchema
from api.agent.assistants import AssistantIdPath, resolve
from api.deps import OwnerDep, ServicesDep, limit_client
from api.openapi_responses import errors
from shared.graphs import Graph, GraphEntry

router = APIRouter(tags=["assistants"], dependencies=[Depends(limit_client)])


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


@router.get("/assistants/{assistant_id}/graph", response_model=dict[str, Any],
            responses=errors(404))
async def get_graph(assistant_id: AssistantIdPath, services: ServicesDep, owner: OwnerDep,
                    xray: Annotated[bool | int, Query()] = False) -> dict[str, Any]:
    """The assistant's graph, as nodes and edges (`xray`: subgraphs drawn inside)."""
    _, entry = await resolve(services, owner, assistant_id)
    drawing: dict[str, Any] = _drawn(entry).get_graph(xray=xray).to_json()
    for node in drawing["nodes"]:
        # A node is drawn with its name; its Python class is not the client's business.
        if isinstance(node.get("data"), dict):
            node["data"].pop("id", None)
    return drawing


@router.get("/assistants/{assistant_id}/schemas", response_model=GraphSchema,
            responses=errors(404))
async def get_schemas(assistant_id: AssistantIdPath, services: ServicesDep,
                      owner: OwnerDep) -> GraphSchema:
    """The JSON schemas of the graph's input, output, state, config and context."""
    _, entry = await resolve(services, owner, assistant_id)
    return schemas_of(entry)


@router.get("/assistants/{assistant_id}/subgraphs", response_model=dict[str, dict[str, Any]],
            responses=errors(404))
async def get_subgraphs(assistant_id: AssistantIdPath, services: ServicesDep, owner: OwnerDep,
                        recurse: bool = False) -> dict[str, dict[str, Any]]:
    """The schemas of the graph's subgraphs, by namespace."""
    _, entry = await resolve(services, owner, assistant_id)
    return {namespace: _schemas(entry.graph_id, sub).model_dump(exclude={"graph_id"})
            for namespace, sub in _drawn(entry).get_subgraphs(recurse=recurse)}
