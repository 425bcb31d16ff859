"""The publishing engine: every due post published once, in order per channel, and reported.

How it fits together (``docs/decisions/publishing-engine.md`` says why):

- **Outbox.** A QUEUE post is written together with its ``posts.publish`` job
  (:mod:`tidings.posts.scheduling`), scheduled at its publish date. The job re-reads the row and
  does nothing unless the post is still QUEUE *at that date*, so a rescheduled, drafted or deleted
  post is never published at its old time.
- **Drain.** A publish job whose post is due wakes its worker's :class:`Publisher`: when none is
  running the job becomes its drain loop, otherwise it hands over. The drain publishes every ready
  post (due, QUEUE, previous thread part published, not waiting for a retry), one post at a time
  per channel in publish-date order, many channels at once: up to ``publish_concurrency`` per
  worker (and no more than its fair share of the busy channels among the live workers), with at
  most ``publish_provider_concurrency`` requests in flight per provider. While a due post is near
  it sleeps until that post's time, so steady traffic goes out on time without waiting for the
  job queue's polling.
- **Ticks.** Database work is batched: one transaction records every outcome that arrived since
  the last tick and claims the next post of each channel that became free (plus new channels),
  in a handful of set-based statements. A worker spends its time talking to platforms, not
  committing.
- **Claim.** A post is claimed by locking its row (``FOR UPDATE SKIP LOCKED``) and inserting an
  in-flight ``post_attempt`` row; a unique index allows one in-flight attempt per channel, across
  all workers, so two workers can never both send a post nor publish on one channel at once. The
  post's waiting publish job is deleted in the same statement.
- **Outcomes.** Success: PUBLISHED with release id and URL, ``post.published``, the next thread
  part moved to "now + its delay" (published at once by the same channel when the delay is 0),
  the next occurrence of a recurring post created. Failures, by class: transient -> retried with
  exponential backoff (the platform's Retry-After honoured) up to :data:`MAX_RETRIES`; expired
  token -> the channel refreshed once and the publish retried; revoked -> the channel marked
  ``refresh_needed``; rejected content, unavailable channel, anything else -> ERROR. A lost answer
  after the request was sent is an *unknown outcome*: the platform is asked whether the post
  exists where the provider can check, a resend is safe where the platform honours idempotency
  keys (the post id is the key), else ERROR with a notice -- never a blind resend. Every ERROR
  stores its message, an ``errors`` row, a notification and ``post.failed``.
- **Reconciler** (every minute): an attempt left in flight by a worker that stopped (its
  Procrastinate heartbeat is gone) is resolved as an unknown outcome; a due QUEUE post with no
  waiting job and no attempt gets a new job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
import weakref
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.channels.models import Integration
from tidings.channels.providers import (
    BadBodyError,
    DisconnectedError,
    MediaItem,
    PostPart,
    Provider,
    ProviderError,
    PublishResult,
    RefreshTokenError,
    RetryableError,
    UnknownOutcomeError,
)
from tidings.channels.service import (
    channel_problem,
    credentials_of,
    mark_refresh_needed,
    provider_for,
    refresh_in_own_transaction,
)
from tidings.config import get_settings
from tidings.core.enums import State
from tidings.core.ids import new_cuid
from tidings.db import get_database
from tidings.notifications.service import notify
from tidings.posts.media import post_media, readable
from tidings.posts.models import Errors, Post, TagsPosts
from tidings.posts.scheduling import epoch_us, schedule_publish
from tidings.posts.service import (
    POST_REFERENCE,
    emit_post_event,
    group_for_occurrence,
    orgs_with_webhooks,
)
from tidings.posts.timeplan import as_utc, next_occurrence, zone_of

logger = logging.getLogger("tidings.posts.engine")

#: Transient failures of one post before it goes to ERROR.
MAX_RETRIES = 5
BACKOFF_BASE = 15.0  # seconds; doubled per retry
BACKOFF_CAP = 30 * 60.0
RETRY_AFTER_CAP = 6 * 3600.0
#: The drain keeps running while the next due post is this close (seconds): more than the
#: publish job's lead (:data:`~tidings.posts.scheduling.ALARM_LEAD`), so a drain woken early
#: waits for its post.
LINGER = 6.0
#: Longest sleep of a running drain between looks for due posts (seconds).
POLL = 0.25
#: A publish job handing its post to a running drain waits at most this long for the drain to
#: finish (seconds): long enough that the job queue does not spin through the jobs of a burst
#: the drain is already publishing, short enough to leave worker slots to other jobs.
HANDOVER_WAIT = 2.0
#: Providers whose publish honours ``PostPart.idempotency_key``: resending is safe.
IDEMPOTENT_PROVIDERS = frozenset({"mastodon"})
#: A channel found empty or busy elsewhere is not looked at again by this drain for this long.
BUSY_BACKOFF = 0.05
#: Timeouts of the publisher's outbound requests (a read timeout after a write is an unknown
#: outcome, so it is generous).
HTTP_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
#: Outbound clients per publisher (see :meth:`Publisher.client`).
HTTP_SHARDS = 16


def now_utc() -> datetime:
    return datetime.now(UTC)


def backoff_seconds(retry: int, retry_after: float | None = None) -> float:
    """Wait before retry number ``retry`` (1-based): exponential, capped; at least what the
    platform asked for (Retry-After), itself capped."""
    wait = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** max(0, retry - 1))
    if retry_after is not None:
        wait = max(wait, min(float(retry_after), RETRY_AFTER_CAP))
    return wait


def resend_is_safe(provider: Provider[Any]) -> bool:
    """Whether this provider's platform deduplicates a resent part (idempotency keys)."""
    return bool(getattr(type(provider), "supports_idempotency_keys", False)) or (
        provider.identifier in IDEMPOTENT_PROVIDERS
    )


