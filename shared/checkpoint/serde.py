"""Serializers for the saver: LangGraph's, locked down, optionally encrypted at rest.

Encryption goes through LangGraph's ``EncryptedSerializer`` with AES-GCM
(``cryptography``): every value, element, checkpoint and metadata is sealed
with its own random nonce, and a wrong key or a tampered object fails to load
instead of decoding garbage. Channel names, versions, ids and run ids stay in
clear, as they do in LangGraph's SQL savers.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

from langgraph.checkpoint.serde.base import CipherProtocol, SerializerProtocol
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

from .base import default_serde

_NONCE = 12


class AesGcmCipher(CipherProtocol):
    """AES-GCM for ``EncryptedSerializer``; ciphertext is ``nonce + sealed``.

    Args:
        key: 16, 24 or 32 bytes.

    Raises:
        ValueError: If the key has another length.
        ImportError: If ``cryptography`` is not installed.
    """

    name = "aesgcm"

    def __init__(self, key: bytes) -> None:
        if len(key) not in (16, 24, 32):
            raise ValueError(f"AES key must be 16, 24 or 32 bytes, got {len(key)}")
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError("encryption needs the 'cryptography' package") from exc
        self._aead: Any = AESGCM(key)

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        """Seal ``plaintext`` under a fresh random nonce.

        Returns:
            The cipher name and ``nonce + ciphertext + tag``.
        """
        nonce = os.urandom(_NONCE)
        return self.name, nonce + self._aead.encrypt(nonce, plaintext, None)

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        """Open what ``encrypt`` sealed.

        Raises:
            ValueError: If the cipher is not this one, the key is wrong or the
                data was altered.
        """
        if ciphername != self.name:
            raise ValueError(f"unsupported cipher {ciphername!r}")
        from cryptography.exceptions import InvalidTag

        try:
            data: bytes = self._aead.decrypt(ciphertext[:_NONCE], ciphertext[_NONCE:], None)
        except InvalidTag as exc:
            raise ValueError("cannot decrypt: wrong key or altered data") from exc
        return data


def decode_key(encoded: str) -> bytes:
    """Decode a base64 (standard or URL-safe, padding optional) AES key.

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


def make_serde(encryption_key: str | None) -> SerializerProtocol:
    """The saver's serializer, encrypting at rest when a key is given.

    Generate a key with
    ``python -c "import os,base64; print(base64.b64encode(os.urandom(32)).decode())"``.
    Changing the key makes every stored conversation unreadable.

    Args:
        encryption_key: Base64 of a 16, 24 or 32-byte AES key, or ``None``
            (or empty) for no encryption.

    Returns:
        A strict ``JsonPlusSerializer`` (no pickle, allow-listed types only),
        wrapped in an AES-GCM ``EncryptedSerializer`` when there is a key.

    Raises:
        ValueError: If the key is malformed.
    """
    if not encryption_key:
        return default_serde()
    return EncryptedSerializer(AesGcmCipher(decode_key(encryption_key)), default_serde())
