"""The provider interface: what every social platform adapter offers the rest of Tidings.

A *provider* speaks one platform's HTTP API. It never touches the database: the channels service
stores what :meth:`Provider.exchange_code` / :meth:`Provider.connect_with_fields` return, and the
publishing engine hands back :class:`ChannelCredentials` when it publishes.

Public names (stable; the channels service and the publishing engine code against exactly these)

Errors -- one hierarchy, every error carries ``message``, ``status_code`` (or None) and ``excerpt``
(the first few hundred characters of the platform's answer, or None)::

    ProviderError                 base; also raised for "this provider cannot do that"
    +-- RefreshTokenError         401 / expired token: refresh once, then retry the call
    +-- BadBodyError              content rejected: the post fails with the platform's message
    +-- RetryableError            429, 5xx, connect errors, timeouts before the request was
    |                             accepted; ``retry_after`` seconds when the platform said so
    +-- DisconnectedError         authorization revoked / account gone for good: reconnect
    +-- UnknownOutcomeError       timeout or dropped connection after a write was sent: the
    |                             post may exist; never retry blindly
    +-- ConnectError              connecting failed (bad code, wrong password, missing choice):
    |                             a user-facing 4xx, not a publishing failure
    +-- UnknownToolError          ``call_tool`` with a name the provider does not have

    UnknownProviderError (LookupError)   registry lookup of an unknown identifier

Classification: :func:`classify_response` and :func:`classify_exception` turn an httpx response /
exception into one of the errors above; :func:`send` does a request and raises the classified
error. Providers refine the defaults by overriding :meth:`Provider.classify_error`.

Data: :class:`MediaItem`, :class:`PostPart`, :class:`ChannelCredentials`, :class:`TokenSet`,
:class:`ConnectedAccount`, :class:`PublishResult`, :class:`RuleViolation`, :class:`Choice`,
:class:`AuthorizationRequest`, :class:`FieldSpec`, :class:`MediaRules`, :class:`ProviderConfig`,
:class:`ProviderSettings` (base of every ``settings_model``).

:class:`Provider` (abstract; one instance per ``httpx.AsyncClient`` + :class:`ProviderConfig`)

Class attributes: ``identifier``, ``display_name``, ``connect_kind`` ("oauth" | "fields"),
``fields`` (tuple of FieldSpec, for "fields" providers), ``scopes``, ``supports_replies``,
``supports_refresh``, ``can_check_published``, ``default_max_length``, ``text_counting``,
``media_rules``, ``settings_model``,
``default_urls`` (host name -> real base URL), ``env_fallback`` (another identifier whose
``TIDINGS_*`` client id/secret are used when this one has none).

Methods (``async`` where they talk to the platform)::

    max_length(credentials=None) -> int
    text_length(text) -> int                       platform counting (X weighted, Bluesky graphemes)
    parse_settings(raw) -> settings_model          tolerates Postiz's "__type"; raises ValueError
    settings_schema() -> dict                      JSON schema of settings_model (classmethod)
    validate(parts, settings=None, credentials=None) -> list[RuleViolation]
    tool_names() -> list[str]
    async call_tool(name, credentials, args) -> Any
    async authorization_url(redirect_uri, state, code_verifier, custom_instance=None)
        -> AuthorizationRequest         store its custom_instance_details with the state
    async exchange_code(code, redirect_uri, code_verifier, custom_instance_details=None)
        -> ConnectedAccount
    async connect_with_fields(values) -> ConnectedAccount
    async refresh(credentials) -> TokenSet          refresh_token None: keep the old one
    async list_choices(credentials) -> list[Choice]          (in-between steps)
    async select_choice(credentials, choice_id) -> ConnectedAccount
    async publish(credentials, part, settings) -> PublishResult
    async reply(credentials, parent, part, settings) -> PublishResult
    async find_published(credentials, part, settings, parent=, since=) -> PublishResult | None
        after an UnknownOutcomeError, where ``can_check_published`` (else ProviderError)

Helpers: :func:`new_code_verifier`, :func:`code_challenge` (PKCE S256), :func:`config_from_env`,
:func:`default_http_client`, :func:`token_set` (OAuth token response -> TokenSet),
``Provider.oauth_token`` (token endpoint call with exchange/refresh error mapping),
``Provider.refresh_grant`` (the refresh_token grant), ``Provider.client_auth`` (Basic auth).

For "oauth" providers that need a user-given instance (Mastodon), ``fields`` lists the inputs
``authorization_url(custom_instance=...)`` takes. ``PostPart.idempotency_key`` (optional, stable
across retries of one part) is forwarded where the platform supports idempotency keys.

User-given base URLs (a Mastodon instance, a Bluesky PDS) are checked with the ``url_guard``
callable given to the provider's constructor (the core URL guard in production); providers call
it before their first request to such a URL. Providers with ``user_hosts`` also send every later
request to such a host (exchanging the code, refreshing, publishing, months after connecting)
through the ``guarded_send`` given to the constructor, which checks the address again and
connects to the very address it checked: a host whose name later resolves to a private address
is refused, not reached.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import json
import logging
import os
import re
import secrets
import tempfile
from abc import ABC
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Generic, Literal, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

EXCERPT_LENGTH = 500


class ProviderError(Exception):
    """Base of every provider failure; ``str(error)`` is the human message."""

    kind: ClassVar[str] = "error"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        excerpt: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.excerpt = excerpt[:EXCERPT_LENGTH] if excerpt else excerpt

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r})"


class RefreshTokenError(ProviderError):
    """The access token is expired or invalid: refresh once, then retry."""

    kind = "refresh-token"


class BadBodyError(ProviderError):
    """The platform rejected the content; ``message`` is the platform's own explanation."""

    kind = "bad-body"


