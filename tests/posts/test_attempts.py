"""A post's publish attempts: the service function and GET /api/posts/{id}/attempts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import Tenant
from tests.posts.factories import make_channel, make_post
from tidings.core.errors import NotFound
from tidings.core.tenancy import OrgId
from tidings.posts.attempts import list_attempts
from tidings.posts.models import PostAttempt


async def test_attempts_oldest_first_and_only_the_callers(
    db: AsyncSession, client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    channel = await make_channel(db, tenant.org_id)
    post = await make_post(db, tenant.org_id, channel.id, publish_date=datetime.now(UTC))
    start = datetime.now(UTC) - timedelta(minutes=5)
    # Written out of order: the answer is ordered by attempt number.
    for number, outcome, status in ((2, "published", 200), (1, "retry", 503)):
        db.add(
            PostAttempt(
                post_id=post.id,
                organization_id=tenant.org_id,
                integration_id=channel.id,
                attempt=number,
                started_at=start + timedelta(minutes=number),
                finished_at=start + timedelta(minutes=number, seconds=1),
                outcome=outcome,
                status_code=status,
                response_excerpt="busy" if status == 503 else None,
            )
        )
    await db.flush()

    rows = await list_attempts(db, OrgId(tenant.org_id), post.id)
    assert [(a.attempt, a.outcome, a.status_code) for a in rows] == [
        (1, "retry", 503),
        (2, "published", 200),
    ]
    with pytest.raises(NotFound):
        await list_attempts(db, OrgId(other_tenant.org_id), post.id)

    answer = await client.get(f"/api/posts/{post.id}/attempts", headers=tenant.headers)
    assert answer.status_code == 200
    body = answer.json()
    assert [a["attempt"] for a in body] == [1, 2]
    assert body[0]["responseExcerpt"] == "busy" and body[1]["outcome"] == "published"
    hidden = await client.get(f"/api/posts/{post.id}/attempts", headers=other_tenant.headers)
    assert hidden.status_code == 404 and hidden.json()["field"] == "id"
