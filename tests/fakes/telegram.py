"""A fake Telegram Bot API server on 127.0.0.1, written for these tests.

It speaks the Bot API's HTTP protocol closely enough for python-telegram-bot: getMe, getUpdates
(long polling), sendMessage, sendPhoto, sendDocument and sendAnimation (multipart), editMessageText,
editMessageCaption, editMessageMedia (a photo, also into a text message), deleteMessage, answerCallbackQuery, getFile and file downloads, setMyCommands, setWebhook and
deleteWebhook. Any other method answers 404, so a gap fails loudly. It keeps Telegram's limits
that matter to us (text and caption length, callback data, photo size and sides, HTML that must
parse) and recompresses photos to JPEG as Telegram does.

It runs on its own thread and event loop, so a bot may run in this process or in a subprocess.
Tests act as people (`send`, `press`) and read what the bot did (`wait_for`, `bot_messages`).
From async tests use the `a*` variants, which wait off the event loop.
"""

from __future__ import annotations

import asyncio
import html
import io
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from aiohttp import web
from PIL import Image

from tests.fakes.base import ThreadedServer

TOKEN = "123456:TEST-token-for-the-fake"
BOT = {
    "id": 999,
    "is_bot": True,
    "first_name": "sdbot",
    "username": "sdbot_test_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}
ADA = {"id": 1001, "is_bot": False, "first_name": "Ada", "username": "ada"}
BOB = {"id": 1002, "is_bot": False, "first_name": "Bob", "username": "bob"}
GROUP = {"id": -100500, "type": "supergroup", "title": "Test group"}

MAX_TEXT, MAX_CAPTION, MAX_CALLBACK_DATA, MAX_PHOTO_BYTES = 4096, 1024, 64, 10 * 1000 * 1000
MAX_UPLOAD_BYTES = 50 * 1000 * 1000  # any file a bot uploads
MAX_THUMBNAIL_SIDE, MAX_THUMBNAIL_BYTES = 320, 200 * 1000  # a JPEG
ALLOWED_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "code", "pre", "a", "tg-spoiler", "blockquote"}


class ApiError(Exception):
    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters


@dataclass
class BotMessage:
    """A message the bot sent, as the chat shows it now."""

    chat_id: int
    message_id: int
    kind: str  # "text", "photo", "document", "animation"
    text: str  # the text or caption as people see it (HTML tags removed)
    reply_to: int | None
    keyboard: list[list[dict[str, str]]]
    photo: bytes | None = None  # after Telegram's JPEG recompression
    uploaded: bytes | None = None  # the bytes the bot uploaded
    filename: str | None = None
    thumbnail: bytes | None = None  # an animation's thumbnail, as uploaded
    deleted: bool = False
    edits: list[str] = field(default_factory=list)
    edit_times: list[float] = field(default_factory=list)  # time.monotonic() of each edit
    media_edits: list[bytes] = field(default_factory=list)  # the photos editMessageMedia put in, as uploaded
    media_times: list[float] = field(default_factory=list)  # time.monotonic() of each of those
    sent_at: float = field(default_factory=time.monotonic)
    api: dict[str, Any] = field(default_factory=dict)  # the Message object as the Bot API returns it
    params: dict[str, Any] = field(default_factory=dict)  # what the bot sent with it (files left out)

    def labels(self) -> list[str]:
        return [button["text"] for row in self.keyboard for button in row]

    @property
    def spoiler(self) -> bool:
        """Sent with `has_spoiler` (a photo or animation hidden until tapped)."""
        return str(self.params.get("has_spoiler", "")).lower() == "true"

    def data(self, label: str) -> str:
        for row in self.keyboard:
            for button in row:
                if button["text"] == label:
                    return button["callback_data"]
        raise KeyError(f"no button {label!r} on message {self.message_id}: {self.labels()}")


