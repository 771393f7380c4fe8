"""The OpenAPI schema and the docs pages, behind the same key check as the API.

FastAPI's own copies of these routes take no dependencies, so they would stay
open with API_KEYS set; `create_app` turns them off and includes this router.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from api.deps import limit_client
from shared.ids import assistant_id_pattern

SCHEMA_URL = "/openapi.json"

router = APIRouter(include_in_schema=False, dependencies=[Depends(limit_client)])


@router.get(SCHEMA_URL)
async def schema(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url=SCHEMA_URL, title=f"{request.app.title} - Swagger UI")


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(openapi_url=SCHEMA_URL, title=f"{request.app.title} - ReDoc")


def declare_no_auth(app: FastAPI) -> None:
    """Leaves the bearer scheme and the 401s out of the app's schema.

    The routes declare them through `get_owner`'s HTTPBearer whatever the
    settings; without API_KEYS the server checks no key, and a schema that
    asks for one would send clients after a key that does not exist.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        # FastAPI caches the schema it returns; stripping it again finds nothing.
        spec = generate()
        spec.get("components", {}).pop("securitySchemes", None)
        for operations in spec["paths"].values():
            for operation in operations.values():
                operation.pop("security", None)
                operation.get("responses", {}).pop("401", None)
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def name_assistant_ids(app: FastAPI, graph_ids: list[str]) -> None:
    """Gives every `assistant_id` the app takes (a path's, a run's) the pattern
    the gateway checks: an assistant's id (a UUID) or a declared graph's id.
    The graphs are known only once langgraph.json is read, so the schema
    learns them here; what else is sent is a 422, as the schema then says."""
    generate = app.openapi
    pattern = assistant_id_pattern(graph_ids)

    def openapi() -> dict[str, Any]:
        spec = generate()
        for operations in spec["paths"].values():
            for operation in operations.values():
                for parameter in operation.get("parameters", []):
                    if parameter["name"] == "assistant_id":
                        parameter["schema"]["pattern"] = pattern
        for model in spec.get("components", {}).get("schemas", {}).values():
            field = model.get("properties", {}).get("assistant_id")
            if field is not None and field.get("type") == "string":
                field["pattern"] = pattern
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
