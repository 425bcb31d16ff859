"""The media library of an organization: uploads, listing, edits, deletion, and media for posts.

Every function takes the caller's :data:`~tidings.core.tenancy.OrgId`; another organization's
media is answered 404 like a missing one. Files go through :mod:`tidings.media.ingest` (sniffed,
size-limited while streaming, verified, thumbnailed) into the configured storage; the row
records the public URL platforms fetch (``path``) and the storage keys.

Deleting a media is soft. Its stored bytes are removed afterwards by a job
(:mod:`tidings.media.tasks`) -- unless a live QUEUE or DRAFT post of the organization still
refers to it (``post.image`` holds ``[{"id", "path", ...}]``): then the bytes stay, and stay
served, until no such post does (published, changed or deleted), so deleting from the library
never makes a scheduled post fail.

Functions for other domains: :func:`upload_stream` / :func:`upload_from_url` (the Public API's
``/upload`` and ``/upload-from-url``) and :func:`media_items_for` / :func:`media_items_for_posts`
(the publishing engine).
"""

from __future__ import annotations

import io
import json
import math
import mimetypes
import re
import unicodedata
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeGuard
from urllib.parse import urlsplit

from fastapi import Request
from sqlalchemy import ColumnElement, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute
from starlette.requests import ClientDisconnect

from tidings.channels.providers.base import MediaItem
from tidings.core.enums import State
from tidings.core.errors import BadRequest, Conflict, NotFound
from tidings.core.jobs import defer_in_session
from tidings.core.tenancy import OrgId, get_owned, owned_by
from tidings.db import Database
from tidings.media.deps import MediaEnv, media_env, request_media_env
from tidings.media.errors import MultipartError, StorageUnavailable
from tidings.media.fetch import ingest_url
from tidings.media.ingest import (
    ALL_KINDS,
    IngestedMedia,
    ingest_stream,
    rethumbnail_video,
)
from tidings.media.limits import too_large
from tidings.media.models import Media
from tidings.media.multipart import MAX_FORM_BYTES, open_multipart_file
from tidings.media.schemas import MAX_ALT_LENGTH, MAX_NAME_LENGTH
from tidings.media.sniff import MediaKind
from tidings.media.storage import ObjectNotFoundError, Storage, StorageError
from tidings.posts.models import Post

PAGE_SIZE: Final = 28
MAX_PAGE_SIZE: Final = 100
#: Posts in these states keep the bytes of a deleted media they refer to.
KEEPING_STATES: Final = (State.QUEUE, State.DRAFT)
#: Image and video only, as the Public API's ``/upload`` accepts.
IMAGES_AND_VIDEOS: Final = frozenset({MediaKind.IMAGE, MediaKind.VIDEO})
_MAX_ID_LENGTH: Final = 64
# Control characters PostgreSQL text cannot hold (NUL) or that make no sense in a label; tabs
# and line breaks are kept in alt text.
_NAME_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ALT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# A plain value, or a column of the outer query.
_Value = str | QueryableAttribute[str] | ColumnElement[str]

TASK_PURGE: Final = "media.purge_deleted"
TASK_DELETE_UNUSED: Final = "media.delete_unused_objects"


@dataclass(frozen=True, slots=True)
class MediaPage:
    """One page of the library (``page`` is 1-based)."""

    items: list[Media]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        """How many pages the filter has (at least 1)."""
        return max(1, math.ceil(self.total / self.per_page))


# ---- text fields ---------------------------------------------------------------------------


def clean_alt(alt: str | None, *, field: str = "alt") -> str | None:
    """Alt text as stored: control characters removed, trimmed, None when empty; too long → 400."""
    if alt is None:
        return None
    text = unicodedata.normalize("NFC", _ALT_CONTROL.sub("", alt)).strip()
    if len(text) > MAX_ALT_LENGTH:
        raise BadRequest(f"the alt text is longer than {MAX_ALT_LENGTH} characters", field=field)
    return text or None


