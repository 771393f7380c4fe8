"""Threads stored by this saver's first format (1), read so that they upgrade in place.

Format 1 kept, per namespace, a msgpack map ``head`` (``{"v": 1, "id", "w"}``),
one object per checkpoint ``c/{id}`` (checkpoint, values, metadata, parent)
and ``w/{id}`` (its pending writes). Reading such a head costs one or two more
GETs, until the next write replaces it (conditionally on its ETag) with a
format-2 head holding the latest checkpoint and its writes. Older format-1
checkpoints are not carried over; ``delete_thread`` removes their objects.
"""

from __future__ import annotations

from typing import Any

import ormsgpack

from ._cache import Loaded
from ._codec import MAGIC
from ._layout import validate_id
from ._requests import Found, Get, Plan
from ._state import Blob, Record, Segment, State, WriteRecord
from .base import BaseS3Saver
from .errors import S3SaverError

_TOKEN = b"format-1"


def is_legacy(body: bytes) -> bool:
    """Whether a head object is in format 1: a bare msgpack map (fixmap, map16, map32)."""
    if not body or body.startswith(MAGIC):
        return False
    return 0x80 <= body[0] <= 0x8F or body[0] in (0xDE, 0xDF)


def load(
    saver: BaseS3Saver, thread_id: str, ns: str, head: Found
) -> Plan[Loaded]:
    """Read a format-1 namespace: its latest checkpoint and that one's writes.

    Raises:
        S3SaverError: If an object is corrupt or the checkpoint is missing.
    """
    fields = _map(head.body, 1, "format-1 head")
    checkpoint_id = validate_id(fields.get("id"), "checkpoint_id")
    namespace = saver.keys.namespace(thread_id, ns)
    found = yield Get(f"{namespace}c/{checkpoint_id}")
    if not isinstance(found, Found):
        raise S3SaverError(f"format-1 head of {thread_id!r} names missing {checkpoint_id!r}")
    stored = _map(found.body, 1, "format-1 checkpoint")
    writes: tuple[WriteRecord, ...] = ()
    if fields.get("w"):
        got = yield Get(f"{namespace}w/{checkpoint_id}")
        if isinstance(got, Found):
            rows = _map(got.body, 1, "format-1 writes").get("writes", [])
            writes = tuple(WriteRecord(t, int(i), c, (v[0], v[1]), p) for t, i, c, v, p in rows)
    try:
        checkpoint = saver.serde.loads_typed(tuple(stored["checkpoint"]))
        versions = dict(checkpoint.pop("channel_versions", {}))
        metadata = tuple(stored["metadata"])
        run_id = saver.serde.loads_typed(metadata).get("run_id")
        record = Record(
            checkpoint_id, stored.get("parent"), saver.serde.dumps_typed(checkpoint),
            (metadata[0], metadata[1]), versions, run_id if isinstance(run_id, str) else None,
            (),
        )
        blobs = {
            (channel, versions[channel]): Blob("v", (value[0], value[1]))
            for channel, value in stored["values"].items()
            if channel in versions
        }
    except (KeyError, TypeError, ValueError, IndexError, NotImplementedError) as exc:
        raise S3SaverError(f"unreadable format-1 checkpoint {checkpoint_id!r}: {exc!r}") from exc
    state = State({checkpoint_id: record}, blobs, [], {checkpoint_id: writes} if writes else {})
    return Loaded(head.etag, Segment(state, _TOKEN), len(head.body), None, 0, state)


def _map(body: bytes, version: int, what: str) -> dict[str, Any]:
    try:
        fields = ormsgpack.unpackb(body)
    except ormsgpack.MsgpackDecodeError as exc:
        raise S3SaverError(f"corrupt {what} object: {exc}") from exc
    if not isinstance(fields, dict) or fields.get("v") != version:
        raise S3SaverError(f"corrupt {what} object")
    return fields
