"""LinkedIn: a member's profile (``linkedin``) or a company page (``linkedin-page``).

OAuth 2 (LinkedIn does not offer PKCE to web apps: the state alone protects the callback), the
OpenID ``userinfo`` profile, and the versioned REST API: ``/rest/posts`` with images and videos
uploaded through ``initializeUpload``; later parts become comments
(``/rest/socialActions/{urn}/comments``): the second part comments on the post, the following
ones reply to that comment (LinkedIn nests comments one level deep). A page connection lists the
pages the member administers (``organizationAcls``) and waits in ``in_between_steps`` until one
is picked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal
from urllib.parse import quote, urlencode

import httpx
from pydantic import BaseModel, Field

from tidings.channels.providers._common import poll
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
    RetryableError,
    RuleViolation,
    TokenSet,
    UnknownOutcomeError,
    classify_response,
    closing_stream,
    json_body,
    parse_retry_after,
    response_excerpt,
    response_json,
    response_message,
    token_set,
    tool,
)

# Characters with a meaning in LinkedIn's "little text" format; escaped so the text stays text.
_LITTLE_TEXT_RESERVED = set("\\|{}@[]()<>#*_~")
COMMENT_MAX_LENGTH = 1250


def escape_little_text(text: str) -> str:
    """Escape ``text`` for the ``commentary`` field (else LinkedIn cuts it at a parenthesis)."""
    return "".join("\\" + c if c in _LITTLE_TEXT_RESERVED else c for c in text)


class LinkedInSettings(ProviderSettings):
    """LinkedIn post settings."""

    visibility: Literal["PUBLIC", "CONNECTIONS"] = Field(
        default="PUBLIC", description="Who sees the post (CONNECTIONS applies to profiles)"
    )


class LinkedInProvider(Provider[LinkedInSettings]):
    identifier = "linkedin"
    display_name = "LinkedIn"
    connect_kind = "oauth"
    scopes: ClassVar[tuple[str, ...]] = ("openid", "profile", "w_member_social")
    default_max_length = 3000
    media_rules = MediaRules(
        max_images=20,
        max_videos=1,
        replies_allow_media=False,
        image_mime_types=frozenset({"image/jpeg", "image/png", "image/gif"}),
        video_mime_types=frozenset({"video/mp4"}),
        max_video_bytes=500 * 1024 * 1024,
    )
    settings_model = LinkedInSettings
    default_urls = {
        "api": "https://api.linkedin.com",
        "auth": "https://www.linkedin.com",
        "web": "https://www.linkedin.com",
    }
    api_version = "202505"
    video_poll_interval = 2.0
    video_poll_timeout = 600.0

    # ---- validation ---------------------------------------------------------------------

    def validate(
        self,
        parts: Sequence[PostPart],
        settings: Mapping[str, Any] | BaseModel | None = None,
        credentials: ChannelCredentials | None = None,
    ) -> list[RuleViolation]:
        violations = super().validate(parts, settings, credentials)
        for index, part in enumerate(parts):
            length = self.text_length(part.content)
            if index > 0 and COMMENT_MAX_LENGTH < length <= self.max_length(credentials):
                violations.append(
                    RuleViolation(
                        code="too_long",
                        message=f"LinkedIn comments allow {COMMENT_MAX_LENGTH} characters; "
                        f"this one has {length}",
                        part_index=index,
                    )
                )
        return violations

    # ---- errors -------------------------------------------------------------------------

    def classify_error(self, response: httpx.Response) -> ProviderError | None:
        status = response.status_code
        if status < 400:
            return None
        data = response_json(response)
        data = data if isinstance(data, dict) else {}
        message = f"LinkedIn: {response_message(response)}"
        excerpt = response_excerpt(response)
        code = str(data.get("code") or "")
        service_code = data.get("serviceErrorCode")
        if code == "REVOKED_ACCESS_TOKEN" or service_code == 65601:
            return DisconnectedError(message, status_code=status, excerpt=excerpt)
        if status == 403 and service_code == 100:
            # The member lost the permission (e.g. no longer a page admin): reconnect.
            return DisconnectedError(message, status_code=status, excerpt=excerpt)
        if status == 429:
            return RetryableError(
                message,
                status_code=status,
                excerpt=excerpt,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        return classify_response(response, message=message)

    # ---- HTTP ---------------------------------------------------------------------------

    def _headers(self, token: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token}",
            "LinkedIn-Version": self.api_version,
            "X-Restli-Protocol-Version": "2.0.0",
        }

    def _client(self) -> tuple[str, str]:
        if not self.config.client_id or not self.config.client_secret:
            prefix = "TIDINGS_LINKEDIN"
            raise ProviderError(
                f"LinkedIn is not configured: set {prefix}_CLIENT_ID and {prefix}_CLIENT_SECRET"
            )
        return self.config.client_id, self.config.client_secret

    # ---- connecting ---------------------------------------------------------------------

    async def authorization_url(
        self,
        redirect_uri: str,
        state: str,
        code_verifier: str,
        custom_instance: Mapping[str, Any] | None = None,
    ) -> AuthorizationRequest:
        """LinkedIn's consent page (no PKCE for web apps; the state protects the callback)."""
        client_id, _ = self._client()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "state": state,
                "scope": " ".join(self.scopes),
            }
        )
        return AuthorizationRequest(url=f"{self.config.url('auth')}/oauth/v2/authorization?{query}")

    async def _token(
        self, data: dict[str, str], purpose: Literal["exchange", "refresh"]
    ) -> TokenSet:
        client_id, client_secret = self._client()
        body = await self.oauth_token(
            f"{self.config.url('auth')}/oauth/v2/accessToken",
            {**data, "client_id": client_id, "client_secret": client_secret},
            purpose=purpose,
        )
        return token_set(body)

    async def _member(self, tokens: TokenSet) -> ConnectedAccount:
        response = await self.request(
            "GET",
            f"{self.config.url('api')}/v2/userinfo",
            headers={"Authorization": f"Bearer {tokens.access_token}"},
        )
        info = json_body(response)
        if not isinstance(info, dict) or not info.get("sub"):
            raise ConnectError("LinkedIn did not return the member profile")
        name = info.get("name") or " ".join(
            p for p in (info.get("given_name"), info.get("family_name")) if p
        )
        return ConnectedAccount(
            internal_id=str(info["sub"]),
            name=str(name or info["sub"]),
            picture=info.get("picture"),
            username=info.get("email"),
            tokens=tokens,
        )

    async def exchange_code(
        self,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        custom_instance_details: Mapping[str, Any] | None = None,
    ) -> ConnectedAccount:
        """Trade the code for tokens and read the member (OpenID userinfo)."""
        tokens = await self._token(
            {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
            "exchange",
        )
        return await self._member(tokens)

    async def refresh(self, credentials: ChannelCredentials) -> TokenSet:
        """Refresh with the refresh token LinkedIn grants to approved apps."""
        if not credentials.refresh_token:
            raise DisconnectedError("The LinkedIn token expired; reconnect the channel")
        return await self._token(
            {"grant_type": "refresh_token", "refresh_token": credentials.refresh_token},
            "refresh",
        )

    # ---- media --------------------------------------------------------------------------

    def author_urn(self, credentials: ChannelCredentials) -> str:
        """The URN posts are published as."""
        return f"urn:li:person:{credentials.internal_id}"

    async def _upload_image(self, credentials: ChannelCredentials, item: MediaItem) -> str:
        api = self.config.url("api")
        response = await self.request(
            "POST",
            f"{api}/rest/images?action=initializeUpload",
            headers=self._headers(credentials.access_token),
            json={"initializeUploadRequest": {"owner": self.author_urn(credentials)}},
            idempotent=True,
        )
        value = json_body(response)["value"]
        await self.request(
            "PUT",
            str(value["uploadUrl"]),
            headers={"Authorization": f"Bearer {credentials.access_token}"},
            content=await self.read_media(item),  # an image: small enough to hold whole
        )
        return str(value["image"])

    async def _upload_video(self, credentials: ChannelCredentials, item: MediaItem) -> str:
        async with self.open_media(item) as body:
            return await self._upload_video_body(credentials, item, body)

    async def _upload_video_body(
        self, credentials: ChannelCredentials, item: MediaItem, body: MediaBody
    ) -> str:
        """Initialize, PUT each part LinkedIn asks for as it is read (the file is never held
        whole), then the thumbnail, finalize and wait until the video is available."""
        api = self.config.url("api")
        headers = self._headers(credentials.access_token)
        thumbnail = await self.read_thumbnail(item)
        response = await self.request(
            "POST",
            f"{api}/rest/videos?action=initializeUpload",
            headers=headers,
            json={
                "initializeUploadRequest": {
                    "owner": self.author_urn(credentials),
                    "fileSizeBytes": body.size,
                    "uploadCaptions": False,
                    "uploadThumbnail": thumbnail is not None,
                }
            },
            idempotent=True,
        )
        value = json_body(response)["value"]
        video = str(value["video"])
        etags: list[str] = []
        instructions = list(value.get("uploadInstructions") or [])
        spans = [(int(i["firstByte"]), int(i["lastByte"]) + 1) for i in instructions]
        async with closing_stream(body.spans(spans)) as parts:
            index = 0
            async for data in parts:
                put = await self.request(
                    "PUT",
                    str(instructions[index]["uploadUrl"]),
                    headers={
                        "Authorization": f"Bearer {credentials.access_token}",
                        "Content-Type": "application/octet-stream",
                    },
                    content=data,
                )
                index += 1
                etag = put.headers.get("etag")
                if not etag:
                    raise RetryableError("LinkedIn did not confirm an uploaded video part")
                etags.append(etag)
        if thumbnail is not None and value.get("thumbnailUploadUrl"):
            await self.request(
                "PUT",
                str(value["thumbnailUploadUrl"]),
                headers={
                    "Authorization": f"Bearer {credentials.access_token}",
                    "Content-Type": "image/jpeg",
                },
                content=thumbnail,
            )
        await self.request(
            "POST",
            f"{api}/rest/videos?action=finalizeUpload",
            headers=headers,
            json={
                "finalizeUploadRequest": {
                    "video": video,
                    "uploadToken": value.get("uploadToken") or "",
                    "uploadedPartIds": etags,
                }
            },
            idempotent=True,
        )
        await self._wait_video(credentials, video)
        return video

    async def _wait_video(self, credentials: ChannelCredentials, video: str) -> None:
        url = f"{self.config.url('api')}/rest/videos/{quote(video, safe='')}"

        async def check() -> bool | None:
            response = await self.request(
                "GET", url, headers=self._headers(credentials.access_token)
            )
            status = json_body(response).get("status")
            if status == "AVAILABLE":
                return True
            if status == "PROCESSING_FAILED":
                raise BadBodyError("LinkedIn could not process the video")
            return None

        await poll(
            check,
            interval=self.video_poll_interval,
            give_up_after=self.video_poll_timeout,
            what=f"LinkedIn video {video}",
        )

    # ---- publishing ---------------------------------------------------------------------

    async def _content(
        self, credentials: ChannelCredentials, media: Sequence[MediaItem]
    ) -> dict[str, Any] | None:
        if not media:
            return None
        videos = [m for m in media if m.type == "video"]
        if videos:
            entry = {"id": await self._upload_video(credentials, videos[0])}
            if videos[0].alt:
                entry["altText"] = videos[0].alt
            return {"media": entry}
        images = []
        for item in media:
            image = {"id": await self._upload_image(credentials, item)}
            if item.alt:
                image["altText"] = item.alt
            images.append(image)
        if len(images) == 1:
            return {"media": images[0]}
        return {"multiImage": {"images": images}}

    async def publish(
        self, credentials: ChannelCredentials, part: PostPart, settings: LinkedInSettings
    ) -> PublishResult:
        """Create the post (images as one image or a carousel, or one video)."""
        body: dict[str, Any] = {
            "author": self.author_urn(credentials),
            "commentary": escape_little_text(part.content),
            "visibility": settings.visibility,
            "distribution": {
                "feedDistribution": "MAIN_FEED",
                "targetEntities": [],
                "thirdPartyDistributionChannels": [],
            },
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": False,
        }
        content = await self._content(credentials, part.media)
        if content:
            body["content"] = content
        response = await self.request(
            "POST",
            f"{self.config.url('api')}/rest/posts",
            headers=self._headers(credentials.access_token),
            json=body,
        )
        urn = response.headers.get("x-restli-id") or response.headers.get("x-linkedin-id")
        if not urn:
            raise _no_urn(response)
        return PublishResult(
            id=urn, url=f"{self.config.url('web')}/feed/update/{urn}", data={"post_urn": urn}
        )

    async def reply(
        self,
        credentials: ChannelCredentials,
        parent: PublishResult,
        part: PostPart,
        settings: LinkedInSettings,
    ) -> PublishResult:
        """Comment on the post (second part) or reply to that comment (later parts)."""
        post_urn = str(parent.data.get("post_urn") or "")
        top_comment = parent.data.get("top_comment_urn")
        if parent.id.startswith("urn:li:comment:"):
            # urn:li:comment:(urn:li:activity:123,456): the post is the activity inside.
            post_urn = post_urn or parent.id.split("(", 1)[1].split(",", 1)[0]
            top_comment = top_comment or parent.id
        else:
            post_urn = post_urn or parent.id
        body: dict[str, Any] = {
            "actor": self.author_urn(credentials),
            "object": post_urn,
            "message": {"text": part.content},
        }
        target = post_urn
        if top_comment:
            body["parentComment"] = top_comment
            target = str(top_comment)
        response = await self.request(
            "POST",
            f"{self.config.url('api')}/rest/socialActions/{quote(target, safe='')}/comments",
            headers=self._headers(credentials.access_token),
            json=body,
        )
        data = json_body(response) if response.content else {}
        urn = (isinstance(data, dict) and data.get("$URN")) or response.headers.get("x-restli-id")
        if not urn:
            raise _no_urn(response)
        urn = str(urn)
        return PublishResult(
            id=urn,
            url=f"{self.config.url('web')}/feed/update/{post_urn}?commentUrn={quote(urn, safe='')}",
            data={"post_urn": post_urn, "top_comment_urn": str(top_comment or urn)},
        )


def _no_urn(response: httpx.Response) -> UnknownOutcomeError:
    """A 2xx answer without the created URN: it was probably created, but we cannot tell."""
    return UnknownOutcomeError(
        "LinkedIn accepted the request but did not say what it created",
        status_code=response.status_code,
        excerpt=response_excerpt(response),
    )


class LinkedInPageProvider(LinkedInProvider):
    identifier = "linkedin-page"
    display_name = "LinkedIn Page"
    env_fallback = "linkedin"
    scopes = (
        "openid",
        "profile",
        "w_member_social",
        "r_organization_admin",
        "w_organization_social",
        "rw_organization_admin",
    )

    def author_urn(self, credentials: ChannelCredentials) -> str:
        return f"urn:li:organization:{credentials.internal_id}"

    async def exchange_code(
        self,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        custom_instance_details: Mapping[str, Any] | None = None,
    ) -> ConnectedAccount:
        """The member's account, waiting for a page to be picked."""
        account = await super().exchange_code(
            code, redirect_uri, code_verifier, custom_instance_details
        )
        account.in_between_steps = True
        return account

    async def list_choices(self, credentials: ChannelCredentials) -> list[Choice]:
        """Pages the member administers."""
        api = self.config.url("api")
        headers = self._headers(credentials.access_token)
        response = await self.request(
            "GET",
            f"{api}/rest/organizationAcls",
            headers=headers,
            params={"q": "roleAssignee", "role": "ADMINISTRATOR", "state": "APPROVED"},
        )
        choices: list[Choice] = []
        for element in json_body(response).get("elements") or []:
            urn = str(element.get("organization") or "")
            org_id = urn.rsplit(":", 1)[-1]
            if not org_id.isdigit():
                continue
            org = json_body(
                await self.request("GET", f"{api}/rest/organizations/{org_id}", headers=headers)
            )
            choices.append(
                Choice(
                    id=org_id,
                    name=str(org.get("localizedName") or org_id),
                    username=org.get("vanityName"),
                )
            )
        return choices

    @tool("list_pages")
    async def list_pages_tool(
        self, credentials: ChannelCredentials, args: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """The pages the connected member administers (id, name, vanity name)."""
        return [
            {"id": c.id, "name": c.name, "username": c.username}
            for c in await self.list_choices(credentials)
        ]

    async def select_choice(
        self, credentials: ChannelCredentials, choice_id: str
    ) -> ConnectedAccount:
        """Bind the channel to page ``choice_id`` (it must be one the member administers)."""
        for choice in await self.list_choices(credentials):
            if choice.id == choice_id:
                return ConnectedAccount(
                    internal_id=choice.id,
                    name=choice.name,
                    username=choice.username,
                    picture=choice.picture,
                    tokens=TokenSet(
                        access_token=credentials.access_token,
                        refresh_token=credentials.refresh_token,
                        expires_at=credentials.token_expires_at,
                    ),
                    in_between_steps=False,
                )
        raise ConnectError(f"You do not administer a LinkedIn page with id {choice_id!r}")