def clean_display_name(name: str, *, field: str = "name") -> str:
    """A media name as stored: one line, trimmed, at most 255 characters; blank → 400."""
    text = unicodedata.normalize("NFC", _NAME_CONTROL.sub("", name)).strip()
    if not text:
        raise BadRequest("the name cannot be blank", field=field)
    if len(text) > MAX_NAME_LENGTH:
        raise BadRequest(f"the name is longer than {MAX_NAME_LENGTH} characters", field=field)
    return text


# ---- creating ------------------------------------------------------------------------------


async def create_media(
    session: AsyncSession,
    org_id: OrgId,
    ingested: IngestedMedia,
    *,
    env: MediaEnv,
    name: str | None = None,
    alt: str | None = None,
) -> Media:
    """Record a stored upload as a media row of ``org_id`` (``name`` overrides its file name)."""
    thumbnail = ingested.thumbnail
    # The wall clock, not the transaction's start: the library is ordered by it, and several
    # media may be created in one transaction (imports).
    now = datetime.now(UTC)
    media = Media(
        created_at=now,
        updated_at=now,
        organization_id=org_id,
        name=clean_display_name(name) if name is not None else ingested.name,
        path=env.url_for(ingested.key),
        type=ingested.kind.value,
        file_size=ingested.size,
        mime_type=ingested.mime,
        width=ingested.width,
        height=ingested.height,
        duration_ms=ingested.duration_ms,
        storage_key=ingested.key,
        thumbnail_key=thumbnail.key if thumbnail is not None else None,
        thumbnail=env.url_for(thumbnail.key) if thumbnail is not None else None,
        thumbnail_timestamp=thumbnail.timestamp_ms if thumbnail is not None else None,
        alt=clean_alt(alt),
    )
    session.add(media)
    await session.flush()
    return media


async def _discard_objects(storage: Storage, ingested: IngestedMedia) -> None:
    # The row was not written: the stored objects would be orphans.
    for key in (ingested.key, ingested.thumbnail.key if ingested.thumbnail else None):
        if key is not None:
            with suppress(Exception):
                await storage.delete(key)


async def _record(
    database: Database,
    org_id: OrgId,
    ingested: IngestedMedia,
    env: MediaEnv,
    fields: Callable[[], tuple[str | None, str | None]],
) -> Media:
    # A unit of work of its own, opened only now that the bytes are stored: the upload held no
    # database connection while it streamed. Committed before returning, so the answer never
    # names a row that failed to commit; on any failure the stored objects are removed.
    try:
        name, alt = fields()
        async with database.session() as session:
            media = await create_media(session, org_id, ingested, env=env, name=name, alt=alt)
    except BaseException:
        await _discard_objects(env.storage, ingested)
        raise
    return media


async def _request_body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect as exc:
        raise MultipartError("the upload was interrupted before it was complete") from exc


def _refuse_declared_oversize(request: Request, env: MediaEnv, kinds: frozenset[MediaKind]) -> None:
    """413 at once when the request announces more bytes than any accepted file may have."""
    try:
        declared = int(request.headers.get("content-length", ""))
    except ValueError:
        return
    limits = env.ingest.limits
    largest = max(limits.for_kind(kind) for kind in kinds)
    # A multipart body is the file plus some framing and a few small fields.
    if declared > largest + MAX_FORM_BYTES:
        only = next(iter(kinds)) if len(kinds) == 1 else None
        raise too_large(largest, only)


def _form_fields(fields: Mapping[str, str]) -> tuple[str | None, str | None]:
    name = fields.get("name")
    if name is not None and not name.strip():
        name = None  # an empty "name" input means "keep the file name"
    return name, fields.get("alt")


