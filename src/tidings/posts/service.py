"""Posts: compose, validate, store and schedule groups of posts; read them for the calendar.

Public API of this module (the app routes and the Public API call exactly these; each takes the
caller's :data:`OrgId`, only flushes, and raises :mod:`tidings.core.errors`)::

    create_posts(session, org_id, request, *, user_id=None, creation_method=UI)
        -> CreatePostsResult                 (a known ``group`` replaces that group instead)
    replace_group(session, org_id, group, request, *, user_id=None, creation_method=UI)
        -> CreatePostsResult
    get_group(session, org_id, group) -> GroupOut
    get_post_group(session, org_id, post_id) -> GroupOut
    get_post(session, org_id, post_id) -> PostOut
    list_posts(session, org_id, *, start, end, customer_id=None, integration_ids=None,
               tag_names=None, states=None, cursor=None, limit=None) -> PostList
    delete_group(session, org_id, group) -> DeletedOut
    delete_post(session, org_id, post_id) -> DeletedOut       (deletes the post's whole group)
    reschedule_group(session, org_id, group, date, *, republish=False) -> GroupOut
    change_status(session, org_id, post_id, status) -> GroupOut     ("draft" | "schedule")
    duplicate_group(session, org_id, group, *, date=None, as_type="draft") -> CreatePostsResult
    update_settings(session, org_id, post_id, settings) -> PostOut
    set_release_id(session, org_id, post_id, release_id) -> PostOut

A post is one row per channel per thread part; the parts of one submission share ``group``.
Validation happens before anything is stored: per channel, the provider's rules (length, media,
settings, empty content); drafts only need content. A failure is a 400 naming the channel and the
rule (``extra``: ``channel``, ``rule``, ``violations``).
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from tidings.accounts.models import User
from tidings.automation.models import Webhooks
from tidings.channels.models import Integration
from tidings.channels.providers import (
    PostPart,
    Provider,
    RuleViolation,
    UnknownProviderError,
)
from tidings.channels.service import channel_problem, credentials_of, emit_event, provider_for
from tidings.core.enums import CreationMethod, State
from tidings.core.errors import BadRequest, Conflict, NotFound
from tidings.core.ids import new_cuid, new_uuid
from tidings.core.tenancy import OrgId, owned_by, select_owned
from tidings.posts import queries
from tidings.posts.media import post_media
from tidings.posts.models import Post, PostAttempt, Signatures, Tags
from tidings.posts.scheduling import schedule_publish
from tidings.posts.schemas import (
    ChannelOut,
    ChannelThreadOut,
    CreatedPost,
    CreatePostsRequest,
    CreatePostsResult,
    CustomerOut,
    DeletedOut,
    GroupOut,
    PartIn,
    PartOut,
    PostList,
    PostOut,
    TagOut,
)
from tidings.posts.signatures import append_signature, auto_add_signature
from tidings.posts.tags import resolve_tags, set_post_tags, tags_of
from tidings.posts.timeplan import as_utc, occurrences_between, planned, zone_of

#: ``(post:<id>)`` in content is replaced by that post's release URL when publishing.
POST_REFERENCE = re.compile(r"\(post:([A-Za-z0-9_-]{1,64})\)")
#: Longest calendar range one request may ask for.
MAX_RANGE = timedelta(days=400)
MAX_LIMIT = 1000


def now_utc() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------------------------------------
# Shaping rows for clients and events
# ---------------------------------------------------------------------------------------------


def channel_out(integration: Integration) -> ChannelOut:
    """A channel as posts show it (customer only when loaded and live)."""
    customer = integration.__dict__.get("customer")
    return ChannelOut(
        id=integration.id,
        name=integration.name,
        provider_identifier=integration.provider_identifier,
        picture=integration.picture,
        customer=(
            CustomerOut(id=customer.id, name=customer.name)
            if customer is not None and customer.deleted_at is None
            else None
        ),
    )


def tag_out(tag: Tags) -> TagOut:
    return TagOut(id=tag.id, name=tag.name, color=tag.color)


def post_out(
    post: Post,
    integration: Integration,
    tags: Sequence[Tags] = (),
    *,
    publish_date: datetime | None = None,
    occurrence: bool = False,
) -> PostOut:
    """A post row (or, with ``occurrence``, a future repetition of it) for lists."""
    return PostOut(
        id=post.id,
        group=post.group,
        content=post.content,
        publish_date=publish_date or post.publish_date,
        state=(State.QUEUE if occurrence and post.state != State.DRAFT else post.state).value,
        release_url=None if occurrence else post.release_url,
        release_id=None if occurrence else post.release_id,
        error=None if occurrence else post.error,
        integration=channel_out(integration),
        image=list(post.image or []),
        settings=dict(post.settings or {}),
        tags=[tag_out(t) for t in tags],
        interval_in_days=post.interval_in_days,
        occurrence=occurrence,
        parent_post_id=post.parent_post_id,
        creation_method=post.creation_method.value if post.creation_method else None,
    )


def post_payload(post: Post, integration: Integration) -> dict[str, Any]:
    """A post as webhook events carry it."""
    return {
        "id": post.id,
        "group": post.group,
        "state": post.state.value,
        "publishDate": as_utc(post.publish_date).isoformat().replace("+00:00", "Z"),
        "content": post.content,
        "integration": {
            "id": integration.id,
            "name": integration.name,
            "providerIdentifier": integration.provider_identifier,
        },
        "releaseURL": post.release_url,
        "error": post.error,
    }


async def orgs_with_webhooks(session: AsyncSession, org_ids: Iterable[str]) -> set[str]:
    """Which of these organizations have a live, enabled webhook endpoint (the others cannot
    receive an event, so the engine skips emitting for them -- one query per batch instead of
    one per post)."""
    wanted = sorted(set(org_ids))
    if not wanted:
        return set()
    rows = await session.execute(
        select(Webhooks.organization_id)
        .where(
            Webhooks.organization_id.in_(wanted),
            Webhooks.enabled.is_(True),
            Webhooks.deleted_at.is_(None),
        )
        .distinct()
    )
    return set(rows.scalars())


async def emit_post_event(
    session: AsyncSession, event_type: str, post: Post, integration: Integration
) -> None:
    """Fire a ``post.*`` webhook event in the caller's transaction."""
    await emit_event(
        session,
        post.organization_id,
        event_type,
        post_payload(post, integration),
        integration_id=integration.id,
    )


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


