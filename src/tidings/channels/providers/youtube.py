"""YouTube, through Google OAuth 2 (PKCE, offline access) and the YouTube Data API v3.

A post is exactly one video: its text is the description, the title and privacy come from the
settings. The video goes up with a resumable upload (a session, then the bytes); if the answer
to the bytes is lost, the provider asks the session whether the upload completed instead of
guessing, and resumes it when it did not. A playlist and a custom thumbnail are applied after
the upload; their failure never fails a video that is already up. YouTube has no replies here.

Google sends a refresh token with the first consent only (``prompt=consent`` asks again);
refreshing answers no new one, so the stored one is kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import httpx
from pydantic import AliasChoices, BaseModel, Field, field_validator

from tidings.channels.providers._common import authorization_request, tokens_of
from tidings.channels.providers.base import (
    AuthorizationRequest,
    BadBodyError,
    ChannelCredentials,
    Choice,
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
    RefreshTokenError,
    RetryableError,
    RuleViolation,
    TokenSet,
    UnknownOutcomeError,
    closing_stream,
    code_challenge,
    json_body,
    parse_retry_after,
    response_excerpt,
    response_json,
    response_message,
    token_set,
    tool,
)

SCOPES = (
    "https://www.googleapis.com/auth/youtube.upload",
    "https://www.googleapis.com/auth/youtube.readonly",
    "https://www.googleapis.com/auth/youtube",
)
QUOTA_REASONS = frozenset(
    {"quotaExceeded", "rateLimitExceeded", "userRateLimitExceeded", "uploadLimitExceeded"}
)
GONE_REASONS = frozenset(
    {
        "youtubeSignupRequired",
        "accountClosed",
        "accountSuspended",
        "channelClosed",
        "channelSuspended",
        "insufficientPermissions",
        "forbidden",
    }
)
TITLE_MAX = 100
TAGS_MAX_CHARS = 500
PLAYLIST_PAGES = 10


class YouTubeSettings(ProviderSettings):
    """YouTube video settings (field names as Postiz sends them are accepted too)."""

    title: str = Field(min_length=1, max_length=TITLE_MAX, description="Video title")
    type: Literal["public", "private", "unlisted"] = Field(
        default="public",
        validation_alias=AliasChoices("type", "privacy"),
        description="Who can watch the video",
    )
    made_for_kids: bool = Field(
        default=False,
        validation_alias=AliasChoices("made_for_kids", "selfDeclaredMadeForKids"),
        description="The video is made for children",
    )
    tags: list[str] = Field(default_factory=list, description="Tags (500 characters in all)")
    category_id: str = Field(default="22", pattern=r"^\d+$", description="Video category id")
    playlist_id: str | None = Field(default=None, description="Add the video to this playlist")
    thumbnail: bool = Field(
        default=False,
        description="Use the video's cover as its custom thumbnail (verified channels only)",
    )
    notify_subscribers: bool = Field(default=True, description="Notify the channel's subscribers")

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        if "<" in value or ">" in value:
            raise ValueError("YouTube titles cannot contain < or >")
        return value

    @field_validator("made_for_kids", mode="before")
    @classmethod
    def _yes_no(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() in ("yes", "no"):
            return value.lower() == "yes"
        return value

    @field_validator("tags", mode="before")
    @classmethod
    def _tag_labels(cls, value: Any) -> Any:
        # Postiz sends [{"value": "tag", "label": "tag"}, ...].
        if isinstance(value, list):
            return [
                str(v.get("value") or v.get("label") or "") if isinstance(v, dict) else v
                for v in value
            ]
        return value

    @field_validator("tags")
    @classmethod
    def _tags_budget(cls, value: list[str]) -> list[str]:
        # YouTube counts a tag with a space as if it were quoted, plus a comma between tags.
        total = sum(len(t) + (2 if " " in t else 0) for t in value) + max(0, len(value) - 1)
        if total > TAGS_MAX_CHARS:
            raise ValueError(f"tags take {total} characters; YouTube allows {TAGS_MAX_CHARS}")
        return value


class YouTubeProvider(Provider[YouTubeSettings]):
    identifier = "youtube"
    display_name = "YouTube"
    connect_kind = "oauth"
    scopes = SCOPES
    supports_replies = False
    default_max_length = 5000
    media_rules = MediaRules(
        max_images=0,
        max_videos=1,
        min_media=1,
        video_mime_types=frozenset(
            {"video/mp4", "video/quicktime", "video/webm", "video/x-msvideo", "video/mpeg"}
        ),
    )
    settings_model = YouTubeSettings
    # Pieces of the streamed upload body (the whole video goes in one PUT).
    stream_chunk_size = 1024 * 1024
    default_urls = {
        "auth": "https://accounts.google.com",
        "token": "https://oauth2.googleapis.com",
        "api": "https://www.googleapis.com",
        "web": "https://www.youtube.com",
    }

    # ---- limits -------------------------------------------------------------------------

    def validate(
        self,
        parts: Sequence[PostPart],
        settings: Mapping[str, Any] | BaseModel | None = None,
        credentials: ChannelCredentials | None = None,
    ) -> list[RuleViolation]:
        violations = super().validate(parts, settings, credentials)
        if parts and any(c in parts[0].content for c in "<>"):
            violations.append(
                RuleViolation(
                    code="invalid_characters",
                    message="YouTube descriptions cannot contain < or >",
                    part_index=0,
                )
            )
        if parts and any(m.type == "image" for m in parts[0].media):
            violations.append(
                RuleViolation(
                    code="media_type",
                    message="YouTube takes exactly one video and no images",
                    part_index=0,
                )
            )
        return violations

    # ---- errors -------------------------------------------------------------------------

    def classify_error(self, response: httpx.Response) -> ProviderError | None:
        status = response.status_code
        if status < 400:
            return None
        body = response_json(response)
        error = body.get("error") if isinstance(body, dict) else None
        reasons: set[str] = set()
        if isinstance(error, dict):
            reasons = {
                str(e.get("reason"))
                for e in error.get("errors") or []
                if isinstance(e, dict) and e.get("reason")
            }
        message = f"YouTube: {response_message(response)}"
        excerpt = response_excerpt(response)
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if status == 401:
            return RefreshTokenError(message, status_code=status, excerpt=excerpt)
        if reasons & QUOTA_REASONS or status == 429:
            # The daily quota resets at midnight Pacific time: no point retrying in seconds.
            if retry_after is None and reasons & {"quotaExceeded", "uploadLimitExceeded"}:
                retry_after = 3600.0
            return RetryableError(
                message, status_code=status, excerpt=excerpt, retry_after=retry_after
            )
        if reasons & GONE_REASONS:
            return DisconnectedError(message, status_code=status, excerpt=excerpt)
        if status >= 500 or status == 408:
            return RetryableError(
                message, status_code=status, excerpt=excerpt, retry_after=retry_after
            )
        return BadBodyError(message, status_code=status, excerpt=excerpt)

    # ---- plumbing -------------------------------------------------------------------------

    def _api(self, path: str) -> str:
        return f"{self.config.url('api')}/{path.lstrip('/')}"

    @staticmethod
    def _auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def _channels(self, token: str) -> list[dict[str, Any]]:
        response = await self.request(
            "GET",
            self._api("youtube/v3/channels"),
            params={"part": "snippet", "mine": "true", "maxResults": "50"},
            headers=self._auth(token),
        )
        return [c for c in json_body(response).get("items") or [] if isinstance(c, dict)]

    def _account(
        self, channel: Mapping[str, Any], tokens: TokenSet, *, pending: bool = False
    ) -> ConnectedAccount:
        snippet = channel.get("snippet") or {}
        thumbnails = snippet.get("thumbnails") or {}
        picture = next(
            (
                thumbnails[size]["url"]
                for size in ("high", "medium", "default")
                if isinstance(thumbnails.get(size), dict) and thumbnails[size].get("url")
            ),
            None,
        )
        return ConnectedAccount(
            internal_id=str(channel["id"]),
            name=str(snippet.get("title") or channel["id"]),
            username=snippet.get("customUrl"),
            picture=picture,
            tokens=tokens,
            in_between_steps=pending,
        )

    # ---- connecting ---------------------------------------------------------------------

    async def authorization_url(
        self,
        redirect_uri: str,
        state: str,
        code_verifier: str,
        custom_instance: Mapping[str, Any] | None = None,
    ) -> AuthorizationRequest:
        """Google's consent screen, asking for offline access (a refresh token)."""
        return authorization_request(
            self,
            f"{self.config.url('auth')}/o/oauth2/v2/auth",
            {
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "scope": " ".join(self.scopes),
                "access_type": "offline",
                "prompt": "consent",
                "include_granted_scopes": "true",
                "state": state,
                "code_challenge": code_challenge(code_verifier),
                "code_challenge_method": "S256",
            },
        )

    async def exchange_code(
        self,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        custom_instance_details: Mapping[str, Any] | None = None,
    ) -> ConnectedAccount:
        """Trade the code, then find the channel (a pick when the account has several)."""
        data = await self.oauth_token(
            f"{self.config.url('token')}/token",
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": self.config.client_id or "",
                "client_secret": self.config.client_secret or "",
                "code_verifier": code_verifier,
            },
            purpose="exchange",
        )
        tokens = token_set(data)
        channels = await self._channels(tokens.access_token)
        if not channels:
            raise ConnectError("This Google account has no YouTube channel; create one first")
        return self._account(channels[0], tokens, pending=len(channels) > 1)

    async def refresh(self, credentials: ChannelCredentials) -> TokenSet:
        """A new access token; Google keeps the refresh token (none comes back)."""
        return await self.refresh_grant(
            credentials,
            f"{self.config.url('token')}/token",
            expired="The YouTube authorization expired; reconnect the channel",
            form={
                "client_id": self.config.client_id or "",
                "client_secret": self.config.client_secret or "",
            },
        )

    async def list_choices(self, credentials: ChannelCredentials) -> list[Choice]:
        """The channels the authorized account manages."""
        choices = []
        for channel in await self._channels(credentials.access_token):
            account = self._account(channel, tokens_of(credentials))
            choices.append(
                Choice(
                    id=account.internal_id,
                    name=account.name,
                    picture=account.picture,
                    username=account.username,
                )
            )
        return choices

    async def select_choice(
        self, credentials: ChannelCredentials, choice_id: str
    ) -> ConnectedAccount:
        """Publish on channel ``choice_id``."""
        for channel in await self._channels(credentials.access_token):
            if str(channel["id"]) == choice_id:
                return self._account(channel, tokens_of(credentials))
        raise ConnectError(f"YouTube channel {choice_id} is not one of this account's")

    @tool("playlists")
    async def playlists_tool(
        self, credentials: ChannelCredentials, args: dict[str, Any]
    ) -> list[dict[str, str]]:
        """The channel's playlists (for the ``playlist_id`` setting)."""
        out: list[dict[str, str]] = []
        params = {"part": "snippet", "mine": "true", "maxResults": "50"}
        for _ in range(PLAYLIST_PAGES):
            data = json_body(
                await self.request(
                    "GET",
                    self._api("youtube/v3/playlists"),
                    params=params,
                    headers=self._auth(credentials.access_token),
                )
            )
            for item in data.get("items") or []:
                out.append(
                    {"id": str(item["id"]), "title": str((item.get("snippet") or {}).get("title"))}
                )
            if not data.get("nextPageToken"):
                break
            params = {**params, "pageToken": str(data["nextPageToken"])}
        return out

    # ---- publishing ---------------------------------------------------------------------

    def _metadata(self, part: PostPart, settings: YouTubeSettings) -> dict[str, Any]:
        snippet: dict[str, Any] = {
            "title": settings.title,
            "description": part.content,
            "categoryId": settings.category_id,
        }
        if settings.tags:
            snippet["tags"] = settings.tags
        return {
            "snippet": snippet,
            "status": {
                "privacyStatus": settings.type,
                "selfDeclaredMadeForKids": settings.made_for_kids,
            },
        }

    async def _put(
        self, token: str, session: str, body: MediaBody, mime: str, start: int | None = None
    ) -> httpx.Response:
        """PUT the bytes, streamed with their exact Content-Length (never held whole); with
        ``start``, resume the upload from that byte on (a Content-Range says so)."""
        headers = {
            **self._auth(token),
            "Content-Type": mime,
            "Content-Length": str(body.size - (start or 0)),
        }
        if start is not None:
            headers["Content-Range"] = f"bytes {start}-{body.size - 1}/{body.size}"
        chunks = body.chunks(self.stream_chunk_size, start=start or 0)
        async with closing_stream(chunks):
            return await self.request(
                "PUT",
                session,
                content=chunks,
                headers=headers,
                idempotent=False,  # completing the upload creates the video
            )

    async def _upload(self, token: str, session: str, body: MediaBody, mime: str) -> dict[str, Any]:
        """PUT the bytes; when the answer is lost, ask the session how far it got."""
        try:
            response = await self._put(token, session, body, mime)
        except UnknownOutcomeError as lost:
            return await self._recover(token, session, body, mime, lost)
        return dict(json_body(response))

    async def _recover(
        self, token: str, session: str, body: MediaBody, mime: str, lost: UnknownOutcomeError
    ) -> dict[str, Any]:
        size = body.size
        try:
            status = await self.request(
                "PUT",
                session,
                headers={**self._auth(token), "Content-Range": f"bytes */{size}"},
                idempotent=True,  # a status query changes nothing
            )
        except ProviderError:
            raise lost from None
        if status.status_code in (200, 201):
            return dict(json_body(status))  # it was complete: the video exists
        if status.status_code != 308:
            raise lost
        received = 0
        range_header = status.headers.get("range", "")
        if range_header.startswith("bytes=0-"):
            received = int(range_header.removeprefix("bytes=0-")) + 1
        response = await self._put(token, session, body, mime, received)
        return dict(json_body(response))

    async def _after_upload(
        self, token: str, video_id: str, item: MediaItem, settings: YouTubeSettings
    ) -> dict[str, Any]:
        """Playlist and thumbnail: extras whose failure must not fail the uploaded video."""
        notes: dict[str, Any] = {}
        if settings.playlist_id:
            try:
                await self.request(
                    "POST",
                    self._api("youtube/v3/playlistItems"),
                    params={"part": "snippet"},
                    json={
                        "snippet": {
                            "playlistId": settings.playlist_id,
                            "resourceId": {"kind": "youtube#video", "videoId": video_id},
                        }
                    },
                    headers=self._auth(token),
                )
            except ProviderError as exc:
                notes["playlist_error"] = exc.message
        if settings.thumbnail:
            try:
                image = await self.read_thumbnail(item)
                if image:
                    await self.request(
                        "POST",
                        self._api("upload/youtube/v3/thumbnails/set"),
                        params={"videoId": video_id, "uploadType": "media"},
                        content=image,
                        headers={**self._auth(token), "Content-Type": "image/jpeg"},
                        idempotent=True,
                    )
            except ProviderError as exc:
                notes["thumbnail_error"] = exc.message
        return notes

    async def publish(
        self, credentials: ChannelCredentials, part: PostPart, settings: YouTubeSettings
    ) -> PublishResult:
        """Upload the video (resumable), then add it to a playlist / set its thumbnail."""
        videos = [m for m in part.media if m.type == "video"]
        if len(videos) != 1 or len(part.media) != 1:
            raise BadBodyError("A YouTube post is exactly one video")
        item = videos[0]
        async with self.open_media(item) as body:
            return await self._publish(credentials, part, settings, item, body)

    async def _publish(
        self,
        credentials: ChannelCredentials,
        part: PostPart,
        settings: YouTubeSettings,
        item: MediaItem,
        body: MediaBody,
    ) -> PublishResult:
        token = credentials.access_token
        start = await self.request(
            "POST",
            self._api("upload/youtube/v3/videos"),
            params={
                "uploadType": "resumable",
                "part": "snippet,status",
                "notifySubscribers": "true" if settings.notify_subscribers else "false",
            },
            json=self._metadata(part, settings),
            headers={
                **self._auth(token),
                "X-Upload-Content-Length": str(body.size),
                "X-Upload-Content-Type": item.mime_type,
            },
            idempotent=True,  # opening an upload session creates nothing
        )
        session = start.headers.get("location")
        if not session:
            raise RetryableError("YouTube opened no upload session", status_code=start.status_code)
        video = await self._upload(token, session, body, item.mime_type)
        video_id = str(video["id"])
        notes = await self._after_upload(token, video_id, item, settings)
        return PublishResult(
            id=video_id,
            url=f"{self.config.url('web')}/watch?v={video_id}",
            data=notes,
        )
