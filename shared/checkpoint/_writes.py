"""How a namespace is written: a delta head, a self-contained head, or a spill.

Bytes per turn: a delta head holds what the thread gained since its base,
and is uploaded whole every turn. Once the delta heads uploaded since the base
add up to ``REWRITE_COST`` times the base's size, the next write folds
everything into one self-contained head, and the write after that freezes it
into the other base slot ("spill"): rent is paid until it has paid for a
purchase, which keeps a turn within twice the best cycle whatever the
conversation. After a read of a delta head and its base (2 GETs) a turn has
one PUT left, so only a write after a self-contained head may spill.

Base slots alternate and are written conditionally on the ETag the head
recorded for them, so that no writer overwrites a base another head names.
"""

from __future__ import annotations

import os
from dataclasses import replace

from ._cache import Loaded
from ._layout import SLOTS
from ._requests import Delete, Found, Get, Plan, Put
from ._state import Segment, State, compact, decode, diff, encode
from .base import BaseS3Saver
from .errors import CheckpointConflict, S3SaverError

# A compaction costs a self-contained head then a base: about two bases of bytes.
REWRITE_COST = 2


def write(
    saver: BaseS3Saver,
    thread_id: str,
    ns: str,
    loaded: Loaded | None,
    state: State,
    *,
    purge: bool = False,
) -> Plan[None]:
    """Make ``state`` the namespace's content, conditional on ``loaded`` being current.

    Picks the cheapest form within the request budget (module docstring):
    a delta head, a self-contained head, or a spill into a base slot. With
    ``purge``, the head is written self-contained and the base slots are
    deleted, so that nothing dropped survives in an old base.

    Raises:
        CheckpointConflict: If the head changed since ``loaded`` was read.
    """
    token = os.urandom(8)
    if loaded is not None and loaded.base is not None and not purge:
        # Rent (delta heads) while it stays below the price of a rewrite (2 bases).
        spent = loaded.head.spent + loaded.head_size
        delta = diff(state, loaded.base) if spent <= REWRITE_COST * loaded.base_size else None
        if delta is not None:
            segment = replace(
                loaded.head, delta=delta[0], dropped=delta[1], token=token, spent=spent,
                items_start=len(loaded.base.delta.items),
            )
            yield from _put_head(saver, thread_id, ns, loaded, segment, state, loaded.base)
            return
    compacted = compact(state)
    previous = loaded.head if loaded is not None else None
    segment = Segment(
        compacted,
        token,
        slots=previous.slots if previous is not None and not purge else (None, None),
        last_slot=previous.last_slot if previous is not None else None,
    )
    body = encode(segment, compress_over=saver.compress_over)
    # After reading a delta head (2 GETs), a turn has one PUT left: no spill.
    if loaded is None or loaded.base is not None or purge or len(body) <= saver.spill_over:
        yield from _put_head(saver, thread_id, ns, loaded, segment, compacted, None, body)
        if purge and previous is not None:
            # Both slots, known or not: a writer that lost a race may have left one.
            yield Delete(tuple(saver.keys.base(thread_id, ns, s) for s in SLOTS))
        return
    yield from _spill(saver, thread_id, ns, loaded, compacted, token)


def _spill(
    saver: BaseS3Saver,
    thread_id: str,
    ns: str,
    loaded: Loaded,
    compacted: State,
    token: bytes,
) -> Plan[None]:
    """Freeze the state into the other base slot and leave a near-empty delta head."""
    head = loaded.head
    slot = 0 if head.last_slot != 0 else 1
    key = saver.keys.base(thread_id, ns, slot)
    expected = head.slots[slot]
    base = Segment(compacted, token)
    base_body = encode(base, compress_over=saver.compress_over)
    try:
        base_etag = yield Put(key, base_body, if_match=expected, create=expected is None)
    except CheckpointConflict:
        # The slot is not as this head last knew it: our own retried PUT, or a
        # writer that lost the head race after writing it. Learn its ETag
        # through a head write (which fails if we are stale), never by
        # overwriting a slot that a concurrent writer may be about to name.
        found = yield Get(key)
        if not isinstance(found, Found) or _token(found.body, "base") != token:
            slots = _with_slot(head.slots, slot, found.etag if isinstance(found, Found) else None)
            segment = Segment(compacted, token, slots=slots, last_slot=head.last_slot)
            yield from _put_head(saver, thread_id, ns, loaded, segment, compacted, None)
            return
        base_etag = found.etag
    segment = Segment(
        State(), token, base=(slot, base_etag), items_start=len(compacted.items),
        slots=_with_slot(head.slots, slot, base_etag), last_slot=slot,
    )
    yield from _put_head(
        saver, thread_id, ns, loaded, segment, compacted, base, base_size=len(base_body)
    )


def _put_head(
    saver: BaseS3Saver,
    thread_id: str,
    ns: str,
    loaded: Loaded | None,
    segment: Segment,
    state: State,
    base: Segment | None,
    body: bytes | None = None,
    *,
    base_size: int | None = None,
) -> Plan[None]:
    """PUT the head, conditional on ``loaded``, and remember what it now holds."""
    key = saver.keys.head(thread_id, ns)
    if body is None:
        body = encode(segment, compress_over=saver.compress_over)
    try:
        etag: str = yield Put(
            key, body, if_match=loaded.etag if loaded else None, create=loaded is None
        )
    except CheckpointConflict:
        # A retried PUT whose first try landed fails its own condition: look
        # before blaming another writer.
        found = yield Get(key)
        if not isinstance(found, Found) or _token(found.body, "head") != segment.token:
            raise
        etag = found.etag
    if base_size is None:
        base_size = loaded.base_size if base is not None and loaded is not None else 0
    saver.cache.put(thread_id, ns, Loaded(etag, segment, len(body), base, base_size, state))


def _with_slot(
    slots: tuple[str | None, str | None], slot: int, etag: str | None
) -> tuple[str | None, str | None]:
    return (etag, slots[1]) if slot == 0 else (slots[0], etag)


def _token(body: bytes, what: str) -> bytes | None:
    try:
        return decode(body, what).token
    except S3SaverError:
        return None