def process_worker_name() -> str:
    """An attempt's owner when no Procrastinate worker runs it (direct calls, scripts)."""
    return f"proc:{socket.gethostname()}:{os.getpid()}"


# ---------------------------------------------------------------------------------------------
# SQL
# ---------------------------------------------------------------------------------------------

# A post that may be claimed now. ``p`` is the post. A retry's wait holds the post back only
# until the post is edited or rescheduled (``updated_at``), which starts the count again.
_READY = """
    p.state = 'QUEUE' AND p.deleted_at IS NULL AND p.publish_date <= now()
    AND (p.parent_post_id IS NULL OR EXISTS (
        SELECT 1 FROM post pp WHERE pp.id = p.parent_post_id AND pp.state = 'PUBLISHED'))
    AND NOT EXISTS (
        SELECT 1 FROM post_attempt a
        WHERE a.post_id = p.id
          AND (a.outcome IS NULL OR (a.retry_at > now() AND a.started_at >= p.updated_at)))
"""

# Claim the next ready post of each channel (``prefer`` first): lock the row, skipping rows
# another transaction holds; open an attempt -- the unique index on in-flight attempts per
# channel makes this a quiet no-op while the channel is busy anywhere; delete the post's waiting
# publish job, which has nothing left to do.
_CLAIM = text(
    """
    WITH wanted AS (
        SELECT w.channel, w.prefer
        FROM unnest(CAST(:channels AS text[]), CAST(:prefer AS text[])) AS w(channel, prefer)
    ), next AS (
        -- The preferred post if it is ready, else the channel's first ready post (an index
        -- scan in publish order that stops at the first row it can lock).
        SELECT n.* FROM wanted w CROSS JOIN LATERAL (
            SELECT * FROM (
                SELECT p.id, p.organization_id, p.integration_id, p.publish_date FROM post p
                WHERE p.id = w.prefer AND p.integration_id = w.channel AND __READY__
                FOR UPDATE OF p SKIP LOCKED
            ) preferred
            UNION ALL
            SELECT * FROM (
                SELECT p.id, p.organization_id, p.integration_id, p.publish_date FROM post p
                WHERE p.integration_id = w.channel AND __READY__
                ORDER BY p.publish_date, p.id
                LIMIT 1
                FOR UPDATE OF p SKIP LOCKED
            ) first_ready
            LIMIT 1
        ) n
    ), attempt AS (
        INSERT INTO post_attempt (id, post_id, organization_id, integration_id, attempt,
                                  started_at, worker)
        SELECT gen_random_uuid()::text, n.id, n.organization_id, n.integration_id,
               COALESCE((SELECT max(a.attempt) FROM post_attempt a WHERE a.post_id = n.id), 0)
                 + 1,
               clock_timestamp(), :worker
        FROM next n
        ON CONFLICT DO NOTHING
        RETURNING id, post_id, attempt, started_at
    ), dropped AS (
        -- ANY(ARRAY(...)) so that the unique index on waiting jobs' queueing locks is used.
        DELETE FROM procrastinate_jobs j
        WHERE j.status = 'todo'
          AND j.queueing_lock = ANY (ARRAY(
              SELECT 'publish:' || n.id || ':'
                     || (extract(epoch FROM n.publish_date) * 1000000)::bigint::text
              FROM attempt a JOIN next n ON n.id = a.post_id))
        RETURNING j.id
    )
    SELECT id, post_id, attempt, started_at FROM attempt
    """.replace("__READY__", _READY)
)

# Successes, in bulk: attempts closed, posts PUBLISHED, each next thread part moved to "now plus
# its delay".
_PUBLISHED = text(
    """
    WITH v AS (
        SELECT * FROM unnest(CAST(:attempts AS text[]), CAST(:posts AS text[]),
                             CAST(:release_ids AS text[]), CAST(:release_urls AS text[]),
                             CAST(:error_classes AS text[]))
                 AS v(attempt_id, post_id, release_id, release_url, error_class)
    ), att AS (
        UPDATE post_attempt a SET outcome = 'published', finished_at = clock_timestamp(),
            error_class = v.error_class, retry_at = NULL,
            duration_ms = (extract(epoch FROM clock_timestamp() - a.started_at) * 1000)::bigint
        FROM v WHERE a.id = v.attempt_id AND a.outcome IS NULL
        RETURNING a.id
    ), done AS (
        UPDATE post p SET state = 'PUBLISHED', release_id = v.release_id,
            release_url = v.release_url, error = NULL, updated_at = clock_timestamp()
        FROM v WHERE p.id = v.post_id
        RETURNING p.id
    ), child AS (
        UPDATE post c SET publish_date = clock_timestamp() + make_interval(mins => c.delay),
            updated_at = clock_timestamp()
        FROM v
        WHERE c.parent_post_id = v.post_id AND c.state = 'QUEUE' AND c.deleted_at IS NULL
        RETURNING c.id, c.parent_post_id, c.delay, c.publish_date
    )
    SELECT id, parent_post_id, delay, publish_date FROM child
    """
)
_FINISH_ATTEMPT = text(
    """
    UPDATE post_attempt SET outcome = :outcome, finished_at = clock_timestamp(),
        status_code = :status, response_excerpt = :excerpt, error_class = :error_class,
        retry_at = :retry_at,
        duration_ms = (extract(epoch FROM clock_timestamp() - started_at) * 1000)::bigint
    WHERE id = :id AND outcome IS NULL
    """
)
_RETRIES = text(
    "SELECT count(*) FROM post_attempt a JOIN post p ON p.id = a.post_id "
    "WHERE a.post_id = :post AND a.outcome IN ('retry', 'unknown') "
    "AND a.started_at >= p.updated_at"
)
_READY_CHANNELS = text(
    """
    SELECT DISTINCT p.integration_id FROM post p
    WHERE __READY__
      AND NOT (p.integration_id = ANY(:exclude))
      AND NOT EXISTS (SELECT 1 FROM post_attempt b
                      WHERE b.integration_id = p.integration_id AND b.outcome IS NULL)
    LIMIT :n
    """.replace("__READY__", _READY)
)
# How many channels have due posts, and how many workers are alive to share them.
_DEMAND = text(
    """
    SELECT (SELECT count(DISTINCT integration_id) FROM post
            WHERE state = 'QUEUE' AND deleted_at IS NULL AND publish_date <= now()),
           (SELECT count(*) FROM procrastinate_workers
            WHERE last_heartbeat > now() - interval '60 seconds')
    """
)
_NEXT_DUE = text(
    "SELECT min(publish_date) FROM post "
    "WHERE state = 'QUEUE' AND deleted_at IS NULL AND publish_date > now()"
)


