"""Slack, as an app installed in the user's workspace (OAuth v2, bot token).

After ``oauth.v2.access`` the user picks the conversation to post in (``in_between_steps``, from
``conversations.list``); a post may name another one (setting ``channel``, as in Postiz).
Messages go through ``chat.postMessage``; files through the external upload flow
(``files.getUploadURLExternal``, a POST of the bytes, ``files.completeUploadExternal`` sharing
them with the text as ``initial_comment``), after which ``files.info`` tells the message's ``ts``.

Slack answers most errors with HTTP 200 and ``{"ok": false, "error": "<code>"}``: the
classifier reads the body of every answer. Threads are flat in Slack: every reply of a thread is
posted under the first message (``thread_ts`` of the root), in order.
Workspaces with token rotation get ``expires_in`` + ``refresh_token``; others never expire.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx
from pydantic import Field

from tidings.channels.providers._common import (
    CLOCK_SKEW,
    authorization_request,
    media_filename,
    poll,
    tokens_of,
)
from tidings.channels.providers.base import (
    AuthorizationRequest,
    BadBodyError,
    ChannelCredentials,
    Choice,
    ConnectedAccount,
    ConnectError,
    DisconnectedError,
    MediaItem,
    MediaRules,
    PostPart,
    Provider,
    ProviderError,
    ProviderSettings,
    PublishResult,
    RefreshTokenError,
    RetryableError,
    TokenSet,
    classify_response,
    json_body,
    parse_retry_after,
    response_excerpt,
    response_json,
    token_set,
    tool,
)

# Slack error codes (https://api.slack.com/web#errors) by what they mean for Tidings.
REFRESH_ERRORS = frozenset({"token_expired", "invalid_auth", "not_authed"})
DISCONNECT_ERRORS = frozenset(
    {
        "token_revoked",
        "account_inactive",
        "app_uninstalled",
        "team_access_not_granted",
        "missing_scope",
        "no_permission",
        "ekm_access_denied",
        "team_not_found",
        "invalid_refresh_token",
    }
)
# At oauth.v2.access, those (invalid_refresh_token, team_access_not_granted, ...) are refusals
# of the grant like any bad request.
GRANT_REFUSALS = (DisconnectedError,)
RETRY_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
EXPLANATIONS = {
    "msg_too_long": "the message text is too long",
    "no_text": "the message has no text",
    "channel_not_found": "the channel does not exist or the app cannot see it",
    "not_in_channel": "the app is not a member of the channel; invite it with /invite",
    "is_archived": "the channel is archived",
    "restricted_action": "the workspace does not allow the app to post here",
    "token_revoked": "the app's access was revoked",
    "account_inactive": "the workspace or app was deactivated",
    "invalid_auth": "the access token is not valid",
    "token_expired": "the access token expired",
    "ratelimited": "too many requests",
}
CONVERSATION_PAGES = 20
TS = re.compile(r"^\d+\.\d+$")


class SlackSettings(ProviderSettings):
    """Slack post settings."""

    channel: str | None = Field(
        default=None,
        pattern=r"^[CGD][A-Z0-9]{2,}$",
        description="Conversation id to post in; defaults to the one picked when connecting",
    )
    unfurl_links: bool = Field(default=True, description="Show previews of links")


class SlackProvider(Provider[SlackSettings]):
    identifier = "slack"
    display_name = "Slack"
    connect_kind = "oauth"
    scopes = (
        "channels:read",
        "groups:read",
        "channels:history",
        "groups:history",
        "channels:join",
        "chat:write",
        "chat:write.public",
        "files:write",
        "files:read",
        "team:read",
    )
    default_max_length = 400000
    media_rules = MediaRules(max_images=10, max_videos=10, allow_mixed=True)
    settings_model = SlackSettings
    can_check_published = True
    default_urls = {"api": "https://slack.com/api", "web": "https://slack.com"}
    # The share of uploaded files is asynchronous: files.info shows the message after a moment.
    share_poll_interval = 0.5
    share_poll_timeout = 10.0

    # ---- errors -------------------------------------------------------------------------

    def classify_error(self, response: httpx.Response) -> ProviderError | None:
        status = response.status_code
        data: Any = None
        if "json" in response.headers.get("content-type", ""):
            data = response_json(response)
        code = data.get("error") if isinstance(data, dict) and data.get("ok") is False else None
        if status < 400 and code is None:
            return None
        excerpt = response_excerpt(response)
        if code is None:
            if status == 429:  # Slack's rate limit answer: Retry-After, often no body
                code = "ratelimited"
            else:
                return classify_response(response, message=f"Slack: HTTP {status}")
        code = str(code)
        message = f"Slack: {code}"
        if code in EXPLANATIONS:
            message += f" ({EXPLANATIONS[code]})"
        if code in REFRESH_ERRORS:
            return RefreshTokenError(message, status_code=status, excerpt=excerpt)
        if code in DISCONNECT_ERRORS:
            return DisconnectedError(message, status_code=status, excerpt=excerpt)
        if code in RETRY_ERRORS or status == 429 or status >= 500:
            return RetryableError(
                message,
                status_code=status,
                excerpt=excerpt,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        return BadBodyError(message, status_code=status, excerpt=excerpt)

    # ---- Web API --------------------------------------------------------------------------

    async def _get(self, token: str, method: str, params: Mapping[str, str]) -> dict[str, Any]:
        response = await self.request(
            "GET",
            f"{self.config.url('api')}/{method}",
            params=dict(params),
            headers={"Authorization": f"Bearer {token}"},
        )
        return dict(json_body(response))

    async def _post(
        self, token: str, method: str, body: Mapping[str, Any], *, idempotent: bool = False
    ) -> dict[str, Any]:
        response = await self.request(
            "POST",
            f"{self.config.url('api')}/{method}",
            json=dict(body),
            headers={"Authorization": f"Bearer {token}"},
            idempotent=idempotent,
        )
        return dict(json_body(response))

    async def _conversations(self, token: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor = ""
        for _ in range(CONVERSATION_PAGES):
            params = {
                "types": "public_channel,private_channel",
                "exclude_archived": "true",
                "limit": "200",
            }
            if cursor:
                params["cursor"] = cursor
            data = await self._get(token, "conversations.list", params)
            out.extend(c for c in data.get("channels") or [] if isinstance(c, dict))
            cursor = str((data.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                break
        return out

    async def _team(self, token: str) -> dict[str, Any]:
        team = (await self._get(token, "team.info", {})).get("team")
        if not isinstance(team, dict) or not team.get("id"):
            raise RetryableError("Slack team.info answered without a team")
        return team

    # ---- connecting ---------------------------------------------------------------------

    async def authorization_url(
        self,
        redirect_uri: str,
        state: str,
        code_verifier: str,
        custom_instance: Mapping[str, Any] | None = None,
    ) -> AuthorizationRequest:
        """Install the app in a workspace with the bot scopes Tidings needs."""
        return authorization_request(
            self,
            f"{self.config.url('web')}/oauth/v2/authorize",
            {
                "scope": ",".join(self.scopes),
                "redirect_uri": redirect_uri,
                "state": state,
            },
        )

    def _token_url(self) -> str:
        return f"{self.config.url('api')}/oauth.v2.access"

    async def exchange_code(
        self,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        custom_instance_details: Mapping[str, Any] | None = None,
    ) -> ConnectedAccount:
        """``oauth.v2.access``, then the workspace's name and icon; the channel comes next."""
        data = await self.oauth_token(
            self._token_url(),
            {"code": code, "redirect_uri": redirect_uri},
            purpose="exchange",
            auth=self.client_auth(),
            refused=GRANT_REFUSALS,
        )
        tokens = token_set(data)
        team = await self._team(tokens.access_token)
        icon = team.get("icon") or {}
        return ConnectedAccount(
            internal_id=str(team["id"]),
            name=str(team.get("name") or team["id"]),
            picture=icon.get("image_132") or icon.get("image_default") or None,
            username=str(team.get("domain") or "") or None,
            tokens=tokens,
            in_between_steps=True,
            additional_settings={"bot_user_id": str(data.get("bot_user_id") or "")},
        )

    async def refresh(self, credentials: ChannelCredentials) -> TokenSet:
        """Rotate the token (workspaces with token rotation only)."""
        return await self.refresh_grant(
            credentials,
            self._token_url(),
            expired="The Slack token is no longer valid; reconnect the channel",
            auth=self.client_auth(),
            refused=GRANT_REFUSALS,
        )

    async def list_choices(self, credentials: ChannelCredentials) -> list[Choice]:
        """The workspace's channels the app can see (public ones, private ones it is in)."""
        return [
            Choice(id=str(c["id"]), name=f"#{c.get('name')}")
            for c in await self._conversations(credentials.access_token)
        ]

    async def select_choice(
        self, credentials: ChannelCredentials, choice_id: str
    ) -> ConnectedAccount:
        """Post in ``choice_id`` by default; the app joins it when it is public."""
        token = credentials.access_token
        found = {str(c["id"]): c for c in await self._conversations(token)}
        channel = found.get(choice_id)
        if channel is None:
            raise ConnectError(f"Slack channel {choice_id} was not found")
        if not channel.get("is_member"):
            if channel.get("is_private"):
                raise ConnectError(
                    f"Invite the app to #{channel.get('name')} (/invite) and pick it again"
                )
            await self._post(token, "conversations.join", {"channel": choice_id}, idempotent=True)
        team = await self._team(token)
        icon = team.get("icon") or {}
        return ConnectedAccount(
            internal_id=str(team["id"]),
            name=str(team.get("name") or team["id"]),
            picture=icon.get("image_132") or icon.get("image_default") or None,
            username=str(team.get("domain") or "") or None,
            tokens=tokens_of(credentials),
            in_between_steps=False,
            additional_settings={
                **credentials.additional_settings,
                "channel_id": choice_id,
                "channel_name": str(channel.get("name") or ""),
            },
        )

    @tool("channels")
    async def channels_tool(
        self, credentials: ChannelCredentials, args: dict[str, Any]
    ) -> list[dict[str, str]]:
        """The conversations a post may target (for the ``channel`` setting)."""
        return [
            {"id": str(c["id"]), "name": str(c.get("name") or "")}
            for c in await self._conversations(credentials.access_token)
        ]

    # ---- publishing ---------------------------------------------------------------------

    def _channel(self, credentials: ChannelCredentials, settings: SlackSettings) -> str:
        channel = settings.channel or credentials.additional_settings.get("channel_id")
        if not channel:
            raise BadBodyError("Pick the Slack channel to post in")
        return str(channel)

    async def _upload(self, token: str, item: MediaItem, index: int) -> str:
        content = await self.read_media(item)
        form = {"filename": media_filename(item, index), "length": str(len(content))}
        if item.alt:
            form["alt_txt"] = item.alt[:1000]
        response = await self.request(
            "POST",
            f"{self.config.url('api')}/files.getUploadURLExternal",
            data=form,
            headers={"Authorization": f"Bearer {token}"},
            idempotent=True,
        )
        ticket = json_body(response)
        await self.request(
            "POST",
            str(ticket["upload_url"]),
            content=content,
            headers={"Content-Type": item.mime_type},
            idempotent=True,  # an unshared upload publishes nothing
        )
        return str(ticket["file_id"])

    async def _shared_ts(self, token: str, file_id: str, channel: str) -> str:
        async def check() -> str | None:
            data = await self._get(token, "files.info", {"file": file_id})
            shares = (data.get("file") or {}).get("shares") or {}
            for kind in ("public", "private"):
                for share in (shares.get(kind) or {}).get(channel) or []:
                    if share.get("ts"):
                        return str(share["ts"])
            return None

        return await poll(
            check,
            interval=self.share_poll_interval,
            give_up_after=self.share_poll_timeout,
            what="The Slack file share",
        )

    async def _permalink(self, token: str, channel: str, ts: str) -> str | None:
        try:
            data = await self._get(
                token, "chat.getPermalink", {"channel": channel, "message_ts": ts}
            )
        except ProviderError:
            return None  # the message is out; a missing link is not worth failing it
        link = data.get("permalink")
        return str(link) if link else None

    async def _send(
        self,
        credentials: ChannelCredentials,
        channel: str,
        part: PostPart,
        settings: SlackSettings,
        thread_ts: str | None,
    ) -> PublishResult:
        token = credentials.access_token
        if part.media:
            file_ids = [
                await self._upload(token, item, index) for index, item in enumerate(part.media)
            ]
            body: dict[str, Any] = {
                "files": [{"id": file_id} for file_id in file_ids],
                "channel_id": channel,
            }
            if part.content:
                body["initial_comment"] = part.content
            if thread_ts:
                body["thread_ts"] = thread_ts
            await self._post(token, "files.completeUploadExternal", body)
            try:
                ts = await self._shared_ts(token, file_ids[0], channel)
            except RetryableError:
                # The files are out but the message is not visible yet: report the post as
                # published (never retry it) under the file's id, without a thread to join.
                data = {"channel_id": channel, "file_id": file_ids[0]}
                if thread_ts:
                    data["thread_ts"] = thread_ts
                return PublishResult(id=file_ids[0], data=data)
        else:
            message: dict[str, Any] = {
                "channel": channel,
                "text": part.content,
                "unfurl_links": settings.unfurl_links,
            }
            if thread_ts:
                message["thread_ts"] = thread_ts
            data = await self._post(token, "chat.postMessage", message)
            ts = str(data["ts"])
            channel = str(data.get("channel") or channel)
        return PublishResult(
            id=ts,
            url=await self._permalink(token, channel, ts),
            data={"channel_id": channel, "thread_ts": thread_ts or ts},
        )

    async def publish(
        self, credentials: ChannelCredentials, part: PostPart, settings: SlackSettings
    ) -> PublishResult:
        """Post a message (with its files when it has media)."""
        return await self._send(
            credentials, self._channel(credentials, settings), part, settings, None
        )

    async def reply(
        self,
        credentials: ChannelCredentials,
        parent: PublishResult,
        part: PostPart,
        settings: SlackSettings,
    ) -> PublishResult:
        """Post in the thread of ``parent`` (Slack threads hang off their first message)."""
        channel = str(parent.data.get("channel_id") or self._channel(credentials, settings))
        thread = parent.data.get("thread_ts") or parent.id
        if not TS.match(str(thread)):
            thread = None  # a post known only by its file id: follow it in the channel
        return await self._send(credentials, channel, part, settings, thread)

    async def find_published(
        self,
        credentials: ChannelCredentials,
        part: PostPart,
        settings: SlackSettings,
        *,
        parent: PublishResult | None,
        since: datetime,
    ) -> PublishResult | None:
        """Look for the part among the app's messages since ``since``: in the channel's
        history, or in the parent's thread for a reply."""
        token = credentials.access_token
        channel = str(
            (parent.data.get("channel_id") if parent else None)
            or self._channel(credentials, settings)
        )
        oldest = f"{(since - CLOCK_SKEW).timestamp():.6f}"
        thread: str | None = None
        if parent is not None:
            thread = str(parent.data.get("thread_ts") or parent.id)
            if not TS.match(thread):
                raise ProviderError("Slack cannot tell which thread the reply went to")
            data = await self._get(
                token,
                "conversations.replies",
                {"channel": channel, "ts": thread, "oldest": oldest, "limit": "100"},
            )
        else:
            data = await self._get(
                token,
                "conversations.history",
                {"channel": channel, "oldest": oldest, "limit": "100"},
            )
        bot_user = credentials.additional_settings.get("bot_user_id")
        for message in data.get("messages") or []:
            ts = str(message.get("ts") or "")
            if not ts or ts == thread or float(ts) < float(oldest):
                continue
            if bot_user and message.get("user") != bot_user:
                continue
            if (message.get("thread_ts") if thread else None) not in (thread, None):
                continue
            if _unescape(str(message.get("text") or "")) != part.content:
                continue
            if len(message.get("files") or []) != len(part.media):
                continue
            return PublishResult(
                id=ts,
                url=await self._permalink(token, channel, ts),
                data={"channel_id": channel, "thread_ts": thread or ts},
            )
        return None


def _unescape(text: str) -> str:
    """Slack escapes &, < and > in message text."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
