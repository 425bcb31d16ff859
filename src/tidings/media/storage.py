"""Where media bytes live: one async interface, a local-disk and an S3-compatible backend.

Keys are relative, ``/``-separated and made of plain segments
(``<org id>/<yyyy>/<mm>/<random>.<ext>``, see :func:`new_media_key`); :func:`validate_key` refuses
anything else, so a key can never name a file outside the storage root. Keys are random and never
rewritten: a new thumbnail gets a new key, which lets every object be served with an immutable
cache header.

Both backends serve objects through the app at ``<TIDINGS_PUBLIC_URL>/uploads/<key>`` by default;
S3 can instead hand out URLs under its own public base (a CDN or a public bucket).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
import stat
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final
from urllib.parse import quote

import boto3
import botocore.config
import botocore.exceptions

from tidings.media.sniff import SUPPORTED_TYPES

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

CHUNK_SIZE: Final = 1024 * 1024
MAX_KEY_LENGTH: Final = 512
# Path prefix (under the public URL) where the app serves stored objects.
PUBLIC_PATH_PREFIX: Final = "uploads"
# Objects are immutable (random keys, never overwritten by the app), so caches may keep them.
IMMUTABLE_CACHE_CONTROL: Final = "public, max-age=31536000, immutable"

_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_MIME_BY_EXTENSION: Final[dict[str, str]] = {t.extension: t.mime for t in SUPPORTED_TYPES}


class StorageError(Exception):
    """A storage operation failed."""


class InvalidKeyError(StorageError, ValueError):
    """The key is not a safe relative object name (traversal, absolute, odd characters)."""


class ObjectNotFoundError(StorageError, LookupError):
    """No object is stored under the key."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    """The result of a write: the key, its size in bytes and the hex SHA-256 of its bytes."""

    key: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What :meth:`Storage.stat` knows about an object."""

    key: str
    size: int
    content_type: str
    # For HTTP caching: when the object was written, and a validator that changes if it does.
    modified: datetime | None = None
    etag: str | None = None


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe object name, else raise :class:`InvalidKeyError`.

    Safe: relative, ``/``-separated, every segment starting with a letter or digit and made of
    ``[A-Za-z0-9._-]`` (so no ``..``, no hidden names, no NUL, no backslash, no empty segment).
    """
    if not isinstance(key, str) or not key:
        raise InvalidKeyError("empty key")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError("key too long")
    if "\x00" in key:
        raise InvalidKeyError("key contains a NUL byte")
    if "\\" in key:
        raise InvalidKeyError("key contains a backslash")
    if key.startswith("/"):
        raise InvalidKeyError("key is absolute")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKeyError(f"key has an empty, '.' or '..' segment: {key!r}")
        if not _SEGMENT.fullmatch(segment):
            raise InvalidKeyError(f"key segment {segment!r} has characters that are not allowed")
    return key


def new_media_key(organization_id: str, extension: str, *, now: datetime | None = None) -> str:
    """A fresh random key ``<org id>/<yyyy>/<mm>/<32 hex>.<extension>`` (validated)."""
    now = now or datetime.now(UTC)
    return validate_key(
        f"{organization_id}/{now:%Y}/{now:%m}/{secrets.token_hex(16)}.{extension.lower()}"
    )


def thumbnail_key_for(media_key: str, extension: str) -> str:
    """A fresh key for a thumbnail of ``media_key``, next to it (new each time: caches are
    immutable)."""
    directory, _, name = validate_key(media_key).rpartition("/")
    stem = name.split(".", 1)[0]
    thumb = f"{stem}.thumb-{secrets.token_hex(4)}.{extension.lower()}"
    return validate_key(f"{directory}/{thumb}" if directory else thumb)


def content_type_for_key(key: str) -> str:
    """The MIME type implied by the key's extension (keys get the sniffed canonical extension)."""
    extension = key.rsplit(".", 1)[-1].lower() if "." in key else ""
    return _MIME_BY_EXTENSION.get(extension, "application/octet-stream")


def app_public_url(key: str, public_base_url: str) -> str:
    """``<public base>/uploads/<key>``: where the app's media route serves ``key``."""
    return f"{public_base_url.rstrip('/')}/{PUBLIC_PATH_PREFIX}/{quote(validate_key(key))}"


