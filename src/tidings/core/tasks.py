"""Housekeeping jobs of the whole instance."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete

from tidings.accounts.models import UserSession
from tidings.channels.models import OAuthState
from tidings.core import ratelimit
from tidings.core.jobs import job_app
from tidings.db import get_database

logger = logging.getLogger("tidings.tasks")


@job_app.periodic(cron="17 * * * *")
@job_app.task(name="core.housekeeping", queueing_lock="core.housekeeping")
async def housekeeping(timestamp: int) -> None:
    """Delete expired sessions, OAuth states and rate-limit counters (hourly)."""
    database = get_database()
    now = datetime.now(UTC)
    async with database.session() as session:
        await session.execute(delete(OAuthState).where(OAuthState.expires_at < now))
        await session.execute(
            delete(UserSession).where(UserSession.expires_at < now - timedelta(days=1))
        )
    purged = await ratelimit.purge_expired(database, older_than=timedelta(days=2))
    logger.info("housekeeping done (%d rate-limit counters purged)", purged)