class RetryableError(ProviderError):
    """A transient failure before the platform accepted the request: retry with backoff."""

    kind = "retry"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        excerpt: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, excerpt=excerpt)
        self.retry_after = retry_after


class DisconnectedError(ProviderError):
    """Authorization is gone for good (revoked, account deleted): the user must reconnect."""

    kind = "disconnect"


class UnknownOutcomeError(ProviderError):
    """A write was sent but no answer came back: it may have been published."""

    kind = "unknown-outcome"


class ConnectError(ProviderError):
    """Connecting the account failed (bad code, wrong credentials, unknown choice)."""

    kind = "connect"


class UnknownToolError(ProviderError):
    """``call_tool`` was asked for a tool this provider does not have."""

    kind = "unknown-tool"


class UnknownProviderError(LookupError):
    """No provider is registered under this identifier."""

    def __init__(self, identifier: str, known: Sequence[str]) -> None:
        super().__init__(
            f"Unknown provider {identifier!r}; known providers: {', '.join(sorted(known))}"
        )
        self.identifier = identifier


# --------------------------------------------------------------------------------------------
# Error classification
# --------------------------------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds)


def response_excerpt(response: httpx.Response) -> str:
    """The start of a response body, for error reports (never the whole thing)."""
    try:
        text = response.text
    except (UnicodeDecodeError, httpx.ResponseNotRead):
        return ""
    return text[:EXCERPT_LENGTH]


def response_json(response: httpx.Response) -> Any:
    """The JSON of an answer (an error answer too), or None when it is not JSON."""
    try:
        return response.json()
    except (ValueError, httpx.ResponseNotRead):
        return None


def response_message(response: httpx.Response) -> str:
    """The platform's own error message, found in the usual JSON shapes, else the body start."""
    data = response_json(response)
    message = _find_message(data)
    if message:
        return message
    excerpt = response_excerpt(response).strip()
    return excerpt[:200] or f"HTTP {response.status_code}"


def _find_message(data: Any, depth: int = 0) -> str | None:
    if depth > 3 or data is None:
        return None
    if isinstance(data, str):
        return data or None
    if isinstance(data, list):
        for item in data:
            found = _find_message(item, depth + 1)
            if found:
                return found
        return None
    if isinstance(data, dict):
        for key in ("message", "error_description", "detail", "error", "title", "errors"):
            if key in data:
                found = _find_message(data[key], depth + 1)
                if found:
                    return found
    return None


def classify_response(
    response: httpx.Response, *, message: str | None = None
) -> ProviderError | None:
    """The error a non-success response means, or None for a 2xx/3xx answer.

    401 -> RefreshTokenError; 429 and 5xx -> RetryableError (Retry-After parsed); 408 ->
    RetryableError; other 4xx (400, 403, 404, 409, 413, 422, ...) -> BadBodyError carrying the
    platform's message. Providers refine this in :meth:`Provider.classify_error`.
    """
    status = response.status_code
    if status < 400:
        return None
    text = message or response_message(response)
    excerpt = response_excerpt(response)
    if status == 401:
        return RefreshTokenError(text, status_code=status, excerpt=excerpt)
    if status in (408, 425, 429) or status >= 500:
        return RetryableError(
            text,
            status_code=status,
            excerpt=excerpt,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    return BadBodyError(text, status_code=status, excerpt=excerpt)


def classify_exception(exc: httpx.HTTPError, *, idempotent: bool) -> ProviderError:
    """The error a transport failure means.

    Failures before the request left (connect error, ConnectTimeout, PoolTimeout, WriteTimeout)
    are retryable. A ReadTimeout, a dropped connection or a protocol error after a
    non-idempotent write was sent is an unknown outcome; for idempotent calls it is retryable.
    """
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return RetryableError(f"Could not reach the platform ({name})")
    if isinstance(exc, httpx.WriteTimeout | httpx.WriteError):
        # The body was not fully written, so the platform cannot have accepted it.
        return RetryableError(f"Sending the request failed ({name})")
    if isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError):
        if idempotent:
            return RetryableError(f"The platform did not answer ({name})")
        return UnknownOutcomeError(
            f"The platform did not answer after the request was sent ({name}); "
            "it may have been published"
        )
    return RetryableError(f"HTTP failure ({name}: {exc})")


Classifier = Callable[[httpx.Response], "ProviderError | None"]
#: Sends one request like ``client.request(method, url, **kwargs)`` (e.g. through a URL guard).
Sender = Callable[..., Awaitable[httpx.Response]]


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    idempotent: bool | None = None,
    classify: Classifier = classify_response,
    sender: Sender | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """Send one request; raise the classified ProviderError on failure, else the response.

    ``idempotent`` defaults to True for GET/HEAD/OPTIONS/PUT/DELETE and False otherwise; pass
    True for writes that publish nothing (e.g. media uploads) so a lost answer is retryable.
    ``sender`` sends instead of ``client.request`` (called with the client first).
    """
    if idempotent is None:
        idempotent = method.upper() in ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")
    try:
        if sender is not None:
            response = await sender(client, method, url, **kwargs)
        else:
            response = await client.request(method, url, **kwargs)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        # Built from stored or typed data (an instance URL, a bot token in the path): sending
        # it again cannot help. The message names the fault, never the URL (it may hold a token).
        raise BadBodyError(f"The request cannot be sent: {exc}") from exc
    except httpx.HTTPError as exc:
        raise classify_exception(exc, idempotent=idempotent) from exc
    error = classify(response)
    if error is not None:
        raise error
    return response


