"""The HTTP models of assistants in the LangGraph Server API: an assistant and
its versions, what makes, changes and finds one, and a graph's schemas.

Shapes follow the API the `langgraph-sdk` client speaks (api.agent.schemas
has the common parts: strict models, metadata limits, a run's config).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.agent.schemas import (
    JsonInt,
    Metadata,
    MetadataIn,
    RunConfig,
    Strict,
    Unsupported,
    refuse_unsupported,
)


class AssistantVersion(BaseModel):
    assistant_id: str
    graph_id: str
    config: dict[str, Any]
    context: dict[str, Any]
    metadata: Metadata
    version: int
    name: str
    description: str | None
    created_at: datetime


class Assistant(AssistantVersion):
    updated_at: datetime


class AssistantFilter(Strict):
    graph_id: str | None = None
    metadata: Metadata | None = None
    name: str | None = Field(None, description="Part of the name, in any case.")


class AssistantSearch(AssistantFilter):
    limit: JsonInt = Field(10, ge=1, le=1000)
    offset: JsonInt = Field(0, ge=0)
    sort_by: Literal["assistant_id", "graph_id", "name", "created_at",
                     "updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: Unsupported = None

    _refused = refuse_unsupported("select")


class AssistantSettings(Strict):
    """What an assistant sets for its graph's runs."""

    # The schema says what the validator below checks: not both a non-empty
    # config.configurable and a non-empty context.
    model_config = ConfigDict(json_schema_extra={"not": {
        "required": ["config", "context"],
        "properties": {
            "config": {"type": "object", "required": ["configurable"],
                       "properties": {"configurable": {"type": "object", "minProperties": 1}}},
            "context": {"type": "object", "minProperties": 1}}}})

    config: RunConfig | None = None
    context: dict[str, Any] | None = None
    metadata: MetadataIn | None = None
    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=4096)

    @model_validator(mode="after")
    def _one_of_configurable_and_context(self) -> AssistantSettings:
        if self.config is not None and self.config.configurable and self.context:
            raise ValueError("give either config.configurable or context, not both "
                             "(context replaces configurable since LangGraph 0.6)")
        return self


class AssistantCreate(AssistantSettings):
    graph_id: str = Field(max_length=256)
    assistant_id: UUID | None = None
    if_exists: Literal["raise", "do_nothing"] | None = None


class AssistantPatch(AssistantSettings):
    graph_id: str | None = Field(None, max_length=256)


class AssistantVersionsQuery(Strict):
    metadata: Metadata | None = None
    limit: JsonInt = Field(10, ge=1, le=1000)
    offset: JsonInt = Field(0, ge=0)


class AssistantLatest(Strict):
    version: JsonInt = Field(ge=1)


class GraphSchema(BaseModel):
    graph_id: str
    input_schema: dict[str, Any] | None
    output_schema: dict[str, Any] | None
    state_schema: dict[str, Any] | None
    config_schema: dict[str, Any] | None
    context_schema: dict[str, Any] | None
