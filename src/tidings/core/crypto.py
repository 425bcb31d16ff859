"""Secrets at rest: one encryption helper and one token hash for the whole project.

Encryption is Fernet (AES-128-CBC + HMAC-SHA256) with a key derived by HKDF from the instance's
secret key, so rotating ``TIDINGS_SECRET_KEY`` is the only key management a self-hoster needs.
Tokens that are only compared (API keys, session tokens) are stored as SHA-256: they are long
random strings, so a slow password hash would add nothing but latency.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tidings.config import get_settings

_PREFIX = "enc:v1:"


class DecryptionError(ValueError):
    """A stored secret could not be decrypted (wrong secret key or tampered value)."""


@lru_cache(maxsize=64)
def derive_key(secret: str, purpose: str) -> bytes:
    """A 32-byte key for one purpose, derived from the instance secret."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"tidings", info=purpose.encode()
    ).derive(secret.encode())


@lru_cache(maxsize=8)
def _fernet(secret: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(derive_key(secret, "encryption-at-rest")))


def _current() -> Fernet:
    return _fernet(get_settings().resolved_secret_key())


def encrypt(plaintext: str) -> str:
    """Encrypt text for storage; the result is marked so it is never mistaken for plaintext."""
    return _PREFIX + _current().encrypt(plaintext.encode()).decode()


def decrypt(stored: str) -> str:
    """Decrypt a value produced by :func:`encrypt`."""
    if not stored.startswith(_PREFIX):
        raise DecryptionError("value is not encrypted by Tidings")
    try:
        return _current().decrypt(stored[len(_PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("cannot decrypt: wrong TIDINGS_SECRET_KEY or tampered value") from exc


def is_encrypted(stored: str) -> bool:
    """True when ``stored`` carries the marker of :func:`encrypt`."""
    return stored.startswith(_PREFIX)


def hash_token(token: str) -> str:
    """SHA-256 hex of a high-entropy token, for lookup without storing the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def sign(message: bytes, purpose: str) -> str:
    """HMAC-SHA256 of ``message`` under a key derived for ``purpose`` (hex)."""
    key = derive_key(get_settings().resolved_secret_key(), purpose)
    return hmac.new(key, message, hashlib.sha256).hexdigest()