async def upload_stream(
    database: Database,
    org_id: OrgId,
    request: Request,
    allowed_kinds: frozenset[MediaKind] = ALL_KINDS,
    *,
    env: MediaEnv | None = None,
    file_field: str = "file",
) -> Media:
    """Store the file of a ``multipart/form-data`` request as a media of ``org_id``.

    The body is parsed while it arrives and the file streamed through sniffing, the size limit
    of its kind and into storage: memory holds one chunk, the disk never more than the limit.
    No database connection is held meanwhile: the row is written at the end in a short unit of
    work of ``database`` of its own, committed on return (authenticate the route with
    :data:`~tidings.media.deps.UploadMember` / ``UploadApiKeyOrg`` so that auth holds none either).
    Optional text fields ``name`` (display name) and ``alt``, before or after the file.
    ``allowed_kinds``: the Public API passes :data:`IMAGES_AND_VIDEOS`. Errors (JSON, naming the
    field): 415 not an accepted type or content contradicting the name, 413 too large, 400 empty,
    not multipart, no ``file`` part, interrupted, or a bad ``name``/``alt``.
    """
    env = env or request_media_env(request)
    _refuse_declared_oversize(request, env, allowed_kinds)
    upload = await open_multipart_file(
        _request_body(request), request.headers.get("content-type"), file_field=file_field
    )
    # Fields sent before the file are checked before reading it; later ones after.
    name, alt = _form_fields(upload.fields)
    if name is not None:
        clean_display_name(name)
    clean_alt(alt)
    ingested = await ingest_stream(
        upload.chunks,
        filename=upload.filename,
        organization_id=org_id,
        storage=env.storage,
        config=env.ingest,
        allowed_kinds=allowed_kinds,
        field=file_field,
    )
    return await _record(database, org_id, ingested, env, lambda: _form_fields(upload.fields))


async def upload_from_url(
    database: Database,
    org_id: OrgId,
    url: str,
    *,
    allowed_kinds: frozenset[MediaKind] = ALL_KINDS,
    name: str | None = None,
    alt: str | None = None,
    env: MediaEnv | None = None,
) -> Media:
    """Download ``url`` into the library of ``org_id``.

    https only and never a private/loopback address, unless ``TIDINGS_ALLOW_PRIVATE_URLS`` (then
    http and private addresses are allowed too); every redirect is re-checked; the size is
    capped while downloading; the content is sniffed and verified like an upload. Errors name
    the field ``url``: 400 refused/unreachable/remote error, 413 too large, 415 unsupported.
    Like :func:`upload_stream`, no database connection is held during the download; the row is
    written in a short unit of work of ``database`` of its own, committed on return.
    """
    env = env or media_env()
    if name is not None:
        name = clean_display_name(name)
    alt = clean_alt(alt)
    ingested = await ingest_url(
        url.strip(),
        organization_id=org_id,
        storage=env.storage,
        config=env.ingest,
        allow_private=env.allow_private_urls,
        allow_http=env.allow_private_urls,
        allowed_kinds=allowed_kinds,
    )
    return await _record(database, org_id, ingested, env, lambda: (name, alt))


# ---- reading -------------------------------------------------------------------------------


async def list_media(
    session: AsyncSession,
    org_id: OrgId,
    *,
    page: int = 1,
    per_page: int = PAGE_SIZE,
    kind: MediaKind | None = None,
) -> MediaPage:
    """The library of ``org_id``, newest first, optionally one ``kind`` only."""
    if page < 1:
        raise BadRequest("page starts at 1", field="page")
    if not 1 <= per_page <= MAX_PAGE_SIZE:
        raise BadRequest(f"per_page must be between 1 and {MAX_PAGE_SIZE}", field="per_page")
    conditions: list[ColumnElement[bool]] = [owned_by(Media, org_id)]
    if kind is not None:
        conditions.append(Media.type == kind.value)
    total = (
        await session.execute(select(func.count()).select_from(Media).where(*conditions))
    ).scalar_one()
    rows = await session.execute(
        select(Media)
        .where(*conditions)
        .order_by(Media.created_at.desc(), Media.id.desc())
        .offset((page - 1) * per_page)
        .limit(per_page)
    )
    return MediaPage(list(rows.scalars()), total, page, per_page)


def _usable_id(media_id: str | None) -> TypeGuard[str]:
    """Whether ``media_id`` may name a media: longer ids or a NUL (which PostgreSQL text cannot
    hold) never do, so they are not looked up."""
    return media_id is not None and 0 < len(media_id) <= _MAX_ID_LENGTH and "\x00" not in media_id


