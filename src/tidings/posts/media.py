"""Media of posts as providers see them: the engine's (and validation's) one entry point.

A part's ``image`` JSON is ``[{"id", "path", "alt", ...}]`` (the Public API's shape). The media
library resolves it (:func:`tidings.media.service.media_items_for_posts`): a reference to the
organization's own media -- by id, else by path, deleted from the library or not -- reads its
bytes from storage, never over HTTP, so publishing does not depend on ``TIDINGS_PUBLIC_URL``
being reachable from the worker. :func:`post_media` loads the items of many posts in one
statement; :func:`readable` makes them ready to publish:

- our own media: storage failures become provider errors the engine classifies (a file gone
  from storage rejects the post, an unavailable storage is retried);
- anything else (a URL from elsewhere, another organization's media, bytes already purged):
  downloaded through the URL guard (these URLs are user-given; the provider's own fallback
  download does not check them), size-capped.

Memory: every item gets both ``read`` (the whole file as bytes) and ``stream`` (a fresh chunk
iterator, with the same error mapping and size cap). Providers that upload videos (YouTube, X,
TikTok, LinkedIn, Reddit) send them from ``stream`` chunk by chunk, so a video is never held
whole; the others take ``read``, which holds the file once for the duration of that upload:
storage reads and downloads fill one buffer reserved at the file's size and hand out that buffer
itself (no second copy, no HTTP download of our own files).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.channels.providers import BadBodyError, MediaItem, RetryableError
from tidings.config import get_settings
from tidings.core.tenancy import OrgId
from tidings.core.urlguard import UnsafeURLError, guarded_request
from tidings.media.deps import MediaEnv
from tidings.media.service import collect_bytes, media_items_for_posts
from tidings.media.storage import ObjectNotFoundError, StorageError

Reader = Callable[[], Awaitable[bytes]]
Streamer = Callable[[], AsyncIterator[bytes]]


async def post_media(
    session: AsyncSession,
    posts: Sequence[tuple[OrgId | str, Any]],
    *,
    env: MediaEnv | None = None,
) -> list[list[MediaItem]]:
    """The media items of each ``(organization, image JSON)`` pair, in one statement.

    Items of our own media read from storage; the others have ``read=None`` until
    :func:`readable` gives them a guarded download.
    """
    if not any(image for _, image in posts):
        return [[] for _ in posts]
    return await media_items_for_posts(
        session, [(OrgId(str(org_id)), image) for org_id, image in posts], env=env
    )


def readable(items: Sequence[MediaItem], client: httpx.AsyncClient) -> list[MediaItem]:
    """Copies of ``items`` ready for a provider: storage reads and streams raise provider
    errors, and media that are not ours are downloaded (read or streamed) with ``client``
    through the URL guard."""
    out = []
    for item in items:
        stream: Streamer | None = None
        if item.read is not None:
            read: Reader = _from_storage(item.read, item.url)
            if item.stream is not None:
                stream = _stream_from_storage(item.stream, item.url)
        else:
            read = _download(client, item.url)
            stream = _download_stream(client, item.url)
        read_thumbnail: Reader | None = None
        if item.read_thumbnail is not None:
            read_thumbnail = _from_storage(item.read_thumbnail, item.thumbnail_url or item.url)
        elif item.thumbnail_url:
            read_thumbnail = _download(client, item.thumbnail_url)
        out.append(
            dataclasses.replace(item, read=read, read_thumbnail=read_thumbnail, stream=stream)
        )
    return out


@contextmanager
def _storage_errors(url: str) -> Iterator[None]:
    """Storage failures as provider errors: a file gone rejects the post, an unavailable
    storage is retried."""
    try:
        yield
    except ObjectNotFoundError as exc:
        raise BadBodyError(f"The media file {url} is no longer stored") from exc
    except (StorageError, OSError) as exc:
        raise RetryableError(f"The media storage is unavailable ({url}): {exc}") from exc


def _from_storage(read: Reader, url: str) -> Reader:
    async def guarded() -> bytes:
        with _storage_errors(url):
            return await read()

    return guarded


def _stream_from_storage(stream: Streamer, url: str) -> Streamer:
    """``stream`` with :func:`_storage_errors` (raised on first iteration or midway)."""

    async def guarded() -> AsyncIterator[bytes]:
        source: AsyncIterator[bytes] | None = None
        try:
            with _storage_errors(url):
                source = stream()
                async for chunk in source:
                    yield chunk
        finally:
            close = getattr(source, "aclose", None)
            if close is not None:
                await close()

    return guarded


@asynccontextmanager
async def _downloading(
    client: httpx.AsyncClient, url: str
) -> AsyncIterator[tuple[AsyncIterator[bytes], int | None]]:
    """A media URL's body through the URL guard: its chunks, refused past the largest media
    size while downloading, and its declared length; failures are provider errors so the
    engine classifies them (a missing file rejects the post, a flaky server is retried)."""
    settings = get_settings()
    limit = max(settings.max_image_bytes, settings.max_video_bytes)
    try:
        response = await guarded_request(
            client, "GET", url, allow_private=settings.allow_private_urls, stream=True
        )
    except UnsafeURLError as exc:
        raise BadBodyError(f"The media file {url} cannot be used: {exc}") from exc
    except httpx.HTTPError as exc:
        raise RetryableError(f"Could not download the media file {url}: {exc}") from exc
    try:
        status = response.status_code
        if status >= 500 or status == 429:
            raise RetryableError(
                f"Could not download the media file {url}: HTTP {status}", status_code=status
            )
        if status >= 400:
            raise BadBodyError(
                f"The media file {url} could not be downloaded: HTTP {status}",
                status_code=status,
            )
        declared = _declared_length(response)
        if declared is not None and declared > limit:
            raise BadBodyError(_too_large(url, limit))
        yield _capped(response.aiter_bytes(), url, limit), declared
    except httpx.HTTPError as exc:
        raise RetryableError(f"Could not download the media file {url}: {exc}") from exc
    finally:
        await response.aclose()


def _download(client: httpx.AsyncClient, url: str) -> Reader:
    """Bytes of a media URL (see :func:`_downloading`), held once."""

    async def read() -> bytes:
        async with _downloading(client, url) as (chunks, declared):
            return await collect_bytes(chunks, declared)

    return read


def _download_stream(client: httpx.AsyncClient, url: str) -> Streamer:
    """A fresh download of a media URL (see :func:`_downloading`), chunk by chunk."""

    async def stream() -> AsyncIterator[bytes]:
        async with _downloading(client, url) as (chunks, _):
            async for chunk in chunks:
                yield chunk

    return stream


def _declared_length(response: httpx.Response) -> int | None:
    # Only a plain body's length says how many bytes will come (not a compressed one's).
    if response.headers.get("content-encoding", "identity").lower() != "identity":
        return None
    try:
        length = int(response.headers.get("content-length", ""))
    except ValueError:
        return None
    return length if length >= 0 else None


def _too_large(url: str, limit: int) -> str:
    return f"The media file {url} is larger than {limit:,} bytes"


async def _capped(chunks: AsyncIterator[bytes], url: str, limit: int) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            raise BadBodyError(_too_large(url, limit))
        yield chunk
