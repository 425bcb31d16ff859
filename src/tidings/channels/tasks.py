"""Background jobs of channels: refreshing tokens before they expire."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from tidings.channels.models import Integration
from tidings.channels.providers import (
    DisconnectedError,
    ProviderError,
    RetryableError,
    UnknownProviderError,
    get_provider,
)
from tidings.channels.service import mark_refresh_needed, refresh_channel
from tidings.core.jobs import job_app
from tidings.db import get_database

logger = logging.getLogger("tidings.channels.tasks")

#: Channels whose token expires within this window are refreshed by the periodic job.
REFRESH_AHEAD = timedelta(hours=1)


async def refresh_expiring(
    *, ahead: timedelta = REFRESH_AHEAD, http: httpx.AsyncClient | None = None
) -> dict[str, int]:
    """Refresh every channel whose token expires within ``ahead`` (or has expired).

    Each channel is refreshed in its own transaction, so one failure never undoes another
    channel's new tokens. A refused refresh marks the channel ``refresh_needed`` (with a
    notification); transient failures are left for the next run. Returns counts by outcome.
    """
    database = get_database()
    deadline = datetime.now(UTC) + ahead
    async with database.session() as session:
        rows = (
            await session.execute(
                select(Integration.id, Integration.provider_identifier)
                .where(
                    Integration.token_expiration.is_not(None),
                    Integration.token_expiration < deadline,
                    Integration.refresh_needed.is_(False),
                    Integration.in_between_steps.is_(False),
                )
                .order_by(Integration.token_expiration)
            )
        ).all()
    counts = {"refreshed": 0, "disconnected": 0, "failed": 0, "skipped": 0}
    for channel_id, identifier in rows:
        try:
            if not get_provider(identifier).supports_refresh:
                counts["skipped"] += 1
                continue
        except UnknownProviderError:
            counts["skipped"] += 1
            continue
        counts[await _refresh_one(channel_id, deadline, http)] += 1
    if rows:
        logger.info("token refresh: %s", counts)
    return counts


async def _refresh_one(channel_id: str, deadline: datetime, http: httpx.AsyncClient | None) -> str:
    async with get_database().session() as session:
        channel = await session.get(Integration, channel_id)
        if (
            channel is None
            or channel.refresh_needed
            or channel.token_expiration is None
            or channel.token_expiration >= deadline
        ):
            return "skipped"  # deleted, or refreshed by someone else meanwhile
        try:
            await refresh_channel(session, channel, http=http)
        except DisconnectedError as exc:
            logger.info("channel %s disconnected: %s", channel_id, exc.message)
            return "disconnected"  # marked by refresh_channel; committed with this session
        except RetryableError as exc:
            logger.warning("channel %s: refresh will be retried: %s", channel_id, exc.message)
            return "failed"
        except ProviderError as exc:
            # Any other refusal (bad configuration, rejected request) will not heal alone.
            await mark_refresh_needed(session, channel, exc.message)
            return "disconnected"
    return "refreshed"


@job_app.periodic(cron="*/10 * * * *")
@job_app.task(name="channels.refresh_tokens", queueing_lock="channels.refresh_tokens")
async def refresh_tokens(timestamp: int) -> None:
    """Every 10 minutes: refresh the tokens that expire within the next hour."""
    await refresh_expiring()