async def get_media(
    session: AsyncSession, org_id: OrgId, media_id: str, *, for_update: bool = False
) -> Media:
    """The live media ``media_id`` of ``org_id``; 404 otherwise."""
    if not _usable_id(media_id):
        raise NotFound("media not found", field="id")
    return await get_owned(session, Media, media_id, org_id, what="media", for_update=for_update)


async def media_by_ids(
    session: AsyncSession, org_id: OrgId, ids: Iterable[str]
) -> dict[str, Media]:
    """The media of ``org_id`` among ``ids``, by id, deleted ones included: a queued post may
    still refer to a file deleted from the library (kept until the post is done with it)."""
    wanted = {i for i in ids if _usable_id(i)}
    if not wanted:
        return {}
    rows = await session.execute(
        select(Media)
        .where(owned_by(Media, org_id), Media.id.in_(wanted))
        .execution_options(include_deleted=True)
    )
    return {media.id: media for media in rows.scalars()}


# ---- editing -------------------------------------------------------------------------------


def _touch(media: Media) -> datetime:
    # Set here rather than by the column's server-side onupdate, which would leave the attribute
    # expired (and unreadable without IO) after the flush.
    media.updated_at = now = datetime.now(UTC)
    return now


async def rename_media(session: AsyncSession, org_id: OrgId, media_id: str, name: str) -> Media:
    """Give the media a new display name (the stored file and its URL do not change)."""
    media = await get_media(session, org_id, media_id, for_update=True)
    media.name = clean_display_name(name)
    _touch(media)
    await session.flush()
    return media


async def set_alt_text(
    session: AsyncSession, org_id: OrgId, media_id: str, alt: str | None
) -> Media:
    """Set (or, with None/blank, clear) the alt text posts use by default for this media."""
    media = await get_media(session, org_id, media_id, for_update=True)
    media.alt = clean_alt(alt)
    _touch(media)
    await session.flush()
    return media


async def set_thumbnail_time(
    session: AsyncSession,
    org_id: OrgId,
    media_id: str,
    timestamp_ms: int,
    *,
    env: MediaEnv | None = None,
) -> Media:
    """Take a video's thumbnail from the frame at ``timestamp_ms`` (clamped to the video).

    The new thumbnail gets a new key (objects are cached as immutable); the row records the
    time of the frame actually used, and the previous thumbnail object is deleted by a job
    deferred in this transaction, i.e. only once the row pointing at the new one is committed.
    """
    env = env or media_env()
    if timestamp_ms < 0:
        raise BadRequest("the thumbnail time cannot be negative", field="thumbnail_timestamp")
    media = await get_media(session, org_id, media_id, for_update=True)
    if media.type != MediaKind.VIDEO.value:
        raise BadRequest(
            f"only videos have a thumbnail time (this media is a {media.type})",
            field="thumbnail_timestamp",
        )
    if media.storage_key is None:
        raise Conflict("the file of this media is no longer stored", field="id")
    try:
        stored = await rethumbnail_video(
            env.storage, media.storage_key, timestamp_ms=timestamp_ms, config=env.ingest
        )
    except ObjectNotFoundError as exc:
        raise Conflict("the file of this media is missing from storage", field="id") from exc
    except (StorageError, OSError) as exc:
        raise StorageUnavailable("the media storage is unavailable, try again later") from exc
    previous = media.thumbnail_key
    try:
        media.thumbnail_key = stored.key
        media.thumbnail = env.url_for(stored.key)
        media.thumbnail_timestamp = stored.timestamp_ms
        _touch(media)
        await session.flush()
        if previous is not None and previous != stored.key:
            await defer_in_session(session, TASK_DELETE_UNUSED, keys=[previous])
    except BaseException:
        with suppress(Exception):
            await env.storage.delete(stored.key)
        raise
    return media


# ---- deleting ------------------------------------------------------------------------------


