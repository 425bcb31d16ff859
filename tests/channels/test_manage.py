"""Managing channels through the app API: list, rename, picture, disable, posting times,
customers, preferences, delete, rules, providers, tools, and tenant isolation."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.channels.factories import make_channel
from tests.channels.helpers import oauth_connect
from tests.channels.providers.servers.linkedin import FakeLinkedIn
from tests.conftest import Tenant, asgi_client, build_app, make_tenant
from tidings.accounts.sessions import create_session
from tidings.channels.models import Integration
from tidings.core.enums import Role
from tidings.db import Database
from tidings.orgs.models import Customer, UserOrganization


@pytest.fixture
async def channel(db: AsyncSession, tenant: Tenant) -> Integration:
    return await make_channel(db, tenant.org_id, provider="bluesky", name="Alice")


async def patch(
    client: httpx.AsyncClient, tenant: Tenant, channel_id: str, body: dict[str, Any]
) -> httpx.Response:
    return await client.patch(f"/api/channels/{channel_id}", json=body, headers=tenant.headers)


async def test_rename_picture_disable(
    client: httpx.AsyncClient, tenant: Tenant, channel: Integration
) -> None:
    renamed = await patch(client, tenant, channel.id, {"name": "  Alice   at work "})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Alice at work"
    assert (await patch(client, tenant, channel.id, {"name": "   "})).status_code == 400
    null_name = await patch(client, tenant, channel.id, {"name": None})
    assert null_name.status_code == 400 and null_name.json()["field"] == "name"
    too_long = await patch(client, tenant, channel.id, {"name": "x" * 201})
    assert too_long.status_code == 422 and too_long.json()["field"] == "name"

    pictured = await patch(client, tenant, channel.id, {"picture": "https://cdn.example/a.png"})
    assert pictured.json()["picture"] == "https://cdn.example/a.png"
    for bad in ("javascript:alert(1)", "//evil.example/a.png", "ftp://x/a.png"):
        refused = await patch(client, tenant, channel.id, {"picture": bad})
        assert refused.status_code == 422 and refused.json()["field"] == "picture"
    cleared = await patch(client, tenant, channel.id, {"picture": None})
    assert cleared.json()["picture"] is None

    disabled = await patch(client, tenant, channel.id, {"disabled": True})
    assert disabled.json()["disabled"] is True
    assert "disabled" in disabled.json()["problem"]
    enabled = await patch(client, tenant, channel.id, {"disabled": False})
    assert enabled.json()["disabled"] is False and enabled.json()["problem"] is None
    unknown = await patch(client, tenant, channel.id, {"colour": "red"})
    assert unknown.status_code == 422 and unknown.json()["field"] == "colour"
    not_json = await client.patch(
        f"/api/channels/{channel.id}", content=b"{", headers=tenant.headers
    )
    assert not_json.status_code == 422
    # Name and everything else untouched by the unrelated changes.
    final = (await client.get(f"/api/channels/{channel.id}", headers=tenant.headers)).json()
    assert final["name"] == "Alice at work"


async def test_posting_times(
    client: httpx.AsyncClient, tenant: Tenant, channel: Integration
) -> None:
    ok = await patch(
        client,
        tenant,
        channel.id,
        {"posting_times": [{"time": 700}, {"time": 0}, {"time": 1439}, {"time": 700}]},
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["posting_times"] == [{"time": 0}, {"time": 700}, {"time": 1439}]
    for bad, field in (
        ([{"time": 1440}], "posting_times.0.time"),
        ([{"time": -1}], "posting_times.0.time"),
        ([{"time": 60}, {"time": "noon"}], "posting_times.1.time"),
        ([{"time": 60, "day": 2}], "posting_times.0.day"),
        ([60], "posting_times.0"),
        ("60", "posting_times"),
    ):
        response = await patch(client, tenant, channel.id, {"posting_times": bad})
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["field"] == field, (bad, response.json())
    null = await patch(client, tenant, channel.id, {"posting_times": None})
    assert null.status_code == 400 and null.json()["field"] == "posting_times"
    empty = await patch(client, tenant, channel.id, {"posting_times": []})
    assert empty.json()["posting_times"] == []


async def test_customers_and_preferences(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    channel: Integration,
    db: AsyncSession,
) -> None:
    second = await make_channel(db, tenant.org_id, provider="mastodon", name="Bob")
    assigned = await patch(client, tenant, channel.id, {"customer": "  Acme  "})
    assert assigned.status_code == 200, assigned.text
    acme = assigned.json()["customer"]
    assert acme["name"] == "Acme"
    same = await patch(client, tenant, second.id, {"customer": "Acme"})
    assert same.json()["customer"] == acme  # found by name, not created twice
    customers = (await client.get("/api/customers", headers=tenant.headers)).json()
    assert customers == [acme]

    listed = await client.get("/api/channels", headers=tenant.headers)
    assert [c["customer"] for c in listed.json()] == [acme, acme]
    only = await client.get(
        "/api/channels", params={"customer": acme["id"]}, headers=tenant.headers
    )
    assert len(only.json()) == 2

    unassigned = await patch(client, tenant, second.id, {"customer": None})
    assert unassigned.json()["customer"] is None
    by_id = await patch(client, tenant, second.id, {"customer_id": acme["id"]})
    assert by_id.json()["customer"] == acme
    both = await patch(client, tenant, second.id, {"customer": "X", "customer_id": acme["id"]})
    assert both.status_code == 400
    empty = await patch(client, tenant, second.id, {"customer": " "})
    assert empty.status_code == 400 and empty.json()["field"] == "customer"

    # Another organization's customer is not assignable, and its Acme is a different row.
    theirs = await client.post(
        "/api/customers", json={"name": "Acme"}, headers=other_tenant.headers
    )
    assert theirs.status_code == 201 and theirs.json()["id"] != acme["id"]
    foreign = await patch(client, tenant, second.id, {"customer_id": theirs.json()["id"]})
    assert foreign.status_code == 404
    assert (await client.get("/api/customers", headers=other_tenant.headers)).json() == [
        theirs.json()
    ]

    prefs = await patch(client, tenant, channel.id, {"preferences": {"thread_finisher": True}})
    assert prefs.status_code == 200
    prefs = await patch(client, tenant, channel.id, {"preferences": {"lang": "en"}})
    assert prefs.json()["preferences"] == {"thread_finisher": True, "lang": "en"}
    nested = await patch(client, tenant, channel.id, {"preferences": {"a": {"b": 1}}})
    assert nested.status_code == 422
    count = len((await db.execute(select(Customer).where(Customer.org_id == tenant.org_id))).all())
    assert count == 1


async def test_rules_and_providers(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    providers = (await client.get("/api/providers", headers=tenant.headers)).json()
    by_id = {p["identifier"]: p for p in providers}
    assert {"bluesky", "mastodon", "x"} <= set(by_id)
    bluesky = by_id["bluesky"]
    assert bluesky["connect_kind"] == "fields"
    assert [f["name"] for f in bluesky["fields"]] == ["service", "identifier", "password"]
    assert bluesky["fields"][2]["secret"] is True
    assert bluesky["max_length"] == 300
    assert bluesky["media_rules"]["max_images"] == 4
    assert bluesky["settings_schema"]["type"] == "object"
    mastodon = by_id["mastodon"]
    assert mastodon["connect_kind"] == "oauth"
    assert [f["name"] for f in mastodon["fields"]] == ["instance_url"]
    if "linkedin-page" in by_id:
        assert "list_pages" in by_id["linkedin-page"]["tools"]

    big = await make_channel(
        db,
        tenant.org_id,
        provider="mastodon",
        additional_settings=[{"key": "max_characters", "value": 1000}],
    )
    rules = await client.get(f"/api/channels/{big.id}/rules", headers=tenant.headers)
    assert rules.status_code == 200, rules.text
    assert rules.json()["max_length"] == 1000
    assert rules.json()["identifier"] == "mastodon"
    assert (await client.get("/api/providers")).status_code == 401


async def test_configured_says_what_each_provider_still_needs(
    client: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (
        "TIDINGS_DISCORD_CLIENT_ID",
        "TIDINGS_DISCORD_CLIENT_SECRET",
        "TIDINGS_DISCORD_BOT_TOKEN",
        "TIDINGS_LINKEDIN_CLIENT_ID",
        "TIDINGS_LINKEDIN_CLIENT_SECRET",
        "TIDINGS_X_CLIENT_ID",
        "TIDINGS_X_CLIENT_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)

    async def providers() -> dict[str, dict[str, Any]]:
        answer = await client.get("/api/providers", headers=tenant.headers)
        assert answer.status_code == 200, answer.text
        return {p["identifier"]: p for p in answer.json()}

    by_id = await providers()
    # Credential fields and per-instance app registration need nothing from the server.
    for ready in ("bluesky", "telegram", "mastodon"):
        assert by_id[ready]["configured"] is True
        assert by_id[ready]["missing_config"] == []
    assert by_id["x"]["missing_config"] == ["TIDINGS_X_CLIENT_ID"]

    monkeypatch.setenv("TIDINGS_DISCORD_CLIENT_ID", "app")
    monkeypatch.setenv("TIDINGS_DISCORD_CLIENT_SECRET", "secret")
    monkeypatch.setenv("TIDINGS_LINKEDIN_CLIENT_ID", "app")
    monkeypatch.setenv("TIDINGS_X_CLIENT_ID", "app")
    by_id = await providers()
    # Discord publishes through the bot: its OAuth client alone cannot post.
    assert by_id["discord"]["configured"] is False
    assert by_id["discord"]["missing_config"] == ["TIDINGS_DISCORD_BOT_TOKEN"]
    assert by_id["linkedin"]["configured"] is False
    assert by_id["linkedin"]["missing_config"] == ["TIDINGS_LINKEDIN_CLIENT_SECRET"]
    # X is a public PKCE client: the id is enough.
    assert by_id["x"]["configured"] is True

    monkeypatch.setenv("TIDINGS_DISCORD_BOT_TOKEN", "bot")
    monkeypatch.setenv("TIDINGS_LINKEDIN_CLIENT_SECRET", "secret")
    by_id = await providers()
    assert by_id["discord"]["configured"] is True
    assert by_id["linkedin"]["configured"] is True
    # linkedin-page uses linkedin's client.
    assert by_id["linkedin-page"]["configured"] is True


async def user_of(test_database: Database, tenant: Tenant) -> dict[str, str]:
    """Headers of a member with the USER role in ``tenant``'s organization."""
    member = await make_tenant(test_database, org_name="Elsewhere")
    async with test_database.session() as session:
        session.add(
            UserOrganization(user_id=member.user_id, organization_id=tenant.org_id, role=Role.USER)
        )
        token, _ = await create_session(session, member.user_id, organization_id=tenant.org_id)
    return {"Authorization": f"Bearer {token}", "X-Tidings-Org": tenant.org_id}


