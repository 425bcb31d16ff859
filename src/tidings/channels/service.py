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
import json
import logging
import socket
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from tidings.automation.events import emit
from tidings.billing.service import check_channel_limit
from tidings.channels.customers import (
    clean_customer_name,
    get_customer,
    get_or_create_customer,
)
from tidings.channels.models import Integration, OAuthState
from tidings.channels.providers import (
    ChannelCredentials,
    Choice,
    ConnectedAccount,
    ConnectError,
    DisconnectedError,
    Provider,
    ProviderError,
    RefreshTokenError,
    RetryableError,
    UnknownOutcomeError,
    UnknownProviderError,
    UnknownToolError,
    all_providers,
    build_provider,
    config_from_env,
    default_http_client,
    get_provider,
    new_code_verifier,
)
from tidings.config import get_settings
from tidings.core.errors import (
    BadRequest,
    Conflict,
    NotFound,
    RateLimited,
    TidingsError,
)
from tidings.core.ids import new_cuid, new_token
from tidings.core.tenancy import OrgId, select_owned
from tidings.core.urlguard import UnsafeURLError, check_url, guarded_request
from tidings.notifications.service import notify
from tidings.orgs.models import Customer
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


async def close_shared_http_clients() -> None:
    """Close the shared outbound client of the running loop (at shutdown, between tests)."""
    loop = asyncio.get_running_loop()
    client = _clients.pop(loop, None)
    if client is not None:
        await client.aclose()


async def url_guard(url: str) -> None:
    """The core URL guard as providers expect it: a refused URL is a :class:`ConnectError`."""
    try:
        await check_url(url, allow_private=get_settings().allow_private_urls)
    except UnsafeURLError as exc:
        raise ConnectError(f"{url} cannot be used: {exc}") from exc


