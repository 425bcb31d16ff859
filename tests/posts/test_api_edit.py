"""Editing groups through the app API: content, channels, dates, status, duplicates, deletes,
settings, the republish rule, comments, tags and signatures."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import Tenant
from tests.posts.factories import make_channel
from tests.posts.test_api import FUTURE, body, jobs_for
from tidings.core.enums import State
from tidings.posts.models import Post, PostAttempt
from tidings.posts.scheduling import alarm_lock


async def _create(client: httpx.AsyncClient, tenant: Tenant, payload: dict[str, Any]) -> Any:
    response = await client.post("/api/posts", json=payload, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def test_edit_content_date_and_channels_keeps_post_ids(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    a = await make_channel(db, tenant.org_id, name="A")
    b = await make_channel(db, tenant.org_id, name="B")
    c = await make_channel(db, tenant.org_id, name="C")
    created = await _create(client, tenant, body([a.id, b.id], "v1", "reply v1"))
    group = created["group"]
    head_a = created["posts"][0]["postId"]
    current = (await client.get(f"/api/posts/group/{group}", headers=tenant.headers)).json()
    thread_a = next(t for t in current["posts"] if t["integration"]["id"] == a.id)
    later = "2031-04-01T10:00:00+00:00"
    edit = {
        "type": "schedule",
        "date": later,
        "posts": [
            {
                "integration": {"id": a.id},
                "value": [
                    {"id": thread_a["value"][0]["id"], "content": "v2"},
                ],
            },
            {"integration": {"id": c.id}, "value": [{"content": "new channel"}]},
        ],
    }
    response = await client.put(f"/api/posts/group/{group}", json=edit, headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert response.json()["posts"][0]["postId"] == head_a  # the id survives the edit
    after = (await client.get(f"/api/posts/group/{group}", headers=tenant.headers)).json()
    by_channel = {t["integration"]["id"]: t for t in after["posts"]}
    assert set(by_channel) == {a.id, c.id}  # B removed, C added
    assert [p["content"] for p in by_channel[a.id]["value"]] == ["v2"]  # reply removed
    assert after["publishDate"] == "2031-04-01T10:00:00Z"
    # A job for the new date; the old one stays behind as a no-op.
    new_date = (await db.get(Post, head_a, populate_existing=True)).publish_date  # type: ignore[union-attr]
    assert alarm_lock(head_a, new_date) in await jobs_for(db, head_a)
    removed = (
        await db.execute(
            select(Post.deleted_at)
            .where(Post.group == group, Post.integration_id == b.id)
            .execution_options(include_deleted=True)
        )
    ).scalars()
    assert all(d is not None for d in removed)


async def test_republish_rule(client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession) -> None:
    a = await make_channel(db, tenant.org_id)
    created = await _create(client, tenant, body([a.id], "first"))
    post = await db.get(Post, created["posts"][0]["postId"])
    assert post is not None
    post.state = State.PUBLISHED
    post.release_id = "111"
    post.release_url = "https://masto.example/@a/111"
    await db.flush()
    again = body([a.id], "first, edited") | {"group": created["group"]}
    refused = await client.post("/api/posts", json=again, headers=tenant.headers)
    assert refused.status_code == 400 and refused.json()["field"] == "republish"
    # "update" edits the published post's text without publishing it again.
    update = again | {"type": "update"}
    assert (await client.post("/api/posts", json=update, headers=tenant.headers)).status_code == 201
    await db.refresh(post)
    assert post.state == State.PUBLISHED and post.content == "first, edited"
    accepted = await client.post(
        "/api/posts", json=again | {"republish": True}, headers=tenant.headers
    )
    assert accepted.status_code == 201, accepted.text
    await db.refresh(post)
    assert post.state == State.QUEUE and post.release_id is None
    moved = await client.put(
        f"/api/posts/group/{created['group']}/date",
        json={"date": "2031-05-01T00:00:00Z"},
        headers=tenant.headers,
    )
    assert moved.status_code == 200


async def test_status_duplicate_delete_and_settings(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    a = await make_channel(db, tenant.org_id, name="A")
    created = await _create(client, tenant, body([a.id], "hello") | {"tags": ["promo"]})
    post_id, group = created["posts"][0]["postId"], created["group"]

    drafted = await client.put(
        f"/api/posts/{post_id}/status", json={"status": "draft"}, headers=tenant.headers
    )
    assert drafted.status_code == 200 and drafted.json()["state"] == "DRAFT"
    # A draft too long for the channel cannot be queued.
    long_draft = await _create(client, tenant, body([a.id], "z" * 600) | {"type": "draft"})
    refused = await client.put(
        f"/api/posts/{long_draft['posts'][0]['postId']}/status",
        json={"status": "schedule"},
        headers=tenant.headers,
    )
    assert refused.status_code == 400 and refused.json()["rule"] == "too_long"
    queued = await client.put(
        f"/api/posts/{post_id}/status", json={"status": "schedule"}, headers=tenant.headers
    )
    assert queued.status_code == 200 and queued.json()["state"] == "QUEUE"

    settings = await client.put(
        f"/api/posts/{post_id}/settings",
        json={"settings": {"visibility": "private"}},
        headers=tenant.headers,
    )
    assert settings.status_code == 200, settings.text
    assert settings.json()["settings"]["visibility"] == "private"
    bad = await client.put(
        f"/api/posts/{post_id}/settings",
        json={"settings": {"visibility": "sideways"}},
        headers=tenant.headers,
    )
    assert bad.status_code == 400 and bad.json()["field"] == "settings"

    copy = await client.post(f"/api/posts/group/{group}/duplicate", json={}, headers=tenant.headers)
    assert copy.status_code == 201, copy.text
    copy_group = (
        await client.get(f"/api/posts/group/{copy.json()['group']}", headers=tenant.headers)
    ).json()
    assert copy_group["state"] == "DRAFT" and copy_group["group"] != group
    assert copy_group["posts"][0]["value"][0]["content"] == "hello"
    assert [t["name"] for t in copy_group["tags"]] == ["promo"]
    assert copy_group["posts"][0]["settings"]["visibility"] == "private"

    deleted = await client.delete(f"/api/posts/{post_id}", headers=tenant.headers)
    assert deleted.status_code == 200 and deleted.json() == {
        "id": post_id,
        "group": group,
        "deleted": 1,
    }
    assert (
        await client.get(f"/api/posts/group/{group}", headers=tenant.headers)
    ).status_code == 404
    assert (await client.delete(f"/api/posts/{post_id}", headers=tenant.headers)).status_code == 404


async def test_a_post_being_published_cannot_be_edited(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    a = await make_channel(db, tenant.org_id)
    created = await _create(client, tenant, body([a.id], "busy"))
    post_id = created["posts"][0]["postId"]
    db.add(
        PostAttempt(post_id=post_id, organization_id=tenant.org_id, attempt=1, integration_id=a.id)
    )
    await db.flush()
    response = await client.put(
        f"/api/posts/group/{created['group']}/date",
        json={"date": "2031-06-01T00:00:00Z"},
        headers=tenant.headers,
    )
    assert response.status_code == 409


async def test_comments_tags_and_signatures(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, db: AsyncSession
) -> None:
    a = await make_channel(db, tenant.org_id)
    # Signatures: one auto-add per organization, appended when asked.
    first = await client.post(
        "/api/posts/signatures",
        json={"content": "-- Team A", "autoAdd": True},
        headers=tenant.headers,
    )
    second = await client.post(
        "/api/posts/signatures",
        json={"content": "-- Marketing", "autoAdd": True},
        headers=tenant.headers,
    )
    assert first.status_code == 201 and second.status_code == 201
    listed = (await client.get("/api/posts/signatures", headers=tenant.headers)).json()
    assert [(s["content"], s["autoAdd"]) for s in listed] == [
        ("-- Marketing", True),
        ("-- Team A", False),
    ]
    created = await _create(client, tenant, body([a.id], "Hello") | {"addSignature": True})
    group = (
        await client.get(f"/api/posts/group/{created['group']}", headers=tenant.headers)
    ).json()
    assert group["posts"][0]["value"][0]["content"] == "Hello\n\n-- Marketing"
    chosen = await _create(client, tenant, body([a.id], "Hi") | {"signatureId": first.json()["id"]})
    group = (await client.get(f"/api/posts/group/{chosen['group']}", headers=tenant.headers)).json()
    assert group["posts"][0]["value"][0]["content"] == "Hi\n\n-- Team A"

    # Comments on a post.
    post_id = created["posts"][0]["postId"]
    added = await client.post(
        f"/api/posts/{post_id}/comments", json={"content": "Looks good"}, headers=tenant.headers
    )
    assert added.status_code == 201, added.text
    comments = (await client.get(f"/api/posts/{post_id}/comments", headers=tenant.headers)).json()
    assert [c["content"] for c in comments] == ["Looks good"]
    edited = await client.put(
        f"/api/posts/comments/{added.json()['id']}",
        json={"content": "LGTM"},
        headers=tenant.headers,
    )
    assert edited.status_code == 200 and edited.json()["content"] == "LGTM"
    foreign = await client.get(f"/api/posts/{post_id}/comments", headers=other_tenant.headers)
    assert foreign.status_code == 404

    # Tags with colors.
    tag = await client.post(
        "/api/posts/tags", json={"name": "Launch", "color": "#FF0000"}, headers=tenant.headers
    )
    assert tag.status_code == 201 and tag.json()["color"] == "#FF0000"
    dup = await client.post("/api/posts/tags", json={"name": "launch"}, headers=tenant.headers)
    assert dup.status_code == 409
    bad_color = await client.post(
        "/api/posts/tags", json={"name": "x", "color": "red"}, headers=tenant.headers
    )
    assert bad_color.status_code == 422 and bad_color.json()["field"] == "color"
    tagged = await _create(
        client, tenant, body([a.id], "tagged") | {"tags": [{"value": "l", "label": "LAUNCH"}]}
    )
    listed_posts = (
        await client.get(
            "/api/posts",
            params={
                "startDate": "2031-03-01T00:00:00Z",
                "endDate": "2031-04-01T00:00:00Z",
                "tag": "launch",
            },
            headers=tenant.headers,
        )
    ).json()["posts"]
    assert [p["id"] for p in listed_posts] == [tagged["posts"][0]["postId"]]
    assert listed_posts[0]["tags"] == [tag.json()]
    renamed = await client.put(
        f"/api/posts/tags/{tag.json()['id']}", json={"color": "#00FF00"}, headers=tenant.headers
    )
    assert renamed.status_code == 200 and renamed.json()["color"] == "#00FF00"
    gone = await client.delete(f"/api/posts/tags/{tag.json()['id']}", headers=tenant.headers)
    assert gone.status_code == 204
    names = [
        t["name"] for t in (await client.get("/api/posts/tags", headers=tenant.headers)).json()
    ]
    assert "Launch" not in names


async def test_calendar_filters_by_customer_channel_and_state(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    from tidings.orgs.models import Customer

    customer = Customer(org_id=tenant.org_id, name="Acme")
    db.add(customer)
    await db.flush()
    a = await make_channel(db, tenant.org_id, name="A", customer_id=customer.id)
    b = await make_channel(db, tenant.org_id, name="B")
    in_a = await _create(client, tenant, body([a.id], "for Acme"))
    in_b = await _create(
        client, tenant, body([b.id], "internal") | {"type": "draft", "date": FUTURE.isoformat()}
    )
    params = {"startDate": "2031-03-01T00:00:00Z", "endDate": "2031-04-01T00:00:00Z"}

    async def ids(**extra: Any) -> list[str]:
        response = await client.get("/api/posts", params=params | extra, headers=tenant.headers)
        assert response.status_code == 200, response.text
        return [p["id"] for p in response.json()["posts"]]

    assert await ids(customer=customer.id) == [in_a["posts"][0]["postId"]]
    assert await ids(integration=b.id) == [in_b["posts"][0]["postId"]]
    assert await ids(state="draft") == [in_b["posts"][0]["postId"]]
    bad = await client.get("/api/posts", params=params | {"state": "LOST"}, headers=tenant.headers)
    assert bad.status_code == 400 and bad.json()["field"] == "state"
    reversed_range = {"startDate": "2031-04-01T00:00:00Z", "endDate": "2031-03-01T00:00:00Z"}
    assert (
        await client.get("/api/posts", params=reversed_range, headers=tenant.headers)
    ).status_code == 400
    garbage = await client.get(
        "/api/posts", params=params | {"cursor": "%%%"}, headers=tenant.headers
    )
    assert garbage.status_code == 400 and garbage.json()["field"] == "cursor"
    count = await db.scalar(text("SELECT count(*) FROM post"))
    assert count == 2


async def test_published_group_moves_or_is_edited_for_publishing_only_with_republish(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    a = await make_channel(db, tenant.org_id)
    created = await _create(client, tenant, body([a.id], "went out"))
    group, post_id = created["group"], created["posts"][0]["postId"]
    post = await db.get(Post, post_id)
    assert post is not None
    post.state = State.PUBLISHED
    post.release_id = "42"
    post.release_url = "https://masto.example/@a/42"
    await db.flush()
    later = "2031-06-01T08:00:00Z"
    url = f"/api/posts/group/{group}"
    for method, path, payload in (
        ("PUT", f"{url}/date", {"date": later}),
        ("PUT", url, body([a.id], "went out") | {"type": "now"}),
        ("PUT", url, body([a.id], "went out") | {"type": "schedule", "date": later}),
    ):
        refused = await client.request(method, path, json=payload, headers=tenant.headers)
        assert refused.status_code == 400, (path, refused.text)
        assert refused.json()["field"] == "republish"
        await db.refresh(post)
        assert post.state == State.PUBLISHED and post.release_id == "42"
    moved = await client.put(
        f"{url}/date", json={"date": later, "republish": True}, headers=tenant.headers
    )
    assert moved.status_code == 200, moved.text
    await db.refresh(post)
    assert post.state == State.QUEUE
    assert (post.release_id, post.release_url) == (None, None)
    assert alarm_lock(post_id, post.publish_date) in await jobs_for(db, post_id)


async def test_draft_and_queue_duplicate_as_scheduled_and_delete_a_whole_group(
    client: httpx.AsyncClient, tenant: Tenant, db: AsyncSession
) -> None:
    a = await make_channel(db, tenant.org_id, name="A")
    b = await make_channel(db, tenant.org_id, name="B")
    created = await _create(client, tenant, body([a.id, b.id], "two channels", "and a reply"))
    group = created["group"]
    heads = [p["postId"] for p in created["posts"]]

    # To drafts: every post of the group; the waiting jobs become no-ops (checked by the engine
    # tests); back to the queue: a job per thread head at its date.
    drafted = await client.put(
        f"/api/posts/{heads[0]}/status", json={"status": "draft"}, headers=tenant.headers
    )
    assert drafted.status_code == 200
    rows = (
        (
            await db.execute(
                select(Post).where(Post.group == group).execution_options(populate_existing=True)
            )
        )
        .scalars()
        .all()
    )
    assert len(rows) == 4 and {r.state for r in rows} == {State.DRAFT}
    await db.execute(text("DELETE FROM procrastinate_jobs"))
    queued = await client.put(
        f"/api/posts/{heads[1]}/status", json={"status": "schedule"}, headers=tenant.headers
    )
    assert queued.status_code == 200 and queued.json()["state"] == "QUEUE"
    for head in heads:
        assert await jobs_for(db, head) == [alarm_lock(head, FUTURE)]

    # Duplicated as scheduled at another date: a new group, queued, with its own jobs.
    when = "2031-07-01T12:00:00Z"
    copy = await client.post(
        f"/api/posts/group/{group}/duplicate",
        json={"type": "schedule", "date": when},
        headers=tenant.headers,
    )
    assert copy.status_code == 201, copy.text
    copied = (
        await client.get(f"/api/posts/group/{copy.json()['group']}", headers=tenant.headers)
    ).json()
    assert copied["state"] == "QUEUE" and copied["publishDate"] == when
    assert sorted(t["integration"]["id"] for t in copied["posts"]) == sorted([a.id, b.id])
    assert all(
        [p["content"] for p in t["value"]] == ["two channels", "and a reply"]
        for t in copied["posts"]
    )
    for entry in copy.json()["posts"]:
        assert len(await jobs_for(db, entry["postId"])) == 1
    assert {entry["postId"] for entry in copy.json()["posts"]}.isdisjoint(heads)

    # Deleting one post deletes its whole group, every channel and every part, softly.
    deleted = await client.delete(f"/api/posts/group/{group}", headers=tenant.headers)
    assert deleted.status_code == 200 and deleted.json()["deleted"] == 4
    stamps = (
        await db.execute(
            select(Post.deleted_at)
            .where(Post.group == group)
            .execution_options(include_deleted=True, populate_existing=True)
        )
    ).scalars()
    assert [s is not None for s in stamps] == [True] * 4
    listed = await client.get(
        "/api/posts",
        params={"startDate": "2031-03-01T00:00:00Z", "endDate": "2031-08-01T00:00:00Z"},
        headers=tenant.headers,
    )
    assert {p["group"] for p in listed.json()["posts"]} == {copy.json()["group"]}
    # The copy is untouched.
    assert (
        await client.get(f"/api/posts/group/{copy.json()['group']}", headers=tenant.headers)
    ).status_code == 200


async def test_auto_add_signature_is_one_per_organization_and_comments_are_deleted(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, db: AsyncSession
) -> None:
    async def signature(content: str, auto_add: bool, who: Tenant = tenant) -> str:
        response = await client.post(
            "/api/posts/signatures",
            json={"content": content, "autoAdd": auto_add},
            headers=who.headers,
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def marked(who: Tenant = tenant) -> list[str]:
        listed = (await client.get("/api/posts/signatures", headers=who.headers)).json()
        return [s["content"] for s in listed if s["autoAdd"]]

    first = await signature("-- One", True)
    second = await signature("-- Two", False)
    await signature("-- Theirs", True, other_tenant)  # another organization keeps its own
    assert await marked() == ["-- One"]
    moved = await client.put(
        f"/api/posts/signatures/{second}", json={"autoAdd": True}, headers=tenant.headers
    )
    assert moved.status_code == 200 and moved.json()["autoAdd"] is True
    assert await marked() == ["-- Two"]
    assert await marked(other_tenant) == ["-- Theirs"]
    # The database holds the rule too: a second mark written behind the service's back fails.
    with pytest.raises(IntegrityError):
        async with db.begin_nested():
            await db.execute(
                text("UPDATE signatures SET auto_add = true WHERE id = :id"), {"id": first}
            )
    # Deleting the marked signature leaves none marked; new posts get no signature.
    gone = await client.delete(f"/api/posts/signatures/{second}", headers=tenant.headers)
    assert gone.status_code == 204
    assert await marked() == []
    a = await make_channel(db, tenant.org_id)
    created = await _create(client, tenant, body([a.id], "Plain") | {"addSignature": True})
    group = (
        await client.get(f"/api/posts/group/{created['group']}", headers=tenant.headers)
    ).json()
    assert group["posts"][0]["value"][0]["content"] == "Plain"

    # Comments: deleted by their author; gone from the list.
    post_id = created["posts"][0]["postId"]
    added = await client.post(
        f"/api/posts/{post_id}/comments", json={"content": "Typo?"}, headers=tenant.headers
    )
    assert added.status_code == 201
    removed = await client.delete(
        f"/api/posts/comments/{added.json()['id']}", headers=tenant.headers
    )
    assert removed.status_code == 204
    assert (await client.get(f"/api/posts/{post_id}/comments", headers=tenant.headers)).json() == []
    again = await client.delete(f"/api/posts/comments/{added.json()['id']}", headers=tenant.headers)
    assert again.status_code == 404
