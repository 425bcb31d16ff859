"""Recurring posts and find-slot, through the API, the service and a real worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.channels.providers.servers.mastodon import FakeMastodon
from tests.conftest import Tenant, make_tenant
from tests.posts.factories import make_channel, make_post
from tests.posts.helpers import add_mastodon_channel, eventually, running_workers
from tests.posts.test_engine_e2e import _published, create, iso, thread
from tidings.core.enums import State
from tidings.db import Database
from tidings.posts import engine
from tidings.posts.models import Post, Tags, TagsPosts
from tidings.posts.scheduling import ALARM_LEAD
from tidings.posts.timeplan import occurrence

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def z(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def test_calendar_expands_recurring_posts_at_wall_clock_time_across_dst(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    channel = await make_channel(db, tenant.org_id)
    response = await client.post(
        "/api/posts",
        json={
            "type": "schedule",
            "date": "2031-03-24T09:00:00+01:00",
            "inter": 7,
            "timezone": "Europe/Berlin",
            "tags": ["weekly"],
            "posts": [thread(channel.id, "Monday news")],
        },
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    post_id = response.json()["posts"][0]["postId"]
    listed = await client.get(
        "/api/posts",
        params={"startDate": "2031-03-20T00:00:00Z", "endDate": "2031-04-15T00:00:00Z"},
        headers=tenant.headers,
    )
    assert listed.status_code == 200, listed.text
    posts = listed.json()["posts"]
    assert [(p["publishDate"], p["occurrence"]) for p in posts] == [
        ("2031-03-24T08:00:00Z", False),
        ("2031-03-31T07:00:00Z", True),  # 09:00 CEST after the change of 30 March
        ("2031-04-07T07:00:00Z", True),
        ("2031-04-14T07:00:00Z", True),
    ]
    assert {p["id"] for p in posts} == {post_id}
    assert all(p["tags"][0]["name"] == "weekly" for p in posts)
    # Pages of two, following the cursor, give the same list.
    seen: list[str] = []
    cursor = None
    while True:
        params = {"startDate": "2031-03-20T00:00:00Z", "endDate": "2031-04-15T00:00:00Z"}
        params |= {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/api/posts", params=params, headers=tenant.headers)).json()
        seen += [p["publishDate"] for p in page["posts"]]
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert seen == [p["publishDate"] for p in posts]


async def test_next_occurrence_is_anchored_across_dst(db: AsyncSession, tenant: Tenant) -> None:
    channel = await make_channel(db, tenant.org_id)
    anchor = datetime(2031, 3, 24, 9, 0, tzinfo=BERLIN)
    head = await make_post(
        db,
        tenant.org_id,
        channel.id,
        publish_date=anchor,
        state=State.PUBLISHED,
        interval_in_days=7,
        timezone="Europe/Berlin",
        recurring_anchor=anchor,
    )
    reply = await make_post(
        db,
        tenant.org_id,
        channel.id,
        publish_date=anchor,
        group=head.group,
        parent_post_id=head.id,
        content="and a reply",
        delay=3,
    )
    tag = Tags(org_id=tenant.org_id, name="weekly", color="#123456")
    db.add(tag)
    await db.flush()
    db.add(TagsPosts(post_id=head.id, tag_id=tag.id))
    await db.flush()
    await engine.create_next_occurrence(db, head, after=utc(2031, 3, 24, 8, 0, 5))
    rows = (
        (await db.execute(select(Post).where(Post.group != head.group).order_by(Post.publish_date)))
        .scalars()
        .all()
    )
    new_head, new_reply = rows
    assert new_head.publish_date == utc(2031, 3, 31, 7, 0)  # Monday 09:00 CEST
    assert new_head.state == State.QUEUE and new_head.interval_in_days == 7
    assert new_head.recurring_anchor == anchor
    assert new_reply.parent_post_id == new_head.id and new_reply.content == reply.content
    assert new_reply.publish_date == new_head.publish_date + timedelta(minutes=3)
    tags = await db.execute(select(TagsPosts.tag_id).where(TagsPosts.post_id == new_head.id))
    assert list(tags.scalars()) == [tag.id]
    job = await db.scalar(
        text("SELECT scheduled_at FROM procrastinate_jobs WHERE args->>'post_id' = :p"),
        {"p": new_head.id},
    )
    assert job == new_head.publish_date - ALARM_LEAD
    # Running it twice (a retried outcome) creates nothing more.
    await engine.create_next_occurrence(db, head, after=utc(2031, 3, 24, 8, 0, 5))
    assert len((await db.execute(select(Post).where(Post.group == new_head.group))).all()) == 2


@pytest.mark.usefixtures("allow_private")
async def test_recurring_post_publishes_and_schedules_its_next_occurrence(
    fresh_database: Database,
) -> None:
    tenant = await make_tenant(fresh_database)
    async with FakeMastodon() as masto:
        channel = await add_mastodon_channel(fresh_database, tenant.org_id, masto)
        due = datetime.now(UTC) + timedelta(seconds=1)
        created = await create(
            fresh_database,
            tenant,
            {
                "type": "schedule",
                "date": iso(due),
                "inter": 7,
                "timezone": "America/New_York",
                "posts": [thread(channel, "Every week")],
            },
        )
        head_id = created["posts"][0]["postId"]
        async with running_workers(fresh_database):
            await eventually(lambda: _published(fresh_database, head_id))
        async with fresh_database.session() as session:
            upcoming = (
                (await session.execute(select(Post).where(Post.state == State.QUEUE)))
                .scalars()
                .all()
            )
        (nxt,) = upcoming
        assert nxt.group != created["group"] and nxt.content == "Every week"
        assert nxt.publish_date == occurrence(due, NEW_YORK, 7, 1)
        assert nxt.publish_date.astimezone(NEW_YORK).time() == due.astimezone(NEW_YORK).time()
        assert len(masto.statuses) == 1


@pytest.mark.usefixtures("allow_private")
async def test_recurring_post_after_downtime_publishes_once_and_resumes_from_now(
    fresh_database: Database,
) -> None:
    tenant = await make_tenant(fresh_database)
    async with FakeMastodon() as masto:
        channel = await add_mastodon_channel(fresh_database, tenant.org_id, masto)
        # Due three and a half days ago, daily: the worker was down meanwhile.
        missed = datetime.now(UTC) - timedelta(days=3, hours=12)
        created = await create(
            fresh_database,
            tenant,
            {
                "type": "schedule",
                "date": iso(missed),
                "inter": 1,
                "timezone": "Europe/Berlin",
                "posts": [thread(channel, "Daily digest")],
            },
        )
        async with running_workers(fresh_database):
            await eventually(lambda: _published(fresh_database, created["posts"][0]["postId"]))
            await eventually(lambda: len(masto.statuses) == 1)
        async with fresh_database.session() as session:
            upcoming = (
                (await session.execute(select(Post).where(Post.state == State.QUEUE)))
                .scalars()
                .all()
            )
        (nxt,) = upcoming
        now = datetime.now(UTC)
        assert now < nxt.publish_date <= now + timedelta(days=1)
        assert nxt.publish_date.astimezone(BERLIN).time() == missed.astimezone(BERLIN).time()
        assert len(masto.statuses) == 1, "missed occurrences are not published in a burst"


async def test_find_slot_from_posting_times_skips_taken_slots(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    channel = await make_channel(db, tenant.org_id, posting_times=[{"time": 120}, {"time": 400}])
    params = {"integration": channel.id, "after": "2031-03-30T01:00:00Z"}
    slot = await client.get("/api/posts/find-slot", params=params, headers=tenant.headers)
    assert slot.status_code == 200, slot.text
    assert slot.json()["date"] == "2031-03-30T02:00:00Z"
    await make_post(db, tenant.org_id, channel.id, publish_date=utc(2031, 3, 30, 2, 0))
    slot = await client.get("/api/posts/find-slot", params=params, headers=tenant.headers)
    assert slot.json()["date"] == "2031-03-30T06:40:00Z"


async def test_find_slot_from_a_set_across_dst_and_recurring_posts(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    channel = await make_channel(db, tenant.org_id)
    created = await client.post(
        "/api/posts/sets",
        json={
            "name": "Mornings",
            "timezone": "Europe/Berlin",
            "times": [{"day": 1, "time": "09:00"}, {"day": 3, "time": "14:00"}],
        },
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    set_id = created.json()["id"]

    async def slot(after: str) -> str:
        response = await client.get(
            "/api/posts/find-slot",
            params={"integration": channel.id, "set": set_id, "after": after},
            headers=tenant.headers,
        )
        assert response.status_code == 200, response.text
        return str(response.json()["date"])

    assert await slot("2031-03-23T12:00:00Z") == "2031-03-24T08:00:00Z"  # CET
    assert await slot("2031-03-30T12:00:00Z") == "2031-03-31T07:00:00Z"  # CEST
    # A weekly recurring post on Mondays 09:00 takes those slots: Wednesday is next.
    await make_post(
        db,
        tenant.org_id,
        channel.id,
        publish_date=datetime(2031, 3, 24, 9, 0, tzinfo=BERLIN),
        interval_in_days=7,
        timezone="Europe/Berlin",
    )
    assert await slot("2031-03-30T12:00:00Z") == "2031-04-02T12:00:00Z"
    # Bad input is a 4xx naming the field.
    bad = await client.post(
        "/api/posts/sets",
        json={"name": "x", "timezone": "Mars/Olympus", "times": [{"day": 9, "time": "25:00"}]},
        headers=tenant.headers,
    )
    assert bad.status_code == 422
    fields = {d["field"] for d in bad.json()["details"]}
    assert {"timezone", "times.0.day", "times.0.time"} <= fields