async def load_integrations(
    session: AsyncSession, org_id: OrgId, ids: Iterable[str], *, include_deleted: bool = True
) -> dict[str, Integration]:
    """The organization's channels among ``ids`` (deleted ones too by default), customer loaded."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    stmt = (
        select_owned(Integration, org_id)
        .where(Integration.id.in_(wanted))
        .options(selectinload(Integration.customer))
    )
    if include_deleted:
        stmt = stmt.execution_options(include_deleted=True)
    return {row.id: row for row in (await session.execute(stmt)).scalars()}


async def _group_rows(
    session: AsyncSession, org_id: OrgId, group: str, *, lock: bool = False
) -> list[Post]:
    """A group's live rows by date. ``lock`` locks them (``FOR UPDATE``) for an edit: a worker
    claiming one of them meanwhile either skips it (the claim locks ``SKIP LOCKED``) or, having
    claimed first, makes the edit wait for its commit, after which :func:`_refuse_in_flight`
    sees its attempt -- an edit never slips in under a publish already under way."""
    stmt = (
        select_owned(Post, org_id)
        .where(Post.group == group)
        .order_by(Post.publish_date, Post.id)
        .execution_options(populate_existing=True)
    )
    if lock:
        stmt = stmt.with_for_update(of=Post)
    return list((await session.execute(stmt)).scalars())


def threads_of(rows: Sequence[Post]) -> dict[str, list[Post]]:
    """A group's rows as one thread per channel, in thread order (head first)."""
    by_channel: dict[str, list[Post]] = {}
    for row in rows:
        by_channel.setdefault(row.integration_id, []).append(row)
    out: dict[str, list[Post]] = {}
    for channel_id, posts in by_channel.items():
        children: dict[str | None, list[Post]] = {}
        ids = {p.id for p in posts}
        for post in posts:
            parent = post.parent_post_id if post.parent_post_id in ids else None
            children.setdefault(parent, []).append(post)
        ordered: list[Post] = []
        queue = sorted(children.get(None, []), key=lambda p: (p.parent_post_id is not None, p.id))
        while queue:
            current = queue.pop(0)
            ordered.append(current)
            queue = children.get(current.id, []) + queue
        out[channel_id] = ordered
    return out


async def _post_in_org(session: AsyncSession, org_id: OrgId, post_id: str) -> Post:
    stmt = select_owned(Post, org_id).where(Post.id == post_id)
    post = (await session.execute(stmt)).scalar_one_or_none()
    if post is None:
        raise NotFound("post not found", field="id")
    return post


async def _refuse_in_flight(session: AsyncSession, post_ids: Sequence[str]) -> None:
    if not post_ids:
        return
    busy = await session.scalar(
        select(
            exists().where(PostAttempt.post_id.in_(list(post_ids)), PostAttempt.outcome.is_(None))
        )
    )
    if busy:
        raise Conflict("this post is being published right now; try again in a moment")


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


@dataclass
class ChannelPlan:
    """One channel's thread as it will be stored (signature appended, media resolved)."""

    index: int
    integration: Integration
    settings: dict[str, Any]
    parts: list[PartIn]


def _field_for(index: int, violation: RuleViolation) -> str:
    base = f"posts[{index}]"
    if violation.code == "settings":
        return f"{base}.settings"
    part = violation.part_index if violation.part_index is not None else 0
    if "media" in violation.code or "image" in violation.code or "video" in violation.code:
        return f"{base}.value[{part}].image"
    return f"{base}.value[{part}].content"


def _violation_payload(plan: ChannelPlan, violation: RuleViolation) -> dict[str, Any]:
    return {
        "channel": plan.integration.id,
        "channelName": plan.integration.name,
        "provider": plan.integration.provider_identifier,
        "rule": violation.code,
        "message": violation.message,
        "part": violation.part_index,
        "field": _field_for(plan.index, violation),
    }


