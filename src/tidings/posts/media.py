"""Media of posts as providers see them.

A part's ``image`` JSON is ``[{"id", "path", "alt", ...}]`` (the Public API's shape): ``path`` is a
public URL, ``id`` the organization's media row when known. :func:`media_items` turns it into
:class:`MediaItem` objects; the media library may later replace the downloader with a read from
its own storage -- this module is the one place to change.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.channels.providers import BadBodyError, MediaItem, RetryableError
from tidings.channels.providers.base import MediaType
from tidings.config import get_settings
from tidings.core.tenancy import OrgId, owned_by
from tidings.core.urlguard import UnsafeURLError, guarded_request
from tidings.media.models import Media


def media_ids(parts: Iterable[Iterable[Mapping[str, Any]]]) -> set[str]:
    """Every media id referenced by these parts' image lists."""
    return {str(ref["id"]) for refs in parts for ref in refs if ref.get("id")}


async def load_media_rows(
    session: AsyncSession, org_id: OrgId | str, ids: Iterable[str]
) -> dict[str, Media]:
    """The organization's media rows among ``ids`` (others' ids are simply not found)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = await session.execute(
        select(Media).where(owned_by(Media, OrgId(str(org_id))), Media.id.in_(wanted))
    )
    return {row.id: row for row in rows.scalars()}


def _mime_of(path: str, row: Media | None) -> str:
    if row is not None and row.mime_type:
        return row.mime_type.lower()
    guessed, _ = mimetypes.guess_type(urlsplit(path).path)
    if guessed:
        return guessed.lower()
    if row is not None and row.type == "video":
        return "video/mp4"
    # A URL without an extension: assume a photo, the common case; the platform has the last word.
    return "image/jpeg"


def media_item(
    ref: Mapping[str, Any],
    row: Media | None,
    *,
    read: Callable[[], Awaitable[bytes]] | None = None,
) -> MediaItem:
    """One :class:`MediaItem` from an image reference (and its media row, if known)."""
    path = str(ref.get("path") or (row.path if row is not None else ""))
    mime = _mime_of(path, row)
    kind: MediaType = "video" if mime.startswith("video/") else "image"
    alt = ref.get("alt") if isinstance(ref.get("alt"), str) else None
    thumbnail = ref.get("thumbnail") if isinstance(ref.get("thumbnail"), str) else None
    return MediaItem(
        url=path,
        type=kind,
        mime_type=mime,
        alt=alt or (row.alt if row is not None else None),
        width=row.width if row is not None else None,
        height=row.height if row is not None else None,
        size=row.file_size if row is not None and row.file_size else None,
        thumbnail_url=thumbnail or (row.thumbnail if row is not None else None),
        read=read,
    )


def downloader(client: httpx.AsyncClient, url: str) -> Callable[[], Awaitable[bytes]]:
    """Bytes of a media URL through the URL guard; failures are provider errors so the engine
    classifies them (a missing file rejects the post, a flaky server is retried)."""

    async def read() -> bytes:
        settings = get_settings()
        limit = max(settings.max_image_bytes, settings.max_video_bytes)
        try:
            response = await guarded_request(
                client, "GET", url, allow_private=settings.allow_private_urls
            )
        except UnsafeURLError as exc:
            raise BadBodyError(f"The media file {url} cannot be used: {exc}") from exc
        except httpx.HTTPError as exc:
            raise RetryableError(f"Could not download the media file {url}: {exc}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise RetryableError(
                f"Could not download the media file {url}: HTTP {response.status_code}",
                status_code=response.status_code,
            )
        if response.status_code >= 400:
            raise BadBodyError(
                f"The media file {url} could not be downloaded: HTTP {response.status_code}",
                status_code=response.status_code,
            )
        if len(response.content) > limit:
            raise BadBodyError(f"The media file {url} is larger than {limit:,} bytes")
        return response.content

    return read


def media_items(
    refs: Iterable[Mapping[str, Any]],
    rows: Mapping[str, Media],
    *,
    client: httpx.AsyncClient | None = None,
) -> list[MediaItem]:
    """MediaItems for a part's image list; with ``client`` each can download its bytes."""
    items = []
    for ref in refs:
        if not isinstance(ref, Mapping) or not ref.get("path"):
            continue
        row = rows.get(str(ref.get("id"))) if ref.get("id") else None
        path = str(ref["path"])
        read = downloader(client, path) if client is not None else None
        items.append(media_item(ref, row, read=read))
    return items
