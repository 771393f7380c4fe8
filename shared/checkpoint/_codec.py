"""The envelope of every stored object: magic, format version, flags, then the body.

Layout: ``b"LGS3"``, one byte of format version, one byte of flags (bit 0:
deflated, bit 1: sealed with AES-GCM), then a msgpack map, deflated above
1 KiB, then sealed. The version and flags sit outside the sealed part (and
inside its associated data), so an unknown format is refused before anything
is decrypted, inflated or decoded.
"""

from __future__ import annotations

import zlib
from typing import Any

import ormsgpack

from .errors import S3SaverError
from .serde import ObjectCipher

FORMAT_VERSION = 3
MAGIC = b"LGS3"
COMPRESS_OVER = 1024  # bytes of msgpack; below this deflate saves too little to pay
_DEFLATED = 0x01
_SEALED = 0x02
_HEADER = len(MAGIC) + 2
# Bounds a decompression bomb: far above any real object.
_MAX_INFLATED = 512 * 2**20


def pack(
    fields: dict[str, Any], *, cipher: ObjectCipher | None, place: bytes,
    compress_over: int = COMPRESS_OVER,
) -> bytes:
    """Encode one stored object.

    Args:
        fields: A msgpack-able map (bytes stay raw binaries, never base64).
        cipher: Seals the body when given.
        place: What the object is and where it belongs (thread, namespace and
            role); sealed objects authenticate it, so a copy elsewhere fails.
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
    if cipher is not None:
        flags |= _SEALED
        header = MAGIC + bytes((FORMAT_VERSION, flags))
        return header + cipher.seal(body, header + place)
    return MAGIC + bytes((FORMAT_VERSION, flags)) + body


def version_of(body: bytes) -> int | None:
    """The format version of a stored object, or ``None`` if it is not one of ours."""
    if body[: len(MAGIC)] != MAGIC or len(body) < _HEADER:
        return None
    return body[len(MAGIC)]


def unpack(
    body: bytes, what: str, *, cipher: ObjectCipher | None, place: bytes,
    version: int = FORMAT_VERSION,
) -> dict[str, Any]:
    """Decode an object made by ``pack`` (or by the format before, given ``version``).

    Raises:
        S3SaverError: If it is not such an object, has another format version,
            is sealed and cannot be opened here, or is corrupt.
    """
    found = version_of(body)
    if found is None:
        raise S3SaverError(f"corrupt {what} object: no {MAGIC!r} header")
    if found != version:
        raise S3SaverError(f"unsupported {what} object (format version {found})")
    flags = body[len(MAGIC) + 1]
    payload = body[_HEADER:]
    if flags & _SEALED:
        if cipher is None:
            raise S3SaverError(f"{what} object is encrypted and no key was given")
        try:
            payload = cipher.open(payload, body[:_HEADER] + place)
        except ValueError as exc:
            raise S3SaverError(f"cannot decrypt {what} object: {exc}") from exc
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
