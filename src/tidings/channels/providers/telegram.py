"""Telegram, through a bot the user created with @BotFather.

Connects with two fields: the bot token and the chat to post in (``@channelname`` or a numeric
id). ``getMe`` validates the token, ``getChat`` finds the chat and ``getChatMember`` checks that
the bot may post there. The bot token is the channel's access token; it does not expire.

Text goes out with ``sendMessage``; one photo / video / GIF with ``sendPhoto`` / ``sendVideo``
/ ``sendAnimation``; 2-10 files as an album with ``sendMediaGroup`` (multipart uploads, files
attached as ``attach://<name>``). Captions hold 1024 characters: longer text follows the media
as its own message, replying to it. Replies use ``reply_parameters``. Lengths are counted in
UTF-16 code units, as Telegram does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field

from tidings.channels.providers._common import media_filename, total_media_violations
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
    json_body,
    parse_retry_after,
    response_excerpt,
    response_json,
    response_message,
)

CAPTION_LIMIT = 1024
MAX_MEDIA = 10
PHOTO_MAX_BYTES = 10 * 1024 * 1024
FILE_MAX_BYTES = 50 * 1024 * 1024  # Bot API upload limit for videos and animations
# Descriptions meaning the bot can no longer post in the chat: the user has to fix and reconnect.
GONE_MARKERS = (
    "chat not found",
    "bot was kicked",
    "bot is not a member",
    "bot was blocked",
    "need administrator rights",
    "not enough rights",
    "have no rights to send",
    "chat_write_forbidden",
    "user is deactivated",
    "group chat was upgraded",
)
POSTING_STATUSES = frozenset({"creator", "administrator", "member", "restricted"})


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units (Telegram's unit: an emoji outside the BMP counts 2)."""
    return len(text.encode("utf-16-le")) // 2


class TelegramSettings(ProviderSettings):
    """Telegram post settings."""

    disable_notification: bool = Field(default=False, description="Send silently")
    protect_content: bool = Field(default=False, description="Forbid forwarding and saving")
    disable_link_preview: bool = Field(default=False, description="No preview of links")
    parse_mode: Literal["HTML", "MarkdownV2"] | None = Field(
        default=None, description="Formatting syntax of the text (plain text when unset)"
    )