# ---------------------------------------------------------------------------------------------
# Claims and outcomes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parent:
    """What a reply needs of the previous part of its thread."""

    state: State
    release_id: str | None
    release_url: str | None


@dataclass
class Claim:
    """A post this worker holds the in-flight attempt of, with what publishing it needs.

    ``post`` and ``integration`` are snapshots (not attached to any session); writes go through
    statements or freshly loaded rows."""

    attempt_id: str
    attempt: int
    started_at: datetime
    post: Post
    integration: Integration
    parent: Parent | None
    references: dict[str, str | None] = field(default_factory=dict)
    # Resolved at claim time (one statement for the batch); :func:`readable` at publish time.
    media: list[MediaItem] = field(default_factory=list)


@dataclass
class Outcome:
    """What happened to a claimed post."""

    kind: str  # "published" | "retry" | "error" | "unknown"
    result: PublishResult | None = None
    message: str | None = None
    status_code: int | None = None
    excerpt: str | None = None
    error_class: str | None = None
    retry_after: float | None = None
    disconnect: bool = False
    # Set for kind "retry": the unknown outcome that was found safe to resend.
    was_unknown: bool = False

    @classmethod
    def from_error(cls, kind: str, exc: ProviderError, message: str | None = None) -> Outcome:
        return cls(
            kind=kind,
            message=message or exc.message,
            status_code=exc.status_code,
            excerpt=exc.excerpt,
            error_class=exc.kind,
            retry_after=getattr(exc, "retry_after", None),
        )

    @classmethod
    def unexpected(cls, claim: Claim, exc: Exception) -> Outcome:
        """A failure that is not classified: the request may have left, so never resend."""
        return cls(
            kind="error",
            message=f"Publishing failed unexpectedly ({type(exc).__name__}); it may have been "
            f"published -- check {claim.integration.name} before publishing it again",
            error_class="unexpected",
        )


async def claim_posts(
    session: AsyncSession,
    channels: Sequence[str],
    worker: str,
    *,
    prefer: dict[str, str] | None = None,
) -> list[Claim]:
    """Claim the next ready post of each channel (``prefer[channel]`` first); channels with
    nothing ready, or busy on any worker, give nothing. Commit the session to make it count."""
    if not channels:
        return []
    prefer = prefer or {}
    rows = (
        await session.execute(
            _CLAIM,
            {
                "channels": list(channels),
                "prefer": [prefer.get(c, "") for c in channels],
                "worker": worker,
            },
        )
    ).all()
    return await load_claims(session, [(r.id, r.post_id, r.attempt, r.started_at) for r in rows])


_POST = Post.__table__
_CHANNEL = Integration.__table__
_PARENT = Post.__table__.alias("parent")


async def load_claims(
    session: AsyncSession, attempts: Sequence[tuple[str, str, int, datetime]]
) -> list[Claim]:
    """Snapshots of claimed posts with their channel and previous part, in one statement
    (plain rows: no identity map, no change tracking)."""
    if not attempts:
        return []
    ids = [post_id for _, post_id, _, _ in attempts]
    stmt = (
        select(
            _POST,
            *[c.label(f"channel_{c.key}") for c in _CHANNEL.c],
            _PARENT.c.state.label("parent_state"),
            _PARENT.c.release_id.label("parent_release_id"),
            _PARENT.c.release_url.label("parent_release_url"),
        )
        .select_from(
            _POST.join(_CHANNEL, _CHANNEL.c.id == _POST.c.integration_id).outerjoin(
                _PARENT, _PARENT.c.id == _POST.c.parent_post_id
            )
        )
        .where(_POST.c.id.in_(ids))
    )
    rows = {row.id: row._mapping for row in await session.execute(stmt)}
    claims: list[Claim] = []
    for attempt_id, post_id, attempt, started_at in attempts:
        row = rows[post_id]
        post = Post(**{c.key: row[c] for c in _POST.c})
        integration = Integration(**{c.key: row[f"channel_{c.key}"] for c in _CHANNEL.c})
        parent = None
        if post.parent_post_id is not None and row["parent_state"] is not None:
            parent = Parent(
                State(row["parent_state"]), row["parent_release_id"], row["parent_release_url"]
            )
        claims.append(Claim(attempt_id, attempt, started_at, post, integration, parent))
    await _load_references(session, claims)
    media = await post_media(session, [(c.post.organization_id, c.post.image) for c in claims])
    for claim, items in zip(claims, media, strict=True):
        claim.media = items
    return claims


