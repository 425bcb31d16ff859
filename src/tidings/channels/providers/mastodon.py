"""Mastodon, on any instance the user names.

The app is registered on the instance at connect time (``POST /api/v1/apps``) unless Tidings has
configured credentials for that instance (``TIDINGS_MASTODON_CLIENT_ID``/``_SECRET`` with
``TIDINGS_MASTODON_INSTANCE_URL``); the instance URL and the app's client id/secret travel in
``custom_instance_details``. Tokens do not expire. Media go through ``POST /api/v2/media``, which
may answer 202 while a video is processed: the provider polls ``GET /api/v1/media/:id``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

import httpx
import regex
from pydantic import BaseModel, Field

from tidings.channels.providers._common import poll
from tidings.channels.providers.base import (
    AuthorizationRequest,
    BadBodyError,
    ChannelCredentials,
    ConnectedAccount,
    ConnectError,
    DisconnectedError,
    FieldSpec,
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
    classify_response,
    code_challenge,
    json_body,
    parse_retry_after,
    response_excerpt,
    response_message,
    token_set,
)

# Mastodon counts graphemes, every URL as 23 characters and a remote mention by its local part.
URL = regex.compile(r"(?<![\w/])https?://[^\s<>\"]+", regex.IGNORECASE)
MENTION = regex.compile(r"(?<![\w@])@([a-zA-Z0-9_]+(?:[a-zA-Z0-9_.-]+[a-zA-Z0-9_])?)@[\w.-]+\w")
GRAPHEME = regex.compile(r"\X")
URL_LENGTH = 23


def mastodon_length(text: str, url_length: int = URL_LENGTH) -> int:
    """Characters as Mastodon's status length validator counts them."""
    text = URL.sub("x" * url_length, text)
    text = MENTION.sub(lambda m: "@" + m.group(1), text)
    return len(GRAPHEME.findall(text))


class MastodonSettings(ProviderSettings):
    """Mastodon post settings."""

    visibility: Literal["public", "unlisted", "private", "direct"] = "public"
    spoiler_text: str | None = Field(default=None, description="Content warning")
    sensitive: bool = False
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}$")


