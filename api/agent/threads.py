"""Threads: made, found, searched, annotated, copied and deleted; their state and history.

A thread is a conversation like any other: one made by POST /chat can be
read here, and one made here can be posted to. Only threads made or run
through this API have a record (metadata) and are found by search.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Path, Response
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple
from langgraph.errors import InvalidUpdateError

from api import conversations
from api.agent import run_jobs, state
from api.agent.records import RecordsDep, ThreadRecords
from api.agent.schemas import (
    CheckpointAt,
    HistoryQuery,
    StateUpdate,
    StateUpdated,
    Thread,
    ThreadCreate,
    ThreadPatch,
    ThreadSearch,
    ThreadState,
    ThreadStatus,
)
from api.deps import OwnerDep, Services, ServicesDep, StoredThreadDep, limit_client
from api.errors import BadRequest, Conflict, NotFound
from api.openapi_responses import errors
from shared.conversation import OWNER_FIELD, stored_owner
from shared.ids import ID_PATTERN, MAX_ID_LENGTH, new_id, shown_thread_id, stored_thread_id
from shared.scoped_saver import thread_config
from shared.store.agent_threads import ThreadRecord

router = APIRouter(tags=["threads"], dependencies=[Depends(limit_client)])

IdPath = Annotated[str, Path(pattern=ID_PATTERN, max_length=MAX_ID_LENGTH)]
NO_SUCH_THREAD = run_jobs.NO_SUCH_THREAD
NO_SUCH_CHECKPOINT = run_jobs.NO_SUCH_CHECKPOINT
# A thread is answered without the fields left unset: a thread with no state
# has no error nor interrupts (Thread).
_SHOWN: dict[str, Any] = {"response_model_exclude_unset": True}


def _time(stamp: float) -> datetime:
    return datetime.fromtimestamp(stamp, UTC)


async def _view(services: Services, stored: str, record: ThreadRecord | None,
                saved: CheckpointTuple | None) -> Thread:
    if record is not None:
        created, updated = _time(record.created_at), _time(record.updated_at)
        busy, metadata = record.busy, record.metadata
    else:
        assert saved is not None
        created = updated = state.saved_at(saved)
        busy, metadata = await services.inbox.busy(stored), {}
    current = await state.thread_state(services, saved)
    interrupts = state.interrupts_of(current)
    status: ThreadStatus = "busy" if busy else "interrupted" if interrupts else "idle"
    if saved is None:  # no run yet: no state, nor a config it ran with
        return Thread(thread_id=shown_thread_id(stored), created_at=created, updated_at=updated,
                      state_updated_at=created, metadata=metadata, status=status, config={},
                      values=None)
    # The LangGraph Server shows the config its runs gave the thread; none
    # is kept here beyond the run's own record, so its configurable is empty.
    return Thread(thread_id=shown_thread_id(stored), created_at=created, updated_at=updated,
                  state_updated_at=state.saved_at(saved), metadata=metadata, status=status,
                  config={"configurable": {}}, values=current.values, error=None,
                  interrupts=interrupts)


async def _find(services: Services, records: ThreadRecords, stored: str,
                owner: str) -> tuple[ThreadRecord | None, CheckpointTuple | None]:
    """The thread's record and latest checkpoint; 404 unless it has one of them
    and is `owner`'s (which its stored id says; what is stored with it must
    agree)."""
    # The checkpoint first: reading it moves a thread still under its bare
    # id, record and all (shared.legacy_threads).
    saved = await state.latest(services, stored)
    record = await records.get(stored)
    if record is not None and record.owner != owner:
        raise NotFound(NO_SUCH_THREAD)
    if record is None and saved is None:
        raise NotFound(NO_SUCH_THREAD)
    # The owner stored with the conversation decides, whatever Redis says.
    if saved is not None and owner and stored_owner(saved.metadata) != owner:
        raise NotFound(NO_SUCH_THREAD)
    return record, saved


@router.post("/threads", response_model=Thread, responses=errors(400, 409), **_SHOWN)
async def create_thread(body: ThreadCreate, services: ServicesDep, records: RecordsDep,
                        owner: OwnerDep) -> Thread:
    """Make a thread (with the given id, or a new one)."""
    stored = stored_thread_id(owner, body.thread_id or new_id())
    taken = Conflict("a thread with this id exists")
    may_exist = body.if_exists == "do_nothing"
    # A conversation made by POST /chat exists without a record.
    if (body.thread_id and not may_exist
            and await conversations.stored_metadata(services, stored) is not None):
        raise taken
    if not await records.write(stored, owner, "create", body.metadata,
                               services.settings.MAX_THREADS_PER_CLIENT) and not may_exist:
        raise taken
    record, saved = await _find(services, records, stored, owner)
    return await _view(services, stored, record, saved)


@router.post("/threads/search", response_model=list[Thread], responses=errors(400),
             **_SHOWN)
async def search_threads(body: ThreadSearch, services: ServicesDep, records: RecordsDep,
                         owner: OwnerDep) -> list[Thread]:
    """The caller's threads that match, most recently updated first (by default)."""
    ids = {stored_thread_id(owner, i) for i in body.ids} if body.ids is not None else None

    def keep(record: ThreadRecord) -> bool:
        return (record.matches(body.metadata or {})
                and (ids is None or record.thread_id in ids)
                and (body.status is None or (body.status == "busy") == record.busy))

    found = await records.search(owner, body.sort_order != "asc", body.offset, body.limit, keep)
    saved = await asyncio.gather(*(state.latest(services, r.thread_id) for r in found))
    return [await _view(services, r.thread_id, r, s) for r, s in zip(found, saved, strict=True)]


