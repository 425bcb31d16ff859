"""Identifiers. The spec uses UUIDs for most rows and cuids for channels, posts and subscriptions;
both are opaque strings to clients, so both are stored as text."""

from __future__ import annotations

import itertools
import os
import secrets
import time
import uuid

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_counter = itertools.count(secrets.randbelow(36**4))
_fingerprint = format(os.getpid() % (36**2), "x").rjust(2, "0")[:2]


def _base36(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rest = divmod(number, 36)
        digits.append(_ALPHABET[rest])
    return "".join(reversed(digits))


def new_uuid() -> str:
    """A random UUID (version 4) as text."""
    return str(uuid.uuid4())


def new_cuid() -> str:
    """A collision-resistant id in the cuid shape: 'c', time, counter, process, randomness.

    Sortable by creation time at millisecond precision, which keeps b-tree inserts local.
    """
    millis = _base36(int(time.time() * 1000), 8)
    count = _base36(next(_counter) % (36**4), 4)
    rand = "".join(secrets.choice(_ALPHABET) for _ in range(10))
    return f"c{millis}{count}{_fingerprint}{rand}"


def new_token(nbytes: int = 32) -> str:
    """A URL-safe random secret (API keys, session tokens, webhook secrets)."""
    return secrets.token_urlsafe(nbytes)