async def test_delete_needs_an_admin(
    client: httpx.AsyncClient, tenant: Tenant, channel: Integration, test_database: Database
) -> None:
    headers = await user_of(test_database, tenant)
    assert (await client.get(f"/api/channels/{channel.id}", headers=headers)).status_code == 200
    refused = await client.delete(f"/api/channels/{channel.id}", headers=headers)
    assert refused.status_code == 403
    done = await client.delete(f"/api/channels/{channel.id}", headers=tenant.headers)
    assert done.status_code == 204
    again = await client.delete(f"/api/channels/{channel.id}", headers=tenant.headers)
    assert again.status_code == 404


async def test_only_admins_connect_and_manage_channels(
    client: httpx.AsyncClient,
    tenant: Tenant,
    channel: Integration,
    test_database: Database,
    db: AsyncSession,
) -> None:
    headers = await user_of(test_database, tenant)
    pending = await make_channel(db, tenant.org_id, provider="linkedin-page", in_between_steps=True)
    # A USER writes posts: they see the channels, their rules, tools and customers...
    for path in (
        "/api/providers",
        "/api/channels",
        f"/api/channels/{channel.id}",
        f"/api/channels/{channel.id}/rules",
        "/api/customers",
    ):
        answer = await client.get(path, headers=headers)
        assert answer.status_code == 200, (path, answer.text)
    # ... but connecting, renaming, picking a page and creating customers is an admin's job.
    for method, path, body in (
        ("GET", "/api/channels/mastodon/connect", None),
        ("POST", "/api/channels/bluesky/connect", {"fields": {"identifier": "a", "password": "b"}}),
        ("GET", "/api/channels/mastodon/callback?code=c&state=s", None),
        ("POST", "/api/channels/mastodon/callback", {"code": "c", "state": "s"}),
        ("PATCH", f"/api/channels/{channel.id}", {"name": "Mine now", "disabled": True}),
        ("GET", f"/api/channels/{pending.id}/choices", None),
        ("POST", f"/api/channels/{pending.id}/choose", {"choice_id": "1"}),
        ("POST", "/api/customers", {"name": "Acme"}),
    ):
        answer = await client.request(method, path, json=body, headers=headers)
        assert answer.status_code == 403, (method, path, answer.text)
    row = await db.get(Integration, channel.id, populate_existing=True)
    assert row is not None and row.name == "Alice" and row.disabled is False
    assert (await db.execute(select(Customer).where(Customer.org_id == tenant.org_id))).all() == []