def json_body(response: httpx.Response) -> Any:
    """The JSON of a success response; a non-JSON answer is a retryable platform fault."""
    try:
        return response.json()
    except ValueError as exc:
        raise RetryableError(
            "The platform answered with something that is not JSON",
            status_code=response.status_code,
            excerpt=response_excerpt(response),
        ) from exc


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

MediaType = Literal["image", "video"]


@dataclass(kw_only=True, slots=True)
class MediaItem:
    """One file attached to a post part.

    ``url`` is public: platforms that fetch media themselves get it. ``read`` returns the bytes
    for platforms that need an upload; when it is None the provider downloads ``url``.

    ``stream``, when set, opens a fresh iterator over the same bytes (chunks of any size) each
    time it is called; ``size`` is then the exact byte count when known. Providers that upload
    large videos use them through :meth:`Provider.open_media` (a :class:`MediaBody`), so a
    video is never held whole in memory; ``read`` stays for small files and for platforms that
    need the bytes at once.
    """

    url: str
    type: MediaType
    mime_type: str
    alt: str | None = None
    width: int | None = None
    height: int | None = None
    size: int | None = None
    thumbnail_url: str | None = None
    read: Callable[[], Awaitable[bytes]] | None = None
    read_thumbnail: Callable[[], Awaitable[bytes]] | None = None
    stream: Callable[[], AsyncIterator[bytes]] | None = None


#: Opens a fresh stream of a file's bytes, in chunks of any size.
StreamOpener = Callable[[], AsyncIterator[bytes]]
#: The size of the pieces :class:`MediaBody` reads from bytes held in memory or a spool file.
MEDIA_PIECE = 1024 * 1024


@asynccontextmanager
async def closing_stream(stream: AsyncIterator[bytes]) -> AsyncIterator[AsyncIterator[bytes]]:
    """``stream`` for the block, closed at its end (an async generator's ``finally`` runs now,
    not whenever it is collected: a file or a connection is released at once)."""
    try:
        yield stream
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()


class _Reader:
    """Exact-length reads over one stream of arbitrary chunks."""

    def __init__(self, source: AsyncIterator[bytes]) -> None:
        self._source = source
        self._pending = bytearray()
        self._done = False
        self.position = 0

    async def read(self, n: int) -> bytes:
        """The next ``n`` bytes (fewer only at the end of the stream)."""
        while len(self._pending) < n and not self._done:
            piece = await anext(self._source, None)
            if piece is None:
                self._done = True
            elif not self._pending and len(piece) == n:
                self.position += n
                return piece  # already the wanted size: no copy
            else:
                self._pending += piece
        out = bytes(self._pending[:n])
        del self._pending[:n]
        self.position += len(out)
        return out

    async def skip(self, n: int) -> None:
        while n > 0:
            got = await self.read(min(n, MEDIA_PIECE))
            if not got:
                return
            n -= len(got)

    async def aclose(self) -> None:
        close = getattr(self._source, "aclose", None)
        if close is not None:
            await close()


class MediaBody:
    """A media file ready to upload: its exact ``size`` and fresh streams of its bytes.

    Every stream is checked against ``size``: a file that turns out longer or shorter (changed
    in storage since it was recorded) raises BadBodyError rather than sending a wrong upload.
    """

    def __init__(self, size: int, opener: StreamOpener, *, url: str) -> None:
        self.size = size
        self._opener = opener
        self._url = url

    async def _verified(self) -> AsyncIterator[bytes]:
        seen = 0
        async with closing_stream(self._opener()) as source:
            async for piece in source:
                seen += len(piece)
                if seen > self.size:
                    raise BadBodyError(self._mismatch(f"more than {self.size:,}"))
                if piece:
                    yield piece
        if seen != self.size:
            raise BadBodyError(self._mismatch(f"{seen:,}, not {self.size:,},"))

    def _mismatch(self, what: str) -> str:
        return f"The media file {self._url} has {what} bytes: it changed since it was stored"

    async def chunks(
        self, chunk_size: int, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """A fresh stream of the bytes ``[start, end)`` in chunks of exactly ``chunk_size``
        (the last one shorter)."""
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        stop = self.size if end is None else min(end, self.size)
        reader = _Reader(self._verified())
        try:
            await reader.skip(start)
            while reader.position < stop:
                chunk = await reader.read(min(chunk_size, stop - reader.position))
                if not chunk:
                    break
                yield chunk
            if end is None:
                await reader.read(1)  # to the end: a longer file is caught, not sent cut
        finally:
            await reader.aclose()

    async def spans(self, spans: Sequence[tuple[int, int]]) -> AsyncIterator[bytes]:
        """The bytes of each ``[start, end)`` span in turn, each span in one piece; spans in
        ascending order are read from one stream, a span before the last one reopens it."""
        reader: _Reader | None = None
        try:
            for start, end in spans:
                if not 0 <= start <= end <= self.size:
                    raise BadBodyError(
                        f"The platform asked for bytes {start}-{end} of a {self.size}-byte file"
                    )
                if reader is None or start < reader.position:
                    if reader is not None:
                        await reader.aclose()
                    reader = _Reader(self._verified())
                await reader.skip(start - reader.position)
                data = await reader.read(end - start)
                if len(data) != end - start:
                    raise BadBodyError(self._mismatch(f"fewer than {end:,}"))
                yield data
            if reader is not None and reader.position == self.size:
                await reader.read(1)  # at the end: a longer file is caught
        finally:
            if reader is not None:
                await reader.aclose()

    def multipart(
        self, fields: Mapping[str, str], *, file_field: str, filename: str, mime_type: str
    ) -> tuple[dict[str, str], AsyncIterator[bytes]]:
        """A ``multipart/form-data`` body of ``fields`` then the file, streamed: its headers
        (exact Content-Length) and a fresh stream of its bytes. For platforms whose upload is
        one multipart POST (httpx's ``files=`` would need the whole file or a sync file)."""
        boundary = secrets.token_hex(16)
        head = bytearray()
        for name, value in fields.items():
            head += (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"\r\n\r\n'
            ).encode()
            head += value.encode() + b"\r\n"
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(file_field)}"; '
            f'filename="{_quoted(filename)}"\r\nContent-Type: {mime_type}\r\n\r\n'
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        headers = {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(head) + self.size + len(tail)),
        }

        async def stream() -> AsyncIterator[bytes]:
            yield bytes(head)
            async with closing_stream(self.chunks(MEDIA_PIECE)) as chunks:
                async for chunk in chunks:
                    yield chunk
            yield tail

        return headers, stream()