async def _file_chunks(path: Path, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
    f = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(f.read, chunk_size):
            yield chunk
    finally:
        f.close()


class Storage(ABC):
    """An object store for media. Every method validates its key first."""

    @abstractmethod
    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], *, content_type: str | None = None
    ) -> StoredObject:
        """Store the bytes of ``chunks`` under ``key`` (replacing any object there).

        Memory stays bounded by one chunk (local) or one multipart part (S3). The object appears
        only once complete; if ``chunks`` raises or the task is cancelled, nothing is left behind.
        """

    async def put_bytes(
        self, key: str, data: bytes, *, content_type: str | None = None
    ) -> StoredObject:
        """Store a small object held in memory (thumbnails)."""

        async def one() -> AsyncIterator[bytes]:
            yield data

        return await self.put_stream(key, one(), content_type=content_type)

    async def put_file(
        self,
        key: str,
        path: Path,
        *,
        content_type: str | None = None,
        sha256: str | None = None,
    ) -> StoredObject:
        """Store the file at ``path`` under ``key``; ``path`` is left in place for the caller.

        ``sha256``, when the caller already hashed the file while writing it, may spare a backend
        from reading it again.
        """
        return await self.put_stream(key, _file_chunks(path), content_type=content_type)

    @abstractmethod
    def open_stream(
        self, key: str, *, start: int = 0, end: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        """Yield the bytes ``[start, end)`` of the object (``end`` None: to the end).

        Raises :class:`ObjectNotFoundError` (on first iteration) when there is no such object.
        """

    @abstractmethod
    async def stat(self, key: str) -> ObjectInfo:
        """Size and content type of the object, or :class:`ObjectNotFoundError`."""

    async def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        try:
            await self.stat(key)
        except ObjectNotFoundError:
            return False
        return True

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""

    @abstractmethod
    def public_url(self, key: str, public_base_url: str) -> str:
        """The URL platforms fetch the object from, given the app's ``TIDINGS_PUBLIC_URL``."""

    async def read_bytes(self, key: str) -> bytes:
        """The whole object in memory: for small objects only (thumbnails, tests)."""
        return b"".join([chunk async for chunk in self.open_stream(key)])

    @asynccontextmanager
    async def local_copy(self, key: str, spool_dir: Path) -> AsyncIterator[Path]:
        """A path to the object's bytes on local disk for the duration of the block (a temporary
        copy in ``spool_dir`` unless the backend is local disk)."""
        await asyncio.to_thread(spool_dir.mkdir, parents=True, exist_ok=True)
        target = spool_dir / f"copy-{secrets.token_hex(8)}.{key.rsplit('.', 1)[-1]}"
        try:
            f = await asyncio.to_thread(target.open, "xb")
            try:
                async for chunk in self.open_stream(key):
                    await asyncio.to_thread(f.write, chunk)
            finally:
                f.close()
            yield target
        finally:
            target.unlink(missing_ok=True)


def write_and_hash(f: IO[bytes], digest: Any, chunk: bytes | bytearray) -> None:
    """Write ``chunk`` and feed it to ``digest`` (one thread hop for both)."""
    f.write(chunk)
    digest.update(chunk)


def fsync_and_close(f: IO[bytes]) -> None:
    """Flush, fsync and close: the bytes are on disk before the file is renamed into place."""
    try:
        f.flush()
        os.fsync(f.fileno())
    finally:
        f.close()


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not supported everywhere, and only best effort.
    with suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


class LocalStorage(Storage):
    """Objects as files under ``root`` (by default ``<data dir>/media``).

    Writes go to a hidden temporary file in the target directory, are fsynced, then renamed into
    place, so a reader never sees a partial file. Temporary names start with a dot, which no
    valid key segment does, so they never collide with objects.
    """

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()

    def path_for(self, key: str) -> Path:
        """The file of ``key``; raises :class:`InvalidKeyError` if it would leave the root
        (also through a symlink planted inside it)."""
        path = (self.root / validate_key(key)).resolve()
        if path == self.root or not path.is_relative_to(self.root):
            raise InvalidKeyError(f"key {key!r} resolves outside the storage root")
        return path

    def _temp_for(self, path: Path) -> Path:
        return path.parent / f".{path.name}.{secrets.token_hex(8)}.part"

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], *, content_type: str | None = None
    ) -> StoredObject:
        path = self.path_for(key)
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        path = self.path_for(key)  # re-check now that the directories exist
        temp = self._temp_for(path)
        f = await asyncio.to_thread(temp.open, "xb")
        try:
            digest = hashlib.sha256()
            size = 0
            async for chunk in chunks:
                if chunk:
                    await asyncio.to_thread(write_and_hash, f, digest, chunk)
                    size += len(chunk)
            await asyncio.to_thread(fsync_and_close, f)
            await asyncio.to_thread(os.replace, temp, path)
        except BaseException:
            f.close()
            temp.unlink(missing_ok=True)
            raise
        await asyncio.to_thread(_fsync_dir, path.parent)
        return StoredObject(key=key, size=size, sha256=digest.hexdigest())

    async def put_file(
        self,
        key: str,
        path: Path,
        *,
        content_type: str | None = None,
        sha256: str | None = None,
    ) -> StoredObject:
        target = self.path_for(key)
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        target = self.path_for(key)
        temp = self._temp_for(target)
        try:
            # Same filesystem (the spool lives in the data dir): a hard link moves no bytes.
            await asyncio.to_thread(os.link, path, temp)
        except OSError:
            return await super().put_file(key, path, content_type=content_type)
        try:
            size = (await asyncio.to_thread(temp.stat)).st_size
            digest: str = (
                sha256 if sha256 is not None else await asyncio.to_thread(_hash_file, temp)
            )
            await asyncio.to_thread(os.replace, temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        await asyncio.to_thread(_fsync_dir, target.parent)
        return StoredObject(key=key, size=size, sha256=digest)

    async def open_stream(
        self, key: str, *, start: int = 0, end: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        path = self.path_for(key)
        try:
            f = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFoundError(key) from exc
        try:
            if start:
                await asyncio.to_thread(f.seek, start)
            remaining = None if end is None else max(0, end - start)
            while remaining is None or remaining > 0:
                size = chunk_size if remaining is None else min(chunk_size, remaining)
                chunk = await asyncio.to_thread(f.read, size)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            f.close()

    async def stat(self, key: str) -> ObjectInfo:
        path = self.path_for(key)
        try:
            info = await asyncio.to_thread(path.stat)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ObjectNotFoundError(key) from exc
        if not stat.S_ISREG(info.st_mode):
            raise ObjectNotFoundError(key)
        return ObjectInfo(
            key=key,
            size=info.st_size,
            content_type=content_type_for_key(key),
            modified=datetime.fromtimestamp(info.st_mtime, UTC),
            etag=f'"{info.st_size:x}-{info.st_mtime_ns:x}"',
        )

    async def delete(self, key: str) -> None:
        path = self.path_for(key)
        with suppress(FileNotFoundError, NotADirectoryError):
            await asyncio.to_thread(path.unlink)

    def public_url(self, key: str, public_base_url: str) -> str:
        return app_public_url(key, public_base_url)

    async def purge_partial_writes(self, *, older_than: float = 6 * 3600) -> int:
        """Remove temporary files of writes interrupted by a crash (older than ``older_than``
        seconds); returns how many. Meant for startup or a periodic job."""

        def purge() -> int:
            cutoff = time.time() - older_than
            removed = 0
            for path in self.root.rglob(".*.part"):
                with suppress(OSError):
                    if path.is_file() and path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
            return removed

        return await asyncio.to_thread(purge)

    @asynccontextmanager
    async def local_copy(self, key: str, spool_dir: Path) -> AsyncIterator[Path]:
        await self.stat(key)
        yield self.path_for(key)


# What boto3 raises when S3 refuses a request or cannot be reached.
_BOTO_ERRORS: Final = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


class S3Storage(Storage):
    """Objects in an S3-compatible bucket (AWS, MinIO, R2, ...), through boto3.

    boto3 is blocking, so every call runs in a worker thread (a boto3 client is thread-safe).
    Streams larger than one part go up as a multipart upload, holding at most one part in memory;
    a failed or cancelled upload is aborted so no orphan parts are billed.
    """

    MIN_PART_SIZE: Final = 5 * 1024 * 1024  # S3's minimum for every part but the last

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        public_base_url: str | None = None,
        part_size: int = 8 * 1024 * 1024,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        if part_size < self.MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {self.MIN_PART_SIZE} bytes")
        self.bucket = bucket
        self.part_size = part_size
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        config = botocore.config.Config(
            signature_version="s3v4",
            # Custom endpoints (MinIO, moto, most self-hosted stores) only do path-style.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": 3, "mode": "standard"},
            # Newer boto3 adds CRC trailers by default, which several S3-compatible servers reject.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        )

    @staticmethod
    def _is_missing(exc: botocore.exceptions.ClientError) -> bool:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return code in {"404", "NoSuchKey", "NotFound"}

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], *, content_type: str | None = None
    ) -> StoredObject:
        validate_key(key)
        content_type = content_type or content_type_for_key(key)
        digest = hashlib.sha256()
        size = 0
        buffer = bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                buffer += chunk
                if len(buffer) >= self.part_size:
                    if upload_id is None:
                        upload_id = await self._start_multipart(key, content_type)
                    parts.append(await self._upload_part(key, upload_id, len(parts) + 1, buffer))
                    buffer = bytearray()  # a fresh buffer: the old one is referenced until sent
            if upload_id is None:
                await asyncio.to_thread(
                    self._client.put_object,
                    Bucket=self.bucket,
                    Key=key,
                    Body=bytes(buffer),
                    ContentType=content_type,
                    CacheControl=IMMUTABLE_CACHE_CONTROL,
                )
            else:
                if buffer:
                    parts.append(await self._upload_part(key, upload_id, len(parts) + 1, buffer))
                await asyncio.to_thread(
                    self._client.complete_multipart_upload,
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                )
        except BaseException as exc:
            if upload_id is not None:
                with suppress(Exception):
                    await asyncio.shield(
                        asyncio.to_thread(
                            self._client.abort_multipart_upload,
                            Bucket=self.bucket,
                            Key=key,
                            UploadId=upload_id,
                        )
                    )
            if isinstance(exc, _BOTO_ERRORS):
                raise StorageError(f"cannot write {key!r} to the bucket: {exc}") from exc
            raise
        return StoredObject(key=key, size=size, sha256=digest.hexdigest())

    async def _start_multipart(self, key: str, content_type: str) -> str:
        response = await asyncio.to_thread(
            self._client.create_multipart_upload,
            Bucket=self.bucket,
            Key=key,
            ContentType=content_type,
            CacheControl=IMMUTABLE_CACHE_CONTROL,
        )
        return response["UploadId"]

    async def _upload_part(
        self, key: str, upload_id: str, number: int, data: bytearray
    ) -> dict[str, Any]:
        response = await asyncio.to_thread(
            self._client.upload_part,
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=bytes(data),
        )
        return {"ETag": response["ETag"], "PartNumber": number}

    async def open_stream(
        self, key: str, *, start: int = 0, end: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        validate_key(key)
        if end is not None and end <= start:
            return
        extra: dict[str, Any] = {}
        if start or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            response = await asyncio.to_thread(
                self._client.get_object, Bucket=self.bucket, Key=key, **extra
            )
        except botocore.exceptions.ClientError as exc:
            if self._is_missing(exc):
                raise ObjectNotFoundError(key) from exc
            raise StorageError(f"cannot read {key!r}: {exc}") from exc
        body = response["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, chunk_size):
                yield chunk
        finally:
            body.close()

    async def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        try:
            response = await asyncio.to_thread(
                self._client.head_object, Bucket=self.bucket, Key=key
            )
        except botocore.exceptions.ClientError as exc:
            if self._is_missing(exc):
                raise ObjectNotFoundError(key) from exc
            raise StorageError(f"cannot stat {key!r}: {exc}") from exc
        etag = response.get("ETag")
        modified = response.get("LastModified")
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            content_type=response.get("ContentType") or content_type_for_key(key),
            modified=modified.astimezone(UTC) if modified is not None else None,
            etag=etag if etag and etag.startswith('"') else (f'"{etag}"' if etag else None),
        )

    async def delete(self, key: str) -> None:
        validate_key(key)
        try:
            await asyncio.to_thread(self._client.delete_object, Bucket=self.bucket, Key=key)
        except _BOTO_ERRORS as exc:
            raise StorageError(f"cannot delete {key!r} from the bucket: {exc}") from exc

    def public_url(self, key: str, public_base_url: str) -> str:
        if self.public_base_url:
            return f"{self.public_base_url}/{quote(validate_key(key))}"
        return app_public_url(key, public_base_url)
