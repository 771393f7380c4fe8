"""What a LangGraph client asks of the server itself before anything else."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from langgraph.version import __version__ as LANGGRAPH_VERSION

from api.deps import OwnerDep, limit_client
from api.openapi_responses import errors

router = APIRouter(tags=["server"], dependencies=[Depends(limit_client)])

VERSION = "0.1.0"


@router.get("/info", response_model=dict[str, Any], responses=errors())
async def info(_: OwnerDep) -> dict[str, Any]:
    """The server's version and what it serves (the LangGraph SDKs read it at start)."""
    return {"version": VERSION, "langgraph_py_version": LANGGRAPH_VERSION,
            "flags": {"assistants": True, "crons": False, "langsmith": False,
                      "langsmith_tracing_replicas": False}}


@router.get("/ok", response_model=dict[str, bool], responses=errors())
async def ok(_: OwnerDep) -> dict[str, bool]:
    """200 while the process runs (the LangGraph Server's liveness probe; /healthz
    is the one that needs no key)."""
    return {"ok": True}
