"""The envelope of every stored object: magic, format version, optional deflate.

Layout: ``b"LGS3"``, one byte of format version, one byte of flags (bit 0:
deflated), then a msgpack map. The version sits outside the compressed part,
so an unknown format is refused before anything is inflated or decoded.
"""

from __future__ import annotations

import zlib
from typing import Any

import ormsgpack

from .errors import S3SaverError

FORMAT_VERSION = 2
MAGIC = b"LGS3"
COMPRESS_OVER = 1024  # bytes of msgpack; below this deflate saves too little to pay
_DEFLATED = 0x01
_HEADER = len(MAGIC) + 2
# Bounds a decompression bomb: far above any real conversation.
_MAX_INFLATED = 512 * 2**20


def pack(fields: dict[str, Any], *, compress_over: int = COMPRESS_OVER) -> bytes:
    """Encode one stored object.

    Args:
        fields: A msgpack-able map (bytes stay raw binaries, never base64).
        compress_over: Deflate the map when its msgpack is longer than this.

    Returns:
        The object's bytes.
    """
    body = ormsgpack.packb(fields)
    flags = 0
    if len(body) > compress_over:
        deflated = zlib.compress(body, 6)
        if len(deflated) < len(body):
            body, flags = deflated, _DEFLATED
    return MAGIC + bytes((FORMAT_VERSION, flags)) + body


def unpack(body: bytes, what: str) -> dict[str, Any]:
    """Decode an object made by ``pack``.

    Args:
        body: The stored bytes.
        what: What the object is, for error messages.

    Returns:
        The decoded map.

    Raises:
        S3SaverError: If it is not such an object, or has another format version.
    """
    if body[: len(MAGIC)] != MAGIC or len(body) < _HEADER:
        raise S3SaverError(f"corrupt {what} object: no {MAGIC!r} header")
    version, flags = body[len(MAGIC)], body[len(MAGIC) + 1]
    if version != FORMAT_VERSION:
        raise S3SaverError(f"unsupported {what} object (format version {version})")
    payload = body[_HEADER:]
    try:
        if flags & _DEFLATED:
            inflater = zlib.decompressobj()
            payload = inflater.decompress(payload, _MAX_INFLATED)
            if inflater.unconsumed_tail:
                raise S3SaverError(f"{what} object inflates past {_MAX_INFLATED} bytes")
        fields = ormsgpack.unpackb(payload)
    except (zlib.error, ormsgpack.MsgpackDecodeError) as exc:
        raise S3SaverError(f"corrupt {what} object: {exc}") from exc
    if not isinstance(fields, dict):
        raise S3SaverError(f"corrupt {what} object: not a map")
    return fields
