"""X (Twitter), API v2 with OAuth 2 user context (PKCE).

Text is counted the way twitter-text v3 does: NFC-normalised code points weigh 1 inside the
Latin/General-Punctuation ranges and 2 elsewhere (CJK, most symbols), an emoji sequence weighs 2
whatever its length, and every URL weighs 23. Images use the simple v2 upload; videos and GIFs the
chunked initialize/append/finalize flow, then status polling until processed.
"""

from __future__ import annotations

import asyncio
import html
import time
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
import regex
from pydantic import Field

from tidings.channels.providers.base import (
    AuthorizationRequest,
    BadBodyError,
    ChannelCredentials,
    ConnectedAccount,
    ConnectError,
    DisconnectedError,
    MediaBody,
    MediaItem,
    MediaRules,
    PostPart,
    Provider,
    ProviderError,
    ProviderSettings,
    PublishResult,
    RetryableError,
    TokenSet,
    classify_response,
    closing_stream,
    code_challenge,
    json_body,
    parse_retry_after,
    response_excerpt,
    response_json,
    response_message,
    token_set,
)

# twitter-text v3 configuration.
WEIGHT_SCALE = 100
DEFAULT_WEIGHT = 200
LIGHT_RANGES = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))
URL_WEIGHT = 23 * WEIGHT_SCALE
EMOJI_WEIGHT = 200

# Common top-level domains for URLs written without a scheme ("example.com" counts as a URL).
_TLDS = (
    "com|net|org|edu|gov|mil|int|io|co|ai|app|dev|me|ly|gl|tv|fm|to|info|biz|xyz|news|blog|"
    "shop|site|online|tech|uk|us|ca|de|fr|es|it|nl|be|ch|at|se|no|dk|fi|pl|pt|ie|jp|cn|kr|in|"
    "au|nz|br|mx|ar|ru|ua|eu|asia|social|link|page|art|so|sh|gg|cc|id|im"
)
URL = regex.compile(
    r"(?<![\w@.\-/])(?:https?://[^\s<>\"]+|(?:www\.)?(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+"
    rf"(?:{_TLDS})(?![\w-])(?:[/?#][^\s<>\"]*)?)",
    regex.IGNORECASE,
)
TRAILING = ".,;:!?'\")]"
GRAPHEME = regex.compile(r"\X")
EMOJI = regex.compile(r"\p{Extended_Pictographic}|\p{Regional_Indicator}")


def _code_point_weight(char: str) -> int:
    code = ord(char)
    for low, high in LIGHT_RANGES:
        if low <= code <= high:
            return WEIGHT_SCALE
    return DEFAULT_WEIGHT


def _segment_weight(text: str) -> int:
    total = 0
    for cluster in GRAPHEME.findall(text):
        if EMOJI.search(cluster):
            total += EMOJI_WEIGHT
        else:
            total += sum(_code_point_weight(c) for c in cluster)
    return total


def weighted_length(text: str) -> int:
    """Length of ``text`` as X counts it (see the module docstring)."""
    text = unicodedata.normalize("NFC", text)
    total = 0
    position = 0
    for match in URL.finditer(text):
        url = match.group(0)
        trimmed = url.rstrip(TRAILING)
        start = match.start()
        total += _segment_weight(text[position:start]) + URL_WEIGHT
        position = start + len(trimmed)
    total += _segment_weight(text[position:])
    return total // WEIGHT_SCALE


class XSettings(ProviderSettings):
    """X post settings."""

    who_can_reply_post: Literal[
        "everyone", "following", "mentionedUsers", "subscribers", "verified"
    ] = Field(default="everyone", description="Who may reply to the post")
    community_id: str | None = Field(
        default=None, pattern=r"^\d+$", description="Post into this X Community (its id)"
    )


