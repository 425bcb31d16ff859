"""Channels: building providers for stored channels, keeping their tokens alive, connecting and
managing them.

Public API of this module (the publishing engine and the Public API code against these)::

    provider_for(integration, http=None) -> Provider
    credentials_of(integration) -> ChannelCredentials
    async refresh_channel(session, integration, *, http=None) -> ChannelCredentials
    async mark_refresh_needed(session, integration, reason) -> None
    channel_problem(integration) -> str | None

Token refresh is serialised per channel with a row lock: platforms whose refresh tokens are
single-use would otherwise see two workers spend the same token, and the loser would disconnect
the channel. Everything here only flushes; the caller's unit of work commits.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import logging
import weakref
from collections.abc import Mapping
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.channels.models import Integration
from tidings.channels.providers import (
    ChannelCredentials,
    ConnectError,
    DisconnectedError,
    Provider,
    RefreshTokenError,
    build_provider,
    default_http_client,
)
from tidings.config import get_settings
from tidings.core.tenancy import OrgId
from tidings.core.urlguard import UnsafeURLError, check_url
from tidings.notifications.service import notify
from tidings.posts.models import Errors

logger = logging.getLogger("tidings.channels")

# ---------------------------------------------------------------------------------------------
# Providers and credentials
# ---------------------------------------------------------------------------------------------

# One outbound client per event loop (connection reuse across channels); an AsyncClient must
# not be shared between loops.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def shared_http_client() -> httpx.AsyncClient:
    """The process's outbound client for providers, on the running event loop."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = default_http_client()
        _clients[loop] = client
    return client


async def url_guard(url: str) -> None:
    """The core URL guard as providers expect it: a refused URL is a :class:`ConnectError`."""
    try:
        await check_url(url, allow_private=get_settings().allow_private_urls)
    except UnsafeURLError as exc:
        raise ConnectError(f"{url} cannot be used: {exc}") from exc


def build(identifier: str, http: httpx.AsyncClient | None = None) -> Provider[Any]:
    """Provider ``identifier`` configured from the environment, with the core URL guard."""
    return build_provider(identifier, http or shared_http_client(), url_guard=url_guard)


def provider_for(integration: Integration, http: httpx.AsyncClient | None = None) -> Provider[Any]:
    """The provider of a stored channel (config from env, core URL guard).

    Without ``http`` the process's shared outbound client is used.
    """
    return build(integration.provider_identifier, http)


def settings_dict(items: list[Any] | None) -> dict[str, Any]:
    """The channel's additional settings as ``{key: value}``.

    Stored as Postiz's list of ``{title, description, type, value}``; Tidings adds ``key``
    (items without one are keyed by their title).
    """
    out: dict[str, Any] = {}
    for item in items or []:
        if isinstance(item, dict):
            key = item.get("key") or item.get("title")
            if isinstance(key, str) and key:
                out[key] = item.get("value")
    return out


def merge_settings(items: list[Any] | None, values: Mapping[str, Any]) -> list[Any]:
    """``items`` with the values of ``values`` set (existing keys updated, new ones appended)."""
    merged = [dict(item) for item in items or [] if isinstance(item, dict)]
    for key, value in values.items():
        for item in merged:
            if (item.get("key") or item.get("title")) == key:
                item["value"] = value
                item.setdefault("key", key)
                break
        else:
            merged.append({"key": key, "title": key, "value": value})
    return merged


