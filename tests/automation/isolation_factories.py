"""Isolation-test registrations of the automation routes (webhooks, feeds, connectors)."""

from __future__ import annotations

from tests.automation.factories import make_channel, make_feed
from tests.isolation_fixtures import OwnerContext, isolation_factory
from tidings.automation.models import ThirdParty, WebhookEvent, Webhooks
from tidings.automation.webhooks import generate_secret


@isolation_factory("webhook_id", "event_id", prefix="/api/webhooks")
async def webhook_of_a(ctx: OwnerContext) -> dict[str, str]:
    endpoint = Webhooks(
        organization_id=ctx.org_id,
        name="A's endpoint",
        url="https://1.1.1.1/hooks/a",
        events=["post.published"],
        secret=generate_secret(),
    )
    ctx.db.add(endpoint)
    await ctx.db.flush()
    event = WebhookEvent(
        organization_id=ctx.org_id,
        webhook_id=endpoint.id,
        type="post.published",
        payload={"post": "a"},
        status="failed",
    )
    ctx.db.add(event)
    await ctx.db.flush()
    return {"webhook_id": endpoint.id, "event_id": event.id}


@isolation_factory("autopost_id", prefix="/api/autopost")
async def feed_of_a(ctx: OwnerContext) -> dict[str, str]:
    channel = await make_channel(ctx.db, ctx.org_id, name="A's feed channel")
    feed = await make_feed(
        ctx.db,
        ctx.org_id,
        "https://1.1.1.1/feed.xml",
        [channel.id],
        name="A's feed",
        template="{{title}} {{url}}",
    )
    return {"autopost_id": feed.id}


@isolation_factory("connector_id", prefix="/api/third-party")
async def connector_of_a(ctx: OwnerContext) -> dict[str, str]:
    connector = ThirdParty(
        organization_id=ctx.org_id,
        provider="n8n",
        api_key="a-secret-n8n-key",
        webhook_url=None,
        config={"workflow": "a"},
    )
    ctx.db.add(connector)
    await ctx.db.flush()
    return {"connector_id": connector.id}