def _quoted(value: str) -> str:
    """A multipart parameter value: quotes, backslashes and line breaks escaped (as browsers
    and httpx do), so a file name cannot break out of its header."""
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def _pieces_of(content: bytes) -> StreamOpener:
    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(content), MEDIA_PIECE):
            yield content[start : start + MEDIA_PIECE]

    return pieces


def _pieces_from_file(path: str) -> StreamOpener:
    async def pieces() -> AsyncIterator[bytes]:
        f = await asyncio.to_thread(open, path, "rb")
        try:
            while piece := await asyncio.to_thread(f.read, MEDIA_PIECE):
                yield piece
        finally:
            f.close()

    return pieces


@dataclass(kw_only=True, slots=True)
class PostPart:
    """One part of a thread: the first is the post, the following ones are replies."""

    content: str
    media: list[MediaItem] = field(default_factory=list)
    # Stable per part across retries (e.g. the post row id); sent as an idempotency key where
    # the platform supports one (Mastodon), so a retried publish cannot post twice.
    idempotency_key: str | None = None


@dataclass(kw_only=True, slots=True)
class TokenSet:
    """Tokens from a connect or a refresh; ``refresh_token`` None means "keep the old one"."""

    access_token: str
    refresh_token: str | None = None
    expires_at: datetime | None = None


@dataclass(kw_only=True, slots=True)
class ChannelCredentials:
    """What the engine passes back to a provider for one channel (decrypted)."""

    access_token: str
    internal_id: str
    refresh_token: str | None = None
    token_expires_at: datetime | None = None
    # Per-account hosts and secrets: Mastodon instance URL + app client id/secret, Bluesky
    # service URL + handle + app password, Telegram chat id, ...
    custom_instance_details: dict[str, Any] | None = None
    # Profile/username and provider-specific facts kept from connect (e.g. X "verified").
    profile: str | None = None
    additional_settings: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True, slots=True)
class ConnectedAccount:
    """A freshly connected (or re-picked) account, ready to be upserted as an Integration."""

    internal_id: str
    name: str
    tokens: TokenSet
    picture: str | None = None
    username: str | None = None
    custom_instance_details: dict[str, Any] | None = None
    in_between_steps: bool = False
    additional_settings: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True, slots=True)
class PublishResult:
    """A published part: platform ``id`` and public ``url``.

    ``data`` holds JSON-serialisable hints for replies (e.g. Bluesky's cid and thread root);
    providers cope with it being empty, fetching what they need, so storing only id and url is
    enough.
    """

    id: str
    url: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True, slots=True, frozen=True)
class RuleViolation:
    """A reason a post does not fit a channel; ``part_index`` None means the whole post."""

    code: str
    message: str
    part_index: int | None = None


@dataclass(kw_only=True, slots=True, frozen=True)
class Choice:
    """A page / channel / account the user may pick during in-between steps."""

    id: str
    name: str
    picture: str | None = None
    username: str | None = None


@dataclass(kw_only=True, slots=True, frozen=True)
class AuthorizationRequest:
    """Where to send the user, plus details to keep with the state until the callback."""

    url: str
    custom_instance_details: dict[str, Any] | None = None


@dataclass(kw_only=True, slots=True, frozen=True)
class FieldSpec:
    """One input of a credential-field provider (or of a custom OAuth instance)."""

    name: str
    label: str
    secret: bool = False
    required: bool = True
    default: str | None = None
    help: str | None = None


@dataclass(kw_only=True, slots=True, frozen=True)
class MediaRules:
    """Media limits checked by the default :meth:`Provider.validate`.

    A part may carry up to ``max_images`` images, or up to ``max_videos`` videos; mixing both
    is allowed only with ``allow_mixed``. ``min_media`` applies to the first part;
    ``replies_allow_media`` False means replies (parts after the first) must be text only.
    """

    max_images: int = 4
    max_videos: int = 1
    allow_mixed: bool = False
    min_media: int = 0
    replies_allow_media: bool = True
    image_mime_types: frozenset[str] = frozenset(
        {"image/jpeg", "image/png", "image/gif", "image/webp"}
    )
    video_mime_types: frozenset[str] = frozenset({"video/mp4", "video/quicktime", "video/webm"})
    # Largest file the platform accepts, checked when ``MediaItem.size`` is known.
    max_image_bytes: int | None = None
    max_video_bytes: int | None = None


class ProviderSettings(BaseModel):
    """Base of every provider's post settings; ignores Postiz's ``__type`` discriminator."""

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _drop_type_tag(cls, data: Any) -> Any:
        if isinstance(data, dict) and "__type" in data:
            data = {k: v for k, v in data.items() if k != "__type"}
        return data


class NoSettings(ProviderSettings):
    """Settings of a provider that has none."""