def _json_object(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        logger.warning("custom instance details of a channel are not JSON; ignored")
        return None
    return data if isinstance(data, dict) else None


def credentials_of(integration: Integration) -> ChannelCredentials:
    """What a provider needs to act for this channel (tokens decrypted by the column type)."""
    return ChannelCredentials(
        access_token=integration.token,
        internal_id=integration.internal_id,
        refresh_token=integration.refresh_token,
        token_expires_at=integration.token_expiration,
        custom_instance_details=_json_object(integration.custom_instance_details),
        profile=integration.profile,
        additional_settings=settings_dict(integration.additional_settings),
    )


def channel_problem(integration: Integration) -> str | None:
    """Why this channel cannot publish right now (a message for users), else None."""
    name = integration.name
    if integration.deleted_at is not None:
        return f"The channel {name} was deleted"
    if integration.disabled:
        return f"The channel {name} is disabled; enable it to publish"
    if integration.refresh_needed:
        return f"The channel {name} lost its authorization; reconnect it to publish"
    if integration.in_between_steps:
        return f"The channel {name} is not fully connected; pick its page or account first"
    return None


# ---------------------------------------------------------------------------------------------
# Events (the automation engine may not be installed yet)
# ---------------------------------------------------------------------------------------------


async def emit_event(
    session: AsyncSession,
    org_id: str,
    event_type: str,
    payload: dict[str, Any],
    *,
    integration_id: str | None = None,
) -> None:
    """Emit an automation event through ``tidings.automation.events.emit`` when it exists."""
    if importlib.util.find_spec("tidings.automation.events") is None:
        return
    module = importlib.import_module("tidings.automation.events")
    emit = getattr(module, "emit", None)
    if emit is None:
        return
    await emit(session, OrgId(org_id), event_type, payload, integration_id=integration_id)


def channel_payload(integration: Integration) -> dict[str, Any]:
    """The channel as it appears in event payloads (never any token)."""
    return {
        "id": integration.id,
        "name": integration.name,
        "identifier": integration.provider_identifier,
        "internal_id": integration.internal_id,
        "picture": integration.picture,
        "profile": integration.profile,
        "customer_id": integration.customer_id,
    }


# ---------------------------------------------------------------------------------------------
# Refresh
# ---------------------------------------------------------------------------------------------


async def mark_refresh_needed(session: AsyncSession, integration: Integration, reason: str) -> None:
    """Flag the channel for reconnection, tell the organization, record the error and emit
    ``integration.disconnected`` (all in the caller's transaction)."""
    already = integration.refresh_needed
    integration.refresh_needed = True
    session.add(
        Errors(
            organization_id=integration.organization_id,
            integration_id=integration.id,
            error=f"Channel disconnected: {reason}",
            context={
                "channel": integration.name,
                "provider": integration.provider_identifier,
                "kind": "refresh_needed",
            },
        )
    )
    await session.flush()
    if already:
        return  # users were told already; the error row above keeps the new reason
    display = _display_name(integration.provider_identifier)
    await notify(
        session,
        integration.organization_id,
        f"The {display} channel {integration.name} was disconnected ({reason}). "
        "Reconnect it to keep publishing.",
        link=f"/channels?reconnect={integration.id}",
    )
    await emit_event(
        session,
        integration.organization_id,
        "integration.disconnected",
        channel_payload(integration) | {"reason": reason},
        integration_id=integration.id,
    )


def _display_name(identifier: str) -> str:
    from tidings.channels.providers import UnknownProviderError, get_provider

    try:
        return get_provider(identifier).display_name
    except UnknownProviderError:
        return identifier


async def refresh_channel(
    session: AsyncSession, integration: Integration, *, http: httpx.AsyncClient | None = None
) -> ChannelCredentials:
    """Refresh the channel's tokens and return fresh credentials.

    The row is locked (``FOR UPDATE``) for the duration: when another worker refreshed it while
    we waited, its fresh tokens are returned without spending the refresh token again. A new
    refresh token is stored only when the platform sent one.

    A refused refresh (:class:`RefreshTokenError` / :class:`DisconnectedError`) marks the
    channel ``refresh_needed`` in the caller's transaction and raises
    :class:`DisconnectedError` -- catch it inside the unit of work, or the mark is rolled back.
    :class:`RetryableError` propagates unchanged (nothing is marked).
    """
    seen_token = integration.token
    seen_expiration = integration.token_expiration
    locked = (
        await session.execute(
            select(Integration)
            .where(Integration.id == integration.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if locked is None:
        raise DisconnectedError(f"The channel {integration.name} was deleted")
    if locked.token != seen_token or locked.token_expiration != seen_expiration:
        # Someone refreshed it while we waited for the lock (or since we loaded it).
        return credentials_of(locked)
    provider = provider_for(locked, http)
    try:
        tokens = await provider.refresh(credentials_of(locked))
    except (RefreshTokenError, DisconnectedError) as exc:
        await mark_refresh_needed(session, locked, exc.message)
        if isinstance(exc, DisconnectedError):
            raise
        raise DisconnectedError(
            exc.message, status_code=exc.status_code, excerpt=exc.excerpt
        ) from exc
    locked.token = tokens.access_token
    locked.token_expiration = tokens.expires_at
    if tokens.refresh_token:
        locked.refresh_token = tokens.refresh_token
    await session.flush()
    # updated_at is set by the database; load it now so callers can read it without I/O.
    await session.refresh(locked, ["updated_at"])
    return credentials_of(locked)
