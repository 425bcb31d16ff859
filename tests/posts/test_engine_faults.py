"""Fault tests of the engine: concurrent workers, a worker stopped mid-publish, stale jobs."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from tests.channels.providers.servers.mastodon import FakeMastodon
from tests.conftest import asgi_client, build_app, make_tenant
from tests.posts.helpers import add_mastodon_channel, eventually, running_workers
from tests.posts.test_engine_e2e import (
    _published,
    _settled,
    attempts_of,
    create,
    iso,
    state_of,
    thread,
)
from tidings.config import get_settings
from tidings.core.enums import State
from tidings.core.tenancy import OrgId
from tidings.db import Database
from tidings.posts import engine, service
from tidings.posts.models import PostAttempt
from tidings.posts.scheduling import ALARM_LEAD
from tidings.posts.schemas import CreatePostsRequest

pytestmark = pytest.mark.usefixtures("allow_private")


async def test_two_workers_on_a_burst_never_publish_twice(fresh_database: Database) -> None:
    tenant = await make_tenant(fresh_database)
    async with FakeMastodon() as masto:
        masto.delay("POST", "/api/v1/statuses", 0.02, times=10_000)
        channels = [
            await add_mastodon_channel(fresh_database, tenant.org_id, masto, name=f"Ch {i}")
            for i in range(6)
        ]
        due = datetime.now(UTC) + timedelta(seconds=1.5)
        expected: list[str] = []
        async with fresh_database.session() as session:
            for n in range(15):
                request = CreatePostsRequest.model_validate(
                    {
                        "type": "schedule",
                        "date": iso(due),
                        "posts": [thread(c, f"burst {n} on {i}") for i, c in enumerate(channels)],
                    }
                )
                await service.create_posts(session, OrgId(tenant.org_id), request)
                expected += [f"<p>burst {n} on {i}</p>" for i in range(len(channels))]
        async with running_workers(fresh_database, count=2, concurrency=4):
            await eventually(lambda: len(masto.statuses) >= len(expected), timeout=30)
            await asyncio.sleep(0.3)  # anything extra would show up now

        sent = Counter(s["content"] for s in masto.statuses.values())
        assert sorted(sent) == sorted(expected)
        assert set(sent.values()) == {1}, "a post was published twice"
        async with fresh_database.session() as session:
            attempts = list((await session.execute(select(PostAttempt))).scalars())
        assert len(attempts) == len(expected)
        assert {a.outcome for a in attempts} == {"published"}
        assert len({a.worker for a in attempts}) == 2, "both workers published"
        # One post at a time per channel, in publish order.
        by_channel: dict[str | None, list[PostAttempt]] = {}
        for attempt in attempts:
            by_channel.setdefault(attempt.integration_id, []).append(attempt)
        for channel_attempts in by_channel.values():
            channel_attempts.sort(key=lambda a: a.started_at)
            for earlier, later in itertools.pairwise(channel_attempts):
                assert earlier.finished_at is not None
                assert later.started_at >= earlier.finished_at


async def _stop_mid_publish(database: Database, masto: FakeMastodon) -> str:
    """Publish a post, stop the worker while the platform holds the request; the post id."""
    tenant = await make_tenant(database)
    channel = await add_mastodon_channel(database, tenant.org_id, masto)
    masto.hang("POST", "/api/v1/statuses")
    created = await create(database, tenant, {"type": "now", "posts": [thread(channel, "Once")]})
    post_id: str = created["posts"][0]["postId"]
    async with running_workers(database, graceful=0.2):
        await eventually(lambda: masto.calls("POST", "/api/v1/statuses"))
    # The worker is gone; the attempt it started has no outcome.
    (attempt,) = await attempts_of(database, post_id)
    assert attempt.outcome is None and attempt.finished_at is None
    assert (await state_of(database, post_id)).state == State.QUEUE
    assert masto.statuses == {}
    return post_id


async def test_worker_stopped_mid_publish_is_resolved_without_double_post(
    fresh_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "BACKOFF_BASE", 0.1)
    async with FakeMastodon() as masto:
        post_id = await _stop_mid_publish(fresh_database, masto)
        # A publish job still waiting would not help: nothing runs it while the attempt is
        # open. The reconciler sees the worker's heartbeat is gone.
        report = await engine.reconcile(orphan_grace=0)
        assert report.orphans == [post_id]
        first, *_ = await attempts_of(fresh_database, post_id)
        assert first.outcome == "unknown" and first.retry_at is not None
        # Mastodon: not found on the instance, and the resend carries the same idempotency
        # key, so publishing again is safe.
        async with running_workers(fresh_database):
            post = await _settled(fresh_database, post_id)
        assert post.state == State.PUBLISHED
        assert len(masto.statuses) == 1
        keys = {r.headers["idempotency-key"] for r in masto.calls("POST", "/api/v1/statuses")}
        assert keys == {post_id}


async def test_worker_stopped_mid_publish_without_a_safe_resend_is_an_error_with_notice(
    fresh_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A platform without idempotency keys whose "was it published?" check fails.
    monkeypatch.setattr(engine, "IDEMPOTENT_PROVIDERS", frozenset())
    async with FakeMastodon() as masto:
        post_id = await _stop_mid_publish(fresh_database, masto)
        masto.fail("GET", "/api/v1/accounts/{id}/statuses", 503, {"error": "busy"}, times=5)
        report = await engine.reconcile(orphan_grace=0)
        assert report.orphans == [post_id]
        post = await state_of(fresh_database, post_id)
        assert post.state == State.ERROR
        assert post.error is not None
        assert "stopped before the platform's answer" in post.error
        assert "may have been published" in post.error
        (attempt,) = await attempts_of(fresh_database, post_id)
        assert attempt.outcome == "unknown"
        # Never resent, and never picked up again.
        async with running_workers(fresh_database):
            await asyncio.sleep(0.5)
        assert len(masto.calls("POST", "/api/v1/statuses")) == 1


async def test_due_post_whose_job_was_lost_is_requeued(fresh_database: Database) -> None:
    tenant = await make_tenant(fresh_database)
    async with FakeMastodon() as masto:
        channel = await add_mastodon_channel(fresh_database, tenant.org_id, masto)
        created = await create(
            fresh_database, tenant, {"type": "now", "posts": [thread(channel, "Lost job")]}
        )
        post_id = created["posts"][0]["postId"]
        async with fresh_database.session() as session:
            await session.execute(
                text("DELETE FROM procrastinate_jobs WHERE args->>'post_id' = :p"), {"p": post_id}
            )
        # Recently due posts are left to their job; older ones are re-queued.
        assert (await engine.reconcile(due_grace=3600)).redeferred == []
        assert (await engine.reconcile(due_grace=0)).redeferred == [post_id]
        async with running_workers(fresh_database):
            await eventually(lambda: _published(fresh_database, post_id))
        assert len(masto.statuses) == 1


async def test_rescheduled_deleted_or_drafted_post_is_not_published_at_the_old_time(
    fresh_database: Database,
) -> None:
    tenant = await make_tenant(fresh_database)
    async with FakeMastodon() as masto:
        channels = [
            await add_mastodon_channel(fresh_database, tenant.org_id, masto, name=f"C{i}")
            for i in range(3)
        ]
        due = datetime.now(UTC) + timedelta(seconds=1.5)
        groups = []
        for i, channel in enumerate(channels):
            created = await create(
                fresh_database,
                tenant,
                {"type": "schedule", "date": iso(due), "posts": [thread(channel, f"old {i}")]},
            )
            groups.append((created["group"], created["posts"][0]["postId"]))
        later = datetime.now(UTC) + timedelta(hours=1)
        async with asgi_client(build_app(fresh_database)) as client:
            moved = await client.put(
                f"/api/posts/group/{groups[0][0]}/date",
                json={"date": iso(later)},
                headers=tenant.headers,
            )
            assert moved.status_code == 200, moved.text
            gone = await client.delete(f"/api/posts/group/{groups[1][0]}", headers=tenant.headers)
            assert gone.status_code == 200, gone.text
            drafted = await client.put(
                f"/api/posts/{groups[2][1]}/status",
                json={"status": "draft"},
                headers=tenant.headers,
            )
            assert drafted.status_code == 200, drafted.text
        async with running_workers(fresh_database):
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 1.5)
            async with fresh_database.session() as session:
                old_jobs = (
                    await session.execute(
                        text(
                            "SELECT status FROM procrastinate_jobs "
                            "WHERE args->>'post_id' = ANY(:ids) "
                            "AND scheduled_at < now()"
                        ),
                        {"ids": [g[1] for g in groups]},
                    )
                ).scalars()
                statuses = sorted(str(s) for s in old_jobs)
        assert statuses == ["succeeded"] * 3, "the old jobs ran, as no-ops"
        assert masto.calls("POST", "/api/v1/statuses") == []
        moved_post = await state_of(fresh_database, groups[0][1])
        assert moved_post.state == State.QUEUE
        assert abs((moved_post.publish_date - later).total_seconds()) < 1
        assert (await state_of(fresh_database, groups[1][1])).deleted_at is not None
        assert (await state_of(fresh_database, groups[2][1])).state == State.DRAFT
        async with fresh_database.session() as session:
            waiting = await session.scalar(
                text(
                    "SELECT scheduled_at FROM procrastinate_jobs WHERE status = 'todo' "
                    "AND args->>'post_id' = :p"
                ),
                {"p": groups[0][1]},
            )
        assert waiting == moved_post.publish_date - ALARM_LEAD


class CountingMastodon(FakeMastodon):
    """A Mastodon instance that answers statuses slowly and counts them in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.most = 0

    async def create_status(self, request: Any) -> Any:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(0.1)
            return await super().create_status(request)
        finally:
            self.in_flight -= 1


