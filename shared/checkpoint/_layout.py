"""Where a thread lives in the bucket: ids, namespaces, keys and configs. No I/O.

Every object of a thread lives under ``{prefix}{thread_id}/`` (the trailing
``/`` keeps thread ``t1`` apart from ``t10``)::

    {prefix}{thread_id}/ns.{b64(checkpoint_ns)}/head               retained checkpoints
    {prefix}{thread_id}/ns.{b64(checkpoint_ns)}/seg/{gen}/{n:08d}  sealed transcript segment n

Thread ids must match ``ID_PATTERN``; the namespace is free text, so it is
base64url-encoded (no padding). ``gen`` names one life of a transcript (a
thread deleted and written again starts another), so a segment key is never
reused for other content.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Literal, NamedTuple
from urllib.parse import urlsplit

from langchain_core.runnables import RunnableConfig

ID_PATTERN = re.compile(r"(?!\.+$)[A-Za-z0-9_.:-]{1,256}")
_B64_PATTERN = re.compile(r"[A-Za-z0-9_-]*")
_BUCKET_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]")
_NS_MARK = "ns."
_MAX_NS_BYTES = 512
_GEN_PATTERN = re.compile(r"[0-9a-f]{16}")

KeyKind = Literal["head", "segment"]


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
    ns = configurable.get("checkpoint_ns") or ""
    encode_ns(ns)
    checkpoint_id = configurable.get("checkpoint_id") or None
    if checkpoint_id is not None:
        validate_id(checkpoint_id, "checkpoint_id")
    return thread_of(configurable.get("thread_id")), ns, checkpoint_id


def thread_of(thread_id: object) -> str:
    """Return a validated thread id; an int is accepted as its decimal string.

    Raises:
        ValueError: If the id is not safe.
    """
    if isinstance(thread_id, int) and not isinstance(thread_id, bool):
        thread_id = str(thread_id)
    return validate_id(thread_id, "thread_id")


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
        """Return the key of the head object of a namespace."""
        return f"{self.namespace(thread_id, checkpoint_ns)}head"

    def segment(self, thread_id: str, checkpoint_ns: str, gen: str, number: int) -> str:
        """Return the key of one sealed segment of a namespace's transcript."""
        if not _GEN_PATTERN.fullmatch(gen) or number < 0:
            raise ValueError(f"invalid segment {gen!r}/{number!r}")
        return f"{self.namespace(thread_id, checkpoint_ns)}seg/{gen}/{number:08d}"

    def parse(self, key: str) -> ParsedKey | None:
        """Return what ``key`` names, or ``None`` for keys this layout never builds."""
        if not key.startswith(self.prefix):
            return None
        parts = key[len(self.prefix) :].split("/")
        if len(parts) not in (3, 5) or not ID_PATTERN.fullmatch(parts[0]):
            return None
        checkpoint_ns = decode_ns(parts[1])
        if checkpoint_ns is None:
            return None
        if parts[2:] == ["head"]:
            return ParsedKey(parts[0], checkpoint_ns, "head")
        if len(parts) == 5 and parts[2] == "seg":
            return ParsedKey(parts[0], checkpoint_ns, "segment")
        return None


def place(thread_id: str, checkpoint_ns: str, role: str) -> bytes:
    """What an object is and where it belongs, as encryption's associated data."""
    return "\0".join((thread_id, checkpoint_ns, role)).encode()
