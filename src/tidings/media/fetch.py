"""Upload from URL: download a user-given URL into the media library, safely.

- Every URL, and every redirect target, goes through the project's URL guard
  (:func:`tidings.core.urlguard.guarded_request`): http(s) only, no private/loopback/link-local
  address unless ``allow_private``; https only unless ``allow_http`` (tests, LAN setups).
- The size is capped while downloading: a ``Content-Length`` over the limit is refused before the
  body is read, but the length is not trusted: bytes are counted and the download stops the
  moment the limit is crossed (see :mod:`tidings.media.ingest`).
- Timeouts per network operation and for the whole download.
- The content is sniffed and verified like any upload; the URL's name and the server's
  Content-Type are not trusted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import PurePosixPath
from typing import Final
from urllib.parse import unquote, urlsplit

import httpx

from tidings.core.urlguard import UnsafeURLError, guarded_request
from tidings.media.errors import MediaFetchError
from tidings.media.ingest import ALL_KINDS, IngestConfig, IngestedMedia, ingest_stream
from tidings.media.sniff import MediaKind
from tidings.media.storage import Storage

DEFAULT_TIMEOUT: Final = 30.0  # seconds per connect/read/write
DEFAULT_TOTAL_TIMEOUT: Final = 600.0  # seconds for the whole download (1 GB at ~2 MB/s)
DEFAULT_MAX_REDIRECTS: Final = 5
USER_AGENT: Final = "Tidings/0.1 (media upload from URL)"


def name_from_url(url: str) -> str | None:
    """The last path segment of ``url``, decoded (``None`` if the path has none)."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    name = PurePosixPath(unquote(path)).name
    return name or None


def _display_name(url: str, final_url: str) -> str | None:
    # The URL the user gave usually names the file better than a CDN's final URL, unless it is
    # something like ``/download?id=3`` and the redirect target has a real file name.
    given, final = name_from_url(url), name_from_url(final_url)
    if given and "." in given:
        return given
    return final if final and "." in final else given or final


async def _body(
    response: httpx.Response, deadline: float, total_timeout: float
) -> AsyncIterator[bytes]:
    """The response body, with transport errors and the overall deadline as 4xx errors."""
    chunks = response.aiter_bytes()
    while True:
        try:
            async with asyncio.timeout_at(deadline):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError as exc:
            raise MediaFetchError(
                f"the download took longer than {total_timeout:.0f} seconds"
            ) from exc
        except httpx.HTTPError as exc:
            raise MediaFetchError(f"the download failed: {exc}") from exc
        yield chunk


def _declared_length(response: httpx.Response) -> int | None:
    # With a content coding the length is of the compressed body: useless as a size bound.
    if response.headers.get("content-encoding", "identity").lower() != "identity":
        return None
    try:
        length = int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None
    return length if length >= 0 else None


async def ingest_url(
    url: str,
    *,
    organization_id: str,
    storage: Storage,
    config: IngestConfig,
    allow_private: bool,
    allow_http: bool = False,
    allowed_kinds: frozenset[MediaKind] = ALL_KINDS,
    thumbnail_timestamp_ms: int | None = None,
    io_timeout: float = DEFAULT_TIMEOUT,
    total_timeout: float = DEFAULT_TOTAL_TIMEOUT,
    max_redirects: int = DEFAULT_MAX_REDIRECTS,
    client: httpx.AsyncClient | None = None,
) -> IngestedMedia:
    """Download ``url`` into ``organization_id``'s media (like an upload named after the URL).

    Raises :class:`MediaFetchError` (400, field ``url``) when the URL is refused by the guard,
    redirects too often, answers an error status, fails or times out; otherwise the errors of
    :func:`ingest_stream` with field ``url`` (413 too large, 415 unsupported, 400 empty).
    ``client`` (tests) replaces the default client, which ignores proxy environment variables so
    that the guard's address check is about the host actually connected to.
    """
    owned = client is None
    http = client or httpx.AsyncClient(
        timeout=httpx.Timeout(io_timeout), follow_redirects=False, trust_env=False
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + total_timeout
    try:
        try:
            async with asyncio.timeout_at(deadline):
                response = await guarded_request(
                    http,
                    "GET",
                    url,
                    allow_private=allow_private,
                    require_https=not allow_http,
                    max_redirects=max_redirects,
                    stream=True,
                    headers={
                        "User-Agent": USER_AGENT,
                        "Accept": "image/*, video/*, application/pdf;q=0.9, */*;q=0.1",
                        "Accept-Encoding": "identity",
                    },
                )
        except UnsafeURLError as exc:
            raise MediaFetchError(str(exc)) from exc
        except TimeoutError as exc:
            raise MediaFetchError(f"{url!r} did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise MediaFetchError(f"cannot download {url!r}: {exc}") from exc
        try:
            if response.status_code != 200:
                raise MediaFetchError(f"{url!r} answered HTTP {response.status_code}")
            return await ingest_stream(
                _body(response, deadline, total_timeout),
                filename=None,  # a URL's name is not a claim about its content
                display_name=_display_name(url, str(response.url)),
                organization_id=organization_id,
                storage=storage,
                config=config,
                allowed_kinds=allowed_kinds,
                thumbnail_timestamp_ms=thumbnail_timestamp_ms,
                declared_size=_declared_length(response),
                field="url",
            )
        finally:
            await response.aclose()
    finally:
        if owned:
            await http.aclose()
