"""Hot paths ask the database a fixed number of questions, whatever the number of posts, parts
or tags (no query per item), and find-slot does not read the channel's whole history."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import Tenant
from tests.posts.factories import make_channel, make_post
from tests.posts.helpers import sql_statements
from tidings.core.enums import State
from tidings.core.tenancy import OrgId
from tidings.posts import engine
from tidings.posts.models import Post, Tags
from tidings.posts.schemas import TagIn
from tidings.posts.slots import find_slot
from tidings.posts.tags import resolve_tags

NOW = datetime(2031, 6, 2, 9, 0, tzinfo=UTC)


async def _claims_of(db: AsyncSession, posts: list[Post]) -> tuple[list[engine.Claim], int]:
    attempts = [(f"attempt-{p.id}", p.id, 1, NOW) for p in posts]
    with sql_statements() as statements:
        claims = await engine.load_claims(db, attempts)
    return claims, len(statements)


async def test_claims_load_references_and_media_for_the_whole_batch(
    db: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    channel = await make_channel(db, tenant.org_id)
    done = await make_post(
        db,
        tenant.org_id,
        channel.id,
        publish_date=NOW - timedelta(days=1),
        state=State.PUBLISHED,
        release_url="https://social.example/1",
    )
    pending = await make_post(db, tenant.org_id, channel.id, publish_date=NOW + timedelta(days=1))
    theirs_channel = await make_channel(db, other_tenant.org_id)
    theirs = await make_post(
        db,
        other_tenant.org_id,
        theirs_channel.id,
        publish_date=NOW - timedelta(days=1),
        state=State.PUBLISHED,
        release_url="https://social.example/theirs",
    )

    async def batch(size: int) -> list[Post]:
        return [
            await make_post(
                db,
                tenant.org_id,
                (await make_channel(db, tenant.org_id, name=f"C{i}")).id,
                publish_date=NOW,
                content=f"see (post:{done.id}) and (post:{pending.id}) not (post:{theirs.id})",
                image=[{"path": f"https://cdn.example/{i}.png"}],
            )
            for i in range(size)
        ]

    small, small_count = await _claims_of(db, await batch(2))
    large, large_count = await _claims_of(db, await batch(7))
    assert small_count == large_count == 3  # the posts, their references, their media
    for claim in small + large:
        assert claim.references == {done.id: "https://social.example/1", pending.id: None}
        assert [m.url for m in claim.media] == [claim.post.image[0]["path"]]
    # Another organization's post is not a reference: publishing fails rather than leak it.
    assert theirs.id not in large[0].references


async def _recurring_thread(db: AsyncSession, org_id: str, parts: int) -> Post:
    channel = await make_channel(db, org_id, name=f"T{parts}")
    head = await make_post(
        db,
        org_id,
        channel.id,
        publish_date=NOW,
        state=State.PUBLISHED,
        interval_in_days=1,
        timezone="UTC",
        recurring_anchor=NOW,
        content="part 0",
    )
    previous = head
    for j in range(1, parts):
        previous = await make_post(
            db,
            org_id,
            channel.id,
            publish_date=NOW,
            group=head.group,
            parent_post_id=previous.id,
            content=f"part {j}",
            delay=j,
        )
    return head


async def test_next_occurrence_copies_a_thread_in_a_fixed_number_of_statements(
    db: AsyncSession, tenant: Tenant
) -> None:
    counts = {}
    for parts in (2, 6):
        head = await _recurring_thread(db, tenant.org_id, parts)
        with sql_statements() as statements:
            await engine.create_next_occurrence(db, head, after=NOW + timedelta(seconds=5))
        counts[parts] = len([s for s in statements if s.lstrip().upper().startswith("SELECT")])
        copies = (
            await db.execute(
                select(Post)
                .where(Post.integration_id == head.integration_id, Post.group != head.group)
                .order_by(Post.delay)
            )
        ).scalars()
        copies = list(copies)
        assert [c.content for c in copies] == [f"part {j}" for j in range(parts)]
        assert [c.parent_post_id for c in copies] == [None] + [c.id for c in copies[:-1]]
        assert copies[0].publish_date == NOW + timedelta(days=1)
    assert counts[2] == counts[6]


async def test_tags_of_a_post_are_found_in_one_statement(db: AsyncSession, tenant: Tenant) -> None:
    db.add_all(
        [
            Tags(org_id=tenant.org_id, name="News", color="#000001"),
            Tags(org_id=tenant.org_id, name="Launch", color="#000002"),
            Tags(org_id=tenant.org_id, name="old", color="#000003", deleted_at=NOW),
        ]
    )
    await db.flush()
    labels = ["news", "Launch", "fresh", "NEWS", " ", "old", "Other"]
    with sql_statements() as statements:
        tags = await resolve_tags(
            db, OrgId(tenant.org_id), [TagIn(value=x, label=x) for x in labels]
        )
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1
    assert [(t.name, t.color == "#000001") for t in tags] == [
        ("News", True),
        ("Launch", False),
        ("fresh", False),
        ("old", False),  # the deleted tag is not reused: a new one is made
        ("Other", False),
    ]
    assert all(t.id for t in tags)
    again = await resolve_tags(db, OrgId(tenant.org_id), [TagIn(value="x", label="FRESH")])
    assert again[0].id == tags[2].id


@contextlib.contextmanager
def rows_fetched() -> Iterator[list[int]]:
    """How many rows each statement sent while the block runs returned."""
    counts: list[int] = []

    def record(conn: Any, cursor: Any, *args: Any) -> None:
        counts.append(max(cursor.rowcount, 0))

    event.listen(Engine, "after_cursor_execute", record)
    try:
        yield counts
    finally:
        event.remove(Engine, "after_cursor_execute", record)


async def test_find_slot_reads_the_window_not_the_history(db: AsyncSession, tenant: Tenant) -> None:
    channel = await make_channel(db, tenant.org_id, posting_times=[{"time": 540}])  # 09:00 UTC
    for days in range(1, 41):  # a long history: published posts of the past
        await make_post(
            db,
            tenant.org_id,
            channel.id,
            publish_date=NOW - timedelta(days=days),
            state=State.PUBLISHED,
            group=str(uuid.uuid4()),
        )
    # Taken: tomorrow by a post, the day after by a daily recurring post started long ago.
    await make_post(db, tenant.org_id, channel.id, publish_date=NOW + timedelta(days=1))
    await make_post(
        db,
        tenant.org_id,
        channel.id,
        publish_date=NOW - timedelta(days=100) + timedelta(days=2),
        interval_in_days=2,
        timezone="UTC",
    )
    with rows_fetched() as counts:
        slot = await find_slot(db, OrgId(tenant.org_id), channel.id, after=NOW)
    assert slot == NOW + timedelta(days=3)
    assert max(counts) <= 2  # the planned post and the recurring one, not the 40 past ones
