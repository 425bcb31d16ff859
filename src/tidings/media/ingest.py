"""The upload pipeline: stream → sniff + size limit → spool file → verify → thumbnail → storage.

Bytes are written to a spool file on local disk (in the data dir, so that local storage can
hard-link it into place) while the first chunk is sniffed and the size limit of the sniffed kind
is enforced; nothing past the limit is written and only one chunk is in memory. The complete file
is then verified and thumbnailed from disk (videos need random access for that) and only then
put into storage, so storage never holds an unverified file. Every exit path removes the spool.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import time
import unicodedata
from collections.abc import AsyncIterable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Final

from tidings.media.errors import MediaError, StorageUnavailable, UnsupportedMediaError
from tidings.media.limits import MediaLimits, SizeBudget, too_large
from tidings.media.sniff import (
    DEFAULT_MAX_IMAGE_PIXELS,
    HEAD_BYTES,
    MediaKind,
    MediaType,
    media_type_for_extension,
    sniff_head,
    verify_media,
)
from tidings.media.storage import (
    CHUNK_SIZE,
    Storage,
    StorageError,
    fsync_and_close,
    new_media_key,
    thumbnail_key_for,
    validate_key,
    write_and_hash,
)
from tidings.media.thumbnails import (
    DEFAULT_THUMBNAIL_BOX,
    DEFAULT_THUMBNAIL_FORMAT,
    MediaDetails,
    ThumbnailFormat,
    describe_media,
    describe_video,
)

logger = logging.getLogger("tidings.media")

ALL_KINDS: Final = frozenset(MediaKind)
MAX_NAME_LENGTH: Final = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """How uploads are processed; built once from the settings."""

    spool_dir: Path
    limits: MediaLimits = field(default_factory=MediaLimits)
    thumbnail_box: int = DEFAULT_THUMBNAIL_BOX
    thumbnail_format: ThumbnailFormat = DEFAULT_THUMBNAIL_FORMAT
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS


@dataclass(frozen=True, slots=True)
class StoredThumbnail:
    """A thumbnail written to storage."""

    key: str
    mime: str
    width: int
    height: int
    # Videos: the time of the frame actually used (after clamping), in milliseconds.
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class IngestedMedia:
    """Everything a media row needs about a stored upload."""

    name: str
    media_type: MediaType
    key: str
    size: int
    sha256: str
    width: int | None
    height: int | None
    duration_ms: int | None
    frames: int | None
    thumbnail: StoredThumbnail | None

    @property
    def kind(self) -> MediaKind:
        """``image``, ``video`` or ``pdf``: the row's ``type``."""
        return self.media_type.kind

    @property
    def mime(self) -> str:
        """The sniffed MIME type."""
        return self.media_type.mime


def clean_name(filename: str | None, extension: str) -> str:
    """A display name from a client-given file name: last path component, no control
    characters, at most 255 characters; ``upload.<ext>`` when nothing is left."""
    name = PureWindowsPath(PurePosixPath(filename or "").name).name
    name = unicodedata.normalize("NFC", _CONTROL.sub("", name)).strip()
    if len(name) > MAX_NAME_LENGTH:
        stem, dot, suffix = name.rpartition(".")
        name = (
            f"{stem[: MAX_NAME_LENGTH - len(suffix) - 1]}.{suffix}"
            if dot and len(suffix) <= 16
            else name[:MAX_NAME_LENGTH]
        )
    return name or f"upload.{extension}"


def _discard(path: Path) -> None:
    # Synchronous on purpose: cleanup must also run while the task is being cancelled.
    path.unlink(missing_ok=True)


def _accept(media_type: MediaType, allowed_kinds: frozenset[MediaKind]) -> MediaType:
    if media_type.kind not in allowed_kinds:
        allowed = ", ".join(sorted(kind.value for kind in allowed_kinds))
        raise UnsupportedMediaError(
            f"{media_type.label}s are not accepted here (accepted: {allowed})"
        )
    return media_type


async def _spool(
    chunks: AsyncIterable[bytes],
    spool_path: Path,
    *,
    filename: str | None,
    limits: MediaLimits,
    allowed_kinds: frozenset[MediaKind],
    declared_size: int | None,
) -> tuple[MediaType, int, str]:
    """Write ``chunks`` to ``spool_path``; returns (sniffed type, size, hex SHA-256)."""
    budget = SizeBudget(limits.largest)
    if declared_size is not None and declared_size > limits.largest:
        raise too_large(limits.largest, None)
    media_type: MediaType | None = None
    digest = hashlib.sha256()

    def sniffed(data: bytes) -> MediaType:
        found = _accept(sniff_head(data, filename=filename), allowed_kinds)
        limit = limits.for_kind(found.kind)
        budget.narrow(limit, found.kind)
        if declared_size is not None and declared_size > limit:
            raise too_large(limit, found.kind)  # the sender told us; no need to read it all
        return found

    f = await asyncio.to_thread(spool_path.open, "xb")
    # Small network chunks are gathered into ~1 MB writes: one thread hop per megabyte.
    pending = bytearray()
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            budget.take(len(chunk))  # refuses before anything past the limit is kept
            pending += chunk
            if media_type is None:
                if len(pending) < HEAD_BYTES:
                    continue
                media_type = sniffed(bytes(pending[:HEAD_BYTES]))
            if len(pending) >= CHUNK_SIZE:
                await asyncio.to_thread(write_and_hash, f, digest, pending)
                pending = bytearray()
        if media_type is None:  # the whole file was shorter than the sniffing head
            media_type = sniffed(bytes(pending))
        if pending:
            await asyncio.to_thread(write_and_hash, f, digest, pending)
        await asyncio.to_thread(fsync_and_close, f)
    except BaseException:
        f.close()
        _discard(spool_path)
        raise
    return media_type, budget.used, digest.hexdigest()


