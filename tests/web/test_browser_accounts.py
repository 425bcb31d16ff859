"""In a real browser: sign up, the time zone, connecting channels (OAuth redirect and credential
fields), managing them, the team and API key settings, the phone-width layout."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect
from sqlalchemy import select

from tests.channels.providers.servers.bluesky import FakeBluesky
from tests.channels.providers.servers.discord import API as DISCORD_API
from tests.channels.providers.servers.discord import BOT_TOKEN, FakeDiscord
from tests.channels.providers.servers.mastodon import FakeMastodon
from tests.web.conftest import BROWSER_TIMEZONE, LiveApp, screenshot, watch
from tidings.accounts.models import User
from tidings.channels.models import Integration

pytestmark = pytest.mark.browser


async def sign_up(page: Any, email: str, *, name: str = "Ada", org: str = "Ada Agency") -> None:
    await page.goto("/signup")
    await page.get_by_label("Your name").fill(name)
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill("correct horse battery")
    await page.get_by_label("Organization name").fill(org)
    await page.get_by_role("button", name="Create account").click()
    await page.wait_for_url("**/channels?welcome=1")


async def test_sign_up_connect_and_manage_channels(
    page: Any, live: LiveApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    await page.goto("/settings/team")
    await page.wait_for_url("**/login?next=/settings/team")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await screenshot(page, "01-sign-in")
    await page.goto("/signup")
    # The API's validation errors land next to the field they name.
    await page.get_by_label("Email").fill("not-an-email")
    await page.get_by_label("Password").fill("short")
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator(".field-error").first).to_be_visible()
    await expect(page.get_by_label("Email")).to_have_attribute("aria-invalid", "true")
    await screenshot(page, "02-sign-up-errors")

    await sign_up(page, "ada@example.com")
    await expect(page.get_by_role("heading", name="Welcome to Tidings")).to_be_visible()
    # The browser's zone was saved on first visit.
    async with live.database.session() as session:
        user = (await session.execute(select(User))).scalar_one()
        assert user.timezone_name == BROWSER_TIMEZONE
    await expect(page.locator("body")).to_have_attribute("data-timezone", BROWSER_TIMEZONE)

    async with FakeMastodon() as masto, FakeBluesky() as pds, FakeDiscord() as discord:
        # OAuth: the browser goes to the instance and comes back to the channels page.
        await page.get_by_role("button", name="Connect a channel").click()
        dialog = page.get_by_role("dialog", name="Connect a channel")
        await expect(dialog).to_be_visible()
        await screenshot(page, "03-connect-dialog", full_page=False)
        await dialog.get_by_role("button", name="Mastodon").click()
        await dialog.get_by_label("Instance URL").fill(masto.base_url)
        await dialog.get_by_role("button", name="Continue to Mastodon").click()
        await page.wait_for_url("**/channels?channel=*")
        card = page.locator("[data-channel]", has_text="Alice M")
        await expect(card).to_be_visible()
        await expect(card.locator("[data-status]")).to_have_text("Active")
        assert masto.calls("GET", "/oauth/authorize"), "the browser never reached the instance"

        # Credential fields: a wrong password is shown on the form, the right one connects.
        await page.get_by_role("button", name="Connect a channel").click()
        await dialog.get_by_role("button", name="Bluesky").click()
        await dialog.get_by_label("Service URL").fill(pds.base_url)
        await dialog.get_by_label("Handle").fill("alice.test")
        await dialog.get_by_label("App password").fill("wrong-password")
        await dialog.get_by_role("button", name="Connect", exact=True).click()
        await expect(dialog.locator(".form-error, .field-error").first).to_be_visible()
        await dialog.get_by_label("App password").fill("app-pass-1234")
        await dialog.get_by_role("combobox", name="Customer").fill("Acme")
        await dialog.get_by_role("button", name="Connect", exact=True).click()
        await page.wait_for_url("**/channels?channel=*")
        await expect(page.get_by_role("heading", name="Acme")).to_be_visible()

        # An unconfigured provider says which settings the server lacks, and offers no
        # button that would fail.
        await page.get_by_role("button", name="Connect a channel").click()
        await dialog.get_by_role("button", name="Discord").click()
        missing = dialog.locator("[data-provider-form=discord] [data-missing-config]")
        await expect(missing).to_be_visible()
        await expect(missing).to_contain_text("TIDINGS_DISCORD_BOT_TOKEN")
        await expect(dialog.get_by_role("button", name="Continue to Discord")).to_have_count(0)
        await screenshot(page, "03a-not-configured", full_page=False)
        await dialog.get_by_role("button", name="Back").click()
        await dialog.get_by_role("button", name="Close").click()

        # In between steps: Discord authorizes a server, then a channel of it is picked.
        for key, value in {
            "CLIENT_ID": "discord-app",
            "CLIENT_SECRET": "discord-secret",
            "BOT_TOKEN": BOT_TOKEN,
            "API_URL": discord.url(DISCORD_API),
            "WEB_URL": discord.base_url,
        }.items():
            monkeypatch.setenv(f"TIDINGS_DISCORD_{key}", value)
        await page.reload()
        await page.get_by_role("button", name="Connect a channel").click()
        await dialog.get_by_role("button", name="Discord").click()
        await dialog.get_by_role("button", name="Continue to Discord").click()
        pick = page.get_by_role("dialog", name="Choose where to post")
        await expect(pick.get_by_role("button", name="general")).to_be_visible()
        await screenshot(page, "03b-pick-a-page", full_page=False)
        await pick.get_by_role("button", name="general").click()
        await page.wait_for_url("**/channels?channel=*")
        discord_card = page.locator("[data-provider=discord]")
        await expect(discord_card.locator("[data-status]")).to_have_text("Active")

    # Preferences: posting time typed in the user's zone, kept in UTC.
    mastodon_card = page.locator("[data-provider=mastodon]")
    await mastodon_card.get_by_role("button", name="Preferences").click()
    prefs = page.get_by_role("dialog", name="Preferences of Alice M")
    # A new channel comes with default times; replace them with one.
    while await prefs.locator("[data-remove-slot]").count():
        await prefs.locator("[data-remove-slot]").first.click()
    await prefs.get_by_role("button", name="Add a time").click()
    await prefs.get_by_label("Posting time 1", exact=True).fill("09:30")
    await prefs.get_by_label("Name").fill("Alice on Mastodon")
    await prefs.get_by_role("button", name="Save").click()
    card = page.locator("[data-provider=mastodon]")
    await expect(card).to_contain_text("Alice on Mastodon")
    await expect(card).to_contain_text("Posting times: 09:30")
    async with live.database.session() as session:
        channel = (
            await session.execute(
                select(Integration).where(Integration.provider_identifier == "mastodon")
            )
        ).scalar_one()
        assert channel.posting_times == [{"time": 30}]  # 09:30 in Tokyo is 00:30 UTC

    # Disable, then enable again.
    await card.get_by_role("button", name="Disable").click()
    await expect(page.locator("[data-provider=mastodon] [data-status]")).to_have_text("Disabled")
    await page.locator("[data-provider=mastodon]").get_by_role("button", name="Enable").click()
    await expect(page.locator("[data-provider=mastodon] [data-status]")).to_have_text("Active")
    await screenshot(page, "04-channels")

    # Team: invite someone; the link is shown when mail is not configured.
    await page.get_by_role("link", name="Settings").click()
    await page.get_by_role("link", name="Team").click()
    await page.get_by_label("Email").fill("bob@example.com")
    await page.get_by_role("button", name="Send invite").click()
    await expect(page.get_by_label("Invite link")).to_be_visible()
    link = await page.get_by_label("Invite link").input_value()
    assert link.startswith(f"{live.url}/invite?token=")
    await page.reload()
    await expect(page.get_by_text("bob@example.com")).to_be_visible()
    await screenshot(page, "05-settings-team")

    # API key: shown once.
    await page.get_by_role("link", name="API key").click()
    await page.get_by_role("button", name="Create a key").click()
    key = page.get_by_label("New API key")
    await expect(key).to_be_visible()
    assert len(await key.input_value()) > 20
    await screenshot(page, "06-settings-api-key")

    # The invitee accepts in another browser profile.
    other = await page.context.browser.new_context(base_url=live.url)
    try:
        invitee = await other.new_page()
        await invitee.goto(link)
        await expect(invitee.get_by_role("heading", name="Join Ada Agency")).to_be_visible()
        await invitee.get_by_role("link", name="Create an account to join").click()
        await invitee.get_by_label("Password").fill("another good password")
        await invitee.get_by_role("button", name="Create account").click()
        await invitee.wait_for_url("**/channels**")
        await expect(invitee.get_by_role("heading", name="Alice on Mastodon")).to_be_visible()
        # The new member signs out with the header's form.
        await invitee.get_by_role("button", name="Sign out").click()
        await invitee.wait_for_url("**/login")
    finally:
        await other.close()

    # Sign out, then back in.
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/login")
    await page.goto("/login?next=/settings/team")
    await page.get_by_label("Email").fill("ada@example.com")
    await page.get_by_label("Password").fill("correct horse battery")
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/settings/team")
    await expect(page.get_by_text("bob@example.com").first).to_be_visible()


async def test_phone_width_and_organization_switch(browser: Any, live: LiveApp) -> None:
    ctx = await browser.new_context(
        base_url=live.url, viewport={"width": 390, "height": 844}, timezone_id="Europe/Paris"
    )
    problems = watch(ctx)
    try:
        page = await ctx.new_page()
        await sign_up(page, "pat@example.com", name="Pat", org="First Org")
        # A second organization, then switching back with the header's switcher.
        menu = page.get_by_role("button", name="Menu")
        await expect(menu).to_be_visible()
        await expect(page.get_by_role("link", name="Channels")).to_be_hidden()
        await menu.click()
        await expect(page.get_by_role("link", name="Channels")).to_be_visible()
        await screenshot(page, "07-phone-menu")
        await page.get_by_role("link", name="Settings").click()
        await page.get_by_role("link", name="Organization").click()
        await page.locator("#new-org").fill("Second Org")
        await page.get_by_role("button", name="Create").click()
        await page.wait_for_url("**/channels")
        await page.get_by_role("button", name="Menu").click()
        switcher = page.get_by_label("Organization")
        await expect(switcher.locator("option:checked")).to_have_text("Second Org")
        await switcher.select_option(label="First Org")
        await page.wait_for_url("**/channels")
        await page.get_by_role("button", name="Menu").click()
        await expect(page.get_by_label("Organization").locator("option:checked")).to_have_text(
            "First Org"
        )
        # Nothing overflows sideways at phone width (the week grid scrolls inside itself).
        for path in (
            "/channels",
            "/calendar",
            "/calendar?view=month",
            "/calendar?view=list",
            "/compose",
            "/media",
            "/settings/team",
            "/settings/webhooks",
            "/notifications",
        ):
            await page.goto(path)
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, path
        await screenshot(page, "22-phone-settings")
    finally:
        await ctx.close()
    assert not problems, problems