@dataclass(kw_only=True, slots=True)
class ProviderConfig:
    """Client credentials and base URLs of one provider (real hosts unless overridden)."""

    client_id: str | None = None
    client_secret: str | None = None
    urls: dict[str, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)

    def url(self, name: str) -> str:
        """Base URL for host ``name``, without a trailing slash."""
        try:
            return self.urls[name].rstrip("/")
        except KeyError:
            raise ProviderError(f"No base URL configured for {name!r}") from None


def env_prefix(identifier: str) -> str:
    """``TIDINGS_<IDENTIFIER>_``, '-' as '_': ``linkedin-page`` -> ``TIDINGS_LINKEDIN_PAGE_``."""
    return "TIDINGS_" + identifier.upper().replace("-", "_") + "_"


def config_from_env(identifier: str, environ: Mapping[str, str] | None = None) -> ProviderConfig:
    """The configuration of provider ``identifier`` from the environment.

    Reads ``TIDINGS_<ID>_CLIENT_ID``, ``TIDINGS_<ID>_CLIENT_SECRET`` and, for every host the
    provider talks to, ``TIDINGS_<ID>_<HOST>_URL`` (e.g. ``TIDINGS_X_API_URL``); unset hosts keep
    the real defaults. Client id/secret fall back to the provider's ``env_fallback`` identifier.
    """
    from tidings.channels.providers.registry import get_provider

    env = os.environ if environ is None else environ
    cls = get_provider(identifier)
    prefix = env_prefix(identifier)
    fallback = env_prefix(cls.env_fallback) if cls.env_fallback else None

    def read(key: str) -> str | None:
        value = env.get(prefix + key)
        if not value and fallback:
            value = env.get(fallback + key)
        return value or None

    urls = {
        name: env.get(f"{prefix}{name.upper()}_URL") or default
        for name, default in cls.default_urls.items()
    }
    return ProviderConfig(
        client_id=read("CLIENT_ID"), client_secret=read("CLIENT_SECRET"), urls=urls
    )