async def test_bad_input_names_the_field_and_changes_nothing(
    client: httpx.AsyncClient, tenant: Tenant, channel: Integration, db: AsyncSession
) -> None:
    nul = "a\x00b"
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("PATCH", f"/api/channels/{channel.id}", {"json": {"name": nul}}, "name"),
        (
            "PATCH",
            f"/api/channels/{channel.id}",
            {"json": {"picture": "https://a\x00b"}},
            "picture",
        ),
        (
            "PATCH",
            f"/api/channels/{channel.id}",
            {"json": {"picture": "/\t/evil.example"}},
            "picture",
        ),
        ("PATCH", f"/api/channels/{channel.id}", {"json": {"customer": nul}}, "customer"),
        ("PATCH", f"/api/channels/{channel.id}", {"json": {"customer_id": nul}}, "customer_id"),
        (
            "PATCH",
            f"/api/channels/{channel.id}",
            {"json": {"preferences": {"k": nul}}},
            "preferences",
        ),
        (
            "PATCH",
            f"/api/channels/{channel.id}",
            {"json": {"preferences": {nul: 1}}},
            "preferences",
        ),
        ("POST", "/api/customers", {"json": {"name": nul}}, "name"),
        ("GET", "/api/channels", {"params": {"customer": nul}}, "customer"),
        ("GET", f"/api/channels/{channel.id}%00", {}, "channel_id"),
        ("GET", f"/api/channels/{'x' * 101}", {}, "channel_id"),
        ("POST", f"/api/channels/{channel.id}/tools/a%00b", {"json": {}}, "name"),
        ("GET", "/api/channels/mast%00don/connect", {}, "provider"),
        ("GET", "/api/channels/x/callback", {"params": {"code": nul, "state": "s"}}, "code"),
        ("GET", "/api/channels/x/callback", {"params": {"code": "c", "state": nul}}, "state"),
        ("POST", "/api/channels/x/callback", {"json": {"code": "c", "state": nul}}, "state"),
        ("POST", f"/api/channels/{channel.id}/choose", {"json": {"choice_id": nul}}, "choice_id"),
        (
            "POST",
            "/api/channels/bluesky/connect",
            {"json": {"fields": {"identifier": nul, "password": "p"}}},
            "fields.identifier",
        ),
        (
            "POST",
            "/api/channels/telegram/connect",
            {"json": {"fields": {"bot_token": "1:a\nb", "chat_id": "@c"}}},
            "fields.bot_token",
        ),
        (
            "POST",
            "/api/channels/bluesky/connect",
            {"json": {"fields": {"identifier": "a", "password": "p"}, "customer": nul}},
            "customer",
        ),
        ("GET", "/api/channels/x/connect", {"params": {"customer": nul}}, "customer"),
        (
            "GET",
            "/api/channels/x/connect",
            {"params": {"return_to": "/\t/evil.example"}},
            "return_to",
        ),
        (
            "GET",
            "/api/channels/mastodon/connect",
            {"params": {"instance_url": "https://a\x01b.example"}},
            "instance_url",
        ),
    ]
    for raw in ('{"preferences": {"k": NaN}}', '{"preferences": {"k": 1e400}}'):
        json_headers = {"Content-Type": "application/json"}
        cases.append(
            (
                "PATCH",
                f"/api/channels/{channel.id}",
                {"content": raw, "headers": json_headers},
                "preferences",
            )
        )
    for method, path, kwargs, field in cases:
        headers = {**tenant.headers, **kwargs.pop("headers", {})}
        answer = await client.request(method, path, headers=headers, **kwargs)
        assert answer.status_code in (400, 422), (method, path, kwargs, answer.text)
        assert answer.json().get("field") == field, (method, path, kwargs, answer.text)
    row = await db.get(Integration, channel.id, populate_existing=True)
    assert row is not None and row.name == "Alice" and row.customer_id is None
    assert (await db.execute(select(Customer).where(Customer.org_id == tenant.org_id))).all() == []