def _provider(plan: ChannelPlan) -> Provider[Any]:
    try:
        return provider_for(plan.integration)
    except UnknownProviderError as exc:
        raise BadRequest(
            f"{plan.integration.name}: the channel's provider "
            f"{plan.integration.provider_identifier!r} is not available",
            field=f"posts[{plan.index}].integration.id",
            extra={"channel": plan.integration.id, "rule": "provider"},
        ) from exc


def _draft_violations(plan: ChannelPlan) -> list[RuleViolation]:
    return [
        RuleViolation(code="empty", message="This part is empty", part_index=j)
        for j, part in enumerate(plan.parts)
        if not part.content.strip() and not part.image
    ]


async def validate_plans(
    session: AsyncSession, org_id: OrgId, plans: Sequence[ChannelPlan], *, draft: bool
) -> None:
    """Check every channel's thread against its provider (drafts: only emptiness).

    Raises a 400 naming the first failing channel and rule; ``violations`` lists them all.
    """
    problems: list[dict[str, Any]] = []
    first: tuple[ChannelPlan, RuleViolation] | None = None
    media: list[list[Any]] = []
    if not draft:
        # Every part's media in one statement (their types, sizes and dimensions for the rules).
        refs = [[ref.model_dump() for ref in part.image] for pl in plans for part in pl.parts]
        media = await post_media(session, [(org_id, r) for r in refs])
    media_of = iter(media)
    for plan in plans:
        if draft:
            violations = _draft_violations(plan)
        else:
            provider = _provider(plan)
            parts = [PostPart(content=part.content, media=next(media_of)) for part in plan.parts]
            violations = provider.validate(parts, plan.settings, credentials_of(plan.integration))
        for violation in violations:
            problems.append(_violation_payload(plan, violation))
            if first is None:
                first = (plan, violation)
    if first is None:
        return
    plan, violation = first
    where = f" (part {violation.part_index + 1})" if violation.part_index is not None else ""
    raise BadRequest(
        f"{plan.integration.name} ({plan.integration.provider_identifier}){where}: "
        f"{violation.message}",
        field=_field_for(plan.index, violation),
        code="post_invalid",
        extra={
            "channel": plan.integration.id,
            "rule": violation.code,
            "violations": problems,
        },
    )


async def _check_references(
    session: AsyncSession, org_id: OrgId, plans: Sequence[ChannelPlan]
) -> None:
    wanted: dict[str, str] = {}
    for plan in plans:
        for j, part in enumerate(plan.parts):
            for ref in POST_REFERENCE.findall(part.content):
                wanted.setdefault(ref, f"posts[{plan.index}].value[{j}].content")
    if not wanted:
        return
    found = set(
        (
            await session.execute(
                select(Post.id).where(owned_by(Post, org_id), Post.id.in_(list(wanted)))
            )
        ).scalars()
    )
    for ref, field in wanted.items():
        if ref not in found:
            raise BadRequest(f"(post:{ref}) refers to no post of this organization", field=field)


async def _plans(
    session: AsyncSession,
    org_id: OrgId,
    request: CreatePostsRequest,
    *,
    draft: bool,
) -> list[ChannelPlan]:
    """Load the request's channels, append the signature, and validate (nothing stored)."""
    ids: list[str] = []
    for i, entry in enumerate(request.posts):
        if entry.integration.id in ids:
            raise BadRequest(
                f"channel {entry.integration.id} appears twice; send one entry per channel",
                field=f"posts[{i}].integration.id",
            )
        ids.append(entry.integration.id)
    channels = await load_integrations(session, org_id, ids, include_deleted=False)
    signature = await _signature(session, org_id, request)
    plans: list[ChannelPlan] = []
    for i, entry in enumerate(request.posts):
        integration = channels.get(entry.integration.id)
        if integration is None:
            raise NotFound(
                f"channel {entry.integration.id} not found", field=f"posts[{i}].integration.id"
            )
        if not draft:
            problem = channel_problem(integration)
            if problem:
                raise BadRequest(
                    problem,
                    field=f"posts[{i}].integration.id",
                    code="channel_unavailable",
                    extra={"channel": integration.id, "rule": "channel_unavailable"},
                )
        parts = [part.model_copy(deep=True) for part in entry.value]
        if signature is not None:
            parts[0].content = append_signature(parts[0].content, signature.content)
        plans.append(ChannelPlan(i, integration, dict(entry.settings), parts))
    await validate_plans(session, org_id, plans, draft=draft)
    await _check_references(session, org_id, plans)
    return plans


async def _signature(
    session: AsyncSession, org_id: OrgId, request: CreatePostsRequest
) -> Signatures | None:
    if request.signature_id:
        stmt = select_owned(Signatures, org_id).where(Signatures.id == request.signature_id)
        row = (await session.execute(stmt)).scalar_one_or_none()
        if row is None:
            raise NotFound("signature not found", field="signatureId")
        return row
    if request.add_signature:
        return await auto_add_signature(session, org_id)
    return None


# ---------------------------------------------------------------------------------------------
# Creating and replacing
# ---------------------------------------------------------------------------------------------


def _resolve_date(request: CreatePostsRequest, fallback: datetime | None = None) -> datetime:
    if request.type == "now":
        return now_utc()
    if request.date is not None:
        return planned(request.date, field="date")
    if fallback is not None:
        return fallback
    if request.type == "draft":
        return now_utc()
    raise BadRequest("a date is required to schedule posts", field="date")