class XProvider(Provider[XSettings]):
    identifier = "x"
    display_name = "X"
    connect_kind = "oauth"
    # A public client (PKCE without a secret) is enough.
    required_config = ("client_id",)
    scopes = ("tweet.read", "tweet.write", "users.read", "offline.access", "media.write")
    default_max_length = 280
    text_counting = "x_weighted"
    verified_max_length = 4000
    media_rules = MediaRules(
        max_images=4,
        max_videos=1,
        image_mime_types=frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"}),
        video_mime_types=frozenset({"video/mp4", "video/quicktime"}),
        max_image_bytes=5 * 1024 * 1024,
        max_video_bytes=512 * 1024 * 1024,
    )
    settings_model = XSettings
    default_urls = {"api": "https://api.x.com", "auth": "https://x.com", "web": "https://x.com"}
    can_check_published = True
    chunk_size = 4 * 1024 * 1024
    media_poll_timeout = 600.0
    max_poll_wait = 10.0

    # ---- limits -------------------------------------------------------------------------

    def max_length(self, credentials: ChannelCredentials | None = None) -> int:
        if credentials is not None and credentials.additional_settings.get("verified"):
            return self.verified_max_length
        return self.default_max_length

    def text_length(self, text: str) -> int:
        return weighted_length(text)

    # ---- errors -------------------------------------------------------------------------

    def classify_error(self, response: httpx.Response) -> ProviderError | None:
        status = response.status_code
        if status < 400:
            return None
        data = response_json(response)
        message = None
        if isinstance(data, dict):
            errors = data.get("errors")
            if isinstance(errors, list) and errors:
                message = "; ".join(
                    str(e.get("message") or e.get("detail")) for e in errors if isinstance(e, dict)
                )
            message = message or data.get("detail") or data.get("title")
        text = f"X: {message or response_message(response)}"
        excerpt = response_excerpt(response)
        lowered = text.lower()
        if status == 403 and any(w in lowered for w in ("suspended", "locked", "deactivated")):
            return DisconnectedError(text, status_code=status, excerpt=excerpt)
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            reset = response.headers.get("x-rate-limit-reset")
            if retry_after is None and reset and reset.isdigit():
                retry_after = max(0.0, float(reset) - time.time())
            return RetryableError(
                text, status_code=status, excerpt=excerpt, retry_after=retry_after
            )
        return classify_response(response, message=text)

    # ---- connecting ---------------------------------------------------------------------

    def _client_id(self) -> str:
        if not self.config.client_id:
            raise ProviderError("X is not configured: set TIDINGS_X_CLIENT_ID")
        return self.config.client_id

    def _token_auth(self, data: dict[str, str]) -> dict[str, Any]:
        # Confidential clients authenticate with HTTP Basic; public ones send client_id.
        if self.config.client_secret:
            return {"auth": (self._client_id(), self.config.client_secret)}
        data["client_id"] = self._client_id()
        return {}

    async def authorization_url(
        self,
        redirect_uri: str,
        state: str,
        code_verifier: str,
        custom_instance: Mapping[str, Any] | None = None,
    ) -> AuthorizationRequest:
        """The x.com consent page, with PKCE S256."""
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self._client_id(),
                "redirect_uri": redirect_uri,
                "scope": " ".join(self.scopes),
                "state": state,
                "code_challenge": code_challenge(code_verifier),
                "code_challenge_method": "S256",
            }
        )
        return AuthorizationRequest(url=f"{self.config.url('auth')}/i/oauth2/authorize?{query}")

    async def exchange_code(
        self,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        custom_instance_details: Mapping[str, Any] | None = None,
    ) -> ConnectedAccount:
        """Trade the code for tokens and read the user (``verified`` decides the limit)."""
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        }
        extra = self._token_auth(data)
        tokens = token_set(
            await self.oauth_token(
                f"{self.config.url('api')}/2/oauth2/token", data, purpose="exchange", **extra
            )
        )
        response = await self.request(
            "GET",
            f"{self.config.url('api')}/2/users/me",
            params={"user.fields": "profile_image_url,verified,verified_type"},
            headers={"Authorization": f"Bearer {tokens.access_token}"},
        )
        user = (json_body(response) or {}).get("data") or {}
        if not user.get("id"):
            raise ConnectError("X did not return the account")
        picture = user.get("profile_image_url")
        if isinstance(picture, str):
            picture = picture.replace("_normal.", "_400x400.")  # the larger avatar
        return ConnectedAccount(
            internal_id=str(user["id"]),
            name=str(user.get("name") or user.get("username")),
            picture=picture,
            username=user.get("username"),
            tokens=tokens,
            additional_settings={"verified": bool(user.get("verified"))},
        )

    async def refresh(self, credentials: ChannelCredentials) -> TokenSet:
        """Refresh (X rotates the refresh token; a refused one means reconnect)."""
        if not credentials.refresh_token:
            raise DisconnectedError("X did not grant offline access; reconnect the channel")
        data = {"grant_type": "refresh_token", "refresh_token": credentials.refresh_token}
        extra = self._token_auth(data)
        return token_set(
            await self.oauth_token(
                f"{self.config.url('api')}/2/oauth2/token", data, purpose="refresh", **extra
            )
        )

    # ---- media --------------------------------------------------------------------------

    def _auth(self, credentials: ChannelCredentials) -> dict[str, str]:
        return {"Authorization": f"Bearer {credentials.access_token}"}

    async def _upload(self, credentials: ChannelCredentials, item: MediaItem) -> str:
        api = self.config.url("api")
        auth = self._auth(credentials)
        chunked = item.type == "video" or item.mime_type == "image/gif"
        if not chunked:
            # Images (5 MB at most) go up whole in one request.
            response = await self.request(
                "POST",
                f"{api}/2/media/upload",
                headers=auth,
                files={"media": ("media", await self.read_media(item), item.mime_type)},
                data={"media_category": "tweet_image", "media_type": item.mime_type},
                idempotent=True,
            )
            media_id = str(json_body(response)["data"]["id"])
        else:
            async with self.open_media(item) as body:
                media_id = await self._chunked_upload(credentials, item, body)
        if item.alt:
            await self.request(
                "POST",
                f"{api}/2/media/metadata",
                headers=auth,
                json={"id": media_id, "metadata": {"alt_text": {"text": item.alt[:1000]}}},
                idempotent=True,
            )
        return media_id

    async def _chunked_upload(
        self, credentials: ChannelCredentials, item: MediaItem, body: MediaBody
    ) -> str:
        """INIT, one APPEND per ``chunk_size`` segment as it is read (the file is never held
        whole), FINALIZE, then wait for processing."""
        api = self.config.url("api")
        auth = self._auth(credentials)
        category = "tweet_gif" if item.mime_type == "image/gif" else "tweet_video"
        init = await self.request(
            "POST",
            f"{api}/2/media/upload/initialize",
            headers=auth,
            json={
                "media_type": item.mime_type,
                "total_bytes": body.size,
                "media_category": category,
            },
            idempotent=True,
        )
        media_id = str(json_body(init)["data"]["id"])
        index = 0
        async with closing_stream(body.chunks(self.chunk_size)) as segments:
            async for segment in segments:
                await self.request(
                    "POST",
                    f"{api}/2/media/upload/{media_id}/append",
                    headers=auth,
                    files={"media": ("chunk", segment, "application/octet-stream")},
                    data={"segment_index": str(index)},
                    idempotent=True,
                )
                index += 1
        final = await self.request(
            "POST", f"{api}/2/media/upload/{media_id}/finalize", headers=auth, idempotent=True
        )
        info = (json_body(final).get("data") or {}).get("processing_info")
        deadline = time.monotonic() + self.media_poll_timeout
        while info and info.get("state") in ("pending", "in_progress"):
            if time.monotonic() > deadline:
                raise RetryableError(f"X is still processing media {media_id}")
            wait = float(info.get("check_after_secs") or 1)
            await asyncio.sleep(min(wait, self.max_poll_wait))
            status = await self.request(
                "GET",
                f"{api}/2/media/upload",
                headers=auth,
                params={"command": "STATUS", "media_id": media_id},
            )
            info = (json_body(status).get("data") or {}).get("processing_info")
        if info and info.get("state") == "failed":
            error = info.get("error") or {}
            raise BadBodyError(
                f"X could not process the media: {error.get('message') or error or 'failed'}"
            )
        return media_id

    # ---- publishing ---------------------------------------------------------------------

    async def _tweet(
        self,
        credentials: ChannelCredentials,
        part: PostPart,
        settings: XSettings,
        reply_to: str | None,
    ) -> PublishResult:
        media_ids = [await self._upload(credentials, m) for m in part.media]
        body: dict[str, Any] = {"text": part.content}
        if media_ids:
            body["media"] = {"media_ids": media_ids}
        if reply_to:
            body["reply"] = {"in_reply_to_tweet_id": reply_to}
        else:
            if settings.who_can_reply_post != "everyone":
                body["reply_settings"] = settings.who_can_reply_post
            if settings.community_id:
                body["community_id"] = settings.community_id
        response = await self.request(
            "POST",
            f"{self.config.url('api')}/2/tweets",
            headers=self._auth(credentials),
            json=body,
        )
        tweet_id = str(json_body(response)["data"]["id"])
        user = credentials.profile or "i/web"
        return PublishResult(id=tweet_id, url=f"{self.config.url('web')}/{user}/status/{tweet_id}")

    async def publish(
        self, credentials: ChannelCredentials, part: PostPart, settings: XSettings
    ) -> PublishResult:
        """Post a tweet (media uploaded first)."""
        return await self._tweet(credentials, part, settings, None)

    async def reply(
        self,
        credentials: ChannelCredentials,
        parent: PublishResult,
        part: PostPart,
        settings: XSettings,
    ) -> PublishResult:
        """Post a tweet replying to ``parent``."""
        return await self._tweet(credentials, part, settings, parent.id)

    async def find_published(
        self,
        credentials: ChannelCredentials,
        part: PostPart,
        settings: XSettings,
        *,
        parent: PublishResult | None,
        since: datetime,
    ) -> PublishResult | None:
        """Look for the part among the user's tweets since ``since``: same reply target and the
        same text once links (which X rewrites to t.co) and HTML escapes are normalised."""
        start = (since - timedelta(minutes=2)).astimezone(UTC)
        response = await self.request(
            "GET",
            f"{self.config.url('api')}/2/users/{credentials.internal_id}/tweets",
            headers=self._auth(credentials),
            params={
                "start_time": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "max_results": "20",
                "tweet.fields": "created_at,referenced_tweets",
            },
        )
        wanted = _comparable(part.content)
        for tweet in json_body(response).get("data") or []:
            replied_to = next(
                (
                    str(ref.get("id"))
                    for ref in tweet.get("referenced_tweets") or []
                    if ref.get("type") == "replied_to"
                ),
                None,
            )
            if replied_to != (parent.id if parent else None):
                continue
            if _comparable(str(tweet.get("text") or "")) == wanted:
                tweet_id = str(tweet["id"])
                user = credentials.profile or "i/web"
                return PublishResult(
                    id=tweet_id, url=f"{self.config.url('web')}/{user}/status/{tweet_id}"
                )
        return None


def _comparable(text: str) -> str:
    """Text as X shows it and as we sent it, made comparable: links as a placeholder."""
    text = unicodedata.normalize("NFC", html.unescape(text))
    return " ".join(URL.sub("<url>", text).split())
