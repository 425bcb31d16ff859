"""Serving stored media at ``/uploads/<key>``, where platforms (and browsers) fetch it.

No authentication: keys are long and random (``<org>/<yyyy>/<mm>/<128 random bits>.<ext>``), and
platforms fetch media anonymously. What is served is only ever a valid key of the storage:
:func:`tidings.media.storage.validate_key` refuses ``..``, dot files, backslashes, NUL and any
odd character (after the URL's percent-decoding), and local storage also refuses a key whose
real path leaves its root; all of these answer 404.

Local storage (and S3 without ``TIDINGS_S3_PUBLIC_URL``) is streamed through the app in 1 MB
chunks, with single byte ranges (video players seek), conditional requests and long-lived
caching (keys are never reused). S3 with a public URL answers a redirect to it.

Every answer carries ``X-Content-Type-Options: nosniff`` and ``Content-Security-Policy:
sandbox``: the Content-Type is the sniffed type, and a document (PDF) opened from this origin
can run no script with it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from email.utils import format_datetime, parsedate_to_datetime
from typing import Final, Literal

from fastapi import Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse

from tidings.core.errors import NotFound
from tidings.media.deps import MediaEnv
from tidings.media.errors import StorageUnavailable
from tidings.media.storage import (
    IMMUTABLE_CACHE_CONTROL,
    InvalidKeyError,
    ObjectInfo,
    ObjectNotFoundError,
    StorageError,
    validate_key,
)

SECURITY_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox",
    # Platforms' previews and other sites may embed the media.
    "Cross-Origin-Resource-Policy": "cross-origin",
}
_RANGE = re.compile(r"^\s*bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*$", re.IGNORECASE)

ByteRange = tuple[int, int]  # [start, end)


def parse_range(header: str | None, size: int) -> ByteRange | Literal["unsatisfiable"] | None:
    """The byte range asked by a ``Range`` header, for an object of ``size`` bytes.

    None means "send the whole object": no header, another unit, several ranges (allowed by
    RFC 9110 to be answered in full) or a malformed one (to be ignored). ``"unsatisfiable"``
    asks for a 416.
    """
    if not header:
        return None
    match = _RANGE.match(header)
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        count = int(last)
        if count == 0:
            return "unsatisfiable"
        return max(0, size - count), size
    start = int(first)
    if last and int(last) < start:
        return None  # "bytes=5-2" is invalid, so ignored
    if start >= size:
        return "unsatisfiable"
    end = int(last) + 1 if last else size
    return start, min(end, size)


def _etag_matches(header: str, etag: str | None) -> bool:
    if etag is None:
        return False
    wanted = etag.removeprefix("W/")
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == wanted:
            return True
    return False


def _not_modified(request: Request, info: ObjectInfo) -> bool:
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        return _etag_matches(if_none_match, info.etag)
    since = request.headers.get("if-modified-since")
    if since and info.modified is not None:
        try:
            return info.modified.replace(microsecond=0) <= parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
    return False


def _range_applies(request: Request, info: ObjectInfo) -> bool:
    """If-Range: serve the range only when the client's copy is still the current object."""
    condition = request.headers.get("if-range")
    if condition is None:
        return True
    condition = condition.strip()
    if condition.startswith(('"', "W/")):
        # A strong comparison: weak tags never validate a range.
        return info.etag is not None and condition == info.etag
    if info.modified is None:
        return False
    try:
        return parsedate_to_datetime(condition) == info.modified.replace(microsecond=0)
    except (TypeError, ValueError):
        return False


def _headers(info: ObjectInfo) -> dict[str, str]:
    headers = {
        **SECURITY_HEADERS,
        "Cache-Control": IMMUTABLE_CACHE_CONTROL,
        "Accept-Ranges": "bytes",
    }
    if info.etag:
        headers["ETag"] = info.etag
    if info.modified is not None:
        headers["Last-Modified"] = format_datetime(info.modified, usegmt=True)
    return headers


async def _stream(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        if first:
            yield first
        async for chunk in rest:
            yield chunk
    finally:
        close = getattr(rest, "aclose", None)  # closes the file / S3 body at once
        if close is not None:
            await close()


async def serve_upload(request: Request, env: MediaEnv, key: str) -> Response:
    """The answer to ``GET``/``HEAD /uploads/<key>`` (see the module docstring)."""
    try:
        validate_key(key)
    except InvalidKeyError as exc:
        raise NotFound("file not found", field="key") from exc
    if env.redirects_uploads:
        return RedirectResponse(
            env.url_for(key), status_code=302, headers={"Cache-Control": "public, max-age=3600"}
        )
    try:
        info = await env.storage.stat(key)
    except (ObjectNotFoundError, InvalidKeyError) as exc:
        raise NotFound("file not found", field="key") from exc
    except StorageError as exc:
        raise StorageUnavailable("the media storage is unavailable, try again") from exc
    headers = _headers(info)
    if _not_modified(request, info):
        return Response(status_code=304, headers=headers)
    size = info.size
    wanted = (
        parse_range(request.headers.get("range"), size) if _range_applies(request, info) else None
    )
    if wanted == "unsatisfiable":
        headers["Content-Range"] = f"bytes */{size}"
        return Response(status_code=416, headers=headers)
    status = 200
    start, end = 0, size
    if wanted is not None:
        start, end = wanted
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=info.content_type)
    chunks = env.storage.open_stream(key, start=start, end=end)
    # Read the first chunk before answering, so a file deleted since stat() is a clean 404.
    try:
        first = await anext(chunks, b"")
    except (ObjectNotFoundError, InvalidKeyError) as exc:
        raise NotFound("file not found", field="key") from exc
    except StorageError as exc:
        raise StorageUnavailable("the media storage is unavailable, try again") from exc
    return StreamingResponse(
        _stream(first, chunks), status_code=status, headers=headers, media_type=info.content_type
    )
