"""Small helpers shared by the providers (authorization URLs, polling until the platform has
processed something, media file names, timestamps). Not a provider module: the registry skips
modules whose name starts with an underscore."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode

from tidings.channels.providers.base import (
    AuthorizationRequest,
    ChannelCredentials,
    MediaItem,
    PostPart,
    Provider,
    ProviderError,
    RetryableError,
    RuleViolation,
    TokenSet,
    config_value,
    env_prefix,
)

T = TypeVar("T")

_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/webp": "webp",
    "video/mp4": "mp4",
    "video/quicktime": "mov",
    "video/webm": "webm",
}


def extra_setting(provider: Provider[Any], key: str) -> str | None:
    """A provider-wide secret that is not an OAuth client credential (e.g. Discord's bot token):
    ``config.extra[key]``, else ``TIDINGS_<ID>_<KEY>`` from the environment."""
    return config_value(provider.identifier, provider.config, key)


def with_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` appended as a query string."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}{urlencode(dict(params))}"


def authorization_request(
    provider: Provider[Any],
    url: str,
    query: Mapping[str, str],
    *,
    client_key: str = "client_id",
    name: str | None = None,
) -> AuthorizationRequest:
    """Where to send the user to authorize: ``url`` with the server's client id (as
    ``client_key``) followed by ``query``. Without a client id, a ProviderError names the
    variable to set (the ``env_fallback`` provider's, when there is one)."""
    client_id = provider.config.client_id
    if not client_id:
        variable = env_prefix(provider.env_fallback or provider.identifier) + "CLIENT_ID"
        raise ProviderError(f"{name or provider.display_name} is not configured ({variable})")
    return AuthorizationRequest(url=with_query(url, {client_key: client_id, **query}))


def media_filename(item: MediaItem, index: int = 0) -> str:
    """A file name for an upload: the URL's last segment, else ``media<index>.<ext>``."""
    name = item.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    if name and "." in name:
        return name
    return f"media{index}.{_EXTENSIONS.get(item.mime_type.lower(), 'bin')}"


def tokens_of(credentials: ChannelCredentials) -> TokenSet:
    """The stored tokens of a channel, as a TokenSet (for re-picks that keep the tokens)."""
    return TokenSet(
        access_token=credentials.access_token,
        refresh_token=credentials.refresh_token,
        expires_at=credentials.token_expires_at,
    )


def short_key(*parts: str, length: int = 25) -> str:
    """A stable hex digest of ``parts`` cut to ``length`` (platform nonces have size limits)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:length]


def total_media_violations(
    parts: Sequence[PostPart], limit: int, name: str, *, first_only: bool = False
) -> list[RuleViolation]:
    """A violation for every part carrying more than ``limit`` files in all."""
    out = []
    for index, part in enumerate(parts):
        if first_only and index > 0:
            break
        if len(part.media) > limit:
            out.append(
                RuleViolation(
                    code="too_many_media",
                    message=f"{name} allows at most {limit} files per post",
                    part_index=index,
                )
            )
    return out


async def poll(
    check: Callable[[], Awaitable[T | None]],
    *,
    interval: float,
    give_up_after: float,
    what: str,
    wait_first: bool = False,
) -> T:
    """Call ``check`` every ``interval`` seconds until it returns something (``wait_first``:
    the first call too comes after ``interval``, when the platform said it is processing).

    RetryableError after ``give_up_after`` seconds: the platform is still processing, so the
    whole publish is tried again later."""
    deadline = time.monotonic() + give_up_after
    if wait_first:
        await asyncio.sleep(interval)
    while True:
        result = await check()
        if result is not None:
            return result
        if time.monotonic() + interval > deadline:
            raise RetryableError(f"{what} is still being processed; try again later")
        await asyncio.sleep(interval)


# Platforms' clocks and ours differ a little: a post found slightly "before" the attempt started
# is still the one that attempt made.
CLOCK_SKEW = timedelta(minutes=2)


def parse_time(value: Any) -> datetime | None:
    """A platform timestamp (ISO 8601 with ``Z`` / ``+0000`` / offset, or Unix seconds)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():
        text = f"{text[:-2]}:{text[-2:]}"  # +0000 -> +00:00
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def recent(value: Any, since: datetime) -> bool:
    """Whether a platform timestamp is at or after ``since`` (allowing for clock skew)."""
    when = parse_time(value)
    return when is not None and when >= since - CLOCK_SKEW