async def test_other_organizations_channel_is_invisible(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, channel: Integration
) -> None:
    headers = other_tenant.headers
    cid = channel.id
    calls = [
        ("GET", f"/api/channels/{cid}", None),
        ("PATCH", f"/api/channels/{cid}", {"name": "mine now"}),
        ("DELETE", f"/api/channels/{cid}", None),
        ("GET", f"/api/channels/{cid}/rules", None),
        ("GET", f"/api/channels/{cid}/choices", None),
        ("POST", f"/api/channels/{cid}/choose", {"choice_id": "1"}),
        ("POST", f"/api/channels/{cid}/tools/anything", {}),
    ]
    for method, url, body in calls:
        response = await client.request(method, url, json=body, headers=headers)
        assert response.status_code == 404, (method, url, response.text)
    assert (await client.get("/api/channels", headers=headers)).json() == []
    # Untouched for its owner.
    mine = await client.get(f"/api/channels/{cid}", headers=tenant.headers)
    assert mine.status_code == 200 and mine.json()["name"] == "Alice"


async def test_unknown_tool(
    client: httpx.AsyncClient, tenant: Tenant, channel: Integration
) -> None:
    response = await client.post(
        f"/api/channels/{channel.id}/tools/nope", json={}, headers=tenant.headers
    )
    assert response.status_code == 400 and response.json()["field"] == "name"


