"""Storage layout of the S3 saver: keys, validation and (de)serialisation, no I/O.

Every object of a thread lives under ``{prefix}{thread_id}/`` (the trailing
``/`` keeps thread ``t1`` apart from ``t10``)::

    {prefix}{thread_id}/ns.{b64(checkpoint_ns)}/head        latest checkpoint id
    {prefix}{thread_id}/ns.{b64(checkpoint_ns)}/c/{id}      checkpoint + values + metadata
    {prefix}{thread_id}/ns.{b64(checkpoint_ns)}/w/{id}      pending writes of checkpoint {id}

Thread and checkpoint ids must match ``ID_PATTERN``; the namespace is free
text, so it is base64url-encoded (no padding). Objects are msgpack maps with a
format version ``v``; values go through the saver's ``serde`` as
``(type, bytes)`` pairs, stored as raw msgpack binaries.
"""

from __future__ import annotations

import base64
import binascii
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, cast
from urllib.parse import urlsplit

import ormsgpack
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from .errors import S3SaverError

FORMAT_VERSION = 1
ID_PATTERN = re.compile(r"(?!\.+$)[A-Za-z0-9_.:-]{1,256}")
_B64_PATTERN = re.compile(r"[A-Za-z0-9_-]*")
_BUCKET_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]")
_NS_MARK = "ns."
_MAX_NS_BYTES = 512
# What a serde or a malformed object raises; NotImplementedError is an unknown type
# tag, e.g. "pickle", which the default serde refuses to load.
_UNREADABLE = (KeyError, TypeError, ValueError, IndexError, AttributeError, NotImplementedError)
_SYNC_MESSAGE = "AsyncS3Saver is async-only: use the a-prefixed method ({}) instead"

KeyKind = Literal["head", "checkpoint", "writes"]


def validate_id(value: object, what: str) -> str:
    """Return ``value`` if it is safe to put in a key as is.

    Args:
        value: A thread or checkpoint id.
        what: What the id is, for the error message.

    Returns:
        The id, unchanged.

    Raises:
        ValueError: If it is not a string of 1-256 characters from
            ``[A-Za-z0-9_.:-]`` (and not only dots).
    """
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise ValueError(f"invalid {what} {value!r}: expected 1-256 of [A-Za-z0-9_.:-]")
    return value


def encode_ns(checkpoint_ns: str) -> str:
    """Encode a checkpoint namespace (any text, may be empty) as a key segment.

    Args:
        checkpoint_ns: The namespace, e.g. ``""`` or ``"parent:abc|child:def"``.

    Returns:
        ``"ns."`` followed by the base64url encoding of the UTF-8 bytes, unpadded.

    Raises:
        ValueError: If the namespace is not a string, not encodable as UTF-8, or
            longer than 512 bytes.
    """
    if not isinstance(checkpoint_ns, str):
        raise ValueError(f"invalid checkpoint_ns {checkpoint_ns!r}: expected a string")
    try:
        raw = checkpoint_ns.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"invalid checkpoint_ns {checkpoint_ns!r}: {exc}") from exc
    # S3 keys stop at 1024 bytes; fail clearly here rather than with KeyTooLongError.
    if len(raw) > _MAX_NS_BYTES:
        raise ValueError(f"checkpoint_ns longer than {_MAX_NS_BYTES} bytes: {checkpoint_ns!r}")
    return _NS_MARK + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_ns(segment: str) -> str | None:
    """Invert ``encode_ns``.

    Args:
        segment: A key segment.

    Returns:
        The namespace, or ``None`` if the segment is not one ``encode_ns`` makes.
    """
    if not segment.startswith(_NS_MARK):
        return None
    body = segment[len(_NS_MARK) :]
    if not _B64_PATTERN.fullmatch(body) or len(body) % 4 == 1:
        return None
    try:
        decoded = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    # Non-canonical spellings (stray bits in the last character) are foreign keys.
    return decoded if encode_ns(decoded) == segment else None


