"""App API of posts (``/api/posts``): compose, schedule, edit, the calendar, comments, tags,
signatures, sets and find-slot. Thin: parse, authorize (a member of the organization), call the
service, shape the answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, status

from tidings.accounts.auth import DbSession, Member
from tidings.core.enums import CreationMethod, State
from tidings.core.errors import BadRequest
from tidings.posts import attempts as attempts_service
from tidings.posts import comments as comments_service
from tidings.posts import service
from tidings.posts import sets as sets_service
from tidings.posts import signatures as signatures_service
from tidings.posts import tags as tags_service
from tidings.posts.models import Comments, Sets, Signatures
from tidings.posts.schemas import (
    ApiModel,
    CommentIn,
    CommentOut,
    CreatePostsRequest,
    CreatePostsResult,
    DeletedOut,
    DuplicateRequest,
    EditGroupRequest,
    GroupOut,
    PostList,
    PostOut,
    ReleaseIdRequest,
    RescheduleRequest,
    SetIn,
    SetOut,
    SettingsRequest,
    SetUpdate,
    SignatureIn,
    SignatureOut,
    SignatureUpdate,
    SlotOut,
    StatusRequest,
    TagCreate,
    TagOut,
    TagUpdate,
)
from tidings.posts.slots import find_slot

router = APIRouter(prefix="/api/posts", tags=["posts"])


def _comment(row: Comments) -> CommentOut:
    return CommentOut(
        id=row.id,
        post_id=row.post_id,
        user_id=row.user_id,
        content=row.content,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _signature(row: Signatures) -> SignatureOut:
    return SignatureOut(
        id=row.id, content=row.content, auto_add=row.auto_add, created_at=row.created_at
    )


def _set(row: Sets) -> SetOut:
    return SetOut.model_validate(
        {"id": row.id, "name": row.name, "times": row.times, "timezone": row.timezone}
    )


def _states(values: list[str] | None) -> list[State] | None:
    if not values:
        return None
    out = []
    for value in values:
        try:
            out.append(State(value.upper()))
        except ValueError:
            raise BadRequest(
                f"unknown state {value!r}; use QUEUE, PUBLISHED, ERROR or DRAFT", field="state"
            ) from None
    return out


# ---- posts: collection ------------------------------------------------------------------------


@router.get("", response_model=PostList)
async def list_posts(
    caller: Member,
    session: DbSession,
    start_date: Annotated[datetime, Query(alias="startDate")],
    end_date: Annotated[datetime, Query(alias="endDate")],
    customer: str | None = None,
    integration: Annotated[list[str] | None, Query()] = None,
    tag: Annotated[list[str] | None, Query()] = None,
    state: Annotated[list[str] | None, Query()] = None,
    cursor: str | None = None,
    limit: Annotated[int | None, Query(ge=1, le=service.MAX_LIMIT)] = None,
) -> PostList:
    """Posts (thread heads) planned in ``[startDate, endDate)``, recurring posts expanded into
    their occurrences; filter by channel(s), tag name(s), customer and state. With ``limit``,
    follow ``nextCursor``."""
    return await service.list_posts(
        session,
        caller.organization_id,
        start=start_date,
        end=end_date,
        customer_id=customer,
        integration_ids=integration,
        tag_names=tag,
        states=_states(state),
        cursor=cursor,
        limit=limit,
    )


@router.post("", response_model=CreatePostsResult, status_code=status.HTTP_201_CREATED)
async def create_posts(
    body: CreatePostsRequest, caller: Member, session: DbSession
) -> CreatePostsResult:
    """Create a group of posts: one thread per channel, as a draft, scheduled, or now."""
    return await service.create_posts(
        session,
        caller.organization_id,
        body,
        user_id=caller.user_id,
        creation_method=CreationMethod.UI,
    )


@router.get("/find-slot", response_model=SlotOut)
async def get_free_slot(
    caller: Member,
    session: DbSession,
    integration: str,
    set: str | None = None,
    after: datetime | None = None,
) -> SlotOut:
    """The channel's next free posting time (from its posting times, or from a set's)."""
    slot = await find_slot(session, caller.organization_id, integration, set_id=set, after=after)
    return SlotOut(date=slot)


# ---- tags -------------------------------------------------------------------------------------


@router.get("/tags", response_model=list[TagOut])
async def list_tags(caller: Member, session: DbSession) -> list[TagOut]:
    """The organization's tags."""
    rows = await tags_service.list_tags(session, caller.organization_id)
    return [service.tag_out(t) for t in rows]


