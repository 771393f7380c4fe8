"""What the sync and async S3 savers share: layout, serde, values, policies. No I/O.

Storage layout: see ``_layout`` for the keys and ``_state`` for what each
object holds; every object is a versioned msgpack map (``_codec``), deflated
over 1 KiB. Values go through the saver's ``serde`` as ``(type, bytes)``
pairs stored as raw binaries. A list value is stored element by element, and
an element already stored for an earlier version of the channel is referred
to, not written again: a chat turn stores its new messages only.
"""

from __future__ import annotations

import random
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    PendingWrite,
    get_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.serde.types import _DeltaSnapshot

from ._cache import DEFAULT_CACHE_BYTES, StateCache
from ._codec import COMPRESS_OVER
from ._layout import KeyLayout, checkpoint_config, normalise_prefix, validate_id
from ._s3 import RetryPolicy
from ._state import Blob, Record, State, Typed, WriteRecord, expand, to_ranges
from .errors import S3SaverError

# A self-contained head above this many bytes is frozen into a base, so later
# turns upload only what they add.
SPILL_OVER = 4 * 1024
# What a serde or a malformed object raises; NotImplementedError is an unknown type
# tag, e.g. "pickle", which the default serde refuses to load.
_UNREADABLE = (KeyError, TypeError, ValueError, IndexError, AttributeError, NotImplementedError)


def merge_writes(
    existing: Sequence[WriteRecord], new: Sequence[WriteRecord]
) -> list[WriteRecord] | None:
    """Merge ``new`` into ``existing`` the way LangGraph savers must.

    Regular writes keep the first value stored for a ``(task_id, idx)``, so a
    retried task cannot change history; special channels (negative indexes from
    ``WRITES_IDX_MAP``, e.g. errors and interrupts) are replaced.

    Args:
        existing: Records already stored for the checkpoint.
        new: Records of one ``put_writes`` call.

    Returns:
        The merged records, or ``None`` if nothing changed (no upload needed).
    """
    merged = {(r.task_id, r.idx): r for r in existing}
    changed = False
    for record in new:
        key = (record.task_id, record.idx)
        if (record.idx >= 0 and key in merged) or merged.get(key) == record:
            continue
        merged[key] = record
        changed = True
    return list(merged.values()) if changed else None


def default_serde() -> SerializerProtocol:
    """LangGraph's serializer, locked down: never unpickles, and rebuilds only
    allow-listed types (LangChain messages included; a compiled graph adds its
    state's types through ``with_allowlist``)."""
    return JsonPlusSerializer(pickle_fallback=False, allowed_msgpack_modules=None)