async def _load_references(session: AsyncSession, claims: Sequence[Claim]) -> None:
    """Release URLs of the posts the claims' contents refer to, in one statement; a reference
    resolves only to a post of the claim's own organization."""
    wanted = {c.post.id: set(POST_REFERENCE.findall(c.post.content)) for c in claims}
    ids = sorted(set().union(*wanted.values()))
    if not ids:
        return
    rows = await session.execute(
        select(_POST.c.id, _POST.c.organization_id, _POST.c.release_url, _POST.c.state).where(
            _POST.c.id.in_(ids)
        )
    )
    found = {(org, ref_id): (url, state) for ref_id, org, url, state in rows}
    for claim in claims:
        for ref_id in wanted[claim.post.id]:
            if (hit := found.get((claim.post.organization_id, ref_id))) is not None:
                url, state = hit
                claim.references[ref_id] = url if state == State.PUBLISHED else None


def _content_with_links(claim: Claim) -> str:
    """The post's text with ``(post:<id>)`` replaced by those posts' release URLs."""

    def replace(match: Any) -> str:
        url = claim.references.get(match.group(1))
        if not url:
            raise BadBodyError(
                f"The post refers to post {match.group(1)}, which has no published URL yet"
            )
        return url

    return POST_REFERENCE.sub(replace, claim.post.content)


async def record_published(
    session: AsyncSession, done: Sequence[tuple[Claim, Outcome]]
) -> dict[str, str]:
    """Store successes (in the caller's transaction): returns, per channel, the next thread part
    to publish at once (a reply without delay)."""
    if not done:
        return {}
    results = [outcome.result for _, outcome in done]
    assert all(r is not None for r in results)
    children = (
        await session.execute(
            _PUBLISHED,
            {
                "attempts": [c.attempt_id for c, _ in done],
                "posts": [c.post.id for c, _ in done],
                "release_ids": [r.id for r in results if r is not None],
                "release_urls": [r.url for r in results if r is not None],
                "error_classes": [o.error_class for _, o in done],
            },
        )
    ).all()
    listening = await orgs_with_webhooks(session, {c.post.organization_id for c, _ in done})
    now_part: dict[str, str] = {}
    for claim, outcome in done:
        post, result = claim.post, outcome.result
        assert result is not None
        # The snapshot mirrors the row for the event payload and what follows.
        post.state = State.PUBLISHED
        post.release_id = result.id
        post.release_url = result.url
        post.error = None
        if post.organization_id in listening:
            await emit_post_event(session, "post.published", post, claim.integration)
        if post.parent_post_id is None and post.interval_in_days:
            await create_next_occurrence(session, post, after=now_utc())
    channel_of = {c.post.id: c.integration.id for c, _ in done}
    for child_id, parent_id, delay, publish_date in children:
        if delay > 0:
            await schedule_publish(session, child_id, publish_date)
        else:
            now_part[channel_of[parent_id]] = child_id
    return now_part


async def record(session: AsyncSession, claim: Claim, outcome: Outcome) -> str | None:
    """Store one outcome (in the caller's transaction). Returns the id of the next thread part
    to publish at once (a reply without delay), if any."""
    if outcome.kind == "published":
        return (await record_published(session, [(claim, outcome)])).get(claim.integration.id)
    post = await session.get(
        Post, claim.post.id, populate_existing=True, execution_options={"include_deleted": True}
    )
    integration = await session.get(
        Integration,
        claim.integration.id,
        populate_existing=True,
        execution_options={"include_deleted": True},
    )
    assert post is not None and integration is not None
    kind = outcome.kind
    retry_at: datetime | None = None
    if kind == "retry":
        retries = int(await session.scalar(_RETRIES, {"post": post.id}) or 0) + 1
        if retries > MAX_RETRIES:
            kind = "error"
            outcome.message = f"Gave up after {MAX_RETRIES} tries: {outcome.message}"
        else:
            retry_at = now_utc() + timedelta(seconds=backoff_seconds(retries, outcome.retry_after))
    attempt_outcome = {"retry": "retry", "error": "error"}.get(kind, "unknown")
    if outcome.was_unknown and kind == "retry":
        attempt_outcome = "unknown"
    await session.execute(
        _FINISH_ATTEMPT,
        {
            "id": claim.attempt_id,
            "outcome": attempt_outcome,
            "status": outcome.status_code,
            "excerpt": (outcome.excerpt or outcome.message or "")[:500] or None,
            "error_class": outcome.error_class,
            "retry_at": retry_at,
        },
    )
    if kind == "retry":
        assert retry_at is not None
        await schedule_publish(session, post.id, post.publish_date, run_at=retry_at)
        logger.info("post %s: retry at %s (%s)", post.id, retry_at, outcome.message)
        return None
    message = outcome.message or "Publishing failed"
    if outcome.disconnect:
        await mark_refresh_needed(session, integration, message)
    await fail_post(session, post, integration, message, context=_context(claim, outcome))
    return None


def _context(claim: Claim, outcome: Outcome) -> dict[str, Any]:
    return {
        "postId": claim.post.id,
        "group": claim.post.group,
        "attempt": claim.attempt,
        "kind": outcome.error_class or outcome.kind,
        "statusCode": outcome.status_code,
        "excerpt": outcome.excerpt,
        "channel": claim.integration.name,
        "provider": claim.integration.provider_identifier,
    }


async def fail_post(
    session: AsyncSession,
    post: Post,
    integration: Integration,
    message: str,
    *,
    context: dict[str, Any] | None = None,
) -> None:
    """Put a post in ERROR with ``message``: ``errors`` row, notification, ``post.failed``; the
    thread's later parts fail with it; a recurring post still gets its next occurrence."""
    post.state = State.ERROR
    post.error = message
    session.add(
        Errors(
            organization_id=post.organization_id,
            post_id=post.id,
            integration_id=integration.id,
            error=message,
            context=context or {"postId": post.id, "group": post.group},
        )
    )
    await session.flush()
    await notify(
        session,
        post.organization_id,
        f"A post to {integration.name} failed: {message}",
        link=f"/posts/{post.group}",
    )
    await emit_post_event(session, "post.failed", post, integration)
    child = (
        await session.execute(
            select(Post).where(Post.parent_post_id == post.id, Post.state == State.QUEUE).limit(1)
        )
    ).scalar_one_or_none()
    if child is not None:
        await fail_post(
            session,
            child,
            integration,
            "Not published because the previous part of the thread failed",
            context={"postId": child.id, "group": child.group, "previous": post.id},
        )
    if post.parent_post_id is None and post.interval_in_days:
        await create_next_occurrence(session, post, after=now_utc())


