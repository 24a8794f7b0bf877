"""Envelope encryption of private signing keys under a key-encryption key (KEK).

The KEK comes from a Secret (env var or mounted file), never from the database, so a
database dump alone cannot mint tokens. AES-256-GCM with the key id as associated data:
a ciphertext moved to another row does not decrypt.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NONCE_BYTES = 12
_INFO = b"user-service signing-key encryption v1"


class KeyEncryptionError(Exception):
    """A stored private key cannot be decrypted with the configured KEK."""


class KeyEncryption:
    def __init__(self, secret: str) -> None:
        if len(secret) < 32:
            raise ValueError("the key-encryption key must be at least 32 characters")
        # Any 32+ character secret (e.g. `openssl rand -base64 32`) becomes a 256-bit key.
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
            secret.encode("utf-8")
        )
        self._aead = AESGCM(key)
        # Stored beside each ciphertext so a wrong KEK is named, not reported as corruption.
        self.kek_id = hashlib.sha256(key).hexdigest()[:16]

    def encrypt(self, kid: str, plaintext: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, kid.encode("utf-8"))

    def decrypt(self, kid: str, kek_id: str, ciphertext: bytes) -> bytes:
        if kek_id != self.kek_id:
            raise KeyEncryptionError(
                f"signing key {kid} was encrypted with KEK {kek_id}; the configured "
                f"SIGNING_KEY_ENCRYPTION_KEY is {self.kek_id}"
            )
        try:
            return self._aead.decrypt(
                ciphertext[:_NONCE_BYTES], ciphertext[_NONCE_BYTES:], kid.encode("utf-8")
            )
        except InvalidTag as error:
            raise KeyEncryptionError(f"signing key {kid} does not decrypt: corrupted") from error