def normalise_prefix(prefix: str) -> str:
    """Return ``prefix`` without leading ``/`` and ending in exactly one ``/`` (or empty).

    Args:
        prefix: A key prefix such as ``"chat_histories"`` or ``"a/b//"``.

    Returns:
        The normalised prefix.
    """
    stripped = prefix.strip("/")
    return f"{stripped}/" if stripped else ""


def parse_conn_string(conn_string: str) -> tuple[str, str]:
    """Split ``s3://BUCKET/PREFIX`` into a bucket and a normalised prefix.

    Args:
        conn_string: The connection string; the prefix may be empty.

    Returns:
        ``(bucket, prefix)``.

    Raises:
        ValueError: If the scheme is not ``s3``, the bucket name is invalid, or
            there is a query or fragment.
    """
    parts = urlsplit(conn_string)
    if parts.scheme != "s3":
        raise ValueError(f"expected s3://BUCKET/PREFIX, got {conn_string!r}")
    if not _BUCKET_PATTERN.fullmatch(parts.netloc):
        raise ValueError(f"invalid bucket name {parts.netloc!r} in {conn_string!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"unexpected query or fragment in {conn_string!r}")
    return parts.netloc, normalise_prefix(parts.path)


def config_target(config: RunnableConfig) -> tuple[str, str, str | None]:
    """Return the validated ``(thread_id, checkpoint_ns, checkpoint_id)`` of a config.

    Raises:
        ValueError: If the thread id (an int is accepted as its decimal string)
            or the checkpoint id is not safe, or the namespace is not a string.
    """
    configurable = config.get("configurable", {})
    thread_id = configurable.get("thread_id")
    if isinstance(thread_id, int) and not isinstance(thread_id, bool):
        thread_id = str(thread_id)
    ns = configurable.get("checkpoint_ns") or ""
    encode_ns(ns)
    checkpoint_id = configurable.get("checkpoint_id") or None
    if checkpoint_id is not None:
        validate_id(checkpoint_id, "checkpoint_id")
    return validate_id(thread_id, "thread_id"), ns, checkpoint_id


def checkpoint_config(thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> RunnableConfig:
    """Return the config naming one stored checkpoint."""
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint_id,
        }
    }


class ParsedKey(NamedTuple):
    """What a key of the layout names."""

    thread_id: str
    checkpoint_ns: str
    kind: KeyKind
    checkpoint_id: str | None


