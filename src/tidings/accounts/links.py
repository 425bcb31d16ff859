"""Signed, expiring tokens for emailed links (password reset, organization invites).

A token is an itsdangerous timed signature over a small JSON payload, under a key derived from
the instance secret for one purpose, so a token minted for one purpose is worthless for another.
The payload names the row the link acts on; single use is enforced by that row's state (a reset
token carries a fingerprint of the password hash it may replace; an invite row records its
acceptance), not by the signature.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from tidings.config import Settings, get_settings
from tidings.core import crypto
from tidings.core.errors import BadRequest

MAX_TOKEN_LENGTH = 1000


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    key = crypto.derive_key(get_settings().resolved_secret_key(), f"link:{purpose}")
    return URLSafeTimedSerializer(key.hex(), salt=f"tidings-{purpose}")


def make_token(purpose: str, payload: dict[str, Any]) -> str:
    """A URL-safe signed token carrying ``payload`` for ``purpose``."""
    return str(_serializer(purpose).dumps(payload))


def read_token(purpose: str, token: str, *, max_age_seconds: int) -> dict[str, Any]:
    """The payload of a token made by :func:`make_token`; :class:`BadRequest` naming ``token``
    when it is forged, made for another purpose, malformed or older than ``max_age_seconds``."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise BadRequest("the link is invalid", field="token", code="invalid_token")
    try:
        payload = _serializer(purpose).loads(token, max_age=max_age_seconds)
    except SignatureExpired as exc:
        raise BadRequest("the link has expired", field="token", code="expired_token") from exc
    except BadSignature as exc:
        raise BadRequest("the link is invalid", field="token", code="invalid_token") from exc
    if not isinstance(payload, dict):
        raise BadRequest("the link is invalid", field="token", code="invalid_token")
    return payload


def public_link(settings: Settings, path: str, token: str) -> str:
    """An absolute link to a page of this instance carrying ``token``."""
    return f"{settings.public_url}{path}?{urlencode({'token': token})}"
