"""In a real browser: every control of every page has a label and can be reached with the
keyboard, including those in dialogs and those the composer draws as it is used."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from tests.channels.factories import make_channel
from tests.conftest import make_tenant
from tests.web.conftest import LiveApp, png, schedule_post, signed_in_context, watch

pytestmark = pytest.mark.browser

#: Controls without an accessible name, and clickable things the keyboard cannot reach.
PROBLEMS_JS = """
() => {
  const text = (node) => (node ? (node.innerText || node.textContent || "").trim() : "");
  const named = (el) => {
    if ((el.getAttribute("aria-label") || "").trim()) return true;
    const by = el.getAttribute("aria-labelledby");
    if (by && by.split(/\\s+/).some((id) => text(document.getElementById(id)))) return true;
    if (el.labels && Array.from(el.labels).some((l) => text(l))) return true;
    if (el.matches("button, a, [role=button], summary")) {
      if (text(el)) return true;
      if (Array.from(el.querySelectorAll("img[alt]")).some((i) => i.alt.trim())) return true;
    }
    return !!(el.getAttribute("title") || "").trim();
  };
  const describe = (el) => el.outerHTML.slice(0, 160);
  const out = [];
  const controls =
    "input:not([type=hidden]), select, textarea, button, a[href], [role=button], summary";
  document.querySelectorAll(controls).forEach((el) => {
    if (!named(el)) out.push("no label: " + describe(el));
    const tabindex = el.getAttribute("tabindex");
    if (tabindex !== null && Number(tabindex) > 0) out.push("positive tabindex: " + describe(el));
    if (el.matches("[role=button]") && tabindex === null) {
      out.push("not focusable: " + describe(el));
    }
  });
  document.querySelectorAll("[onclick], [draggable=true]").forEach((el) => {
    if (!el.matches(controls) && el.getAttribute("tabindex") === null) {
      out.push("mouse only: " + describe(el));
    }
  });
  return out;
}
"""


async def _check(page: Any, path: str) -> list[str]:
    if path:
        response = await page.goto(path)
        assert response is not None and response.status == 200, path
    return [f"{path or page.url}: {p}" for p in await page.evaluate(PROBLEMS_JS)]


async def test_every_control_is_labelled_and_keyboard_reachable(
    browser: Any, live: LiveApp
) -> None:
    tenant = await make_tenant(live.database, org_name="Labels Co")
    async with live.database.session() as session:
        channel = await make_channel(session, tenant.org_id, name="Sky Lab", provider="bluesky")
        await make_channel(session, tenant.org_id, name="Reddit Lab", provider="reddit")
        channel_id = channel.id
    post_id = await schedule_post(
        live.database, tenant, channel_id, "Labelled", datetime.now(UTC) + timedelta(hours=3)
    )
    async with httpx.AsyncClient(base_url=live.url) as http:
        uploaded = await http.post(
            "/api/media",
            files={"file": ("dot.png", png((10, 90, 160), (20, 20)), "image/png")},
            headers=tenant.headers,
        )
        assert uploaded.status_code == 201, uploaded.text
        hook = await http.post(
            "/api/webhooks",
            json={"name": "CRM", "url": "https://93.184.215.14/hook", "events": ["post.published"]},
            headers=tenant.headers,
        )
        assert hook.status_code in (200, 201), hook.text

    problems: list[str] = []
    context, errors = await signed_in_context(browser, live, tenant)
    try:
        page = await context.new_page()
        for path in (
            "/calendar",
            "/calendar?view=month",
            "/calendar?view=day",
            "/calendar?view=list",
            "/channels",
            "/media",
            f"/posts/{post_id}",
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
        ):
            problems += await _check(page, path)

        # The composer, as it grows: channels picked, a reply, media, per-channel settings.
        problems += await _check(page, "/compose")
        await page.locator("[data-channel-pick]").nth(0).check()
        await page.locator("[data-channel-pick]").nth(1).check()
        await page.get_by_role("button", name="Add a part to the thread").click()
        await page.get_by_role("button", name="Add media to post").click()
        dialog = page.get_by_role("dialog", name="Add media")
        await dialog.get_by_role("button", name="dot.png").click()
        problems += await _check(page, "")
        await dialog.get_by_role("button", name="Attach 1").click()
        for summary in await page.locator("[data-channel-custom] summary").all():
            await summary.click()
        await expect(page.locator("[data-setting]").first).to_be_visible()
        await page.get_by_label("Use different text on Sky Lab").check()
        await expect(page.get_by_label("Post text on Sky Lab", exact=True)).to_be_visible()
        problems += await _check(page, "")
    finally:
        await context.close()

    signed_out = await browser.new_context(base_url=live.url)
    errors += watch(signed_out)
    try:
        page = await signed_out.new_page()
        for path in ("/login", "/signup", "/forgot-password", "/reset-password?token=abc"):
            problems += await _check(page, path)
    finally:
        await signed_out.close()
    assert not problems, "\n".join(problems)
    assert not errors, errors
