"""Auto-posting against feeds served on 127.0.0.1: RSS 2.0 and Atom, new items between polls,
conditional GET, malformed and silent feeds, exactly one post per new item."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.automation.factories import make_channel, make_feed, make_member
from tests.automation.feeds import Entry, atom, rss
from tests.automation.helpers import Feed, FeedServer, eventually, running_worker
from tests.conftest import Tenant, TransactionalDatabase, make_tenant
from tidings.automation import autopost
from tidings.automation.models import AutoPost, AutoPostItem
from tidings.automation.tasks import poll_feeds
from tidings.core.enums import CreationMethod, State
from tidings.db import Database
from tidings.notifications.models import Notifications
from tidings.posts.models import Post
from tidings.posts.schemas import MAX_CONTENT

TEMPLATE = "{{title}} — {{description}} {{url}}"


async def _create_feed(
    client: httpx.AsyncClient, tenant: Tenant, url: str, channels: list[str], **extra: object
) -> str:
    body = {"name": "Blog", "url": url, "integrations": channels, "template": TEMPLATE, **extra}
    response = await client.post("/api/autopost", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _posts(session: AsyncSession, org_id: str) -> list[Post]:
    rows = await session.execute(
        select(Post).where(Post.organization_id == org_id).order_by(Post.created_at, Post.id)
    )
    return list(rows.scalars())


async def _notes(session: AsyncSession, org_id: str) -> list[str]:
    rows = await session.execute(
        select(Notifications.content).where(Notifications.organization_id == org_id)
    )
    return list(rows.scalars())


async def test_rss_new_item_between_polls_makes_exactly_one_post_per_channel(
    client: httpx.AsyncClient,
    tenant: Tenant,
    db: AsyncSession,
    test_database: TransactionalDatabase,
    feeds: FeedServer,
    configure: Callable[..., None],
) -> None:
    configure()
    bluesky = await make_channel(db, tenant.org_id, identifier="bluesky")
    mastodon = await make_channel(db, tenant.org_id, identifier="mastodon")
    feeds.feeds["blog"] = Feed(rss([Entry(1), Entry(2)]), etag='"v1"')
    feed_id = await _create_feed(client, tenant, feeds.url("blog"), [bluesky.id, mastodon.id])

    # First read: the two existing articles are remembered, not posted.
    first = await autopost.poll(test_database, feed_id)
    assert (first.status, first.new_items, first.posts_created) == ("ok", 2, 0)
    assert await _posts(db, tenant.org_id) == []

    # A new article appears.
    long_text = "<p>" + "Lorem ipsum dolor sit amet. " * 40 + "</p>"
    feeds.feeds["blog"] = Feed(
        rss([Entry(1), Entry(2), Entry(3, description=long_text, author="Ann")]), etag='"v2"'
    )
    second = await autopost.poll(test_database, feed_id)
    assert (second.status, second.new_items, second.posts_created) == ("ok", 1, 2)
    posts = await _posts(db, tenant.org_id)
    assert sorted(p.integration_id for p in posts) == sorted([bluesky.id, mastodon.id])
    for post in posts:
        assert post.creation_method == CreationMethod.AUTOPOST
        assert post.state == State.DRAFT
        assert post.content.startswith("Article 3 — Lorem ipsum")
        assert post.content.endswith("https://blog.example.com/articles/3")
        assert "<p>" not in post.content
    on_bluesky = next(p for p in posts if p.integration_id == bluesky.id)
    assert len(on_bluesky.content) <= 300 and "…" in on_bluesky.content

    # Unchanged feed: a conditional GET answered 304, nothing new.
    third = await autopost.poll(test_database, feed_id)
    assert third.status == "not_modified"
    headers, status = feeds.of("blog")[-1]
    assert headers["if-none-match"] == '"v2"' and status == 304
    assert len(await _posts(db, tenant.org_id)) == 2

    # The feed is rewritten (new ETag) with the same articles: still nothing new.
    feeds.feeds["blog"] = Feed(rss([Entry(1), Entry(2), Entry(3)]), etag='"v3"')
    fourth = await autopost.poll(test_database, feed_id)
    assert (fourth.status, fourth.new_items) == ("ok", 0)
    assert len(await _posts(db, tenant.org_id)) == 2

    row = await db.get(AutoPost, feed_id)
    assert row is not None
    await db.refresh(row)
    assert row.last_run is not None and row.last_error is None and row.etag == '"v3"'


async def test_atom_with_existing_items_posted_and_on_slot(
    client: httpx.AsyncClient,
    tenant: Tenant,
    db: AsyncSession,
    test_database: TransactionalDatabase,
    feeds: FeedServer,
    configure: Callable[..., None],
) -> None:
    configure()
    channel = await make_channel(db, tenant.org_id, identifier="mastodon")
    modified = "Wed, 25 Nov 2026 08:00:00 GMT"
    feeds.feeds["atom"] = Feed(
        atom([Entry(1, author="Bo"), Entry(2, description="Second <em>one</em>")]),
        content_type="application/atom+xml",
        last_modified=modified,
    )
    feed_id = await _create_feed(
        client, tenant, feeds.url("atom"), [channel.id], post_existing=True, on_slot=True
    )
    result = await autopost.poll(test_database, feed_id)
    assert (result.new_items, result.posts_created) == (2, 2)
    posts = await _posts(db, tenant.org_id)
    assert [p.content.split(" — ")[0] for p in posts] == ["Article 1", "Article 2"]  # oldest first
    assert all(p.state == State.QUEUE for p in posts)
    assert all(p.publish_date > datetime.now(UTC) for p in posts)
    assert posts[0].publish_date != posts[1].publish_date  # two different free slots

    again = await autopost.poll(test_database, feed_id)
    assert again.status == "not_modified"
    headers, status = feeds.of("atom")[-1]
    assert headers["if-modified-since"] == modified and status == 304


async def test_malformed_then_fixed_feed(
    client: httpx.AsyncClient,
    tenant: Tenant,
    db: AsyncSession,
    test_database: TransactionalDatabase,
    feeds: FeedServer,
    configure: Callable[..., None],
) -> None:
    configure()
    channel = await make_channel(db, tenant.org_id)
    feeds.feeds["bad"] = Feed(b"<html><body>Oops, a web page</body></html>", "text/html")
    feed_id = await _create_feed(client, tenant, feeds.url("bad"), [channel.id])

    for _ in range(2):
        result = await autopost.poll(test_database, feed_id)
        assert result.status == "error"
        assert result.error is not None and "not an RSS or Atom feed" in result.error
    row = await db.get(AutoPost, feed_id)
    assert row is not None
    await db.refresh(row)
    assert row.last_error is not None and "not an RSS or Atom feed" in row.last_error
    assert row.last_run is not None and row.primed is False
    notes = await _notes(db, tenant.org_id)
    assert len(notes) == 1 and "Blog" in notes[0]  # notified once, not at every poll

    api = (await client.get(f"/api/autopost/{feed_id}", headers=tenant.headers)).json()
    assert "not an RSS or Atom feed" in api["last_error"]

    feeds.feeds["bad"] = Feed(rss([Entry(1)]))
    fixed = await autopost.poll(test_database, feed_id)
    assert (fixed.status, fixed.new_items, fixed.posts_created) == ("ok", 1, 0)
    await db.refresh(row)
    assert row.last_error is None and row.primed is True

    feeds.feeds["bad"] = Feed(b"", status=500)
    failed = await autopost.poll(test_database, feed_id)
    assert failed.error == "the feed answered HTTP 500"


async def test_silent_feed_times_out(
    client: httpx.AsyncClient,
    tenant: Tenant,
    db: AsyncSession,
    test_database: TransactionalDatabase,
    feeds: FeedServer,
    configure: Callable[..., None],
) -> None:
    configure(autopost_timeout_seconds=0.5)
    channel = await make_channel(db, tenant.org_id)
    feeds.feeds["slow"] = Feed(b"", hang=True)
    feed_id = await _create_feed(client, tenant, feeds.url("slow"), [channel.id])
    result = await autopost.poll(test_database, feed_id)
    assert result.status == "error"
    assert result.error == "the feed did not answer within 0.5 seconds"


async def test_the_url_guard_applies_at_every_read(
    client: httpx.AsyncClient,
    tenant: Tenant,
    db: AsyncSession,
    test_database: TransactionalDatabase,
    feeds: FeedServer,
    configure: Callable[..., None],
) -> None:
    """A feed URL that passed when saved is checked again at each read."""
    configure()  # private addresses allowed while the feed is saved
    channel = await make_channel(db, tenant.org_id)
    feeds.feeds["lan"] = Feed(rss([Entry(1)]))
    feed_id = await _create_feed(client, tenant, feeds.url("lan"), [channel.id])
    configure(allow_private_urls="false")
    result = await autopost.poll(test_database, feed_id)
    assert result.status == "error"
    assert result.error is not None and result.error.startswith("the feed URL is not allowed")
    assert feeds.requests == []


async def test_nul_bytes_in_a_feed_are_dropped(
    client: httpx.AsyncClient,
    tenant: Tenant,
    db: AsyncSession,
    test_database: TransactionalDatabase,
    feeds: FeedServer,
    configure: Callable[..., None],
) -> None:
    """feedparser lets NUL bytes through; PostgreSQL text refuses them, which
    made every poll of such a feed fail without a trace (no last_run, no error, no notice)."""
    configure()
    channel = await make_channel(db, tenant.org_id)
    doc = rss([Entry(1, title="Bad\x00title", description="a\x00b")]).replace(
        b"urn:example:1", b"urn:\x00example:1"
    )
    feeds.feeds["nul"] = Feed(doc)
    feed_id = await _create_feed(client, tenant, feeds.url("nul"), [channel.id], post_existing=True)
    result = await autopost.poll(test_database, feed_id)
    assert (result.status, result.new_items, result.posts_created) == ("ok", 1, 1)
    [post] = await _posts(db, tenant.org_id)
    assert post.content.startswith("Badtitle — ab") and "\x00" not in post.content
    again = await autopost.poll(test_database, feed_id)
    assert (again.status, again.new_items) == ("ok", 0)


async def test_a_huge_article_fits_the_longest_channels(
    client: httpx.AsyncClient,
    tenant: Tenant,
    db: AsyncSession,
    test_database: TransactionalDatabase,
    feeds: FeedServer,
    configure: Callable[..., None],
) -> None:
    """Slack allows more text than a post may hold: the text is cut to the post's own limit
    instead of the poll failing (and failing again at every poll) on the posts' validation."""
    configure()
    channel = await make_channel(db, tenant.org_id, identifier="slack")
    feeds.feeds["long"] = Feed(rss([Entry(1, description="word " * 40_000)]))
    feed_id = await _create_feed(
        client, tenant, feeds.url("long"), [channel.id], post_existing=True
    )
    result = await autopost.poll(test_database, feed_id)
    assert (result.status, result.new_items, result.posts_created) == ("ok", 1, 1)
    [post] = await _posts(db, tenant.org_id)
    assert len(post.content) <= MAX_CONTENT
    assert post.content.endswith("… https://blog.example.com/articles/1")


