"""Errors of the media layer, each already the 4xx the client should get.

Hierarchy (all are :class:`tidings.core.errors.TidingsError`, so the app's handlers answer them)::

    MediaError                      base of everything below (not itself raised)
    ├── UnsupportedMediaError       415: not an image/video/PDF we accept, or damaged content
    │   └── MediaMismatchError      415: the file name says one type, the content another
    ├── EmptyMediaError             400: zero bytes
    ├── MediaTooLargeError          413: over the size limit of its kind
    ├── MediaFetchError             400: upload from URL failed (bad URL, refused, remote error)
    ├── MultipartError              400: the request body is not usable multipart form data
    └── StorageUnavailable          503: the storage (S3, the disk) failed; not the input's fault

Every error names the field at fault: ``file`` for uploads, ``url`` for upload from URL.
"""

from __future__ import annotations

from typing import Any

from tidings.core.errors import BadRequest, PayloadTooLarge, TidingsError, UnsupportedMediaType


class MediaError(TidingsError):
    """Base of every error raised by :mod:`tidings.media`; the status comes from the sibling base.

    It defines no ``status_code``/``code`` so that, in each subclass's MRO, the specific base
    (415, 413, 400) supplies them.
    """


class UnsupportedMediaError(MediaError, UnsupportedMediaType):
    """The content is not a supported image, video or PDF, or it does not decode."""

    def __init__(self, message: str, *, field: str = "file", **kwargs: Any) -> None:
        super().__init__(message, field=field, **kwargs)


class MediaMismatchError(UnsupportedMediaError):
    """The file name's extension contradicts what the bytes are."""

    code = "media_type_mismatch"


class EmptyMediaError(MediaError, BadRequest):
    """The upload has no bytes at all."""

    code = "empty_file"

    def __init__(self, message: str = "the file is empty", *, field: str = "file") -> None:
        super().__init__(message, field=field)


class MediaTooLargeError(MediaError, PayloadTooLarge):
    """The upload crossed the size limit of its kind (checked while streaming)."""

    def __init__(self, message: str, *, limit: int, kind: str | None, field: str = "file") -> None:
        extra: dict[str, Any] = {"limit": limit}
        if kind is not None:
            extra["kind"] = kind
        super().__init__(message, field=field, extra=extra)
        self.limit = limit
        self.kind = kind


class MediaFetchError(MediaError, BadRequest):
    """Upload from URL failed before any content could be judged."""

    code = "fetch_failed"

    def __init__(self, message: str, *, field: str = "url") -> None:
        super().__init__(message, field=field)


class MultipartError(MediaError, BadRequest):
    """The request body is not usable multipart form data."""

    code = "invalid_multipart"

    def __init__(self, message: str, *, field: str = "file") -> None:
        super().__init__(message, field=field)


class StorageUnavailable(MediaError):
    """The media storage failed (S3 unreachable or refusing, the disk full): a 503, since the
    request itself was fine and may succeed later."""

    status_code = 503
    code = "storage_unavailable"
