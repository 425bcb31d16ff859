"""App API of channels: providers, connecting, managing, choices, tools, customers.

Members (USER role included, since they write posts) read channels, rules, tools and customers;
connecting, changing or deleting a channel and creating customers is for admins.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, FastAPI, Path, Query, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import RedirectResponse, Response

from tidings.accounts.auth import Admin, DbSession, Member
from tidings.channels import customers as customers_service
from tidings.channels import service
from tidings.channels.schemas import (
    AuthorizationRead,
    CallbackBody,
    ChannelRead,
    ChannelRulesRead,
    ChannelUpdate,
    ChoiceRead,
    ChooseBody,
    ConnectedRead,
    CustomerCreate,
    CustomerRead,
    FieldsConnect,
    ProviderRead,
    ToolResult,
)
from tidings.core.errors import BadRequest

router = APIRouter(prefix="/api", tags=["channels"])

_RESERVED_QUERY = {"return_to", "customer"}

#: A row id (cuid / UUID): malformed ones are refused before any lookup.
ChannelId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")]
ProviderId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[a-z0-9_-]+$")]
ToolName = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")]


def setup_app(app: FastAPI) -> None:
    """Close the providers' shared outbound client when the app shuts down, after the app's
    own lifespan (which stops the in-process worker that may still be publishing)."""
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        try:
            async with inner(app_) as state:
                yield state
        finally:
            await service.close_shared_http_clients()

    app.router.lifespan_context = lifespan


def _read(channel: Any) -> ChannelRead:
    return ChannelRead.of(channel, service.customer_of(channel))


def _connected(outcome: service.ConnectOutcome) -> ConnectedRead:
    return ConnectedRead(
        channel=_read(outcome.channel),
        created=outcome.created,
        choices=[
            ChoiceRead(id=c.id, name=c.name, picture=c.picture, username=c.username)
            for c in outcome.choices
        ]
        if outcome.choices is not None
        else None,
    )


# ---- providers ---------------------------------------------------------------------------------


@router.get("/providers", response_model=list[ProviderRead])
async def list_providers(caller: Member) -> list[dict[str, Any]]:
    """Every provider: how it connects, its fields, limits, media rules, settings and tools."""
    return service.list_providers()


# ---- connecting --------------------------------------------------------------------------------


@router.get("/channels/{provider}/connect", response_model=AuthorizationRead)
async def start_connect(
    provider: ProviderId,
    request: Request,
    caller: Admin,
    db: DbSession,
    return_to: Annotated[str | None, Query(max_length=500)] = None,
    customer: Annotated[str | None, Query(max_length=200)] = None,
) -> AuthorizationRead:
    """The authorization URL of an OAuth provider. Instance inputs (e.g. Mastodon's
    ``instance_url``) are query parameters."""
    instance = {k: v for k, v in request.query_params.items() if k not in _RESERVED_QUERY}
    start = await service.start_connect(
        db,
        caller.organization_id,
        provider,
        user_id=caller.user_id,
        instance=instance,
        return_to=return_to,
        customer=customer,
    )
    return AuthorizationRead(url=start.url, state=start.state, expires_at=start.expires_at)


@router.post(
    "/channels/{provider}/connect",
    response_model=ConnectedRead,
    status_code=status.HTTP_201_CREATED,
)
async def connect_with_fields(
    provider: ProviderId, body: FieldsConnect, caller: Admin, db: DbSession
) -> ConnectedRead:
    """Connect a credential-field provider (e.g. Bluesky) with its field values."""
    outcome = await service.connect_with_fields(
        db, caller.organization_id, provider, body.fields, customer=body.customer
    )
    return _connected(outcome)


@router.get("/channels/{provider}/callback", response_model=ConnectedRead)
async def oauth_callback(
    provider: ProviderId,
    caller: Admin,
    db: DbSession,
    code: Annotated[str | None, Query(max_length=4000, pattern=r"^[^\x00-\x1f\x7f]*$")] = None,
    state: Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9_-]+$")] = None,
    error: Annotated[str | None, Query(max_length=500)] = None,
    error_description: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response | ConnectedRead:
    """Where the platform sends the browser back: exchanges the code and saves the channel.

    When the connection was started with ``return_to``, the browser is redirected there with
    ``?channel=<id>`` (and ``&choose=1`` when a page must be picked).
    """
    if error:
        raise BadRequest(
            f"The platform refused the authorization: {error_description or error}",
            field="code",
        )
    if not code:
        raise BadRequest("code is required", field="code")
    if not state:
        raise BadRequest("state is required", field="state")
    outcome = await service.finish_connect(
        db, caller.organization_id, provider, user_id=caller.user_id, code=code, state=state
    )
    if outcome.return_to:
        sep = "&" if "?" in outcome.return_to else "?"
        target = f"{outcome.return_to}{sep}channel={outcome.channel.id}"
        if outcome.choices is not None:
            target += "&choose=1"
        return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
    return _connected(outcome)


@router.post("/channels/{provider}/callback", response_model=ConnectedRead)
async def oauth_callback_post(
    provider: ProviderId, body: CallbackBody, caller: Admin, db: DbSession
) -> ConnectedRead:
    """The callback for the web app, which receives the code itself and posts it here."""
    outcome = await service.finish_connect(
        db,
        caller.organization_id,
        provider,
        user_id=caller.user_id,
        code=body.code,
        state=body.state,
    )
    return _connected(outcome)


# ---- managing ----------------------------------------------------------------------------------


@router.get("/channels", response_model=list[ChannelRead])
async def list_channels(
    caller: Member,
    db: DbSession,
    customer: Annotated[
        str | None,
        Query(
            description="Only this customer's channels",
            max_length=100,
            pattern=r"^[A-Za-z0-9_-]+$",
        ),
    ] = None,
) -> list[ChannelRead]:
    """The organization's channels, with their customer."""
    channels = await service.list_channels(db, caller.organization_id, customer_id=customer)
    return [_read(c) for c in channels]