async def ingest_stream(
    chunks: AsyncIterable[bytes],
    *,
    filename: str | None,
    organization_id: str,
    storage: Storage,
    config: IngestConfig,
    allowed_kinds: frozenset[MediaKind] = ALL_KINDS,
    thumbnail_timestamp_ms: int | None = None,
    display_name: str | None = None,
    declared_size: int | None = None,
    field: str = "file",
) -> IngestedMedia:
    """Store an uploaded stream as a media file of ``organization_id`` and make its thumbnail.

    ``filename`` is the client's claim about the file (its extension is checked against the
    content); ``display_name`` overrides the name recorded (default: the cleaned ``filename``).
    ``declared_size`` (a Content-Length) lets an oversize file be refused before reading it, but
    the bytes are counted regardless. Raises a :class:`MediaError` (4xx) naming ``field``:
    415 unsupported/mismatched/damaged, 413 over the kind's limit, 400 empty; and
    :class:`StorageUnavailable` (503) when the spool disk or the storage fails.
    """
    validate_key(f"{organization_id}/x")  # a bad id is a caller bug: fail before reading
    await asyncio.to_thread(config.spool_dir.mkdir, parents=True, exist_ok=True)
    spool_path = config.spool_dir / f"upload-{secrets.token_hex(12)}.part"
    try:
        media_type, size, sha256 = await _spool(
            chunks,
            spool_path,
            filename=filename,
            limits=config.limits,
            allowed_kinds=allowed_kinds,
            declared_size=declared_size,
        )
        await verify_media(spool_path, media_type, max_image_pixels=config.max_image_pixels)
        details = await describe_media(
            spool_path,
            media_type,
            timestamp_ms=thumbnail_timestamp_ms,
            box=config.thumbnail_box,
            format=config.thumbnail_format,
            max_image_pixels=config.max_image_pixels,
        )
        key = new_media_key(organization_id, media_type.extension)
        await storage.put_file(key, spool_path, content_type=media_type.mime, sha256=sha256)
        try:
            thumbnail = await _store_thumbnail(storage, key, details)
        except BaseException:
            with suppress(Exception):  # keep the original error
                await storage.delete(key)
            raise
    except MediaError as exc:
        exc.field = field
        raise
    except (StorageError, OSError) as exc:
        # The spool's disk or the storage failed, not the upload: 503, and the operator is told.
        logger.error("storing an upload failed: %s", exc, exc_info=exc)
        raise StorageUnavailable("the media storage is unavailable, try again later") from exc
    finally:
        _discard(spool_path)
    name = display_name if display_name is not None else filename
    return IngestedMedia(
        name=clean_name(name, media_type.extension),
        media_type=media_type,
        key=key,
        size=size,
        sha256=sha256,
        width=details.width,
        height=details.height,
        duration_ms=details.duration_ms,
        frames=details.frames,
        thumbnail=thumbnail,
    )


async def _store_thumbnail(
    storage: Storage, media_key: str, details: MediaDetails
) -> StoredThumbnail | None:
    if details.thumbnail is None:
        return None
    thumb = details.thumbnail
    key = thumbnail_key_for(media_key, thumb.extension)
    await storage.put_bytes(key, thumb.data, content_type=thumb.mime)
    return StoredThumbnail(
        key, thumb.mime, thumb.width, thumb.height, details.thumbnail_timestamp_ms
    )


async def rethumbnail_video(
    storage: Storage,
    media_key: str,
    *,
    timestamp_ms: int | None,
    config: IngestConfig,
) -> StoredThumbnail:
    """Store a new thumbnail of the stored video ``media_key`` at ``timestamp_ms`` (clamped).

    The thumbnail gets a fresh key; the caller records it and then deletes the previous one.
    """
    extension = validate_key(media_key).rsplit(".", 1)[-1]
    try:
        media_type = media_type_for_extension(extension)
    except KeyError:
        media_type = None
    if media_type is None or media_type.kind is not MediaKind.VIDEO:
        raise UnsupportedMediaError(
            "only videos have a thumbnail time", field="thumbnail_timestamp"
        )
    async with storage.local_copy(media_key, config.spool_dir) as path:
        details = await describe_video(
            path,
            media_type,
            timestamp_ms=timestamp_ms,
            box=config.thumbnail_box,
            format=config.thumbnail_format,
            max_pixels=config.max_image_pixels,
        )
    stored = await _store_thumbnail(storage, media_key, details)
    assert stored is not None  # describe_video always makes one or raises
    return stored


def _purge(directory: Path, older_than: float) -> int:
    if not directory.is_dir():
        return 0
    cutoff = time.time() - older_than
    removed = 0
    for path in directory.iterdir():
        with suppress(OSError):  # raced with its owner finishing, or already gone
            if path.is_file() and not path.is_symlink() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed


async def purge_stale_spool(spool_dir: Path, *, older_than: float = 6 * 3600) -> int:
    """Remove spool files left by a crash (older than ``older_than`` seconds); returns how many.

    Uploads in progress keep writing to their spool file, so its mtime stays recent; a spool file
    untouched for hours belongs to a process that died. Meant for startup or a periodic job.
    """
    return await asyncio.to_thread(_purge, spool_dir, older_than)