@router.get("/threads/{thread_id}", response_model=Thread, responses=errors(404), **_SHOWN)
async def get_thread(stored: StoredThreadDep, services: ServicesDep, records: RecordsDep,
                     owner: OwnerDep) -> Thread:
    """The thread, with its current state values."""
    record, saved = await _find(services, records, stored, owner)
    return await _view(services, stored, record, saved)


@router.patch("/threads/{thread_id}", response_model=Thread, responses=errors(400, 404),
              **_SHOWN)
async def update_thread(stored: StoredThreadDep, body: ThreadPatch, services: ServicesDep,
                        records: RecordsDep, owner: OwnerDep) -> Thread:
    """Merge metadata into the thread's."""
    await _find(services, records, stored, owner)
    await records.write(stored, owner, "ensure", body.metadata)
    record, saved = await _find(services, records, stored, owner)
    return await _view(services, stored, record, saved)


@router.delete("/threads/{thread_id}", status_code=204, response_class=Response,
               responses={**errors(404), 204: {"description": "Deleted."}})
async def delete_thread(stored: StoredThreadDep, services: ServicesDep, records: RecordsDep,
                        owner: OwnerDep) -> Response:
    """Delete the thread for good; its pending and running runs end interrupted."""
    await _find(services, records, stored, owner)
    await conversations.erase(services, stored)
    return Response(status_code=204)


@router.get("/threads/{thread_id}/state", response_model=ThreadState, responses=errors(404))
async def get_state(stored: StoredThreadDep, services: ServicesDep, records: RecordsDep,
                    owner: OwnerDep) -> ThreadState:
    """The thread's latest state."""
    _, saved = await _find(services, records, stored, owner)
    return await state.thread_state(services, saved)


async def _state_at(services: Services, records: ThreadRecords, stored: str, owner: str,
                    checkpoint_id: str | None) -> ThreadState:
    _, latest = await _find(services, records, stored, owner)
    if checkpoint_id is None:
        # No checkpoint named: the latest, as GET .../state (empty on a new thread).
        return await state.thread_state(services, latest)
    saved = await state.latest(services, stored, checkpoint_id)
    if saved is None:
        raise NotFound(NO_SUCH_CHECKPOINT)
    return await state.thread_state(services, saved)