async def test_broken_feeds_do_not_stop_the_others(
    fresh_database: Database, feeds: FeedServer, configure: Callable[..., None]
) -> None:
    configure(autopost_timeout_seconds=1)
    owner = await make_tenant(fresh_database)
    async with fresh_database.session() as session:
        channel = await make_channel(session, owner.org_id)
    feeds.feeds["hang"] = Feed(b"", hang=True)
    feeds.feeds["junk"] = Feed(b"\x00\x01\x02 not xml", "application/rss+xml")
    feeds.feeds["good"] = Feed(rss([Entry(1), Entry(2)]))
    ids = {}
    async with fresh_database.session() as session:
        for name in ("hang", "junk", "good"):
            row = await make_feed(
                session,
                owner.org_id,
                feeds.url(name),
                [channel.id],
                name=name,
                template="{{title}} {{url}}",
                primed=True,  # post what is there
            )
            ids[name] = row.id

    async with running_worker(fresh_database):
        assert await autopost.defer_due_polls(fresh_database) == 3

        async def all_polled() -> bool:
            async with fresh_database.session() as session:
                runs = await session.execute(
                    select(func.count()).where(AutoPost.last_run.is_not(None))
                )
                return runs.scalar_one() == 3

        await eventually(all_polled, timeout=10)

    async with fresh_database.session() as session:
        rows = {r.name: r for r in (await session.execute(select(AutoPost))).scalars()}
        assert rows["good"].last_error is None
        assert rows["hang"].last_error == "the feed did not answer within 1 seconds"
        assert rows["junk"].last_error is not None
        assert "not an RSS or Atom feed" in rows["junk"].last_error
        posts = await _posts(session, owner.org_id)
        assert sorted(p.content for p in posts) == [
            "Article 1 https://blog.example.com/articles/1",
            "Article 2 https://blog.example.com/articles/2",
        ]
        # A poll within the interval is not due again.
        assert await autopost.defer_due_polls(fresh_database) == 0


