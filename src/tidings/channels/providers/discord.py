"""Discord, as a bot in the user's server (guild).

Connecting is Discord's bot authorization flow: the user adds Tidings' bot to a server (scope
``bot`` with the permissions the bot needs); the token response carries the chosen ``guild``.
The channel to post in is picked afterwards (``in_between_steps``) among the guild's text and
announcement channels, and may be overridden per post (setting ``channel``, as in Postiz).

Messages are sent by the bot, with ``Authorization: Bot <token>`` where the token is Tidings'
(``TIDINGS_DISCORD_BOT_TOKEN``); the user's OAuth token only proves who connected the server.
Attachments go in one multipart request (``files[n]`` + ``payload_json``). A ``nonce`` with
``enforce_nonce`` makes a retried send return the first message instead of posting twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel, Field

from tidings.channels.providers._common import (
    authorization_request,
    extra_setting,
    media_filename,
    recent,
    short_key,
    tokens_of,
    total_media_violations,
)
from tidings.channels.providers.base import (
    AuthorizationRequest,
    BadBodyError,
    ChannelCredentials,
    Choice,
    ConnectedAccount,
    ConnectError,
    DisconnectedError,
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
    json_body,
    parse_retry_after,
    response_excerpt,
    response_json,
    response_message,
    token_set,
    tool,
)

# Permission bits (https://discord.com/developers/docs/topics/permissions).
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
SEND_MESSAGES_IN_THREADS = 1 << 38
BOT_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | MENTION_EVERYONE
    | SEND_MESSAGES_IN_THREADS
)

# Channel types a bot can post plain messages in.
GUILD_TEXT = 0
GUILD_ANNOUNCEMENT = 5
POSTABLE_TYPES = frozenset({GUILD_TEXT, GUILD_ANNOUNCEMENT})

# JSON error codes (https://discord.com/developers/docs/topics/opcodes-and-status-codes).
GONE_CODES = frozenset(
    {
        10003,  # Unknown Channel: the picked channel was deleted
        10004,  # Unknown Guild: the server is gone
        50001,  # Missing Access: the bot was removed from the server or the channel
    }
)
MAX_ATTACHMENTS = 10


class DiscordSettings(ProviderSettings):
    """Discord post settings."""

    channel: str | None = Field(
        default=None,
        pattern=r"^\d{1,25}$",
        description="Channel id to post in; defaults to the channel picked when connecting",
    )


def _form_errors(errors: Any, path: str = "") -> list[str]:
    """Flatten Discord's nested ``errors`` object into ``field: message`` lines."""
    out: list[str] = []
    if not isinstance(errors, dict):
        return out
    for key, value in errors.items():
        if key == "_errors" and isinstance(value, list):
            for item in value:
                if isinstance(item, dict) and item.get("message"):
                    out.append(f"{path or 'body'}: {item['message']}")
        else:
            out.extend(_form_errors(value, f"{path}.{key}" if path else str(key)))
    return out