# ---- tools refresh an expired token once (real commits: the refresh has its own transaction) -----


async def test_tool_refreshes_once_then_reports_disconnection(
    fresh_database: Database, linkedin: FakeLinkedIn, allow_private: None
) -> None:
    tenant = await make_tenant(fresh_database)
    async with asgi_client(build_app(fresh_database)) as client:
        pending = await oauth_connect(client, tenant.headers, "linkedin-page")
        channel_id = pending["channel"]["id"]
        url = f"/api/channels/{channel_id}/tools/list_pages"

        linkedin.oauth.expire_all()
        ok = await client.post(url, json={}, headers=tenant.headers)
        assert ok.status_code == 200, ok.text
        assert len(linkedin.calls("POST", "/oauth/v2/accessToken")) == 2  # exchange + refresh
        async with fresh_database.session() as session:
            row = await session.get(Integration, channel_id)
            assert row is not None and row.token in linkedin.oauth.access

        linkedin.oauth.expire_all()
        linkedin.oauth.revoke_all()
        gone = await client.post(url, json={}, headers=tenant.headers)
        assert gone.status_code == 409, gone.text
        async with fresh_database.session() as session:
            row = await session.get(Integration, channel_id)
            assert row is not None and row.refresh_needed is True
        again = await client.post(url, json={}, headers=tenant.headers)
        assert again.status_code == 409
