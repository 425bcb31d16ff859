"""Wiring of the media library from the settings: the storage backend and the upload config,
and the authentication of upload routes.

:func:`media_env` builds one :class:`MediaEnv` per distinct configuration and reuses it (an S3
client is costly to create and thread-safe to share). Requests get it with the
:data:`MediaEnvDep` dependency (from the app's own settings, which tests may replace); code
outside requests (jobs, the publishing engine) calls ``media_env()``, which reads
:func:`tidings.config.get_settings`.

Upload routes authenticate with :data:`UploadMember` / :data:`UploadApiKeyOrg` instead of the
usual ``Member`` / ``ApiKeyOrg``: those resolve the caller on the request's session, which stays
open (a pooled connection idle in transaction) until the route returns -- for an upload, until
the whole body has arrived, which over a slow link takes minutes and lets a few dozen uploads
exhaust the pool. These run the same checks in a unit of work of their own that ends before the
route starts; the service then streams the body with no connection and writes the row in a
second short unit of work.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final

from fastapi import Depends, Request

from tidings.accounts import auth
from tidings.accounts.auth import Caller
from tidings.config import Settings, get_settings
from tidings.db import request_database
from tidings.media.ingest import IngestConfig
from tidings.media.limits import MediaLimits
from tidings.media.storage import LocalStorage, S3Storage, Storage

STORAGE_BACKENDS: Final = ("local", "s3")
# The spool lives inside the local storage root so that storing an upload is a hard link (same
# filesystem even when the media directory is a mounted volume); its name starts with a dot,
# which no object key segment can, so it is never served nor mistaken for an object.
LOCAL_SPOOL_NAME: Final = ".spool"


class MediaConfigError(ValueError):
    """The media settings are inconsistent (unknown backend, S3 without a bucket, ...)."""


@dataclass(frozen=True, slots=True)
class MediaEnv:
    """Everything the media services need besides the database session."""

    storage: Storage
    ingest: IngestConfig
    public_url: str
    allow_private_urls: bool

    def url_for(self, key: str) -> str:
        """The public URL platforms fetch ``key`` from."""
        return self.storage.public_url(key, self.public_url)

    @property
    def redirects_uploads(self) -> bool:
        """Whether ``/uploads/<key>`` answers with a redirect to the storage's own public URL
        (S3 with ``TIDINGS_S3_PUBLIC_URL``) rather than streaming the bytes through the app."""
        return isinstance(self.storage, S3Storage) and self.storage.public_base_url is not None


def build_storage(settings: Settings) -> Storage:
    """The storage backend chosen by ``TIDINGS_STORAGE`` (``local`` or ``s3``)."""
    backend = settings.storage.strip().lower()
    if backend == "local":
        settings.ensure_data_dir()
        return LocalStorage(settings.data_dir / "media")
    if backend == "s3":
        if not settings.s3_bucket:
            raise MediaConfigError("TIDINGS_STORAGE=s3 needs TIDINGS_S3_BUCKET")
        if bool(settings.s3_access_key_id) != bool(settings.s3_secret_access_key):
            raise MediaConfigError(
                "set both TIDINGS_S3_ACCESS_KEY_ID and TIDINGS_S3_SECRET_ACCESS_KEY, or neither "
                "(to use the AWS default credential chain)"
            )
        return S3Storage(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url or None,
            region=settings.s3_region or None,
            access_key_id=settings.s3_access_key_id or None,
            secret_access_key=settings.s3_secret_access_key or None,
            public_base_url=settings.s3_public_url or None,
        )
    raise MediaConfigError(
        f"TIDINGS_STORAGE must be one of {', '.join(STORAGE_BACKENDS)}, not {settings.storage!r}"
    )


def build_ingest_config(settings: Settings, storage: Storage) -> IngestConfig:
    """Upload processing config: size limits from ``TIDINGS_MAX_{IMAGE,VIDEO,PDF}_BYTES`` and a
    spool directory on the same disk as local storage."""
    try:
        limits = MediaLimits(
            image_bytes=settings.max_image_bytes,
            video_bytes=settings.max_video_bytes,
            pdf_bytes=settings.max_pdf_bytes,
        )
    except ValueError as exc:
        raise MediaConfigError(f"media size limits: {exc}") from exc
    spool: Path
    if isinstance(storage, LocalStorage):
        spool = storage.root / LOCAL_SPOOL_NAME
    else:
        settings.ensure_data_dir()
        spool = settings.data_dir / "media-spool"
    return IngestConfig(spool_dir=spool, limits=limits)


def _cache_key(settings: Settings) -> tuple[object, ...]:
    return (
        settings.storage.strip().lower(),
        str(settings.data_dir),
        settings.s3_bucket,
        settings.s3_endpoint_url,
        settings.s3_region,
        settings.s3_access_key_id,
        settings.s3_secret_access_key,
        settings.s3_public_url,
        settings.max_image_bytes,
        settings.max_video_bytes,
        settings.max_pdf_bytes,
        settings.public_url,
        settings.allow_private_urls,
    )


_envs: dict[tuple[object, ...], MediaEnv] = {}
_lock = threading.Lock()


def media_env(settings: Settings | None = None) -> MediaEnv:
    """The media environment for ``settings`` (default: the process's settings), cached."""
    settings = settings or get_settings()
    key = _cache_key(settings)
    with _lock:
        env = _envs.get(key)
        if env is None:
            storage = build_storage(settings)
            env = MediaEnv(
                storage=storage,
                ingest=build_ingest_config(settings, storage),
                public_url=settings.public_url.rstrip("/"),
                allow_private_urls=settings.allow_private_urls,
            )
            _envs[key] = env
    return env


def request_media_env(request: Request) -> MediaEnv:
    """FastAPI dependency: the media environment of the app's settings."""
    settings: Settings | None = getattr(request.app.state, "settings", None)
    return media_env(settings)


MediaEnvDep = Annotated[MediaEnv, Depends(request_media_env)]


async def _upload_member(request: Request) -> Caller:
    # The checks of ``Member``, on a session closed (committed) before the body is read.
    async with request_database(request).session() as session:
        active = await auth.session_of_request(request, session)
        return await auth.resolve_member(request, session, active)


async def _upload_api_key_org(request: Request) -> Caller:
    # The checks of ``ApiKeyOrg``, on a session closed before the body is read.
    async with request_database(request).session() as session:
        return await auth.resolve_api_key_org(request, session)


#: ``Member`` for upload routes: authenticated in a short unit of work of its own, so that no
#: database connection is held while the body streams.
UploadMember = Annotated[Caller, Depends(_upload_member)]
#: ``ApiKeyOrg`` for upload routes (see :data:`UploadMember`).
UploadApiKeyOrg = Annotated[Caller, Depends(_upload_api_key_org)]