async def create_next_occurrence(session: AsyncSession, head: Post, *, after: datetime) -> None:
    """Copy a recurring post's thread to its next occurrence after ``after`` (QUEUE, job
    deferred). The occurrence is anchored to the series' first date and wall-clock time in its
    zone; missed occurrences are skipped, so a worker back from downtime does not burst."""
    assert head.interval_in_days
    zone = zone_of(head.timezone)
    anchor = head.recurring_anchor or head.publish_date
    when = next_occurrence(anchor, zone, head.interval_in_days, max(after, head.publish_date))
    group = group_for_occurrence(head.group, when)
    exists_already = await session.scalar(
        select(Post.id)
        .where(Post.group == group, Post.integration_id == head.integration_id)
        .execution_options(include_deleted=True)
        .limit(1)
    )
    if exists_already:
        return
    # The head's thread: its group's live parts on its channel, in one statement, chained by
    # their parent links.
    parts = (
        await session.execute(
            select(Post).where(
                Post.group == head.group,
                Post.integration_id == head.integration_id,
                Post.parent_post_id.is_not(None),
            )
        )
    ).scalars()
    child_of = {part.parent_post_id: part for part in parts}
    thread = [head]
    while (child := child_of.get(thread[-1].id)) is not None and child not in thread:
        thread.append(child)
    tag_ids = list(
        (await session.execute(select(TagsPosts.tag_id).where(TagsPosts.post_id == head.id)))
        .scalars()
        .all()
    )
    copies: list[Post] = []
    moment = when
    for j, part in enumerate(thread):
        if j:
            moment = moment + timedelta(minutes=part.delay)
        copies.append(
            Post(
                id=new_cuid(),
                organization_id=part.organization_id,
                integration_id=part.integration_id,
                group=group,
                content=part.content,
                title=part.title,
                description=part.description,
                image=list(part.image or []),
                settings=dict(part.settings or {}),
                publish_date=moment,
                state=State.QUEUE,
                parent_post_id=copies[-1].id if copies else None,
                delay=part.delay,
                interval_in_days=head.interval_in_days if j == 0 else None,
                timezone=head.timezone if j == 0 else None,
                recurring_anchor=anchor if j == 0 else None,
                creation_method=part.creation_method,
            )
        )
    session.add_all(copies)
    await session.flush()
    session.add_all(TagsPosts(post_id=copies[0].id, tag_id=tag_id) for tag_id in tag_ids)
    await session.flush()
    await schedule_publish(session, copies[0].id, copies[0].publish_date)
    logger.info("recurring post %s: next occurrence %s at %s", head.id, copies[0].id, when)


# ---------------------------------------------------------------------------------------------
# The publisher
# ---------------------------------------------------------------------------------------------