def config_value(
    identifier: str,
    config: ProviderConfig,
    key: str,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """One server-side setting of a provider: its client id or secret, else ``config.extra``'s
    ``key``, else ``TIDINGS_<ID>_<KEY>`` from the environment."""
    if key == "client_id":
        return config.client_id or None
    if key == "client_secret":
        return config.client_secret or None
    env = os.environ if environ is None else environ
    return config.extra.get(key) or env.get(env_prefix(identifier) + key.upper()) or None


# httpx logs the URL of every request at INFO. Some platforms take secrets in the URL (the Graph
# APIs' access_token / client_secret query parameters, Telegram's bot token in the path), and a
# server log must never hold a token: the URL is redacted before any handler sees it.
_SECRET_QUERY = re.compile(
    r"([?&](?:access_token|client_secret|refresh_token|fb_exchange_token|input_token|code|"
    r"token|key|password)=)[^&#]*",
    re.IGNORECASE,
)
_BOT_PATH = re.compile(r"(/bot)[^/?#]+")


def redact_url(url: str) -> str:
    """``url`` with the values of secret query parameters and a bot token path hidden."""
    return _BOT_PATH.sub(r"\1<redacted>", _SECRET_QUERY.sub(r"\1<redacted>", url))


class _RedactRequestUrls(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(
            isinstance(arg, httpx.URL) for arg in record.args
        ):
            record.args = tuple(
                redact_url(str(arg)) if isinstance(arg, httpx.URL) else arg for arg in record.args
            )
        return True


_httpx_logger = logging.getLogger("httpx")
if not any(isinstance(f, _RedactRequestUrls) for f in _httpx_logger.filters):
    _httpx_logger.addFilter(_RedactRequestUrls())


DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def default_http_client(timeout: httpx.Timeout | float = DEFAULT_TIMEOUT) -> httpx.AsyncClient:
    """An AsyncClient suitable for providers (timeouts set, no redirects to surprise writes)."""
    return httpx.AsyncClient(
        timeout=timeout,
        follow_redirects=False,
        headers={"User-Agent": "Tidings/0.1 (+https://github.com/tidings)"},
    )


def new_code_verifier() -> str:
    """A PKCE code verifier (RFC 7636: 43-128 unreserved characters)."""
    return secrets.token_urlsafe(64)[:96]


def code_challenge(verifier: str) -> str:
    """The S256 code challenge of a PKCE verifier."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


# --------------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------------

ToolMethod = Callable[..., Awaitable[Any]]


def tool(name: str) -> Callable[[ToolMethod], ToolMethod]:
    """Mark a provider method ``async def m(self, credentials, args: dict) -> Any`` as a tool."""

    def mark(method: ToolMethod) -> ToolMethod:
        method.__tidings_tool__ = name  # type: ignore[attr-defined]
        return method

    return mark


# --------------------------------------------------------------------------------------------
# Provider
# --------------------------------------------------------------------------------------------

SettingsT = TypeVar("SettingsT", bound=ProviderSettings)
UrlGuard = Callable[[str], Awaitable[None]]


class Provider(ABC, Generic[SettingsT]):
    """One social platform. Subclasses set the class attributes and override what they support."""

    identifier: ClassVar[str]
    display_name: ClassVar[str]
    connect_kind: ClassVar[Literal["oauth", "fields"]] = "oauth"
    fields: ClassVar[tuple[FieldSpec, ...]] = ()
    scopes: ClassVar[tuple[str, ...]] = ()
    supports_replies: ClassVar[bool] = True
    supports_refresh: ClassVar[bool] = True
    default_max_length: ClassVar[int]
    media_rules: ClassVar[MediaRules] = MediaRules()
    settings_model: ClassVar[type[ProviderSettings]] = NoSettings
    default_urls: ClassVar[Mapping[str, str]] = {}
    env_fallback: ClassVar[str | None] = None
    can_check_published: ClassVar[bool] = False
    #: How :meth:`text_length` counts, named for clients that count as the user types (the web
    #: composer): "code_points", "graphemes", "utf16", "x_weighted" (twitter-text v3, URLs 23)
    #: or "mastodon" (graphemes, URLs 23, remote mentions by their local part).
    text_counting: ClassVar[str] = "code_points"
    #: Whether the provider talks to hosts its users name (see the module docstring).
    user_hosts: ClassVar[bool] = False
    #: What the server must be configured with before the provider can connect and publish:
    #: "client_id", "client_secret", or a key of ``config.extra`` (also read from
    #: ``TIDINGS_<ID>_<KEY>``, e.g. Discord's "bot_token"). Credential-field providers and
    #: providers registering themselves per instance (Mastodon) need nothing.
    required_config: ClassVar[tuple[str, ...]] = ("client_id", "client_secret")

    @classmethod
    def missing_config(
        cls, config: ProviderConfig, environ: Mapping[str, str] | None = None
    ) -> list[str]:
        """The environment variables still to set for :attr:`required_config` (empty: ready)."""
        return [
            env_prefix(cls.identifier) + key.upper()
            for key in cls.required_config
            if not config_value(cls.identifier, config, key, environ)
        ]

    def __init__(
        self,
        http: httpx.AsyncClient,
        config: ProviderConfig | None = None,
        *,
        url_guard: UrlGuard | None = None,
        guarded_send: Sender | None = None,
    ) -> None:
        self.http = http
        self.config = config or ProviderConfig(urls=dict(self.default_urls))
        for name, default in self.default_urls.items():
            self.config.urls.setdefault(name, default)
        self._url_guard = url_guard
        self._guarded_send = guarded_send

    # ---- limits and validation ----------------------------------------------------------

    def max_length(self, credentials: ChannelCredentials | None = None) -> int:
        """Longest text a part may have on this channel, in :meth:`text_length` units."""
        return self.default_max_length

    def text_length(self, text: str) -> int:
        """Length of ``text`` as the platform counts it (code points by default)."""
        return len(text)

    @classmethod
    def settings_schema(cls) -> dict[str, Any]:
        """JSON schema of the post settings shown to users."""
        return cls.settings_model.model_json_schema()

    def parse_settings(self, raw: Mapping[str, Any] | BaseModel | None) -> SettingsT:
        """Validate raw settings into ``settings_model``; raises ValueError naming the field."""
        if isinstance(raw, self.settings_model):
            return raw  # type: ignore[return-value]
        if isinstance(raw, BaseModel):
            raw = raw.model_dump()
        try:
            return self.settings_model.model_validate(dict(raw or {}))  # type: ignore[return-value]
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ValueError(f"Invalid {self.display_name} settings: {problems}") from exc

    def validate(
        self,
        parts: Sequence[PostPart],
        settings: Mapping[str, Any] | BaseModel | None = None,
        credentials: ChannelCredentials | None = None,
    ) -> list[RuleViolation]:
        """Every reason these parts cannot be published here (empty list: it fits).

        Checks settings, emptiness, length per part, media count and type; subclasses extend
        with ``super().validate(...)`` plus their own rules.
        """
        violations: list[RuleViolation] = []
        if not parts:
            return [RuleViolation(code="empty", message="The post has no content")]
        try:
            self.parse_settings(settings)
        except ValueError as exc:
            violations.append(RuleViolation(code="settings", message=str(exc)))
        if len(parts) > 1 and not self.supports_replies:
            # Refused before storing: otherwise only the first part would go out at publish time.
            violations.append(
                RuleViolation(
                    code="replies",
                    message=f"{self.display_name} does not publish replies or comments; "
                    "the post must be a single part",
                    part_index=1,
                )
            )
        limit = self.max_length(credentials)
        rules = self.media_rules
        for index, part in enumerate(parts):
            if not part.content.strip() and not part.media:
                violations.append(
                    RuleViolation(code="empty", message="This part is empty", part_index=index)
                )
            length = self.text_length(part.content)
            if length > limit:
                violations.append(
                    RuleViolation(
                        code="too_long",
                        message=(
                            f"{self.display_name} allows {limit} characters; this part has {length}"
                        ),
                        part_index=index,
                    )
                )
            violations.extend(self._media_violations(index, part, rules))
        return violations

    def _media_violations(
        self, index: int, part: PostPart, rules: MediaRules
    ) -> list[RuleViolation]:
        out: list[RuleViolation] = []
        images = [m for m in part.media if m.type == "image"]
        videos = [m for m in part.media if m.type == "video"]
        name = self.display_name
        if index == 0 and len(part.media) < rules.min_media:
            out.append(
                RuleViolation(
                    code="media_required",
                    message=f"{name} needs at least {rules.min_media} media file(s)",
                    part_index=index,
                )
            )
        if index > 0 and part.media and not rules.replies_allow_media:
            out.append(
                RuleViolation(
                    code="reply_media",
                    message=f"{name} replies/comments must be text only",
                    part_index=index,
                )
            )
            return out
        if images and videos and not rules.allow_mixed:
            out.append(
                RuleViolation(
                    code="media_mixed",
                    message=f"{name} does not allow images and videos together",
                    part_index=index,
                )
            )
        if len(images) > rules.max_images:
            out.append(
                RuleViolation(
                    code="too_many_images",
                    message=f"{name} allows at most {rules.max_images} image(s)",
                    part_index=index,
                )
            )
        if len(videos) > rules.max_videos:
            out.append(
                RuleViolation(
                    code="too_many_videos",
                    message=f"{name} allows at most {rules.max_videos} video(s)",
                    part_index=index,
                )
            )
        for item in part.media:
            allowed = rules.image_mime_types if item.type == "image" else rules.video_mime_types
            if item.mime_type.lower() not in allowed:
                out.append(
                    RuleViolation(
                        code="media_type",
                        message=f"{name} does not accept {item.mime_type} files",
                        part_index=index,
                    )
                )
            limit = rules.max_image_bytes if item.type == "image" else rules.max_video_bytes
            if limit is not None and item.size is not None and item.size > limit:
                out.append(
                    RuleViolation(
                        code="media_size",
                        message=f"{name} accepts {item.type}s up to {limit:,} bytes; "
                        f"this one has {item.size:,}",
                        part_index=index,
                    )
                )
        return out

    # ---- tools --------------------------------------------------------------------------

    @classmethod
    def tool_names(cls) -> list[str]:
        """Names of the tools this provider offers."""
        names = []
        for attr in dir(cls):
            name = getattr(getattr(cls, attr, None), "__tidings_tool__", None)
            if isinstance(name, str):
                names.append(name)
        return sorted(names)

    async def call_tool(
        self, name: str, credentials: ChannelCredentials, args: Mapping[str, Any]
    ) -> Any:
        """Run tool ``name`` with a JSON dict of arguments."""
        for attr in dir(type(self)):
            method = getattr(self, attr, None)
            if getattr(method, "__tidings_tool__", None) == name and method is not None:
                return await method(credentials, dict(args))
        known = ", ".join(self.tool_names()) or "none"
        raise UnknownToolError(f"{self.display_name} has no tool {name!r} (tools: {known})")

    # ---- connecting ---------------------------------------------------------------------

    async def authorization_url(
        self,
        redirect_uri: str,
        state: str,
        code_verifier: str,
        custom_instance: Mapping[str, Any] | None = None,
    ) -> AuthorizationRequest:
        """Where to send the user to authorize (OAuth providers)."""
        raise ProviderError(f"{self.display_name} does not connect with OAuth")

    async def exchange_code(
        self,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        custom_instance_details: Mapping[str, Any] | None = None,
    ) -> ConnectedAccount:
        """Trade the callback's code for tokens and fetch the account's profile."""
        raise ProviderError(f"{self.display_name} does not connect with OAuth")

    async def connect_with_fields(self, values: Mapping[str, str]) -> ConnectedAccount:
        """Connect with credential fields (``fields``); raises ConnectError on bad values."""
        raise ProviderError(f"{self.display_name} does not connect with credential fields")

    def field_values(self, values: Mapping[str, str]) -> dict[str, str]:
        """``values`` completed with defaults; ConnectError names a missing required field."""
        out: dict[str, str] = {}
        for spec in self.fields:
            value = (values.get(spec.name) or "").strip() or spec.default
            if not value and spec.required:
                raise ConnectError(f"{spec.label} ({spec.name}) is required")
            if value:
                out[spec.name] = value
        return out

    async def refresh(self, credentials: ChannelCredentials) -> TokenSet:
        """New tokens; ``refresh_token`` None in the result means keep the stored one."""
        raise DisconnectedError(
            f"{self.display_name} tokens cannot be refreshed; reconnect the channel"
        )

    async def list_choices(self, credentials: ChannelCredentials) -> list[Choice]:
        """Pages/channels the user may pick while ``in_between_steps``."""
        raise ProviderError(f"{self.display_name} has nothing to pick")

    async def select_choice(
        self, credentials: ChannelCredentials, choice_id: str
    ) -> ConnectedAccount:
        """The account for the picked choice (``in_between_steps`` False)."""
        raise ProviderError(f"{self.display_name} has nothing to pick")

    # ---- publishing ---------------------------------------------------------------------

    async def publish(
        self, credentials: ChannelCredentials, part: PostPart, settings: SettingsT
    ) -> PublishResult:
        """Publish the first part of a post."""
        raise NotImplementedError

    async def reply(
        self,
        credentials: ChannelCredentials,
        parent: PublishResult,
        part: PostPart,
        settings: SettingsT,
    ) -> PublishResult:
        """Publish ``part`` as a reply/comment under ``parent`` (the previous part)."""
        raise ProviderError(f"{self.display_name} does not publish replies")

    async def find_published(
        self,
        credentials: ChannelCredentials,
        part: PostPart,
        settings: SettingsT,
        *,
        parent: PublishResult | None,
        since: datetime,
    ) -> PublishResult | None:
        """After an UnknownOutcomeError: the part as published since ``since`` (under
        ``parent`` for a reply), or None when the platform shows it was not published.

        Only providers with ``can_check_published`` implement it; the others raise
        ProviderError, and the engine must treat the outcome as unknown.
        """
        raise ProviderError(f"{self.display_name} cannot check whether a post was published")

    # ---- helpers for subclasses ---------------------------------------------------------

    def classify_error(self, response: httpx.Response) -> ProviderError | None:
        """Classify a response; override to refine :func:`classify_response` per platform."""
        return classify_response(response)

    def on_user_host(self, url: str) -> bool:
        """Whether ``url`` is on a host a user named rather than one this server configured
        (only for providers with ``user_hosts``)."""
        if not self.user_hosts:
            return False
        configured = {_origin(base) for base in self.config.urls.values()}
        return _origin(url) not in configured

    async def request(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool | None = None,
        user_host: bool | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """:func:`send` with this provider's classifier; a request to a user-given host
        (``user_host``, by default :meth:`on_user_host`) goes through ``guarded_send``."""
        if user_host is None:
            user_host = self.on_user_host(url)
        return await send(
            self.http,
            method,
            url,
            idempotent=idempotent,
            classify=self.classify_error,
            sender=self._guarded_send if user_host else None,
            **kwargs,
        )

    def client_auth(self) -> httpx.BasicAuth:
        """The client id and secret as HTTP Basic credentials (for token endpoints)."""
        return httpx.BasicAuth(self.config.client_id or "", self.config.client_secret or "")

    async def oauth_token(
        self,
        url: str,
        data: Mapping[str, str],
        *,
        purpose: Literal["exchange", "refresh"],
        refused: tuple[type[ProviderError], ...] = (),
        **kwargs: Any,
    ) -> dict[str, Any]:
        """POST a form to an OAuth 2 token endpoint and return its JSON.

        A refused grant (400/401/403, and the errors in ``refused`` where the platform's
        classification says more) is a ConnectError for a code exchange and a
        DisconnectedError for a refresh (the grant is gone: reconnect); 429/5xx stay retryable.
        """
        refusals: tuple[type[ProviderError], ...] = (BadBodyError, RefreshTokenError, *refused)
        try:
            response = await self.request("POST", url, data=dict(data), idempotent=True, **kwargs)
        except refusals as exc:
            if purpose == "exchange":
                raise ConnectError(
                    f"{self.display_name} refused the authorization: {exc.message}",
                    status_code=exc.status_code,
                    excerpt=exc.excerpt,
                ) from exc
            raise DisconnectedError(
                f"{self.display_name} refused to refresh the token: {exc.message}",
                status_code=exc.status_code,
                excerpt=exc.excerpt,
            ) from exc
        body = json_body(response)
        if not isinstance(body, dict):
            raise RetryableError(f"{self.display_name} token endpoint answered unexpected JSON")
        return body

    async def refresh_grant(
        self,
        credentials: ChannelCredentials,
        url: str,
        *,
        expired: str,
        form: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> TokenSet:
        """OAuth 2's ``refresh_token`` grant at ``url`` (``form`` adds fields such as client
        credentials; ``kwargs`` go to :meth:`oauth_token`). Without a stored refresh token the
        grant is gone: DisconnectedError with the ``expired`` message."""
        if not credentials.refresh_token:
            raise DisconnectedError(expired)
        data = {
            "grant_type": "refresh_token",
            "refresh_token": credentials.refresh_token,
            **(form or {}),
        }
        return token_set(await self.oauth_token(url, data, purpose="refresh", **kwargs))

    async def check_user_url(self, url: str) -> None:
        """Run the injected URL guard on a user-given base URL (no-op without a guard)."""
        if self._url_guard is not None:
            await self._url_guard(url)

    async def read_media(self, item: MediaItem) -> bytes:
        """The bytes of a media item: its ``read`` callable, else a download of its URL.

        The whole file is held in memory for the upload: fine for images and for platforms
        with small video limits (Bluesky, Mastodon, Telegram, Discord, Slack, Pinterest).
        Video uploads in pieces, as one PUT or as one multipart POST (YouTube, X, TikTok,
        LinkedIn, Reddit) use :meth:`open_media` instead.
        """
        if item.read is not None:
            return await item.read()
        # Media URLs are this server's own (or its storage's), not a user-named host.
        response = await self.request("GET", item.url, idempotent=True, user_host=False)
        return response.content

    @asynccontextmanager
    async def open_media(self, item: MediaItem) -> AsyncIterator[MediaBody]:
        """The item's bytes for an upload that goes in pieces or as a streamed body.

        With ``stream`` and ``size``: streamed from the source, never held whole. With a
        ``stream`` of unknown size (a downloaded URL): spooled to a temporary file first (in
        ``TMPDIR``), so the size can be sent before the bytes. Otherwise: :meth:`read_media`,
        held in memory.
        """
        if item.stream is not None and item.size is not None and item.size >= 0:
            yield MediaBody(item.size, item.stream, url=item.url)
        elif item.stream is not None:
            fd, path = tempfile.mkstemp(prefix="tidings-media-", suffix=".part")
            try:
                size = 0
                with os.fdopen(fd, "wb") as f:
                    async with closing_stream(item.stream()) as source:
                        async for piece in source:
                            await asyncio.to_thread(f.write, piece)
                            size += len(piece)
                yield MediaBody(size, _pieces_from_file(path), url=item.url)
            finally:
                await asyncio.to_thread(_unlink_quietly, path)
        else:
            content = await self.read_media(item)
            yield MediaBody(len(content), _pieces_of(content), url=item.url)

    async def read_thumbnail(self, item: MediaItem) -> bytes | None:
        """The bytes of a video's thumbnail, if it has one."""
        if item.read_thumbnail is not None:
            return await item.read_thumbnail()
        if item.thumbnail_url:
            response = await self.request(
                "GET", item.thumbnail_url, idempotent=True, user_host=False
            )
            return response.content
        return None


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _origin(url: str) -> str:
    parts = urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def token_set(data: Mapping[str, Any], *, now: datetime | None = None) -> TokenSet:
    """A TokenSet from an OAuth 2 token response (``expires_in`` seconds -> ``expires_at``)."""
    access = data.get("access_token")
    if not access:
        raise RetryableError("The token endpoint answered without an access token")
    expires_in = data.get("expires_in")
    expires_at = None
    if isinstance(expires_in, int | float | str) and str(expires_in).strip():
        try:
            expires_at = (now or datetime.now(UTC)) + timedelta(seconds=float(expires_in))
        except ValueError:
            expires_at = None
    refresh = data.get("refresh_token")
    return TokenSet(
        access_token=str(access),
        refresh_token=str(refresh) if refresh else None,
        expires_at=expires_at,
    )


def dump_json(data: Any) -> str:
    """Compact JSON used in request bodies and error excerpts."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
