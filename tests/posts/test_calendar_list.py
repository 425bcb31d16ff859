"""The calendar/list read path: lean statements (a fixed number, whatever the posts), the same
posts as the full rows give, recurring occurrences and cursor pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import Tenant
from tests.posts.factories import make_channel, make_post
from tests.posts.helpers import sql_statements
from tidings.core.enums import State
from tidings.core.tenancy import OrgId
from tidings.orgs.models import Customer
from tidings.posts import service
from tidings.posts.models import Tags, TagsPosts

START = datetime(2031, 5, 5, tzinfo=UTC)  # a Monday
END = START + timedelta(days=7)


async def _calendar(db: AsyncSession, tenant: Tenant, other: Tenant) -> dict[str, str]:
    """A week with posts on three channels (one of a customer, one deleted), tags (one
    deleted), a thread, a recurring post, a deleted post and another organization's post."""
    acme = Customer(org_id=tenant.org_id, name="Acme")
    gone = Customer(org_id=tenant.org_id, name="Gone", deleted_at=START)
    db.add_all([acme, gone])
    await db.flush()
    a = await make_channel(db, tenant.org_id, name="A", customer_id=acme.id, picture="https://p/a")
    b = await make_channel(db, tenant.org_id, name="B", customer_id=gone.id)
    c = await make_channel(db, tenant.org_id, name="C", deleted_at=START)
    theirs = await make_channel(db, other.org_id, name="Theirs")
    zeta, alpha, dead = (
        Tags(org_id=tenant.org_id, name="zeta", color="#000001"),
        Tags(org_id=tenant.org_id, name="Alpha", color="#000002"),
        Tags(org_id=tenant.org_id, name="dead", color="#000003", deleted_at=START),
    )
    db.add_all([zeta, alpha, dead])
    await db.flush()
    day = timedelta(days=1)
    first = await make_post(db, tenant.org_id, a.id, publish_date=START + day, content="first")
    await make_post(
        db,
        tenant.org_id,
        a.id,
        publish_date=START + day,
        content="reply",
        group=first.group,
        parent_post_id=first.id,
    )
    published = await make_post(
        db,
        tenant.org_id,
        b.id,
        publish_date=START + 2 * day,
        state=State.PUBLISHED,
        release_url="https://b/1",
        release_id="1",
        image=[{"id": None, "path": "https://x/a.png"}],
        settings={"__type": "mastodon", "visibility": "unlisted"},
    )
    failed = await make_post(
        db, tenant.org_id, c.id, publish_date=START + 3 * day, state=State.ERROR, error="boom"
    )
    daily = await make_post(
        db,
        tenant.org_id,
        a.id,
        publish_date=START - 10 * day + timedelta(hours=7),
        interval_in_days=2,
        timezone="Europe/Paris",
        recurring_anchor=START - 10 * day + timedelta(hours=7),  # 09:00 in Paris
    )
    await make_post(db, tenant.org_id, a.id, publish_date=START + day, deleted_at=START)
    await make_post(db, other.org_id, theirs.id, publish_date=START + day)
    db.add_all(
        [
            TagsPosts(post_id=first.id, tag_id=zeta.id),
            TagsPosts(post_id=first.id, tag_id=alpha.id),
            TagsPosts(post_id=first.id, tag_id=dead.id),
            TagsPosts(post_id=published.id, tag_id=zeta.id),
        ]
    )
    await db.flush()
    return {
        "first": first.id,
        "published": published.id,
        "failed": failed.id,
        "daily": daily.id,
        "a": a.id,
        "acme": acme.id,
    }


