"""Setting a plan: the channel limit follows it, and subscription.updated is fired."""

from __future__ import annotations

import json
import subprocess

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import Tenant
from tests.core.test_cli import run_cli
from tidings.automation.models import WebhookEvent, Webhooks
from tidings.billing.service import channel_limit
from tidings.billing.subscriptions import set_subscription
from tidings.core.enums import Period, SubscriptionTier
from tidings.core.errors import BadRequest
from tidings.core.tenancy import OrgId
from tidings.db import Database


@pytest.mark.usefixtures("billing")
async def test_setting_a_plan_sets_the_limit_and_fires_the_event(
    db: AsyncSession, tenant: Tenant
) -> None:
    org_id = OrgId(tenant.org_id)
    db.add(
        Webhooks(
            organization_id=org_id,
            url="https://hooks.example.com/t",
            events=["subscription.updated"],
        )
    )
    await db.flush()
    assert await channel_limit(db, org_id) == 0
    await set_subscription(
        db, org_id, tier=SubscriptionTier.TEAM, period=Period.YEARLY, total_channels=12
    )
    assert await channel_limit(db, org_id) == 12
    await set_subscription(
        db, org_id, tier=SubscriptionTier.PRO, period=Period.MONTHLY, total_channels=3
    )
    assert await channel_limit(db, org_id) == 3
    events = (
        (await db.execute(select(WebhookEvent).where(WebhookEvent.organization_id == org_id)))
        .scalars()
        .all()
    )
    assert [e.type for e in events] == ["subscription.updated"] * 2
    assert sorted(e.payload["totalChannels"] for e in events) == [3, 12]
    with pytest.raises(BadRequest) as info:
        await set_subscription(
            db, org_id, tier=SubscriptionTier.PRO, period=Period.MONTHLY, total_channels=-1
        )
    assert info.value.field == "total_channels"


def test_billing_cli_sets_and_shows_the_plan(fresh_database: Database) -> None:
    def tidings(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(
            *args, database_url=fresh_database.url, extra_env={"TIDINGS_BILLING": "true"}
        )

    made = tidings(
        "users", "create", "--email", "o@example.com", "--password", "password1", "--org", "Shop"
    )
    assert made.returncode == 0, made.stderr
    plan = tidings("billing", "set", "--org", "Shop", "--channels", "5", "--tier", "TEAM")
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["totalChannels"] == 5
    shown = json.loads(tidings("billing", "show", "--org", "Shop").stdout)
    assert shown["limit"] == 5 and shown["active_channels"] == 0
    assert shown["subscription"]["tier"] == "TEAM"
    bad = tidings("billing", "set", "--org", "Shop", "--channels", "-2")
    assert bad.returncode == 1 and bad.stderr.startswith("error: total_channels:")
    with psycopg.connect(fresh_database.url) as conn:
        row = conn.execute("SELECT total_channels FROM subscription").fetchall()
    assert row == [(5,)]
