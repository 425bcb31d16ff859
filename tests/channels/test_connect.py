"""Connecting channels through the app API, against the providers' loopback platforms."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from tests.channels.helpers import approve, oauth_connect, point
from tests.channels.providers.servers import discord as fake_discord
from tests.channels.providers.servers import x as fake_x
from tests.channels.providers.servers.bluesky import FakeBluesky
from tests.channels.providers.servers.discord import FakeDiscord
from tests.channels.providers.servers.linkedin import FakeLinkedIn
from tests.channels.providers.servers.mastodon import FakeMastodon
from tests.channels.providers.servers.x import FakeX
from tests.conftest import Tenant
from tidings.channels.models import Integration, OAuthState
from tidings.channels.providers import code_challenge
from tidings.channels.service import credentials_of

pytestmark = pytest.mark.usefixtures("allow_private")


@pytest.fixture
async def pds(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeBluesky]:
    async with FakeBluesky() as server:
        point(monkeypatch, "bluesky", server)
        yield server


@pytest.fixture
async def mastodon() -> AsyncIterator[FakeMastodon]:
    async with FakeMastodon(issue_refresh=True) as server:
        yield server


@pytest.fixture
async def x_api(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeX]:
    async with FakeX() as server:
        point(
            monkeypatch,
            "x",
            server,
            client_id=fake_x.CLIENT_ID,
            client_secret=fake_x.CLIENT_SECRET,
        )
        yield server


async def channel_row(db: AsyncSession, channel_id: str) -> Integration:
    return (
        await db.execute(
            select(Integration)
            .where(Integration.id == channel_id)
            .execution_options(include_deleted=True, populate_existing=True)
        )
    ).scalar_one()


async def count_channels(db: AsyncSession, org_id: str) -> int:
    return int(
        (
            await db.execute(
                select(func.count())
                .select_from(Integration)
                .where(Integration.organization_id == org_id)
                .execution_options(include_deleted=True)
            )
        ).scalar_one()
    )


# ---- credential fields: Bluesky ------------------------------------------------------------------


async def test_bluesky_connect_with_fields(
    client: httpx.AsyncClient, tenant: Tenant, pds: FakeBluesky, db: AsyncSession
) -> None:
    response = await client.post(
        "/api/channels/bluesky/connect",
        json={
            "fields": {
                "service": pds.base_url,
                "identifier": "alice.test",
                "password": "app-pass-1234",
            }
        },
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["created"] is True and body["choices"] is None
    channel = body["channel"]
    assert channel["identifier"] == "bluesky"
    assert channel["internal_id"] == "did:plc:alice123"
    assert channel["name"] == "Alice"
    assert channel["profile"] == "alice.test"
    assert channel["picture"] == "https://cdn.example/alice.jpg"
    assert channel["disabled"] is False and channel["problem"] is None
    assert channel["posting_times"] == [{"time": 120}, {"time": 400}, {"time": 700}]
    assert "token" not in json.dumps(body).replace("token_expiration", "")
    login = pds.last("POST", "/xrpc/com.atproto.server.createSession")
    assert login.json == {"identifier": "alice.test", "password": "app-pass-1234"}

    row = await channel_row(db, channel["id"])
    creds = credentials_of(row)
    assert creds.access_token in pds.sessions
    assert creds.custom_instance_details == {
        "service": pds.base_url,
        "identifier": "alice.test",
        "password": "app-pass-1234",
    }
    raw = (
        await db.execute(
            text("SELECT custom_instance_details FROM integration WHERE id = :id"),
            {"id": row.id},
        )
    ).scalar_one()
    assert "app-pass-1234" not in raw and "alice.test" not in raw

    listed = await client.get("/api/channels", headers=tenant.headers)
    assert [c["id"] for c in listed.json()] == [channel["id"]]

    # Connecting the same account again updates the channel instead of adding one.
    again = await client.post(
        "/api/channels/bluesky/connect",
        json={"fields": {"identifier": "alice.test", "password": "app-pass-1234"}},
        headers=tenant.headers,
    )
    assert again.status_code == 201, again.text
    assert again.json()["created"] is False
    assert again.json()["channel"]["id"] == channel["id"]
    assert await count_channels(db, tenant.org_id) == 1


async def test_bluesky_connect_refusals(
    client: httpx.AsyncClient, tenant: Tenant, pds: FakeBluesky, db: AsyncSession
) -> None:
    async def connect(fields: dict[str, str]) -> httpx.Response:
        return await client.post(
            "/api/channels/bluesky/connect", json={"fields": fields}, headers=tenant.headers
        )

    wrong = await connect({"identifier": "alice.test", "password": "nope"})
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "connect_failed"
    assert "Invalid identifier or password" in wrong.json()["message"]

    missing = await connect({"identifier": "alice.test"})
    assert missing.status_code == 400
    assert missing.json()["field"] == "fields.password"

    unknown = await connect({"identifier": "a", "password": "b", "token": "c"})
    assert unknown.status_code == 400 and unknown.json()["field"] == "fields.token"

    not_fields = await client.post(
        "/api/channels/mastodon/connect", json={"fields": {}}, headers=tenant.headers
    )
    assert not_fields.status_code == 400 and not_fields.json()["field"] == "provider"

    nothing = await client.post(
        "/api/channels/nosuch/connect", json={"fields": {}}, headers=tenant.headers
    )
    assert nothing.status_code == 404 and nothing.json()["field"] == "provider"

    bad_body = await client.post(
        "/api/channels/bluesky/connect", json={"fields": {"a": 1}}, headers=tenant.headers
    )
    assert bad_body.status_code == 422
    assert await count_channels(db, tenant.org_id) == 0


async def test_user_given_service_is_guarded(
    client: httpx.AsyncClient,
    tenant: Tenant,
    pds: FakeBluesky,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tidings.config import get_settings

    monkeypatch.setenv("TIDINGS_ALLOW_PRIVATE_URLS", "false")
    get_settings.cache_clear()
    response = await client.post(
        "/api/channels/bluesky/connect",
        json={
            "fields": {
                "service": pds.base_url,
                "identifier": "alice.test",
                "password": "app-pass-1234",
            }
        },
        headers=tenant.headers,
    )
    assert response.status_code == 400
    assert "cannot be used" in response.json()["message"]
    assert pds.calls() == []


async def test_a_server_answering_nonsense_is_refused_like_bad_input(
    client: httpx.AsyncClient,
    tenant: Tenant,
    pds: FakeBluesky,
    mastodon: FakeMastodon,
    db: AsyncSession,
) -> None:
    # The "instance" a user names may be any web server: an answer of the wrong shape, or a
    # web page where the API should answer, is the address's fault, not a server error.
    mastodon.fail("POST", "/api/v1/apps", 200, {"name": "not a Mastodon server"})
    mastodon.fail("POST", "/api/v1/apps", 200, text="<html>Welcome!</html>")
    for _ in range(2):
        response = await client.get(
            "/api/channels/mastodon/connect",
            params={"instance_url": mastodon.base_url},
            headers=tenant.headers,
        )
        assert response.status_code == 400, response.text
        assert response.json()["field"] == "instance_url"
        assert response.json()["error"] == "connect_failed"
    pds.fail("POST", "/xrpc/com.atproto.server.createSession", 200, ["what", "is", "this"])
    response = await client.post(
        "/api/channels/bluesky/connect",
        json={"fields": {"identifier": "alice.test", "password": "app-pass-1234"}},
        headers=tenant.headers,
    )
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "fields"
    assert await count_channels(db, tenant.org_id) == 0


# ---- OAuth: Mastodon (any instance) -----------------------------------------------------------


async def test_mastodon_oauth_connect(
    client: httpx.AsyncClient, tenant: Tenant, mastodon: FakeMastodon, db: AsyncSession
) -> None:
    start = await client.get(
        "/api/channels/mastodon/connect",
        params={"instance_url": mastodon.base_url},
        headers=tenant.headers,
    )
    assert start.status_code == 200, start.text
    started = start.json()
    app = mastodon.last("POST", "/api/v1/apps")
    assert app.json["redirect_uris"] == "http://testserver/api/channels/mastodon/callback"
    state_row = (
        await db.execute(select(OAuthState).where(OAuthState.state == started["state"]))
    ).scalar_one()
    assert state_row.purpose == "channel" and state_row.provider == "mastodon"
    assert state_row.organization_id == tenant.org_id and state_row.user_id == tenant.user_id
    remaining = state_row.expires_at - datetime.now(UTC)
    assert timedelta(minutes=14) < remaining <= timedelta(minutes=15)
    verifier = state_row.code_verifier
    assert verifier is not None
    raw_verifier = (
        await db.execute(
            text("SELECT code_verifier FROM oauth_state WHERE id = :id"), {"id": state_row.id}
        )
    ).scalar_one()
    assert raw_verifier != verifier  # encrypted at rest
    query = parse_qs(urlsplit(started["url"]).query)
    assert query["code_challenge"] == [code_challenge(verifier)]
    assert query["state"] == [started["state"]]

    callback = await approve(started["url"])
    done = await client.get(
        "/api/channels/mastodon/callback",
        params={"code": callback["code"], "state": callback["state"]},
        headers=tenant.headers,
    )
    assert done.status_code == 200, done.text
    channel = done.json()["channel"]
    host = urlsplit(mastodon.base_url).netloc
    assert channel["internal_id"] == f"109@{host}"
    assert channel["profile"] == f"alice@{host}"
    assert channel["name"] == "Alice M"
    assert channel["preferences"]["max_characters"] == 500
    exchange = mastodon.last("POST", "/oauth/token")
    assert exchange.form["grant_type"] == "authorization_code"
    assert exchange.form["code_verifier"] == verifier
    row = await channel_row(db, channel["id"])
    assert row.token in mastodon.oauth.access
    first_refresh = row.refresh_token
    first_token = row.token
    assert first_refresh in mastodon.oauth.refresh
    # The state is spent.
    assert (
        await db.execute(select(OAuthState).where(OAuthState.state == started["state"]))
    ).scalar_one_or_none() is None

    # Reconnect: the instance sends no refresh token this time; the stored one is kept.
    mastodon.oauth.issue_refresh = False
    again = await oauth_connect(
        client, tenant.headers, "mastodon", {"instance_url": mastodon.base_url}
    )
    assert again["created"] is False and again["channel"]["id"] == channel["id"]
    row = await channel_row(db, channel["id"])
    assert row.refresh_token == first_refresh
    # ... while the new access token replaces the old one.
    assert row.token != first_token and row.token in mastodon.oauth.access
    assert await count_channels(db, tenant.org_id) == 1


async def test_callback_refuses_bad_states(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    mastodon: FakeMastodon,
    db: AsyncSession,
) -> None:
    async def start() -> dict[str, str]:
        response = await client.get(
            "/api/channels/mastodon/connect",
            params={"instance_url": mastodon.base_url},
            headers=tenant.headers,
        )
        assert response.status_code == 200
        return await approve(response.json()["url"])

    async def callback(params: dict[str, str], headers: dict[str, str]) -> httpx.Response:
        return await client.get(
            "/api/channels/mastodon/callback",
            params={"code": params["code"], "state": params["state"]},
            headers=headers,
        )

    # Unknown state.
    first = await start()
    wrong = await callback({"code": first["code"], "state": "forged"}, tenant.headers)
    assert wrong.status_code == 400 and wrong.json()["field"] == "state"
    # Another organization (or user) cannot finish someone else's connection.
    stolen = await callback(first, other_tenant.headers)
    assert stolen.status_code == 400 and stolen.json()["field"] == "state"
    # Another provider's callback with this state.
    cross = await client.get(
        "/api/channels/x/callback",
        params={"code": first["code"], "state": first["state"]},
        headers=tenant.headers,
    )
    assert cross.status_code == 400
    # The genuine callback works once; replaying it is refused.
    ok = await callback(first, tenant.headers)
    assert ok.status_code == 200, ok.text
    replay = await callback(first, tenant.headers)
    assert replay.status_code == 400 and replay.json()["field"] == "state"
    # An expired state is refused.
    second = await start()
    await db.execute(
        update(OAuthState)
        .where(OAuthState.state == second["state"])
        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    expired = await callback(second, tenant.headers)
    assert expired.status_code == 400 and "expired" in expired.json()["message"]
    # A code the platform refuses.
    third = await start()
    refused = await callback({"code": "bogus", "state": third["state"]}, tenant.headers)
    assert refused.status_code == 400 and refused.json()["field"] == "code"
    # Missing parameters and the platform's own refusal.
    assert (
        await client.get("/api/channels/mastodon/callback", headers=tenant.headers)
    ).status_code == 400
    denied = await client.get(
        "/api/channels/mastodon/callback",
        params={"error": "access_denied", "state": "s"},
        headers=tenant.headers,
    )
    assert denied.status_code == 400 and "access_denied" in denied.json()["message"]
    assert await count_channels(db, tenant.org_id) == 1
    assert await count_channels(db, other_tenant.org_id) == 0


async def test_connect_start_validation(
    client: httpx.AsyncClient, tenant: Tenant, mastodon: FakeMastodon
) -> None:
    unknown_input = await client.get(
        "/api/channels/mastodon/connect",
        params={"instance_url": mastodon.base_url, "color": "red"},
        headers=tenant.headers,
    )
    assert unknown_input.status_code == 400 and unknown_input.json()["field"] == "color"
    fields_provider = await client.get("/api/channels/bluesky/connect", headers=tenant.headers)
    assert fields_provider.status_code == 400
    open_redirect = await client.get(
        "/api/channels/mastodon/connect",
        params={"instance_url": mastodon.base_url, "return_to": "//evil.example/"},
        headers=tenant.headers,
    )
    assert open_redirect.status_code == 400 and open_redirect.json()["field"] == "return_to"
    unreachable = await client.get(
        "/api/channels/mastodon/connect",
        params={"instance_url": "http://127.0.0.1:9"},
        headers=tenant.headers,
    )
    assert unreachable.status_code == 400 and unreachable.json()["field"] == "instance_url"
    unauthenticated = await client.get(
        "/api/channels/mastodon/connect", params={"instance_url": mastodon.base_url}
    )
    assert unauthenticated.status_code == 401


async def test_callback_redirects_to_return_to(
    client: httpx.AsyncClient, tenant: Tenant, mastodon: FakeMastodon
) -> None:
    start = await client.get(
        "/api/channels/mastodon/connect",
        params={
            "instance_url": mastodon.base_url,
            "return_to": "/channels",
            "customer": "Acme",
        },
        headers=tenant.headers,
    )
    callback = await approve(start.json()["url"])
    done = await client.get(
        "/api/channels/mastodon/callback",
        params={"code": callback["code"], "state": callback["state"]},
        headers=tenant.headers,
    )
    assert done.status_code == 303
    location = done.headers["location"]
    assert location.startswith("/channels?channel=")
    channel_id = location.split("=", 1)[1]
    channel = (await client.get(f"/api/channels/{channel_id}", headers=tenant.headers)).json()
    assert channel["customer"]["name"] == "Acme"


async def test_post_callback_for_the_web_app(
    client: httpx.AsyncClient, tenant: Tenant, mastodon: FakeMastodon
) -> None:
    start = await client.get(
        "/api/channels/mastodon/connect",
        params={"instance_url": mastodon.base_url},
        headers=tenant.headers,
    )
    callback = await approve(start.json()["url"])
    done = await client.post(
        "/api/channels/mastodon/callback",
        json={"code": callback["code"], "state": callback["state"]},
        headers=tenant.headers,
    )
    assert done.status_code == 200, done.text
    assert done.json()["channel"]["identifier"] == "mastodon"
    empty = await client.post(
        "/api/channels/mastodon/callback", json={"code": ""}, headers=tenant.headers
    )
    assert empty.status_code == 422


# ---- OAuth: X ------------------------------------------------------------------------------------


async def test_x_oauth_connect(
    client: httpx.AsyncClient, tenant: Tenant, x_api: FakeX, db: AsyncSession
) -> None:
    result = await oauth_connect(client, tenant.headers, "x")
    channel = result["channel"]
    assert channel["identifier"] == "x" and channel["internal_id"] == "1500"
    assert channel["token_expiration"] is not None
    row = await channel_row(db, channel["id"])
    assert row.token in x_api.oauth.access and row.refresh_token in x_api.oauth.refresh
    token_call = x_api.last("POST", "/2/oauth2/token")
    assert token_call.form["grant_type"] == "authorization_code"
    assert token_call.form["redirect_uri"] == "http://testserver/api/channels/x/callback"


# ---- in-between steps: LinkedIn page -------------------------------------------------------------


async def test_linkedin_page_pick(
    client: httpx.AsyncClient, tenant: Tenant, linkedin: FakeLinkedIn, db: AsyncSession
) -> None:
    person = await oauth_connect(client, tenant.headers, "linkedin")
    assert person["channel"]["in_between_steps"] is False

    pending = await oauth_connect(client, tenant.headers, "linkedin-page")
    assert pending["created"] is True
    channel = pending["channel"]
    assert channel["in_between_steps"] is True and channel["problem"] is not None
    assert channel["id"] != person["channel"]["id"]  # the member's channel is untouched
    assert {c["id"]: c["name"] for c in pending["choices"]} == {
        "2414183": "Acme Corp",
        "555": "Side Project",
    }
    listed = await client.get(f"/api/channels/{channel['id']}/choices", headers=tenant.headers)
    assert [c["id"] for c in listed.json()] == ["2414183", "555"]
    tool = await client.post(
        f"/api/channels/{channel['id']}/tools/list_pages", json={}, headers=tenant.headers
    )
    assert tool.status_code == 200, tool.text
    assert [p["id"] for p in tool.json()["result"]] == ["2414183", "555"]

    bad = await client.post(
        f"/api/channels/{channel['id']}/choose", json={"choice_id": "999"}, headers=tenant.headers
    )
    assert bad.status_code == 400 and bad.json()["field"] == "choice_id"
    chosen = await client.post(
        f"/api/channels/{channel['id']}/choose",
        json={"choice_id": "2414183"},
        headers=tenant.headers,
    )
    assert chosen.status_code == 200, chosen.text
    page = chosen.json()["channel"]
    assert page["id"] == channel["id"]
    assert page["internal_id"] == "2414183" and page["name"] == "Acme Corp"
    assert page["in_between_steps"] is False and page["problem"] is None
    again = await client.post(
        f"/api/channels/{channel['id']}/choose",
        json={"choice_id": "555"},
        headers=tenant.headers,
    )
    assert again.status_code == 409

    # Connecting the page again goes through a new pick and lands on the same channel.
    second = await oauth_connect(client, tenant.headers, "linkedin-page")
    merged = await client.post(
        f"/api/channels/{second['channel']['id']}/choose",
        json={"choice_id": "2414183"},
        headers=tenant.headers,
    )
    assert merged.status_code == 200, merged.text
    assert merged.json()["channel"]["id"] == channel["id"]
    assert merged.json()["created"] is False
    live = (await client.get("/api/channels", headers=tenant.headers)).json()
    assert sorted(c["internal_id"] for c in live) == ["2414183", person["channel"]["internal_id"]]


# ---- upsert by internal id: soft-deleted channels come back --------------------------------------


async def test_reconnect_revives_a_deleted_channel(
    client: httpx.AsyncClient, tenant: Tenant, pds: FakeBluesky, db: AsyncSession
) -> None:
    fields = {"identifier": "alice.test", "password": "app-pass-1234"}
    first = await client.post(
        "/api/channels/bluesky/connect", json={"fields": fields}, headers=tenant.headers
    )
    channel_id = first.json()["channel"]["id"]
    renamed = await client.patch(
        f"/api/channels/{channel_id}",
        json={"posting_times": [{"time": 60}]},
        headers=tenant.headers,
    )
    assert renamed.status_code == 200
    deleted = await client.delete(f"/api/channels/{channel_id}", headers=tenant.headers)
    assert deleted.status_code == 204
    assert (await client.get("/api/channels", headers=tenant.headers)).json() == []
    assert (
        await client.get(f"/api/channels/{channel_id}", headers=tenant.headers)
    ).status_code == 404

    back = await client.post(
        "/api/channels/bluesky/connect", json={"fields": fields}, headers=tenant.headers
    )
    assert back.status_code == 201
    assert back.json()["created"] is True
    assert back.json()["channel"]["id"] == channel_id
    assert back.json()["channel"]["posting_times"] == [{"time": 60}]
    row = await channel_row(db, channel_id)
    assert row.deleted_at is None
    assert await count_channels(db, tenant.org_id) == 1


# ---- in-between steps: Discord (the server is the account; the pick is its channel) --------------


async def test_discord_pick_channel(
    client: httpx.AsyncClient,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    db: AsyncSession,
) -> None:
    async with FakeDiscord() as discord:
        point(
            monkeypatch, "discord", discord, client_id="discord-app", client_secret="discord-secret"
        )
        monkeypatch.setenv("TIDINGS_DISCORD_API_URL", discord.url(fake_discord.API))
        monkeypatch.setenv("TIDINGS_DISCORD_BOT_TOKEN", fake_discord.BOT_TOKEN)
        pending = await oauth_connect(client, tenant.headers, "discord")
        channel = pending["channel"]
        assert channel["in_between_steps"] is True
        assert {c["name"] for c in pending["choices"]} == {"#general", "#announcements"}
        chosen = await client.post(
            f"/api/channels/{channel['id']}/choose",
            json={"choice_id": "41771983423143937"},
            headers=tenant.headers,
        )
        assert chosen.status_code == 200, chosen.text
        done = chosen.json()["channel"]
        assert done["id"] == channel["id"]
        assert done["internal_id"] == fake_discord.GUILD_ID
        assert done["in_between_steps"] is False
        assert done["preferences"]["channel_id"] == "41771983423143937"
        providers = (await client.get("/api/providers", headers=tenant.headers)).json()
        assert {p["identifier"]: p["configured"] for p in providers}["discord"] is True
    monkeypatch.delenv("TIDINGS_DISCORD_CLIENT_ID")
    providers = (await client.get("/api/providers", headers=tenant.headers)).json()
    configured = {p["identifier"]: p["configured"] for p in providers}
    assert configured["discord"] is False and configured["bluesky"] is True
    assert configured["mastodon"] is True
    unconfigured = await client.get("/api/channels/discord/connect", headers=tenant.headers)
    assert unconfigured.status_code == 400
    assert "TIDINGS_DISCORD_CLIENT_ID" in unconfigured.json()["message"]
