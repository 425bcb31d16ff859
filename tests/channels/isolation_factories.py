"""Isolation-test registrations of the channels routes."""

from __future__ import annotations

from tests.channels.factories import make_channel
from tests.isolation_fixtures import (
    OwnerContext,
    isolation_body,
    isolation_factory,
    not_tenant_scoped,
)

not_tenant_scoped("/api/channels/{provider}/connect", "a provider identifier, not a row")
not_tenant_scoped("/api/channels/{provider}/callback", "a provider identifier, not a row")


@isolation_factory("channel_id")
async def channel_of_a(ctx: OwnerContext) -> dict[str, str]:
    channel = await make_channel(ctx.db, ctx.org_id, provider="bluesky", name="Isolated")
    return {"channel_id": channel.id}


@isolation_factory("channel_id", "name", prefix="/api/channels/{channel_id}/tools")
async def channel_tool_of_a(ctx: OwnerContext) -> dict[str, str]:
    channel = await make_channel(ctx.db, ctx.org_id, provider="linkedin-page", name="Isolated page")
    return {"channel_id": channel.id, "name": "list_pages"}


@isolation_body("PATCH", "/api/channels/{channel_id}")
def channel_patch(ids: dict[str, str]) -> dict[str, object]:
    return {"name": "taken over"}


@isolation_body("POST", "/api/channels/{channel_id}/choose")
def channel_choose(ids: dict[str, str]) -> dict[str, object]:
    return {"choice_id": "1"}


@isolation_body("POST", "/api/channels/{channel_id}/tools/{name}")
def channel_tool(ids: dict[str, str]) -> dict[str, object]:
    return {}