@router.get("/channels/{channel_id}", response_model=ChannelRead)
async def get_channel(channel_id: ChannelId, caller: Member, db: DbSession) -> ChannelRead:
    """One channel."""
    return _read(await service.get_channel(db, caller.organization_id, channel_id))


@router.patch("/channels/{channel_id}", response_model=ChannelRead)
async def update_channel(
    channel_id: ChannelId, body: ChannelUpdate, caller: Admin, db: DbSession
) -> ChannelRead:
    """Rename, picture, disable/enable, posting times, customer, preferences (omitted fields
    are kept; ``customer: null`` unassigns)."""
    changes = service.ChannelChanges(
        given=frozenset(body.model_fields_set),
        name=body.name,
        picture=body.picture,
        disabled=body.disabled,
        posting_times=[t.time for t in body.posting_times]
        if body.posting_times is not None
        else None,
        customer=body.customer,
        customer_id=body.customer_id,
        preferences=body.preferences,
    )
    return _read(await service.update_channel(db, caller.organization_id, channel_id, changes))


@router.delete("/channels/{channel_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_channel(channel_id: ChannelId, caller: Admin, db: DbSession) -> Response:
    """Soft-delete a channel (admins only)."""
    await service.delete_channel(db, caller.organization_id, channel_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/channels/{channel_id}/rules", response_model=ChannelRulesRead)
async def channel_rules(channel_id: ChannelId, caller: Member, db: DbSession) -> dict[str, Any]:
    """The channel's max length, media rules, settings schema and tools."""
    channel = await service.get_channel(db, caller.organization_id, channel_id)
    return await service.channel_rules(channel)


@router.get("/channels/{channel_id}/choices", response_model=list[ChoiceRead])
async def list_choices(channel_id: ChannelId, caller: Admin, db: DbSession) -> list[ChoiceRead]:
    """The pages/accounts a channel in between steps may pick."""
    choices = await service.list_choices(db, caller.organization_id, channel_id)
    return [
        ChoiceRead(id=c.id, name=c.name, picture=c.picture, username=c.username) for c in choices
    ]


@router.post("/channels/{channel_id}/choose", response_model=ConnectedRead)
async def choose(
    channel_id: ChannelId, body: ChooseBody, caller: Admin, db: DbSession
) -> ConnectedRead:
    """Pick the page/account of a channel in between steps."""
    outcome = await service.choose(db, caller.organization_id, channel_id, body.choice_id)
    return _connected(outcome)


@router.post("/channels/{channel_id}/tools/{name}", response_model=ToolResult)
async def run_tool(
    channel_id: ChannelId,
    name: ToolName,
    caller: Member,
    db: DbSession,
    args: Annotated[dict[str, Any] | None, Body()] = None,
) -> ToolResult:
    """Run a provider tool (e.g. list pages) with a JSON object of arguments."""
    result = await service.run_tool(db, caller.organization_id, channel_id, name, args or {})
    return ToolResult(result=jsonable_encoder(result))


# ---- customers ---------------------------------------------------------------------------------


@router.get("/customers", response_model=list[CustomerRead], tags=["customers"])
async def list_customers(caller: Member, db: DbSession) -> list[CustomerRead]:
    """The organization's customers."""
    rows = await customers_service.list_customers(db, caller.organization_id)
    return [CustomerRead.of(c) for c in rows]


@router.post(
    "/customers",
    response_model=CustomerRead,
    status_code=status.HTTP_201_CREATED,
    tags=["customers"],
)
async def create_customer(body: CustomerCreate, caller: Admin, db: DbSession) -> CustomerRead:
    """Create a customer (or return the existing one of that name)."""
    customer = await customers_service.get_or_create_customer(db, caller.organization_id, body.name)
    return CustomerRead.of(customer)