async def _timezone(session: AsyncSession, request: CreatePostsRequest, user_id: str | None) -> str:
    if request.timezone:
        return request.timezone
    if user_id is not None:
        name = await session.scalar(select(User.timezone_name).where(User.id == user_id))
        if name and zone_of(name).key == name:
            return str(name)
    return "UTC"


def _image_json(part: PartIn) -> list[dict[str, Any]]:
    return [ref.model_dump(exclude_none=True) for ref in part.image]


def _part_dates(head: datetime, parts: Sequence[PartIn]) -> list[datetime]:
    """Planned dates of a thread's parts (replies: after the previous part's delay). The engine
    moves a reply to the time its parent was really published plus its delay."""
    dates = [head]
    for part in parts[1:]:
        dates.append(dates[-1] + timedelta(minutes=part.delay))
    return dates


async def _defer_heads(session: AsyncSession, rows: Iterable[Post]) -> None:
    for row in rows:
        if row.parent_post_id is None and row.state == State.QUEUE and row.deleted_at is None:
            await schedule_publish(session, row.id, row.publish_date)


async def create_posts(
    session: AsyncSession,
    org_id: OrgId,
    request: CreatePostsRequest,
    *,
    user_id: str | None = None,
    creation_method: CreationMethod = CreationMethod.UI,
) -> CreatePostsResult:
    """Validate and store a group of posts (one thread per channel) and schedule them.

    ``type``: "draft" stores DRAFT rows; "schedule" QUEUE rows at ``date``; "now" QUEUE rows due
    at once. When ``group`` (top level or on the first entry) names existing posts of the
    organization, that group is replaced instead (see :func:`replace_group`). Answers one
    ``{postId, integration}`` per channel (``postId`` is the thread's first part).
    """
    group = request.group or next((p.group for p in request.posts if p.group), None)
    if group:
        existing = await session.scalar(
            select(
                exists().where(
                    owned_by(Post, org_id), Post.group == group, Post.deleted_at.is_(None)
                )
            )
        )
        if existing:
            return await replace_group(
                session, org_id, group, request, user_id=user_id, creation_method=creation_method
            )
    if request.type == "update":
        raise BadRequest("type 'update' needs the group of existing posts", field="group")
    draft = request.type == "draft"
    date = _resolve_date(request)
    plans = await _plans(session, org_id, request, draft=draft)
    tags = await resolve_tags(session, org_id, request.tags)
    zone = await _timezone(session, request, user_id)
    group = group or new_uuid()
    state = State.DRAFT if draft else State.QUEUE
    heads: list[Post] = []
    rows: list[Post] = []
    for plan in plans:
        thread = _new_thread(
            plan,
            org_id=org_id,
            group=group,
            date=date,
            state=state,
            interval=request.inter,
            zone=zone,
            creation_method=creation_method,
        )
        rows.extend(thread)
        heads.append(thread[0])
    session.add_all(rows)
    await session.flush()
    await set_post_tags(session, [h.id for h in heads], tags)
    await _defer_heads(session, heads)
    for plan, head in zip(plans, heads, strict=True):
        await emit_post_event(session, "post.created", head, plan.integration)
    return CreatePostsResult(
        group=group,
        posts=[
            CreatedPost(post_id=head.id, integration=plan.integration.id)
            for plan, head in zip(plans, heads, strict=True)
        ],
    )


def _new_thread(
    plan: ChannelPlan,
    *,
    org_id: OrgId,
    group: str,
    date: datetime,
    state: State,
    interval: int | None,
    zone: str,
    creation_method: CreationMethod,
) -> list[Post]:
    rows: list[Post] = []
    for j, (part, when) in enumerate(zip(plan.parts, _part_dates(date, plan.parts), strict=True)):
        rows.append(
            Post(
                id=new_cuid(),
                organization_id=org_id,
                integration_id=plan.integration.id,
                group=group,
                content=part.content,
                image=_image_json(part),
                settings=dict(plan.settings),
                publish_date=when,
                state=state,
                parent_post_id=rows[-1].id if rows else None,
                delay=part.delay if j else 0,
                interval_in_days=interval if j == 0 else None,
                timezone=zone if j == 0 else None,
                recurring_anchor=date if j == 0 and interval else None,
                creation_method=creation_method,
            )
        )
    return rows


def _match_parts(thread: Sequence[Post], parts: Sequence[PartIn]) -> list[Post | None]:
    """For each part, the existing row it edits: by ``id``, else by position."""
    by_id = {row.id: row for row in thread}
    claimed = {part.id for part in parts if part.id in by_id}
    used: set[str] = set()
    out: list[Post | None] = []
    for j, part in enumerate(parts):
        row: Post | None = None
        if part.id and part.id in by_id and part.id not in used:
            row = by_id[part.id]
        elif j < len(thread) and thread[j].id not in used and thread[j].id not in claimed:
            row = thread[j]
        if row is not None:
            used.add(row.id)
        out.append(row)
    return out


