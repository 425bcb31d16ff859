"""Isolation-test registrations of the media library routes."""

from __future__ import annotations

from tests.isolation_fixtures import OwnerContext, isolation_body, isolation_factory
from tidings.media.models import Media


@isolation_factory("media_id", prefix="/api/media")
async def media_of_a(ctx: OwnerContext) -> dict[str, str]:
    key = f"{ctx.org_id}/2024/01/0123456789abcdef0123456789abcdef.mp4"
    media = Media(
        organization_id=ctx.org_id,
        name="isolated.mp4",
        path=f"http://testserver/uploads/{key}",
        type="video",
        file_size=1234,
        mime_type="video/mp4",
        storage_key=key,
    )
    ctx.db.add(media)
    await ctx.db.flush()
    return {"media_id": media.id}


@isolation_body("PATCH", "/api/media/{media_id}")
def media_patch(ids: dict[str, str]) -> dict[str, object]:
    # Every change at once: none may reach the other organization's media.
    return {"name": "taken over", "alt": "taken over", "thumbnail_timestamp": 0}
