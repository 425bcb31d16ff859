"""The web app over HTTP (no browser): CSRF, sign-in redirects, pages per organization."""

from __future__ import annotations

import re
from typing import Any

import httpx
from markupsafe import escape
from sqlalchemy.ext.asyncio import AsyncSession

from tests.channels.factories import make_channel
from tests.conftest import Tenant
from tests.web.conftest import add_user_member
from tidings.channels.models import Integration
from tidings.orgs.models import Customer


def _csrf(html: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert match, "the page carries no CSRF token"
    return match.group(1)


async def _sign_in_cookie(client: httpx.AsyncClient, tenant: Tenant) -> None:
    client.cookies.set("tidings_session", tenant.token)
    client.cookies.set("tidings_org", tenant.org_id)


async def test_signed_out_pages_redirect_to_sign_in(client: httpx.AsyncClient) -> None:
    for path in ("/channels", "/settings/team", "/notifications", "/settings/profile"):
        response = await client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == f"/login?next={path}"
    assert (await client.get("/")).headers["location"] == "/login"
    login = await client.get("/login?next=/channels")
    assert login.status_code == 200
    assert 'data-success="redirect:/channels"' in login.text
    # An outside "next" never becomes a redirect target.
    evil = await client.get("/login?next=//evil.example/x")
    assert 'data-success="redirect:/"' in evil.text
    assert "no-store" in login.headers["cache-control"]


async def test_csrf_cookie_and_token_guard_cookie_sessions(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    page = await client.get("/login")
    cookie = next(c for c in page.headers.get_list("set-cookie") if c.startswith("tidings_csrf="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    token = _csrf(page.text)
    assert client.cookies["tidings_csrf"] == token
    await _sign_in_cookie(client, tenant)

    # The cookie alone is not enough for a state change ...
    refused = await client.post("/api/notifications/mark-read")
    assert refused.status_code == 403
    assert refused.json() == {
        "error": "csrf_failed",
        "message": "missing or wrong CSRF token: reload the page and try again",
        "field": "csrf_token",
    }
    wrong = await client.patch("/api/me", json={"name": "Eve"}, headers={"X-CSRF-Token": "x" * 43})
    assert wrong.status_code == 403
    # ... the page's token in the header is.
    ok = await client.patch("/api/me", json={"name": "Ann"}, headers={"X-CSRF-Token": token})
    assert ok.status_code == 200 and ok.json()["name"] == "Ann"
    # Reads never need it; Bearer calls neither (not CSRF-prone).
    assert (await client.get("/api/me")).status_code == 200
    bearer = await client.post(
        "/api/notifications/mark-read", headers={"Authorization": f"Bearer {tenant.token}"}
    )
    assert bearer.status_code == 200

    # Plain HTML forms carry it as a field.
    no_field = await client.post("/logout", data={"x": "1"})
    assert no_field.status_code == 403
    out = await client.post("/logout", data={"csrf_token": token})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert (await client.get("/api/me")).status_code == 401


async def test_json_only_sign_in_rejects_a_cross_site_form(client: httpx.AsyncClient) -> None:
    # Sign-in is exempt from the token; it must then refuse what a cross-site form can send.
    response = await client.post(
        "/api/auth/login",
        content=b'{"email": "a@example.com", "password": "whatever1"}',
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code == 422


async def test_pages_render_for_the_callers_organization_only(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, db: AsyncSession
) -> None:
    customer = Customer(org_id=other_tenant.org_id, name="Secret Client")
    db.add(customer)
    await db.flush()
    db.add(
        Integration(
            organization_id=other_tenant.org_id,
            internal_id="other-1",
            name="Other Org Channel",
            provider_identifier="bluesky",
            type="social",
            token="t",
            customer_id=customer.id,
        )
    )
    db.add(
        Integration(
            organization_id=tenant.org_id,
            internal_id="mine-1",
            name="My Channel",
            provider_identifier="bluesky",
            type="social",
            token="t",
            refresh_needed=True,
        )
    )
    await db.flush()
    await _sign_in_cookie(client, tenant)
    page = await client.get("/channels")
    assert page.status_code == 200
    assert "My Channel" in page.text and "Needs reconnect" in page.text
    assert "Other Org Channel" not in page.text and "Secret Client" not in page.text
    for path in (
        "/settings/profile",
        "/settings/organization",
        "/settings/team",
        "/settings/api-key",
        "/notifications",
        "/settings/webhooks",
        "/settings/connectors",
        "/settings/autopost",
        "/settings/signatures",
        "/settings/sets",
        "/media",
        "/calendar",
        "/calendar?view=month",
        "/calendar?view=day&date=2024-03-31",
        "/calendar?view=list&date=not-a-date",
        "/compose",
    ):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert other_tenant.email not in response.text
        assert "Other Org Channel" not in response.text and "Secret Client" not in response.text
    # Naming the other organization in the cookie does not reach into it.
    client.cookies.set("tidings_org", other_tenant.org_id)
    bounced = await client.get("/channels")
    assert bounced.status_code == 303 and bounced.headers["location"] == "/channels"
    assert 'tidings_org=""' in bounced.headers["set-cookie"]


async def test_invite_and_reset_pages_explain_bad_links(client: httpx.AsyncClient) -> None:
    bad = await client.get("/invite?token=not-a-token")
    assert bad.status_code == 400 and "cannot be used" in bad.text
    reset = await client.get("/reset-password?token=abc")
    assert reset.status_code == 200 and 'name="token" value="abc"' in reset.text
    assert (await client.get("/forgot-password")).status_code == 200
    signup = await client.get("/signup")
    assert signup.status_code == 200 and 'data-api="/api/auth/register"' in signup.text


async def test_failed_post_shows_the_platform_message_and_the_badge_counts(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from tidings.accounts.models import User
    from tidings.core.enums import State
    from tidings.core.tenancy import OrgId
    from tidings.notifications.service import notify
    from tidings.posts import service as posts_service
    from tidings.posts.models import Post, PostAttempt
    from tidings.posts.schemas import CreatePostsRequest

    channel = await make_channel(db, tenant.org_id, name="Masto Max", provider="mastodon")
    when = datetime.now(UTC) + timedelta(hours=1)
    created = await posts_service.create_posts(
        db,
        OrgId(tenant.org_id),
        CreatePostsRequest.model_validate(
            {
                "type": "draft",
                "date": when.isoformat(),
                "posts": [{"integration": {"id": channel.id}, "value": [{"content": "Hi <b>"}]}],
            }
        ),
    )
    post_id = created.posts[0].post_id
    message = "Validation failed: Text character limit of 500 exceeded"
    await db.execute(
        update(Post).where(Post.id == post_id).values(state=State.ERROR, error=message)
    )
    db.add(
        PostAttempt(
            post_id=post_id,
            organization_id=tenant.org_id,
            integration_id=channel.id,
            attempt=1,
            finished_at=datetime.now(UTC),
            outcome="error",
            status_code=422,
            response_excerpt='{"error": "Text character limit of 500 exceeded"}',
        )
    )
    await notify(db, tenant.org_id, "A post failed on Masto Max", link=f"/posts/{post_id}")
    # One transaction has one clock: read "before" the notification explicitly.
    await db.execute(
        update(User)
        .where(User.id == tenant.user_id)
        .values(last_read_notifications=datetime.now(UTC) - timedelta(days=1))
    )
    await db.flush()
    await _sign_in_cookie(client, tenant)

    calendar = await client.get(f"/calendar?view=week&date={when.date().isoformat()}")
    assert calendar.status_code == 200
    assert f'title="{message}"' in calendar.text and "state-error" in calendar.text
    # Post content is escaped, never markup.
    assert "Hi &lt;b&gt;" in calendar.text and "Hi <b>" not in calendar.text
    assert 'aria-label="Notifications, 1 unread"' in calendar.text
    assert '<span class="badge" data-unread>1</span>' in calendar.text

    page = await client.get(f"/posts/{post_id}")
    assert page.status_code == 200
    assert "Mastodon said:</strong> " + message in page.text
    # The attempts (through the posts service), with the platform's answer escaped.
    assert "1 publish attempt</summary>" in page.text
    assert "<td>422</td>" in page.text
    assert "{&#34;error&#34;: &#34;Text character limit of 500 exceeded&#34;}" in page.text

    notes = await client.get("/notifications")
    assert "A post failed on Masto Max" in notes.text and f'href="/posts/{post_id}"' in notes.text
    token = _csrf(notes.text)
    assert (
        await client.post("/api/notifications/mark-read", headers={"X-CSRF-Token": token})
    ).status_code == 200
    again = await client.get("/calendar")
    assert 'aria-label="Notifications"' in again.text and "data-unread" not in again.text


async def test_sign_in_page_offers_the_configured_oauth_providers(
    test_database: Any, monkeypatch: Any
) -> None:
    from tests.conftest import asgi_client, build_app
    from tidings.config import get_settings

    monkeypatch.setenv("TIDINGS_GITHUB_CLIENT_ID", "gh-client")
    monkeypatch.setenv("TIDINGS_GITHUB_CLIENT_SECRET", "gh-secret")
    try:
        async with asgi_client(build_app(test_database)) as client:
            page = await client.get("/login?next=/calendar")
        assert 'href="/api/auth/oauth/github/start?next=/calendar"' in page.text
        assert "Continue with GitHub" in page.text
    finally:
        monkeypatch.delenv("TIDINGS_GITHUB_CLIENT_ID")
        get_settings.cache_clear()


def test_only_web_and_local_links_are_rendered() -> None:
    from tidings.web.context import safe_href

    assert safe_href("https://social.example/@a/1") == "https://social.example/@a/1"
    assert safe_href("/posts/abc") == "/posts/abc"
    for hostile in ("javascript:alert(1)", " JavaScript:x", "data:text/html,x", "//evil", "/\\x"):
        assert safe_href(hostile) == "", hostile
    assert safe_href(None) == ""


async def test_a_failed_oauth_return_lands_on_a_page(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    html = {"Accept": "text/html,application/xhtml+xml"}
    # Signed out on the way back: sign in, then come back to finish.
    signed_out = await client.get("/api/channels/mastodon/callback?code=c&state=s", headers=html)
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == (
        "/login?next=/api/channels/mastodon/callback%3Fcode%3Dc%26state%3Ds"
    )
    await _sign_in_cookie(client, tenant)
    refused = await client.get(
        "/api/channels/mastodon/callback?error=access_denied&error_description=User+said+no",
        headers=html,
    )
    assert refused.status_code == 303
    page = await client.get(refused.headers["location"])
    assert "The channel was not connected." in page.text
    assert "The platform refused the authorization: User said no" in page.text
    # API clients still get the JSON answer.
    api = await client.get("/api/channels/mastodon/callback?error=access_denied")
    assert api.status_code == 400 and api.json()["field"] == "code"


async def test_a_failed_oauth_sign_in_explains_itself(client: httpx.AsyncClient) -> None:
    from tidings.web.auth_pages import SIGN_IN_ERRORS, SIGN_IN_FAILED

    # The accounts callback sends a browser with an unknown state back to the sign-in page ...
    back = await client.get("/api/auth/oauth/github/callback?state=never-issued&code=c")
    assert back.status_code == 303 and back.headers["location"] == "/login?error=invalid_state"
    page = await client.get(back.headers["location"])
    assert page.status_code == 200
    assert 'id="sign-in-error"' in page.text and "link expired" in page.text
    # ... and every code the callback may send has its own human message.
    codes = (
        "invalid_state",
        "sign_in_refused",
        "invalid_code",
        "email_not_verified",
        "email_taken",
        "registration_disabled",
        "account_disabled",
        "upstream_error",
    )
    assert set(SIGN_IN_ERRORS) == set(codes)
    for code in codes:
        shown = await client.get(f"/login?error={code}")
        assert shown.status_code == 200, code
        assert str(escape(SIGN_IN_ERRORS[code])) in shown.text, code
        assert SIGN_IN_FAILED not in shown.text
    # An unknown code gets the generic message; the parameter itself never reaches the page.
    hostile = "<script>alert(1)</script>" + "x" * 2000
    unknown = await client.get("/login", params={"error": hostile})
    assert unknown.status_code == 200
    assert SIGN_IN_FAILED in unknown.text
    assert "alert(1)" not in unknown.text and "&lt;script" not in unknown.text
    plain = await client.get("/login")
    assert 'id="sign-in-error"' not in plain.text


async def test_members_see_channels_but_only_admins_manage_them(
    client: httpx.AsyncClient, tenant: Tenant, test_database: Any, db: AsyncSession
) -> None:
    channel = await make_channel(
        db, tenant.org_id, name="Team Masto", provider="mastodon", posting_times=[{"time": 540}]
    )
    manage = (
        'id="connect-channel"',
        'id="connect-dialog"',
        f'data-open-dialog="prefs-{channel.id}"',
        f'data-api-action="/api/channels/{channel.id}"',
        f'id="prefs-{channel.id}"',
    )

    await _sign_in_cookie(client, tenant)
    admin_page = await client.get("/channels")
    assert all(control in admin_page.text for control in manage)
    assert 'id="admins-manage"' not in admin_page.text

    member = await add_user_member(test_database, tenant)
    client.cookies.set("tidings_session", member.token)
    page = await client.get("/channels")
    assert page.status_code == 200
    # Read access stays: the channel, its status and posting times.
    assert "Team Masto" in page.text
    assert "Active" in page.text and "Posting times:" in page.text
    for control in manage:
        assert control not in page.text, control
    assert 'id="admins-manage"' in page.text and "Only admins of Org A" in page.text
    # The note is true: the API refuses a member's change.
    token = _csrf(page.text)
    refused = await client.patch(
        f"/api/channels/{channel.id}", json={"disabled": True}, headers={"X-CSRF-Token": token}
    )
    assert refused.status_code == 403
    # Members still write posts: the composer lists the channel.
    compose = await client.get("/compose")
    assert compose.status_code == 200 and "Team Masto" in compose.text
    assert f'value="{channel.id}"' in compose.text


async def test_unconfigured_providers_name_the_settings_to_set(
    client: httpx.AsyncClient, tenant: Tenant, monkeypatch: Any
) -> None:
    for name in ("CLIENT_ID", "CLIENT_SECRET", "BOT_TOKEN"):
        monkeypatch.delenv(f"TIDINGS_DISCORD_{name}", raising=False)
    await _sign_in_cookie(client, tenant)

    def discord_form(html: str) -> str:
        match = re.search(
            r'<form class="provider-form" data-provider-form="discord".*?</form>', html, re.S
        )
        assert match, "no Discord form"
        return match.group(0)

    page = await client.get("/channels")
    form = discord_form(page.text)
    assert "Discord cannot be connected yet" in form
    for variable in (
        "TIDINGS_DISCORD_CLIENT_ID",
        "TIDINGS_DISCORD_CLIENT_SECRET",
        "TIDINGS_DISCORD_BOT_TOKEN",
    ):
        assert f"<code>{variable}</code>" in form
    assert 'type="submit"' not in form  # nothing to click that would fail
    assert re.search(r'data-provider-choice="discord"\s+data-unconfigured', page.text)
    # Configured providers connect as before.
    bluesky = re.search(r'data-provider-form="bluesky".*?</form>', page.text, re.S)
    assert (
        bluesky
        and 'type="submit"' in bluesky.group(0)
        and "data-missing-config" not in bluesky.group(0)
    )

    # Half configured: only what is still missing is named.
    monkeypatch.setenv("TIDINGS_DISCORD_CLIENT_ID", "app")
    monkeypatch.setenv("TIDINGS_DISCORD_CLIENT_SECRET", "secret")
    form = discord_form((await client.get("/channels")).text)
    assert "<code>TIDINGS_DISCORD_BOT_TOKEN</code>" in form and "CLIENT_ID" not in form
    assert "this environment variable" in form
    monkeypatch.setenv("TIDINGS_DISCORD_BOT_TOKEN", "bot")
    form = discord_form((await client.get("/channels")).text)
    assert "data-missing-config" not in form and "Continue to Discord" in form


def test_next_clock_change_of_a_zone() -> None:
    from datetime import UTC, date, datetime
    from zoneinfo import ZoneInfo

    from tidings.web.channels_pages import next_offset_change

    paris = ZoneInfo("Europe/Paris")
    spring = next_offset_change(paris, datetime(2025, 1, 15, tzinfo=UTC))
    assert spring is not None and spring.on == date(2025, 3, 30) and spring.minutes == 60
    assert spring.shift == "an hour later"
    # A minute before the change, still that change; a minute after, the autumn one.
    assert next_offset_change(paris, datetime(2025, 3, 30, 0, 59, tzinfo=UTC)) == spring
    autumn = next_offset_change(paris, datetime(2025, 3, 30, 1, 1, tzinfo=UTC))
    assert (
        autumn is not None and autumn.on == date(2025, 10, 26) and autumn.shift == "an hour earlier"
    )
    lord_howe = next_offset_change(
        ZoneInfo("Australia/Lord_Howe"), datetime(2025, 1, 1, tzinfo=UTC)
    )
    assert lord_howe is not None and lord_howe.shift == "30 minutes earlier"
    assert next_offset_change(ZoneInfo("Asia/Tokyo")) is None
    assert next_offset_change(ZoneInfo("UTC")) is None


async def test_posting_times_show_their_utc_time_and_the_next_clock_change(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from sqlalchemy import update

    from tidings.accounts.models import User
    from tidings.web.channels_pages import next_offset_change

    zone = "America/New_York"
    await db.execute(update(User).where(User.id == tenant.user_id).values(timezone_name=zone))
    await make_channel(
        db, tenant.org_id, name="Clocked", provider="mastodon", posting_times=[{"time": 13 * 60}]
    )
    await _sign_in_cookie(client, tenant)
    page = await client.get("/channels")
    offset = datetime.now(UTC).astimezone(ZoneInfo(zone)).utcoffset()
    assert offset is not None
    local_hour = 13 + int(offset.total_seconds() // 3600)  # 08:00 or 09:00
    times = re.search(
        r"<span class=\"muted small\" data-posting-times>(.*?)</span>\s*</p>", page.text, re.S
    )
    assert times, "no posting times"
    assert (
        re.sub(r"<[^>]+>", "", times.group(1)) == f"Posting times: {local_hour:02d}:00 (13:00 UTC)"
    )
    change = next_offset_change(ZoneInfo(zone))
    assert change is not None
    assert f"From {change.on.strftime('%-d %B %Y')} your clocks change" in page.text
    assert f"they will show {change.shift} (the UTC time stays)" in page.text
    assert f"today's offset (UTC-{13 - local_hour:02d}:00)" in page.text


async def test_connectors_page_never_shows_the_key(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    test_database: Any,
    db: AsyncSession,
) -> None:
    key = "n8n-secret-key-123456789"
    made = await client.post(
        "/api/third-party",
        json={
            "provider": "n8n",
            "api_key": key,
            "webhook_url": "https://93.184.215.14/webhook/tidings",
            "events": ["post.published"],
            "config": {"auth_header": "x-tidings-key"},
        },
        headers=tenant.headers,
    )
    assert made.status_code == 201, made.text
    secret = made.json()["signing_secret"]
    await _sign_in_cookie(client, tenant)
    page = await client.get("/settings/connectors")
    assert page.status_code == 200
    assert "https://93.184.215.14/webhook/tidings" in page.text
    assert "API key …6789" in page.text and "<code>x-tidings-key</code>" in page.text
    assert "Events: post.published" in page.text and key not in page.text
    assert f'value="{secret}"' in page.text  # admins copy the signing secret
    assert 'data-api-action="/api/third-party/' in page.text and "Add connector" in page.text
    assert 'href="/settings/connectors" aria-current="page"' in page.text
    assert "Resume deliveries" not in page.text
    # Deliveries stopped after failures: said so, with the way to resume them.
    from sqlalchemy import update

    from tidings.automation.models import Webhooks

    await db.execute(
        update(Webhooks).where(Webhooks.third_party_id == made.json()["id"]).values(enabled=False)
    )
    stopped = await client.get("/settings/connectors")
    assert "Deliveries stopped after failures" in stopped.text
    assert "Resume deliveries" in stopped.text

    member = await add_user_member(test_database, tenant)
    client.cookies.set("tidings_session", member.token)
    seen = await client.get("/settings/connectors")
    assert "https://93.184.215.14/webhook/tidings" in seen.text
    assert secret not in seen.text and key not in seen.text
    assert "data-api-action" not in seen.text and "Add connector" not in seen.text
    assert "Only admins can add or change connectors." in seen.text

    client.cookies.set("tidings_session", other_tenant.token)
    client.cookies.set("tidings_org", other_tenant.org_id)
    other = await client.get("/settings/connectors")
    assert "93.184.215.14" not in other.text and "No connectors yet." in other.text


async def test_every_state_changing_route_needs_the_token_with_a_cookie_session(
    app: Any, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Every unsafe route of the app (pages, app API, Public API, mounted apps alike) refuses a
    cookie-authenticated request without the page's token, before it runs."""
    from starlette.routing import Mount, Route

    from tidings.web.csrf import ANONYMOUS_PATHS

    def routes(items: Any, prefix: str = "") -> Any:
        for item in items:
            if hasattr(item, "effective_route_contexts"):  # an included router (FastAPI)
                for route in item.effective_route_contexts():
                    if route.methods:
                        yield prefix + route.path, set(route.methods)
            elif isinstance(item, Mount):
                yield from routes(item.routes or [], prefix + item.path)
            elif isinstance(item, Route) and item.methods:
                yield prefix + item.path, set(item.methods)

    token = _csrf((await client.get("/login")).text)
    await _sign_in_cookie(client, tenant)
    checked = 0
    for path, methods in routes(app.routes):
        url = re.sub(r"\{[^}]+\}", "x", path)
        for method in sorted(methods - {"GET", "HEAD", "OPTIONS"}):
            if path in ANONYMOUS_PATHS:
                continue
            response = await client.request(method, url, json={})
            assert response.status_code == 403, (method, path, response.status_code)
            assert response.json()["error"] == "csrf_failed", (method, path)
            form = await client.request(method, url, data={"csrf_token": "y" * 43})
            assert form.status_code == 403, (method, path, "wrong form token")
            checked += 1
    assert checked > 50, checked
    # The same request with the token reaches the route (here: signing out).
    out = await client.post("/logout", data={"csrf_token": token})
    assert out.status_code == 303


def test_every_plain_form_of_the_templates_carries_the_token() -> None:
    """Forms that post without our JavaScript (method="post") carry the token as a field; the
    others are sent by our scripts, which add it as a header."""
    from tidings.web.context import TEMPLATES_DIR

    forms = 0
    for template in sorted(TEMPLATES_DIR.rglob("*.html")):
        html = template.read_text()
        for form in re.findall(r"<form\b[^>]*>.*?</form>", html, re.S):
            opening = form[: form.index(">") + 1]
            method = re.search(r'(?<![-\w])method="(\w+)"', opening)
            if method and method.group(1).lower() == "post":
                forms += 1
                assert 'name="{{ csrf_field_name }}"' in form, (template.name, opening)
            else:
                # No method: a GET when sent without script (safe); our scripts send it
                # through Tidings.api, which adds the header.
                assert not method or method.group(1).lower() == "get", (template.name, opening)
    assert forms >= 2