async def replace_group(
    session: AsyncSession,
    org_id: OrgId,
    group: str,
    request: CreatePostsRequest,
    *,
    user_id: str | None = None,
    creation_method: CreationMethod = CreationMethod.UI,
) -> CreatePostsResult:
    """Replace a group's content, date and channels (channels left out are deleted).

    Parts are matched to existing rows by ``id`` (else by position) so post ids survive edits.
    ``type`` "update" keeps each row's state; "schedule"/"now" put rows back in QUEUE, which for a
    PUBLISHED post needs ``republish: true``; "draft" makes them drafts. A post being published
    right now cannot be edited (409).
    """
    existing = await _group_rows(session, org_id, group, lock=True)
    if not existing:
        raise NotFound("group not found", field="group")
    await _refuse_in_flight(session, [p.id for p in existing])
    threads = threads_of(existing)
    heads = [t[0] for t in threads.values()]
    group_state = heads[0].state if heads else State.QUEUE
    if request.type in ("schedule", "now") and not request.republish:
        if any(p.state == State.PUBLISHED for p in existing):
            raise BadRequest(
                "this post was published already; send republish: true to publish it again",
                field="republish",
                code="already_published",
            )
    draft = request.type == "draft" or (request.type == "update" and group_state == State.DRAFT)
    current_date = min(h.publish_date for h in heads) if heads else None
    date = _resolve_date(request, fallback=current_date)
    plans = await _plans(session, org_id, request, draft=draft)
    tags = await resolve_tags(session, org_id, request.tags)
    zone = request.timezone or next((h.timezone for h in heads if h.timezone), None)
    zone = zone or await _timezone(session, request, user_id)
    stamp = now_utc()
    kept_heads: list[Post] = []
    events: list[tuple[str, Post, Integration]] = []
    for plan in plans:
        thread = threads.pop(plan.integration.id, [])
        matched = _match_parts(thread, plan.parts)
        rows: list[Post] = []
        dates = _part_dates(date, plan.parts)
        for j, (part, row) in enumerate(zip(plan.parts, matched, strict=True)):
            current = row.state if row is not None else None
            if row is None:
                row = Post(
                    id=new_cuid(),
                    organization_id=org_id,
                    integration_id=plan.integration.id,
                    group=group,
                    creation_method=creation_method,
                    content="",
                    publish_date=dates[j],
                    state=State.DRAFT if draft else State.QUEUE,
                )
                session.add(row)
            new_state = _next_state(request.type, current, draft=draft)
            if new_state == State.QUEUE and row.state in (State.PUBLISHED, State.ERROR):
                if row.state == State.PUBLISHED:
                    row.release_id = None
                    row.release_url = None
                row.error = None
            if new_state != State.PUBLISHED:
                row.publish_date = dates[j]
            row.state = new_state
            row.content = part.content
            row.image = _image_json(part)
            row.settings = dict(plan.settings)
            row.parent_post_id = rows[-1].id if rows else None
            row.delay = part.delay if j else 0
            row.interval_in_days = request.inter if j == 0 else None
            row.timezone = zone if j == 0 else None
            row.recurring_anchor = date if j == 0 and request.inter else None
            row.updated_at = stamp
            rows.append(row)
        keep = {r.id for r in rows}
        for old in thread:
            if old.id not in keep:
                old.deleted_at = stamp
        kept_heads.append(rows[0])
        events.append(("post.updated", rows[0], plan.integration))
    # Channels left out of the request are removed from the group.
    removed = [row for thread in threads.values() for row in thread]
    for row in removed:
        row.deleted_at = stamp
    await session.flush()
    removed_channels = await load_integrations(
        session, org_id, {r.integration_id for r in removed if r.parent_post_id is None}
    )
    for row in removed:
        if row.parent_post_id is None and row.integration_id in removed_channels:
            events.append(("post.deleted", row, removed_channels[row.integration_id]))
    await set_post_tags(session, [h.id for h in kept_heads], tags)
    await _defer_heads(session, kept_heads)
    for event_type, row, integration in events:
        await emit_post_event(session, event_type, row, integration)
    return CreatePostsResult(
        group=group,
        posts=[
            CreatedPost(post_id=head.id, integration=plan.integration.id)
            for plan, head in zip(plans, kept_heads, strict=True)
        ],
    )


def _next_state(kind: str, current: State | None, *, draft: bool) -> State:
    if kind == "draft":
        return State.DRAFT
    if kind in ("schedule", "now"):
        return State.QUEUE
    # "update" keeps what an existing row was; a new row follows the group.
    if current is not None:
        return current
    return State.DRAFT if draft else State.QUEUE


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


async def get_group(session: AsyncSession, org_id: OrgId, group: str) -> GroupOut:
    """A group with one thread per channel (404 when the organization has no such group)."""
    rows = await _group_rows(session, org_id, group)
    if not rows:
        raise NotFound("group not found", field="group")
    threads = threads_of(rows)
    channels = await load_integrations(session, org_id, threads)
    heads = [t[0] for t in threads.values()]
    tags = await tags_of(session, [h.id for h in heads])
    head = min(heads, key=lambda h: (h.publish_date, h.id))
    states = {h.state for h in heads}
    state = head.state if len(states) == 1 else _mixed_state(states)
    return GroupOut(
        group=group,
        publish_date=head.publish_date,
        state=state.value,
        interval_in_days=head.interval_in_days,
        timezone=head.timezone,
        tags=[tag_out(t) for t in tags.get(head.id, [])],
        posts=[
            ChannelThreadOut(
                integration=channel_out(channels[channel_id]),
                settings=dict(thread[0].settings or {}),
                value=[
                    PartOut(
                        id=row.id,
                        content=row.content,
                        image=list(row.image or []),
                        delay=row.delay,
                        state=row.state.value,
                        publish_date=row.publish_date,
                        release_url=row.release_url,
                        release_id=row.release_id,
                        error=row.error,
                    )
                    for row in thread
                ],
            )
            for channel_id, thread in threads.items()
            if channel_id in channels
        ],
    )