async def test_a_poll_lost_with_its_worker_does_not_block_the_feed(
    fresh_database: Database, feeds: FeedServer, configure: Callable[..., None]
) -> None:
    """A worker killed mid-poll leaves the job 'doing' with the feed's lock (and its queueing
    lock refuses a second waiting poll): the periodic task releases it, so the feed is polled."""
    configure()
    owner = await make_tenant(fresh_database)
    feeds.feeds["f"] = Feed(rss([Entry(1)]))
    async with fresh_database.session() as session:
        channel = await make_channel(session, owner.org_id)
        feed_id = (
            await make_feed(session, owner.org_id, feeds.url("f"), [channel.id], primed=True)
        ).id
        await autopost.defer_poll(session, feed_id)
        # Taken by a worker that died since (its row pruned, so no worker id).
        await session.execute(
            text("UPDATE procrastinate_jobs SET status = 'doing' WHERE lock = :lock"),
            {"lock": autopost.poll_lock(feed_id)},
        )

    async with running_worker(fresh_database):
        await poll_feeds(0)

        async def posted() -> bool:
            async with fresh_database.session() as session:
                return [p.content for p in await _posts(session, owner.org_id)] == ["Article 1"]

        await eventually(posted)


async def test_overlapping_polls_post_each_item_once(
    fresh_database: Database, feeds: FeedServer, configure: Callable[..., None]
) -> None:
    configure()
    owner = await make_tenant(fresh_database)
    async with fresh_database.session() as session:
        channel = await make_channel(session, owner.org_id)
        feed_id = (
            await make_feed(session, owner.org_id, feeds.url("f"), [channel.id], primed=True)
        ).id
    feeds.feeds["f"] = Feed(rss([Entry(n) for n in range(1, 6)]))
    results = await asyncio.gather(*(autopost.poll(fresh_database, feed_id) for _ in range(3)))
    assert sum(r.posts_created for r in results) == 5
    async with fresh_database.session() as session:
        posts = await _posts(session, owner.org_id)
        assert sorted(p.content for p in posts) == [f"Article {n}" for n in range(1, 6)]
        items = await session.execute(
            select(func.count())
            .select_from(AutoPostItem)
            .where(AutoPostItem.auto_post_id == feed_id)
        )
        assert items.scalar_one() == 5