def referencing_posts_condition(
    org_id: _Value, media_id: _Value, media_path: _Value
) -> ColumnElement[bool]:
    """Posts of the organization, live, in a :data:`KEEPING_STATES` state, whose ``image``
    list refers to the media by id or by path (JSONB containment). The arguments are values or
    columns (for a correlated subquery over many media)."""

    def ref(key: str, value: _Value) -> Any:
        if isinstance(value, str):
            return [{key: value}]
        return func.jsonb_build_array(func.jsonb_build_object(literal_column(f"'{key}'"), value))

    return (
        (Post.organization_id == org_id)
        & Post.state.in_(KEEPING_STATES)
        & Post.deleted_at.is_(None)
        & or_(
            Post.image.contains(ref("id", media_id)), Post.image.contains(ref("path", media_path))
        )
    )


async def count_posts_using(session: AsyncSession, media: Media) -> int:
    """How many live QUEUE/DRAFT posts of the media's organization refer to it."""
    condition = referencing_posts_condition(media.organization_id, media.id, media.path)
    stmt = select(func.count()).select_from(Post).where(condition)
    return int((await session.execute(stmt.execution_options(include_deleted=True))).scalar_one())


async def delete_media(session: AsyncSession, org_id: OrgId, media_id: str) -> int:
    """Soft-delete a media; returns how many scheduled/draft posts still use it.

    When none does, a job deferred in this transaction deletes its stored objects once the
    deletion is committed. Otherwise the objects stay (and stay served) until the periodic job
    finds no such post any more.
    """
    media = await get_media(session, org_id, media_id, for_update=True)
    media.deleted_at = _touch(media)
    await session.flush()
    users = await count_posts_using(session, media)
    if users == 0:
        await defer_in_session(
            session, TASK_PURGE, queueing_lock=f"{TASK_PURGE}:{media.id}", media_id=media.id
        )
    return users


# ---- media of posts ------------------------------------------------------------------------


def _refs(image_json: Any) -> list[Mapping[str, Any]]:
    if isinstance(image_json, str):
        try:
            image_json = json.loads(image_json)
        except ValueError:
            return []
    if isinstance(image_json, Mapping):
        image_json = [image_json]
    if not isinstance(image_json, list):
        return []
    return [ref for ref in image_json if isinstance(ref, Mapping)]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


async def collect_bytes(chunks: AsyncIterable[bytes], size: int | None = None) -> bytes:
    """The chunks as one ``bytes``, held once: they are written into a buffer reserved at
    ``size`` (a wrong hint only costs a resize) and the buffer's own bytes object is returned,
    so memory peaks at the whole plus a chunk -- never at two copies, as joining a list of
    chunks would."""
    buffer = io.BytesIO()
    if size:
        # Reserve everything in one allocation (BytesIO sizes its buffer exactly on a large
        # first write) so that it does not grow by copying as the chunks arrive.
        buffer.seek(size - 1)
        buffer.write(b"\0")
        buffer.seek(0)
    written = 0
    async for chunk in chunks:
        buffer.write(chunk)
        written += len(chunk)
    buffer.truncate(written)
    # getvalue() hands out the buffer's bytes object itself (no copy) when nothing else
    # references the buffer.
    return buffer.getvalue()


async def read_whole(storage: Storage, key: str, size: int | None = None) -> bytes:
    """A stored object as one ``bytes`` held once (see :func:`collect_bytes`); ``size``: its
    recorded size."""
    return await collect_bytes(storage.open_stream(key), size)


def _reader(storage: Storage, key: str, size: int | None = None) -> Callable[[], Awaitable[bytes]]:
    async def read() -> bytes:
        return await read_whole(storage, key, size)

    return read


def _streamer(storage: Storage, key: str) -> Callable[[], AsyncIterator[bytes]]:
    def stream() -> AsyncIterator[bytes]:
        return storage.open_stream(key)

    return stream