class Publisher:
    """One worker's publishing loop (see module docstring)."""

    def __init__(
        self,
        worker: str,
        *,
        concurrency: int | None = None,
        provider_concurrency: int | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        settings = get_settings()
        self.worker = worker
        self.concurrency = max(1, concurrency or settings.publish_concurrency)
        self.provider_concurrency = max(
            1, provider_concurrency or settings.publish_provider_concurrency
        )
        self._http = http
        self._clients: dict[int, httpx.AsyncClient] = {}
        # Channels this publisher holds: publishing now, or finished and not yet recorded.
        self.publishing: dict[str, asyncio.Task[None]] = {}
        self.done: list[tuple[Claim, Outcome]] = []
        self.paused: dict[str, float] = {}
        self.slots: dict[str, asyncio.Semaphore] = {}
        self.wake = asyncio.Event()
        self.running = False
        self._progress = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._share = self.concurrency
        self._share_at = -1e9
        self._providers: dict[tuple[str, int], Provider[Any]] = {}

    def client(self, channel_id: str) -> httpx.AsyncClient:
        """The outbound client of a channel. Channels are spread over a few small clients:
        httpcore's pool does work proportional to its connections times its waiting requests
        on every request, which dominates with a hundred publishes in flight on one pool."""
        if self._http is not None:
            return self._http
        shard = zlib.crc32(channel_id.encode()) % HTTP_SHARDS
        client = self._clients.get(shard)
        if client is None or client.is_closed:
            size = max(4, math.ceil(self.concurrency / HTTP_SHARDS) + 2)
            client = self._clients[shard] = httpx.AsyncClient(
                timeout=HTTP_TIMEOUT,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                headers={"User-Agent": "Tidings/0.1 (+https://github.com/tidings)"},
            )
        return client

    async def aclose(self) -> None:
        """Close the outbound clients this publisher created."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    def provider(self, integration: Integration) -> Provider[Any]:
        """The provider of a channel, on the channel's client (providers hold no per-channel
        state, so one instance serves every channel of a client)."""
        http = self.client(integration.id)
        key = (integration.provider_identifier, id(http))
        provider = self._providers.get(key)
        if provider is None or provider.http is not http:
            provider = self._providers[key] = provider_for(integration, http)
        return provider

    # ---- the drain ------------------------------------------------------------------------

    async def handle(self) -> None:
        """Called by a publish job whose post is due: run the drain, or hand over to the one
        running (and wait a little, so the job queue does not spin through a burst's jobs)."""
        if self.running:
            self.wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), HANDOVER_WAIT)
            return
        await self.drain()

    async def drain(self) -> None:
        """Publish until nothing is ready and nothing is due within :data:`LINGER`."""
        if self.running:
            return
        self.running = True
        self._idle.clear()
        try:
            await self._drain()
        except asyncio.CancelledError:
            # The worker is stopping: publishes in flight stop too; their attempts stay open
            # and the reconciler resolves them as unknown outcomes.
            for task in list(self.publishing.values()):
                task.cancel()
            raise
        finally:
            self.running = False
            self._idle.set()

    async def _drain(self) -> None:
        database = get_database()
        failures = 0
        while True:
            self.wake.clear()
            self._progress.clear()
            finished, self.done = self.done, []
            now = time.monotonic()
            self.paused = {c: t for c, t in self.paused.items() if t > now}
            # Channels whose post just finished go on with their next post, unless paused.
            going_on = [c.integration.id for c, _ in finished]
            going_on = [c for c in going_on if c not in self.paused]
            free = await self._capacity() - len(self.publishing) - len(going_on)
            fresh: list[str] = []
            if free > 0:
                exclude = list(self.publishing) + going_on + list(self.paused)
                async with database.session() as session:
                    fresh = list(
                        (
                            await session.execute(_READY_CHANNELS, {"exclude": exclude, "n": free})
                        ).scalars()
                    )
            if finished or fresh:
                try:
                    claims = await self._tick(finished, going_on + fresh)
                    failures = 0
                except Exception:
                    failures += 1
                    logger.exception("publishing tick failed (%d in a row)", failures)
                    if failures < 3:
                        self.done = finished + self.done
                        await asyncio.sleep(0.2 * failures)
                        continue
                    # Give up batching: record each outcome on its own.
                    await self._record_one_by_one(finished)
                    failures, claims = 0, []
                claimed = {c.integration.id for c in claims}
                for channel_id in going_on + fresh:
                    if channel_id not in claimed:
                        self.paused.setdefault(channel_id, time.monotonic() + BUSY_BACKOFF)
                for claim in claims:
                    self.publishing[claim.integration.id] = asyncio.create_task(
                        self._publish_task(claim), name=f"publish {claim.post.id}"
                    )
            if self.done:
                continue
            timeout = POLL
            if not self.publishing and not fresh:
                async with database.session() as session:
                    next_due = await session.scalar(_NEXT_DUE)
                wait = (as_utc(next_due) - now_utc()).total_seconds() if next_due else None
                now = time.monotonic()
                paused_soon = any(until - now < LINGER for until in self.paused.values())
                if wait is None or wait > LINGER:
                    if not paused_soon:
                        return
                else:
                    timeout = max(0.005, min(wait, POLL))
            waits = [
                asyncio.ensure_future(self.wake.wait()),
                asyncio.ensure_future(self._progress.wait()),
            ]
            try:
                await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()

    async def _tick(
        self, finished: list[tuple[Claim, Outcome]], channels: list[str]
    ) -> list[Claim]:
        """One transaction: record ``finished`` and claim the next post of ``channels``."""
        async with get_database().session() as session:
            published = [(c, o) for c, o in finished if o.kind == "published"]
            prefer = await record_published(session, published)
            for claim, outcome in finished:
                if outcome.kind == "published":
                    continue
                part = await record(session, claim, outcome)
                if part is not None:
                    prefer[claim.integration.id] = part
                if outcome.kind == "retry" and outcome.retry_after:
                    # The platform asked to slow down: leave this channel alone meanwhile.
                    self.paused[claim.integration.id] = time.monotonic() + min(
                        outcome.retry_after, RETRY_AFTER_CAP
                    )
            channels = [c for c in channels if c not in self.paused or c in prefer]
            try:
                # In a savepoint: a failed claim must not lose the outcomes just written.
                async with session.begin_nested():
                    return await claim_posts(session, channels, self.worker, prefer=prefer)
            except Exception:
                logger.exception("claiming posts failed")
                return []

    async def _record_one_by_one(self, finished: list[tuple[Claim, Outcome]]) -> None:
        for claim, outcome in finished:
            try:
                await self.finish(claim, outcome)
            except Exception:
                # The attempt stays in flight; the reconciler resolves it.
                logger.exception("recording the outcome of post %s failed", claim.post.id)

    async def finish(self, claim: Claim, outcome: Outcome) -> str | None:
        """Store one outcome in its own transaction; returns the part to publish next."""
        async with get_database().session() as session:
            return await record(session, claim, outcome)

    async def _publish_task(self, claim: Claim) -> None:
        channel_id = claim.integration.id
        try:
            outcome = await self.publish(claim)
        except asyncio.CancelledError:
            self.publishing.pop(channel_id, None)
            raise
        except Exception as exc:
            # A bug of ours: the request may have left, so it is not retried blindly.
            logger.exception("publishing post %s failed unexpectedly", claim.post.id)
            outcome = Outcome.unexpected(claim, exc)
        self.publishing.pop(channel_id, None)
        self.done.append((claim, outcome))
        self._progress.set()

    async def _capacity(self) -> int:
        """How many channels this drain may publish at once: its concurrency, but no more than
        its fair share of the channels with due posts among the live workers, so that a burst
        is spread over every worker instead of being taken whole by the first one."""
        now = time.monotonic()
        if now - self._share_at > 1.0:
            async with get_database().session() as session:
                demand, workers = (await session.execute(_DEMAND)).one()
            self._share = max(1, math.ceil(int(demand or 0) / max(1, int(workers or 0))))
            self._share_at = now
        return min(self.concurrency, self._share)

    # ---- one post -------------------------------------------------------------------------

    def _slot(self, identifier: str) -> asyncio.Semaphore:
        slot = self.slots.get(identifier)
        if slot is None:
            slot = self.slots[identifier] = asyncio.Semaphore(self.provider_concurrency)
        return slot

    async def publish(self, claim: Claim) -> Outcome:
        """Send one claimed post and classify what happened (never raises, except cancel)."""
        post, integration = claim.post, claim.integration
        problem = channel_problem(integration)
        if problem:
            return Outcome(kind="error", message=problem, error_class="channel")
        if post.deleted_at is not None:
            return Outcome(kind="error", message="The post was deleted", error_class="deleted")
        try:
            provider = self.provider(integration)
        except LookupError as exc:
            return Outcome(kind="error", message=str(exc), error_class="provider")
        parent_result: PublishResult | None = None
        if post.parent_post_id is not None:
            parent = claim.parent
            if parent is None or parent.state != State.PUBLISHED or not parent.release_id:
                return Outcome(
                    kind="error",
                    message="The previous part of the thread was not published",
                    error_class="thread",
                )
            if not provider.supports_replies:
                return Outcome(
                    kind="error",
                    message=f"{provider.display_name} does not publish replies; only the first "
                    "part of the thread was published",
                    error_class="replies",
                )
            parent_result = PublishResult(id=parent.release_id, url=parent.release_url)
        try:
            settings = provider.parse_settings(post.settings)
            part = PostPart(
                content=_content_with_links(claim),
                media=readable(claim.media, self.client(integration.id)),
                idempotency_key=post.id,
            )
        except ValueError as exc:
            return Outcome(kind="error", message=str(exc), error_class="settings")
        except BadBodyError as exc:
            return Outcome.from_error("error", exc)
        return await self._send(claim, provider, part, settings, parent_result)

    async def _send(
        self,
        claim: Claim,
        provider: Provider[Any],
        part: PostPart,
        settings: Any,
        parent: PublishResult | None,
    ) -> Outcome:
        credentials = credentials_of(claim.integration)
        refreshed = False
        while True:
            try:
                async with self._slot(provider.identifier):
                    if parent is not None:
                        result = await provider.reply(credentials, parent, part, settings)
                    else:
                        result = await provider.publish(credentials, part, settings)
                return Outcome(kind="published", result=result)
            except RefreshTokenError as exc:
                if refreshed:
                    outcome = Outcome.from_error(
                        "error",
                        exc,
                        f"{claim.integration.name} refused the refreshed token; reconnect the "
                        f"channel ({exc.message})",
                    )
                    outcome.disconnect = True
                    return outcome
                refreshed = True
                try:
                    credentials = await self._refresh(claim)
                except DisconnectedError as gone:
                    return Outcome.from_error(
                        "error",
                        gone,
                        f"The channel {claim.integration.name} lost its authorization; "
                        f"reconnect it ({gone.message})",
                    )
                except RetryableError as flaky:
                    return Outcome.from_error("retry", flaky)
                except ProviderError as other:
                    return Outcome.from_error("error", other)
            except DisconnectedError as exc:
                outcome = Outcome.from_error(
                    "error",
                    exc,
                    f"The channel {claim.integration.name} lost its authorization; "
                    f"reconnect it ({exc.message})",
                )
                outcome.disconnect = True
                return outcome
            except BadBodyError as exc:
                return Outcome.from_error("error", exc)
            except RetryableError as exc:
                return Outcome.from_error("retry", exc)
            except UnknownOutcomeError as exc:
                return await self.resolve_unknown(claim, provider, part, settings, parent, exc)
            except ProviderError as exc:
                return Outcome.from_error("error", exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Not a classified failure: the request may have left, so never resend blindly.
                logger.exception("unexpected failure publishing post %s", claim.post.id)
                return Outcome.unexpected(claim, exc)

    async def _refresh(self, claim: Claim) -> Any:
        # Its own transaction: a refused refresh keeps the channel's refresh_needed mark even
        # though this post's outcome is written separately.
        credentials = await refresh_in_own_transaction(
            claim.integration.id, http=self.client(claim.integration.id)
        )
        async with get_database().session() as session:
            fresh = await session.get(
                Integration,
                claim.integration.id,
                populate_existing=True,
                execution_options={"include_deleted": True},
            )
            if fresh is not None:
                claim.integration = fresh
        return credentials

    async def resolve_unknown(
        self,
        claim: Claim,
        provider: Provider[Any],
        part: PostPart,
        settings: Any,
        parent: PublishResult | None,
        exc: ProviderError,
    ) -> Outcome:
        """Decide what a lost answer means: found on the platform -> published; provably absent
        or deduplicated by the platform -> retry; otherwise ERROR with a notice."""
        if provider.can_check_published:
            try:
                found = await provider.find_published(
                    credentials_of(claim.integration),
                    part,
                    settings,
                    parent=parent,
                    since=claim.started_at - timedelta(seconds=5),
                )
            except ProviderError as check_failed:
                logger.info(
                    "post %s: could not check the platform: %s", claim.post.id, check_failed
                )
            else:
                if found is not None:
                    return Outcome(kind="published", result=found, error_class=exc.kind)
                outcome = Outcome.from_error("retry", exc)
                outcome.was_unknown = True
                return outcome
        if resend_is_safe(provider):
            outcome = Outcome.from_error("retry", exc)
            outcome.was_unknown = True
            return outcome
        return Outcome.from_error(
            "unknown",
            exc,
            f"{exc.message}. The post may have been published on {claim.integration.name}; "
            "check the channel before publishing it again",
        )


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------

_publishers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Publisher]] = (
    weakref.WeakKeyDictionary()
)


