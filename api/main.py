"""The gateway app: `uvicorn api.main:app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api.agent import assistants, graph_views, runs, server
from api.agent import threads as agent_threads
from api.agent.server import VERSION
from api.deps import Services
from api.errors import install_handlers
from api.events import EventHub
from api.middleware import BodyLimit, JsonBodies, RequestId
from api.publisher import TurnPublisher
from api.ratelimit import ClientRateLimit
from api.routes import chat, docs, health, jobs, metrics, page, threads
from shared.graphs import load_registry
from shared.legacy_threads import LegacyThreads
from shared.logging import configure_logging
from shared.metric_files import fold_if_shared
from shared.queue import make_celery
from shared.redis_client import learn_nodes, state_redis
from shared.scoped_saver import ScopedSaver
from shared.settings import Settings, get_settings
from shared.storage import open_saver
from shared.store.conversations import Conversations
from shared.store.inbox import Inbox
from shared.store.jobs import JobStore
from shared.tracing import instrument_app, setup_tracing

log = structlog.get_logger("api.main")

@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    fold_if_shared()  # the metric files of this host's processes that ended before
    async with AsyncExitStack() as stack:
        # Clients connect lazily, so the gateway starts (and /healthz answers)
        # while Redis or S3 is still down; /readyz tells when they are up. (A
        # cluster that is up has its nodes learnt now: learn_nodes says why.)
        redis = state_redis(settings)
        stack.push_async_callback(redis.aclose)
        await learn_nodes(redis)
        saver = await stack.enter_async_context(open_saver(settings))
        celery = make_celery(settings, "gateway")
        stack.callback(celery.close)
        client_limit = None
        if settings.CLIENT_RATE_LIMIT:
            client_limit = ClientRateLimit(redis, settings.CLIENT_RATE_LIMIT,
                                           settings.CLIENT_RATE_WINDOW_SECONDS)
            stack.push_async_callback(client_limit.aclose)
        hub = EventHub(redis, settings.GATEWAY_MAX_WAITERS,
                       settings.MAX_WAITS_PER_KEY)
        hub.start()
        stack.push_async_callback(hub.aclose)
        publisher = TurnPublisher(celery)
        publisher.start()
        stack.callback(publisher.stop)
        jobs = JobStore(redis, settings.JOB_TTL_SECONDS)
        conversations, inbox = Conversations(redis), Inbox(redis, jobs)
        legacy = LegacyThreads(saver, conversations, inbox)
        app.state.services = Services(
            settings, redis, jobs, saver, ScopedSaver(saver, legacy.adopt), legacy, celery,
            client_limit, hub, conversations, app.state.graphs, publisher, inbox)
        yield


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)
    setup_tracing("chat-gateway")
    if settings.api_keys and settings.OWNER_ID_SECRET is None:
        log.warning("owner_ids_unsalted", hint="set OWNER_ID_SECRET (README, Security)")
    app = FastAPI(
        title="LangGraph chat on a queue, with memory in S3",
        version=VERSION,
        description="Queue chat turns, wait for or poll their replies, and read or delete "
                    "conversations. See README.md.",
        lifespan=lifespan,
        # Served by api/routes/docs.py instead, behind the API key.
        openapi_url=None, docs_url=None, redoc_url=None,
    )
    app.state.settings = settings
    # Every declared graph is imported now: one that cannot be stops the gateway.
    app.state.graphs = load_registry(settings.LANGGRAPH_CONFIG, settings.CHAT_GRAPH_ID)
    app.state.page_html = page.page_html(bool(settings.api_keys))
    install_handlers(app)
    instrument_app(app)
    # The last added runs first: every request, even a refused one, has an id.
    app.add_middleware(JsonBodies)
    app.add_middleware(BodyLimit, limit=settings.MAX_BODY_BYTES)
    app.add_middleware(RequestId)
    if settings.cors_origins:
        # Outermost: a browser's preflight is answered before anything else.
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
            allow_headers=["*"], max_age=600,
            # What the LangGraph SDK reads from a run's answer, and ours.
            expose_headers=["Content-Location", "Location", "X-Job-Id", "X-Request-ID"])
    for router in (chat.router, threads.router, jobs.router, health.router, metrics.router,
                   docs.router, page.router, assistants.router, graph_views.router,
                   agent_threads.router, runs.router, server.router):
        app.include_router(router)
    app.mount("/static", page.PageFiles(directory=page.STATIC_DIR), name="static")
    if not settings.api_keys:
        docs.declare_no_auth(app)
    docs.name_assistant_ids(app, list(app.state.graphs.entries))
    return app


app = create_app()