def _mixed_state(states: set[State]) -> State:
    for state in (State.ERROR, State.QUEUE, State.DRAFT, State.PUBLISHED):
        if state in states:
            return state
    return State.QUEUE


async def get_post_group(session: AsyncSession, org_id: OrgId, post_id: str) -> GroupOut:
    """The group of a post."""
    post = await _post_in_org(session, org_id, post_id)
    return await get_group(session, org_id, post.group)


async def get_post(session: AsyncSession, org_id: OrgId, post_id: str) -> PostOut:
    """One post row."""
    post = await _post_in_org(session, org_id, post_id)
    channels = await load_integrations(session, org_id, [post.integration_id])
    tags = await tags_of(session, [post.id])
    return post_out(post, channels[post.integration_id], tags.get(post.id, []))


def encode_cursor(moment: datetime, post_id: str) -> str:
    raw = f"{as_utc(moment).isoformat()}|{post_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, _, post_id = raw.partition("|")
        if not post_id:
            raise ValueError("no id")
        return as_utc(datetime.fromisoformat(moment)), post_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadRequest("invalid cursor", field="cursor") from exc


class _Shaper:
    """Rows of :mod:`tidings.posts.queries` as the ``posts`` of a :class:`PostList`: plain
    dicts validated in one call, a channel (and a set of tags) shown by many posts built once
    and shared, so that a long list costs little more than its rows."""

    def __init__(self, tags: dict[str, tuple[int, str, str]]) -> None:
        self.tags = tags
        self.channels: dict[str, ChannelOut] = {}
        self.tag_lists: dict[tuple[str, ...], list[TagOut]] = {}
        self.tag_outs: dict[str, TagOut] = {}

    def _channel(self, row: Any) -> ChannelOut:
        channel_id, name, provider, picture, customer_id, customer_name = row[15:21]
        customer = None
        if customer_id is not None:
            customer = CustomerOut(id=customer_id, name=customer_name)
        channel = self.channels[channel_id] = ChannelOut(
            id=channel_id,
            name=name,
            provider_identifier=provider,
            picture=picture,
            customer=customer,
        )
        return channel

    def _tags(self, tag_ids: tuple[str, ...]) -> list[TagOut]:
        live = sorted((t for t in tag_ids if t in self.tags), key=self.tags.__getitem__)
        out = []
        for tag_id in live:
            tag = self.tag_outs.get(tag_id)
            if tag is None:
                _, name, color = self.tags[tag_id]
                tag = self.tag_outs[tag_id] = TagOut(id=tag_id, name=name, color=color)
            out.append(tag)
        self.tag_lists[tag_ids] = out
        return out

    def post(self, row: Any, publish_date: datetime, occurrence: bool) -> dict[str, Any]:
        # By position: the order of ``queries.LIST_COLUMNS``, then ``tag_ids``.
        (
            post_id,
            group,
            content,
            _,
            state,
            release_url,
            release_id,
            error,
            image,
            settings,
            interval,
            parent_id,
            creation_method,
            _,
            _,
            channel_id,
            _,
            _,
            _,
            _,
            _,
            tag_ids,
        ) = row
        if occurrence:
            release_url = release_id = error = None
            if state != State.DRAFT:
                state = State.QUEUE.value
        tags: list[TagOut] = []
        if tag_ids:
            key = tuple(tag_ids)
            tags = self.tag_lists.get(key) or self._tags(key)
        return {
            "id": post_id,
            "group": group,
            "content": content,
            "publish_date": publish_date,
            "state": state,
            "release_url": release_url,
            "release_id": release_id,
            "error": error,
            "integration": self.channels.get(channel_id) or self._channel(row),
            "image": image or [],
            "settings": settings or {},
            "tags": tags,
            "interval_in_days": interval,
            "occurrence": occurrence,
            "parent_post_id": parent_id,
            "creation_method": creation_method,
        }