def publisher_for(worker: str) -> Publisher:
    """The publisher of ``worker`` on the running event loop (created on first use)."""
    loop = asyncio.get_running_loop()
    by_worker = _publishers.setdefault(loop, {})
    publisher = by_worker.get(worker)
    if publisher is None:
        publisher = by_worker[worker] = Publisher(worker)
    return publisher


async def close_publishers() -> None:
    """Close the outbound clients of this loop's publishers (tests, shutdown)."""
    loop = asyncio.get_running_loop()
    for publisher in _publishers.pop(loop, {}).values():
        await publisher.aclose()


async def on_publish_job(post_id: str, at: int, *, worker: str) -> None:
    """Body of the ``posts.publish`` job: act only if the post is still QUEUE at date ``at``."""
    async with get_database().session() as session:
        row = (
            await session.execute(
                select(_POST.c.state, _POST.c.publish_date, _POST.c.deleted_at).where(
                    _POST.c.id == post_id
                )
            )
        ).first()
    if row is None or row.deleted_at is not None or row.state != State.QUEUE:
        logger.debug("publish job for post %s: nothing to do", post_id)
        return
    if epoch_us(row.publish_date) != at:
        logger.debug("publish job for post %s: rescheduled, nothing to do", post_id)
        return
    await publisher_for(worker).handle()