async def test_per_provider_concurrency_limit(
    fresh_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIDINGS_PUBLISH_PROVIDER_CONCURRENCY", "2")
    get_settings.cache_clear()
    try:
        tenant = await make_tenant(fresh_database)
        async with CountingMastodon() as masto:
            channels = [
                await add_mastodon_channel(fresh_database, tenant.org_id, masto, name=f"P{i}")
                for i in range(6)
            ]
            posts = [thread(c, f"limited {i}") for i, c in enumerate(channels)]
            await create(fresh_database, tenant, {"type": "now", "posts": posts})
            async with running_workers(fresh_database):
                await eventually(lambda: len(masto.statuses) == 6)
    finally:
        monkeypatch.delenv("TIDINGS_PUBLISH_PROVIDER_CONCURRENCY")
        get_settings.cache_clear()
    assert masto.most == 2


async def test_worker_process_killed_mid_publish_leaves_no_double_post_and_nothing_stuck(
    fresh_database: Database, tmp_path: Path
) -> None:
    """A real ``tidings worker`` process is SIGKILLed while the platform holds its request (the
    status was created, the answer never came). While its heartbeat is fresh the reconciler
    leaves the attempt alone; once it is stale, the reconciler finds the status on the instance
    and records the post PUBLISHED: nothing sent twice, nothing left in QUEUE."""
    tenant = await make_tenant(fresh_database)
    async with FakeMastodon() as masto:
        channel = await add_mastodon_channel(fresh_database, tenant.org_id, masto)
        masto.hang("POST", "/api/v1/statuses", process=True)
        created = await create(
            fresh_database, tenant, {"type": "now", "posts": [thread(channel, "Exactly once")]}
        )
        post_id = created["posts"][0]["postId"]
        env = os.environ | {
            "TIDINGS_DATABASE_URL": fresh_database.url,
            "TIDINGS_ALLOW_PRIVATE_URLS": "true",
        }
        log = (tmp_path / "worker.log").open("wb")
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "tidings"),
            "worker",
            "--no-migrate",
            "--concurrency",
            "2",
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            await eventually(lambda: masto.calls("POST", "/api/v1/statuses"), timeout=30)
            (attempt,) = await attempts_of(fresh_database, post_id)
            assert attempt.outcome is None and attempt.worker.startswith("pw:")
            # The worker is alive (fresh heartbeat): its publish in flight is not touched.
            assert (await engine.reconcile(orphan_grace=0)).orphans == []
            process.kill()
            await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            log.close()
        assert len(masto.statuses) == 1  # the platform has it; Tidings never heard back
        post = await state_of(fresh_database, post_id)
        assert post.state == State.QUEUE
        (attempt,) = await attempts_of(fresh_database, post_id)
        assert attempt.outcome is None
        await asyncio.sleep(1.0)
        report = await engine.reconcile(orphan_grace=0, stalled_after=0.5)
        assert report.orphans == [post_id]
        (status,) = masto.statuses.values()
        post = await state_of(fresh_database, post_id)
        assert (post.state, post.release_id, post.release_url) == (
            State.PUBLISHED,
            status["id"],
            status["url"],
        )
        (attempt,) = await attempts_of(fresh_database, post_id)
        assert (attempt.outcome, attempt.error_class) == ("published", "unknown-outcome")
        # A live worker afterwards has nothing left to send.
        async with running_workers(fresh_database):
            await asyncio.sleep(0.5)
        assert len(masto.calls("POST", "/api/v1/statuses")) == 1
        assert len(masto.statuses) == 1