async def test_the_list_is_three_lean_statements_with_everything_a_post_shows(
    db: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    ids = await _calendar(db, tenant, other_tenant)
    org = OrgId(tenant.org_id)
    with sql_statements() as statements:
        listed = await service.list_posts(db, org, start=START, end=END)
    # The week, the recurring posts, their tags: no query per post, channel or tag.
    assert len(statements) == 3
    assert all(" integration.token" not in s for s in statements)  # no channel secrets read

    posts = listed.posts
    order = [(p.id, p.occurrence) for p in posts]
    # Heads only, the deleted post and the other organization's left out; the recurring post
    # repeats every other day at 09:00 Paris time.
    occurrences = [p for p in posts if p.occurrence]
    assert [p.publish_date for p in occurrences] == [
        datetime(2031, 5, d, 7, tzinfo=UTC) for d in (5, 7, 9, 11)
    ]
    assert {p.id for p in occurrences} == {ids["daily"]}
    assert [i for i, virtual in order if not virtual] == [
        ids["first"],
        ids["published"],
        ids["failed"],
    ]
    assert [p.publish_date for p in posts] == sorted(p.publish_date for p in posts)

    # Every real post is shown exactly as the single-post read (full rows) shows it.
    for post in posts:
        if not post.occurrence:
            assert post == await service.get_post(db, org, post.id)
    first = next(p for p in posts if p.id == ids["first"])
    assert [t.name for t in first.tags] == ["Alpha", "zeta"]  # by name, the deleted one hidden
    assert first.integration.customer is not None
    assert first.integration.customer.name == "Acme"
    assert first.integration.picture == "https://p/a"
    published = next(p for p in posts if p.id == ids["published"])
    assert published.integration.customer is None  # its customer was deleted
    assert published.image == [{"id": None, "path": "https://x/a.png"}]
    assert published.settings == {"__type": "mastodon", "visibility": "unlisted"}
    assert published.release_url == "https://b/1"
    failed = next(p for p in posts if p.id == ids["failed"])
    assert failed.integration.name == "C" and failed.error == "boom"  # a deleted channel's post
    assert occurrences[0].state == "QUEUE" and occurrences[0].release_url is None


async def test_filters_and_cursor_pages(
    db: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    ids = await _calendar(db, tenant, other_tenant)
    org = OrgId(tenant.org_id)

    async def listed(**filters: object) -> list[tuple[str, bool]]:
        result = await service.list_posts(db, org, start=START, end=END, **filters)  # type: ignore[arg-type]
        return [(p.id, p.occurrence) for p in result.posts]

    everything = await listed()
    assert await listed(customer_id=ids["acme"]) == [
        item for item in everything if item[0] in (ids["first"], ids["daily"])
    ]
    assert await listed(integration_ids=[ids["a"]]) == await listed(customer_id=ids["acme"])
    assert await listed(tag_names=["ZETA"]) == [(ids["first"], False), (ids["published"], False)]
    assert await listed(tag_names=["dead"]) == []
    assert await listed(states=[State.ERROR]) == [(ids["failed"], False)]
    assert await listed(states=[State.QUEUE]) == [
        item for item in everything if item[0] in (ids["first"], ids["daily"])
    ]

    pages: list[tuple[str, bool]] = []
    cursor = None
    while True:
        page = await service.list_posts(db, org, start=START, end=END, limit=2, cursor=cursor)
        assert len(page.posts) <= 2
        pages += [(p.id, p.occurrence) for p in page.posts]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == everything
    assert len(everything) == 7


async def test_recurring_query_uses_its_partial_index(
    db: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    """The recurring posts are few among many: the service's statement is found through
    ``ix_post_recurring``, not by reading every post of the organization before the range's end
    (the states are literals so that any cached plan can use the partial index)."""
    await _calendar(db, tenant, other_tenant)
    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        sent.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        await service.list_posts(db, OrgId(tenant.org_id), start=START, end=END)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    [(statement, parameters)] = [(s, p) for s, p in sent if "interval_in_days IS NOT NULL" in s]
    assert "IN ('QUEUE', 'DRAFT')" in statement
    await db.execute(text("SET LOCAL enable_seqscan = off"))
    conn = await db.connection()
    plan = "\n".join(r[0] for r in await conn.exec_driver_sql("EXPLAIN " + statement, parameters))
    assert "ix_post_recurring" in plan, plan
