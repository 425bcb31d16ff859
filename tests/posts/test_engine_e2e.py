"""End to end: the app API, real Procrastinate workers and a fake Mastodon instance."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update

from tests.channels.providers.helpers import PNG
from tests.channels.providers.servers.mastodon import FakeMastodon
from tests.conftest import asgi_client, build_app, make_tenant
from tests.posts.helpers import MediaFiles, add_mastodon_channel, eventually, running_workers
from tidings.core.enums import State
from tidings.db import Database
from tidings.notifications.models import Notifications
from tidings.posts import engine
from tidings.posts.models import Errors, Post, PostAttempt
from tidings.posts.scheduling import ALARM_LEAD

pytestmark = pytest.mark.usefixtures("allow_private")


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


async def create(database: Database, tenant: Any, payload: dict[str, Any]) -> dict[str, Any]:
    async with asgi_client(build_app(database)) as client:
        response = await client.post("/api/posts", json=payload, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def thread(channel_id: str, *parts: str | dict[str, Any], settings: Any = None) -> dict[str, Any]:
    values = [p if isinstance(p, dict) else {"content": p} for p in parts]
    return {"integration": {"id": channel_id}, "settings": settings or {}, "value": values}


async def rows_of(database: Database, group: str) -> list[Post]:
    async with database.session() as session:
        result = await session.execute(
            select(Post).where(Post.group == group).order_by(Post.publish_date, Post.id)
        )
        return list(result.scalars())


async def attempts_of(database: Database, post_id: str) -> list[PostAttempt]:
    async with database.session() as session:
        result = await session.execute(
            select(PostAttempt).where(PostAttempt.post_id == post_id).order_by(PostAttempt.attempt)
        )
        return list(result.scalars())


async def state_of(database: Database, post_id: str) -> Post:
    async with database.session() as session:
        post = await session.get(Post, post_id, execution_options={"include_deleted": True})
        assert post is not None
        return post


async def test_scheduled_thread_is_published_on_time_with_media(fresh_database: Database) -> None:
    tenant = await make_tenant(fresh_database)
    async with FakeMastodon() as masto, MediaFiles() as files:
        channel = await add_mastodon_channel(fresh_database, tenant.org_id, masto)
        due = datetime.now(UTC) + timedelta(seconds=2)
        image = {"id": None, "path": files.url("/files/cat.png"), "alt": "A cat"}
        created = await create(
            fresh_database,
            tenant,
            {
                "type": "schedule",
                "date": iso(due),
                "posts": [
                    thread(
                        channel,
                        {"content": "Hello from Tidings", "image": [image]},
                        "Second part",
                        "Third part",
                        settings={"__type": "mastodon", "visibility": "unlisted"},
                    )
                ],
            },
        )
        async with running_workers(fresh_database):
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds() - 0.5))
            assert masto.statuses == {}, "published before its time"
            await eventually(lambda: len(masto.statuses) >= 1, timeout=10)
            first_seen = datetime.now(UTC)
            await eventually(lambda: len(masto.statuses) == 3, timeout=10)
        assert due <= first_seen < due + timedelta(seconds=3)

        statuses = sorted(masto.statuses.values(), key=lambda s: int(s["id"]))
        assert [s["content"] for s in statuses] == [
            "<p>Hello from Tidings</p>",
            "<p>Second part</p>",
            "<p>Third part</p>",
        ]
        assert statuses[0]["in_reply_to_id"] is None
        assert statuses[1]["in_reply_to_id"] == statuses[0]["id"]
        assert statuses[2]["in_reply_to_id"] == statuses[1]["id"]
        assert {s["visibility"] for s in statuses} == {"unlisted"}
        (media,) = masto.media.values()
        assert media["data"] == PNG and media["description"] == "A cat"
        assert [m["id"] for m in statuses[0]["media_attachments"]] == [media["id"]]

        rows = await rows_of(fresh_database, created["group"])
        assert [r.state for r in rows] == [State.PUBLISHED] * 3
        assert rows[0].release_id == statuses[0]["id"]
        assert rows[0].release_url == statuses[0]["url"]
        # The post id is the idempotency key of its request.
        keys = [r.headers["idempotency-key"] for r in masto.calls("POST", "/api/v1/statuses")]
        assert keys == [r.id for r in rows]
        (attempt,) = await attempts_of(fresh_database, rows[0].id)
        assert attempt.outcome == "published" and attempt.finished_at is not None


async def test_reply_waits_for_its_delay_under_the_previous_part(fresh_database: Database) -> None:
    tenant = await make_tenant(fresh_database)
    async with FakeMastodon() as masto:
        channel = await add_mastodon_channel(fresh_database, tenant.org_id, masto)
        created = await create(
            fresh_database,
            tenant,
            {
                "type": "now",
                "posts": [thread(channel, "Head", {"content": "Ten minutes later", "delay": 10})],
            },
        )
        async with running_workers(fresh_database):
            await eventually(lambda: len(masto.statuses) == 1)
            head, reply = await rows_of(fresh_database, created["group"])
            await eventually(lambda: _published(fresh_database, head.id))
            head = await state_of(fresh_database, head.id)
            reply = await state_of(fresh_database, reply.id)
            assert head.state == State.PUBLISHED and reply.state == State.QUEUE
            # Scheduled from the head's real publish time, with a job at that time.
            assert head.updated_at is not None
            expected = head.updated_at + timedelta(minutes=10)
            assert abs((reply.publish_date - expected).total_seconds()) < 2
            async with fresh_database.session() as session:
                scheduled = await session.scalar(
                    text(
                        "SELECT scheduled_at FROM procrastinate_jobs "
                        "WHERE status = 'todo' AND args->>'post_id' = :p"
                    ),
                    {"p": reply.id},
                )
            # The job wakes the engine a little early; the reply waits for its date.
            assert scheduled == reply.publish_date - ALARM_LEAD
            await asyncio.sleep(0.5)
            assert len(masto.statuses) == 1
            # Ten minutes pass: the reply comes due; its job (for the old date) is gone, the
            # reconciler gives it one.
            async with fresh_database.session() as session:
                await session.execute(
                    update(Post).where(Post.id == reply.id).values(publish_date=datetime.now(UTC))
                )
                await session.execute(
                    text("DELETE FROM procrastinate_jobs WHERE args->>'post_id' = :p"),
                    {"p": reply.id},
                )
            report = await engine.reconcile(due_grace=0)
            assert report.redeferred == [reply.id]
            await eventually(lambda: len(masto.statuses) == 2)
        statuses = sorted(masto.statuses.values(), key=lambda s: int(s["id"]))
        assert statuses[1]["in_reply_to_id"] == statuses[0]["id"]
        assert (await state_of(fresh_database, reply.id)).state == State.PUBLISHED


async def test_post_reference_is_replaced_by_release_url(fresh_database: Database) -> None:
    tenant = await make_tenant(fresh_database)
    async with FakeMastodon() as masto:
        channel = await add_mastodon_channel(fresh_database, tenant.org_id, masto)
        first = await create(
            fresh_database, tenant, {"type": "now", "posts": [thread(channel, "The original")]}
        )
        first_id = first["posts"][0]["postId"]
        async with running_workers(fresh_database):
            await eventually(lambda: len(masto.statuses) == 1)
            await eventually(lambda: _published(fresh_database, first_id), timeout=5)
            await create(
                fresh_database,
                tenant,
                {"type": "now", "posts": [thread(channel, f"Read this: (post:{first_id})")]},
            )
            await eventually(lambda: len(masto.statuses) == 2)
        original = (await state_of(fresh_database, first_id)).release_url
        assert original
        texts = [s["content"] for s in masto.statuses.values()]
        assert f"<p>Read this: {original}</p>" in texts


async def _published(database: Database, post_id: str) -> bool:
    return (await state_of(database, post_id)).state == State.PUBLISHED


# ---- failure classes ------------------------------------------------------------------------


async def _publish_now(
    database: Database, masto: FakeMastodon, *, content: str = "Hello", **channel: Any
) -> tuple[str, str]:
    tenant = await make_tenant(database)
    channel_id = await add_mastodon_channel(database, tenant.org_id, masto, **channel)
    created = await create(
        database, tenant, {"type": "now", "posts": [thread(channel_id, content)]}
    )
    return created["posts"][0]["postId"], tenant.org_id


async def _settled(database: Database, post_id: str) -> Post:
    async def done() -> Post | None:
        post = await state_of(database, post_id)
        return post if post.state in (State.PUBLISHED, State.ERROR) else None

    result: Post = await eventually(done, timeout=15)
    return result


async def _failure_records(database: Database, post_id: str, org_id: str) -> tuple[Any, Any]:
    async with database.session() as session:
        errors = list(
            (await session.execute(select(Errors).where(Errors.post_id == post_id))).scalars()
        )
        notes = list(
            (
                await session.execute(
                    select(Notifications).where(Notifications.organization_id == org_id)
                )
            ).scalars()
        )
    return errors, notes


async def test_rejected_content_is_an_error_with_the_platform_message(
    fresh_database: Database,
) -> None:
    async with FakeMastodon() as masto:
        masto.fail("POST", "/api/v1/statuses", 422, {"error": "Validation failed: Text is spam"})
        post_id, org_id = await _publish_now(fresh_database, masto)
        async with running_workers(fresh_database):
            post = await _settled(fresh_database, post_id)
        assert post.state == State.ERROR
        assert post.error == "Mastodon: Validation failed: Text is spam"
        errors, notes = await _failure_records(fresh_database, post_id, org_id)
        assert [e.error for e in errors] == [post.error]
        assert errors[0].context is not None and errors[0].context["statusCode"] == 422
        assert any("Text is spam" in n.content for n in notes)
        (attempt,) = await attempts_of(fresh_database, post_id)
        assert attempt.outcome == "error" and attempt.status_code == 422
        assert masto.statuses == {}


async def test_transient_errors_retry_with_backoff_then_publish(
    fresh_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "BACKOFF_BASE", 0.2)
    async with FakeMastodon() as masto:
        masto.fail("POST", "/api/v1/statuses", 503, {"error": "Down for maintenance"})
        masto.fail(
            "POST",
            "/api/v1/statuses",
            429,
            {"error": "Too many requests"},
            headers={"Retry-After": "1"},
        )
        post_id, _ = await _publish_now(fresh_database, masto)
        async with running_workers(fresh_database):
            post = await _settled(fresh_database, post_id)
        assert post.state == State.PUBLISHED and len(masto.statuses) == 1
        first, second, third = await attempts_of(fresh_database, post_id)
        assert (first.outcome, first.status_code) == ("retry", 503)
        assert (second.outcome, second.status_code) == ("retry", 429)
        assert third.outcome == "published"
        assert first.retry_at is not None and second.retry_at is not None
        assert first.finished_at is not None and second.finished_at is not None
        # Exponential: 0.2 s then 0.4 s -- but the platform's Retry-After (1 s) wins.
        assert (second.retry_at - second.finished_at).total_seconds() >= 0.99
        assert third.started_at >= second.retry_at


async def test_transient_errors_give_up_after_the_cap(
    fresh_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "BACKOFF_BASE", 0.05)
    monkeypatch.setattr(engine, "MAX_RETRIES", 2)
    async with FakeMastodon() as masto:
        masto.fail("POST", "/api/v1/statuses", 502, {"error": "Bad gateway"}, times=10)
        post_id, _ = await _publish_now(fresh_database, masto)
        async with running_workers(fresh_database):
            post = await _settled(fresh_database, post_id)
        assert post.state == State.ERROR
        assert post.error == "Gave up after 2 tries: Mastodon: Bad gateway"
        outcomes = [a.outcome for a in await attempts_of(fresh_database, post_id)]
        assert outcomes == ["retry", "retry", "error"]


async def test_expired_token_is_refreshed_once_and_the_publish_retried(
    fresh_database: Database,
) -> None:
    async with FakeMastodon() as masto:
        post_id, _ = await _publish_now(fresh_database, masto)
        masto.oauth.expire_all()  # the stored access token is no longer valid
        async with running_workers(fresh_database):
            post = await _settled(fresh_database, post_id)
        assert post.state == State.PUBLISHED, post.error
        outcomes = [a.outcome for a in await attempts_of(fresh_database, post_id)]
        assert outcomes == ["published"]
        assert len(masto.calls("POST", "/oauth/token")) == 1
        assert len(masto.calls("POST", "/api/v1/statuses")) == 2


async def test_revoked_authorization_marks_the_channel_and_fails(
    fresh_database: Database,
) -> None:
    async with FakeMastodon() as masto:
        post_id, org_id = await _publish_now(fresh_database, masto)
        masto.oauth.revoke_all()
        async with running_workers(fresh_database):
            post = await _settled(fresh_database, post_id)
        assert post.state == State.ERROR
        assert post.error is not None and "lost its authorization" in post.error
        async with fresh_database.session() as session:
            channel = await session.get(
                engine.Integration, post.integration_id, populate_existing=True
            )
            assert channel is not None and channel.refresh_needed
        _, notes = await _failure_records(fresh_database, post_id, org_id)
        assert any("reconnect" in n.content.lower() for n in notes)


async def test_unavailable_channel_fails_with_a_clear_reason(fresh_database: Database) -> None:
    async with FakeMastodon() as masto:
        post_id, _ = await _publish_now(fresh_database, masto, name="Quiet")
        async with fresh_database.session() as session:
            post = await session.get(Post, post_id)
            assert post is not None
            await session.execute(
                update(engine.Integration)
                .where(engine.Integration.id == post.integration_id)
                .values(disabled=True)
            )
        async with running_workers(fresh_database):
            post = await _settled(fresh_database, post_id)
        assert post.state == State.ERROR
        assert post.error == "The channel Quiet is disabled; enable it to publish"
        assert masto.calls("POST", "/api/v1/statuses") == []


async def test_lost_answer_is_checked_on_the_platform_then_resent_with_the_same_key(
    fresh_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "HTTP_TIMEOUT", engine.httpx.Timeout(5.0, read=0.5))
    monkeypatch.setattr(engine, "BACKOFF_BASE", 0.1)
    async with FakeMastodon() as masto:
        masto.hang("POST", "/api/v1/statuses")
        post_id, _ = await _publish_now(fresh_database, masto)
        async with running_workers(fresh_database):
            post = await _settled(fresh_database, post_id)
        assert post.state == State.PUBLISHED and len(masto.statuses) == 1
        first, second = await attempts_of(fresh_database, post_id)
        assert first.outcome == "unknown" and first.error_class == "unknown-outcome"
        assert second.outcome == "published"
        assert masto.calls("GET", "/api/v1/accounts/{id}/statuses"), "the platform was asked"
        keys = {r.headers["idempotency-key"] for r in masto.calls("POST", "/api/v1/statuses")}
        assert keys == {post_id}
