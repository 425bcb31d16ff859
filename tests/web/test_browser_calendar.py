"""In a real browser, the calendar beyond the happy path: the day view, moving by period,
filtering by customer and by channel, an errored post's message on hover and on click, moving
a post from its summary with the keyboard, deleting it, and starting a post from an empty hour."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import expect
from sqlalchemy import select, update

from tests.channels.factories import make_channel
from tests.conftest import make_tenant
from tests.web.conftest import LiveApp, schedule_post, signed_in_context
from tidings.core.enums import State
from tidings.orgs.models import Customer
from tidings.posts.models import Post

pytestmark = pytest.mark.browser

ZONE = ZoneInfo("Europe/Paris")
ERROR = "Rate limit exceeded: try again in 15 minutes"


async def _set(live: LiveApp, post_id: str, **values: Any) -> None:
    async with live.database.session() as session:
        await session.execute(update(Post).where(Post.id == post_id).values(**values))


async def _row(live: LiveApp, post_id: str) -> Post:
    async with live.database.session() as session:
        query = select(Post).where(Post.id == post_id).execution_options(include_deleted=True)
        return (await session.execute(query)).scalar_one()


def _wednesday_in_two_weeks() -> date:
    today = datetime.now(UTC).astimezone(ZONE).date()
    later = today + timedelta(days=14)
    return later + timedelta(days=(2 - later.weekday()) % 7)


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=ZONE)


async def test_views_navigation_filters_errors_and_moves(browser: Any, live: LiveApp) -> None:
    tenant = await make_tenant(live.database, org_name="Agency")
    async with live.database.session() as session:
        acme = Customer(org_id=tenant.org_id, name="Acme")
        globex = Customer(org_id=tenant.org_id, name="Globex")
        session.add_all([acme, globex])
        await session.flush()
        sky = await make_channel(
            session, tenant.org_id, name="Acme Sky", provider="bluesky", customer_id=acme.id
        )
        masto = await make_channel(
            session, tenant.org_id, name="Globex Masto", provider="mastodon", customer_id=globex.id
        )
        sky_id, masto_id, globex_id = sky.id, masto.id, globex.id
    wed = _wednesday_in_two_weeks()
    queued = await schedule_post(
        live.database, tenant, sky_id, "Acme launch teaser", _at(wed, 10, 15)
    )
    failed = await schedule_post(
        live.database, tenant, masto_id, "Globex weekly digest", _at(wed, 14)
    )
    published = await schedule_post(
        live.database, tenant, sky_id, "Acme thank-you note", _at(wed, 9) + timedelta(1)
    )
    await _set(live, failed, state=State.ERROR, error=ERROR)
    await _set(
        live, published, state=State.PUBLISHED, release_url="https://bsky.app/profile/a/post/1"
    )

    context, problems = await signed_in_context(browser, live, tenant, zone=ZONE.key)
    try:
        page = await context.new_page()
        await page.goto(f"/calendar?date={wed.isoformat()}")
        chips = page.locator(".post-chip")
        await expect(chips).to_have_count(3)
        # Each post shows its channel's avatar, its time and its state.
        error_chip = page.locator(f'.post-chip[data-post="{failed}"]')
        await expect(error_chip.locator(".avatar")).to_have_count(1)
        await expect(error_chip.locator(".chip-time")).to_have_text("14:00")
        await expect(error_chip.locator(".chip-state")).to_have_text("Error")
        await expect(page.locator(f'.post-chip[data-post="{queued}"] .chip-time')).to_have_text(
            "10:15"
        )

        # The platform's message: on hover (the chip's tooltip) and on click (its summary).
        await error_chip.hover()
        await expect(error_chip).to_have_attribute("title", ERROR)
        await error_chip.click()
        peek = page.get_by_role("dialog")
        await expect(peek.locator("[data-peek-error]")).to_have_text(f"The platform said: {ERROR}")
        await expect(peek.locator("[data-peek-state]")).to_have_text("Error")
        await peek.get_by_role("button", name="Close").click()
        await expect(peek).to_be_hidden()

        # Moving by period: next week is empty, previous comes back, Today goes to today.
        await page.get_by_role("link", name="Next week").click()
        await page.wait_for_url(f"**date={(wed + timedelta(7)).isoformat()}*")
        await expect(page.locator(".post-chip")).to_have_count(0)
        await page.get_by_role("link", name="Previous week").click()
        await page.wait_for_url(f"**date={wed.isoformat()}*")
        await expect(page.locator(".post-chip")).to_have_count(3)

        # The day view shows one day; its arrows move by a day.
        await (
            page.get_by_role("navigation", name="Calendar view")
            .get_by_role("link", name="Day", exact=True)
            .click()
        )
        await page.wait_for_url("**view=day*")
        await expect(page.locator("[data-day]")).to_have_count(1)
        await expect(page.locator(".post-chip")).to_have_count(2)
        await page.get_by_role("link", name="Next day").click()
        await page.wait_for_url(f"**date={(wed + timedelta(1)).isoformat()}*")
        await expect(page.locator(".post-chip")).to_have_count(1)
        await expect(page.locator(".post-chip")).to_contain_text("Published")

        # Filters (they apply on change): a customer, then one channel.
        await page.goto(f"/calendar?view=week&date={wed.isoformat()}")
        await page.get_by_label("Customer", exact=True).select_option(label="Globex")
        await page.wait_for_url(f"**customer={globex_id}*")
        await expect(page.locator(".post-chip")).to_have_count(1)
        await expect(page.locator(".post-chip")).to_contain_text("Error")
        # The channel list follows the customer.
        await expect(page.get_by_label("Channel", exact=True).locator("option")).to_have_text(
            ["All channels", "Globex Masto"]
        )
        await page.get_by_label("Customer", exact=True).select_option(label="All customers")
        await expect(page.locator(".post-chip")).to_have_count(3)
        await page.get_by_label("Channel", exact=True).select_option(label="Acme Sky")
        await page.wait_for_url(f"**channel={sky_id}*")
        await expect(page.locator(".post-chip")).to_have_count(2)
        assert "Globex weekly digest" not in await page.content()

        # Move to, from the summary, by keyboard: the typed time is in the user's zone.
        await page.locator(f'.post-chip[data-post="{queued}"]').focus()
        await page.keyboard.press("Enter")
        await expect(peek).to_be_visible()
        await peek.get_by_label("Move to").fill(_at(wed, 16, 45).strftime("%Y-%m-%dT%H:%M:%S"))
        await peek.get_by_label("Move to").press("Enter")
        moved = page.locator(f'[data-day="{wed.isoformat()}"] .cal-slot[data-hour="16"] .post-chip')
        await expect(moved).to_have_count(1)
        await expect(moved.locator(".chip-time")).to_have_text("16:45")
        assert (await _row(live, queued)).publish_date == _at(wed, 16, 45)

        # Delete from the summary (after confirming).
        await moved.click()
        page.once("dialog", lambda d: d.accept())
        await peek.get_by_role("button", name="Delete").click()
        await expect(page.locator(f'.post-chip[data-post="{queued}"]')).to_have_count(0)
        assert (await _row(live, queued)).deleted_at is not None

        # A double click on an empty hour starts a post at that time.
        await page.locator(f'[data-day="{wed.isoformat()}"] .cal-slot[data-hour="18"]').dblclick()
        await page.wait_for_url("**/compose?date=*")
        await expect(page.get_by_label("Date and time")).to_have_value(f"{wed.isoformat()}T18:00")
    finally:
        await context.close()
    assert not problems, problems
