"""The engine against a second platform: a fake Bluesky PDS (no idempotency keys)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.channels.providers.servers.bluesky import FakeBluesky
from tests.conftest import make_tenant
from tests.posts.helpers import running_workers
from tests.posts.test_engine_e2e import _settled, attempts_of, create, iso, rows_of, thread
from tidings.channels.models import Integration
from tidings.channels.providers.bluesky import BlueskyProvider
from tidings.core.enums import State
from tidings.db import Database
from tidings.posts import engine

pytestmark = pytest.mark.usefixtures("allow_private")
CREATE = "/xrpc/com.atproto.repo.createRecord"


async def bluesky_channel(database: Database, org_id: str, pds: FakeBluesky) -> str:
    async with httpx.AsyncClient() as http:
        account = await BlueskyProvider(http).connect_with_fields(
            {"service": pds.base_url, "identifier": "alice.test", "password": "app-pass-1234"}
        )
    async with database.session() as session:
        row = Integration(
            organization_id=org_id,
            internal_id=account.internal_id,
            name="Alice on Bluesky",
            provider_identifier="bluesky",
            type="social",
            token=account.tokens.access_token,
            refresh_token=account.tokens.refresh_token,
            token_expiration=account.tokens.expires_at,
            custom_instance_details=json.dumps(account.custom_instance_details),
            profile=account.username,
        )
        session.add(row)
        await session.flush()
        return row.id


async def test_thread_on_bluesky_with_reply_references(fresh_database: Database) -> None:
    tenant = await make_tenant(fresh_database)
    async with FakeBluesky() as pds:
        channel = await bluesky_channel(fresh_database, tenant.org_id, pds)
        created = await create(
            fresh_database,
            tenant,
            {
                "type": "schedule",
                "date": iso(datetime.now(UTC) + timedelta(seconds=1)),
                "posts": [thread(channel, "Skeet one", "Skeet two", "Skeet three")],
            },
        )
        async with running_workers(fresh_database):
            rows = await rows_of(fresh_database, created["group"])
            for row in rows:
                await _settled(fresh_database, row.id)
        rows = await rows_of(fresh_database, created["group"])
        assert [r.state for r in rows] == [State.PUBLISHED] * 3, [r.error for r in rows]
        records = {r.release_id: pds.records[r.release_id or ""] for r in rows}
        first, second, third = (records[r.release_id] for r in rows)
        assert first["value"]["text"] == "Skeet one" and "reply" not in first["value"]
        assert second["value"]["reply"]["parent"]["uri"] == first["uri"]
        assert third["value"]["reply"]["parent"]["uri"] == second["uri"]
        assert third["value"]["reply"]["root"]["uri"] == first["uri"]
        assert all(r.release_url and r.release_url.startswith("https://") for r in rows)


async def test_lost_answer_that_cannot_be_checked_is_an_error_never_resent(
    fresh_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "HTTP_TIMEOUT", httpx.Timeout(5.0, read=0.5))
    tenant = await make_tenant(fresh_database)
    async with FakeBluesky() as pds:
        channel = await bluesky_channel(fresh_database, tenant.org_id, pds)
        pds.hang("POST", CREATE)
        pds.fail("GET", "/xrpc/com.atproto.repo.listRecords", 502, {"error": "Upstream"}, times=5)
        created = await create(
            fresh_database, tenant, {"type": "now", "posts": [thread(channel, "Maybe once")]}
        )
        post_id = created["posts"][0]["postId"]
        async with running_workers(fresh_database):
            post = await _settled(fresh_database, post_id)
        assert post.state == State.ERROR
        assert post.error is not None and "may have been published" in post.error
        assert "check the channel before publishing it again" in post.error
        (attempt,) = await attempts_of(fresh_database, post_id)
        assert attempt.outcome == "unknown" and attempt.error_class == "unknown-outcome"
        assert len(pds.calls("POST", CREATE)) == 1, "never resent"
