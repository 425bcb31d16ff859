"""Channels through the Public API as Postiz clients call it: raw key header, their shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.channels.factories import make_channel
from tests.channels.helpers import approve, point
from tests.channels.providers.servers.reddit import CLIENT_ID, CLIENT_SECRET, FakeReddit
from tests.conftest import Tenant
from tests.public_api.conftest import ApiKey
from tidings.channels.models import Integration
from tidings.orgs.models import Customer
from tidings.posts.models import Post

BASE = "/public/v1"


async def test_is_connected_with_raw_key_bearer_and_api_prefix(
    client: httpx.AsyncClient, api: ApiKey
) -> None:
    for prefix in ("/public/v1", "/api/public/v1"):
        raw = await client.get(f"{prefix}/is-connected", headers=api.headers)
        assert raw.status_code == 200 and raw.json() == {"connected": True}
        bearer = await client.get(
            f"{prefix}/is-connected", headers={"Authorization": f"Bearer {api.key}"}
        )
        assert bearer.status_code == 200 and bearer.json() == {"connected": True}


async def test_integrations_list_in_postiz_shape(
    client: httpx.AsyncClient, db: AsyncSession, api: ApiKey, other_api: ApiKey
) -> None:
    acme = Customer(name="Acme", org_id=api.org_id)
    db.add(acme)
    await db.flush()
    first = await make_channel(
        db, api.org_id, provider="bluesky", name="Alice", picture="https://p/a.png", profile="al"
    )
    second = await make_channel(
        db, api.org_id, provider="mastodon", name="Bob", customer_id=acme.id, disabled=True
    )
    await make_channel(db, other_api.org_id, provider="bluesky", name="Not mine")

    response = await client.get(f"{BASE}/integrations", headers=api.headers)
    assert response.status_code == 200, response.text
    assert response.json() == [
        {
            "id": first.id,
            "name": "Alice",
            "identifier": "bluesky",
            "picture": "https://p/a.png",
            "disabled": False,
            "profile": "al",
            "customer": None,
        },
        {
            "id": second.id,
            "name": "Bob",
            "identifier": "mastodon",
            "picture": None,
            "disabled": True,
            "profile": None,
            "customer": {"id": acme.id, "name": "Acme"},
        },
    ]
    only_acme = await client.get(
        f"{BASE}/integrations", params={"group": acme.id}, headers=api.headers
    )
    assert [c["id"] for c in only_acme.json()] == [second.id]

    groups = await client.get(f"{BASE}/groups", headers=api.headers)
    assert groups.status_code == 200 and groups.json() == [{"id": acme.id, "name": "Acme"}]
    # B sees none of it.
    assert [
        c["name"]
        for c in (await client.get(f"{BASE}/integrations", headers=other_api.headers)).json()
    ] == ["Not mine"]
    assert (await client.get(f"{BASE}/groups", headers=other_api.headers)).json() == []


async def test_integration_settings(
    client: httpx.AsyncClient, db: AsyncSession, api: ApiKey
) -> None:
    channel = await make_channel(
        db,
        api.org_id,
        provider="mastodon",
        additional_settings=[{"key": "max_characters", "value": 1000}],
    )
    response = await client.get(f"{BASE}/integration-settings/{channel.id}", headers=api.headers)
    assert response.status_code == 200, response.text
    output = response.json()["output"]
    assert set(output) == {"rules", "maxLength", "settings", "tools"}
    assert output["maxLength"] == 1000
    assert "1000 characters" in output["rules"] and output["rules"].startswith("Mastodon")
    assert output["settings"]["type"] == "object"
    assert output["tools"] == []

    reddit = await make_channel(db, api.org_id, provider="reddit")
    tools = await client.get(f"{BASE}/integration-settings/{reddit.id}", headers=api.headers)
    assert tools.json()["output"]["tools"] == ["flairs"]
    assert "title" in tools.json()["output"]["settings"]["properties"]

    gone = await make_channel(db, api.org_id, provider="no-such-provider")
    empty = await client.get(f"{BASE}/integration-settings/{gone.id}", headers=api.headers)
    assert empty.status_code == 200
    assert empty.json() == {"output": {"rules": "", "maxLength": 0, "settings": {}, "tools": []}}


@pytest.fixture
async def reddit(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeReddit]:
    async with FakeReddit() as server:
        point(monkeypatch, "reddit", server, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
        monkeypatch.setenv("TIDINGS_REDDIT_WEB_URL", "https://www.reddit.com")
        yield server


async def test_social_connect_then_trigger_a_tool(
    reddit: FakeReddit, client: httpx.AsyncClient, db: AsyncSession, api: ApiKey, tenant: Tenant
) -> None:
    # The connect URL comes from the Public API; the user's browser then authorizes it and the
    # app completes the callback in the organization.
    start = await client.get(f"{BASE}/social/reddit", headers=api.headers)
    assert start.status_code == 200, start.text
    assert set(start.json()) == {"url"}
    callback = await approve(start.json()["url"])
    done = await client.get(
        "/api/channels/reddit/callback",
        params={"code": callback["code"], "state": callback["state"]},
        headers=tenant.headers,
    )
    assert done.status_code == 200, done.text
    channel_id = done.json()["channel"]["id"]

    flairs = await client.post(
        f"{BASE}/integration-trigger/{channel_id}",
        json={"methodName": "flairs", "data": {"subreddit": "r/python"}},
        headers=api.headers,
    )
    assert flairs.status_code == 200, flairs.text
    assert flairs.json() == {"output": [{"id": "f-1", "text": "Discussion", "editable": False}]}

    unknown = await client.post(
        f"{BASE}/integration-trigger/{channel_id}",
        json={"methodName": "delete_everything", "data": {}},
        headers=api.headers,
    )
    assert unknown.status_code == 400
    assert unknown.json()["field"] == "methodName"
    assert "flairs" in unknown.json()["message"]

    refused = await client.post(
        f"{BASE}/integration-trigger/{channel_id}",
        json={"methodName": "flairs", "data": {"subreddit": "private_one"}},
        headers=api.headers,
    )
    assert refused.status_code == 400 and refused.json()["field"] == "data"

    no_method = await client.post(
        f"{BASE}/integration-trigger/{channel_id}", json={"data": {}}, headers=api.headers
    )
    assert no_method.status_code == 422 and no_method.json()["field"] == "methodName"


async def test_social_errors(client: httpx.AsyncClient, api: ApiKey) -> None:
    unknown = await client.get(f"{BASE}/social/myspace", headers=api.headers)
    assert unknown.status_code == 404 and unknown.json()["field"] == "provider"
    fields = await client.get(f"{BASE}/social/bluesky", headers=api.headers)
    assert fields.status_code == 400 and "credential fields" in fields.json()["message"]
    nul = await client.get(
        f"{BASE}/social/mastodon", params={"instance_url": "a\x00b"}, headers=api.headers
    )
    assert nul.status_code == 422 and nul.json()["field"] == "instance_url"


async def test_find_slot_skips_taken_slots(
    client: httpx.AsyncClient, db: AsyncSession, api: ApiKey
) -> None:
    channel = await make_channel(
        db,
        api.org_id,
        provider="bluesky",
        posting_times=[{"time": 600}],  # 10:00 UTC
    )
    now = datetime.now(UTC)
    first = now.replace(hour=10, minute=0, second=0, microsecond=0)
    if first <= now:
        first += timedelta(days=1)
    db.add(
        Post(
            organization_id=api.org_id,
            integration_id=channel.id,
            group="g-slot",
            content="taken",
            publish_date=first,
        )
    )
    await db.flush()
    response = await client.get(f"{BASE}/find-slot/{channel.id}", headers=api.headers)
    assert response.status_code == 200, response.text
    date = datetime.fromisoformat(response.json()["date"].replace("Z", "+00:00"))
    assert date == first + timedelta(days=1)


async def test_delete_integration(
    client: httpx.AsyncClient, db: AsyncSession, api: ApiKey, other_api: ApiKey
) -> None:
    channel = await make_channel(db, api.org_id, provider="bluesky")
    foreign = await client.delete(f"{BASE}/integrations/{channel.id}", headers=other_api.headers)
    assert foreign.status_code == 404
    response = await client.delete(f"{BASE}/integrations/{channel.id}", headers=api.headers)
    assert response.status_code == 200 and response.json() == {"id": channel.id, "deleted": True}
    assert (await client.get(f"{BASE}/integrations", headers=api.headers)).json() == []
    row = (
        await db.execute(
            select(Integration)
            .where(Integration.id == channel.id)
            .execution_options(include_deleted=True, populate_existing=True)
        )
    ).scalar_one()
    assert row.deleted_at is not None
    again = await client.delete(f"{BASE}/integrations/{channel.id}", headers=api.headers)
    assert again.status_code == 404


async def test_analytics_of_a_channel(
    client: httpx.AsyncClient, db: AsyncSession, api: ApiKey, other_api: ApiKey
) -> None:
    channel = await make_channel(db, api.org_id, provider="bluesky")
    mine = await client.get(
        f"{BASE}/analytics/{channel.id}", params={"date": "7"}, headers=api.headers
    )
    assert mine.status_code == 200 and mine.json() == []
    theirs = await client.get(f"{BASE}/analytics/{channel.id}", headers=other_api.headers)
    assert theirs.status_code == 404
    bad = await client.get(
        f"{BASE}/analytics/{channel.id}", params={"date": "soon"}, headers=api.headers
    )
    assert bad.status_code == 422 and bad.json()["field"] == "date"