class MastodonProvider(Provider[MastodonSettings]):
    identifier = "mastodon"
    display_name = "Mastodon"
    connect_kind = "oauth"
    # The app registers itself on each instance (configured credentials are optional).
    required_config = ()
    user_hosts = True
    fields = (
        FieldSpec(
            name="instance_url",
            label="Instance URL",
            default="https://mastodon.social",
            help="The server your account lives on",
        ),
    )
    scopes = ("read:accounts", "write:statuses", "write:media")
    default_max_length = 500
    text_counting = "mastodon"
    # Mastodon's defaults (instances may differ): 16 MB images, 99 MB videos.
    media_rules = MediaRules(
        max_images=4,
        max_videos=1,
        max_image_bytes=16 * 1024 * 1024,
        max_video_bytes=99 * 1024 * 1024,
    )
    settings_model = MastodonSettings
    default_urls = {"instance": "https://mastodon.social"}
    app_name = "Tidings"
    app_website = "https://github.com/tidings"
    can_check_published = True
    media_poll_interval = 1.0
    media_poll_timeout = 300.0

    # ---- limits -------------------------------------------------------------------------

    def max_length(self, credentials: ChannelCredentials | None = None) -> int:
        if credentials is not None:
            configured = credentials.additional_settings.get("max_characters")
            if isinstance(configured, int) and configured > 0:
                return configured
        return self.default_max_length

    def text_length(self, text: str) -> int:
        return mastodon_length(text)

    def validate(
        self,
        parts: Sequence[PostPart],
        settings: Mapping[str, Any] | BaseModel | None = None,
        credentials: ChannelCredentials | None = None,
    ) -> list[RuleViolation]:
        violations = super().validate(parts, settings, credentials)
        try:
            spoiler = self.parse_settings(settings).spoiler_text or ""
        except ValueError:
            return violations
        if spoiler:
            # The content warning shares the character budget with the text.
            limit = self.max_length(credentials)
            for index, part in enumerate(parts):
                total = self.text_length(part.content) + len(GRAPHEME.findall(spoiler))
                if self.text_length(part.content) <= limit < total:
                    violations.append(
                        RuleViolation(
                            code="too_long",
                            message=f"Mastodon allows {limit} characters including the "
                            f"content warning; this part has {total}",
                            part_index=index,
                        )
                    )
        return violations

    # ---- errors -------------------------------------------------------------------------

    def classify_error(self, response: httpx.Response) -> ProviderError | None:
        status = response.status_code
        if status < 400:
            return None
        message = f"Mastodon: {response_message(response)}"
        excerpt = response_excerpt(response)
        lowered = message.lower()
        if status == 401 and "revoked" in lowered:
            return DisconnectedError(message, status_code=status, excerpt=excerpt)
        if status == 403 and any(w in lowered for w in ("disabled", "suspended", "not approved")):
            return DisconnectedError(message, status_code=status, excerpt=excerpt)
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            reset = response.headers.get("x-ratelimit-reset")
            if retry_after is None and reset:
                try:
                    when = datetime.fromisoformat(reset.replace("Z", "+00:00"))
                    retry_after = max(0.0, when.timestamp() - time.time())
                except ValueError:
                    retry_after = None
            return RetryableError(
                message, status_code=status, excerpt=excerpt, retry_after=retry_after
            )
        return classify_response(response, message=message)

    # ---- connecting ---------------------------------------------------------------------

    def _instance(self, details: Mapping[str, Any] | None) -> str:
        url = str((details or {}).get("instance_url") or self.config.url("instance"))
        url = url.strip().rstrip("/")
        if "://" not in url:
            url = "https://" + url
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ConnectError(f"Not an instance URL: {url!r}")
        return f"{parts.scheme}://{parts.netloc}"

    async def authorization_url(
        self,
        redirect_uri: str,
        state: str,
        code_verifier: str,
        custom_instance: Mapping[str, Any] | None = None,
    ) -> AuthorizationRequest:
        """Register Tidings on the instance (unless configured) and build the authorize URL."""
        instance = self._instance(custom_instance)
        await self.check_user_url(instance)
        if self.config.client_id and self.config.client_secret and instance == self._instance(None):
            client_id, client_secret = self.config.client_id, self.config.client_secret
        else:
            try:
                response = await self.request(
                    "POST",
                    f"{instance}/api/v1/apps",
                    json={
                        "client_name": self.app_name,
                        "redirect_uris": redirect_uri,
                        "scopes": " ".join(self.scopes),
                        "website": self.app_website,
                    },
                    idempotent=True,
                )
            except (BadBodyError, RefreshTokenError) as exc:
                raise ConnectError(
                    f"{instance} refused to register Tidings: {exc.message}",
                    status_code=exc.status_code,
                    excerpt=exc.excerpt,
                ) from exc
            app = json_body(response)
            client_id, client_secret = str(app["client_id"]), str(app["client_secret"])
        query = urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "scope": " ".join(self.scopes),
                "state": state,
                "code_challenge": code_challenge(code_verifier),
                "code_challenge_method": "S256",
            }
        )
        return AuthorizationRequest(
            url=f"{instance}/oauth/authorize?{query}",
            custom_instance_details={
                "instance_url": instance,
                "client_id": client_id,
                "client_secret": client_secret,
            },
        )

    async def exchange_code(
        self,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        custom_instance_details: Mapping[str, Any] | None = None,
    ) -> ConnectedAccount:
        """Trade the code for a token, then read the account and the instance's limits."""
        details = dict(custom_instance_details or {})
        if not details.get("client_id") or not details.get("client_secret"):
            raise ConnectError("The Mastodon app registration was lost; start connecting again")
        instance = self._instance(details)
        data = await self.oauth_token(
            f"{instance}/oauth/token",
            {
                "grant_type": "authorization_code",
                "code": code,
                "client_id": str(details["client_id"]),
                "client_secret": str(details["client_secret"]),
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
                "scope": " ".join(self.scopes),
            },
            purpose="exchange",
        )
        tokens = token_set(data)
        auth = {"Authorization": f"Bearer {tokens.access_token}"}
        account = json_body(
            await self.request(
                "GET", f"{instance}/api/v1/accounts/verify_credentials", headers=auth
            )
        )
        host = urlsplit(instance).netloc
        username = f"{account['acct']}@{host}" if "@" not in account["acct"] else account["acct"]
        return ConnectedAccount(
            internal_id=f"{account['id']}@{host}",
            name=str(account.get("display_name") or account.get("username") or username),
            picture=account.get("avatar"),
            username=username,
            tokens=tokens,
            custom_instance_details={
                "instance_url": instance,
                "client_id": str(details["client_id"]),
                "client_secret": str(details["client_secret"]),
            },
            additional_settings=await self._instance_limits(instance),
        )

    async def _instance_limits(self, instance: str) -> dict[str, Any]:
        """The instance's own status limits (many instances allow more than 500 characters)."""
        try:
            data = json_body(await self.request("GET", f"{instance}/api/v2/instance"))
        except ProviderError:
            return {}
        statuses = ((data or {}).get("configuration") or {}).get("statuses") or {}
        limits: dict[str, Any] = {}
        for key in ("max_characters", "max_media_attachments", "characters_reserved_per_url"):
            if isinstance(statuses.get(key), int):
                limits[key] = statuses[key]
        return limits

    async def refresh(self, credentials: ChannelCredentials) -> TokenSet:
        """Mastodon tokens do not expire; servers that issued a refresh token honour it."""
        details = credentials.custom_instance_details or {}
        if not credentials.refresh_token or not details.get("client_id"):
            raise DisconnectedError("The Mastodon token is no longer valid; reconnect the channel")
        instance = self._instance(details)
        data = await self.oauth_token(
            f"{instance}/oauth/token",
            {
                "grant_type": "refresh_token",
                "refresh_token": credentials.refresh_token,
                "client_id": str(details["client_id"]),
                "client_secret": str(details.get("client_secret") or ""),
            },
            purpose="refresh",
        )
        return token_set(data)

    # ---- publishing ---------------------------------------------------------------------

    async def _upload(self, instance: str, token: str, item: MediaItem) -> str:
        auth = {"Authorization": f"Bearer {token}"}
        files: dict[str, tuple[str, bytes, str]] = {
            "file": (
                item.url.rsplit("/", 1)[-1] or "media",
                await self.read_media(item),
                item.mime_type,
            )
        }
        if item.type == "video":
            thumbnail = await self.read_thumbnail(item)
            if thumbnail:
                files["thumbnail"] = ("thumbnail.jpg", thumbnail, "image/jpeg")
        data = {"description": item.alt} if item.alt else {}
        response = await self.request(
            "POST",
            f"{instance}/api/v2/media",
            headers=auth,
            files=files,
            data=data,
            idempotent=True,
        )
        media = json_body(response)
        media_id = str(media["id"])
        if response.status_code == 202 or not media.get("url"):
            await self._wait_processed(instance, auth, media_id)
        return media_id

    async def _wait_processed(self, instance: str, auth: dict[str, str], media_id: str) -> None:
        async def check() -> bool | None:
            response = await self.request(
                "GET", f"{instance}/api/v1/media/{media_id}", headers=auth
            )
            if response.status_code == 200 and json_body(response).get("url"):
                return True
            return None

        # The upload answered 202 (processing): asking at once would only hear it again.
        await poll(
            check,
            interval=self.media_poll_interval,
            give_up_after=self.media_poll_timeout,
            what=f"Mastodon media {media_id}",
            wait_first=True,
        )

    async def _post(
        self,
        credentials: ChannelCredentials,
        part: PostPart,
        settings: MastodonSettings,
        in_reply_to: str | None,
    ) -> PublishResult:
        instance = self._instance(credentials.custom_instance_details)
        token = credentials.access_token
        media_ids = [await self._upload(instance, token, m) for m in part.media]
        body: dict[str, Any] = {"status": part.content, "visibility": settings.visibility}
        if media_ids:
            body["media_ids"] = media_ids
        if in_reply_to:
            body["in_reply_to_id"] = in_reply_to
        if settings.spoiler_text:
            body["spoiler_text"] = settings.spoiler_text
        if settings.sensitive:
            body["sensitive"] = True
        if settings.language:
            body["language"] = settings.language
        # Without a key from the engine, one derived from what is posted: a retried publish of
        # the same part (same text, reply target and media files) maps to the same status.
        key = (
            part.idempotency_key
            or hashlib.sha256(
                "\x1f".join(
                    [credentials.internal_id, in_reply_to or "", part.content]
                    + [m.url for m in part.media]
                ).encode()
            ).hexdigest()
        )
        response = await self.request(
            "POST",
            f"{instance}/api/v1/statuses",
            json=body,
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
        )
        status = json_body(response)
        return PublishResult(id=str(status["id"]), url=status.get("url") or status.get("uri"))

    async def publish(
        self, credentials: ChannelCredentials, part: PostPart, settings: MastodonSettings
    ) -> PublishResult:
        """Post a status (media uploaded and processed first)."""
        return await self._post(credentials, part, settings, None)

    async def reply(
        self,
        credentials: ChannelCredentials,
        parent: PublishResult,
        part: PostPart,
        settings: MastodonSettings,
    ) -> PublishResult:
        """Post a status in reply to ``parent``."""
        return await self._post(credentials, part, settings, parent.id)

    async def find_published(
        self,
        credentials: ChannelCredentials,
        part: PostPart,
        settings: MastodonSettings,
        *,
        parent: PublishResult | None,
        since: datetime,
    ) -> PublishResult | None:
        """Look for the part among the account's latest statuses, comparing the plain-text
        source (``/api/v1/statuses/:id/source``) of those posted since ``since`` under the same
        parent."""
        instance = self._instance(credentials.custom_instance_details)
        auth = {"Authorization": f"Bearer {credentials.access_token}"}
        account_id = credentials.internal_id.split("@", 1)[0]
        response = await self.request(
            "GET",
            f"{instance}/api/v1/accounts/{account_id}/statuses",
            headers=auth,
            params={"limit": "20"},
        )
        cutoff = since - timedelta(minutes=2)  # clock skew between us and the instance
        for status in json_body(response) or []:
            try:
                created = datetime.fromisoformat(str(status["created_at"]).replace("Z", "+00:00"))
            except (KeyError, ValueError):
                continue
            if created < cutoff:
                continue
            if (status.get("in_reply_to_id") or None) != (parent.id if parent else None):
                continue
            source = json_body(
                await self.request(
                    "GET", f"{instance}/api/v1/statuses/{status['id']}/source", headers=auth
                )
            )
            if source.get("text") == part.content:
                return PublishResult(
                    id=str(status["id"]), url=status.get("url") or status.get("uri")
                )
        return None
