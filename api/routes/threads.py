"""GET /chat/threads: the caller's conversations, from the index in Redis."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from api.deps import OwnerDep, ServicesDep, limit_client
from api.errors import ApiError
from api.openapi_responses import errors
from api.schemas import ThreadItem, ThreadList, ThreadsQuery
from shared.ids import shown_thread_id
from shared.queue import CLEANUP_TASK
from shared.store.conversations import BadCursor

router = APIRouter(tags=["chat"], dependencies=[Depends(limit_client)])
log = structlog.get_logger("api.threads")

# How often at most the gateways ask for a rebuild while the index is missing:
# one pass over the bucket answers them all.
REBUILD_ASK_SECONDS = 60


class BadThreadCursor(ApiError):
    status_code = 400


async def ask_rebuild_if_lost(services: ServicesDep) -> None:
    """Asks a worker to rebuild the lists from S3 if Redis has lost them.

    The rebuild is a cleanup pass (its reconcile step scans the bucket); a
    SET NX keeps a crowd of requests to one pass.
    """
    if await services.conversations.complete():
        return
    if await services.conversations.ask_rebuild(REBUILD_ASK_SECONDS):
        log.warning("threads_index_missing_rebuild_asked")
        await run_in_threadpool(services.celery.send_task, CLEANUP_TASK)


@router.get("/chat/threads", response_model=ThreadList, responses=errors(400))
async def list_threads(services: ServicesDep, owner: OwnerDep,
                       query: Annotated[ThreadsQuery, Query()]) -> ThreadList:
    """Your conversations, newest activity first."""
    await ask_rebuild_if_lost(services)
    try:
        found, next_before = await services.conversations.page(owner, query.limit, query.before)
    except BadCursor:
        raise BadThreadCursor("before must be the next_before of an earlier page") from None
    return ThreadList(threads=[ThreadItem(thread_id=shown_thread_id(t.thread_id), title=t.title,
                                          updated_at=t.updated_at, messages=t.messages)
                               for t in found], next_before=next_before)
