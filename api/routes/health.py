"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ServicesDep
from api.schemas import Health
from shared.redis_client import ping

router = APIRouter(tags=["health"])

PROBE_TIMEOUT = 2.0


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """200 while the process runs."""
    return Health(status="ok")


async def _probe(check: Awaitable[Any]) -> str:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            await check
    except Exception as exc:
        return f"unavailable ({type(exc).__name__})"
    return "ok"


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(services: ServicesDep) -> JSONResponse:
    """200 when Redis and S3 answer; 503 naming the failing dependency otherwise."""
    redis, s3 = await asyncio.gather(_probe(ping(services.redis)), _probe(services.saver.aping()))
    checks = {"redis": redis, "s3": s3}
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
