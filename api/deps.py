"""FastAPI dependencies, as Annotated aliases."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from redis.asyncio import Redis

from api.errors import Unauthorized
from shared.checkpoint import AsyncS3Saver
from shared.jobs import JobStore
from shared.settings import Settings


@dataclass
class Services:
    """What the gateway holds for its whole life (made in the lifespan)."""

    settings: Settings
    redis: Redis
    jobs: JobStore
    saver: AsyncS3Saver
    celery: Celery


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_owner(request: Request, services: ServicesDep) -> str:
    """The caller's identity: a digest of its API key ("" when auth is off).

    Keys are compared in constant time and never stored or logged: only a
    digest names the owner.
    """
    keys = services.settings.api_keys
    if not keys:
        return ""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    # Every key is compared, so the time taken says nothing about which one matched.
    matches = [hmac.compare_digest(token.encode(), key.encode()) for key in keys]
    if scheme.lower() == "bearer" and any(matches):
        return hashlib.sha256(token.encode()).hexdigest()[:32]
    raise Unauthorized("missing or invalid API key",
                       headers={"WWW-Authenticate": "Bearer"})


OwnerDep = Annotated[str, Depends(get_owner)]
