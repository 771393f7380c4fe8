"""Reading checkpoints: one, the latest metadata, a listing, a page of the transcript.

Each reads heads through `_plans.load` (a 304 when this saver holds the head
already) and decodes only what it answers with.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointMetadata, CheckpointTuple

from ._layout import config_target, thread_of
from ._plans import load, namespaces_under, read_segment
from ._requests import Emit, Locked, Plan
from ._state import State, Transcript
from .base import BaseS3Saver, TranscriptPage


def get_tuple(saver: BaseS3Saver, config: RunnableConfig) -> Plan[CheckpointTuple | None]:
    """The checkpoint a config names, or the latest of its namespace."""
    thread_id, ns, checkpoint_id = config_target(config)
    loaded = yield Locked(thread_id, ns, load(saver, thread_id, ns))
    if loaded is None:
        return None
    state: State = loaded.state
    record = state.records.get(checkpoint_id or state.latest_id() or "")
    return saver._load_tuple(thread_id, ns, state, record) if record else None


def latest_metadata(
    saver: BaseS3Saver, thread_id: str, ns: str
) -> Plan[CheckpointMetadata | None]:
    """The metadata of a namespace's latest checkpoint, decoding nothing else."""
    thread_id = thread_of(thread_id)
    loaded = yield Locked(thread_id, ns, load(saver, thread_id, ns))
    latest = loaded.state.records.get(loaded.state.latest_id() or "") if loaded else None
    return saver._load_metadata(latest) if latest else None


def list_checkpoints(
    saver: BaseS3Saver,
    config: RunnableConfig | None,
    *,
    filter: dict[str, Any] | None,
    before: RunnableConfig | None,
    limit: int | None,
) -> Plan[None]:
    """Emit matching checkpoints, newest first within each thread.

    A thread's namespaces are read (one GET each), then only the checkpoints
    returned are decoded; a LIST finds namespaces when the config names none.
    """
    if limit is not None and limit <= 0:
        return
    before_id = (before or {}).get("configurable", {}).get("checkpoint_id")
    wanted_id: str | None = None
    if config is None:
        threads = yield from namespaces_under(saver, saver.keys.prefix)
    else:
        thread_id, ns, wanted_id = config_target(config)
        if config.get("configurable", {}).get("checkpoint_ns") is not None:
            threads = {thread_id: [ns]}
        else:
            threads = yield from namespaces_under(saver, saver.keys.thread(thread_id))
    remaining = limit
    for thread_id, namespaces in threads.items():
        found: list[tuple[str, str, State]] = []
        for ns in namespaces:
            loaded = yield Locked(thread_id, ns, load(saver, thread_id, ns))
            if loaded is not None:
                found += [
                    (rid, ns, loaded.state)
                    for rid in loaded.state.records
                    if (wanted_id is None or rid == wanted_id)
                    and (not before_id or rid < before_id)
                ]
        for rid, ns, state in sorted(found, key=lambda f: f[0], reverse=True):
            record = state.records[rid]
            if not saver._matches(record, filter):
                continue
            yield Emit(saver._load_tuple(thread_id, ns, state, record))
            if remaining is not None:
                remaining -= 1
                if remaining == 0:
                    return


def transcript_page(
    saver: BaseS3Saver, thread_id: str, ns: str, before: int | None, limit: int
) -> Plan[TranscriptPage | None]:
    """Up to ``limit`` transcript messages before position ``before`` (default: the end).

    Reads the head and at most one sealed segment, so a page holds fewer than
    ``limit`` messages when it reaches the start of that segment.
    """
    if saver.transcript is None:
        raise ValueError("this saver keeps no transcript (pass transcript=CHANNEL)")
    if limit < 1 or (before is not None and before < 0):
        raise ValueError(f"invalid page: limit={limit!r}, before={before!r}")
    thread_id = thread_of(thread_id)
    loaded = yield Locked(thread_id, ns, load(saver, thread_id, ns))
    latest = loaded.state.records.get(loaded.state.latest_id() or "") if loaded else None
    if loaded is None or latest is None:
        return None
    state = loaded.state
    log = state.transcript or Transcript("0" * 16, saver.segment_size)
    end = log.length if before is None else min(before, log.length)
    start = max(0, end - limit)
    tail_start = log.sealed * log.size
    entries = [
        (state.items[e.ref], e.ts)
        for e in log.tail[max(start, tail_start) - tail_start : max(end - tail_start, 0)]
    ]
    sealed_end = min(end, tail_start)
    if start < sealed_end:
        number = (sealed_end - 1) // log.size
        start = max(start, number * log.size)
        segment = yield from read_segment(saver, thread_id, ns, log, number)
        if segment is None:
            return None  # deleted under the read
        entries = segment[start - number * log.size : sealed_end - number * log.size] + entries
    return TranscriptPage(saver._load_entries(entries), start, saver._load_metadata(latest))