def _item_from_row(ref: Mapping[str, Any], media: Media, env: MediaEnv) -> MediaItem:
    url = env.url_for(media.storage_key) if media.storage_key else _text(ref.get("path"))
    thumbnail = env.url_for(media.thumbnail_key) if media.thumbnail_key else media.thumbnail
    mime = media.mime_type or "application/octet-stream"
    return MediaItem(
        url=url or media.path,
        type="video" if media.type == MediaKind.VIDEO.value else "image",
        mime_type=mime,
        alt=_text(ref.get("alt")) or media.alt,
        width=media.width,
        height=media.height,
        size=media.file_size or None,
        thumbnail_url=thumbnail or _text(ref.get("thumbnail")),
        read=(
            _reader(env.storage, media.storage_key, media.file_size or None)
            if media.storage_key
            else None
        ),
        read_thumbnail=_reader(env.storage, media.thumbnail_key) if media.thumbnail_key else None,
        stream=_streamer(env.storage, media.storage_key) if media.storage_key else None,
    )


def _item_from_ref(ref: Mapping[str, Any], path: str) -> MediaItem:
    guessed, _ = mimetypes.guess_type(urlsplit(path).path)
    mime = (guessed or "image/jpeg").lower()  # no extension: most likely a photo
    return MediaItem(
        url=path,
        type="video" if mime.startswith("video/") else "image",
        mime_type=mime,
        alt=_text(ref.get("alt")),
        thumbnail_url=_text(ref.get("thumbnail")),
    )


async def media_items_for(
    session: AsyncSession,
    org_id: OrgId,
    image_json: Any,
    *,
    env: MediaEnv | None = None,
) -> list[MediaItem]:
    """The :class:`MediaItem` list of a post's ``image`` JSON, for the publishing engine.

    A reference to a media of ``org_id`` (by ``id``, else by ``path``) -- deleted from the
    library or not -- reads its bytes straight from storage (``read``/``read_thumbnail``, and
    ``stream`` for uploads in chunks) and carries its current public URL, MIME type,
    dimensions and size; the post's own ``alt`` wins over the library's. Any other reference
    (a URL from elsewhere, another organization's id, bytes already purged) has ``read=None``:
    the provider downloads ``url``. Entries without a usable path are skipped.
    """
    [items] = await media_items_for_posts(session, [(org_id, image_json)], env=env)
    return items


async def media_items_for_posts(
    session: AsyncSession,
    posts: Sequence[tuple[OrgId, Any]],
    *,
    env: MediaEnv | None = None,
) -> list[list[MediaItem]]:
    """:func:`media_items_for` of many posts (``(organization, image JSON)`` pairs, possibly of
    several organizations) in one statement; one list per post, in order. Each post's
    references are matched only against its own organization's media."""
    env = env or media_env()
    parsed = [(org_id, _refs(image_json)) for org_id, image_json in posts]
    wanted: dict[str, tuple[set[str], set[str]]] = {}
    for org_id, refs in parsed:
        ids, paths = wanted.setdefault(org_id, (set(), set()))
        ids.update(ref_id for ref in refs if _usable_id(ref_id := _text(ref.get("id"))))
        paths.update(p for ref in refs if (p := _text(ref.get("path"))) and "\x00" not in p)
    conditions = [
        owned_by(Media, OrgId(org_id))
        & or_(Media.id.in_(sorted(ids)), Media.path.in_(sorted(paths)))
        for org_id, (ids, paths) in wanted.items()
        if ids or paths
    ]
    rows: list[Media] = []
    if conditions:
        stmt = select(Media).where(or_(*conditions))
        rows = list((await session.execute(stmt.execution_options(include_deleted=True))).scalars())
    by_id = {(row.organization_id, row.id): row for row in rows}
    by_path = {(row.organization_id, row.path): row for row in rows}
    out: list[list[MediaItem]] = []
    for org_id, refs in parsed:
        items: list[MediaItem] = []
        for ref in refs:
            ref_id, path = _text(ref.get("id")), _text(ref.get("path"))
            row = (by_id.get((org_id, ref_id)) if ref_id else None) or (
                by_path.get((org_id, path)) if path else None
            )
            if row is not None:
                items.append(_item_from_row(ref, row, env))
            elif path is not None:
                items.append(_item_from_ref(ref, path))
        out.append(items)
    return out
