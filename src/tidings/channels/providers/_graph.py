"""What the Meta Graph APIs (Facebook, Instagram, Threads) share: the error shape and its
classification, the access-token parameter, and the media container dance.

Errors come as ``{"error": {"message", "type", "code", "error_subcode", "error_user_msg",
"is_transient", "fbtrace_id"}}``, mostly with HTTP 400 whatever the cause, so the ``code`` and
``error_subcode`` decide (https://developers.facebook.com/docs/graph-api/guides/error-handling).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from tidings.channels.providers.base import (
    BadBodyError,
    DisconnectedError,
    ProviderError,
    RefreshTokenError,
    RetryableError,
    parse_retry_after,
    response_excerpt,
    response_message,
)

TOKEN_CODE = 190
# 190 subcodes meaning the grant is gone for good (the user must log in again).
GONE_SUBCODES = frozenset(
    {
        458,  # the app is not installed (the user removed it)
        459,  # the account is checkpointed
        460,  # the password changed
        464,  # unconfirmed user
        467,  # invalid access token (revoked / logged out)
        492,  # invalid session (no longer an admin of the page)
    }
)
EXPIRED_SUBCODE = 463
RATE_CODES = frozenset({4, 17, 32, 613, *range(80001, 80015)})
TRANSIENT_CODES = frozenset({1, 2})
PERMISSION_CODES = frozenset({10, *range(200, 300)})


def _usage_wait(response: httpx.Response) -> float | None:
    """Seconds until access is regained, from Meta's business-use-case usage header."""
    raw = response.headers.get("x-business-use-case-usage")
    if not raw:
        return None
    try:
        usage = json.loads(raw)
    except ValueError:
        return None
    minutes = [
        entry.get("estimated_time_to_regain_access")
        for entries in (usage.values() if isinstance(usage, dict) else [])
        if isinstance(entries, list)
        for entry in entries
        if isinstance(entry, dict)
    ]
    waits = [float(m) for m in minutes if isinstance(m, int | float) and m > 0]
    return max(waits) * 60 if waits else None


def graph_error(response: httpx.Response, platform: str) -> ProviderError | None:
    """Classify a Graph API answer (None for success)."""
    status = response.status_code
    if status < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    code = error.get("code")
    subcode = error.get("error_subcode")
    text = error.get("error_user_msg") or error.get("message") or response_message(response)
    message = f"{platform}: {text}"
    excerpt = response_excerpt(response)
    if code == TOKEN_CODE:
        if subcode in GONE_SUBCODES:
            return DisconnectedError(message, status_code=status, excerpt=excerpt)
        return RefreshTokenError(message, status_code=status, excerpt=excerpt)
    if code == 102:  # API session: log in again, which a refresh may do
        return RefreshTokenError(message, status_code=status, excerpt=excerpt)
    if code in RATE_CODES or status == 429:
        return RetryableError(
            message,
            status_code=status,
            excerpt=excerpt,
            retry_after=parse_retry_after(response.headers.get("retry-after"))
            or _usage_wait(response),
        )
    if code in TRANSIENT_CODES or error.get("is_transient") is True or status >= 500:
        return RetryableError(message, status_code=status, excerpt=excerpt)
    if code in PERMISSION_CODES:
        return DisconnectedError(message, status_code=status, excerpt=excerpt)
    if status == 401:
        return RefreshTokenError(message, status_code=status, excerpt=excerpt)
    return BadBodyError(message, status_code=status, excerpt=excerpt)


def with_token(params: Mapping[str, Any], token: str) -> dict[str, str]:
    """Graph parameters as strings, plus the ``access_token``."""
    out = {k: _param(v) for k, v in params.items() if v is not None}
    out["access_token"] = token
    return out


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)
