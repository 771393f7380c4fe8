"""The gateway app: `uvicorn api.main:app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from api.deps import Services
from api.errors import install_handlers
from api.routes import chat, health, jobs
from shared.checkpoint import AsyncS3Saver
from shared.jobs import JobStore
from shared.logging import configure_logging
from shared.queue import make_celery
from shared.redis_client import make_redis
from shared.settings import Settings, get_settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    async with AsyncExitStack() as stack:
        # Clients connect lazily, so the gateway starts (and /healthz answers)
        # while Redis or S3 is still down; /readyz tells when they are up.
        redis = make_redis(settings.REDIS_URL)
        stack.push_async_callback(redis.aclose)
        saver = await stack.enter_async_context(AsyncS3Saver.from_conn_string(
            settings.s3_url, endpoint_url=settings.S3_ENDPOINT_URL,
            region_name=settings.AWS_REGION))
        celery = make_celery(settings, "gateway")
        stack.callback(celery.close)
        app.state.services = Services(settings, redis, JobStore(redis, settings.JOB_TTL_SECONDS),
                                      saver, celery)
        yield


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)
    app = FastAPI(
        title="LangGraph chat on a queue, with memory in S3",
        version="0.1.0",
        description="Queue chat turns, wait for or poll their replies, and read or delete "
                    "conversations. See README.md.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_handlers(app)
    for module in (chat, jobs, health):
        app.include_router(module.router)
    return app


app = create_app()