async def publish_due(worker: str | None = None) -> None:
    """Run one drain now (scripts and tests; the worker does this from publish jobs)."""
    await publisher_for(worker or process_worker_name()).drain()


# ---------------------------------------------------------------------------------------------
# Reconciler
# ---------------------------------------------------------------------------------------------

_ORPHANS = text(
    """
    SELECT a.id, a.post_id, a.attempt, a.started_at FROM post_attempt a
    WHERE a.outcome IS NULL AND a.started_at < now() - make_interval(secs => :grace)
      AND NOT (
        a.worker LIKE 'pw:%' AND EXISTS (
          SELECT 1 FROM procrastinate_workers w
          WHERE w.id::text = substr(a.worker, 4)
            AND w.last_heartbeat > now() - make_interval(secs => :stalled)))
      AND NOT (a.worker NOT LIKE 'pw:%'
               AND a.started_at > now() - make_interval(secs => :hard))
    ORDER BY a.started_at
    LIMIT 200
    FOR UPDATE OF a SKIP LOCKED
    """
)
_WITHOUT_JOB = text(
    """
    SELECT p.id, p.publish_date FROM post p
    WHERE __READY__
      AND p.publish_date < now() - make_interval(secs => :grace)
      AND NOT EXISTS (
        SELECT 1 FROM procrastinate_jobs j
        WHERE j.queueing_lock = 'publish:' || p.id || ':'
              || (extract(epoch FROM p.publish_date) * 1000000)::bigint::text
          AND (j.status = 'todo' OR (j.status = 'doing' AND EXISTS (
                SELECT 1 FROM procrastinate_workers w WHERE w.id = j.worker_id
                AND w.last_heartbeat > now() - make_interval(secs => :stalled)))))
    ORDER BY p.publish_date
    LIMIT 1000
    """.replace("__READY__", _READY)
)


@dataclass
class ReconcileReport:
    """What one reconciler pass did."""

    orphans: list[str] = field(default_factory=list)
    redeferred: list[str] = field(default_factory=list)


async def reconcile(
    *,
    orphan_grace: float = 30.0,
    stalled_after: float = 60.0,
    hard_timeout: float = 30 * 60.0,
    due_grace: float = 120.0,
    http: httpx.AsyncClient | None = None,
) -> ReconcileReport:
    """Resolve attempts left in flight by stopped workers; give due posts without a job a new
    one. Safe to run on several workers at once (rows are locked ``SKIP LOCKED``)."""
    report = ReconcileReport()
    database = get_database()
    publisher = Publisher(process_worker_name(), http=http)
    try:
        async with database.session() as session:
            orphans = (
                await session.execute(
                    _ORPHANS,
                    {"grace": orphan_grace, "stalled": stalled_after, "hard": hard_timeout},
                )
            ).all()
            claims = await load_claims(
                session, [(r.id, r.post_id, r.attempt, r.started_at) for r in orphans]
            )
            for claim in claims:
                outcome = await _orphan_outcome(publisher, claim)
                await record(session, claim, outcome)
                report.orphans.append(claim.post.id)
        async with database.session() as session:
            rows = (
                await session.execute(_WITHOUT_JOB, {"grace": due_grace, "stalled": stalled_after})
            ).all()
            for post_id, publish_date in rows:
                await schedule_publish(session, post_id, publish_date, run_at=now_utc())
                report.redeferred.append(post_id)
    finally:
        await publisher.aclose()
    if report.orphans or report.redeferred:
        logger.warning(
            "reconciler: %d interrupted publishes resolved, %d due posts re-queued",
            len(report.orphans),
            len(report.redeferred),
        )
    return report


async def _orphan_outcome(publisher: Publisher, claim: Claim) -> Outcome:
    """An attempt whose worker stopped mid-publish is an unknown outcome."""
    lost = UnknownOutcomeError(
        "The worker publishing this post stopped before the platform's answer was recorded"
    )
    post, integration = claim.post, claim.integration
    if post.state != State.QUEUE or post.deleted_at is not None:
        return Outcome(kind="error", message=lost.message, error_class=lost.kind)
    try:
        provider = publisher.provider(integration)
        settings = provider.parse_settings(post.settings)
        part = PostPart(
            content=_content_with_links(claim),
            media=readable(claim.media, publisher.client(integration.id)),
            idempotency_key=post.id,
        )
    except (LookupError, ValueError, ProviderError):
        return Outcome.from_error(
            "unknown",
            lost,
            f"{lost.message}. The post may have been published on {integration.name}; "
            "check the channel before publishing it again",
        )
    parent = None
    if claim.parent is not None and claim.parent.release_id:
        parent = PublishResult(id=claim.parent.release_id, url=claim.parent.release_url)
    return await publisher.resolve_unknown(claim, provider, part, settings, parent, lost)
