"""In a real browser, end to end: sign up → connect a Mastodon channel → compose a two-part
thread with an image → see it in the week view → drag it to another day (undo, then again) →
it publishes at the new time through the in-process worker → the calendar shows it published
with its link."""

from __future__ import annotations

import asyncio
import io
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from PIL import Image
from playwright.async_api import expect
from sqlalchemy import select

from tests.channels.providers.servers.mastodon import FakeMastodon
from tests.web.conftest import LiveApp, screenshot, watch
from tests.web.test_browser_accounts import sign_up
from tidings.core.enums import State
from tidings.posts.models import Post

pytestmark = pytest.mark.browser

# Zones spread around the globe: one of them is always on a weekday before Sunday, at an hour
# that leaves room before midnight, so "tomorrow" is in the same week view as "today".
CANDIDATE_ZONES = [
    "UTC",
    "Europe/Paris",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Pacific/Auckland",
    "Pacific/Kiritimati",
    "America/Sao_Paulo",
    "America/New_York",
    "America/Denver",
    "America/Los_Angeles",
    "Pacific/Honolulu",
]


def working_zone(lead: timedelta) -> ZoneInfo:
    """A zone where now + ``lead`` is Monday..Saturday, between 01:00 and 22:00, and in the same
    clock hour as now (so dragging keeps the post in the hour the test expects)."""
    now = datetime.now(UTC)
    for name in CANDIDATE_ZONES:
        zone = ZoneInfo(name)
        local, later = now.astimezone(zone), (now + lead).astimezone(zone)
        if later.weekday() < 6 and 1 <= local.hour <= 21 and local.hour == later.hour:
            return zone
    pytest.skip("no candidate zone fits this minute (retry in a minute)")


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (40, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


async def connect_mastodon(page: Any, masto: FakeMastodon) -> None:
    await page.goto("/channels")
    await page.get_by_role("button", name="Connect a channel").click()
    dialog = page.get_by_role("dialog", name="Connect a channel")
    await dialog.get_by_role("button", name="Mastodon").click()
    await dialog.get_by_label("Instance URL").fill(masto.base_url)
    await dialog.get_by_role("button", name="Continue to Mastodon").click()
    await page.wait_for_url("**/channels?channel=*")


async def heads(live: LiveApp) -> list[Post]:
    async with live.database.session() as session:
        rows = await session.execute(select(Post).order_by(Post.publish_date, Post.id))
        return list(rows.scalars())


async def test_compose_drag_and_publish(browser: Any, live: LiveApp) -> None:
    # Enough for composing → calendar → drag, undo, drag (about 2 s here); when a slow machine
    # takes longer, the moved post is simply due at once.
    lead = timedelta(seconds=12)
    zone = working_zone(lead)
    context = await browser.new_context(
        base_url=live.url, viewport={"width": 1400, "height": 950}, timezone_id=zone.key
    )
    context.set_default_timeout(20_000)
    errors = watch(context)
    try:
        page = await context.new_page()
        await sign_up(page, "maya@example.com", name="Maya", org="Maya Media")
        async with FakeMastodon() as masto:
            await connect_mastodon(page, masto)

            # ---- compose -------------------------------------------------------------
            await page.get_by_role("link", name="New post").click()
            await page.wait_for_url("**/compose")
            await page.get_by_label("Alice M").check()
            await page.get_by_label("Post text", exact=True).fill("Launch day! Thread below 🧵")
            counter = page.locator(".part").first.locator(".counter")
            await expect(counter).to_have_text("Alice M 26/500")
            await page.get_by_role("button", name="Add a part to the thread").click()
            await page.get_by_label("Part 2 text", exact=True).fill("Second part of the thread.")

            await page.get_by_role("button", name="Add media to post").click()
            media = page.get_by_role("dialog", name="Add media")
            await media.locator("[data-upload]").set_input_files(
                files=[{"name": "launch.png", "mimeType": "image/png", "buffer": png_bytes()}]
            )
            await expect(media.get_by_text("Uploaded")).to_be_visible()
            await media.get_by_role("button", name="Attach 1").click()
            await page.get_by_label("Alt text of launch.png").fill("A blue square")

            due_today = datetime.now(UTC) + lead
            tomorrow = (due_today + timedelta(days=1)).astimezone(zone)
            await page.get_by_label("Date and time").fill(tomorrow.strftime("%Y-%m-%dT%H:%M:%S"))
            await page.get_by_role("button", name="Use the next free slot of Alice M").wait_for()
            await screenshot(page, "08-composer")
            await page.get_by_role("button", name="Add to calendar").click()

            # ---- the week view -------------------------------------------------------
            await page.wait_for_url("**/calendar?view=week*")
            tomorrow_col = page.locator(f'[data-day="{tomorrow.date().isoformat()}"]')
            chip = tomorrow_col.locator(".post-chip")
            await expect(chip).to_have_count(1)
            await expect(chip).to_contain_text("Scheduled")
            await expect(chip).to_contain_text(tomorrow.strftime("%H:%M"))
            await expect(page.locator("[data-now-line]")).to_be_visible()
            await screenshot(page, "09-calendar-week")
            (post, reply) = await heads(live)
            assert post.state == State.QUEUE and reply.parent_post_id == post.id
            assert abs((post.publish_date - (due_today + timedelta(days=1))).total_seconds()) < 1
            assert post.image and post.image[0]["alt"] == "A blue square"

            # ---- drag to today, undo, drag again -------------------------------------
            today = datetime.now(UTC).astimezone(zone).date()
            slot = page.locator(
                f'[data-day="{today.isoformat()}"] .cal-slot[data-hour="{tomorrow.hour}"]'
            )
            await chip.drag_to(slot)
            toast = page.locator("#toast")
            await expect(toast).to_contain_text("Moved to")
            await expect(slot.locator(".post-chip")).to_have_count(1)
            await toast.get_by_role("button", name="Undo").click()
            await expect(tomorrow_col.locator(".post-chip")).to_have_count(1)
            await expect(toast).to_contain_text("Move undone")
            (post, _) = await heads(live)
            assert post.publish_date.astimezone(zone).date() == tomorrow.date()

            await tomorrow_col.locator(".post-chip").drag_to(slot)
            await expect(slot.locator(".post-chip")).to_have_count(1)
            (post, reply) = await heads(live)
            assert abs((post.publish_date - due_today).total_seconds()) < 1
            assert post.state == State.QUEUE

            # ---- it publishes at the new time ----------------------------------------
            deadline = time.monotonic() + 60
            while len(masto.statuses) < 2:
                assert time.monotonic() < deadline, "the thread was not published in time"
                await asyncio.sleep(0.25)
            published_at = datetime.now(UTC)
            assert published_at >= due_today - timedelta(seconds=1), "published before its time"
            statuses = sorted(masto.statuses.values(), key=lambda s: int(s["id"]))
            assert statuses[0]["content"] == "<p>Launch day! Thread below 🧵</p>"
            assert statuses[1]["in_reply_to_id"] == statuses[0]["id"]
            (attached,) = masto.media.values()
            assert attached["description"] == "A blue square"
            assert attached["data"] == png_bytes()

            for _ in range(40):
                (post, reply) = await heads(live)
                if post.state == State.PUBLISHED and reply.state == State.PUBLISHED:
                    break
                await asyncio.sleep(0.25)
            assert post.release_url == statuses[0]["url"]

            # ---- the calendar shows it published with its link -----------------------
            await page.goto(f"/calendar?view=week&date={today.isoformat()}")
            chip = page.locator(f'[data-day="{today.isoformat()}"] .post-chip')
            await expect(chip).to_contain_text("Published")
            await expect(chip).to_have_attribute("data-release-url", post.release_url)
            await chip.click()
            peek = page.get_by_role("dialog")
            link = peek.get_by_role("link", name="View the published post")
            await expect(link).to_have_attribute("href", post.release_url)
            await screenshot(page, "10-calendar-published")
            await peek.get_by_role("link", name="Details").click()
            await page.wait_for_url(f"**/posts/{post.id}")
            await expect(page.locator("[data-release]").first).to_have_attribute(
                "href", post.release_url
            )
            await page.get_by_label("Add a comment").fill("Looks great in the feed.")
            await page.get_by_role("button", name="Comment").click()
            await expect(page.get_by_text("Looks great in the feed.")).to_be_visible()
            await screenshot(page, "11-post-page")

            await page.goto(f"/calendar?view=month&date={today.isoformat()}")
            await expect(page.locator(".post-chip.state-published")).to_have_count(1)
            await screenshot(page, "12-calendar-month")
            await page.goto(f"/calendar?view=list&date={today.isoformat()}")
            await expect(page.get_by_role("link", name="View on Alice M")).to_have_attribute(
                "href", post.release_url
            )
            await screenshot(page, "13-calendar-list")
        assert not errors, errors
    finally:
        await context.close()
