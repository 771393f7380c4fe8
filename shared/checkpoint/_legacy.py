"""Threads stored in the previous format (2), read so that their next write migrates them.

Format 2 kept, per namespace, a ``head`` that was either self-contained or a
delta over a frozen ``base/0`` or ``base/1``; list values were ranges into
an item log, and, with encryption on, each value was sealed alone
(``"msgpack+aesgcm"`` type tags, no associated data). Reading such a head
costs one more GET when it names a base. The state read here is in the
current shape; the next write replaces the head conditionally on its ETag
and then deletes the base slots. With a transcript channel, the latest
checkpoint's list becomes the transcript, stamped with that checkpoint's
``ts``, and is sealed by that write.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ._cache import Loaded
from ._codec import unpack
from ._requests import Found, Get, Plan
from ._state import Blob, Entry, Record, State, Transcript, Typed, WriteRecord, digest, typed_pair
from .base import BaseS3Saver
from .errors import CheckpointConflict, S3SaverError

VERSION = 2
_SLOTS = (0, 1)


def base_keys(saver: BaseS3Saver, thread_id: str, ns: str) -> tuple[str, ...]:
    """The keys of the base slots a format-2 head may have named."""
    return tuple(f"{saver.keys.namespace(thread_id, ns)}base/{slot}" for slot in _SLOTS)


def load(saver: BaseS3Saver, thread_id: str, ns: str, head: Found) -> Plan[Loaded | None]:
    """Read a format-2 namespace (head, and its base when it is a delta).

    Returns:
        The namespace in the current shape, or ``None`` if its base changed
        under the read (read the head again).

    Raises:
        S3SaverError: If an object is corrupt or cannot be decrypted.
    """
    fields = _fields(head.body, "head")
    merged = fields
    if fields["base"]:
        slot, etag = fields["base"]
        try:
            got = yield Get(base_keys(saver, thread_id, ns)[int(slot)], if_match=str(etag))
        except CheckpointConflict:
            return None
        if not isinstance(got, Found):
            return None
        merged = _merge(_fields(got.body, "base"), fields)
    try:
        state = _state(saver, merged)
    except (KeyError, TypeError, ValueError, IndexError, NotImplementedError) as exc:
        raise S3SaverError(f"corrupt format-2 object of {thread_id!r}: {exc!r}") from exc
    return Loaded(head.etag, len(head.body), state, legacy=True)


def _fields(body: bytes, what: str) -> dict[str, Any]:
    return unpack(body, f"format-2 {what}", cipher=None, place=b"", version=VERSION)


def _merge(base: Mapping[str, Any], head: Mapping[str, Any]) -> dict[str, Any]:
    if head["i0"] != len(base["items"]):
        raise S3SaverError("format-2 head does not continue its base (item log mismatch)")
    dropped = set(head["drop"])
    records = {r[0]: r for r in base["recs"] if r[0] not in dropped}
    records.update({r[0]: r for r in head["recs"]})
    blobs = {(b[0], b[1]): b for b in base["blobs"]}
    blobs.update({(b[0], b[1]): b for b in head["blobs"]})
    writes = {i: w for i, w in base["writes"] if i not in dropped}
    writes.update(dict(head["writes"]))
    return {
        "recs": list(records.values()), "blobs": list(blobs.values()),
        "items": base["items"] + head["items"], "writes": list(writes.items()),
    }


def _state(saver: BaseS3Saver, fields: Mapping[str, Any]) -> State:
    cipher = saver.cipher

    def plain(pair: Any) -> Typed:
        typed = typed_pair(tuple(pair))
        if "+" not in typed[0]:
            return typed
        if cipher is None:
            raise ValueError("format-2 value is encrypted and no key was given")
        return cipher.open_value(typed)

    items = [plain(t) for t in fields["items"]]
    refs = [digest(t) for t in items]
    state = State(items=dict(zip(refs, items, strict=True)))
    for rid, parent, ct, cb, mt, mb, versions, run_id, replay in fields["recs"]:
        state.records[rid] = Record(
            rid, parent, plain((ct, cb)), plain((mt, mb)), dict(versions), run_id, tuple(replay)
        )
    for channel, version, kind, value, ranges in fields["blobs"]:
        indexes = [
            i for s, e in zip(ranges[::2], ranges[1::2], strict=True) for i in range(s, e)
        ]
        state.blobs[(channel, version)] = Blob(
            kind, plain(value) if value else None, tuple(refs[i] for i in indexes)
        )
    for cid, ws in fields["writes"]:
        state.writes[cid] = tuple(
            WriteRecord(t, int(i), c, plain((vt, vb)), p) for t, i, c, vt, vb, p in ws
        )
    latest = state.records.get(state.latest_id() or "")
    channel = saver.transcript
    if latest is not None and channel is not None and channel in latest.versions:
        blob = state.blobs.get((channel, latest.versions[channel]))
        if blob is not None and blob.kind == "l":
            ts = str(saver.serde.loads_typed(latest.checkpoint).get("ts", ""))
            state.transcript = Transcript(
                os.urandom(8).hex(), saver.segment_size,
                tail=tuple(Entry(ref, ts) for ref in blob.refs),
            )
    return state