class TelegramProvider(Provider[TelegramSettings]):
    identifier = "telegram"
    display_name = "Telegram"
    connect_kind = "fields"
    required_config = ()
    fields = (
        FieldSpec(
            name="bot_token",
            label="Bot token",
            secret=True,
            help="From @BotFather, e.g. 123456:ABC-DEF...",
        ),
        FieldSpec(
            name="chat_id",
            label="Chat",
            help="@channelname, or the numeric id of a group; add the bot as an admin first",
        ),
    )
    supports_refresh = False
    default_max_length = 4096
    text_counting = "utf16"
    media_rules = MediaRules(
        max_images=MAX_MEDIA,
        max_videos=MAX_MEDIA,
        allow_mixed=True,
        max_image_bytes=PHOTO_MAX_BYTES,
        max_video_bytes=FILE_MAX_BYTES,
    )
    settings_model = TelegramSettings
    default_urls = {"api": "https://api.telegram.org", "web": "https://t.me"}

    # ---- limits -------------------------------------------------------------------------

    def text_length(self, text: str) -> int:
        return utf16_length(text)

    def validate(
        self,
        parts: Sequence[PostPart],
        settings: Mapping[str, Any] | BaseModel | None = None,
        credentials: ChannelCredentials | None = None,
    ) -> list[RuleViolation]:
        violations = super().validate(parts, settings, credentials)
        violations.extend(total_media_violations(parts, MAX_MEDIA, self.display_name))
        return violations

    # ---- errors -------------------------------------------------------------------------

    def classify_error(self, response: httpx.Response) -> ProviderError | None:
        status = response.status_code
        body = response_json(response)
        data: dict[str, Any] = body if isinstance(body, dict) else {}
        if status < 400 and data.get("ok") is not False:
            return None
        raw_code = data.get("error_code")
        code = raw_code if isinstance(raw_code, int) else status
        description = str(data.get("description") or response_message(response))
        raw_parameters = data.get("parameters")
        parameters: dict[str, Any] = raw_parameters if isinstance(raw_parameters, dict) else {}
        message = f"Telegram: {description}"
        excerpt = response_excerpt(response)
        lowered = description.lower()
        if code == 429:
            retry_after = parameters.get("retry_after")
            return RetryableError(
                message,
                status_code=status,
                excerpt=excerpt,
                retry_after=float(retry_after)
                if isinstance(retry_after, int | float)
                else parse_retry_after(response.headers.get("retry-after")),
            )
        if code == 401 or (code == 404 and lowered == "not found"):
            # The token was revoked in @BotFather (a malformed one answers a bare 404): nothing
            # to refresh, a new token is needed.
            return DisconnectedError(
                f"{message} (the bot token was revoked; reconnect with a new one)",
                status_code=status,
                excerpt=excerpt,
            )
        if parameters.get("migrate_to_chat_id"):
            return DisconnectedError(
                f"{message} (the group is now chat {parameters['migrate_to_chat_id']}; "
                "reconnect it)",
                status_code=status,
                excerpt=excerpt,
            )
        if code == 403 or any(marker in lowered for marker in GONE_MARKERS):
            return DisconnectedError(message, status_code=status, excerpt=excerpt)
        if code >= 500 or code in (408, 420):
            return RetryableError(message, status_code=status, excerpt=excerpt)
        return BadBodyError(message, status_code=status, excerpt=excerpt)

    # ---- Bot API ------------------------------------------------------------------------

    def _method_url(self, token: str, method: str) -> str:
        return f"{self.config.url('api')}/bot{token}/{method}"

    async def _call(self, token: str, method: str, *, read: bool = False, **kwargs: Any) -> Any:
        response = await self.request(
            "GET" if read else "POST", self._method_url(token, method), **kwargs
        )
        return json_body(response).get("result")

    # ---- connecting ---------------------------------------------------------------------

    async def connect_with_fields(self, values: Mapping[str, str]) -> ConnectedAccount:
        """Check the token, find the chat and make sure the bot may post in it."""
        fields = self.field_values(values)
        token = fields["bot_token"]
        chat_ref = fields["chat_id"]
        if chat_ref.startswith("https://t.me/"):
            chat_ref = "@" + chat_ref.removeprefix("https://t.me/").strip("/")
        if not chat_ref.startswith("@") and not chat_ref.lstrip("-").isdigit():
            chat_ref = "@" + chat_ref
        try:
            bot = await self._call(token, "getMe", read=True)
        except (DisconnectedError, BadBodyError, RefreshTokenError) as exc:
            raise ConnectError(
                f"Telegram refused the bot token: {exc.message}", status_code=exc.status_code
            ) from exc
        try:
            chat = await self._call(token, "getChat", read=True, params={"chat_id": chat_ref})
            member = await self._call(
                token,
                "getChatMember",
                read=True,
                params={"chat_id": str(chat["id"]), "user_id": str(bot["id"])},
            )
        except (DisconnectedError, BadBodyError) as exc:
            raise ConnectError(
                f"The bot cannot see {chat_ref}: {exc.message}. Add @{bot.get('username')} "
                "to the chat first",
                status_code=exc.status_code,
            ) from exc
        self._check_member(chat, member, bot)
        username = chat.get("username")
        return ConnectedAccount(
            internal_id=str(chat["id"]),
            name=str(
                chat.get("title")
                or " ".join(filter(None, [chat.get("first_name"), chat.get("last_name")]))
                or username
                or chat["id"]
            ),
            username=f"@{username}" if username else None,
            tokens=TokenSet(access_token=token),
            custom_instance_details={"chat_id": str(chat["id"])},
            additional_settings={
                "bot_id": str(bot["id"]),
                "bot_username": str(bot.get("username") or ""),
                "chat_type": str(chat.get("type") or ""),
                "chat_username": str(username or ""),
            },
        )

    def _check_member(
        self, chat: Mapping[str, Any], member: Mapping[str, Any], bot: Mapping[str, Any]
    ) -> None:
        status = member.get("status")
        name = f"@{bot.get('username')}"
        if status not in POSTING_STATUSES:
            raise ConnectError(f"{name} is not a member of this chat; add it first")
        if chat.get("type") == "channel" and (
            status != "creator"
            and not (status == "administrator" and member.get("can_post_messages", True))
        ):
            raise ConnectError(f"Make {name} an administrator of the channel who can post")
        if status == "restricted" and not member.get("can_send_messages", True):
            raise ConnectError(f"{name} is not allowed to send messages in this chat")

    # ---- publishing ---------------------------------------------------------------------

    def _chat(self, credentials: ChannelCredentials) -> str:
        details = credentials.custom_instance_details or {}
        return str(details.get("chat_id") or credentials.internal_id)

    def _message_url(self, credentials: ChannelCredentials, message_id: str) -> str | None:
        username = credentials.additional_settings.get("chat_username") or (
            (credentials.profile or "").removeprefix("@")
        )
        web = self.config.url("web")
        if username:
            return f"{web}/{username}/{message_id}"
        chat = self._chat(credentials)
        if chat.startswith("-100"):  # supergroups and channels have private links
            return f"{web}/c/{chat.removeprefix('-100')}/{message_id}"
        return None

    def _common(
        self, chat: str, settings: TelegramSettings, reply_to: str | None
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {"chat_id": chat}
        if reply_to:
            fields["reply_parameters"] = {
                "message_id": int(reply_to),
                "allow_sending_without_reply": True,
            }
        if settings.disable_notification:
            fields["disable_notification"] = True
        if settings.protect_content:
            fields["protect_content"] = True
        return fields

    @staticmethod
    def _as_form(fields: Mapping[str, Any]) -> dict[str, str]:
        """Multipart fields: objects as JSON, booleans as Telegram spells them."""
        out = {}
        for key, value in fields.items():
            if isinstance(value, bool):
                out[key] = "true" if value else "false"
            elif isinstance(value, dict | list):
                out[key] = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
            else:
                out[key] = str(value)
        return out

    async def _send_text(
        self, token: str, chat: str, text: str, settings: TelegramSettings, reply_to: str | None
    ) -> dict[str, Any]:
        body = self._common(chat, settings, reply_to) | {"text": text}
        if settings.parse_mode:
            body["parse_mode"] = settings.parse_mode
        if settings.disable_link_preview:
            body["link_preview_options"] = {"is_disabled": True}
        return dict(await self._call(token, "sendMessage", json=body))

    async def _send_single(
        self,
        token: str,
        chat: str,
        item: MediaItem,
        caption: str,
        settings: TelegramSettings,
        reply_to: str | None,
    ) -> dict[str, Any]:
        fields = self._common(chat, settings, reply_to)
        if caption:
            fields["caption"] = caption
            if settings.parse_mode:
                fields["parse_mode"] = settings.parse_mode
        content = await self.read_media(item)
        files: dict[str, tuple[str, bytes, str]] = {}
        if item.type == "video":
            method, field = "sendVideo", "video"
            fields["supports_streaming"] = True
            if item.width and item.height:
                fields["width"], fields["height"] = item.width, item.height
            thumbnail = await self.read_thumbnail(item)
            if thumbnail:
                files["thumbnail"] = ("thumbnail.jpg", thumbnail, "image/jpeg")
        elif item.mime_type.lower() == "image/gif":
            method, field = "sendAnimation", "animation"
        else:
            method, field = "sendPhoto", "photo"
        files[field] = (media_filename(item), content, item.mime_type)
        return dict(await self._call(token, method, data=self._as_form(fields), files=files))

    async def _send_album(
        self,
        token: str,
        chat: str,
        media: Sequence[MediaItem],
        caption: str,
        settings: TelegramSettings,
        reply_to: str | None,
    ) -> list[dict[str, Any]]:
        files: list[tuple[str, tuple[str, bytes, str]]] = []
        described: list[dict[str, Any]] = []
        for index, item in enumerate(media):
            name = f"file{index}"
            files.append(
                (name, (media_filename(item, index), await self.read_media(item), item.mime_type))
            )
            entry: dict[str, Any] = {
                "type": "video" if item.type == "video" else "photo",
                "media": f"attach://{name}",
            }
            if item.type == "video":
                entry["supports_streaming"] = True
            if index == 0 and caption:
                entry["caption"] = caption
                if settings.parse_mode:
                    entry["parse_mode"] = settings.parse_mode
            described.append(entry)
        fields = self._common(chat, settings, reply_to) | {"media": described}
        result = await self._call(token, "sendMediaGroup", data=self._as_form(fields), files=files)
        return [dict(m) for m in result]

    async def _send(
        self,
        credentials: ChannelCredentials,
        part: PostPart,
        settings: TelegramSettings,
        reply_to: str | None,
    ) -> PublishResult:
        token, chat = credentials.access_token, self._chat(credentials)
        text = part.content
        if not part.media:
            sent = [await self._send_text(token, chat, text, settings, reply_to)]
        else:
            fits = utf16_length(text) <= CAPTION_LIMIT
            caption = text if fits else ""
            if len(part.media) == 1:
                sent = [
                    await self._send_single(token, chat, part.media[0], caption, settings, reply_to)
                ]
            else:
                sent = await self._send_album(token, chat, part.media, caption, settings, reply_to)
            if not fits:
                # Too long for a caption: the text follows as a reply to the media.
                sent.append(
                    await self._send_text(token, chat, text, settings, str(sent[0]["message_id"]))
                )
        # Later parts reply to the message carrying the text (the last one sent).
        message_id = str(sent[-1]["message_id"])
        return PublishResult(
            id=message_id,
            url=self._message_url(credentials, message_id),
            data={"message_ids": [str(m["message_id"]) for m in sent]},
        )

    async def publish(
        self, credentials: ChannelCredentials, part: PostPart, settings: TelegramSettings
    ) -> PublishResult:
        """Send the message (with its media, uploaded in the same request)."""
        return await self._send(credentials, part, settings, None)

    async def reply(
        self,
        credentials: ChannelCredentials,
        parent: PublishResult,
        part: PostPart,
        settings: TelegramSettings,
    ) -> PublishResult:
        """Send a message replying to ``parent``."""
        return await self._send(credentials, part, settings, parent.id)