async def test_autopost_api(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    db: AsyncSession,
    test_database: TransactionalDatabase,
) -> None:
    mine = await make_channel(db, tenant.org_id)
    theirs = await make_channel(db, other_tenant.org_id)
    url = "https://1.1.1.1/feed.xml"
    cases: list[tuple[dict[str, object], int, str]] = [
        ({"url": "http://127.0.0.1/feed"}, 400, "url"),
        ({"url": "gopher://1.1.1.1/feed"}, 400, "url"),
        ({"integrations": []}, 422, "integrations"),
        ({"integrations": [theirs.id]}, 400, "integrations"),
        ({"name": ""}, 422, "name"),
        ({"template": ""}, 422, "template"),
    ]
    for override, status, field in cases:
        body = {"name": "Blog", "url": url, "integrations": [mine.id], **override}
        response = await client.post("/api/autopost", json=body, headers=tenant.headers)
        assert response.status_code == status, (override, response.text)
        assert response.json()["field"] == field, (override, response.json())

    feed_id = await _create_feed(client, tenant, url, [mine.id])
    path = f"/api/autopost/{feed_id}"
    read = (await client.get(path, headers=tenant.headers)).json()
    assert read["primed"] is False and read["on_slot"] is False and read["last_run"] is None
    listed = (await client.get("/api/autopost", headers=tenant.headers)).json()
    assert [f["id"] for f in listed] == [feed_id]
    changed = await client.patch(
        path, json={"on_slot": True, "template": "{{title}}"}, headers=tenant.headers
    )
    assert changed.status_code == 200 and changed.json()["on_slot"] is True
    bad = await client.patch(path, json={"integrations": [theirs.id]}, headers=tenant.headers)
    assert bad.status_code == 400 and bad.json()["field"] == "integrations"
    assert (await client.post(f"{path}/run", headers=tenant.headers)).status_code == 202

    member = await make_member(test_database, tenant.org_id)
    assert (await client.get(path, headers=member)).status_code == 200
    assert (await client.patch(path, json={"name": "x"}, headers=member)).status_code == 403
    assert (await client.delete(path, headers=member)).status_code == 403

    other = other_tenant.headers
    assert (await client.get(path, headers=other)).status_code == 404
    assert (await client.patch(path, json={"name": "x"}, headers=other)).status_code == 404
    assert (await client.post(f"{path}/run", headers=other)).status_code == 404
    assert (await client.delete(path, headers=other)).status_code == 404
    assert (await client.get("/api/autopost", headers=other)).json() == []

    assert (await client.delete(path, headers=tenant.headers)).status_code == 204
    assert (await client.get(path, headers=tenant.headers)).status_code == 404
    result = await autopost.poll(test_database, feed_id)
    assert result.status == "skipped"
