"""The one assistant: the chat graph (`graph_id` "chat"), with its drawing and schemas."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from api.agent.schemas import (
    GRAPH_ID,
    Assistant,
    AssistantSearch,
    GraphSchema,
    RunConfig,
    RunContext,
    RunInput,
)
from api.deps import OwnerDep, limit_client
from api.errors import NotFound
from api.openapi_responses import errors

router = APIRouter(tags=["assistants"], dependencies=[Depends(limit_client)])

# Derived from the graph id, as the LangGraph server derives its default assistants'.
ASSISTANT_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, GRAPH_ID))
ASSISTANT = Assistant(
    assistant_id=ASSISTANT_ID, graph_id=GRAPH_ID, config={}, context={},
    metadata={"created_by": "system"}, version=1, name=GRAPH_ID,
    description="Answers the user's message in the thread's context, in the run's "
                "language (config.configurable.language or context.language; "
                "default English).",
    created_at=datetime(2026, 1, 1, tzinfo=UTC), updated_at=datetime(2026, 1, 1, tzinfo=UTC))

# The graph as LangGraph draws it (worker/graph.py): start, one node, end.
_NODE_DATA = {"id": ["langgraph", "_internal", "_runnable", "RunnableCallable"]}
GRAPH_DRAWING: dict[str, Any] = {
    "nodes": [{"id": "__start__", "type": "runnable",
               "data": {**_NODE_DATA, "name": "__start__"}},
              {"id": "answer", "type": "runnable", "data": {**_NODE_DATA, "name": "answer"}},
              {"id": "__end__"}],
    "edges": [{"source": "__start__", "target": "answer"},
              {"source": "answer", "target": "__end__"}],
}

_MESSAGES = {"type": "object", "properties": {"messages": {
    "type": "array", "items": {"type": "object", "description": "A LangChain message."}}}}
SCHEMAS = GraphSchema(
    graph_id=GRAPH_ID, input_schema=RunInput.model_json_schema(),
    output_schema=_MESSAGES, state_schema=_MESSAGES,
    config_schema=RunConfig.model_json_schema(), context_schema=RunContext.model_json_schema())

AssistantIdPath = Annotated[str, Path(max_length=128,
                                      description=f'"{GRAPH_ID}", or the assistant\'s id.')]


def resolve(assistant_id: str) -> str:
    """The assistant's id for `assistant_id` (its own, or the graph's); 404 otherwise."""
    if assistant_id not in (ASSISTANT_ID, GRAPH_ID):
        raise NotFound(f'no such assistant: the one assistant is "{GRAPH_ID}" ({ASSISTANT_ID})')
    return ASSISTANT_ID


@router.post("/assistants/search", response_model=list[Assistant], responses=errors(400))
async def search_assistants(body: AssistantSearch, _: OwnerDep) -> list[Assistant]:
    """The assistants that match: the chat graph's, or none."""
    matches = ((body.graph_id in (None, GRAPH_ID)) and body.name in (None, ASSISTANT.name)
               and all(ASSISTANT.metadata.get(k) == v for k, v in (body.metadata or {}).items()))
    return [ASSISTANT] if matches and body.offset == 0 else []


@router.get("/assistants/{assistant_id}", response_model=Assistant, responses=errors(404))
async def get_assistant(assistant_id: AssistantIdPath, _: OwnerDep) -> Assistant:
    """The assistant."""
    resolve(assistant_id)
    return ASSISTANT


@router.get("/assistants/{assistant_id}/graph", response_model=dict[str, Any],
            responses=errors(404))
async def get_graph(assistant_id: AssistantIdPath, _: OwnerDep) -> dict[str, Any]:
    """The assistant's graph, as nodes and edges (it has no subgraphs to x-ray)."""
    resolve(assistant_id)
    return GRAPH_DRAWING


@router.get("/assistants/{assistant_id}/schemas", response_model=GraphSchema,
            responses=errors(404))
async def get_schemas(assistant_id: AssistantIdPath, _: OwnerDep) -> GraphSchema:
    """The JSON schemas of the graph's input, output, state, config and context."""
    resolve(assistant_id)
    return SCHEMAS