class BaseS3Saver(BaseCheckpointSaver[str]):
    """Everything of the S3 saver that does no I/O; ``S3Saver`` and
    ``AsyncS3Saver`` add the client calls.

    Args:
        client: An open S3 client (boto3 for ``S3Saver``, aiobotocore for
            ``AsyncS3Saver``); the caller closes it. Prefer ``from_conn_string``.
        bucket: The bucket.
        prefix: Key prefix, normalised to end in one ``/`` (or empty).
        serde: Serializer for checkpoints, metadata, values and writes; the
            default never unpickles. Pass ``make_serde(key)`` to encrypt.
        keep_last: Keep only this many checkpoints per thread and namespace
            (and the ancestors a DeltaChannel needs); ``None`` keeps all.
        retry: Retries of throttled or failed requests.
        cache_bytes: Bound on what the saver remembers of recent threads.

    Raises:
        ValueError: If ``keep_last`` is below 1.
    """

    serde: SerializerProtocol = default_serde()

    def __init__(
        self,
        client: Any = None,
        bucket: str = "",
        prefix: str = "",
        *,
        serde: SerializerProtocol | None = None,
        keep_last: int | None = None,
        retry: RetryPolicy | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        super().__init__(serde=serde)
        if keep_last is not None and keep_last < 1:
            raise ValueError(f"keep_last must be at least 1, got {keep_last}")
        self.bucket = bucket
        self.keys = KeyLayout(normalise_prefix(prefix))
        self.keep_last = keep_last
        self.spill_over = SPILL_OVER
        self.compress_over = COMPRESS_OVER
        # Shared, not copied, by the clones LangGraph makes with ``with_allowlist``.
        self.cache = StateCache(cache_bytes)
        self._store = self._open_store(client, bucket, retry or RetryPolicy())
        self._locks: weakref.WeakValueDictionary[tuple[str, str], Any] = (
            weakref.WeakValueDictionary()
        )
        self._locks_mutex = threading.Lock()

    def _open_store(self, client: Any, bucket: str, retry: RetryPolicy) -> Any:
        """The object performing requests; the I/O classes return theirs."""
        return None

    @property
    def client(self) -> Any:
        """The underlying S3 client (e.g. to register event hooks)."""
        return self._store.client

    # --- checkpoints ------------------------------------------------------

    def _dump_record(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        parent_id: str | None,
    ) -> Record:
        """Serialise a checkpoint's bookkeeping and metadata (not its values)."""
        full = get_checkpoint_metadata(config, metadata)
        versions = dict(checkpoint["channel_versions"])
        counters = full.get("counters_since_delta_snapshot") or {}
        run_id = full.get("run_id")
        rest = {
            k: v for k, v in checkpoint.items() if k not in ("channel_values", "channel_versions")
        }
        return Record(
            id=validate_id(checkpoint["id"], "checkpoint_id"),
            parent=parent_id,
            checkpoint=self.serde.dumps_typed(rest),
            metadata=self.serde.dumps_typed(full),
            versions=versions,
            run_id=run_id if isinstance(run_id, str) else None,
            replay=tuple(c for c in counters if c in versions),
        )

    def _store_values(self, state: State, record: Record, values: Mapping[str, Any]) -> None:
        """Add to ``state`` the values of ``record`` it does not hold yet.

        A ``(channel, version)`` already stored is the same value (versions
        only move on change), so unchanged channels cost nothing.
        """
        parent = state.records.get(record.parent) if record.parent else None
        for channel, version in record.versions.items():
            if (channel, version) in state.blobs or channel not in values:
                continue
            value = values[channel]
            reference = self._reference(state, parent, channel)
            if type(value) is list:
                state.blobs[(channel, version)] = self._list_blob(state, "l", value, reference)
            elif isinstance(value, _DeltaSnapshot) and type(value.value) is list:
                state.blobs[(channel, version)] = self._list_blob(
                    state, "s", value.value, reference
                )
            else:
                state.blobs[(channel, version)] = Blob("v", self.serde.dumps_typed(value))

    def _reference(self, state: State, parent: Record | None, channel: str) -> Blob | None:
        # Elements are found by content, so any earlier list of the channel will
        # do; the parent's is the likeliest to share them.
        for record in (parent, state.records.get(state.latest_id() or "")):
            if record is not None and channel in record.versions:
                blob = state.blobs.get((channel, record.versions[channel]))
                if blob is not None and blob.kind != "v":
                    return blob
        return None

    def _list_blob(
        self, state: State, kind: str, values: list[Any], reference: Blob | None
    ) -> Blob:
        known = expand(reference.ranges) if reference is not None else []
        plain = self._plain_serde()
        by_content: dict[Typed, int] | None = None
        indexes: list[int] = []
        for position, value in enumerate(values):
            typed = plain.dumps_typed(value)
            index: int | None = None
            if by_content is None and position < len(known):
                if self._plaintext(state.items[known[position]]) == typed:
                    index = known[position]
                else:
                    # Not a plain append: match the rest by content (edits, removals).
                    by_content = {self._plaintext(state.items[i]): i for i in reversed(known)}
            if by_content is not None:
                index = by_content.get(typed)
            if index is None:
                state.items.append(typed if plain is self.serde else self.serde.dumps_typed(value))
                index = len(state.items) - 1
            indexes.append(index)
        return Blob(cast(Any, kind), ranges=to_ranges(indexes))

    def _plain_serde(self) -> SerializerProtocol:
        serde = self.serde
        return serde.serde if isinstance(serde, EncryptedSerializer) else serde

    def _plaintext(self, typed: Typed) -> Typed:
        """An element as the plain serde wrote it, decrypted if need be, to compare."""
        serde = self.serde
        if isinstance(serde, EncryptedSerializer) and "+" in typed[0]:
            kind, cipher = typed[0].split("+", 1)
            return kind, serde.cipher.decrypt(cipher, typed[1])
        return typed

    def _load_value(self, state: State, blob: Blob) -> Any:
        if blob.kind == "v":
            assert blob.value is not None
            return self.serde.loads_typed(blob.value)
        values = [self.serde.loads_typed(state.items[i]) for i in expand(blob.ranges)]
        return values if blob.kind == "l" else _DeltaSnapshot(values)

    def _load_tuple(
        self, thread_id: str, checkpoint_ns: str, state: State, record: Record
    ) -> CheckpointTuple:
        """Rebuild one checkpoint with its values, metadata and pending writes.

        Raises:
            S3SaverError: If something stored cannot be decoded.
        """
        try:
            checkpoint = self.serde.loads_typed(record.checkpoint)
            checkpoint["channel_versions"] = dict(record.versions)
            checkpoint["channel_values"] = {
                channel: self._load_value(state, blob)
                for channel, version in record.versions.items()
                if (blob := state.blobs.get((channel, version))) is not None
            }
            metadata = self.serde.loads_typed(record.metadata)
        except _UNREADABLE as exc:
            raise S3SaverError(f"unreadable checkpoint {record.id!r}: {exc!r}") from exc
        # A pruned parent leaves no dangling config, as in LangGraph's Postgres saver.
        parent = record.parent if record.parent in state.records else None
        return CheckpointTuple(
            config=checkpoint_config(thread_id, checkpoint_ns, record.id),
            checkpoint=cast(Checkpoint, checkpoint),
            metadata=cast(CheckpointMetadata, metadata),
            parent_config=checkpoint_config(thread_id, checkpoint_ns, parent) if parent else None,
            pending_writes=self._load_writes(state.writes.get(record.id, ())),
        )

    def _matches(self, record: Record, metadata_filter: Mapping[str, Any] | None) -> bool:
        """Whether every key of the filter equals the record's metadata's."""
        if not metadata_filter:
            return True
        try:
            metadata = self.serde.loads_typed(record.metadata)
        except _UNREADABLE as exc:
            raise S3SaverError(f"unreadable metadata of {record.id!r}: {exc!r}") from exc
        return all(metadata.get(k) == v for k, v in metadata_filter.items())

    # --- writes -------------------------------------------------------------

    def _dump_writes(
        self, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str
    ) -> list[WriteRecord]:
        """Serialise the writes of one task, indexed the way LangGraph expects."""
        return [
            WriteRecord(
                task_id, WRITES_IDX_MAP.get(channel, i), channel, self.serde.dumps_typed(value),
                task_path,
            )
            for i, (channel, value) in enumerate(writes)
        ]

    def _load_writes(self, records: Sequence[WriteRecord]) -> list[PendingWrite]:
        """Deserialise pending writes, in ``writes_sort_key`` order (task path, id, index)."""
        try:
            return [
                (r.task_id, r.channel, self.serde.loads_typed(r.value))
                for r in _ordered(records)
            ]
        except _UNREADABLE as exc:
            raise S3SaverError(f"unreadable pending write: {exc!r}") from exc

    def _delta_history(
        self, state: State, checkpoint_id: str | None, channels: Sequence[str]
    ) -> dict[str, DeltaChannelHistory]:
        """Walk a checkpoint's ancestors in ``state`` for DeltaChannel replay.

        Same contract as ``BaseCheckpointSaver.get_delta_channel_history``, but
        from one loaded state instead of a read per ancestor.
        """
        record = state.records.get(checkpoint_id) if checkpoint_id else None
        collected: dict[str, list[PendingWrite]] = {c: [] for c in channels}
        seeds: dict[str, Any] = {}
        remaining = set(channels)
        seen: set[str] = set()
        parent = record.parent if record is not None else None
        while remaining and parent is not None and parent not in seen:
            ancestor = state.records.get(parent)
            if ancestor is None:
                break
            seen.add(parent)
            found = {
                c: blob
                for c in remaining
                if c in ancestor.versions
                and (blob := state.blobs.get((c, ancestor.versions[c]))) is not None
            }
            for write in reversed(_ordered(state.writes.get(parent, ()))):
                if write.channel in remaining:
                    value = self.serde.loads_typed(write.value)
                    collected[write.channel].append((write.task_id, write.channel, value))
            for channel, blob in found.items():
                seeds[channel] = self._load_value(state, blob)
                remaining.discard(channel)
            parent = ancestor.parent
        history: dict[str, DeltaChannelHistory] = {}
        for channel in channels:
            entry: DeltaChannelHistory = {"writes": list(reversed(collected[channel]))}
            if channel in seeds:
                entry["seed"] = seeds[channel]
            history[channel] = entry
        return history

    def get_next_version(self, current: str | int | float | None, channel: None) -> str:
        """Return the next channel version: ``"%032d.%08x"``, string-sortable.

        The integer part orders versions (and reads LangGraph's ``"%032d.%016f"``
        ones too); the random suffix keeps two branches forked from one
        checkpoint from minting the same version for different values. It is
        shorter than the reference savers' float, as every version is stored
        in each checkpoint and this saver uploads them every turn.

        Args:
            current: The current version (``None`` for a new channel).
            channel: Unused; kept for LangGraph's signature.

        Returns:
            A version greater than ``current`` in string order.
        """
        if current is None:
            current_v = 0
        elif isinstance(current, int | float):
            current_v = int(current)
        else:
            current_v = int(current.split(".")[0])
        return f"{current_v + 1:032}.{random.getrandbits(32):08x}"


def _ordered(records: Sequence[WriteRecord]) -> list[WriteRecord]:
    return sorted(records, key=lambda r: writes_sort_key(r.task_path, r.task_id, r.idx))


__all__ = ["SPILL_OVER", "BaseS3Saver", "default_serde", "merge_writes"]
