"""What the saver serialises with, and how it encrypts at rest.

Values go through LangGraph's ``JsonPlusSerializer`` with pickle off and its
strict msgpack allow-list. Encryption is of whole objects (``ObjectCipher``,
AES-GCM), after deflate: ids, versions and metadata are hidden too, and the
associated data names the object's thread, namespace and role, so an object
copied to another thread's key, or to another role, fails to decrypt.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

_NONCE = 12
# The cipher name LangGraph's EncryptedSerializer wrote in the previous format's
# type tags ("msgpack+aesgcm"): that format sealed values one by one.
_VALUE_CIPHER = "aesgcm"


def default_serde() -> SerializerProtocol:
    """LangGraph's serializer, locked down: never unpickles, and rebuilds only
    allow-listed types (LangChain messages included; a compiled graph adds its
    state's types through ``with_allowlist``)."""
    return JsonPlusSerializer(pickle_fallback=False, allowed_msgpack_modules=None)


class ObjectCipher:
    """AES-GCM over stored objects; ciphertext is ``nonce + sealed + tag``.

    Args:
        key: 16, 24 or 32 bytes.

    Raises:
        ValueError: If the key has another length.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) not in (16, 24, 32):
            raise ValueError(f"AES key must be 16, 24 or 32 bytes, got {len(key)}")
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead: Any = AESGCM(key)

    def seal(self, plaintext: bytes, associated: bytes) -> bytes:
        """Encrypt under a fresh random nonce, authenticating ``associated`` too."""
        nonce = os.urandom(_NONCE)
        return nonce + bytes(self._aead.encrypt(nonce, plaintext, associated))

    def open(self, sealed: bytes, associated: bytes | None) -> bytes:
        """Invert ``seal``.

        Raises:
            ValueError: If the key is wrong, the data was altered, or it was
                sealed for other associated data (another thread or role).
        """
        from cryptography.exceptions import InvalidTag

        try:
            return bytes(self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], associated))
        except InvalidTag as exc:
            raise ValueError("wrong key, altered data, or moved from another place") from exc

    def open_value(self, typed: tuple[str, bytes]) -> tuple[str, bytes]:
        """A value sealed alone by the previous format, as its plain ``(type, bytes)``.

        Raises:
            ValueError: If it was sealed by another cipher or cannot be opened.
        """
        kind, _, cipher = typed[0].partition("+")
        if not cipher:
            return typed
        if cipher != _VALUE_CIPHER:
            raise ValueError(f"unsupported cipher {cipher!r}")
        # That format bound nothing to its values: no associated data.
        return kind, self.open(typed[1], None)


def decode_key(encoded: str) -> bytes:
    """Decode a base64 (standard or URL-safe, padding optional) AES key.

    Generate one with
    ``python -c "import os,base64; print(base64.b64encode(os.urandom(32)).decode())"``.

    Raises:
        ValueError: If it is not base64 of 16, 24 or 32 bytes.
    """
    text = encoded.strip()
    try:
        key = base64.b64decode(
            text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True
        )
    except (binascii.Error, ValueError) as exc:
        raise ValueError("CHECKPOINT_ENCRYPTION_KEY must be base64") from exc
    if len(key) not in (16, 24, 32):
        raise ValueError(
            f"CHECKPOINT_ENCRYPTION_KEY must encode 16, 24 or 32 bytes, got {len(key)}"
        )
    return key
