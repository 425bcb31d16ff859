"""Failure classes the engine must land right, through the app API and real workers against a
fake Mastodon instance: a refused refresh, a refreshed token refused again, channels that can no
longer publish, a failed head of a thread, a reference to a post not published yet."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.channels.providers.servers.mastodon import FakeMastodon
from tests.conftest import make_tenant
from tests.posts.helpers import add_mastodon_channel, running_workers
from tests.posts.test_engine_e2e import (
    _failure_records,
    _publish_now,
    _settled,
    attempts_of,
    create,
    rows_of,
    thread,
)
from tidings.channels.models import Integration
from tidings.channels.providers.mastodon import MastodonProvider
from tidings.core.enums import State
from tidings.db import Database
from tidings.posts.models import Errors, Post

pytestmark = pytest.mark.usefixtures("allow_private")


async def _channel(database: Database, channel_id: str) -> Integration:
    async with database.session() as session:
        row = await session.get(
            Integration,
            channel_id,
            populate_existing=True,
            execution_options={"include_deleted": True},
        )
        assert row is not None
        return row


async def test_refused_refresh_fails_the_post_and_marks_the_channel(
    fresh_database: Database,
) -> None:
    async with FakeMastodon() as masto:
        post_id, org_id = await _publish_now(fresh_database, masto, name="Expired")
        masto.oauth.expire_all()
        masto.fail(
            "POST",
            "/oauth/token",
            400,
            {"error": "invalid_grant", "error_description": "The refresh token was revoked"},
        )
        async with running_workers(fresh_database):
            post = await _settled(fresh_database, post_id)
        assert post.state == State.ERROR
        assert post.error is not None
        assert post.error.startswith("The channel Expired lost its authorization; reconnect it")
        assert (await _channel(fresh_database, post.integration_id)).refresh_needed
        # Refreshed once, never sent again with a token that does not work.
        assert len(masto.calls("POST", "/oauth/token")) == 1
        assert len(masto.calls("POST", "/api/v1/statuses")) == 1
        assert masto.statuses == {}
        errors, notes = await _failure_records(fresh_database, post_id, org_id)
        assert [e.error for e in errors] == [post.error]
        assert any("Expired" in n.content and "reconnect" in n.content for n in notes)
        (attempt,) = await attempts_of(fresh_database, post_id)
        assert attempt.outcome == "error"


async def test_refreshed_token_refused_again_is_an_error_and_needs_reconnect(
    fresh_database: Database,
) -> None:
    async with FakeMastodon() as masto:
        post_id, _ = await _publish_now(fresh_database, masto, name="Stubborn")
        # The token is refused before and after a refresh that itself works.
        masto.fail(
            "POST", "/api/v1/statuses", 401, {"error": "The access token is invalid"}, times=2
        )
        async with running_workers(fresh_database):
            post = await _settled(fresh_database, post_id)
        assert post.state == State.ERROR
        assert post.error is not None
        assert post.error.startswith("Stubborn refused the refreshed token; reconnect the channel")
        assert len(masto.calls("POST", "/oauth/token")) == 1, "one refresh, not a loop"
        assert len(masto.calls("POST", "/api/v1/statuses")) == 2
        assert (await _channel(fresh_database, post.integration_id)).refresh_needed


async def test_channels_that_cannot_publish_fail_with_their_reason(
    fresh_database: Database,
) -> None:
    """A channel disabled, deleted, needing reconnection or with its page not picked since the
    post was scheduled: the post goes to ERROR with that reason, nothing is sent."""
    tenant = await make_tenant(fresh_database)
    changes: dict[str, dict[str, Any]] = {
        "Gone": {"deleted_at": datetime.now(UTC)},
        "Off": {"disabled": True},
        "Lapsed": {"refresh_needed": True},
        "Halfway": {"in_between_steps": True},
    }
    expected = {
        "Gone": "The channel Gone was deleted",
        "Off": "The channel Off is disabled; enable it to publish",
        "Lapsed": "The channel Lapsed lost its authorization; reconnect it to publish",
        "Halfway": "The channel Halfway is not fully connected; pick its page or account first",
    }
    async with FakeMastodon() as masto:
        channels = {
            name: await add_mastodon_channel(fresh_database, tenant.org_id, masto, name=name)
            for name in changes
        }
        # Scheduled while every channel could publish ...
        created = await create(
            fresh_database,
            tenant,
            {
                "type": "now",
                "posts": [thread(channels[name], f"to {name}") for name in changes],
            },
        )
        # ... and each channel changed before the worker gets to it.
        async with fresh_database.session() as session:
            for name, values in changes.items():
                await session.execute(
                    update(Integration)
                    .where(Integration.id == channels[name])
                    .values(**values)
                    .execution_options(include_deleted=True)
                )
        async with running_workers(fresh_database):
            settled = {
                entry["integration"]: await _settled(fresh_database, entry["postId"])
                for entry in created["posts"]
            }
        assert masto.calls("POST", "/api/v1/statuses") == []
        for name, channel_id in channels.items():
            post = settled[channel_id]
            assert (post.state, post.error) == (State.ERROR, expected[name])
            (attempt,) = await attempts_of(fresh_database, post.id)
            assert (attempt.outcome, attempt.error_class) == ("error", "channel")
        async with fresh_database.session() as session:
            errors = list(
                (
                    await session.execute(
                        select(Errors.error).where(Errors.organization_id == tenant.org_id)
                    )
                ).scalars()
            )
        assert sorted(errors) == sorted(expected.values())


async def test_a_failed_head_fails_the_rest_of_its_thread(fresh_database: Database) -> None:
    tenant = await make_tenant(fresh_database)
    async with FakeMastodon() as masto:
        channel = await add_mastodon_channel(fresh_database, tenant.org_id, masto)
        masto.fail("POST", "/api/v1/statuses", 422, {"error": "Validation failed: spam"})
        created = await create(
            fresh_database,
            tenant,
            {"type": "now", "posts": [thread(channel, "Head", "Reply", "Last")]},
        )
        async with running_workers(fresh_database):
            head = await _settled(fresh_database, created["posts"][0]["postId"])
            rows = await rows_of(fresh_database, created["group"])
            for row in rows:
                await _settled(fresh_database, row.id)
        assert head.error == "Mastodon: Validation failed: spam"
        by_id = {r.id: r for r in await rows_of(fresh_database, created["group"])}
        reply = next(r for r in by_id.values() if r.parent_post_id == head.id)
        last = next(r for r in by_id.values() if r.parent_post_id == reply.id)
        for part in (reply, last):
            assert part.state == State.ERROR
            assert part.error == "Not published because the previous part of the thread failed"
            assert await attempts_of(fresh_database, part.id) == []  # never tried
        assert len(masto.calls("POST", "/api/v1/statuses")) == 1


async def test_a_reference_to_a_post_not_published_yet_is_an_error_not_a_raw_token(
    fresh_database: Database,
) -> None:
    tenant = await make_tenant(fresh_database)
    async with FakeMastodon() as masto:
        channel = await add_mastodon_channel(fresh_database, tenant.org_id, masto)
        draft = await create(
            fresh_database,
            tenant,
            {"type": "draft", "posts": [thread(channel, "Not yet")]},
        )
        draft_id = draft["posts"][0]["postId"]
        referring = await create(
            fresh_database,
            tenant,
            {"type": "now", "posts": [thread(channel, f"See (post:{draft_id})")]},
        )
        async with running_workers(fresh_database):
            post = await _settled(fresh_database, referring["posts"][0]["postId"])
        assert post.state == State.ERROR
        assert post.error == f"The post refers to post {draft_id}, which has no published URL yet"
        assert masto.calls("POST", "/api/v1/statuses") == []
        async with fresh_database.session() as session:
            still = await session.get(Post, draft_id)
            assert still is not None and still.state == State.DRAFT


async def test_a_bug_after_the_request_left_is_an_error_never_a_resend(
    fresh_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception no provider classifies (a bug of ours, here right after the platform
    accepted the status) may hide a published post: ERROR with "check the channel", no retry."""
    real_publish = MastodonProvider.publish

    async def publish_then_fail(self: MastodonProvider, *args: Any, **kwargs: Any) -> Any:
        await real_publish(self, *args, **kwargs)
        raise KeyError("id")

    monkeypatch.setattr(MastodonProvider, "publish", publish_then_fail)
    async with FakeMastodon() as masto:
        post_id, org_id = await _publish_now(fresh_database, masto, name="Buggy")
        async with running_workers(fresh_database):
            post = await _settled(fresh_database, post_id)
        assert post.state == State.ERROR
        assert post.error == (
            "Publishing failed unexpectedly (KeyError); it may have been published -- "
            "check Buggy before publishing it again"
        )
        # Sent once, and not again.
        assert len(masto.calls("POST", "/api/v1/statuses")) == 1
        assert len(masto.statuses) == 1
        (attempt,) = await attempts_of(fresh_database, post_id)
        assert attempt.outcome == "error" and attempt.error_class == "unexpected"
        errors, _ = await _failure_records(fresh_database, post_id, org_id)
        assert [e.error for e in errors] == [post.error]