async def guarded_send(
    client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    """One request to a user-given host through the core guard: checked at every hop and sent
    to the checked address (a name that now resolves privately is refused: ConnectError)."""
    try:
        return await guarded_request(
            client, method, url, allow_private=get_settings().allow_private_urls, **kwargs
        )
    except UnsafeURLError as exc:
        if isinstance(exc.__cause__, socket.gaierror):
            # The name did not resolve: DNS failures are often over a minute later.
            raise RetryableError(f"Could not reach the platform ({exc})") from exc
        raise ConnectError(f"{url} cannot be used: {exc}") from exc


def build(identifier: str, http: httpx.AsyncClient | None = None) -> Provider[Any]:
    """Provider ``identifier`` configured from the environment, with the core URL guard."""
    return build_provider(
        identifier,
        http or shared_http_client(),
        url_guard=url_guard,
        guarded_send=guarded_send,
    )


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
    """Emit an automation event (webhooks, connectors) in the caller's transaction."""
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


async def refresh_in_own_transaction(
    channel_id: str, *, http: httpx.AsyncClient | None = None
) -> ChannelCredentials:
    """:func:`refresh_channel` in a unit of work of its own (committed at once).

    For callers whose transaction may roll back (a request answering an error, a failing
    publish): a refused refresh's ``refresh_needed`` mark is kept anyway. The caller must not
    hold a lock on the channel row. Raises like :func:`refresh_channel`.
    """
    from tidings.db import get_database

    failure: ProviderError | None = None
    async with get_database().session() as session:
        channel = await session.get(Integration, channel_id)
        if channel is None:
            raise DisconnectedError("The channel was deleted")
        try:
            return await refresh_channel(session, channel, http=http)
        except DisconnectedError as exc:
            failure = exc  # leave the block normally so the mark commits
    assert failure is not None
    raise failure


# ---------------------------------------------------------------------------------------------
# Connecting
# ---------------------------------------------------------------------------------------------

STATE_PURPOSE = "channel"
STATE_TTL = timedelta(minutes=15)
# In-between rows (an account still picking its page) get an internal id of their own: the
# member's id could be a connected channel already (LinkedIn member vs LinkedIn page).
PENDING_MARK = ":pending:"


class PlatformUnavailable(TidingsError):
    """The platform failed (5xx, or no answer after the request was sent)."""

    status_code = 502
    code = "platform_unavailable"


@dataclass(kw_only=True)
class ConnectStart:
    """Where to send the user, and the state that will come back with the callback."""

    url: str
    state: str
    expires_at: datetime


@dataclass(kw_only=True)
class ConnectOutcome:
    """A connected (or reconnected) channel; ``choices`` when it needs a page picked."""

    channel: Integration
    created: bool
    choices: list[Choice] | None = None
    return_to: str | None = None


def provider_class(identifier: str) -> type[Provider[Any]]:
    """The provider class of ``identifier`` (404 naming the provider when unknown)."""
    try:
        return get_provider(identifier)
    except UnknownProviderError:
        raise NotFound(f"unknown provider {identifier!r}", field="provider") from None


def callback_url(identifier: str) -> str:
    """The OAuth redirect URI of a provider (register it with the platform's app)."""
    return f"{get_settings().public_url}/api/channels/{identifier}/callback"


#: What a provider call may raise while connecting or running a tool: its own errors, and the
#: errors of reading an answer of an unexpected shape (a user-given "instance" that is no
#: Mastodon server, a PDS answering nonsense).
CONNECT_FAILURES = (ProviderError, KeyError, TypeError, ValueError, AttributeError, IndexError)


def connect_failure(exc: Exception, *, field: str) -> TidingsError:
    """The client error a provider failure during connecting (or a tool call) means.

    Only a platform that said it failed (5xx) or went silent after a write is a 502; an
    answer that cannot be understood is refused like bad input, naming ``field``.
    """
    if not isinstance(exc, ProviderError):
        logger.warning("a platform answered something unexpected (%s)", field, exc_info=exc)
        return BadRequest(
            "The platform answered something unexpected; check the address and try again",
            field=field,
            code="connect_failed",
        )
    if isinstance(exc, RetryableError):
        if exc.status_code == 429:
            return RateLimited(
                f"The platform is rate limiting: {exc.message}",
                retry_after=int(exc.retry_after or 60),
                field=field,
            )
        if exc.status_code is not None and exc.status_code >= 400:
            return PlatformUnavailable(f"The platform failed: {exc.message}", field=field)
        if exc.status_code is not None:
            # A success status with a body that is not what the API answers (HTML, say).
            return BadRequest(
                f"The platform answered something unexpected: {exc.message}",
                field=field,
                code="connect_failed",
            )
        return BadRequest(f"Could not reach the platform: {exc.message}", field=field)
    if isinstance(exc, UnknownOutcomeError):
        return PlatformUnavailable(exc.message, field=field)
    if isinstance(exc, UnknownToolError):
        return BadRequest(exc.message, field="name")
    return BadRequest(exc.message, field=field, code="connect_failed")


def has_control(value: str) -> bool:
    """Whether ``value`` holds a control character (NUL, tab, newline, ...)."""
    return any(ord(c) < 32 or ord(c) == 127 for c in value)


def _safe_return_to(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if (
        not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or len(value) > 500
        # Browsers drop tabs and newlines from URLs: "/\t/evil.example" is "//evil.example".
        or has_control(value)
    ):
        raise BadRequest(
            "return_to must be a path on this server, like /channels", field="return_to"
        )
    return value


async def start_connect(
    session: AsyncSession,
    org_id: OrgId,
    identifier: str,
    *,
    user_id: str | None,
    instance: Mapping[str, str] | None = None,
    return_to: str | None = None,
    redirect_uri: str | None = None,
    customer: str | None = None,
    http: httpx.AsyncClient | None = None,
) -> ConnectStart:
    """Begin an OAuth connection: the authorization URL, with its state stored for 15 minutes.

    ``instance`` holds the provider's instance inputs (e.g. Mastodon's ``instance_url``);
    ``return_to`` (a local path) is where the browser goes after the callback;
    ``redirect_uri`` overrides the callback URL (e.g. a web page that POSTs the code);
    ``customer`` names the customer the new channel is assigned to.
    """
    cls = provider_class(identifier)
    if cls.connect_kind != "oauth":
        raise BadRequest(
            f"{cls.display_name} connects with credential fields: "
            f"POST /api/channels/{identifier}/connect",
            field="provider",
        )
    names = {spec.name for spec in cls.fields}
    values = {k: v for k, v in (instance or {}).items() if v is not None and v.strip()}
    for key, value in values.items():
        if key not in names:
            raise BadRequest(f"{cls.display_name} takes no input {key!r}", field=key)
        if len(value) > 2000:
            raise BadRequest(f"{key} is too long", field=key)
        if has_control(value):
            raise BadRequest(f"{key} must not contain control characters", field=key)
    return_to = _safe_return_to(return_to)
    if customer is not None:
        clean_customer_name(customer, field="customer")
    field = cls.fields[0].name if cls.fields else "provider"
    state = new_token(24)
    verifier = new_code_verifier()
    redirect = redirect_uri or callback_url(identifier)
    provider = build(identifier, http)
    try:
        request = await provider.authorization_url(redirect, state, verifier, values or None)
    except CONNECT_FAILURES as exc:
        raise connect_failure(exc, field=field) from exc
    expires_at = datetime.now(UTC) + STATE_TTL
    data = {
        "custom_instance_details": request.custom_instance_details,
        "return_to": return_to,
        "customer": customer,
    }
    session.add(
        OAuthState(
            state=state,
            purpose=STATE_PURPOSE,
            provider=identifier,
            organization_id=org_id,
            user_id=user_id,
            code_verifier=verifier,
            redirect_uri=redirect,
            data=json.dumps(data),
            expires_at=expires_at,
        )
    )
    await session.flush()
    return ConnectStart(url=request.url, state=state, expires_at=expires_at)


async def finish_connect(
    session: AsyncSession,
    org_id: OrgId,
    identifier: str,
    *,
    user_id: str | None,
    code: str,
    state: str,
    http: httpx.AsyncClient | None = None,
) -> ConnectOutcome:
    """Complete an OAuth connection: check and spend the state, exchange the code, upsert the
    channel (and list its choices when it needs a page picked).

    The state must belong to this provider, this organization and (when one started it) this
    user, so a victim's browser cannot complete an attacker's connection. It is single-use.
    """
    provider_class(identifier)
    row = (
        await session.execute(
            select(OAuthState)
            .where(OAuthState.state == state, OAuthState.purpose == STATE_PURPOSE)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if (
        row is None
        or row.provider != identifier
        or row.organization_id != org_id
        or (row.user_id is not None and row.user_id != user_id)
    ):
        raise BadRequest("unknown or already used state; start connecting again", field="state")
    await session.delete(row)
    await session.flush()
    if row.expires_at <= datetime.now(UTC):
        raise BadRequest("this connection attempt expired; start connecting again", field="state")
    data = _json_object(row.data) or {}
    provider = build(identifier, http)
    try:
        account = await provider.exchange_code(
            code,
            row.redirect_uri or callback_url(identifier),
            row.code_verifier or "",
            data.get("custom_instance_details"),
        )
    except CONNECT_FAILURES as exc:
        raise connect_failure(exc, field="code") from exc
    customer_id = None
    if data.get("customer"):
        customer_id = (
            await get_or_create_customer(session, org_id, str(data["customer"]), field="customer")
        ).id
    outcome = await save_account(session, org_id, provider, account, customer_id=customer_id)
    outcome.return_to = data.get("return_to")
    return outcome


async def connect_with_fields(
    session: AsyncSession,
    org_id: OrgId,
    identifier: str,
    values: Mapping[str, str],
    *,
    customer: str | None = None,
    http: httpx.AsyncClient | None = None,
) -> ConnectOutcome:
    """Connect a credential-field provider (e.g. Bluesky handle + app password)."""
    cls = provider_class(identifier)
    if cls.connect_kind != "fields":
        raise BadRequest(
            f"{cls.display_name} connects with OAuth: GET /api/channels/{identifier}/connect",
            field="provider",
        )
    names = [spec.name for spec in cls.fields]
    for key in values:
        if key not in names:
            raise BadRequest(
                f"{cls.display_name} takes no field {key!r} (fields: {', '.join(names)})",
                field=f"fields.{key}",
            )
    for key, value in values.items():
        # Credentials and handles are single tokens: a control character could only break
        # the request it goes into.
        if has_control(value):
            raise BadRequest(f"{key} must not contain control characters", field=f"fields.{key}")
    for spec in cls.fields:
        if spec.required and not spec.default and not (values.get(spec.name) or "").strip():
            raise BadRequest(f"{spec.label} is required", field=f"fields.{spec.name}")
    customer_id = None
    if customer is not None:
        customer_id = (await get_or_create_customer(session, org_id, customer, field="customer")).id
    provider = build(identifier, http)
    try:
        account = await provider.connect_with_fields(dict(values))
    except CONNECT_FAILURES as exc:
        raise connect_failure(exc, field="fields") from exc
    return await save_account(session, org_id, provider, account, customer_id=customer_id)


def _row_internal_id(provider: Provider[Any], account: ConnectedAccount) -> str:
    if account.in_between_steps:
        return f"{provider.identifier}{PENDING_MARK}{account.internal_id}"
    return account.internal_id


async def _find_by_internal_id(
    session: AsyncSession, org_id: OrgId, internal_id: str, *, excluding: str | None = None
) -> Integration | None:
    stmt = (
        select_owned(Integration, org_id)
        .where(Integration.internal_id == internal_id)
        .with_for_update()
        .execution_options(include_deleted=True, populate_existing=True)
    )
    if excluding is not None:
        stmt = stmt.where(Integration.id != excluding)
    return (await session.execute(stmt)).scalar_one_or_none()


def _apply_account(
    channel: Integration, provider: Provider[Any], account: ConnectedAccount
) -> None:
    """Copy a fresh connection onto the row; an absent refresh token keeps the stored one."""
    tokens = account.tokens
    channel.provider_identifier = provider.identifier
    channel.name = account.name[:200] or channel.name
    channel.picture = account.picture or channel.picture
    channel.token = tokens.access_token
    channel.token_expiration = tokens.expires_at
    if tokens.refresh_token:
        channel.refresh_token = tokens.refresh_token
    channel.profile = account.username or channel.profile
    if account.custom_instance_details is not None:
        channel.custom_instance_details = json.dumps(account.custom_instance_details)
    if account.additional_settings:
        channel.additional_settings = merge_settings(
            channel.additional_settings, account.additional_settings
        )
    channel.in_between_steps = account.in_between_steps
    if account.in_between_steps:
        channel.root_internal_id = account.internal_id
    channel.refresh_needed = False


async def save_account(
    session: AsyncSession,
    org_id: OrgId,
    provider: Provider[Any],
    account: ConnectedAccount,
    *,
    customer_id: str | None = None,
) -> ConnectOutcome:
    """Upsert the channel of a connected account by (organization, internal id).

    A reconnection updates the existing row (a soft-deleted one is revived); a new or revived
    channel must fit the plan's channel limit. Emits ``integration.connected`` unless the
    account still has to pick its page (then ``choices`` lists them).
    """
    internal_id = _row_internal_id(provider, account)
    channel = await _find_by_internal_id(session, org_id, internal_id)
    created = False
    if channel is None:
        await check_channel_limit(session, org_id)
        # ON CONFLICT: a concurrent connection of the same account inserts at most one row.
        inserted = (
            await session.execute(
                insert(Integration)
                .values(
                    id=new_cuid(),
                    organization_id=org_id,
                    internal_id=internal_id,
                    name=account.name[:200] or provider.display_name,
                    provider_identifier=provider.identifier,
                    type="social",
                    token=account.tokens.access_token,
                )
                .on_conflict_do_nothing(index_elements=["organization_id", "internal_id"])
                .returning(Integration.id)
            )
        ).scalar_one_or_none()
        created = inserted is not None
        channel = await _find_by_internal_id(session, org_id, internal_id)
        assert channel is not None
    elif channel.deleted_at is not None:
        await check_channel_limit(session, org_id, excluding=channel.id)
        channel.deleted_at = None
        channel.disabled = False
        created = True  # a new channel as far as the user can tell
    _apply_account(channel, provider, account)
    if customer_id is not None:
        channel.customer_id = customer_id
    await session.flush()
    choices = None
    if channel.in_between_steps:
        choices = await _list_choices(provider, channel)
    else:
        await emit_event(
            session,
            org_id,
            "integration.connected",
            channel_payload(channel),
            integration_id=channel.id,
        )
    return ConnectOutcome(
        channel=await get_channel(session, org_id, channel.id), created=created, choices=choices
    )


def pending_credentials(channel: Integration) -> ChannelCredentials:
    """Credentials of a channel; while in between steps, under the member's own id."""
    credentials = credentials_of(channel)
    if channel.in_between_steps and channel.root_internal_id:
        credentials.internal_id = channel.root_internal_id
    return credentials


async def _list_choices(provider: Provider[Any], channel: Integration) -> list[Choice]:
    try:
        return await provider.list_choices(pending_credentials(channel))
    except CONNECT_FAILURES as exc:
        raise connect_failure(exc, field="id") from exc


async def list_choices(
    session: AsyncSession, org_id: OrgId, channel_id: str, *, http: httpx.AsyncClient | None = None
) -> list[Choice]:
    """The pages/accounts a channel in between steps may pick."""
    channel = await get_channel(session, org_id, channel_id)
    if not channel.in_between_steps:
        raise Conflict("this channel is connected already; nothing to pick", field="id")
    return await _list_choices(provider_for(channel, http), channel)


async def choose(
    session: AsyncSession,
    org_id: OrgId,
    channel_id: str,
    choice_id: str,
    *,
    http: httpx.AsyncClient | None = None,
) -> ConnectOutcome:
    """Finish an in-between connection with the picked page/account.

    When the picked account is a channel already (e.g. reconnecting a page), that row takes
    the new connection and the pending row is deleted.
    """
    channel = await get_channel(session, org_id, channel_id, for_update=True)
    if not channel.in_between_steps:
        raise Conflict("this channel is connected already; nothing to pick", field="id")
    provider = provider_for(channel, http)
    try:
        account = await provider.select_choice(pending_credentials(channel), choice_id)
    except CONNECT_FAILURES as exc:
        raise connect_failure(exc, field="choice_id") from exc
    target = await _find_by_internal_id(
        session, org_id, _row_internal_id(provider, account), excluding=channel.id
    )
    created = target is None
    root = channel.root_internal_id
    if target is not None:
        if target.deleted_at is not None:
            target.deleted_at = None
            target.disabled = False
            created = True
        target.customer_id = target.customer_id or channel.customer_id
        channel.deleted_at = datetime.now(UTC)
        await session.flush()  # frees nothing unique, but keeps the order of writes obvious
        channel = target
    else:
        channel.internal_id = _row_internal_id(provider, account)
    _apply_account(channel, provider, account)
    channel.root_internal_id = root
    await session.flush()
    if channel.in_between_steps:
        return ConnectOutcome(
            channel=await get_channel(session, org_id, channel.id),
            created=created,
            choices=await _list_choices(provider, channel),
        )
    await emit_event(
        session,
        org_id,
        "integration.connected",
        channel_payload(channel),
        integration_id=channel.id,
    )
    return ConnectOutcome(channel=await get_channel(session, org_id, channel.id), created=created)


# ---------------------------------------------------------------------------------------------
# Managing
# ---------------------------------------------------------------------------------------------


async def list_channels(
    session: AsyncSession, org_id: OrgId, *, customer_id: str | None = None
) -> list[Integration]:
    """The organization's channels (customer loaded), oldest first."""
    stmt = (
        select_owned(Integration, org_id)
        .options(selectinload(Integration.customer))
        .order_by(Integration.created_at, Integration.id)
    )
    if customer_id is not None:
        stmt = stmt.where(Integration.customer_id == customer_id)
    return list((await session.execute(stmt)).scalars())


async def get_channel(
    session: AsyncSession, org_id: OrgId, channel_id: str, *, for_update: bool = False
) -> Integration:
    """One channel of the organization with its customer loaded (404 otherwise)."""
    stmt = (
        select_owned(Integration, org_id)
        .where(Integration.id == channel_id)
        .options(selectinload(Integration.customer))
        .execution_options(populate_existing=True)
    )
    if for_update:
        stmt = stmt.with_for_update(of=Integration)
    channel = (await session.execute(stmt)).scalar_one_or_none()
    if channel is None:
        raise NotFound("channel not found", field="id")
    return channel


def customer_of(channel: Integration) -> Customer | None:
    """The channel's customer if it is loaded and not deleted."""
    customer = channel.__dict__.get("customer")
    if customer is None or customer.deleted_at is not None:
        return None
    return customer  # type: ignore[no-any-return]


@dataclass(kw_only=True)
class ChannelChanges:
    """Changes to a channel; only the attributes named in ``given`` are applied."""

    given: frozenset[str]
    name: str | None = None
    picture: str | None = None
    disabled: bool | None = None
    posting_times: list[int] | None = None
    customer: str | None = None
    customer_id: str | None = None
    preferences: Mapping[str, Any] | None = None


async def update_channel(
    session: AsyncSession, org_id: OrgId, channel_id: str, changes: ChannelChanges
) -> Integration:
    """Rename, set the picture, disable/enable, set posting times, (un)assign a customer
    (creating it by name) or set preferences. Enabling must fit the plan's channel limit."""
    channel = await get_channel(session, org_id, channel_id, for_update=True)
    given = changes.given
    for required in ("name", "disabled", "posting_times", "preferences"):
        if required in given and getattr(changes, required) is None:
            raise BadRequest(f"{required} cannot be null", field=required)
    if "customer" in given and "customer_id" in given:
        raise BadRequest("give customer (a name) or customer_id, not both", field="customer")
    if "name" in given:
        name = " ".join((changes.name or "").split())
        if not name:
            raise BadRequest("name must not be empty", field="name")
        channel.name = name
    if "picture" in given:
        channel.picture = changes.picture or None
    if "disabled" in given and changes.disabled != channel.disabled:
        if not changes.disabled:
            await check_channel_limit(session, org_id, excluding=channel.id)
        channel.disabled = bool(changes.disabled)
    if "posting_times" in given:
        times = sorted(set(changes.posting_times or []))
        for minute in times:
            if not 0 <= minute <= 1439:
                raise BadRequest("posting times are minutes 0..1439", field="posting_times")
        channel.posting_times = [{"time": minute} for minute in times]
    if "customer" in given:
        channel.customer_id = (
            (await get_or_create_customer(session, org_id, changes.customer, field="customer")).id
            if changes.customer
            else None
        )
    if "customer_id" in given:
        channel.customer_id = (
            (await get_customer(session, org_id, changes.customer_id)).id
            if changes.customer_id
            else None
        )
    if "preferences" in given and changes.preferences:
        channel.additional_settings = merge_settings(
            channel.additional_settings, changes.preferences
        )
    await session.flush()
    return await get_channel(session, org_id, channel.id)


async def delete_channel(session: AsyncSession, org_id: OrgId, channel_id: str) -> None:
    """Soft-delete a channel (it stops publishing; reconnecting the account revives it)."""
    channel = await get_channel(session, org_id, channel_id, for_update=True)
    channel.deleted_at = datetime.now(UTC)
    await session.flush()
    await emit_event(
        session,
        channel.organization_id,
        "integration.disconnected",
        channel_payload(channel) | {"reason": "deleted"},
        integration_id=channel.id,
    )


# ---------------------------------------------------------------------------------------------
# Rules and tools
# ---------------------------------------------------------------------------------------------


def media_rules_of(cls: type[Provider[Any]]) -> dict[str, Any]:
    """A provider's media rules as JSON."""
    rules = cls.media_rules
    return {
        "max_images": rules.max_images,
        "max_videos": rules.max_videos,
        "allow_mixed": rules.allow_mixed,
        "min_media": rules.min_media,
        "replies_allow_media": rules.replies_allow_media,
        "image_mime_types": sorted(rules.image_mime_types),
        "video_mime_types": sorted(rules.video_mime_types),
    }


def missing_config(cls: type[Provider[Any]]) -> list[str]:
    """The environment variables this server still needs to connect and publish with the
    provider (e.g. Discord's bot token besides its OAuth client); empty when it is ready."""
    return cls.missing_config(config_from_env(cls.identifier))


def describe_provider(cls: type[Provider[Any]]) -> dict[str, Any]:
    """What the app needs to show and connect a provider."""
    missing = missing_config(cls)
    return {
        "identifier": cls.identifier,
        "display_name": cls.display_name,
        "connect_kind": cls.connect_kind,
        "configured": not missing,
        "missing_config": missing,
        "fields": [
            {
                "name": spec.name,
                "label": spec.label,
                "secret": spec.secret,
                "required": spec.required,
                "default": spec.default,
                "help": spec.help,
            }
            for spec in cls.fields
        ],
        "max_length": cls.default_max_length,
        "text_counting": cls.text_counting,
        "supports_replies": cls.supports_replies,
        "media_rules": media_rules_of(cls),
        "settings_schema": cls.settings_schema(),
        "tools": cls.tool_names(),
    }


def list_providers() -> list[dict[str, Any]]:
    """Every registered provider, described."""
    return [describe_provider(cls) for cls in all_providers()]


async def channel_rules(channel: Integration) -> dict[str, Any]:
    """The rules of one channel: its max length (which may depend on the account, e.g. a
    Mastodon instance or an X verified account), media rules, settings schema and tools."""
    cls = provider_class(channel.provider_identifier)
    provider = build(cls.identifier)  # sends nothing: limits only
    return {
        "identifier": cls.identifier,
        "max_length": provider.max_length(credentials_of(channel)),
        "text_counting": cls.text_counting,
        "supports_replies": cls.supports_replies,
        "media_rules": media_rules_of(cls),
        "settings_schema": cls.settings_schema(),
        "tools": cls.tool_names(),
    }


async def run_tool(
    session: AsyncSession,
    org_id: OrgId,
    channel_id: str,
    name: str,
    args: Mapping[str, Any],
    *,
    http: httpx.AsyncClient | None = None,
) -> Any:
    """Run a provider tool for a channel; an expired token is refreshed once and the tool
    retried."""
    channel = await get_channel(session, org_id, channel_id)
    cls = provider_class(channel.provider_identifier)
    if name not in cls.tool_names():
        known = ", ".join(cls.tool_names()) or "none"
        raise BadRequest(f"{cls.display_name} has no tool {name!r} (tools: {known})", field="name")
    if channel.refresh_needed:
        raise Conflict(channel_problem(channel) or "reconnect the channel", field="id")
    provider = provider_for(channel, http)
    credentials = pending_credentials(channel)
    for attempt in (1, 2):
        try:
            return await provider.call_tool(name, credentials, args)
        except RefreshTokenError as exc:
            if attempt == 2:
                raise connect_failure(exc, field="id") from exc
        except CONNECT_FAILURES as exc:
            raise connect_failure(exc, field="args") from exc
        try:
            credentials = await refresh_in_own_transaction(channel.id, http=http)
        except DisconnectedError as exc:
            raise Conflict(
                f"The channel {channel.name} lost its authorization; reconnect it", field="id"
            ) from exc
        except CONNECT_FAILURES as exc:
            raise connect_failure(exc, field="id") from exc
        if channel.in_between_steps and channel.root_internal_id:
            credentials.internal_id = channel.root_internal_id
    raise AssertionError("unreachable")
