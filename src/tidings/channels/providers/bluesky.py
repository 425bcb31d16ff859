"""Bluesky and any AT Protocol PDS, over XRPC.

Connects with an app password (``com.atproto.server.createSession``); the service URL, handle and
app password are kept in ``custom_instance_details`` so that a session whose refresh token has
expired can be re-created. Posts are ``app.bsky.feed.post`` records with facets (links, mentions,
hashtags; UTF-8 byte offsets), image/video embeds uploaded with ``uploadBlob`` and reply refs.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import regex
from pydantic import BaseModel, Field

from tidings.channels.providers.base import (
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
    json_body,
    parse_retry_after,
    response_excerpt,
    response_json,
)

GRAPHEME = regex.compile(r"\X")
# A URL with a scheme, up to whitespace; trailing punctuation is trimmed afterwards.
URL = regex.compile(r"(?<![\w/])https?://[^\s<>\"]+", regex.IGNORECASE)
# @handle where a handle is a domain name (at least one dot).
MENTION = regex.compile(
    r"(?<![\w@])@((?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)"
)
HASHTAG = regex.compile(r"(?<![\w#&])#([\p{L}\p{N}_]*\p{L}[\p{L}\p{N}_]*)")
TRAILING = ".,;:!?'\""

DISCONNECT_ERRORS = frozenset(
    {"AccountTakedown", "AccountDeactivated", "RepoTakendown", "RepoDeactivated", "RepoSuspended"}
)
TOKEN_ERRORS = frozenset({"ExpiredToken", "InvalidToken", "AuthenticationRequired"})


def grapheme_count(text: str) -> int:
    """User-perceived characters (extended grapheme clusters), as Bluesky counts them."""
    return len(GRAPHEME.findall(text))


def jwt_expiry(token: str) -> datetime | None:
    """The ``exp`` of a JWT, read without verifying it (only to schedule the refresh)."""
    try:
        payload = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return datetime.fromtimestamp(float(data["exp"]), UTC)
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def _byte_slice(text: str, start: int, end: int) -> dict[str, int]:
    return {
        "byteStart": len(text[:start].encode("utf-8")),
        "byteEnd": len(text[:end].encode("utf-8")),
    }


def _trim_url(url: str) -> str:
    url = url.rstrip(TRAILING)
    # A closing parenthesis belongs to the URL only when it opens one too, e.g. wiki links.
    while url.endswith(")") and url.count("(") < url.count(")"):
        url = url[:-1].rstrip(TRAILING)
    return url


class BlueskySettings(ProviderSettings):
    """Bluesky post settings."""

    langs: list[str] = Field(
        default_factory=list, max_length=3, description="Languages of the post (BCP-47, ≤3)"
    )


class BlueskyProvider(Provider[BlueskySettings]):
    identifier = "bluesky"
    display_name = "Bluesky"
    connect_kind = "fields"
    required_config = ()
    user_hosts = True
    fields = (
        FieldSpec(
            name="service",
            label="Service URL",
            default="https://bsky.social",
            help="Your PDS; keep the default for accounts hosted by Bluesky",
        ),
        FieldSpec(name="identifier", label="Handle", help="e.g. alice.bsky.social"),
        FieldSpec(
            name="password",
            label="App password",
            secret=True,
            help="Settings → Privacy and security → App passwords",
        ),
    )
    default_max_length = 300
    text_counting = "graphemes"
    max_bytes = 3000
    media_rules = MediaRules(
        max_images=4,
        max_videos=1,
        video_mime_types=frozenset({"video/mp4", "video/mpeg", "video/webm", "video/quicktime"}),
        max_image_bytes=1_000_000,  # app.bsky.embed.images
        max_video_bytes=100_000_000,  # app.bsky.embed.video
    )
    settings_model = BlueskySettings
    default_urls = {"service": "https://bsky.social", "web": "https://bsky.app"}
    can_check_published = True

    # ---- limits -------------------------------------------------------------------------

    def text_length(self, text: str) -> int:
        return grapheme_count(text)

    def validate(
        self,
        parts: Sequence[PostPart],
        settings: Mapping[str, Any] | BaseModel | None = None,
        credentials: ChannelCredentials | None = None,
    ) -> list[RuleViolation]:
        violations = super().validate(parts, settings, credentials)
        for index, part in enumerate(parts):
            size = len(part.content.encode("utf-8"))
            if size > self.max_bytes:
                violations.append(
                    RuleViolation(
                        code="too_long",
                        message=f"Bluesky allows {self.max_bytes} bytes of text; this has {size}",
                        part_index=index,
                    )
                )
        return violations

    # ---- errors -------------------------------------------------------------------------

    def classify_error(self, response: httpx.Response) -> ProviderError | None:
        if response.status_code < 400:
            return None
        data = response_json(response)
        error = data.get("error") if isinstance(data, dict) else None
        message = (data.get("message") if isinstance(data, dict) else None) or error
        status = response.status_code
        excerpt = response_excerpt(response)
        if error in DISCONNECT_ERRORS:
            return DisconnectedError(f"Bluesky: {message}", status_code=status, excerpt=excerpt)
        if error in TOKEN_ERRORS and status in (400, 401):
            return RefreshTokenError(f"Bluesky: {message}", status_code=status, excerpt=excerpt)
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            reset = response.headers.get("ratelimit-reset")
            if retry_after is None and reset and reset.isdigit():
                retry_after = max(0.0, float(reset) - time.time())
            return RetryableError(
                f"Bluesky rate limit: {message or 'too many requests'}",
                status_code=status,
                excerpt=excerpt,
                retry_after=retry_after,
            )
        return classify_response(response, message=f"Bluesky: {message}" if message else None)

    # ---- XRPC ---------------------------------------------------------------------------

    def _service(self, credentials: ChannelCredentials | None) -> str:
        details = (credentials.custom_instance_details if credentials else None) or {}
        return str(details.get("service") or self.config.url("service")).rstrip("/")

    async def _xrpc(
        self,
        method: str,
        service: str,
        nsid: str,
        *,
        token: str | None = None,
        idempotent: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        headers = dict(kwargs.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = await self.request(
            method, f"{service}/xrpc/{nsid}", idempotent=idempotent, headers=headers, **kwargs
        )
        return json_body(response)

    def _tokens(self, session: Mapping[str, Any]) -> TokenSet:
        access = str(session["accessJwt"])
        return TokenSet(
            access_token=access,
            refresh_token=str(session["refreshJwt"]) if session.get("refreshJwt") else None,
            expires_at=jwt_expiry(access),
        )

    # ---- connecting ---------------------------------------------------------------------

    async def connect_with_fields(self, values: Mapping[str, str]) -> ConnectedAccount:
        """Log in with handle + app password and fetch the profile."""
        values = dict(values)
        if not (values.get("service") or "").strip():
            # TIDINGS_BLUESKY_SERVICE_URL lets a self-hoster default to their own PDS.
            values["service"] = self.config.url("service")
        fields = self.field_values(values)
        service = fields["service"].rstrip("/")
        if not service.startswith(("https://", "http://")):
            raise ConnectError("Service URL must start with https://")
        await self.check_user_url(service)
        session = await self._create_session(
            service,
            fields["identifier"],
            fields["password"],
            refused=ConnectError,
            message="Bluesky refused the login",
        )
        tokens = self._tokens(session)
        did = str(session["did"])
        profile = await self._xrpc(
            "GET",
            service,
            "app.bsky.actor.getProfile",
            token=tokens.access_token,
            params={"actor": did},
        )
        handle = str(profile.get("handle") or session.get("handle") or fields["identifier"])
        return ConnectedAccount(
            internal_id=did,
            name=str(profile.get("displayName") or handle),
            picture=profile.get("avatar"),
            username=handle,
            tokens=tokens,
            custom_instance_details={
                "service": service,
                "identifier": fields["identifier"],
                "password": fields["password"],
            },
        )

    async def refresh(self, credentials: ChannelCredentials) -> TokenSet:
        """refreshSession; when the refresh token is dead too, log in again with the app
        password. A refused login means the app password was revoked: DisconnectedError."""
        service = self._service(credentials)
        if credentials.refresh_token:
            try:
                session = await self._xrpc(
                    "POST",
                    service,
                    "com.atproto.server.refreshSession",
                    token=credentials.refresh_token,
                    idempotent=True,
                )
                return self._tokens(session)
            except (RefreshTokenError, BadBodyError):
                pass  # fall back to a new session below
        details = credentials.custom_instance_details or {}
        if not details.get("identifier") or not details.get("password"):
            raise DisconnectedError("Bluesky session expired; reconnect the channel")
        session = await self._create_session(
            service,
            details["identifier"],
            details["password"],
            refused=DisconnectedError,
            message="Bluesky no longer accepts the app password",
        )
        return self._tokens(session)

    async def _create_session(
        self,
        service: str,
        identifier: str,
        password: str,
        *,
        refused: type[ProviderError],
        message: str,
    ) -> Any:
        """Log in with the app password; a refused login raises ``refused`` with ``message``."""
        try:
            return await self._xrpc(
                "POST",
                service,
                "com.atproto.server.createSession",
                json={"identifier": identifier, "password": password},
                idempotent=True,
            )
        except (RefreshTokenError, BadBodyError) as exc:
            raise refused(
                f"{message}: {exc.message}", status_code=exc.status_code, excerpt=exc.excerpt
            ) from exc

    # ---- publishing ---------------------------------------------------------------------

    async def _facets(self, service: str, token: str, text: str) -> list[dict[str, Any]]:
        facets: list[dict[str, Any]] = []
        for match in URL.finditer(text):
            url = _trim_url(match.group(0))
            facets.append(
                {
                    "index": _byte_slice(text, match.start(), match.start() + len(url)),
                    "features": [{"$type": "app.bsky.richtext.facet#link", "uri": url}],
                }
            )
        link_spans = [(m.start(), m.end()) for m in URL.finditer(text)]
        resolved: dict[str, str | None] = {}
        for match in MENTION.finditer(text):
            if any(a <= match.start() < b for a, b in link_spans):
                continue
            handle = match.group(1).rstrip(".").lower()
            if handle not in resolved:
                resolved[handle] = await self._resolve_handle(service, token, handle)
            did = resolved[handle]
            if did is None:
                continue  # an unknown handle stays plain text, as in the Bluesky app
            end = match.start() + 1 + len(handle)
            facets.append(
                {
                    "index": _byte_slice(text, match.start(), end),
                    "features": [{"$type": "app.bsky.richtext.facet#mention", "did": did}],
                }
            )
        for match in HASHTAG.finditer(text):
            if any(a <= match.start() < b for a, b in link_spans):
                continue
            tag = match.group(1)
            facets.append(
                {
                    "index": _byte_slice(text, match.start(), match.end()),
                    "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": tag}],
                }
            )
        facets.sort(key=lambda f: int(f["index"]["byteStart"]))
        return facets

    async def _resolve_handle(self, service: str, token: str, handle: str) -> str | None:
        try:
            data = await self._xrpc(
                "GET",
                service,
                "com.atproto.identity.resolveHandle",
                token=token,
                params={"handle": handle},
            )
        except BadBodyError:
            return None
        did = data.get("did")
        return str(did) if did else None

    async def _upload(self, service: str, token: str, item: MediaItem) -> dict[str, Any]:
        content = await self.read_media(item)
        data = await self._xrpc(
            "POST",
            service,
            "com.atproto.repo.uploadBlob",
            token=token,
            content=content,
            headers={"Content-Type": item.mime_type},
            idempotent=True,  # an orphan blob publishes nothing
        )
        blob = data.get("blob")
        if not isinstance(blob, dict):
            raise RetryableError("Bluesky uploadBlob answered without a blob")
        return blob

    async def _embed(
        self, service: str, token: str, media: Sequence[MediaItem]
    ) -> dict[str, Any] | None:
        if not media:
            return None
        videos = [m for m in media if m.type == "video"]
        if videos:
            video = videos[0]
            embed: dict[str, Any] = {
                "$type": "app.bsky.embed.video",
                "video": await self._upload(service, token, video),
            }
            if video.alt:
                embed["alt"] = video.alt
            if video.width and video.height:
                embed["aspectRatio"] = {"width": video.width, "height": video.height}
            return embed
        images = []
        for item in media[:4]:
            image: dict[str, Any] = {
                "alt": item.alt or "",
                "image": await self._upload(service, token, item),
            }
            if item.width and item.height:
                image["aspectRatio"] = {"width": item.width, "height": item.height}
            images.append(image)
        return {"$type": "app.bsky.embed.images", "images": images}

    async def _create_post(
        self,
        credentials: ChannelCredentials,
        part: PostPart,
        settings: BlueskySettings,
        reply: dict[str, Any] | None,
    ) -> PublishResult:
        service = self._service(credentials)
        token = credentials.access_token
        record: dict[str, Any] = {
            "$type": "app.bsky.feed.post",
            "text": part.content,
            "createdAt": datetime.now(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
        }
        facets = await self._facets(service, token, part.content)
        if facets:
            record["facets"] = facets
        embed = await self._embed(service, token, part.media)
        if embed:
            record["embed"] = embed
        if settings.langs:
            record["langs"] = settings.langs
        if reply:
            record["reply"] = reply
        data = await self._xrpc(
            "POST",
            service,
            "com.atproto.repo.createRecord",
            token=token,
            json={
                "repo": credentials.internal_id,
                "collection": "app.bsky.feed.post",
                "record": record,
            },
        )
        uri, cid = str(data["uri"]), str(data["cid"])
        root = reply["root"] if reply else {"uri": uri, "cid": cid}
        return PublishResult(
            id=uri,
            url=self._post_url(credentials, uri),
            data={"cid": cid, "root_uri": root["uri"], "root_cid": root["cid"]},
        )

    def _post_url(self, credentials: ChannelCredentials, uri: str) -> str:
        rkey = uri.rsplit("/", 1)[-1]
        actor = credentials.profile or credentials.internal_id
        return f"{self.config.url('web')}/profile/{actor}/post/{rkey}"

    async def publish(
        self, credentials: ChannelCredentials, part: PostPart, settings: BlueskySettings
    ) -> PublishResult:
        """Create the post record (uploading its media first)."""
        return await self._create_post(credentials, part, settings, None)

    async def reply(
        self,
        credentials: ChannelCredentials,
        parent: PublishResult,
        part: PostPart,
        settings: BlueskySettings,
    ) -> PublishResult:
        """Create a post replying to ``parent``, in the same thread (root kept)."""
        parent_cid = parent.data.get("cid")
        root_uri, root_cid = parent.data.get("root_uri"), parent.data.get("root_cid")
        if not (parent_cid and root_uri and root_cid):
            parent_cid, root_uri, root_cid = await self._thread_refs(credentials, parent.id)
        reply = {
            "root": {"uri": root_uri, "cid": root_cid},
            "parent": {"uri": parent.id, "cid": parent_cid},
        }
        return await self._create_post(credentials, part, settings, reply)

    async def _thread_refs(self, credentials: ChannelCredentials, uri: str) -> tuple[str, str, str]:
        """cid of ``uri`` and its thread root, read back from the repo."""
        try:
            repo, collection, rkey = uri.removeprefix("at://").split("/")
        except ValueError:
            raise BadBodyError(f"Not a Bluesky post URI: {uri!r}") from None
        data = await self._xrpc(
            "GET",
            self._service(credentials),
            "com.atproto.repo.getRecord",
            token=credentials.access_token,
            params={"repo": repo, "collection": collection, "rkey": rkey},
        )
        cid = str(data["cid"])
        root = (data.get("value") or {}).get("reply", {}).get("root")
        if root:
            return cid, str(root["uri"]), str(root["cid"])
        return cid, uri, cid

    async def find_published(
        self,
        credentials: ChannelCredentials,
        part: PostPart,
        settings: BlueskySettings,
        *,
        parent: PublishResult | None,
        since: datetime,
    ) -> PublishResult | None:
        """Look for the part among the account's latest post records (same text, same parent,
        created since ``since``)."""
        data = await self._xrpc(
            "GET",
            self._service(credentials),
            "com.atproto.repo.listRecords",
            token=credentials.access_token,
            params={
                "repo": credentials.internal_id,
                "collection": "app.bsky.feed.post",
                "limit": "25",
            },
        )
        cutoff = since - timedelta(minutes=2)  # clock skew between us and the PDS
        for record in data.get("records") or []:
            value = record.get("value") or {}
            if value.get("text") != part.content:
                continue
            try:
                created = datetime.fromisoformat(str(value.get("createdAt")).replace("Z", "+00:00"))
            except ValueError:
                continue
            if created < cutoff:
                continue
            reply_parent = ((value.get("reply") or {}).get("parent") or {}).get("uri")
            if reply_parent != (parent.id if parent else None):
                continue
            uri, cid = str(record["uri"]), str(record["cid"])
            root = (value.get("reply") or {}).get("root") or {"uri": uri, "cid": cid}
            return PublishResult(
                id=uri,
                url=self._post_url(credentials, uri),
                data={"cid": cid, "root_uri": root["uri"], "root_cid": root["cid"]},
            )
        return None
