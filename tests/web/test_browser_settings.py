"""In a real browser: the media library (upload with progress, alt text, delete), webhooks
(add, send a test to a loopback receiver, delivery log), a Make connector, RSS auto-posts,
signatures in the composer, and posting-time sets."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect
from sqlalchemy import select
from starlette.responses import JSONResponse, Response

from tests.channels.factories import make_channel
from tests.channels.providers.servers.base import FakePlatform, RecordedRequest
from tests.conftest import make_tenant
from tests.web.conftest import LiveApp, png, screenshot, signed_in_context
from tidings.automation.models import AutoPost
from tidings.media.models import Media
from tidings.posts.models import Sets

pytestmark = pytest.mark.browser

RSS = """<?xml version="1.0"?><rss version="2.0"><channel><title>Blog</title>
<link>https://blog.example</link><description>d</description>
<item><title>Hello</title><link>https://blog.example/hello</link><guid>1</guid></item>
</channel></rss>"""


class Receiver(FakePlatform):
    """A webhook receiver and a feed, on 127.0.0.1."""

    def setup_routes(self) -> None:
        self.add("POST", "/hook", self.hook)
        self.add("GET", "/feed.xml", self.feed)

    async def hook(self, request: RecordedRequest) -> Response:
        return JSONResponse({"received": True})

    async def feed(self, request: RecordedRequest) -> Response:
        return Response(RSS, media_type="application/rss+xml")


async def test_media_library_and_automation_settings(browser: Any, live: LiveApp) -> None:
    tenant = await make_tenant(live.database, org_name="Settings Co")
    async with live.database.session() as session:
        channel = await make_channel(session, tenant.org_id, name="Sky Sam", provider="bluesky")
        channel_id = channel.id
    context, problems = await signed_in_context(browser, live, tenant)
    try:
        page = await context.new_page()

        # ---- media library ----------------------------------------------------------------
        await page.goto("/media")
        await expect(page.get_by_text("No media yet")).to_be_visible()
        await page.locator("[data-library-upload]").set_input_files(
            files=[
                {"name": "red.png", "mimeType": "image/png", "buffer": png((200, 30, 30))},
                {"name": "green.png", "mimeType": "image/png", "buffer": png((30, 160, 60))},
            ]
        )
        # Both uploads finish, then the page reloads (its progress rows gone) and shows them.
        await expect(page.locator(".media-card")).to_have_count(2)
        await page.get_by_label("Alt text of red.png").fill("A red rectangle")
        await (
            page.locator(".media-card", has_text="red.png")
            .get_by_role("button", name="Save")
            .click()
        )
        await expect(page.get_by_text("Alt text saved.")).to_be_visible()
        await screenshot(page, "16-media-library")
        page.once("dialog", lambda d: d.accept())
        await (
            page.locator(".media-card", has_text="green.png")
            .get_by_role("button", name="Delete")
            .click()
        )
        await expect(page.locator(".media-card")).to_have_count(1)
        async with live.database.session() as session:
            (media,) = (await session.execute(select(Media))).scalars()
            assert media.alt == "A red rectangle" and media.name == "red.png"

        async with Receiver() as receiver:
            # ---- webhooks -----------------------------------------------------------------
            await page.goto("/settings/webhooks")
            await page.get_by_label("URL").fill(receiver.url("/hook"))
            await page.get_by_label("Name").fill("Our CRM")
            await page.get_by_label("Sky Sam").check()
            await page.get_by_role("button", name="Add webhook").click()
            hook = page.locator("[data-webhook]", has_text="Our CRM")
            await expect(hook).to_contain_text("Channels: Sky Sam")
            await hook.get_by_role("button", name="Send test").click()
            await expect(hook.locator("[data-test-result]")).to_contain_text(
                "Test event delivered: the endpoint answered 200"
            )
            sent = receiver.last("POST", "/hook")
            assert sent.json["type"] == "webhook.test"
            assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(sent.headers)
            await page.reload()
            log = page.locator("[data-webhook]", has_text="Our CRM").locator("table")
            await expect(log).to_contain_text("webhook.test")
            await screenshot(page, "17-settings-webhooks")

            # ---- connectors (Make: its API key rides in x-make-apikey) --------------------
            await page.get_by_role("link", name="Connectors").click()
            await page.get_by_label("Service").select_option(label="Make")
            await page.get_by_label("API key").fill("make-key-0000-4321")
            await page.get_by_label("Webhook URL").fill(receiver.url("/hook"))
            await page.get_by_role("button", name="Add connector").click()
            connector = page.locator("[data-connector=make]")
            await expect(connector).to_contain_text("API key …4321")
            await expect(connector).to_contain_text("x-make-apikey")
            await connector.get_by_role("button", name="Send test").click()
            await expect(connector.locator("[data-test-result]")).to_contain_text(
                "Test event delivered: the endpoint answered 200"
            )
            assert receiver.last("POST", "/hook").headers["x-make-apikey"] == "make-key-0000-4321"
            await screenshot(page, "17b-settings-connectors")

            # ---- RSS auto-posts -------------------------------------------------------------
            await page.goto("/settings/autopost")
            await page.get_by_label("Name").fill("Company blog")
            await page.get_by_label("Feed URL").fill(receiver.url("/feed.xml"))
            await page.get_by_role("button", name="Add feed").click()
            # No channel picked: the API's answer lands on the channels.
            await expect(page.locator(".field-error").first).to_be_visible()
            await page.get_by_label("Sky Sam").check()
            await page.get_by_role("button", name="Add feed").click()
            await expect(page.get_by_role("heading", name="Company blog")).to_be_visible()
            await screenshot(page, "18-settings-autopost")
            async with live.database.session() as session:
                (feed,) = (await session.execute(select(AutoPost))).scalars()
                assert feed.url == receiver.url("/feed.xml")

        # ---- signatures ---------------------------------------------------------------------
        await page.goto("/settings/signatures")
        await page.get_by_label("Text").fill("— The Settings Co team")
        await page.get_by_label("Add to new posts").check()
        await page.get_by_role("button", name="Add signature").click()
        await expect(page.get_by_label("Signature 1")).to_have_value("— The Settings Co team")
        await screenshot(page, "19-settings-signatures")
        await page.goto("/compose")
        text = page.get_by_label("Post text", exact=True)
        await expect(text).to_have_value("\n\n— The Settings Co team")
        await text.fill("Hello")
        await page.get_by_role("button", name="Insert").click()
        await expect(text).to_have_value("Hello\n— The Settings Co team")

        # ---- sets ---------------------------------------------------------------------------
        await page.goto("/settings/sets")
        await page.get_by_label("Name").fill("Weekday mornings")
        await page.get_by_role("button", name="Add a time").click()
        await page.get_by_label("Day of time 2").select_option(label="Wednesday")
        await page.get_by_label("Time 2", exact=True).fill("12:30")
        await page.get_by_role("button", name="Add set").click()
        await expect(page.get_by_text("Europe/Paris · Mon 09:00, Wed 12:30")).to_be_visible()
        await screenshot(page, "20-settings-sets")
        async with live.database.session() as session:
            (plan,) = (await session.execute(select(Sets))).scalars()
            assert plan.times == [{"day": 1, "time": "09:00"}, {"day": 3, "time": "12:30"}]
            assert plan.timezone == "Europe/Paris"
        # The composer's free slots can follow the set.
        await page.goto(f"/compose?channel={channel_id}")
        await page.get_by_label("Posting schedule").select_option(label="Weekday mornings")
        slot = page.get_by_role("button", name="Use the next free slot of Sky Sam")
        await expect(slot).to_contain_text("09:00")
    finally:
        await context.close()
    assert not problems, problems
