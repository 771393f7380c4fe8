"""Whole-thread operations: delete, copy, forget runs, prune.

Each rewrites every namespace of a thread under its lock (`_plans.rewrite`,
retried on conflicts), or deletes what the thread's prefix holds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace

from ._layout import thread_of
from ._plans import load, namespaces_under, read_segment, rewrite, write_segment
from ._requests import Delete, ListKeys, Locked, Plan
from ._state import State, retain, union
from .base import BaseS3Saver
from .errors import CheckpointConflict


def delete_thread(saver: BaseS3Saver, thread_id: str) -> Plan[None]:
    """Delete every object of a thread (one LIST, then batched deletes)."""
    thread_id = thread_of(thread_id)
    keys = yield ListKeys(saver.keys.thread(thread_id))
    # Heads first, so readers stop finding the thread before its segments go.
    keys.sort(key=lambda k: not k.endswith("/head"))
    if keys:
        yield Delete(tuple(keys))
    saver.cache.forget(thread_id)


def copy_thread(saver: BaseS3Saver, source: str, target: str) -> Plan[None]:
    """Copy every namespace of a thread into another (merged with what it holds).

    The target's transcript becomes a copy of the source's, under a new
    ``gen``: each segment is read and sealed again for its new place.
    """
    source, target = thread_of(source), thread_of(target)
    namespaces = (yield from namespaces_under(saver, saver.keys.thread(source))).get(source, [])
    for ns in namespaces:
        loaded = yield Locked(source, ns, load(saver, source, ns))
        if loaded is None:
            continue
        copied = loaded.state
        log = copied.transcript
        if log is not None:
            log = replace(log, gen=os.urandom(8).hex())
            for number in range(log.sealed):
                segment = yield from read_segment(saver, source, ns, copied.transcript, number)
                if segment is None:
                    raise CheckpointConflict(f"thread {source!r} was deleted while copied")
                yield from write_segment(saver, target, ns, log, number, segment)
        adding = _adding(replace(copied, transcript=log))
        yield Locked(target, ns, rewrite(saver, target, ns, adding))


def delete_for_runs(saver: BaseS3Saver, run_ids: Sequence[str]) -> Plan[None]:
    """Delete the checkpoints (and writes) of runs, in every thread under the prefix.

    An administrative scan: it reads every namespace, since nothing indexes
    runs without costing every turn a request. Transcripts keep their messages.
    """
    runs = {str(r) for r in run_ids}
    if not runs:
        return

    def drop(state: State) -> State | None:
        gone = {i for i, r in state.records.items() if r.run_id in runs}
        if not gone:
            return None
        return replace(
            state,
            records={i: r for i, r in state.records.items() if i not in gone},
            writes={i: w for i, w in state.writes.items() if i not in gone},
        )

    threads = yield from namespaces_under(saver, saver.keys.prefix)
    for thread_id, namespaces in threads.items():
        for ns in namespaces:
            yield Locked(thread_id, ns, rewrite(saver, thread_id, ns, drop))


def prune(saver: BaseS3Saver, thread_ids: Sequence[str], strategy: str) -> Plan[None]:
    """Keep only the latest checkpoint per namespace, or delete the threads.

    ``keep_latest`` rewrites heads only: transcripts and their segments stay.
    """
    if isinstance(thread_ids, str):
        raise TypeError("thread_ids must be a sequence of thread ids, not a str")
    if strategy not in ("keep_latest", "delete"):
        raise ValueError(f"unknown prune strategy {strategy!r}")
    for thread_id in [thread_of(t) for t in thread_ids]:
        if strategy == "delete":
            yield from delete_thread(saver, thread_id)
            continue
        namespaces = (yield from namespaces_under(saver, saver.keys.thread(thread_id))).get(
            thread_id, []
        )
        for ns in namespaces:
            yield Locked(thread_id, ns, rewrite(saver, thread_id, ns, _keep_latest))


def _adding(copied: State) -> Callable[[State], State]:
    def add(state: State) -> State:
        return replace(union(state, copied), transcript=copied.transcript or state.transcript)

    return add


def _keep_latest(state: State) -> State | None:
    kept = retain(state, 1)
    return None if kept is state else kept