async def list_posts(
    session: AsyncSession,
    org_id: OrgId,
    *,
    start: datetime,
    end: datetime,
    customer_id: str | None = None,
    integration_ids: Sequence[str] | None = None,
    tag_names: Sequence[str] | None = None,
    states: Sequence[State] | None = None,
    cursor: str | None = None,
    limit: int | None = None,
) -> PostList:
    """Posts (thread heads) whose publish date is in ``[start, end)``, by date.

    Recurring posts (QUEUE or DRAFT with ``interval_in_days``) are expanded into their future
    occurrences in the range (``occurrence: true``, same id). With ``limit``, pages follow
    ``next_cursor`` (opaque; pass it back as ``cursor``). Three lean statements (the range, the
    recurring posts, their tags), see :mod:`tidings.posts.queries`.
    """
    start, end = planned(start, field="startDate"), planned(end, field="endDate")
    if end <= start:
        raise BadRequest("endDate must be after startDate", field="endDate")
    if end - start > MAX_RANGE:
        raise BadRequest(f"the range may span at most {MAX_RANGE.days} days", field="endDate")
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    after = decode_cursor(cursor) if cursor else None
    filters: dict[str, Any] = {
        "customer_id": customer_id,
        "integration_ids": integration_ids,
        "tag_names": tag_names,
    }
    rows = await queries.calendar_rows(
        session,
        org_id,
        start,
        end,
        states=states,
        after=after,
        limit=limit + 1 if limit is not None else None,
        **filters,
    )
    # (publish date, id, row, occurrence?); rows are unpacked by position (``post_id`` is 0,
    # ``publish_date`` 3): it is the hot loop of a busy calendar.
    items: list[tuple[datetime, str, Any, bool]] = [(r[3], r[0], r, False) for r in rows]
    # Future repetitions of recurring posts (their own row is listed above when in range).
    if not states or any(s in states for s in queries.REPEATING_STATES):
        # Occurrences from the cursor on, and no further than a full page's last post: later
        # ones cannot be on this page.
        since = max(start, after[0]) if after is not None else start
        until = end
        if limit is not None and len(rows) > limit:
            until = min(end, rows[-1][3] + timedelta(microseconds=1))
        for row in await queries.recurring_rows(session, org_id, end, **filters):
            if states and row.state not in states:
                continue
            for moment in occurrences_between(
                row.recurring_anchor or row.publish_date,
                zone_of(row.timezone),
                row.interval_in_days,
                since,
                until,
                first=row.publish_date + timedelta(microseconds=1),
                limit=(limit or MAX_LIMIT) + 1,
            ):
                if after is not None and (moment, row.id) <= after:
                    continue
                items.append((moment, row.id, row, True))
        if len(items) > len(rows):
            items.sort(key=lambda item: (item[0], item[1]))
    next_cursor = None
    if limit is not None and len(items) > limit:
        items = items[:limit]
        next_cursor = encode_cursor(items[-1][0], items[-1][1])
    tag_ids = {tag_id for item in items if item[2][21] for tag_id in item[2][21]}
    shaper = _Shaper(await queries.live_tags(session, org_id, tag_ids))
    return PostList.model_validate(
        {
            "posts": [shaper.post(row, moment, virtual) for moment, _, row, virtual in items],
            "next_cursor": next_cursor,
        }
    )


# ---------------------------------------------------------------------------------------------
# Changing
# ---------------------------------------------------------------------------------------------


async def delete_group(session: AsyncSession, org_id: OrgId, group: str) -> DeletedOut:
    """Soft-delete every post of a group (all channels, whole threads). A pending publish job
    finds the rows deleted and does nothing."""
    rows = await _group_rows(session, org_id, group)
    if not rows:
        raise NotFound("group not found", field="group")
    stamp = now_utc()
    for row in rows:
        row.deleted_at = stamp
    await session.flush()
    channels = await load_integrations(session, org_id, {r.integration_id for r in rows})
    for row in rows:
        if row.parent_post_id is None and row.integration_id in channels:
            await emit_post_event(session, "post.deleted", row, channels[row.integration_id])
    heads = [r for r in rows if r.parent_post_id is None] or rows
    head = min(heads, key=lambda r: (r.publish_date, r.id))
    return DeletedOut(id=head.id, group=group, deleted=len(rows))


async def delete_post(session: AsyncSession, org_id: OrgId, post_id: str) -> DeletedOut:
    """Soft-delete the whole group of a post."""
    post = await _post_in_org(session, org_id, post_id)
    result = await delete_group(session, org_id, post.group)
    return result.model_copy(update={"id": post_id})


async def _emit_updated(session: AsyncSession, org_id: OrgId, rows: Sequence[Post]) -> None:
    heads = [r for r in rows if r.parent_post_id is None]
    channels = await load_integrations(session, org_id, {r.integration_id for r in heads})
    for row in heads:
        if row.integration_id in channels:
            await emit_post_event(session, "post.updated", row, channels[row.integration_id])


def _request_from_group(group: GroupOut, kind: str, date: datetime | None) -> CreatePostsRequest:
    return CreatePostsRequest.model_validate(
        {
            "type": kind,
            "date": date or group.publish_date,
            "inter": group.interval_in_days,
            "timezone": group.timezone,
            "tags": [{"label": t.name} for t in group.tags],
            "posts": [
                {
                    "integration": {"id": thread.integration.id},
                    "settings": thread.settings,
                    "value": [
                        {
                            "id": part.id,
                            "content": part.content,
                            "image": part.image,
                            "delay": part.delay,
                        }
                        for part in thread.value
                    ],
                }
                for thread in group.posts
            ],
        }
    )