async def test_an_edit_racing_a_claim_is_refused_not_lost(fresh_database: Database) -> None:
    """A worker claims a due post (its transaction not yet committed) while the user reschedules,
    drafts or edits it. The edit waits for the claim and answers 409; it never answers 200 for a
    post that is then published at its old time with its old content."""
    tenant = await make_tenant(fresh_database)
    async with FakeMastodon() as masto:
        channels = [
            await add_mastodon_channel(fresh_database, tenant.org_id, masto, name=f"R{i}")
            for i in range(3)
        ]
        app = build_app(fresh_database)
        later = iso(datetime.now(UTC) + timedelta(hours=2))
        for channel in channels:
            created = await create(
                fresh_database, tenant, {"type": "now", "posts": [thread(channel, "original")]}
            )
            group, post_id = created["group"], created["posts"][0]["postId"]
            before = await state_of(fresh_database, post_id)
            edits = {
                channels[0]: ("PUT", f"/api/posts/group/{group}/date", {"date": later}),
                channels[1]: ("PUT", f"/api/posts/{post_id}/status", {"status": "draft"}),
                channels[2]: (
                    "PUT",
                    f"/api/posts/group/{group}",
                    {"type": "schedule", "date": later, "posts": [thread(channel, "edited")]},
                ),
            }
            method, path, payload = edits[channel]
            async with asgi_client(app) as client:
                async with fresh_database.session() as claiming:
                    (claim,) = await engine.claim_posts(claiming, [channel], "pw:racing")
                    assert claim.post.id == post_id
                    edit = asyncio.create_task(
                        client.request(method, path, json=payload, headers=tenant.headers)
                    )
                    await asyncio.sleep(0.3)
                    assert not edit.done(), "the edit waits for the claim's transaction"
                answer = await edit
            assert answer.status_code == 409, (path, answer.text)
            after = await state_of(fresh_database, post_id)
            assert (after.state, after.publish_date, after.content) == (
                State.QUEUE,
                before.publish_date,
                "original",
            )