class DiscordProvider(Provider[DiscordSettings]):
    identifier = "discord"
    display_name = "Discord"
    connect_kind = "oauth"
    # Publishing goes through Tidings' bot.
    required_config = ("client_id", "client_secret", "bot_token")
    scopes = ("bot", "identify", "guilds")
    default_max_length = 1980
    media_rules = MediaRules(
        max_images=MAX_ATTACHMENTS, max_videos=MAX_ATTACHMENTS, allow_mixed=True
    )
    settings_model = DiscordSettings
    can_check_published = True
    default_urls = {
        "api": "https://discord.com/api/v10",
        "web": "https://discord.com",
        "cdn": "https://cdn.discordapp.com",
    }

    # ---- limits -------------------------------------------------------------------------

    def validate(
        self,
        parts: Sequence[PostPart],
        settings: Mapping[str, Any] | BaseModel | None = None,
        credentials: ChannelCredentials | None = None,
    ) -> list[RuleViolation]:
        violations = super().validate(parts, settings, credentials)
        violations.extend(total_media_violations(parts, MAX_ATTACHMENTS, self.display_name))
        return violations

    # ---- errors -------------------------------------------------------------------------

    def classify_error(self, response: httpx.Response) -> ProviderError | None:
        status = response.status_code
        if status < 400:
            return None
        data = response_json(response)
        data = data if isinstance(data, dict) else {}
        code = data.get("code")
        # REST errors carry {code, message, errors}; the OAuth endpoints {error, error_description}.
        message = str(data.get("message") or response_message(response))
        details = _form_errors(data.get("errors"))
        if details:
            message = f"{message}: {'; '.join(details)}"
        message = f"Discord: {message}"
        excerpt = response_excerpt(response)
        if status == 429:
            retry_after = data.get("retry_after")
            seconds = (
                float(retry_after)
                if isinstance(retry_after, int | float)
                else parse_retry_after(response.headers.get("retry-after"))
            )
            return RetryableError(message, status_code=status, excerpt=excerpt, retry_after=seconds)
        if status == 401:
            return RefreshTokenError(message, status_code=status, excerpt=excerpt)
        if code in GONE_CODES:
            return DisconnectedError(message, status_code=status, excerpt=excerpt)
        if status >= 500 or status == 408:
            return RetryableError(
                message,
                status_code=status,
                excerpt=excerpt,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        return BadBodyError(message, status_code=status, excerpt=excerpt)

    # ---- plumbing -----------------------------------------------------------------------

    def _bot_auth(self) -> dict[str, str]:
        token = extra_setting(self, "bot_token")
        if not token:
            raise ProviderError(
                "Discord needs the bot token of Tidings' Discord application "
                "(TIDINGS_DISCORD_BOT_TOKEN)"
            )
        return {"Authorization": f"Bot {token}"}

    def _guild_id(self, credentials: ChannelCredentials) -> str:
        details = credentials.custom_instance_details or {}
        return str(details.get("guild_id") or credentials.internal_id)

    def _icon(self, guild: Mapping[str, Any]) -> str | None:
        icon = guild.get("icon")
        if not icon:
            return None
        return f"{self.config.url('cdn')}/icons/{guild['id']}/{icon}.png"

    async def _channels(self, credentials: ChannelCredentials) -> list[dict[str, Any]]:
        api = self.config.url("api")
        guild_id = self._guild_id(credentials)
        response = await self.request(
            "GET", f"{api}/guilds/{guild_id}/channels", headers=self._bot_auth()
        )
        channels = [
            c
            for c in json_body(response)
            if isinstance(c, dict) and c.get("type") in POSTABLE_TYPES
        ]
        channels.sort(key=lambda c: (int(c.get("position") or 0), str(c.get("name"))))
        return channels

    # ---- connecting ---------------------------------------------------------------------

    async def authorization_url(
        self,
        redirect_uri: str,
        state: str,
        code_verifier: str,
        custom_instance: Mapping[str, Any] | None = None,
    ) -> AuthorizationRequest:
        """Discord's bot authorization: add the bot to a server the user manages."""
        return authorization_request(
            self,
            f"{self.config.url('web')}/oauth2/authorize",
            {
                "response_type": "code",
                "redirect_uri": redirect_uri,
                "scope": " ".join(self.scopes),
                "permissions": str(BOT_PERMISSIONS),
                "integration_type": "0",  # guild install
                "state": state,
            },
        )

    async def exchange_code(
        self,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        custom_instance_details: Mapping[str, Any] | None = None,
    ) -> ConnectedAccount:
        """Trade the code; the answer names the server the bot joined. The channel is picked
        next (``in_between_steps``)."""
        data = await self.oauth_token(
            f"{self.config.url('api')}/oauth2/token",
            {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
            purpose="exchange",
            auth=self.client_auth(),
        )
        guild = data.get("guild")
        if not isinstance(guild, dict) or not guild.get("id"):
            raise ConnectError("Discord did not add the bot to a server; pick a server to connect")
        tokens = token_set(data)
        user = json_body(
            await self.request(
                "GET",
                f"{self.config.url('api')}/users/@me",
                headers={"Authorization": f"Bearer {tokens.access_token}"},
            )
        )
        return ConnectedAccount(
            internal_id=str(guild["id"]),
            name=str(guild.get("name") or guild["id"]),
            picture=self._icon(guild),
            username=str(user.get("username") or "") or None,
            tokens=tokens,
            custom_instance_details={"guild_id": str(guild["id"])},
            in_between_steps=True,
            additional_settings={"connected_by": str(user.get("id") or "")},
        )

    async def refresh(self, credentials: ChannelCredentials) -> TokenSet:
        """Refresh the user's OAuth token (the bot keeps posting regardless)."""
        return await self.refresh_grant(
            credentials,
            f"{self.config.url('api')}/oauth2/token",
            expired="The Discord authorization expired; reconnect the channel",
            auth=self.client_auth(),
        )

    async def list_choices(self, credentials: ChannelCredentials) -> list[Choice]:
        """The server's text and announcement channels."""
        return [
            Choice(id=str(c["id"]), name=f"#{c.get('name')}")
            for c in await self._channels(credentials)
        ]

    async def select_choice(
        self, credentials: ChannelCredentials, choice_id: str
    ) -> ConnectedAccount:
        """Post in channel ``choice_id`` by default."""
        channels = {str(c["id"]): c for c in await self._channels(credentials)}
        channel = channels.get(choice_id)
        if channel is None:
            raise ConnectError(f"Channel {choice_id} is not a text channel of this server")
        guild_id = self._guild_id(credentials)
        guild = json_body(
            await self.request(
                "GET", f"{self.config.url('api')}/guilds/{guild_id}", headers=self._bot_auth()
            )
        )
        return ConnectedAccount(
            internal_id=guild_id,
            name=str(guild.get("name") or guild_id),
            picture=self._icon(guild),
            username=credentials.profile,
            tokens=tokens_of(credentials),
            custom_instance_details={"guild_id": guild_id},
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
        """The channels a post may target (for the ``channel`` setting)."""
        return [
            {"id": str(c["id"]), "name": str(c.get("name") or "")}
            for c in await self._channels(credentials)
        ]

    # ---- publishing ---------------------------------------------------------------------

    def _channel(self, credentials: ChannelCredentials, settings: DiscordSettings) -> str:
        channel = settings.channel or credentials.additional_settings.get("channel_id")
        if not channel:
            raise BadBodyError("Pick the Discord channel to post in")
        return str(channel)

    async def _send(
        self,
        credentials: ChannelCredentials,
        channel_id: str,
        part: PostPart,
        reply_to: str | None,
    ) -> PublishResult:
        payload: dict[str, Any] = {"content": part.content}
        if reply_to:
            payload["message_reference"] = {
                "message_id": reply_to,
                "channel_id": channel_id,
                "fail_if_not_exists": False,
            }
        # The same part sent twice within minutes answers the first message.
        payload["nonce"] = short_key(
            part.idempotency_key or "",
            channel_id,
            reply_to or "",
            part.content,
            *[m.url for m in part.media],
        )
        payload["enforce_nonce"] = True
        url = f"{self.config.url('api')}/channels/{channel_id}/messages"
        headers = self._bot_auth()
        if part.media:
            files: list[tuple[str, tuple[str, bytes, str]]] = []
            attachments = []
            for index, item in enumerate(part.media):
                name = media_filename(item, index)
                files.append(
                    (f"files[{index}]", (name, await self.read_media(item), item.mime_type))
                )
                attachment: dict[str, Any] = {"id": index, "filename": name}
                if item.alt:
                    attachment["description"] = item.alt[:1024]
                attachments.append(attachment)
            payload["attachments"] = attachments
            response = await self.request(
                "POST",
                url,
                headers=headers,
                data={"payload_json": json.dumps(payload, ensure_ascii=False)},
                files=files,
            )
        else:
            response = await self.request("POST", url, headers=headers, json=payload)
        message = json_body(response)
        message_id = str(message["id"])
        channel = str(message.get("channel_id") or channel_id)
        guild_id = self._guild_id(credentials)
        return PublishResult(
            id=message_id,
            url=f"{self.config.url('web')}/channels/{guild_id}/{channel}/{message_id}",
            data={"channel_id": channel},
        )

    async def publish(
        self, credentials: ChannelCredentials, part: PostPart, settings: DiscordSettings
    ) -> PublishResult:
        """Send a message (attachments in the same request)."""
        return await self._send(credentials, self._channel(credentials, settings), part, None)

    async def reply(
        self,
        credentials: ChannelCredentials,
        parent: PublishResult,
        part: PostPart,
        settings: DiscordSettings,
    ) -> PublishResult:
        """Send a message replying to ``parent`` in its channel."""
        channel = str(parent.data.get("channel_id") or self._channel(credentials, settings))
        return await self._send(credentials, channel, part, parent.id)

    async def find_published(
        self,
        credentials: ChannelCredentials,
        part: PostPart,
        settings: DiscordSettings,
        *,
        parent: PublishResult | None,
        since: datetime,
    ) -> PublishResult | None:
        """Look for the part among the channel's latest messages sent by a bot since
        ``since``: same text, same number of attachments, replying to the same parent."""
        channel = str(
            (parent.data.get("channel_id") if parent else None)
            or self._channel(credentials, settings)
        )
        response = await self.request(
            "GET",
            f"{self.config.url('api')}/channels/{channel}/messages",
            params={"limit": "50"},
            headers=self._bot_auth(),
        )
        guild_id = self._guild_id(credentials)
        for message in json_body(response) or []:
            if not recent(message.get("timestamp"), since):
                continue
            if not (message.get("author") or {}).get("bot"):
                continue
            reference = (message.get("message_reference") or {}).get("message_id")
            if reference != (parent.id if parent else None):
                continue
            if message.get("content") != part.content:
                continue
            if len(message.get("attachments") or []) != len(part.media):
                continue
            message_id = str(message["id"])
            return PublishResult(
                id=message_id,
                url=f"{self.config.url('web')}/channels/{guild_id}/{channel}/{message_id}",
                data={"channel_id": channel},
            )
        return None
