"""In a real browser: password reset by the emailed link, an existing account accepting an
invite, the user's time zone (not the browser's) governing what is shown and typed, the team's
roles and removal, rotating the API key (shown once, copied), the notifications badge, and
reconnecting and deleting a channel."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.async_api import expect
from sqlalchemy import select

from tests.channels.factories import make_channel
from tests.channels.providers.servers.bluesky import FakeBluesky
from tests.conftest import make_tenant
from tests.web.conftest import (
    LiveApp,
    add_user_member,
    schedule_post,
    signed_in_context,
    watch,
)
from tidings.accounts.mailer import Mail, set_mailer
from tidings.channels.models import Integration
from tidings.core.enums import Role
from tidings.notifications.service import notify
from tidings.orgs.models import UserOrganization
from tidings.posts.models import Post

pytestmark = pytest.mark.browser


class Outbox:
    def __init__(self) -> None:
        self.mails: list[Mail] = []

    async def send(self, mail: Mail) -> None:
        self.mails.append(mail)


async def test_password_reset_and_accepting_an_invite_when_signed_up(
    browser: Any, live: LiveApp
) -> None:
    inviter = await make_tenant(live.database, org_name="Inviting Agency")
    invitee = await make_tenant(live.database, email="bea@example.com", org_name="Bea Studio")
    outbox = Outbox()
    set_mailer(outbox)
    context = await browser.new_context(base_url=live.url, timezone_id="Europe/Paris")
    problems = watch(context)
    try:
        page = await context.new_page()
        # Forgot the password: the emailed link leads to a new one.
        await page.goto("/login")
        await page.get_by_role("link", name="Forgot your password?").click()
        await page.get_by_label("Email").fill("bea@example.com")
        await page.get_by_role("button", name="Send the link").click()
        await expect(page.locator(".form-success")).to_be_visible()
        (mail,) = [m for m in outbox.mails if m.to == "bea@example.com"]
        match = re.search(r"https?://\S+/reset-password\?token=\S+", mail.text)
        assert match, mail.text
        await page.goto(match.group(0))
        await page.get_by_label("New password").fill("a brand new passphrase")
        await page.get_by_role("button", name="Save the password").click()
        await page.wait_for_url("**/login?reset=1")
        await expect(page.get_by_role("status")).to_contain_text("Your password was changed")
        await page.get_by_label("Email").fill("bea@example.com")
        await page.get_by_label("Password").fill(invitee.password)
        await page.get_by_role("button", name="Sign in").click()
        # The old password no longer works.
        await expect(page.get_by_role("alert").or_(page.locator(".field-error"))).to_be_visible()
        await page.get_by_label("Password").fill("a brand new passphrase")
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(re.compile(r".*/(calendar|channels).*"))

        # Invited while having an account: sign out, open the link, sign in to accept.
        async with httpx.AsyncClient(base_url=live.url) as http:
            made = await http.post(
                "/api/orgs/current/invites",
                json={"email": "bea@example.com", "role": "USER"},
                headers=inviter.headers,
            )
        assert made.status_code == 201, made.text
        await page.get_by_role("button", name="Sign out").click()
        await page.wait_for_url("**/login")
        await page.goto(made.json()["url"])
        await expect(page.get_by_role("heading", name="Join Inviting Agency")).to_be_visible()
        await page.get_by_role("link", name="Sign in to accept").click()
        await page.get_by_label("Email").fill("bea@example.com")
        await page.get_by_label("Password").fill("a brand new passphrase")
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url("**/invite?token=*")
        await page.get_by_role("button", name="Accept and join").click()
        await page.wait_for_url("**/calendar")
        switcher = page.get_by_label("Organization", exact=True)
        await expect(switcher.locator("option")).to_have_text(
            ["Bea Studio", "Inviting Agency"], use_inner_text=True
        )
        async with live.database.session() as session:
            membership = (
                await session.execute(
                    select(UserOrganization).where(
                        UserOrganization.user_id == invitee.user_id,
                        UserOrganization.organization_id == inviter.org_id,
                    )
                )
            ).scalar_one()
            assert membership.role == Role.USER
    finally:
        set_mailer(None)
        await context.close()
    assert not problems, problems


async def test_the_users_zone_governs_display_and_entry(browser: Any, live: LiveApp) -> None:
    tenant = await make_tenant(live.database, org_name="Zones Inc")
    async with live.database.session() as session:
        channel = await make_channel(session, tenant.org_id, name="Sky Zed", provider="bluesky")
        channel_id = channel.id
    due = (datetime.now(UTC) + timedelta(days=2)).replace(
        hour=12, minute=0, second=0, microsecond=0
    )
    post_id = await schedule_post(live.database, tenant, channel_id, "Noon UTC", due)
    # The browser is in Tokyo; the user's zone is Paris, then New York.
    context, problems = await signed_in_context(
        browser, live, tenant, zone="Asia/Tokyo", user_zone="Europe/Paris"
    )
    try:
        page = await context.new_page()

        def shown(zone: str) -> str:
            return due.astimezone(ZoneInfo(zone)).strftime("%H:%M")

        chip = page.locator(f'.post-chip[data-post="{post_id}"] .chip-time')
        await page.goto(f"/calendar?date={due.date().isoformat()}")
        await expect(chip).to_have_text(shown("Europe/Paris"))

        await page.goto("/settings/profile")
        await expect(page.locator("[data-browser-timezone]")).to_have_text("Asia/Tokyo")
        await page.get_by_label("Time zone").select_option("America/New_York")
        await page.get_by_role("button", name="Save").first.click()
        await expect(page.locator("body")).to_have_attribute("data-timezone", "America/New_York")
        await page.goto(f"/calendar?date={due.date().isoformat()}")
        await expect(chip).to_have_text(shown("America/New_York"))

        # A time typed in the composer is New York's.
        await page.goto(f"/compose?channel={channel_id}")
        await expect(page.get_by_label("Date and time")).to_be_visible()
        await expect(page.locator("label[for=compose-date]")).to_contain_text("America/New_York")
        await page.get_by_label("Post text", exact=True).fill("Typed in New York")
        day = due.date().isoformat()
        await page.get_by_label("Date and time").fill(f"{day}T09:15")
        await page.get_by_role("button", name="Add to calendar").click()
        await page.wait_for_url("**/calendar?view=week*")
        async with live.database.session() as session:
            typed = (
                await session.execute(select(Post).where(Post.content == "Typed in New York"))
            ).scalar_one()
        expected = datetime.fromisoformat(f"{day}T09:15").replace(
            tzinfo=ZoneInfo("America/New_York")
        )
        assert typed.publish_date == expected
    finally:
        await context.close()
    assert not problems, problems


async def test_team_api_key_notifications_and_channel_upkeep(browser: Any, live: LiveApp) -> None:
    tenant = await make_tenant(live.database, org_name="Upkeep Ltd")
    member = await add_user_member(live.database, tenant)
    async with FakeBluesky() as pds:
        async with live.database.session() as session:
            stale_row = await make_channel(
                session,
                tenant.org_id,
                name="Stale Sky",
                provider="bluesky",
                internal_id="did:plc:alice123",
                refresh_needed=True,
            )
            await make_channel(session, tenant.org_id, name="Old Masto", provider="mastodon")
            await notify(session, tenant.org_id, "Stale Sky needs reconnecting", link="/channels")
            stale_id = stale_row.id
        context, problems = await signed_in_context(browser, live, tenant)
        await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
        try:
            page = await context.new_page()
            # The unread badge, cleared by "Mark all read".
            await page.goto("/calendar")
            bell = page.get_by_role("link", name="Notifications, 1 unread")
            await expect(bell.locator("[data-unread]")).to_have_text("1")
            await bell.click()
            await expect(
                page.get_by_role("link", name="Stale Sky needs reconnecting")
            ).to_be_visible()
            await page.get_by_role("button", name="Mark all read").click()
            await expect(page.locator("#notifications-link")).to_have_attribute(
                "aria-label", "Notifications"
            )
            await expect(page.locator("[data-unread]")).to_have_count(0)

            # Reconnect a channel whose access was withdrawn; delete another.
            await page.goto("/channels")
            stale = page.locator("[data-provider=bluesky]")
            await expect(stale.locator("[data-status]")).to_have_text("Needs reconnect")
            await stale.get_by_role("button", name="Reconnect").click()
            dialog = page.get_by_role("dialog", name="Connect a channel")
            await dialog.get_by_label("Service URL").fill(pds.base_url)
            await dialog.get_by_label("Handle").fill("alice.test")
            await dialog.get_by_label("App password").fill("app-pass-1234")
            await dialog.get_by_role("button", name="Connect", exact=True).click()
            await expect(page.locator("[data-provider=bluesky] [data-status]")).to_have_text(
                "Active"
            )
            await expect(page.locator("[data-provider=bluesky]")).to_have_count(1)
            page.once("dialog", lambda d: d.accept())
            await (
                page.locator("[data-provider=mastodon]")
                .get_by_role("button", name="Delete")
                .click()
            )
            await expect(page.locator("[data-provider=mastodon]")).to_have_count(0)
            async with live.database.session() as session:
                rows = (await session.execute(select(Integration))).scalars().all()
                # The same channel, reconnected (it keeps its posts); the other one is gone.
                assert [(r.id, r.refresh_needed) for r in rows] == [(stale_id, False)]

            # Team: change a member's role, then remove them.
            await page.goto("/settings/team")
            role = page.get_by_label(f"Role of {member.email}")
            await role.select_option("ADMIN")
            await expect(page.locator("#toast")).to_have_text("Saved.")
            page.once("dialog", lambda d: d.accept())
            row = page.locator(f'[data-member="{member.user_id}"]')
            await row.get_by_role("button", name="Remove").click()
            await expect(row).to_have_count(0)
            async with live.database.session() as session:
                left = (
                    await session.execute(
                        select(UserOrganization).where(UserOrganization.user_id == member.user_id)
                    )
                ).scalar_one_or_none()
                assert left is None

            # API key: created, shown once with Copy; rotating stops the previous one.
            await page.goto("/settings/api-key")
            await page.get_by_role("button", name="Create a key").click()
            key = page.get_by_label("New API key")
            await expect(key).not_to_have_value("")
            first = await key.input_value()
            await page.get_by_role("button", name="Copy").click()
            await expect(page.locator("#toast")).to_have_text("Copied.")
            assert await page.evaluate("navigator.clipboard.readText()") == first
            await page.reload()
            await expect(page.get_by_label("New API key")).to_be_hidden()
            assert first not in await page.content()
            page.once("dialog", lambda d: d.accept())
            await page.get_by_role("button", name="Rotate the key").click()
            await expect(key).not_to_have_value("")
            second = await key.input_value()
            assert second != first
            async with httpx.AsyncClient(base_url=live.url) as http:
                old = await http.get("/public/v1/integrations", headers={"Authorization": first})
                new = await http.get("/public/v1/integrations", headers={"Authorization": second})
            assert old.status_code == 401 and new.status_code == 200
        finally:
            await context.close()
    assert not problems, problems
