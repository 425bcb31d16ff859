"""Background jobs of automation: webhook delivery and RSS/Atom polling.

Task bodies are thin: they open their unit of work through the module functions, which tests
call directly.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from procrastinate.exceptions import ConnectorException
from procrastinate.jobs import Status
from sqlalchemy import delete, or_, select

from tidings.automation import autopost, webhooks
from tidings.automation.events import DELIVER_TASK, endpoint_lock
from tidings.automation.models import WebhookEvent, Webhooks
from tidings.config import get_settings
from tidings.core.jobs import defer_in_session, job_app
from tidings.db import get_database

logger = logging.getLogger("tidings.automation.tasks")

#: A worker silent for this long is dead (Procrastinate's heartbeat comes every 10 seconds).
STALLED_AFTER_SECONDS = 60.0


@job_app.task(name=DELIVER_TASK, retry=False)
async def deliver_webhook(webhook_id: str) -> None:
    """Deliver the due events of one endpoint in order (deferred with the endpoint's lock)."""
    count = await webhooks.deliver_endpoint(get_database(), webhook_id)
    logger.debug("webhook %s: %d event(s) delivered", webhook_id, count)


@job_app.task(name=webhooks.RETRY_TASK, retry=False)
async def retry_webhook(webhook_id: str) -> None:
    """Wake an endpoint up when its oldest event's retry is due (unlocked on purpose; see
    :mod:`tidings.automation.webhooks`)."""
    async with get_database().session() as session:
        await defer_in_session(
            session, DELIVER_TASK, lock=endpoint_lock(webhook_id), webhook_id=webhook_id
        )


async def release_stalled(task_name: str) -> int:
    """End (as failed) the jobs of ``task_name`` whose worker died mid-job; returns how many.

    Such a job stays 'doing' and keeps its lock (an endpoint's, a feed's), which would hold
    back every later job of that lock for good. The sweeps queue fresh jobs right after; the
    work is idempotent (the oldest pending event is sent again with its ``webhook-id``, a feed's
    items are de-duplicated)."""
    stalled = await job_app.job_manager.get_stalled_jobs(
        task_name=task_name, seconds_since_heartbeat=STALLED_AFTER_SECONDS
    )
    released = 0
    for job in stalled:
        if job.id is None:
            continue
        try:
            await job_app.job_manager.finish_job_by_id_async(
                job.id, status=Status.FAILED, delete_job=False
            )
        except ConnectorException:  # it finished meanwhile
            continue
        released += 1
    if released:
        logger.warning("%d %s job(s) of dead workers released", released, task_name)
    return released


async def sweep_pending() -> int:
    """Defer delivery for every enabled endpoint with a due pending event (a safety net for a
    job lost to a crash, whose lock is released first); returns how many endpoints were
    kicked."""
    await release_stalled(DELIVER_TASK)
    now = datetime.now(UTC)
    async with get_database().session() as session:
        ids = list(
            (
                await session.execute(
                    select(WebhookEvent.webhook_id)
                    .join(Webhooks, Webhooks.id == WebhookEvent.webhook_id)
                    .where(
                        WebhookEvent.status == "pending",
                        or_(
                            WebhookEvent.next_attempt_at.is_(None),
                            WebhookEvent.next_attempt_at <= now,
                        ),
                        Webhooks.enabled.is_(True),
                    )
                    .distinct()
                )
            ).scalars()
        )
        for webhook_id in ids:
            await defer_in_session(
                session,
                DELIVER_TASK,
                lock=endpoint_lock(webhook_id),
                queueing_lock=f"webhook-sweep:{webhook_id}",
                webhook_id=webhook_id,
            )
    return len(ids)


@job_app.periodic(cron="*/5 * * * *")
@job_app.task(name="automation.sweep_webhooks", queueing_lock="automation.sweep_webhooks")
async def sweep_webhooks(timestamp: int) -> None:
    """Every five minutes: make sure no due webhook event is left without a delivery job."""
    kicked = await sweep_pending()
    if kicked:
        logger.info("webhook sweep: %d endpoint(s) had due events", kicked)


async def purge_old_events() -> int:
    """Delete delivered and given-up events (and their delivery rows, by cascade) older than
    ``webhook_retention_days``; pending events are never purged. Returns how many."""
    cutoff = datetime.now(UTC) - timedelta(days=get_settings().webhook_retention_days)
    async with get_database().session() as session:
        result = await session.execute(
            delete(WebhookEvent)
            .where(WebhookEvent.status != "pending", WebhookEvent.created_at < cutoff)
            .returning(WebhookEvent.id)
        )
        return len(result.all())


@job_app.periodic(cron="41 3 * * *")
@job_app.task(name="automation.purge_webhook_events", queueing_lock="automation.purge_webhooks")
async def purge_webhook_events(timestamp: int) -> None:
    """Daily: forget old delivered and given-up webhook events."""
    purged = await purge_old_events()
    if purged:
        logger.info("%d old webhook event(s) purged", purged)


@job_app.task(name="automation.poll_feed", retry=False)
async def poll_feed(autopost_id: str) -> None:
    """Poll one feed (deferred with the feed's lock: one poll of a feed at a time)."""
    result = await autopost.poll(get_database(), autopost_id)
    logger.info(
        "feed %s polled: %s, %d new item(s), %d post(s)",
        autopost_id,
        result.status,
        result.new_items,
        result.posts_created,
    )


@job_app.periodic(cron="* * * * *")
@job_app.task(name="automation.poll_feeds", queueing_lock="automation.poll_feeds")
async def poll_feeds(timestamp: int) -> None:
    """Every minute: queue a poll of every feed whose interval has passed (one job each),
    after releasing the polls of dead workers (their feed's lock would block it for good)."""
    await release_stalled(autopost.POLL_TASK)
    queued = await autopost.defer_due_polls(get_database())
    if queued:
        logger.info("%d feed poll(s) queued", queued)
