"""A fake Telegram Bot API: getMe, getChat, getChatMember, sendMessage, sendPhoto, sendVideo,
sendAnimation, sendMediaGroup (multipart uploads with attach://), Telegram's error shape."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse, Response

from tests.channels.providers.servers.base import FakePlatform, RecordedRequest

BOT_TOKEN = "123456:AAEfakeTokenForTests"
BOT = {"id": 123456, "is_bot": True, "first_name": "Tidings", "username": "tidings_bot"}
CHANNEL = {
    "id": -1001234567890,
    "type": "channel",
    "title": "Tidings News",
    "username": "tidingsnews",
}
GROUP = {"id": -1009876543210, "type": "supergroup", "title": "Private group"}


def error(code: int, description: str, parameters: dict[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return JSONResponse(body, code)


def ok(result: Any) -> Response:
    return JSONResponse({"ok": True, "result": result})


class FakeTelegram(FakePlatform):
    """A bot (``BOT_TOKEN``) admin of ``@tidingsnews`` and member of a private supergroup."""

    def __init__(self, *, max_text: int = 4096) -> None:
        self.max_text = max_text
        self.revoked = False
        self.kicked = False
        self.bot_status = "administrator"
        self.messages: dict[tuple[str, int], dict[str, Any]] = {}
        self._next = 100
        super().__init__()

    def setup_routes(self) -> None:
        for method in ("GET", "POST"):
            self.add(method, "/bot{token}/{method}", self.dispatch)

    def _params(self, request: RecordedRequest) -> dict[str, Any]:
        if request.method == "GET":
            return dict(request.query)
        if isinstance(request.json, dict):
            return dict(request.json)
        return dict(request.form)

    async def dispatch(self, request: RecordedRequest) -> Response:
        if request.path_params["token"] != BOT_TOKEN or self.revoked:
            return error(401, "Unauthorized")
        handler = {
            "getMe": self.get_me,
            "getChat": self.get_chat,
            "getChatMember": self.get_chat_member,
            "sendMessage": self.send_message,
            "sendPhoto": self.send_photo,
            "sendVideo": self.send_video,
            "sendAnimation": self.send_animation,
            "sendMediaGroup": self.send_media_group,
        }.get(request.path_params["method"])
        if handler is None:
            return error(404, "Not Found")
        return await handler(request, self._params(request))

    def _chat(self, ref: Any) -> dict[str, Any] | None:
        for chat in (CHANNEL, GROUP):
            if str(ref) in (str(chat["id"]), f"@{chat.get('username')}"):
                return chat
        return None

    # ---- reads ---------------------------------------------------------------------------

    async def get_me(self, request: RecordedRequest, params: dict[str, Any]) -> Response:
        return ok(BOT)

    async def get_chat(self, request: RecordedRequest, params: dict[str, Any]) -> Response:
        chat = self._chat(params.get("chat_id"))
        if chat is None:
            return error(400, "Bad Request: chat not found")
        return ok(chat)

    async def get_chat_member(self, request: RecordedRequest, params: dict[str, Any]) -> Response:
        if self._chat(params.get("chat_id")) is None:
            return error(400, "Bad Request: chat not found")
        member: dict[str, Any] = {"user": BOT, "status": self.bot_status}
        if self.bot_status == "administrator":
            member["can_post_messages"] = True
        return ok(member)

    # ---- sends ---------------------------------------------------------------------------

    def _check(
        self, params: dict[str, Any], text_key: str, limit: int
    ) -> dict[str, Any] | Response:
        chat = self._chat(params.get("chat_id"))
        if chat is None:
            return error(400, "Bad Request: chat not found")
        if self.kicked:
            return error(403, "Forbidden: bot was kicked from the channel chat")
        text = str(params.get(text_key) or "")
        if len(text.encode("utf-16-le")) // 2 > limit:
            which = "message caption" if text_key == "caption" else "message"
            return error(400, f"Bad Request: {which} is too long")
        reply = params.get("reply_parameters")
        if isinstance(reply, str):
            reply = json.loads(reply)
        if reply and (str(chat["id"]), int(reply["message_id"])) not in self.messages:
            if not reply.get("allow_sending_without_reply"):
                return error(400, "Bad Request: message to be replied not found")
            reply = None
        return {"chat": chat, "reply": reply, "text": text}

    def _store(self, chat: dict[str, Any], reply: Any, **content: Any) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {
            "message_id": self._next,
            "chat": chat,
            "date": 1700000000,
            **content,
        }
        if reply:
            message["reply_to_message"] = {"message_id": int(reply["message_id"])}
        self.messages[(str(chat["id"]), self._next)] = message
        return message

    async def send_message(self, request: RecordedRequest, params: dict[str, Any]) -> Response:
        checked = self._check(params, "text", self.max_text)
        if isinstance(checked, Response):
            return checked
        if not checked["text"]:
            return error(400, "Bad Request: message text is empty")
        return ok(self._store(checked["chat"], checked["reply"], text=checked["text"]))

    async def _send_file(
        self, request: RecordedRequest, params: dict[str, Any], field: str
    ) -> Response:
        checked = self._check(params, "caption", 1024)
        if isinstance(checked, Response):
            return checked
        file = request.files.get(field)
        if file is None or not file.data:
            return error(400, f"Bad Request: there is no {field} in the request")
        content = {
            field: {
                "file_name": file.filename,
                "mime_type": file.content_type,
                "file_size": len(file.data),
            }
        }
        if checked["text"]:
            content["caption"] = checked["text"]
        return ok(self._store(checked["chat"], checked["reply"], **content))

    async def send_photo(self, request: RecordedRequest, params: dict[str, Any]) -> Response:
        return await self._send_file(request, params, "photo")

    async def send_video(self, request: RecordedRequest, params: dict[str, Any]) -> Response:
        return await self._send_file(request, params, "video")

    async def send_animation(self, request: RecordedRequest, params: dict[str, Any]) -> Response:
        return await self._send_file(request, params, "animation")

    async def send_media_group(self, request: RecordedRequest, params: dict[str, Any]) -> Response:
        checked = self._check(params, "none", 0)
        if isinstance(checked, Response):
            return checked
        media = json.loads(params.get("media") or "[]")
        if not 2 <= len(media) <= 10:
            return error(400, "Bad Request: wrong number of messages in the media group")
        sent = []
        for index, entry in enumerate(media):
            name = str(entry["media"]).removeprefix("attach://")
            file = request.files.get(name)
            if file is None:
                return error(400, f"Bad Request: file attach://{name} not found")
            if len(str(entry.get("caption") or "")) > 1024:
                return error(400, "Bad Request: message caption is too long")
            content: dict[str, Any] = {
                entry["type"]: {"file_name": file.filename, "file_size": len(file.data)},
                "media_group_id": "g1",
            }
            if entry.get("caption"):
                content["caption"] = entry["caption"]
            sent.append(
                self._store(checked["chat"], checked["reply"] if index == 0 else None, **content)
            )
        return ok(sent)