async def reschedule_group(
    session: AsyncSession,
    org_id: OrgId,
    group: str,
    date: datetime,
    *,
    republish: bool = False,
) -> GroupOut:
    """Move a group to ``date`` (replies keep their delays). QUEUE and ERROR posts are queued at
    the new date, drafts stay drafts; PUBLISHED posts move (and publish again) only with
    ``republish``. The job deferred for the old date becomes a no-op."""
    date = planned(date, field="date")
    rows = await _group_rows(session, org_id, group, lock=True)
    if not rows:
        raise NotFound("group not found", field="group")
    await _refuse_in_flight(session, [r.id for r in rows])
    if not republish and all(r.state == State.PUBLISHED for r in rows):
        raise BadRequest(
            "this post was published already; send republish: true to publish it again",
            field="republish",
            code="already_published",
        )
    stamp = now_utc()
    changed: list[Post] = []
    for thread in threads_of(rows).values():
        if thread[0].state == State.PUBLISHED and not republish:
            continue
        when = date
        for j, row in enumerate(thread):
            if j:
                when = when + timedelta(minutes=row.delay)
            row.publish_date = when
            if row.state in (State.ERROR, State.PUBLISHED):
                row.state = State.QUEUE
                row.error = None
                row.release_id = None
                row.release_url = None
            if j == 0 and row.interval_in_days:
                row.recurring_anchor = when
            row.updated_at = stamp
            changed.append(row)
    await session.flush()
    await _defer_heads(session, changed)
    await _emit_updated(session, org_id, changed)
    return await get_group(session, org_id, group)


async def change_status(
    session: AsyncSession, org_id: OrgId, post_id: str, status: str
) -> GroupOut:
    """Move a post's group between DRAFT ("draft") and QUEUE ("schedule").

    Queueing checks the provider rules first (a draft only needed content). A date in the past
    publishes at once. PUBLISHED posts cannot move (400).
    """
    post = await _post_in_org(session, org_id, post_id)
    rows = await _group_rows(session, org_id, post.group, lock=True)
    await _refuse_in_flight(session, [r.id for r in rows])
    if any(r.state == State.PUBLISHED for r in rows):
        raise BadRequest(
            "a published post cannot change status; duplicate it instead",
            field="status",
            code="already_published",
        )
    target = State.DRAFT if status == "draft" else State.QUEUE
    if target == State.QUEUE:
        group = await get_group(session, org_id, post.group)
        request = _request_from_group(group, "schedule", group.publish_date)
        await _plans(session, org_id, request, draft=False)
    stamp = now_utc()
    for row in rows:
        row.state = target
        row.error = None
        row.updated_at = stamp
    await session.flush()
    if target == State.QUEUE:
        await _defer_heads(session, rows)
    await _emit_updated(session, org_id, rows)
    return await get_group(session, org_id, post.group)


async def duplicate_group(
    session: AsyncSession,
    org_id: OrgId,
    group: str,
    *,
    date: datetime | None = None,
    as_type: str = "draft",
    user_id: str | None = None,
) -> CreatePostsResult:
    """A copy of a group (same channels, content, media, settings, tags) as a new group: a draft
    by default, or scheduled at ``date``."""
    source = await get_group(session, org_id, group)
    request = _request_from_group(source, as_type, date)
    for entry in request.posts:
        for part in entry.value:
            part.id = None
    return await create_posts(session, org_id, request, user_id=user_id)


async def update_settings(
    session: AsyncSession, org_id: OrgId, post_id: str, settings: dict[str, Any]
) -> PostOut:
    """Merge provider settings into a QUEUE or DRAFT post (its whole thread) whose date has
    not passed; checked against the channel's settings model."""
    post = await _post_in_org(session, org_id, post_id)
    await _group_rows(session, org_id, post.group, lock=True)  # reloads ``post``, locked
    if post.state not in (State.QUEUE, State.DRAFT):
        raise BadRequest("only queued or draft posts can change settings", field="id")
    if post.publish_date <= now_utc() and post.state == State.QUEUE:
        raise BadRequest("the post's publish date has passed", field="id")
    await _refuse_in_flight(session, [post.id])
    channels = await load_integrations(session, org_id, [post.integration_id])
    integration = channels[post.integration_id]
    merged = {**(post.settings or {}), **settings}
    plan = ChannelPlan(0, integration, merged, [])
    try:
        _provider(plan).parse_settings(merged)
    except ValueError as exc:
        raise BadRequest(
            str(exc), field="settings", extra={"channel": integration.id, "rule": "settings"}
        ) from exc
    await session.execute(
        update(Post)
        .where(
            owned_by(Post, org_id),
            Post.group == post.group,
            Post.integration_id == post.integration_id,
        )
        .values(settings=merged, updated_at=now_utc())
    )
    await session.refresh(post)
    await emit_post_event(session, "post.updated", post, integration)
    tags = await tags_of(session, [post.id])
    return post_out(post, integration, tags.get(post.id, []))


async def set_release_id(
    session: AsyncSession, org_id: OrgId, post_id: str, release_id: str
) -> PostOut:
    """Connect a post to its platform id (for posts published without one)."""
    post = await _post_in_org(session, org_id, post_id)
    post.release_id = release_id
    await session.flush()
    channels = await load_integrations(session, org_id, [post.integration_id])
    tags = await tags_of(session, [post.id])
    return post_out(post, channels[post.integration_id], tags.get(post.id, []))


def group_for_occurrence(group: str, moment: datetime) -> str:
    """The group of a recurring group's occurrence at ``moment`` (the same on every channel)."""
    name = f"tidings:recurring:{group}:{as_utc(moment).isoformat()}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))