@router.post("/tags", response_model=TagOut, status_code=status.HTTP_201_CREATED)
async def create_tag(body: TagCreate, caller: Member, session: DbSession) -> TagOut:
    """A new tag (a palette color when none is given)."""
    return service.tag_out(await tags_service.create_tag(session, caller.organization_id, body))


@router.put("/tags/{tag_id}", response_model=TagOut)
async def update_tag(tag_id: str, body: TagUpdate, caller: Member, session: DbSession) -> TagOut:
    """Rename or recolor a tag."""
    return service.tag_out(
        await tags_service.update_tag(session, caller.organization_id, tag_id, body)
    )


@router.delete("/tags/{tag_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_tag(tag_id: str, caller: Member, session: DbSession) -> None:
    """Delete a tag (posts lose it)."""
    await tags_service.delete_tag(session, caller.organization_id, tag_id)


# ---- signatures -------------------------------------------------------------------------------


@router.get("/signatures", response_model=list[SignatureOut])
async def list_signatures(caller: Member, session: DbSession) -> list[SignatureOut]:
    """The organization's signatures (the auto-add one first)."""
    rows = await signatures_service.list_signatures(session, caller.organization_id)
    return [_signature(r) for r in rows]


@router.post("/signatures", response_model=SignatureOut, status_code=status.HTTP_201_CREATED)
async def create_signature(body: SignatureIn, caller: Member, session: DbSession) -> SignatureOut:
    """A new signature; ``autoAdd`` makes it the one added to new posts (at most one)."""
    row = await signatures_service.create_signature(session, caller.organization_id, body)
    return _signature(row)


@router.put("/signatures/{signature_id}", response_model=SignatureOut)
async def update_signature(
    signature_id: str, body: SignatureUpdate, caller: Member, session: DbSession
) -> SignatureOut:
    """Change a signature."""
    row = await signatures_service.update_signature(
        session, caller.organization_id, signature_id, body
    )
    return _signature(row)


@router.delete("/signatures/{signature_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_signature(signature_id: str, caller: Member, session: DbSession) -> None:
    """Delete a signature."""
    await signatures_service.delete_signature(session, caller.organization_id, signature_id)


# ---- sets -------------------------------------------------------------------------------------


@router.get("/sets", response_model=list[SetOut])
async def list_sets(caller: Member, session: DbSession) -> list[SetOut]:
    """The organization's posting schedules."""
    return [_set(r) for r in await sets_service.list_sets(session, caller.organization_id)]


@router.post("/sets", response_model=SetOut, status_code=status.HTTP_201_CREATED)
async def create_set(body: SetIn, caller: Member, session: DbSession) -> SetOut:
    """A new posting schedule: weekday times (0 = Sunday) in a time zone."""
    return _set(await sets_service.create_set(session, caller.organization_id, body))


@router.get("/sets/{set_id}", response_model=SetOut)
async def get_set(set_id: str, caller: Member, session: DbSession) -> SetOut:
    """One posting schedule."""
    return _set(await sets_service.get_set(session, caller.organization_id, set_id))


@router.put("/sets/{set_id}", response_model=SetOut)
async def update_set(set_id: str, body: SetUpdate, caller: Member, session: DbSession) -> SetOut:
    """Change a posting schedule."""
    return _set(await sets_service.update_set(session, caller.organization_id, set_id, body))


@router.delete("/sets/{set_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_set(set_id: str, caller: Member, session: DbSession) -> None:
    """Delete a posting schedule."""
    await sets_service.delete_set(session, caller.organization_id, set_id)


# ---- comments by id ---------------------------------------------------------------------------


@router.put("/comments/{comment_id}", response_model=CommentOut)
async def edit_comment(
    comment_id: str, body: CommentIn, caller: Member, session: DbSession
) -> CommentOut:
    """Change a comment (its author or an admin)."""
    return _comment(await comments_service.edit_comment(session, caller, comment_id, body.content))


@router.delete("/comments/{comment_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_comment(comment_id: str, caller: Member, session: DbSession) -> None:
    """Delete a comment (its author or an admin)."""
    await comments_service.delete_comment(session, caller, comment_id)


# ---- groups -----------------------------------------------------------------------------------


@router.get("/group/{group}", response_model=GroupOut)
async def get_group(group: str, caller: Member, session: DbSession) -> GroupOut:
    """A group: one thread per channel, with settings, media, states and release URLs."""
    return await service.get_group(session, caller.organization_id, group)


@router.put("/group/{group}", response_model=CreatePostsResult)
async def edit_group(
    group: str, body: EditGroupRequest, caller: Member, session: DbSession
) -> CreatePostsResult:
    """Replace a group's content, date and channels (``type`` update keeps states; schedule or
    now over a published post needs ``republish``)."""
    return await service.replace_group(
        session, caller.organization_id, group, body, user_id=caller.user_id
    )


@router.delete("/group/{group}", response_model=DeletedOut)
async def delete_group(group: str, caller: Member, session: DbSession) -> DeletedOut:
    """Delete a whole group (soft)."""
    return await service.delete_group(session, caller.organization_id, group)


@router.put("/group/{group}/date", response_model=GroupOut)
async def reschedule_group(
    group: str, body: RescheduleRequest, caller: Member, session: DbSession
) -> GroupOut:
    """Move a group to another date."""
    return await service.reschedule_group(
        session, caller.organization_id, group, body.date, republish=body.republish
    )


@router.post(
    "/group/{group}/duplicate",
    response_model=CreatePostsResult,
    status_code=status.HTTP_201_CREATED,
)
async def duplicate_group(
    group: str, body: DuplicateRequest, caller: Member, session: DbSession
) -> CreatePostsResult:
    """Copy a group into a new one (a draft unless ``type`` is schedule)."""
    return await service.duplicate_group(
        session,
        caller.organization_id,
        group,
        date=body.date,
        as_type=body.type,
        user_id=caller.user_id,
    )


# ---- one post ---------------------------------------------------------------------------------


class AttemptOut(ApiModel):
    attempt: int
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None
    status_code: int | None
    response_excerpt: str | None
    error_class: str | None
    retry_at: datetime | None
    duration_ms: int | None


@router.get("/{post_id}", response_model=GroupOut)
async def get_post_group(post_id: str, caller: Member, session: DbSession) -> GroupOut:
    """The group a post belongs to (what the editor opens)."""
    return await service.get_post_group(session, caller.organization_id, post_id)


@router.delete("/{post_id}", response_model=DeletedOut)
async def delete_post(post_id: str, caller: Member, session: DbSession) -> DeletedOut:
    """Delete the post's whole group (all channels, the thread), softly."""
    return await service.delete_post(session, caller.organization_id, post_id)


@router.put("/{post_id}/status", response_model=GroupOut)
async def change_status(
    post_id: str, body: StatusRequest, caller: Member, session: DbSession
) -> GroupOut:
    """Move the post's group between draft and queue."""
    return await service.change_status(session, caller.organization_id, post_id, body.status)


@router.put("/{post_id}/settings", response_model=PostOut)
async def update_settings(
    post_id: str, body: SettingsRequest, caller: Member, session: DbSession
) -> PostOut:
    """Merge provider settings into a queued or draft post whose date has not passed."""
    return await service.update_settings(session, caller.organization_id, post_id, body.settings)


@router.put("/{post_id}/release-id", response_model=PostOut)
async def set_release_id(
    post_id: str, body: ReleaseIdRequest, caller: Member, session: DbSession
) -> PostOut:
    """Connect a post to its id on the platform."""
    return await service.set_release_id(session, caller.organization_id, post_id, body.release_id)


@router.get("/{post_id}/attempts", response_model=list[AttemptOut])
async def list_attempts(post_id: str, caller: Member, session: DbSession) -> list[AttemptOut]:
    """The post's publish attempts (the engine's audit trail), oldest first."""
    rows = await attempts_service.list_attempts(session, caller.organization_id, post_id)
    return [
        AttemptOut(
            attempt=a.attempt,
            started_at=a.started_at,
            finished_at=a.finished_at,
            outcome=a.outcome,
            status_code=a.status_code,
            response_excerpt=a.response_excerpt,
            error_class=a.error_class,
            retry_at=a.retry_at,
            duration_ms=a.duration_ms,
        )
        for a in rows
    ]


@router.get("/{post_id}/comments", response_model=list[CommentOut])
async def list_comments(post_id: str, caller: Member, session: DbSession) -> list[CommentOut]:
    """The team's comments on a post."""
    rows = await comments_service.list_comments(session, caller.organization_id, post_id)
    return [_comment(r) for r in rows]


@router.post("/{post_id}/comments", response_model=CommentOut, status_code=status.HTTP_201_CREATED)
async def add_comment(
    post_id: str, body: CommentIn, caller: Member, session: DbSession
) -> CommentOut:
    """Comment on a post."""
    return _comment(await comments_service.add_comment(session, caller, post_id, body.content))
