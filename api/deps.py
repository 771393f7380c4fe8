"""FastAPI dependencies, as Annotated aliases."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from celery import Celery
from fastapi import Depends, Path, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from redis.asyncio import Redis

from api.errors import Unauthorized
from api.events import EventHub
from api.publisher import TurnPublisher
from api.ratelimit import ClientRateLimit
from shared.checkpoint import AsyncS3Saver
from shared.graphs import GraphRegistry
from shared.ids import ID_PATTERN, MAX_ID_LENGTH, digest_id, stored_thread_id
from shared.legacy_threads import LegacyThreads
from shared.scoped_saver import ScopedSaver
from shared.settings import Settings
from shared.store.conversations import Conversations
from shared.store.inbox import Inbox
from shared.store.jobs import JobStore


@dataclass
class Services:
    """What the gateway holds for its whole life (made in the lifespan)."""

    settings: Settings
    redis: Redis
    jobs: JobStore
    saver: AsyncS3Saver  # by stored thread ids
    checkpointer: ScopedSaver  # the graphs': the saver, by the ids clients know
    legacy: LegacyThreads
    celery: Celery
    client_limit: ClientRateLimit | None
    hub: EventHub
    conversations: Conversations
    graphs: GraphRegistry
    publisher: TurnPublisher
    inbox: Inbox


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

# Declares the scheme in OpenAPI; the check itself is `get_owner`'s.
bearer = HTTPBearer(auto_error=False, description="One of the keys in API_KEYS.")
# The header the LangGraph SDK sends its key in; worth the same as the Bearer one.
api_key_header = APIKeyHeader(name="x-api-key", auto_error=False,
                              description="One of the keys in API_KEYS (the LangGraph SDK's "
                                          "header).")


def get_owner(services: ServicesDep,
              credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
              api_key: Annotated[str | None, Depends(api_key_header)]) -> str:
    """The caller's identity: a digest of its API key ("" when auth is off).

    Keys are compared in constant time and never stored or logged: only a
    digest names the owner.
    """
    keys = services.settings.api_keys
    if not keys:
        return ""
    token = credentials.credentials if credentials is not None else api_key
    # Digests of equal length are compared, against every key, so the time
    # taken says nothing about a key's length or which one matched.
    offered = hashlib.sha256((token or "").encode()).digest()
    matches = [hmac.compare_digest(offered, hashlib.sha256(key.encode()).digest())
               for key in keys]
    if token is not None and any(matches):
        return digest_id(token, services.settings.owner_id_key)
    raise Unauthorized("missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})


OwnerDep = Annotated[str, Depends(get_owner)]


def get_stored_thread(thread_id: Annotated[str, Path(pattern=ID_PATTERN,
                                                     max_length=MAX_ID_LENGTH)],
                      owner: OwnerDep) -> str:
    """The caller's own thread the path names, by its stored id (a thread id
    is private to its key: shared.ids.stored_thread_id)."""
    return stored_thread_id(owner, thread_id)


StoredThreadDep = Annotated[str, Depends(get_stored_thread)]


def check_metrics_token(
        services: ServicesDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        api_key: Annotated[str | None, Depends(api_key_header)]) -> None:
    """GET /metrics: METRICS_TOKEN when it is set (API keys are refused then),
    else whatever opens the other routes."""
    token = services.settings.METRICS_TOKEN
    if token is None:
        get_owner(services, credentials, api_key)
        return
    offered = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(hashlib.sha256(offered.encode()).digest(),
                               hashlib.sha256(token.encode()).digest()):
        raise Unauthorized("missing or invalid metrics token",
                           headers={"WWW-Authenticate": "Bearer"})


def get_client(request: Request, services: ServicesDep, owner: OwnerDep) -> str:
    """Who the per-client limits count: the key's digest, or the address's
    digest when auth is off."""
    address = request.client.host if request.client is not None else "unknown"
    return owner or digest_id(address, services.settings.owner_id_key)


ClientDep = Annotated[str, Depends(get_client)]


async def limit_client(services: ServicesDep, client: ClientDep) -> None:
    """Counts the request against its client's limit (429 over it); after auth,
    so an unknown key is refused without touching Redis."""
    if services.client_limit is not None:
        await services.client_limit.check(client)
