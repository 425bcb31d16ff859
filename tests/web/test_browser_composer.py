"""In a real browser, the composer beyond the happy path: channels grouped by customer, a media
rule checked before saving, a recurring thread with a delay, media picked from the library and
tags (kept when the group is edited again), and "Publish now" reaching the platform."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import expect
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from tests.channels.factories import make_channel
from tests.channels.providers.servers.bluesky import FakeBluesky
from tests.conftest import make_tenant
from tests.posts.helpers import eventually
from tests.web.conftest import LiveApp, png, signed_in_context
from tidings.core.enums import State
from tidings.posts.models import Post

pytestmark = pytest.mark.browser


async def _posts(live: LiveApp, org_id: str) -> list[Post]:
    async with live.database.session() as session:
        rows = await session.execute(
            select(Post)
            .where(Post.organization_id == org_id)
            .options(selectinload(Post.tags))
            .order_by(Post.publish_date, Post.created_at)
        )
        return list(rows.scalars())


async def test_recurring_thread_library_media_tags_and_publish_now(
    browser: Any, live: LiveApp
) -> None:
    tenant = await make_tenant(live.database, org_name="Compose Co")
    async with live.database.session() as session:
        insta = await make_channel(session, tenant.org_id, name="Insta Ida", provider="instagram")
        insta_id = insta.id
    async with FakeBluesky() as pds, httpx.AsyncClient(base_url=live.url) as http:
        # A Bluesky channel of the customer Acme, and an image already in the library.
        connected = await http.post(
            "/api/channels/bluesky/connect",
            json={
                "fields": {
                    "service": pds.base_url,
                    "identifier": "alice.test",
                    "password": "app-pass-1234",
                },
                "customer": "Acme",
            },
            headers=tenant.headers,
        )
        assert connected.status_code in (200, 201), connected.text
        sky_id = connected.json()["channel"]["id"]
        uploaded = await http.post(
            "/api/media",
            files={"file": ("library.png", png((200, 120, 40)), "image/png")},
            headers=tenant.headers,
        )
        assert uploaded.status_code == 201, uploaded.text
        library_path = uploaded.json()["path"]

        context, problems = await signed_in_context(browser, live, tenant)
        try:
            page = await context.new_page()
            await page.goto("/compose")
            # Channels are grouped by customer.
            acme = page.locator(
                "fieldset.channel-picks", has=page.locator("legend", has_text="Acme")
            )
            await expect(acme.locator("[data-channel-pick]")).to_have_count(1)
            await expect(acme).to_contain_text("Alice")
            others = page.locator(
                "fieldset.channel-picks", has=page.locator("legend", has_text="No customer")
            )
            await expect(others).to_contain_text("Insta Ida")

            # A media rule is checked as the post is written, and blocks saving.
            await page.locator(f"#pick-{insta_id}").check()
            text = page.get_by_label("Post text", exact=True)
            await text.fill("Weekly tip: schedule ahead.")
            rule = "Insta Ida (Instagram) needs at least 1 media file."
            part = page.locator('.part[data-scope="shared"][data-index="0"]')
            await expect(part.locator("[data-problems]")).to_have_text(rule)
            tomorrow = (datetime.now(UTC) + timedelta(days=1)).astimezone()
            await page.get_by_label("Date and time").fill(tomorrow.strftime("%Y-%m-%dT09:00"))
            await page.get_by_role("button", name="Add to calendar").click()
            await expect(page.locator("[data-summary]")).to_contain_text(rule)
            assert await _posts(live, tenant.org_id) == []
            await page.locator(f"#pick-{insta_id}").uncheck()
            await expect(page.locator("[data-summary]")).to_have_text(
                "Fix this before saving:Pick at least one channel."
            )

            # A two-part thread: the reply 30 minutes later, an image from the library.
            await page.locator(f"#pick-{sky_id}").check()
            await expect(page.locator("[data-summary]")).to_be_hidden()
            await page.get_by_role("button", name="Add a part to the thread").click()
            await page.get_by_label("Part 2 text", exact=True).fill("More in the reply.")
            await page.get_by_label("Delay after part 1 (minutes)").fill("30")
            await page.get_by_role("button", name="Add media to post").click()
            dialog = page.get_by_role("dialog", name="Add media")
            await dialog.get_by_role("button", name="library.png").click()
            await dialog.get_by_role("button", name="Attach 1").click()
            await expect(dialog).to_be_hidden()
            await page.get_by_label("Alt text of library.png").fill("An orange square")
            # Tags (Enter or the button), repeated every 3 days.
            tag = page.get_by_label("Tags", exact=True)
            await tag.fill("launch")
            await tag.press("Enter")
            await tag.fill("q3")
            await page.get_by_role("button", name="Add tag").click()
            chips = page.get_by_role("list", name="Tags of the post").get_by_role("listitem")
            await expect(chips).to_have_count(2)
            await page.get_by_label("Repeat every").check()
            await page.get_by_label("Days between repetitions").fill("3")
            await page.get_by_role("button", name="Add to calendar").click()
            await page.wait_for_url("**/calendar?view=week*")
            first, reply = await _posts(live, tenant.org_id)
            assert first.integration_id == sky_id and first.state == State.QUEUE
            assert first.content == "Weekly tip: schedule ahead."
            assert first.interval_in_days == 3
            assert first.image and first.image[0]["path"] == library_path
            assert first.image[0]["alt"] == "An orange square"
            assert sorted(t.name for t in first.tags) == ["launch", "q3"]
            assert reply.parent_post_id == first.id and reply.delay == 30
            assert reply.content == "More in the reply."
            chip = page.locator(f'.post-chip[data-post="{first.id}"]:not(.occurrence)')
            await expect(chip.locator(".chip-repeat")).to_have_count(1)

            # Editing the group opens the composer with all of it.
            await page.goto(f"/compose?group={first.group}")
            await expect(page.get_by_label("Repeat every")).to_be_checked()
            await expect(page.get_by_label("Days between repetitions")).to_have_value("3")
            await expect(page.get_by_label("Delay after part 1 (minutes)")).to_have_value("30")
            await expect(page.get_by_label("Alt text of library.png")).to_have_value(
                "An orange square"
            )
            tags = page.get_by_role("list", name="Tags of the post")
            await expect(tags.get_by_role("listitem")).to_have_count(2)

            # Publish now: the post reaches the platform at once.
            await page.goto(f"/compose?channel={sky_id}")
            await page.get_by_label("Post text", exact=True).fill("Breaking: we are live.")
            await page.get_by_role("button", name="Publish now").click()
            await page.wait_for_url("**/calendar?view=week*")

            async def published() -> Post | None:
                post = next(
                    p for p in await _posts(live, tenant.org_id) if p.content.startswith("Breaking")
                )
                return post if post.state == State.PUBLISHED else None

            now_post = await eventually(published, timeout=30, interval=0.2)
            texts = [r.get("value", {}).get("text") for r in pds.records.values()]
            assert "Breaking: we are live." in texts
            assert abs((now_post.publish_date - datetime.now(UTC)).total_seconds()) < 60
            await page.reload()
            await expect(page.locator(f'.post-chip[data-post="{now_post.id}"]')).to_contain_text(
                "Published"
            )
        finally:
            await context.close()
    assert not problems, problems