class _HtmlCheck(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS:
            raise ApiError(400, f'Bad Request: can\'t parse entities: unsupported start tag "{tag}"')
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            raise ApiError(400, f'Bad Request: can\'t parse entities: unexpected end tag "{tag}"')

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def visible_text(text: str, parse_mode: str | None) -> str:
    if parse_mode != "HTML":
        return text
    if re.search(r"<(?![a-zA-Z/])", text) or re.search(r"&(?![a-zA-Z]+;|#\d+;)", text):
        raise ApiError(400, "Bad Request: can't parse entities: unescaped < or &")
    checker = _HtmlCheck()
    checker.feed(text)
    checker.close()
    if checker.stack:
        raise ApiError(400, f"Bad Request: can't parse entities: can't find end tag corresponding to \"{checker.stack[-1]}\"")
    return html.unescape("".join(checker.text))


class FakeTelegram(ThreadedServer[BotMessage]):
    thread_name = "fake-telegram"

    def __init__(self) -> None:
        super().__init__()
        self._update_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._callback_ids = itertools.count(1)
        self._album_ids = itertools.count(1)
        self._updates: list[dict[str, Any]] = []
        self._new_update: asyncio.Event | None = None
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}  # every message, people's and the bot's
        self.files: dict[str, bytes] = {}
        self.answers: dict[str, dict[str, Any]] = {}  # callback query id -> answerCallbackQuery params
        self.commands: list[dict[str, Any]] = []
        self.webhook: dict[str, Any] | None = None
        self.calls: list[str] = []  # every method called, in order
        self.refused: list[tuple[str, int]] = []  # (method, error code) of each error answered
        self.chat_admins: set[tuple[int, int]] = set()  # (chat id, user id): getChatMember says "creator"
        self._failures: dict[str, list[int]] = {}  # method -> retry_after of each 429 still to answer

    # --- server life ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)

    async def _setup(self) -> None:
        self._new_update = asyncio.Event()

    async def before_shutdown(self) -> None:
        assert self._new_update is not None
        self._new_update.set()  # release long polls still waiting, so shutdown does not wait them out

    # --- what tests do as people ----------------------------------------------------------------

    def send(
        self,
        text: str | None = None,
        *,
        user: dict[str, Any] = ADA,
        chat: dict[str, Any] | None = None,
        reply_to: int | None = None,
        photo: bytes | None = None,
        document: tuple[str, bytes, str] | None = None,
        media_group_id: str | None = None,
    ) -> dict[str, Any]:
        """A person sends a message (text, a photo or a file, with `text` as caption); returns it.
        Messages with the same `media_group_id` are one album, as Telegram sends albums: one message
        per picture (see `send_album`)."""
        chat = chat or {"id": user["id"], "type": "private", "first_name": user["first_name"]}

        def add() -> dict[str, Any]:
            message: dict[str, Any] = {
                "message_id": self._next_message_id(chat["id"]),
                "date": int(time.time()),
                "chat": chat,
                "from": user,
            }
            key = "caption" if photo is not None or document is not None else "text"
            if text is not None:
                message[key] = text
                command = re.match(r"/\w+(@\w+)?", text)
                if command:
                    message[f"{key}_entities" if key == "caption" else "entities"] = [
                        {"type": "bot_command", "offset": 0, "length": command.end()}
                    ]
            if photo is not None:
                message["photo"] = self._photo_sizes(photo)
            if document is not None:
                name, data, mime = document
                message["document"] = {**self._store_file(data), "file_name": name, "mime_type": mime}
            if reply_to is not None:
                message["reply_to_message"] = dict(self.messages[(chat["id"], reply_to)])
            if media_group_id is not None:
                message["media_group_id"] = media_group_id
            self.messages[(chat["id"], message["message_id"])] = message
            self._push({"message": message})
            return message

        return self.on_loop(add)

    def send_album(
        self,
        items: list[tuple[str | None, bytes]],
        *,
        gap: float = 0.0,
        user: dict[str, Any] = ADA,
        chat: dict[str, Any] | None = None,
        reply_to: int | None = None,
    ) -> list[dict[str, Any]]:
        """A person sends an album of photos, (caption or None, picture) each: one message per
        photo, `gap` seconds apart, with one `media_group_id`; returns the messages. It sleeps
        between them: from async tests, call it through `asyncio.to_thread`."""
        group = f"album-{next(self._album_ids)}"
        messages = []
        for i, (caption, photo) in enumerate(items):
            if i and gap:
                time.sleep(gap)
            messages.append(self.send(caption, user=user, chat=chat, reply_to=reply_to, photo=photo, media_group_id=group))
        return messages

    def press(self, message: BotMessage, label: str | None = None, *, data: str | None = None, user: dict[str, Any] = ADA) -> str:
        """A person presses a button (by label, or raw callback data); returns the query id."""
        callback_data = data if data is not None else message.data(label or "")

        def add() -> str:
            query_id = str(next(self._callback_ids))
            api = self.messages[(message.chat_id, message.message_id)]
            query = {"id": query_id, "from": user, "message": api, "chat_instance": "42", "data": callback_data}
            self._push({"callback_query": query})
            return query_id

        return self.on_loop(add)

    def fail(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next `times` calls of `method` with flood control (429, retry_after)."""
        self.on_loop(lambda: self._failures.setdefault(method, []).extend([retry_after] * times))

    def update(self, update: dict[str, Any]) -> None:
        self.on_loop(lambda: self._push(update))

    # --- what tests read ----------------------------------------------------------------------------

    def last_seen(self) -> str:
        messages = [(m.chat_id, m.message_id, m.kind, m.text[:60], m.deleted) for m in self.sent[-6:]]
        return f"{messages}; last errors answered: {self.refused[-3:]}"

    def replies_to(self, message: dict[str, Any]) -> Callable[[BotMessage], bool]:
        chat, number = message["chat"]["id"], message["message_id"]
        return lambda m: m.chat_id == chat and m.reply_to == number

    # --- internals -------------------------------------------------------------------------------

    def _next_message_id(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    def _push(self, payload: dict[str, Any]) -> None:
        self._updates.append({"update_id": next(self._update_ids), **payload})
        assert self._new_update is not None
        self._new_update.set()

    def _store_file(self, data: bytes) -> dict[str, Any]:
        number = next(self._file_ids)
        file_id = f"file-{number}"
        self.files[file_id] = data
        return {"file_id": file_id, "file_unique_id": f"unique-{number}", "file_size": len(data)}

    def _photo_sizes(self, data: bytes) -> list[dict[str, Any]]:
        """Telegram keeps a photo as JPEGs: a thumbnail and the full size, smallest first."""
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("RGB")
        sizes = []
        for side in (90, max(image.size)):
            copy = image.copy()
            copy.thumbnail((side, side))
            out = io.BytesIO()
            copy.save(out, format="JPEG", quality=87)
            sizes.append({**self._store_file(out.getvalue()), "width": copy.width, "height": copy.height})
        return sizes

    def _record(self, message: BotMessage) -> None:
        with self._cond:
            self.sent.append(message)
            self.messages[(message.chat_id, message.message_id)] = message.api
            self._cond.notify_all()

    def _find(self, chat_id: int, message_id: int) -> BotMessage | None:
        for message in self.sent:
            if message.chat_id == chat_id and message.message_id == message_id and not message.deleted:
                return message
        return None

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != TOKEN:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        with self._cond:
            self.calls.append(method)
            self._cond.notify_all()
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            self.refused.append((method, 404))
            return web.json_response({"ok": False, "error_code": 404, "description": f"Not Found: {method}"}, status=404)
        try:
            pending = self._failures.get(method)
            if pending:
                retry_after = pending.pop(0)
                raise ApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})
            params, files = await _read_params(request)
            result = await handler(params, files) if asyncio.iscoroutinefunction(handler) else handler(params, files)
        except ApiError as error:
            self.refused.append((method, error.code))
            body: dict[str, Any] = {"ok": False, "error_code": error.code, "description": error.description}
            if error.parameters:
                body["parameters"] = error.parameters
            return web.json_response(body, status=error.code)
        return web.json_response({"ok": True, "result": result})

    async def _download(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != TOKEN:
            return web.Response(status=401)
        data = self.files.get(request.match_info["path"].removeprefix("files/"))
        return web.Response(body=data) if data is not None else web.Response(status=404)

    # --- methods ---------------------------------------------------------------------------------

    def _m_getMe(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        return BOT

    def _m_getChatMember(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        chat_id, user_id = int(params["chat_id"]), int(params["user_id"])
        user = {"id": user_id, "is_bot": False, "first_name": f"user {user_id}"}
        if (chat_id, user_id) in self.chat_admins:
            return {"status": "creator", "user": user, "is_anonymous": False}
        return {"status": "member", "user": user}

    def _m_deleteWebhook(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        self.webhook = None
        return True

    def _m_setWebhook(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        self.webhook = params
        return True

    def _m_setMyCommands(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        self.commands = _json(params["commands"])
        return True

    async def _m_getUpdates(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        offset, timeout = int(params.get("offset", 0) or 0), float(params.get("timeout", 0) or 0)
        self._updates = [u for u in self._updates if u["update_id"] >= offset]  # confirmed ones go
        if not self._updates and timeout > 0:
            assert self._new_update is not None
            self._new_update.clear()
            try:
                await asyncio.wait_for(self._new_update.wait(), timeout)
            except TimeoutError:
                pass
        return self._updates[: int(params.get("limit", 100) or 100)]

    def _m_sendMessage(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        text = visible_text(str(params["text"]), params.get("parse_mode"))
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        return self._new_bot_message(params, "text", text).api

    def _m_sendPhoto(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        name, data = _upload(files, "photo")
        if len(data) > MAX_PHOTO_BYTES:
            raise ApiError(400, "Bad Request: PHOTO_SAVE_FILE_INVALID")
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        except Exception:
            raise ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED") from None
        if width + height > 10_000 or max(width, height) / min(width, height) > 20:
            raise ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        sizes = self._photo_sizes(data)
        message = self._new_bot_message(params, "photo", self._caption(params), extra={"photo": sizes}, uploaded=data, filename=name)
        message.photo = self.files[sizes[-1]["file_id"]]
        return message.api

    def _m_sendDocument(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        name, data = _upload(files, "document")
        document = {
            **self._store_file(data),
            "file_name": name,
            "mime_type": "image/png" if name.endswith(".png") else "application/octet-stream",
        }
        message = self._new_bot_message(
            params, "document", self._caption(params), extra={"document": document}, uploaded=data, filename=name
        )
        return message.api

    def _m_sendAnimation(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        """A GIF or a soundless H.264 MP4, played inline; Telegram keeps it as an animation (and a document)."""
        name, data = _upload(files, "animation")
        if len(data) > MAX_UPLOAD_BYTES:
            raise ApiError(413, "Request Entity Too Large")
        if data[4:8] == b"ftyp":
            mime = "video/mp4"
        elif data[:6] in (b"GIF87a", b"GIF89a"):
            mime = "image/gif"
        else:
            raise ApiError(400, "Bad Request: wrong type of the web page content")  # what Telegram says to junk
        thumbnail = None
        if params.get("thumbnail") or "thumbnail" in files:  # a file part of its own, or "attach://<part>"
            attached = str(params.get("thumbnail") or "thumbnail").removeprefix("attach://")
            _, thumbnail = _upload(files, attached)
            try:
                with Image.open(io.BytesIO(thumbnail)) as image:
                    fine = image.format == "JPEG" and max(image.size) <= MAX_THUMBNAIL_SIDE
            except Exception:
                fine = False
            if not fine or len(thumbnail) > MAX_THUMBNAIL_BYTES:
                raise ApiError(400, "Bad Request: THUMBNAIL_INVALID")  # stricter than Telegram, which drops it
        animation = {
            **self._store_file(data),
            "file_name": name,
            "mime_type": mime,
            "width": int(params.get("width") or 0),
            "height": int(params.get("height") or 0),
            "duration": int(params.get("duration") or 0),
        }
        document = {k: v for k, v in animation.items() if k not in ("width", "height", "duration")}
        message = self._new_bot_message(
            params,
            "animation",
            self._caption(params),
            extra={"animation": animation, "document": document},
            uploaded=data,
            filename=name,
            thumbnail=thumbnail,
        )
        return message.api

    def _m_editMessageText(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        message = self._find(int(params["chat_id"]), int(params["message_id"]))
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        text = visible_text(str(params["text"]), params.get("parse_mode"))
        if message.kind != "text":
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        if text == message.text:
            raise ApiError(400, "Bad Request: message is not modified: specified new message content and reply markup are exactly the same")
        with self._cond:
            message.edits.append(text)
            message.edit_times.append(time.monotonic())
            message.text = text
            message.api["text"] = text
            self._cond.notify_all()
        return message.api

    def _m_editMessageCaption(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        message = self._find(int(params["chat_id"]), int(params["message_id"]))
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        if message.kind == "text":
            raise ApiError(400, "Bad Request: there is no caption in the message to edit")
        caption = self._caption(params)
        if caption == message.text:
            raise ApiError(400, "Bad Request: message is not modified: specified new message content and reply markup are exactly the same")
        with self._cond:
            message.edits.append(caption)
            message.edit_times.append(time.monotonic())
            message.text = caption
            message.api["caption"] = caption
            self._cond.notify_all()
        return message.api

    def _m_editMessageMedia(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        """A new photo (and caption) for a photo message, or media added to a text message, which
        then becomes a photo whose caption is the media's (Bot API: "edit animation, audio,
        document, photo, or video messages, or to add media to text messages")."""
        message = self._find(int(params["chat_id"]), int(params["message_id"]))
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        media = _json(params.get("media") or "{}")
        if media.get("type") != "photo":
            raise ApiError(400, "Bad Request: only photos are edited in by this fake")
        _, data = _upload(files, str(media.get("media", "")).removeprefix("attach://"))
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.verify()
        except Exception:
            raise ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED") from None
        caption = self._caption(media)
        sizes = self._photo_sizes(data)
        with self._cond:
            if message.kind == "text":
                message.api.pop("text", None)
            message.kind = "photo"
            message.text = caption
            message.api.update(caption=caption, photo=sizes)
            message.photo = self.files[sizes[-1]["file_id"]]
            message.uploaded = data
            message.media_edits.append(data)
            message.media_times.append(time.monotonic())
            message.edits.append(caption)
            message.edit_times.append(time.monotonic())
            self._cond.notify_all()
        return message.api

    def _m_deleteMessage(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        message = self._find(int(params["chat_id"]), int(params["message_id"]))
        if message is None:
            raise ApiError(400, "Bad Request: message to delete not found")
        with self._cond:
            message.deleted = True
            self._cond.notify_all()
        return True

    def _m_answerCallbackQuery(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        if len(str(params.get("text", ""))) > 200:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        with self._cond:
            self.answers[str(params["callback_query_id"])] = params
            self._cond.notify_all()
        return True

    def _m_getFile(self, params: dict[str, Any], files: dict[str, Any]) -> Any:
        file_id = str(params["file_id"])
        if file_id not in self.files:
            raise ApiError(400, "Bad Request: invalid file_id")
        return {
            "file_id": file_id,
            "file_unique_id": f"u-{file_id}",
            "file_size": len(self.files[file_id]),
            "file_path": f"files/{file_id}",
        }

    # --- helpers -------------------------------------------------------------------------------------

    def _caption(self, params: dict[str, Any]) -> str:
        caption = visible_text(str(params.get("caption", "")), params.get("parse_mode"))
        if len(caption) > MAX_CAPTION:
            raise ApiError(400, "Bad Request: message caption is too long")
        return caption

    def _new_bot_message(
        self,
        params: dict[str, Any],
        kind: str,
        text: str,
        *,
        extra: dict[str, Any] | None = None,
        uploaded: bytes | None = None,
        filename: str | None = None,
        thumbnail: bytes | None = None,
    ) -> BotMessage:
        chat_id = int(params["chat_id"])
        keyboard = (_json(params["reply_markup"]) or {}).get("inline_keyboard", []) if params.get("reply_markup") else []
        for row in keyboard:
            for button in row:
                if len(button.get("callback_data", "").encode()) > MAX_CALLBACK_DATA:
                    raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        reply_to = None
        if params.get("reply_parameters"):
            reply_to = int(_json(params["reply_parameters"])["message_id"])
        chat = {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"}
        api: dict[str, Any] = {
            "message_id": self._next_message_id(chat_id),
            "date": int(time.time()),
            "chat": chat,
            "from": BOT,
            **(extra or {}),
        }
        api["text" if kind == "text" else "caption"] = text
        if keyboard:
            api["reply_markup"] = {"inline_keyboard": keyboard}
        if reply_to is not None and (chat_id, reply_to) in self.messages:
            api["reply_to_message"] = self.messages[(chat_id, reply_to)]
        message = BotMessage(
            chat_id,
            api["message_id"],
            kind,
            text,
            reply_to,
            keyboard,
            uploaded=uploaded,
            filename=filename,
            thumbnail=thumbnail,
            api=api,
            params=dict(params),
        )
        # complete before it is recorded: a test waiting in another thread sees it at once
        self._record(message)
        return message


async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
    params: dict[str, Any] = dict(request.query)
    files: dict[str, tuple[str, bytes]] = {}
    if request.content_type == "application/json":
        params.update(await request.json())
    elif request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        async for part in reader:
            if part.filename is not None:
                files[part.name] = (part.filename, bytes(await part.read()))
            else:
                params[part.name] = await part.text()
    elif request.can_read_body:
        params.update(await request.post())
    return params, files


def _upload(files: dict[str, tuple[str, bytes]], name: str) -> tuple[str, bytes]:
    if name not in files:
        raise ApiError(400, f"Bad Request: there is no {name} in the request")
    return files[name]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
