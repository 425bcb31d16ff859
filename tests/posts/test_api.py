"""The posts app API (rolled-back database): compose, validate, edit, read, delete."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import Tenant
from tests.posts.factories import make_channel
from tidings.core.enums import State
from tidings.posts.models import Post, Tags
from tidings.posts.scheduling import alarm_lock

FUTURE = datetime(2031, 3, 10, 9, 30, tzinfo=UTC)


def body(channels: list[str], *parts: str, **extra: Any) -> dict[str, Any]:
    values = [{"content": p, "image": [], "delay": 5 if i else 0} for i, p in enumerate(parts)]
    return {
        "type": "schedule",
        "date": FUTURE.isoformat(),
        "shortLink": False,
        "tags": [],
        "posts": [{"integration": {"id": c}, "settings": {}, "value": values} for c in channels],
        **extra,
    }


async def jobs_for(db: AsyncSession, post_id: str) -> list[str]:
    rows = await db.execute(
        text(
            "SELECT queueing_lock FROM procrastinate_jobs "
            "WHERE status = 'todo' AND args->>'post_id' = :p"
        ),
        {"p": post_id},
    )
    return [r[0] for r in rows]


async def test_create_schedule_read_and_list(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    a = await make_channel(db, tenant.org_id, name="Masto A")
    b = await make_channel(db, tenant.org_id, provider="bluesky", name="Sky B")
    payload = body([a.id, b.id], "Launch day!", "More details")
    payload["tags"] = [{"value": "launch", "label": "Launch"}, "News"]
    response = await client.post("/api/posts", json=payload, headers=tenant.headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert [p["integration"] for p in created["posts"]] == [a.id, b.id]
    group = created["group"]

    rows = (await db.execute(select(Post).where(Post.group == group))).scalars().all()
    assert len(rows) == 4 and {r.state for r in rows} == {State.QUEUE}
    head_a = next(r for r in rows if r.id == created["posts"][0]["postId"])
    assert head_a.parent_post_id is None and head_a.publish_date == FUTURE
    reply_a = next(r for r in rows if r.parent_post_id == head_a.id)
    assert reply_a.content == "More details" and reply_a.delay == 5
    # The publish job is deferred with the post, at its date, for the head only.
    assert await jobs_for(db, head_a.id) == [alarm_lock(head_a.id, FUTURE)]
    assert await jobs_for(db, reply_a.id) == []
    tags = (await db.execute(select(Tags).where(Tags.org_id == tenant.org_id))).scalars().all()
    assert sorted(t.name for t in tags) == ["Launch", "News"]
    # Created with a color of the palette (a name keeps its color).
    assert all(re.fullmatch(r"#[0-9A-Fa-f]{6}", t.color) for t in tags)

    read = await client.get(f"/api/posts/group/{group}", headers=tenant.headers)
    assert read.status_code == 200, read.text
    out = read.json()
    assert out["state"] == "QUEUE" and len(out["posts"]) == 2
    thread = next(t for t in out["posts"] if t["integration"]["id"] == a.id)
    assert [p["content"] for p in thread["value"]] == ["Launch day!", "More details"]
    assert sorted(t["name"] for t in out["tags"]) == ["Launch", "News"]
    by_post = await client.get(f"/api/posts/{head_a.id}", headers=tenant.headers)
    assert by_post.json()["group"] == group

    listed = await client.get(
        "/api/posts",
        params={"startDate": "2031-03-01T00:00:00Z", "endDate": "2031-04-01T00:00:00Z"},
        headers=tenant.headers,
    )
    assert listed.status_code == 200, listed.text
    posts = listed.json()["posts"]
    assert {p["id"] for p in posts} == {c["postId"] for c in created["posts"]}
    assert {p["integration"]["providerIdentifier"] for p in posts} == {"mastodon", "bluesky"}
    assert "releaseURL" in posts[0]


async def test_validation_names_channel_and_rule_and_stores_nothing(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    a = await make_channel(db, tenant.org_id, name="Masto A")
    b = await make_channel(db, tenant.org_id, provider="bluesky", name="Sky B")
    response = await client.post(
        "/api/posts", json=body([a.id, b.id], "x" * 400), headers=tenant.headers
    )
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["channel"] == b.id and error["rule"] == "too_long"
    assert "Sky B" in error["message"] and error["field"] == "posts[1].value[0].content"
    count = await db.scalar(select(func.count()).select_from(Post))
    assert count == 0

    # Settings are checked with the channel's settings model.
    bad = body([a.id], "hello")
    bad["posts"][0]["settings"] = {"__type": "mastodon", "visibility": "everyone"}
    response = await client.post("/api/posts", json=bad, headers=tenant.headers)
    assert response.status_code == 400 and response.json()["rule"] == "settings"
    assert response.json()["field"] == "posts[0].settings"

    # Empty content fails even for drafts; drafts skip the provider's other rules.
    empty = body([a.id], "   ") | {"type": "draft"}
    response = await client.post("/api/posts", json=empty, headers=tenant.headers)
    assert response.status_code == 400 and response.json()["rule"] == "empty"
    long_draft = body([a.id], "y" * 900) | {"type": "draft"}
    response = await client.post("/api/posts", json=long_draft, headers=tenant.headers)
    assert response.status_code == 201, response.text


async def test_a_thread_to_a_channel_without_replies_is_refused_before_storing(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    pin = await make_channel(db, tenant.org_id, provider="pinterest", name="Pins P")
    thread = body([pin.id], "A pin", "A reply")
    thread["posts"][0]["settings"] = {"board": "board-1"}
    response = await client.post("/api/posts", json=thread, headers=tenant.headers)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["channel"] == pin.id and error["rule"] == "replies"
    assert "Pinterest does not publish replies" in error["message"]
    assert await db.scalar(select(func.count()).select_from(Post)) == 0


async def test_unknown_and_foreign_channels_are_404(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, db: AsyncSession
) -> None:
    theirs = await make_channel(db, other_tenant.org_id, name="Theirs")
    for channel_id in (theirs.id, "nope"):
        response = await client.post(
            "/api/posts", json=body([channel_id], "hi"), headers=tenant.headers
        )
        assert response.status_code == 404, response.text
        assert response.json()["field"] == "posts[0].integration.id"


async def test_unavailable_channel_refuses_schedule_but_keeps_drafts(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    channel = await make_channel(db, tenant.org_id, name="Broken", refresh_needed=True)
    response = await client.post(
        "/api/posts", json=body([channel.id], "hi"), headers=tenant.headers
    )
    assert response.status_code == 400
    assert response.json()["rule"] == "channel_unavailable"
    assert "reconnect" in response.json()["message"]
    draft = body([channel.id], "hi") | {"type": "draft"}
    assert (await client.post("/api/posts", json=draft, headers=tenant.headers)).status_code == 201


async def test_dates_beyond_any_plan_are_422_never_5xx(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    """A date in year 1 or 9999 is refused (422) naming its field, instead of overflowing the date
    arithmetic behind it (alarm lead, reply delays, recurrences, a year of slots)."""
    channel = await make_channel(db, tenant.org_id)
    recurring = body([channel.id], "daily", "reply") | {"inter": 1, "timezone": "Europe/Berlin"}
    created = await client.post("/api/posts", json=recurring, headers=tenant.headers)
    assert created.status_code == 201, created.text
    group = created.json()["group"]
    h = tenant.headers

    async def refused(response: httpx.Response, field: str) -> None:
        assert response.status_code == 422, response.text
        assert response.json()["field"] == field

    for date in ("0001-01-01T00:00:00Z", "9999-12-31T23:58:00Z", "1969-12-31T23:59:59-01:00"):
        await refused(
            await client.post(
                "/api/posts", json=body([channel.id], "x", "y") | {"date": date}, headers=h
            ),
            "date",
        )
        await refused(
            await client.put(f"/api/posts/group/{group}/date", json={"date": date}, headers=h),
            "date",
        )
        await refused(
            await client.post(
                f"/api/posts/group/{group}/duplicate",
                json={"type": "schedule", "date": date},
                headers=h,
            ),
            "date",
        )
        await refused(
            await client.get(
                "/api/posts/find-slot", params={"integration": channel.id, "after": date}, headers=h
            ),
            "after",
        )
    far = {"startDate": "9999-12-01T00:00:00Z", "endDate": "9999-12-31T00:00:00Z"}
    await refused(await client.get("/api/posts", params=far, headers=h), "startDate")
    early = {"startDate": "1960-01-01T00:00:00Z", "endDate": "1960-02-01T00:00:00Z"}
    await refused(await client.get("/api/posts", params=early, headers=h), "startDate")
    # The edges of the range work, with recurrences, delays and a year of slots after them.
    edge = body([channel.id], "late", "later") | {"date": "8999-12-31T23:00:00Z", "inter": 3650}
    edge["posts"][0]["value"][1]["delay"] = 43_200
    assert (await client.post("/api/posts", json=edge, headers=h)).status_code == 201
    late = {"startDate": "8999-12-01T00:00:00Z", "endDate": "8999-12-31T23:59:59Z"}
    listed = await client.get("/api/posts", params=late, headers=h)
    assert listed.status_code == 200, listed.text
    contents = [p["content"] for p in listed.json()["posts"]]
    assert contents.count("daily") == 31 and contents[-1] == "late"
    slot = await client.get(
        "/api/posts/find-slot",
        params={"integration": channel.id, "after": "8999-12-31T12:00:00Z"},
        headers=h,
    )
    assert slot.status_code == 200, slot.text
    assert slot.json()["date"] == "9000-01-01T02:00:00Z"
