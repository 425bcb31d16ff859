"""Posts through the Public API with the bodies Postiz clients send (its CLI's and the
contract's), on real PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.channels.factories import make_channel
from tests.channels.providers.servers.mastodon import FakeMastodon
from tests.posts.helpers import mastodon_account
from tests.public_api.conftest import ApiKey
from tidings.core.enums import CreationMethod, State
from tidings.posts.models import Post, Tags

BASE = "/public/v1"
FUTURE = datetime(2031, 3, 14, 12, 0, tzinfo=UTC)
RANGE = {"startDate": "2031-03-01T00:00:00.000Z", "endDate": "2031-04-01T00:00:00.000Z"}


def postiz_body(channel_ids: list[str], *contents: str, **top: Any) -> dict[str, Any]:
    """A body as the contract shows it: one thread per channel, replies 5 minutes apart."""
    value = [
        {"content": text, "image": [], **({"delay": 5} if i else {})}
        for i, text in enumerate(contents)
    ]
    return {
        "type": "schedule",
        "date": "2031-03-14T12:00:00Z",
        "shortLink": False,
        "tags": [],
        "posts": [
            {"integration": {"id": cid}, "settings": {"__type": "EmptySettings"}, "value": value}
            for cid in channel_ids
        ],
    } | top


async def rows_of(db: AsyncSession, org_id: str) -> list[Post]:
    result = await db.execute(
        select(Post)
        .where(Post.organization_id == org_id)
        .order_by(Post.publish_date, Post.id)
        .execution_options(populate_existing=True, include_deleted=True)
    )
    return list(result.scalars())


async def test_create_list_and_delete_a_thread_on_two_channels(
    client: httpx.AsyncClient, db: AsyncSession, api: ApiKey
) -> None:
    masto = await make_channel(db, api.org_id, provider="mastodon", name="Masto")
    sky = await make_channel(db, api.org_id, provider="bluesky", name="Sky")
    body = postiz_body([masto.id, sky.id], "Launch day!", "More in a reply")
    body["tags"] = [{"value": "launch", "label": "Launch"}]
    body["inter"] = 7
    created = await client.post(f"{BASE}/posts", json=body, headers=api.headers)
    assert created.status_code == 201, created.text
    answer = created.json()
    assert [item["integration"] for item in answer] == [masto.id, sky.id]
    assert all(set(item) == {"postId", "integration"} for item in answer)

    rows = await rows_of(db, api.org_id)
    assert len(rows) == 4
    assert {r.creation_method for r in rows} == {CreationMethod.API}
    assert len({r.group for r in rows}) == 1
    heads = [r for r in rows if r.parent_post_id is None]
    assert {h.id for h in heads} == {item["postId"] for item in answer}
    assert all(h.publish_date == FUTURE and h.interval_in_days == 7 for h in heads)
    replies = [r for r in rows if r.parent_post_id is not None]
    assert {r.publish_date for r in replies} == {FUTURE + timedelta(minutes=5)}
    tag_names = (await db.execute(select(Tags.name).where(Tags.org_id == api.org_id))).scalars()
    assert list(tag_names) == ["Launch"]

    listed = await client.get(f"{BASE}/posts", params=RANGE, headers=api.headers)
    assert listed.status_code == 200, listed.text
    posts = listed.json()["posts"]
    # Two heads at the date, then their weekly repetitions within the month.
    firsts = [p for p in posts if p["publishDate"].startswith("2031-03-14")]
    assert {p["id"] for p in firsts} == {item["postId"] for item in answer}
    for post in firsts:
        assert post["content"] == "Launch day!"
        assert post["state"] == "QUEUE" and post["releaseURL"] is None
        assert post["group"] == rows[0].group
        assert set(post["integration"]) >= {"id", "name", "providerIdentifier", "picture"}
    assert {p["integration"]["providerIdentifier"] for p in firsts} == {"mastodon", "bluesky"}
    repeats = [p for p in posts if p["publishDate"].startswith("2031-03-21")]
    assert len(repeats) == 2

    deleted = await client.delete(f"{BASE}/posts/{answer[0]['postId']}", headers=api.headers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["id"] == answer[0]["postId"] and "error" not in deleted.json()
    assert all(r.deleted_at is not None for r in await rows_of(db, api.org_id))
    assert (await client.get(f"{BASE}/posts", params=RANGE, headers=api.headers)).json() == {
        "posts": []
    }
    again = await client.delete(f"{BASE}/posts/{answer[0]['postId']}", headers=api.headers)
    assert again.status_code == 404


async def test_delete_by_group_and_the_cli_body(
    client: httpx.AsyncClient, db: AsyncSession, api: ApiKey
) -> None:
    channel = await make_channel(db, api.org_id, provider="mastodon")
    # What `postiz posts:create -c ... -i ...` sends: type now, a delay on replies, a random
    # image id for each media path.
    cli = {
        "type": "draft",
        "date": datetime.now(UTC).isoformat(),
        "shortLink": True,
        "tags": [],
        "creationMethod": "CLI",
        "posts": [
            {
                "integration": {"id": channel.id},
                "value": [{"content": "from the CLI", "image": []}, {"content": "r", "delay": 5}],
                "settings": {"__type": "EmptySettings"},
            }
        ],
    }
    created = await client.post(f"{BASE}/posts", json=cli, headers=api.headers)
    assert created.status_code == 201, created.text
    rows = await rows_of(db, api.org_id)
    assert {r.state for r in rows} == {State.DRAFT}
    assert {r.creation_method for r in rows} == {CreationMethod.CLI}
    group = rows[0].group
    deleted = await client.delete(f"{BASE}/posts/group/{group}", headers=api.headers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["group"] == group and deleted.json()["deleted"] == 2
    missing = await client.delete(f"{BASE}/posts/group/{group}", headers=api.headers)
    assert missing.status_code == 404


async def test_validation_errors_name_the_field_and_store_nothing(
    client: httpx.AsyncClient, db: AsyncSession, api: ApiKey
) -> None:
    masto = await make_channel(db, api.org_id, provider="mastodon", name="Masto")
    sky = await make_channel(db, api.org_id, provider="bluesky", name="Sky B")

    # Shape errors: the dotted path of the field.
    shape = postiz_body([masto.id], "ok", "reply")
    shape["posts"][0]["value"][1]["content"] = 42
    response = await client.post(f"{BASE}/posts", json=shape, headers=api.headers)
    assert response.status_code == 422
    assert response.json()["field"] == "posts.0.value.1.content"
    no_posts = await client.post(f"{BASE}/posts", json={"type": "now"}, headers=api.headers)
    assert no_posts.status_code == 422 and no_posts.json()["field"] == "posts"
    bad_type = await client.post(
        f"{BASE}/posts", json=postiz_body([masto.id], "x") | {"type": "later"}, headers=api.headers
    )
    assert bad_type.status_code == 422 and bad_type.json()["field"] == "type"

    # Provider rules: 400 naming the channel and the rule, with the same field style.
    too_long = postiz_body([masto.id, sky.id], "fine", "y" * 400)
    response = await client.post(f"{BASE}/posts", json=too_long, headers=api.headers)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["channel"] == sky.id and error["rule"] == "too_long"
    assert error["field"] == "posts.1.value.1.content"
    assert "Sky B" in error["message"]
    assert error["violations"][0]["field"] == "posts.1.value.1.content"

    empty = postiz_body([masto.id], "   ")
    response = await client.post(f"{BASE}/posts", json=empty, headers=api.headers)
    assert response.status_code == 400 and response.json()["rule"] == "empty"

    unknown = await client.post(
        f"{BASE}/posts", json=postiz_body(["nope"], "hello"), headers=api.headers
    )
    assert unknown.status_code == 404 and unknown.json()["field"] == "posts.0.integration.id"

    no_date = postiz_body([masto.id], "hello")
    del no_date["date"]
    response = await client.post(f"{BASE}/posts", json=no_date, headers=api.headers)
    assert response.status_code == 400 and response.json()["field"] == "date"

    far = postiz_body([masto.id], "hello") | {"date": "9999-12-31T23:59:59Z"}
    response = await client.post(f"{BASE}/posts", json=far, headers=api.headers)
    assert response.status_code == 422 and response.json()["field"] == "date"

    nul = postiz_body([masto.id], "hello\x00there")
    response = await client.post(f"{BASE}/posts", json=nul, headers=api.headers)
    assert response.status_code == 422
    assert response.json()["field"] == "posts.0.value.0.content"
    bad_settings = postiz_body([masto.id], "hello")
    bad_settings["posts"][0]["settings"] = {"visibility": "everyone"}
    response = await client.post(f"{BASE}/posts", json=bad_settings, headers=api.headers)
    assert response.status_code == 400 and response.json()["field"] == "posts.0.settings"

    count = await db.scalar(select(func.count()).select_from(Post))
    assert count == 0


async def test_update_status_settings_release_id_and_analytics(
    client: httpx.AsyncClient, db: AsyncSession, api: ApiKey
) -> None:
    channel = await make_channel(db, api.org_id, provider="mastodon")
    created = await client.post(
        f"{BASE}/posts", json=postiz_body([channel.id], "hello"), headers=api.headers
    )
    post_id = created.json()[0]["postId"]

    settings = await client.put(
        f"{BASE}/posts/{post_id}/settings",
        json={"settings": {"visibility": "unlisted"}},
        headers=api.headers,
    )
    assert settings.status_code == 200, settings.text
    assert settings.json()["settings"]["visibility"] == "unlisted"
    wrong = await client.put(
        f"{BASE}/posts/{post_id}/settings",
        json={"settings": {"visibility": "everyone"}},
        headers=api.headers,
    )
    assert wrong.status_code == 400 and wrong.json()["field"] == "settings"

    draft = await client.put(
        f"{BASE}/posts/{post_id}/status", json={"status": "draft"}, headers=api.headers
    )
    assert draft.status_code == 200, draft.text
    assert draft.json()["state"] == "DRAFT"
    back = await client.put(
        f"{BASE}/posts/{post_id}/status", json={"status": "schedule"}, headers=api.headers
    )
    assert back.status_code == 200 and back.json()["state"] == "QUEUE"
    invalid = await client.put(
        f"{BASE}/posts/{post_id}/status", json={"status": "published"}, headers=api.headers
    )
    assert invalid.status_code == 422 and invalid.json()["field"] == "status"

    # No platform id yet: analytics say so, and nothing is missing to look up.
    analytics = await client.get(
        f"{BASE}/analytics/post/{post_id}", params={"date": 7}, headers=api.headers
    )
    assert analytics.status_code == 200 and analytics.json() == {"missing": True}
    missing = await client.get(f"{BASE}/posts/{post_id}/missing", headers=api.headers)
    assert missing.status_code == 200 and missing.json() == []

    released = await client.put(
        f"{BASE}/posts/{post_id}/release-id", json={"releaseId": "1001"}, headers=api.headers
    )
    assert released.status_code == 200, released.text
    assert released.json()["releaseId"] == "1001"
    after = await client.get(f"{BASE}/analytics/post/{post_id}", headers=api.headers)
    assert after.json() == []
    empty_id = await client.put(
        f"{BASE}/posts/{post_id}/release-id", json={"releaseId": ""}, headers=api.headers
    )
    assert empty_id.status_code == 422 and empty_id.json()["field"] == "releaseId"


async def test_republish_needs_the_flag(
    client: httpx.AsyncClient, db: AsyncSession, api: ApiKey
) -> None:
    channel = await make_channel(db, api.org_id, provider="mastodon")
    post = Post(
        organization_id=api.org_id,
        integration_id=channel.id,
        group="published-group",
        content="done",
        publish_date=datetime.now(UTC) - timedelta(days=1),
        state=State.PUBLISHED,
        release_id="77",
        release_url="https://m.example/@a/77",
    )
    db.add(post)
    await db.flush()
    body = postiz_body([channel.id], "again")
    body["posts"][0]["group"] = "published-group"
    refused = await client.post(f"{BASE}/posts", json=body, headers=api.headers)
    assert refused.status_code == 400 and refused.json()["field"] == "republish"
    accepted = await client.post(
        f"{BASE}/posts", json=body | {"republish": True}, headers=api.headers
    )
    assert accepted.status_code == 201, accepted.text
    assert accepted.json() == [{"postId": post.id, "integration": channel.id}]
    await db.refresh(post)
    assert post.state == State.QUEUE and post.content == "again" and post.release_id is None


async def test_list_needs_a_range(client: httpx.AsyncClient, api: ApiKey) -> None:
    missing = await client.get(f"{BASE}/posts", headers=api.headers)
    assert missing.status_code == 422 and missing.json()["field"] == "startDate"
    reversed_range = await client.get(
        f"{BASE}/posts",
        params={"startDate": RANGE["endDate"], "endDate": RANGE["startDate"]},
        headers=api.headers,
    )
    assert reversed_range.status_code == 400 and reversed_range.json()["field"] == "endDate"
    ancient = await client.get(
        f"{BASE}/posts",
        params={"startDate": "0001-01-01T00:00:00+01:00", "endDate": RANGE["endDate"]},
        headers=api.headers,
    )
    assert ancient.status_code == 422 and ancient.json()["field"] == "startDate"


async def test_missing_finds_the_published_content_and_release_id_connects_it(
    allow_private: None, client: httpx.AsyncClient, db: AsyncSession, api: ApiKey
) -> None:
    async with FakeMastodon() as masto:
        account = mastodon_account(masto)
        channel = await make_channel(
            db,
            api.org_id,
            provider="mastodon",
            token=account["token"],
            internal_id=account["internal_id"],
            custom=json.loads(account["custom_instance_details"]),
        )
        # The status is on the instance, but the post never got its id (an unknown outcome).
        async with httpx.AsyncClient() as http:
            posted = await http.post(
                masto.url("/api/v1/statuses"),
                json={"status": "Did this go out?"},
                headers={"Authorization": f"Bearer {account['token']}"},
            )
        status = posted.json()
        post = Post(
            organization_id=api.org_id,
            integration_id=channel.id,
            group="unknown-outcome",
            content="Did this go out?",
            publish_date=datetime.now(UTC) - timedelta(minutes=1),
            state=State.ERROR,
            release_id="missing",
        )
        other = Post(
            organization_id=api.org_id,
            integration_id=channel.id,
            group="never-sent",
            content="Not on the instance",
            publish_date=datetime.now(UTC) - timedelta(minutes=1),
            state=State.ERROR,
        )
        db.add_all([post, other])
        await db.flush()

        assert (
            await client.get(f"{BASE}/analytics/post/{post.id}", headers=api.headers)
        ).json() == {"missing": True}
        found = await client.get(f"{BASE}/posts/{post.id}/missing", headers=api.headers)
        assert found.status_code == 200, found.text
        assert found.json() == [{"id": status["id"], "url": status["url"]}]
        nothing = await client.get(f"{BASE}/posts/{other.id}/missing", headers=api.headers)
        assert nothing.json() == []

        connected = await client.put(
            f"{BASE}/posts/{post.id}/release-id",
            json={"releaseId": status["id"]},
            headers=api.headers,
        )
        assert connected.status_code == 200 and connected.json()["releaseId"] == status["id"]
        assert (
            await client.get(f"{BASE}/posts/{post.id}/missing", headers=api.headers)
        ).json() == []


async def test_type_now_and_update_as_postiz_clients_send_them(
    client: httpx.AsyncClient, db: AsyncSession, api: ApiKey
) -> None:
    channel = await make_channel(db, api.org_id, provider="mastodon")
    # "now": the date is ignored, the post is due at once.
    before = datetime.now(UTC)
    now = await client.post(
        f"{BASE}/posts",
        json=postiz_body([channel.id], "right away", type="now"),
        headers=api.headers,
    )
    assert now.status_code == 201, now.text
    [row] = await rows_of(db, api.org_id)
    assert row.state == State.QUEUE
    assert before - timedelta(seconds=1) <= row.publish_date <= datetime.now(UTC)

    # "update": the group named by posts[].group is edited in place; ids survive.
    body = postiz_body([channel.id], "first draft of the text")
    body["posts"][0]["group"] = "campaign-7"
    created = await client.post(f"{BASE}/posts", json=body, headers=api.headers)
    assert created.status_code == 201, created.text
    body["type"] = "update"
    body["posts"][0]["value"][0]["content"] = "final text"
    updated = await client.post(f"{BASE}/posts", json=body, headers=api.headers)
    assert updated.status_code == 201, updated.text
    assert updated.json() == created.json()
    rows = [r for r in await rows_of(db, api.org_id) if r.group == "campaign-7"]
    assert [(r.content, r.state, r.publish_date) for r in rows] == [
        ("final text", State.QUEUE, FUTURE)
    ]
    # Nothing to update: 400 naming the group.
    body["posts"][0]["group"] = "no-such-group"
    missing = await client.post(f"{BASE}/posts", json=body, headers=api.headers)
    assert missing.status_code == 400 and missing.json()["field"] == "group"