@router.get("/threads/{thread_id}/state/{checkpoint_id}", response_model=ThreadState,
            responses=errors(404))
async def get_state_at(stored: StoredThreadDep, checkpoint_id: IdPath, services: ServicesDep,
                       records: RecordsDep, owner: OwnerDep) -> ThreadState:
    """The thread's state at one of its checkpoints."""
    return await _state_at(services, records, stored, owner, checkpoint_id)


@router.post("/threads/{thread_id}/state/checkpoint", response_model=ThreadState,
             responses=errors(400, 404))
async def post_state_at(stored: StoredThreadDep, body: CheckpointAt, services: ServicesDep,
                        records: RecordsDep, owner: OwnerDep) -> ThreadState:
    """The thread's state at one of its checkpoints (named in the body)."""
    return await _state_at(services, records, stored, owner, body.checkpoint.checkpoint_id)


@router.post("/threads/{thread_id}/state", response_model=StateUpdated,
             responses=errors(400, 404, 409))
async def update_state(stored: StoredThreadDep, body: StateUpdate, services: ServicesDep,
                       records: RecordsDep, owner: OwnerDep) -> StateUpdated:
    """Write values into the thread's state, as node `as_node` would (a new checkpoint)."""
    record, saved = await _find(services, records, stored, owner)
    if await services.inbox.busy(stored):
        raise Conflict("the thread has a run pending or running: update its state after it")
    graph_id = str((saved.metadata if saved is not None else {}).get("graph_id")
                   or (record.metadata if record is not None else {}).get("graph_id") or "")
    entry = services.graphs.find(graph_id)
    if entry is None:
        raise Conflict("no graph has run on this thread yet: its state has no shape to update")
    checkpoint_id = body.start_checkpoint()
    if checkpoint_id is not None and await state.latest(
            services, stored, checkpoint_id) is None:
        raise NotFound(NO_SUCH_CHECKPOINT)
    config: dict[str, Any] = {
        **thread_config(stored, checkpoint_id),
        # Stored with the checkpoint, as a run's are: the owner above all.
        "metadata": {OWNER_FIELD: owner, "graph_id": entry.graph_id}}
    graph = entry.compiled(services.checkpointer, cast(RunnableConfig, config))
    try:
        written = await graph.aupdate_state(cast(RunnableConfig, config), body.values,
                                            as_node=body.as_node)
    except (InvalidUpdateError, ValueError) as exc:
        raise BadRequest(f"as_node/values: {exc}") from None
    ref = state.ref_of(written)
    assert ref is not None
    return StateUpdated(checkpoint=ref, configurable=ref, checkpoint_id=ref.checkpoint_id)


@router.post("/threads/{thread_id}/history", response_model=list[ThreadState],
             responses=errors(400, 404))
async def get_history(stored: StoredThreadDep, body: HistoryQuery, services: ServicesDep,
                      records: RecordsDep, owner: OwnerDep) -> list[ThreadState]:
    """The thread's states at the checkpoints the store keeps, newest first."""
    _, saved = await _find(services, records, stored, owner)
    checkpoint_id = body.checkpoint.checkpoint_id if body.checkpoint is not None else None
    return [item async for item in state.history(services, stored, saved, checkpoint_id,
                                                 body.before_id(), body.metadata or None,
                                                 body.limit)]


@router.post("/threads/{thread_id}/copy", response_model=Thread, responses=errors(404),
             **_SHOWN)
async def copy_thread(stored: StoredThreadDep, services: ServicesDep, records: RecordsDep,
                      owner: OwnerDep) -> Thread:
    """Copy the thread, its state and metadata, to a new thread."""
    record, saved = await _find(services, records, stored, owner)
    copy = stored_thread_id(owner, new_id())
    if saved is not None:
        await services.saver.acopy_thread(stored, copy)
    await records.write(copy, owner, "create", record.metadata if record else None)
    copied, copy_saved = await _find(services, records, copy, owner)
    return await _view(services, copy, copied, copy_saved)
