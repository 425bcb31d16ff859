"""The composer (new posts and editing a group) and a post's page."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from tidings.accounts.auth import DbSession
from tidings.channels import service as channels_service
from tidings.core.errors import NotFound
from tidings.core.tenancy import OrgId
from tidings.media import service as media_service
from tidings.orgs import service as orgs_service
from tidings.posts import attempts as attempts_service
from tidings.posts import comments as comments_service
from tidings.posts import service as posts_service
from tidings.posts import sets as sets_service
from tidings.posts import signatures as signatures_service
from tidings.posts import tags as tags_service
from tidings.posts.schemas import GroupOut
from tidings.web.calendar_pages import STATE_LABELS
from tidings.web.context import Page, render

router = APIRouter()


def provider_names() -> dict[str, str]:
    """Display names of the providers by identifier."""
    return {p["identifier"]: p["display_name"] for p in channels_service.list_providers()}


async def composer_channels(db: DbSession, org_id: OrgId) -> list[dict[str, Any]]:
    """Every channel with what the composer checks as the user types: its provider's
    counting, its own length limit (which may depend on the account) and media rules."""
    names = provider_names()
    out = []
    for channel in await channels_service.list_channels(db, org_id):
        customer = channels_service.customer_of(channel)
        try:
            rules = await channels_service.channel_rules(channel)
        except NotFound:  # a provider that is no longer installed
            continue
        out.append(
            {
                "id": channel.id,
                "name": channel.name,
                "picture": channel.picture,
                "identifier": channel.provider_identifier,
                "provider": names.get(channel.provider_identifier, channel.provider_identifier),
                "profile": channel.profile,
                "customer": {"id": customer.id, "name": customer.name} if customer else None,
                "problem": channels_service.channel_problem(channel),
                "max_length": rules["max_length"],
                "text_counting": rules["text_counting"],
                "supports_replies": rules["supports_replies"],
                "media_rules": rules["media_rules"],
                "settings_schema": rules["settings_schema"],
            }
        )
    return out


async def library_details(db: DbSession, org_id: OrgId, group: GroupOut) -> dict[str, Any]:
    """Name, kind and type of the library files a group's parts refer to (by id): a post keeps
    only a file's address, while the composer names each file ("Alt text of launch.png") and
    checks the platforms' media rules by kind."""
    ids = {
        ref["id"]
        for thread in group.posts
        for part in thread.value
        for ref in part.image
        if isinstance(ref.get("id"), str)
    }
    found = await media_service.media_by_ids(db, org_id, ids)
    return {
        m.id: {"name": m.name, "type": m.type, "mime_type": m.mime_type} for m in found.values()
    }


def _parse_instant(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


@router.get("/compose")
async def compose_page(
    request: Request,
    page: Page,
    db: DbSession,
    group: Annotated[str | None, Query(max_length=200)] = None,
    date: Annotated[str | None, Query(max_length=40)] = None,
    channel: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """Write a post once for several channels (``group``: edit that group)."""
    org_id = OrgId(page.caller.organization_id)
    existing = None
    if group:
        try:
            existing = await posts_service.get_group(db, org_id, group)
        except NotFound:
            return render(request, "not_found.html", page, what="post", status_code=404)
    channels = await composer_channels(db, org_id)
    data: dict[str, Any] = {
        "timezone": page.timezone_name,
        "channels": channels,
        "signatures": [
            {"id": s.id, "content": s.content, "auto_add": s.auto_add}
            for s in await signatures_service.list_signatures(db, org_id)
        ],
        "tags": [
            {"name": t.name, "color": t.color} for t in await tags_service.list_tags(db, org_id)
        ],
        "sets": [{"id": s.id, "name": s.name} for s in await sets_service.list_sets(db, org_id)],
        "group": existing.model_dump(mode="json") if existing else None,
        "library": await library_details(db, org_id, existing) if existing else {},
        "date": date if _parse_instant(date) is not None else None,
        "preselect": channel,
    }
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in channels:
        groups.setdefault(item["customer"]["name"] if item["customer"] else "", []).append(item)
    return render(
        request,
        "compose.html",
        page,
        data=data,
        existing=existing,
        channel_groups=sorted(groups.items(), key=lambda kv: (kv[0] != "", kv[0].lower())),
    )


@router.get("/posts/{post_id}")
async def post_page(request: Request, page: Page, db: DbSession, post_id: str) -> Response:
    """A post's group: its parts per channel, states, release links, errors, attempts and the
    team's comments."""
    org_id = OrgId(page.caller.organization_id)
    try:
        group = await posts_service.get_post_group(db, org_id, post_id)
    except NotFound:
        return render(request, "not_found.html", page, what="post", status_code=404)
    attempts = {}
    for thread in group.posts:
        for part in thread.value:
            attempts[part.id] = await attempts_service.list_attempts(db, org_id, part.id)
    comments = await comments_service.list_comments(db, org_id, post_id)
    authors = {
        user.id: user.name or user.email for _, user in await orgs_service.list_members(db, org_id)
    }
    return render(
        request,
        "post.html",
        page,
        group=group,
        post_id=post_id,
        attempts=attempts,
        comments=comments,
        authors=authors,
        provider_names=provider_names(),
        state_labels=STATE_LABELS,
    )