async def test_a_post_rescheduled_while_waiting_for_a_retry_goes_out_at_its_new_time(
    fresh_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rescheduling starts the retry count again: the wait for the old retry no longer holds the
    post back (nor does that retry's job fire it at the old retry time)."""
    monkeypatch.setattr(engine, "BACKOFF_BASE", 3600.0)  # the retry would be an hour away
    tenant = await make_tenant(fresh_database)
    async with FakeMastodon() as masto:
        channel = await add_mastodon_channel(fresh_database, tenant.org_id, masto)
        masto.fail("POST", "/api/v1/statuses", 503, {"error": "Down for maintenance"})
        created = await create(
            fresh_database, tenant, {"type": "now", "posts": [thread(channel, "Soon")]}
        )
        group, post_id = created["group"], created["posts"][0]["postId"]
        async with running_workers(fresh_database):

            async def waiting_for_retry() -> bool:
                return [a.outcome for a in await attempts_of(fresh_database, post_id)] == ["retry"]

            await eventually(waiting_for_retry)
            moved_to = datetime.now(UTC) + timedelta(seconds=1)
            async with asgi_client(build_app(fresh_database)) as client:
                moved = await client.put(
                    f"/api/posts/group/{group}/date",
                    json={"date": iso(moved_to)},
                    headers=tenant.headers,
                )
            assert moved.status_code == 200, moved.text
            post = await _settled(fresh_database, post_id)
            published_at = datetime.now(UTC)
        assert post.state == State.PUBLISHED
        assert moved_to <= published_at < moved_to + timedelta(seconds=5)
        assert len(masto.statuses) == 1
        first, second = await attempts_of(fresh_database, post_id)
        assert (first.outcome, second.outcome) == ("retry", "published")
        assert second.started_at >= moved_to
