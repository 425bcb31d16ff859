"""Delivering webhook events: Standard Webhooks signing, attempts, retries, order, disabling.

How an endpoint's events travel:

- :func:`tidings.automation.events.emit` stores a ``webhook_event`` (status ``pending``) and
  defers ``automation.deliver_webhook`` with the Procrastinate lock of that endpoint. The lock
  means at most one delivery job per endpoint runs at a time, in the order deferred, while
  other endpoints' jobs run beside it: a receiver that never answers holds back only itself
  (and only for the attempt timeout).
- The job (:func:`deliver_endpoint`) always sends the endpoint's *oldest* pending event first.
  When an attempt fails the event gets ``next_attempt_at`` (exponential backoff with a cap) and
  the job stops: later events of that endpoint wait behind it, so receivers see events in order.
  A separate unlocked job (``automation.retry_webhook``) wakes the endpoint up at that time;
  scheduling the locked job itself in the future would block new jobs of the endpoint until then.
- After ``webhook_max_attempts`` an event is given up (status ``failed``) and the next one goes.
  ``webhook_disable_after`` events given up in a row disable the endpoint and notify the team.
- Every attempt writes one ``webhook_delivery`` row (status code, response excerpt, duration,
  error). The HTTP call happens outside any database transaction.

Signing follows https://www.standardwebhooks.com: ``webhook-id`` is the event id (stable across
retries, so receivers can de-duplicate), ``webhook-timestamp`` the attempt's Unix time, and
``webhook-signature`` is ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed with the
base64-decoded part of the ``whsec_...`` secret. For :data:`ROTATION_GRACE` after a rotation the
previous secret signs too: both signatures go in the header, space-separated, so receivers can
switch to the new secret without losing messages.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings import __version__
from tidings.automation.events import defer_delivery
from tidings.automation.models import ThirdParty, WebhookDelivery, WebhookEvent, Webhooks
from tidings.config import get_settings
from tidings.core.jobs import defer_in_session
from tidings.core.urlguard import TooManyRedirects, UnsafeURLError, guarded_request
from tidings.db import Database
from tidings.notifications.service import notify

logger = logging.getLogger("tidings.automation.webhooks")

SECRET_PREFIX = "whsec_"  # noqa: S105  (a prefix, not a secret)
RETRY_TASK = "automation.retry_webhook"
#: How much of a receiver's answer is kept on the delivery row.
EXCERPT_BYTES = 2048
#: Events one job delivers before handing over to a fresh job (fairness between endpoints).
EVENTS_PER_JOB = 50
#: How long a secret replaced by a rotation keeps signing next to the new one.
ROTATION_GRACE = timedelta(hours=24)


class InvalidSecret(ValueError):
    """A webhook secret that is not ``whsec_`` followed by base64 of 24 to 64 bytes."""


def generate_secret() -> str:
    """A new ``whsec_<base64 of 32 random bytes>`` secret."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_...`` secret (raises :class:`InvalidSecret`)."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidSecret("the secret must start with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSecret("the part after 'whsec_' must be base64") from exc
    if not 24 <= len(key) <= 64:
        raise InvalidSecret("the secret must encode 24 to 64 bytes")
    return key


def signature(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` header value for one message."""
    mac = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def event_body(event_type: str, created_at: datetime, payload: dict[str, Any]) -> str:
    """The JSON body sent for an event (the same bytes on every attempt)."""
    envelope = {"type": event_type, "timestamp": created_at.isoformat(), "data": payload}
    return json.dumps(envelope, sort_keys=True, separators=(",", ":"), default=str)


def signed_headers(
    secrets: Sequence[str], msg_id: str, body: str, *, now: float | None = None
) -> dict[str, str]:
    """The Standard Webhooks headers (and content type) of one attempt, signed with every
    secret in ``secrets`` (space-separated signatures)."""
    timestamp = int(now if now is not None else time.time())
    return {
        "content-type": "application/json",
        "user-agent": f"Tidings-Webhooks/{__version__}",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in secrets),
    }


def signing_secrets(endpoint: Webhooks, now: datetime) -> list[str]:
    """The secrets a message to ``endpoint`` is signed with: its secret, and the one a rotation
    replaced while within :data:`ROTATION_GRACE`."""
    keys = [endpoint.secret] if endpoint.secret else []
    until = endpoint.previous_secret_until
    if endpoint.previous_secret and until is not None and until > now:
        keys.append(endpoint.previous_secret)
    return keys


def backoff(attempt: int) -> timedelta:
    """The wait after failed attempt number ``attempt`` (1-based): base * 4**(attempt-1), capped."""
    settings = get_settings()
    seconds = settings.webhook_backoff_base_seconds * (4 ** max(0, attempt - 1))
    return timedelta(seconds=min(seconds, settings.webhook_backoff_cap_seconds))


_DEFAULT_AUTH_HEADER = {"make": "x-make-apikey"}


def auth_header_of(provider: str, config: dict[str, Any] | None) -> str | None:
    """The header that carries a connector's API key on deliveries (None: not sent)."""
    if config and "auth_header" in config:
        value = config["auth_header"]
        return str(value).lower() if value else None
    return _DEFAULT_AUTH_HEADER.get(provider)


async def extra_headers(session: AsyncSession, endpoint: Webhooks) -> dict[str, str]:
    """Headers added to deliveries to ``endpoint``: a connector's API key in its auth header."""
    if endpoint.third_party_id is None:
        return {}
    connector = await session.get(ThirdParty, endpoint.third_party_id)
    if connector is None:
        return {}
    header = auth_header_of(connector.provider, connector.config)
    return {header: connector.api_key} if header else {}


@dataclass
class AttemptResult:
    """What one HTTP attempt gave."""

    succeeded: bool
    status_code: int | None
    response_excerpt: str | None
    error: str | None
    duration_ms: int


async def send_attempt(
    url: str,
    secrets: Sequence[str],
    msg_id: str,
    body: str,
    *,
    headers: dict[str, str] | None = None,
) -> AttemptResult:
    """POST one message signed with ``secrets`` to ``url`` through the URL guard; never raises
    for the receiver's faults (they are the result)."""
    settings = get_settings()
    timeout = settings.webhook_timeout_seconds
    headers = {**(headers or {}), **signed_headers(secrets, msg_id, body)}
    started = time.monotonic()
    status_code: int | None = None
    excerpt: str | None = None
    error: str | None = None
    try:
        # The overall deadline also covers receivers that trickle bytes to dodge read timeouts.
        async with asyncio.timeout(timeout + 1), httpx.AsyncClient(timeout=timeout) as client:
            response = await guarded_request(
                client,
                "POST",
                url,
                allow_private=settings.allow_private_urls,
                # Standard Webhooks: a 3xx is a failure. Following it would turn a 302/303 into a
                # bodiless GET that could be answered 200 and count as delivered.
                max_redirects=0,
                stream=True,
                content=body.encode(),
                headers=headers,
            )
            try:
                status_code = response.status_code
                chunks = bytearray()
                async for chunk in response.aiter_bytes():
                    chunks.extend(chunk)
                    if len(chunks) >= EXCERPT_BYTES:
                        break
                excerpt = bytes(chunks[:EXCERPT_BYTES]).decode("utf-8", errors="replace")
                # PostgreSQL text cannot hold NUL: a binary answer must not break the log write.
                excerpt = excerpt.replace("\x00", "")
            finally:
                await response.aclose()
    except TooManyRedirects:
        error = "the endpoint answered with a redirect, which is not followed: use its target"
    except UnsafeURLError as exc:
        error = f"refused by the URL guard: {exc}"
    except (TimeoutError, httpx.TimeoutException):
        error = f"no answer within {timeout:g} seconds"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    duration_ms = int((time.monotonic() - started) * 1000)
    succeeded = status_code is not None and 200 <= status_code < 300
    if status_code is not None and not succeeded and error is None:
        error = f"the endpoint answered HTTP {status_code}"
    return AttemptResult(succeeded, status_code, excerpt, error, duration_ms)


async def deliver_endpoint(database: Database, webhook_id: str) -> int:
    """Deliver the due pending events of one endpoint, oldest first, stopping at the first
    failure (which is scheduled for a retry). Returns how many events were delivered.

    Must run under the endpoint's lock (the ``automation.deliver_webhook`` job does).
    """
    settings = get_settings()
    delivered = 0
    for _ in range(EVENTS_PER_JOB):
        async with database.session() as session:
            endpoint = await session.get(Webhooks, webhook_id)
            if endpoint is None or endpoint.deleted_at is not None or not endpoint.enabled:
                return delivered
            event = (
                await session.execute(
                    select(WebhookEvent)
                    .where(WebhookEvent.webhook_id == webhook_id, WebhookEvent.status == "pending")
                    .order_by(WebhookEvent.created_at, WebhookEvent.id)
                    .limit(1)
                )
            ).scalar_one_or_none()
            if event is None:
                return delivered
            now = datetime.now(UTC)
            if event.next_attempt_at is not None and event.next_attempt_at > now:
                # The oldest event waits for its retry; the retry job will wake us up.
                return delivered
            url, keys = endpoint.url, signing_secrets(endpoint, now)
            headers = await extra_headers(session, endpoint)
            event_id, attempt = event.id, event.attempts + 1
            body = event_body(event.type, event.created_at, event.payload)
        if keys:
            result = await send_attempt(url, keys, event_id, body, headers=headers)
        else:  # rows written before secrets were mandatory; never send unsigned
            result = AttemptResult(False, None, None, "the endpoint has no signing secret", 0)
        async with database.session() as session:
            ok = await _record_attempt(session, webhook_id, event_id, attempt, result, settings)
        if not ok:
            return delivered
        delivered += 1
    # More events are waiting: continue in a fresh job so other endpoints get their turn.
    async with database.session() as session:
        await defer_delivery(session, webhook_id)
    return delivered


async def next_attempt_number(session: AsyncSession, event_id: str) -> int:
    """The number of the next delivery row of an event (1 for the first; keeps counting
    across redeliveries, while ``webhook_event.attempts`` counts the current round)."""
    count = await session.scalar(
        select(func.count())
        .select_from(WebhookDelivery)
        .where(WebhookDelivery.event_id == event_id)
    )
    return int(count or 0) + 1


async def _record_attempt(
    session: AsyncSession,
    webhook_id: str,
    event_id: str,
    attempt: int,
    result: AttemptResult,
    settings: Any,
) -> bool:
    """Write the delivery row and move the event and endpoint on; True when delivered."""
    endpoint = (
        await session.execute(
            select(Webhooks)
            .where(Webhooks.id == webhook_id)
            .with_for_update()
            .execution_options(include_deleted=True)
        )
    ).scalar_one()
    event = (
        await session.execute(
            select(WebhookEvent).where(WebhookEvent.id == event_id).with_for_update()
        )
    ).scalar_one_or_none()
    if event is None:  # the endpoint was deleted meanwhile (cascade)
        return False
    session.add(
        WebhookDelivery(
            event_id=event_id,
            attempt=await next_attempt_number(session, event_id),
            succeeded=result.succeeded,
            status_code=result.status_code,
            response_excerpt=result.response_excerpt,
            error=result.error,
            duration_ms=result.duration_ms,
            # clock time, not the transaction's: attempts keep their order in the log
            created_at=func.clock_timestamp(),
        )
    )
    now = datetime.now(UTC)
    event.attempts = attempt
    if result.succeeded:
        event.status = "delivered"
        event.delivered_at = now
        event.next_attempt_at = None
        endpoint.consecutive_failures = 0
        await session.flush()
        return True
    if attempt < settings.webhook_max_attempts:
        event.next_attempt_at = now + backoff(attempt)
        await session.flush()
        await defer_in_session(
            session, RETRY_TASK, schedule_at=event.next_attempt_at, webhook_id=webhook_id
        )
        return False
    event.status = "failed"
    event.next_attempt_at = None
    endpoint.consecutive_failures += 1
    logger.info(
        "webhook %s gave up event %s after %d attempts (%s)",
        webhook_id,
        event_id,
        attempt,
        result.error,
    )
    if endpoint.enabled and endpoint.consecutive_failures >= settings.webhook_disable_after:
        endpoint.enabled = False
        label = endpoint.name or endpoint.url
        await notify(
            session,
            endpoint.organization_id,
            f"The webhook {label!r} was disabled: its last {endpoint.consecutive_failures} "
            f"events could not be delivered (last error: {result.error}). Fix the endpoint, "
            "then enable it again; its pending events will be sent then.",
        )
    await session.flush()
    # The next event may go now (if the endpoint is still enabled).
    if endpoint.enabled:
        await defer_delivery(session, webhook_id)
    return False
