"""The media library's app API (``/api/media``) and the public file route (``/uploads/<key>``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request, Response

from tidings.accounts.auth import DbSession, Member
from tidings.db import request_database
from tidings.media import service
from tidings.media.deps import MediaEnvDep, UploadMember, media_env
from tidings.media.schemas import (
    MediaDeleted,
    MediaFromUrl,
    MediaPageRead,
    MediaRead,
    MediaUpdate,
)
from tidings.media.serving import serve_upload
from tidings.media.sniff import MediaKind

router = APIRouter()

_MULTIPART_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "name": {"type": "string", "description": "Display name"},
                        "alt": {"type": "string", "description": "Alt text"},
                    },
                }
            }
        },
    }
}


@router.post(
    "/api/media",
    status_code=201,
    tags=["media"],
    openapi_extra=_MULTIPART_BODY,
    responses={
        413: {"description": "Too large"},
        415: {"description": "Unsupported type"},
        503: {"description": "The media storage is unavailable"},
    },
)
async def upload_media(request: Request, caller: UploadMember, env: MediaEnvDep) -> MediaRead:
    """Upload an image, video or PDF (multipart field ``file``; optional ``name``, ``alt``)."""
    # No request session: none may stay checked out while the body streams (see deps).
    media = await service.upload_stream(
        request_database(request), caller.organization_id, request, env=env
    )
    return MediaRead.of(media)


@router.post("/api/media/from-url", status_code=201, tags=["media"])
async def upload_media_from_url(
    body: MediaFromUrl, request: Request, caller: UploadMember, env: MediaEnvDep
) -> MediaRead:
    """Download a file from a URL into the library."""
    media = await service.upload_from_url(
        request_database(request),
        caller.organization_id,
        body.url,
        name=body.name,
        alt=body.alt,
        env=env,
    )
    return MediaRead.of(media)


@router.get("/api/media", tags=["media"])
async def list_media(
    caller: Member,
    session: DbSession,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=service.MAX_PAGE_SIZE)] = service.PAGE_SIZE,
    type: Annotated[MediaKind | None, Query(description="Only this kind")] = None,
) -> MediaPageRead:
    """The organization's library, newest first."""
    result = await service.list_media(
        session, caller.organization_id, page=page, per_page=per_page, kind=type
    )
    return MediaPageRead(
        items=[MediaRead.of(m) for m in result.items],
        page=result.page,
        per_page=result.per_page,
        total=result.total,
        pages=result.pages,
    )


@router.get("/api/media/{media_id}", tags=["media"])
async def get_media(media_id: str, caller: Member, session: DbSession) -> MediaRead:
    """One media of the library."""
    return MediaRead.of(await service.get_media(session, caller.organization_id, media_id))


@router.patch("/api/media/{media_id}", tags=["media"])
async def update_media(
    media_id: str, body: MediaUpdate, caller: Member, session: DbSession, env: MediaEnvDep
) -> MediaRead:
    """Rename, set the alt text, or pick a video's thumbnail time."""
    org_id = caller.organization_id
    media = await service.get_media(session, org_id, media_id)
    given = body.model_fields_set
    if "name" in given and body.name is not None:
        media = await service.rename_media(session, org_id, media_id, body.name)
    if "alt" in given:
        media = await service.set_alt_text(session, org_id, media_id, body.alt)
    if "thumbnail_timestamp" in given and body.thumbnail_timestamp is not None:
        media = await service.set_thumbnail_time(
            session, org_id, media_id, body.thumbnail_timestamp, env=env
        )
    return MediaRead.of(media)


@router.delete("/api/media/{media_id}", tags=["media"])
async def delete_media(media_id: str, caller: Member, session: DbSession) -> MediaDeleted:
    """Delete from the library (files stay while scheduled posts use them)."""
    users = await service.delete_media(session, caller.organization_id, media_id)
    return MediaDeleted(id=media_id, kept_for_posts=users)


@router.api_route("/uploads/{key:path}", methods=["GET", "HEAD"], include_in_schema=False)
async def uploaded_file(key: str, request: Request, env: MediaEnvDep) -> Response:
    """A stored file, public (keys are unguessable): platforms fetch media here."""
    return await serve_upload(request, env, key)


def setup_app(app: FastAPI) -> None:
    """Check the media configuration when the app is built (a bad setting fails at startup)."""
    media_env(getattr(app.state, "settings", None))
