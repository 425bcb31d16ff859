"""In a real browser: the counters count as each platform does (checked against the Python
providers), an over-length post is red and cannot be scheduled, scheduling works with the
keyboard alone, and another organization's posts never appear."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import expect
from sqlalchemy import select

from tests.channels.factories import make_channel
from tests.conftest import Tenant, make_tenant
from tests.web.conftest import LiveApp, screenshot, signed_in_context
from tidings.channels.providers import all_providers
from tidings.channels.providers.bluesky import grapheme_count
from tidings.channels.providers.mastodon import mastodon_length
from tidings.channels.providers.telegram import utf16_length
from tidings.channels.providers.x import weighted_length
from tidings.channels.service import build
from tidings.core.enums import State
from tidings.core.tenancy import OrgId
from tidings.posts import service as posts_service
from tidings.posts.models import Post
from tidings.posts.schemas import CreatePostsRequest

pytestmark = pytest.mark.browser

COUNTING_JS = Path(__file__).resolve().parents[2] / "src/tidings/web/static/counting.js"

SAMPLES = [
    "",
    "hello world",
    "héllo",  # NFC
    "he\u0301llo",  # NFD: X normalises, the others count the combining mark as it comes
    "日本語のテキストです",
    "👍🏽 thumbs up",
    "👨‍👩‍👧‍👦 family",
    "🇫🇷🇩🇪 flags",
    "see https://example.com/some/very/long/path?x=1&y=2 now",
    "bare example.com and www.test.io/path.",
    "ends with a link https://tidings.app/x).",
    "@alice@mastodon.social hello @bob",
    "mail a@b.com, not a link",
    "tabs\tand\nnew lines",
    "\u03a9\u2248\u00e7\u221a\u222b\u02dc\u00b5\u2264\u2265\u00f7",  # symbols
    "\u2014 \u201cq\u201d \u2026 \u2018s\u2019",  # typographic punctuation
    "\uff26\uff35\uff2c\uff2c\uff37\uff29\uff24\uff34\uff28 \uff54\uff45\uff58\uff54",  # fullwidth
    "mixed 中文 and English https://a.co/b",
    "😀" * 12,
    "Z̤͔ͧ̑̓ zalgo",
    "a" * 300,
    "http://x.org/a_(b)_c. end",
]

PYTHON = {
    "code_points": len,
    "utf16": utf16_length,
    "graphemes": grapheme_count,
    "mastodon": mastodon_length,
    "x_weighted": weighted_length,
}


async def test_counters_count_like_the_providers(browser: Any) -> None:
    page = await browser.new_page()
    try:
        await page.set_content("<!doctype html><title>counting</title>")
        await page.add_script_tag(path=str(COUNTING_JS))
        kinds = await page.evaluate("window.TidingsCounting.kinds")
        assert sorted(kinds) == sorted(PYTHON)
        for kind, count in PYTHON.items():
            got = await page.evaluate(
                "([kind, samples]) => samples.map(s => window.TidingsCounting.count(kind, s))",
                [kind, SAMPLES],
            )
            assert got == [count(s) for s in SAMPLES], kind
        # Every provider names a counting the browser knows, and it is really how it counts.
        async with httpx.AsyncClient() as http:
            for cls in all_providers():
                provider = build(cls.identifier, http)
                assert cls.text_counting in kinds, cls.identifier
                got = await page.evaluate(
                    "([kind, samples]) => samples.map(s => window.TidingsCounting.count(kind, s))",
                    [cls.text_counting, SAMPLES],
                )
                assert got == [provider.text_length(s) for s in SAMPLES], cls.identifier
    finally:
        await page.close()


async def _channels(live: LiveApp, tenant: Tenant) -> tuple[str, str]:
    async with live.database.session() as session:
        sky = await make_channel(session, tenant.org_id, name="Sky Alice", provider="bluesky")
        x = await make_channel(session, tenant.org_id, name="X Alice", provider="x")
        return sky.id, x.id


async def _posts(live: LiveApp, org_id: str) -> list[Post]:
    async with live.database.session() as session:
        rows = await session.execute(
            select(Post).where(Post.organization_id == org_id).order_by(Post.integration_id)
        )
        return list(rows.scalars())


async def test_over_length_is_red_and_cannot_be_scheduled(browser: Any, live: LiveApp) -> None:
    tenant = await make_tenant(live.database, org_name="Counting Co")
    sky_id, x_id = await _channels(live, tenant)
    context, problems = await signed_in_context(browser, live, tenant)
    try:
        page = await context.new_page()
        await page.goto("/compose")
        await page.get_by_label("Sky Alice").check()
        await page.get_by_label("X Alice").check()
        # 150 CJK characters: 150 of Bluesky's 300, but 300 of X's 280 (they weigh 2 there).
        await page.get_by_label("Post text", exact=True).fill("日本語" * 50)
        x_counter = page.locator(f'.counter[data-counter-for="{x_id}"]')
        sky_counter = page.locator(f'.counter[data-counter-for="{sky_id}"]')
        await expect(x_counter).to_have_text("X Alice 300/280")
        await expect(x_counter).to_have_class("counter over")
        await expect(sky_counter).to_have_text("Sky Alice 150/300")
        await expect(sky_counter).to_have_class("counter")
        await expect(page.get_by_label("Post text", exact=True)).to_have_attribute(
            "aria-invalid", "true"
        )
        await expect(page.get_by_text("Too long for X Alice (X): 300 of 280")).to_be_visible()
        in_a_day = (datetime.now(UTC) + timedelta(days=1)).astimezone()
        await page.get_by_label("Date and time").fill(in_a_day.strftime("%Y-%m-%dT%H:%M"))
        await page.get_by_role("button", name="Add to calendar").click()
        summary = page.locator("[data-summary]")
        await expect(summary).to_be_visible()
        await expect(summary).to_contain_text("Too long for X Alice")
        await screenshot(page, "14-composer-over-length")
        assert page.url.endswith("/compose")
        assert await _posts(live, tenant.org_id) == []

        # X gets its own, shorter text; then it fits everywhere and is scheduled.
        await page.get_by_text("Customize for X Alice").click()
        await page.get_by_label("Use different text on X Alice").check()
        await page.get_by_label("Post text on X Alice", exact=True).fill("日本語" * 10)
        await expect(x_counter).to_have_text("X Alice 60/280")
        await expect(summary).to_be_hidden()
        await page.get_by_role("button", name="Add to calendar").click()
        await page.wait_for_url("**/calendar?view=week*")
        rows = await _posts(live, tenant.org_id)
        contents = {r.integration_id: r.content for r in rows}
        assert contents == {sky_id: "日本語" * 50, x_id: "日本語" * 10}
        assert {r.state for r in rows} == {State.QUEUE}

        # Editing the group opens the same composer, with X's own text kept apart.
        await page.locator(".post-chip").first.click()
        await page.get_by_role("dialog").get_by_role("link", name="Edit").click()
        await page.wait_for_url("**/compose?group=*")
        await expect(page.get_by_role("heading", name="Edit post")).to_be_visible()
        await expect(page.locator(f"#pick-{sky_id}")).to_be_checked()
        await expect(page.get_by_label("Use different text on X Alice")).to_be_checked()
        await expect(page.get_by_label("Post text on X Alice", exact=True)).to_have_value(
            "日本語" * 10
        )
        await page.get_by_label("Post text", exact=True).fill("Edited for Bluesky")
        await page.get_by_role("button", name="Update").click()
        await page.wait_for_url("**/calendar?view=week*")
        edited = await _posts(live, tenant.org_id)
        assert {r.id for r in edited} == {r.id for r in rows}
        assert {r.integration_id: r.content for r in edited} == {
            sky_id: "Edited for Bluesky",
            x_id: "日本語" * 10,
        }
        assert {r.group for r in edited} == {rows[0].group}
    finally:
        await context.close()
    assert not problems, problems


async def _tab_to(page: Any, selector: str, *, limit: int = 80) -> None:
    """Press Tab until the focused element matches ``selector`` (the keyboard's way there)."""
    for _ in range(limit):
        if await page.evaluate("(s) => document.activeElement?.matches(s) ?? false", selector):
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


async def test_scheduling_with_the_keyboard_alone(browser: Any, live: LiveApp) -> None:
    tenant = await make_tenant(live.database, org_name="Keys Ltd")
    sky_id, _ = await _channels(live, tenant)
    context, problems = await signed_in_context(browser, live, tenant, zone="America/New_York")
    try:
        page = await context.new_page()
        await page.goto("/calendar")
        await page.wait_for_function("document.body.dataset.timezone === 'America/New_York'")
        await _tab_to(page, "#new-post")
        await page.keyboard.press("Enter")
        await page.wait_for_url("**/compose")
        await _tab_to(page, f"#pick-{sky_id}")
        await page.keyboard.press("Space")
        await _tab_to(page, "#text-shared-0")
        await page.keyboard.type("Typed and scheduled without a mouse.")
        await _tab_to(page, "[data-slot-date]")
        slot = await page.evaluate("document.activeElement.dataset.slotDate")
        await page.keyboard.press("Enter")
        await _tab_to(page, '[data-submit="schedule"]')
        await page.keyboard.press("Enter")
        await page.wait_for_url("**/calendar?view=week*")
        (post,) = await _posts(live, tenant.org_id)
        assert post.content == "Typed and scheduled without a mouse."
        assert post.state == State.QUEUE
        assert post.publish_date == datetime.fromisoformat(slot.replace("Z", "+00:00"))
        # The post in the calendar opens with the keyboard too.
        await _tab_to(page, ".post-chip")
        await page.keyboard.press("Enter")
        peek = page.get_by_role("dialog")
        await expect(peek).to_be_visible()
        await expect(peek).to_contain_text("Typed and scheduled without a mouse.")
        await page.keyboard.press("Escape")
        await expect(peek).to_be_hidden()

        # A draft needs no date; it shows in the calendar as a draft.
        await page.goto(f"/compose?channel={sky_id}")
        await page.get_by_label("Post text", exact=True).fill("An idea for later")
        await page.get_by_role("button", name="Save as draft").click()
        await page.wait_for_url("**/calendar?view=week*")
        await expect(page.locator(".post-chip.state-draft")).to_contain_text("Draft")
        drafts = [p for p in await _posts(live, tenant.org_id) if p.state == State.DRAFT]
        assert [d.content for d in drafts] == ["An idea for later"]
    finally:
        await context.close()
    assert not problems, problems


async def _schedule(live: LiveApp, tenant: Tenant, channel_id: str, text: str) -> str:
    request = CreatePostsRequest.model_validate(
        {
            "type": "schedule",
            "date": (datetime.now(UTC) + timedelta(hours=2)).isoformat(),
            "posts": [{"integration": {"id": channel_id}, "value": [{"content": text}]}],
        }
    )
    async with live.database.session() as session:
        created = await posts_service.create_posts(session, OrgId(tenant.org_id), request)
    return created.group


async def test_another_organizations_posts_never_appear(browser: Any, live: LiveApp) -> None:
    mine = await make_tenant(live.database, org_name="Mine")
    theirs = await make_tenant(live.database, org_name="Theirs")
    my_channel, _ = await _channels(live, mine)
    their_channel, _ = await _channels(live, theirs)
    await _schedule(live, mine, my_channel, "Our own announcement")
    their_group = await _schedule(live, theirs, their_channel, "Their secret launch")
    (their_post,) = [
        p for p in await _posts(live, theirs.org_id) if p.integration_id == their_channel
    ]
    context, problems = await signed_in_context(browser, live, mine)
    try:
        page = await context.new_page()
        for view in ("week", "month", "day", "list"):
            await page.goto(f"/calendar?view={view}")
            if view != "day" or await page.locator(".post-chip").count():
                await expect(page.locator(".post-chip").first).to_contain_text("Scheduled")
            content = await page.content()
            assert "Their secret launch" not in content, view
            assert their_channel not in content, view
        # Filtering by their channel shows nothing of theirs (the filter is ignored).
        await page.goto(f"/calendar?view=list&channel={their_channel}")
        assert "Their secret launch" not in await page.content()
        await expect(page.get_by_text("Our own announcement")).to_be_visible()
        await screenshot(page, "15-calendar-isolated")
        # Their post and group are not found, in pages and through the API.
        response = await page.goto(f"/posts/{their_post.id}")
        assert response is not None and response.status == 404
        await expect(page.get_by_role("heading", name="This post does not exist")).to_be_visible()
        response = await page.goto(f"/compose?group={their_group}")
        assert response is not None and response.status == 404
        status = await page.evaluate(
            "(g) => fetch('/api/posts/group/' + g).then(r => r.status)", their_group
        )
        assert status == 404
        composer = await page.goto("/compose")
        assert composer is not None and composer.status == 200
        assert "Theirs" not in await page.content()
        assert their_channel not in await page.content()
    finally:
        await context.close()
    assert not problems, problems


async def test_composer_takes_every_provider(browser: Any, live: LiveApp) -> None:
    tenant = await make_tenant(live.database, org_name="Every Provider")
    async with live.database.session() as session:
        for cls in all_providers():
            await make_channel(
                session, tenant.org_id, name=f"On {cls.display_name}", provider=cls.identifier
            )
    context, problems = await signed_in_context(browser, live, tenant)
    try:
        page = await context.new_page()
        await page.goto("/compose")
        boxes = page.locator("[data-channel-pick]")
        count = await boxes.count()
        assert count == len(all_providers())
        for i in range(count):
            await boxes.nth(i).check()
        await page.get_by_label("Post text", exact=True).fill("One text for every platform")
        await expect(page.locator("[data-channel-custom]")).to_have_count(count)
        await expect(page.locator(".part .counter")).to_have_count(count)
        # Every provider's settings form opens (fields drawn from its settings schema).
        for summary in await page.locator("[data-channel-custom] summary").all():
            await summary.click()
        assert await page.locator("[data-setting]").count() > 0
        await screenshot(page, "21-composer-every-provider")
    finally:
        await context.close()
    assert not problems, problems