@dataclass(frozen=True)
class KeyLayout:
    """Builds and parses the keys under one (normalised) prefix."""

    prefix: str = ""

    def thread(self, thread_id: str) -> str:
        """Return the prefix of every key of a thread (ends in ``/``)."""
        return f"{self.prefix}{validate_id(thread_id, 'thread_id')}/"

    def namespace(self, thread_id: str, checkpoint_ns: str) -> str:
        """Return the prefix of every key of one namespace of a thread (ends in ``/``)."""
        return f"{self.thread(thread_id)}{encode_ns(checkpoint_ns)}/"

    def head(self, thread_id: str, checkpoint_ns: str) -> str:
        """Return the key of the head object (latest checkpoint id) of a namespace."""
        return f"{self.namespace(thread_id, checkpoint_ns)}head"

    def checkpoint(self, thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> str:
        """Return the key of one checkpoint."""
        cid = validate_id(checkpoint_id, "checkpoint_id")
        return f"{self.namespace(thread_id, checkpoint_ns)}c/{cid}"

    def writes(self, thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> str:
        """Return the key of the pending writes of one checkpoint."""
        cid = validate_id(checkpoint_id, "checkpoint_id")
        return f"{self.namespace(thread_id, checkpoint_ns)}w/{cid}"

    def parse(self, key: str) -> ParsedKey | None:
        """Return what ``key`` names, or ``None`` for keys this layout never builds."""
        if not key.startswith(self.prefix):
            return None
        parts = key[len(self.prefix) :].split("/")
        if len(parts) not in (3, 4) or not ID_PATTERN.fullmatch(parts[0]):
            return None
        checkpoint_ns = decode_ns(parts[1])
        if checkpoint_ns is None:
            return None
        if parts[2:] == ["head"]:
            return ParsedKey(parts[0], checkpoint_ns, "head", None)
        kinds: dict[str, KeyKind] = {"c": "checkpoint", "w": "writes"}
        if len(parts) == 4 and parts[2] in kinds and ID_PATTERN.fullmatch(parts[3]):
            return ParsedKey(parts[0], checkpoint_ns, kinds[parts[2]], parts[3])
        return None


class WriteRecord(NamedTuple):
    """One stored pending write; ``value`` is the serde's ``(type, bytes)``."""

    task_id: str
    idx: int
    channel: str
    value: tuple[str, bytes]
    task_path: str


class StoredCheckpoint(NamedTuple):
    """A checkpoint object, decoded."""

    checkpoint: Checkpoint
    metadata: CheckpointMetadata
    parent_id: str | None


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


def pack(fields: Mapping[str, Any]) -> bytes:
    """Encode one stored object: a msgpack map with the format version."""
    return ormsgpack.packb({"v": FORMAT_VERSION, **fields})


def unpack(body: bytes, what: str) -> dict[str, Any]:
    """Decode an object made by ``pack``.

    Raises:
        S3SaverError: If it is not one, or has another format version.
    """
    try:
        fields = ormsgpack.unpackb(body)
    except ormsgpack.MsgpackDecodeError as exc:
        raise S3SaverError(f"corrupt {what} object: {exc}") from exc
    if not isinstance(fields, dict) or fields.get("v") != FORMAT_VERSION:
        version = fields.get("v") if isinstance(fields, dict) else None
        raise S3SaverError(f"unsupported {what} object (format version {version!r})")
    return fields


def dump_head(checkpoint_id: str, has_writes: bool) -> bytes:
    """Encode a head object; ``has_writes`` says whether ``w/{id}`` may exist."""
    return pack({"id": checkpoint_id, "w": has_writes})


def load_head(body: bytes) -> tuple[str, bool]:
    """Decode a head object into ``(checkpoint_id, has_writes)``."""
    fields = unpack(body, "head")
    return validate_id(fields.get("id"), "checkpoint_id"), bool(fields.get("w"))


def dump_write_records(records: Sequence[WriteRecord]) -> bytes:
    """Encode the pending writes object of one checkpoint."""
    return pack({"writes": [list(r) for r in records]})


def load_write_records(body: bytes) -> list[WriteRecord]:
    """Decode the pending writes object of one checkpoint."""
    rows = unpack(body, "writes").get("writes", [])
    try:
        return [WriteRecord(t, int(i), c, (v[0], v[1]), p) for t, i, c, v, p in rows]
    except (TypeError, ValueError, IndexError) as exc:
        raise S3SaverError(f"corrupt writes object: {exc}") from exc


def _typed(value: Any) -> tuple[str, bytes]:
    return (value[0], value[1])


class BaseS3Saver(BaseCheckpointSaver[str]):
    """Everything of the S3 saver that does no I/O: layout, serde, versions.

    Args:
        prefix: Key prefix, normalised to end in one ``/`` (or empty).
        serde: Serializer for checkpoints, metadata and writes. The default
            never unpickles and only rebuilds allow-listed types (LangChain
            messages included).
    """

    serde: SerializerProtocol = JsonPlusSerializer(
        pickle_fallback=False, allowed_msgpack_modules=None
    )

    def __init__(self, *, prefix: str = "", serde: SerializerProtocol | None = None) -> None:
        super().__init__(serde=serde)
        self.keys = KeyLayout(normalise_prefix(prefix))

    def _dump_checkpoint(
        self, checkpoint: Checkpoint, metadata: CheckpointMetadata, parent_id: str | None
    ) -> bytes:
        """Encode a checkpoint, its channel values and metadata as one object."""
        rest = {k: v for k, v in checkpoint.items() if k != "channel_values"}
        values = {ch: self.serde.dumps_typed(v) for ch, v in checkpoint["channel_values"].items()}
        return pack(
            {
                "parent": parent_id,
                "checkpoint": self.serde.dumps_typed(rest),
                "values": values,
                # Separate from the checkpoint so list filters decode only this.
                "metadata": self.serde.dumps_typed(metadata),
            }
        )

    def _load_checkpoint(
        self, body: bytes, metadata_filter: Mapping[str, Any] | None = None
    ) -> StoredCheckpoint | None:
        """Decode a checkpoint object.

        Args:
            body: The object as stored.
            metadata_filter: If given, every key must equal the stored metadata's.

        Returns:
            The checkpoint, or ``None`` if its metadata does not match the filter.
        """
        fields = unpack(body, "checkpoint")
        try:
            metadata = self.serde.loads_typed(_typed(fields["metadata"]))
            if metadata_filter and any(
                metadata.get(k) != v for k, v in metadata_filter.items()
            ):
                return None
            checkpoint = self.serde.loads_typed(_typed(fields["checkpoint"]))
            checkpoint["channel_values"] = {
                ch: self.serde.loads_typed(_typed(v)) for ch, v in fields["values"].items()
            }
            parent = fields.get("parent")
        except _UNREADABLE as exc:
            raise S3SaverError(f"unreadable checkpoint object: {exc!r}") from exc
        return StoredCheckpoint(cast(Checkpoint, checkpoint), metadata, parent)

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
        ordered = sorted(records, key=lambda r: writes_sort_key(r.task_path, r.task_id, r.idx))
        try:
            return [(r.task_id, r.channel, self.serde.loads_typed(r.value)) for r in ordered]
        except _UNREADABLE as exc:
            raise S3SaverError(f"unreadable pending write: {exc!r}") from exc

    def get_next_version(self, current: str | int | float | None, channel: None) -> str:
        """Return the next channel version: ``"%032d.%016f"``-style, string-sortable.

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
        return f"{current_v + 1:032}.{random.random():016}"

    # Sync API: last in the class so ``list`` does not shadow the builtin above.

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """Not supported: use ``aget_tuple``.

        Raises:
            NotImplementedError: Always.
        """
        raise NotImplementedError(_SYNC_MESSAGE.format("aget_tuple"))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Not supported: use ``alist``.

        Raises:
            NotImplementedError: Always.
        """
        raise NotImplementedError(_SYNC_MESSAGE.format("alist"))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Not supported: use ``aput``.

        Raises:
            NotImplementedError: Always.
        """
        raise NotImplementedError(_SYNC_MESSAGE.format("aput"))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Not supported: use ``aput_writes``.

        Raises:
            NotImplementedError: Always.
        """
        raise NotImplementedError(_SYNC_MESSAGE.format("aput_writes"))

    def delete_thread(self, thread_id: str) -> None:
        """Not supported: use ``adelete_thread``.

        Raises:
            NotImplementedError: Always.
        """
        raise NotImplementedError(_SYNC_MESSAGE.format("adelete_thread"))


__all__ = [
    "FORMAT_VERSION",
    "ID_PATTERN",
    "BaseS3Saver",
    "KeyLayout",
    "ParsedKey",
    "StoredCheckpoint",
    "WriteRecord",
    "checkpoint_config",
    "config_target",
    "decode_ns",
    "dump_head",
    "dump_write_records",
    "encode_ns",
    "load_head",
    "load_write_records",
    "merge_writes",
    "normalise_prefix",
    "parse_conn_string",
    "validate_id",
]
