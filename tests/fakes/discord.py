"""A fake Discord (REST API and gateway) on 127.0.0.1, written for these tests.

Enough of Discord for discord.py 2.x: the gateway's HELLO / IDENTIFY / READY / GUILD_CREATE and
heartbeats, then events the tests dispatch (INTERACTION_CREATE, MESSAGE_CREATE); over REST
`users/@me`, `oauth2/applications/@me`, command sync (global and guild), interaction callbacks
(message, defer, modal, autocomplete), webhook followups with files, message edits and deletes
(webhook and channel), channel messages, and attachment downloads. Anything else is 404. JSON is
answered with the content type exactly `application/json`, as discord.py requires.

It runs on its own thread and event loop. Tests act as people (`slash`, `press`, `context_menu`,
`submit_modal`, `post`) and read what the bot did (`wait_for`, `messages`, `callbacks`).
"""

from __future__ import annotations

import itertools
import json
import mimetypes
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.base import ThreadedServer

TOKEN = "MTEST.fake-discord-token.for-tests-only"
APP_ID = "777000000000000001"
BOT_USER = {"id": APP_ID, "username": "sdbot", "discriminator": "0", "global_name": "sdbot", "avatar": None, "bot": True}
ADA = {"id": "1001", "username": "ada", "discriminator": "0", "global_name": "Ada", "avatar": None}
BOB = {"id": "1002", "username": "bob", "discriminator": "0", "global_name": "Bob", "avatar": None}
GUILD_ID = "500"
GENERAL = {
    "id": "600",
    "type": 0,
    "guild_id": GUILD_ID,
    "name": "general",
    "nsfw": False,
    "position": 0,
    "permission_overwrites": [],
    "parent_id": None,
    "topic": None,
    "last_message_id": None,
    "rate_limit_per_user": 0,
}
AFTER_DARK = {**GENERAL, "id": "601", "name": "after-dark", "nsfw": True, "position": 1}
ALL_PERMISSIONS = str((1 << 50) - 1)
HELPERS_ROLE = "510"  # a guild role the guild has; people get it through FakeDiscord.member_roles
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
EPHEMERAL, LOADING = 1 << 6, 1 << 7


@dataclass
class Sent:
    """A message of the bot, as the channel shows it now."""

    id: str
    channel_id: str
    content: str
    components: list[dict[str, Any]]
    files: dict[str, bytes]  # filename -> bytes
    flags: int = 0
    interaction_id: str | None = None  # the interaction it answers, if any
    reference: str | None = None  # the message it replies to
    deleted: bool = False
    edits: list[str] = field(default_factory=list)
    edit_times: list[float] = field(default_factory=list)  # time.monotonic() of each edit
    file_edits: list[dict[str, bytes]] = field(default_factory=list)  # the files each edit that sent files put in
    file_times: list[float] = field(default_factory=list)  # time.monotonic() of each of those
    sent_at: float = field(default_factory=time.monotonic)
    api: dict[str, Any] = field(default_factory=dict)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    def labels(self) -> list[str]:
        return [c.get("label", "") for row in self.components for c in row.get("components", [])]

    def custom_id(self, label: str) -> str:
        for row in self.components:
            for component in row.get("components", []):
                if component.get("label") == label:
                    return component["custom_id"]
        raise KeyError(f"no button {label!r} on message {self.id}: {self.labels()}")


@dataclass
class Interaction:
    id: str
    token: str
    payload: dict[str, Any]
    callbacks: list[dict[str, Any]] = field(default_factory=list)  # interaction callback bodies
    original: str | None = None  # id of the original response message

    @property
    def deferred(self) -> bool:
        return any(c["type"] in (5, 6) for c in self.callbacks)


class FakeDiscord(ThreadedServer[Sent]):
    thread_name = "fake-discord"

    def __init__(self, upload_limit: int = DEFAULT_UPLOAD_LIMIT) -> None:
        super().__init__()
        self.upload_limit = upload_limit
        self._ids = itertools.count(900_000_000_000_000_001)
        self._sockets: list[web.WebSocketResponse] = []
        self._sequence = itertools.count(1)
        self.identified = 0  # IDENTIFYs received
        self.intents: int | None = None
        self.commands: dict[str, list[dict[str, Any]]] = {}  # "global" or guild id -> registered commands
        self.interactions: dict[str, Interaction] = {}
        self.messages: dict[str, dict[str, Any]] = {}  # every message by id (people's and the bot's)
        self.files: dict[str, bytes] = {}  # attachment path -> bytes
        self.calls: list[str] = []
        self.refused: list[tuple[str, int]] = []
        self.member_roles: dict[str, list[str]] = {}  # user id -> the guild role ids their member payloads carry
        self.member_permissions: dict[str, str] = {}  # user id -> their permissions bits (default: all)

    # --- server life ------------------------------------------------------------------------

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{path:.+}", self._download)
        app.router.add_route("*", "/api/v10/{path:.+}", self._api)

    async def before_shutdown(self) -> None:
        for socket in list(self._sockets):
            await socket.close()

    # --- what tests do as people ----------------------------------------------------------------

    def slash(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        user: dict[str, Any] = ADA,
        channel: dict[str, Any] = GENERAL,
        attachments: dict[str, tuple[str, bytes, str]] | None = None,
        kind: int = 2,
        focused: str | None = None,
    ) -> Interaction:
        """A person runs `/name` with options; attachment options name (filename, bytes, type)."""
        resolved: dict[str, Any] = {}
        data_options = []
        for key, value in (options or {}).items():
            if isinstance(value, bool):
                data_options.append({"name": key, "type": 5, "value": value})
            elif isinstance(value, int):
                data_options.append({"name": key, "type": 4, "value": value})
            elif isinstance(value, float):
                data_options.append({"name": key, "type": 10, "value": value})
            else:
                data_options.append({"name": key, "type": 3, "value": value, **({"focused": True} if key == focused else {})})
        for key, (filename, data, content_type) in (attachments or {}).items():
            attachment = self._attachment(filename, data, content_type)
            resolved.setdefault("attachments", {})[attachment["id"]] = attachment
            data_options.append({"name": key, "type": 11, "value": attachment["id"]})
        command = {"id": self._command_id(name), "name": name, "type": 1, "options": data_options}
        if resolved:
            command["resolved"] = resolved
        return self._interact(kind, command, user, channel)

    def autocomplete(self, name: str, options: dict[str, Any], focused: str, **kwargs: Any) -> Interaction:
        """A person types in option `focused`; Discord asks the bot for choices."""
        return self.slash(name, options, kind=4, focused=focused, **kwargs)

    def press(self, message: Sent, label: str | None = None, *, custom_id: str | None = None, user: dict[str, Any] = ADA) -> Interaction:
        data = {"custom_id": custom_id or message.custom_id(label or ""), "component_type": 2}
        channel = GENERAL if message.channel_id == GENERAL["id"] else AFTER_DARK
        return self._interact(3, data, user, channel, message=self.messages[message.id])

    def context_menu(self, name: str, target: dict[str, Any] | Sent, *, user: dict[str, Any] = ADA) -> Interaction:
        message = target.api if isinstance(target, Sent) else target
        data = {
            "id": self._command_id(name),
            "name": name,
            "type": 3,
            "target_id": message["id"],
            "resolved": {"messages": {message["id"]: message}},
        }
        channel = GENERAL if message["channel_id"] == GENERAL["id"] else AFTER_DARK
        return self._interact(2, data, user, channel)

    @staticmethod
    def _text_inputs(opened: Interaction) -> list[dict[str, Any]]:
        """The text inputs of the modal an interaction answered with (in action rows or labels)."""
        modal = next(c["data"] for c in opened.callbacks if c["type"] == 9)
        found = []
        for row in modal["components"]:
            for component in row.get("components", []) + ([row["component"]] if "component" in row else []):
                if component.get("type") == 4:
                    found.append(component)
        return found

    def modal_fields(self, opened: Interaction) -> list[str]:
        return [component["custom_id"] for component in self._text_inputs(opened)]

    def submit_modal(self, opened: Interaction, values: dict[str, str], *, user: dict[str, Any] = ADA) -> Interaction:
        """A person fills in and submits the modal `opened` answered with."""
        modal = next(c["data"] for c in opened.callbacks if c["type"] == 9)
        rows = [
            {"type": 1, "components": [{"type": 4, "custom_id": c["custom_id"], "value": values[c["custom_id"]]}]}
            for c in self._text_inputs(opened)
        ]
        return self._interact(5, {"custom_id": modal["custom_id"], "components": rows}, user, GENERAL)

    def post(
        self,
        content: str,
        *,
        user: dict[str, Any] = ADA,
        channel: dict[str, Any] = GENERAL,
        reply_to: str | None = None,
        attachments: list[tuple[str, bytes, str]] | None = None,
    ) -> dict[str, Any]:
        """A person posts a message in a channel (a reply when `reply_to` names a message)."""

        def make() -> Any:
            message = self._message(channel["id"], user, content, [self._attachment(*a) for a in attachments or []])
            message["mentions"] = [u for u in (BOT_USER, ADA, BOB) if f"<@{u['id']}>" in content or f"<@!{u['id']}>" in content]
            if reply_to is not None:
                message["message_reference"] = {"message_id": reply_to, "channel_id": channel["id"], "guild_id": GUILD_ID}
                message["referenced_message"] = self.messages.get(reply_to)
                message["type"] = 19
            message["guild_id"] = GUILD_ID
            message["member"] = _member(user, self.member_roles, self.member_permissions)
            self.messages[message["id"]] = message
            return self._dispatch("MESSAGE_CREATE", message)

        self.on_loop(make)
        return self.messages[max(self.messages, key=int)]

    def plant(self, content: str, buttons: dict[str, str], channel: dict[str, Any] = GENERAL) -> Sent:
        """A message of the bot that its database does not know (from a wiped installation, say)."""
        row = {
            "type": 1,
            "components": [{"type": 2, "style": 2, "label": label, "custom_id": custom_id} for label, custom_id in buttons.items()],
        }
        return self.on_loop(lambda: self._create(channel["id"], {"content": content, "components": [row]}, {}))

    # --- what tests read ----------------------------------------------------------------------------

    def last_seen(self) -> str:
        messages = [(m.id[-4:], m.content[:50], m.labels(), m.deleted, m.ephemeral) for m in self.sent[-6:]]
        return f"{messages}; errors answered: {self.refused[-3:]}"

    # --- internals: people's side ------------------------------------------------------------------

    def _new_id(self) -> str:
        return str(next(self._ids))

    def _command_id(self, name: str) -> str:
        for commands in self.commands.values():
            for command in commands:
                if command["name"] == name:
                    return command["id"]
        return "0"

    def _attachment(self, filename: str, data: bytes, content_type: str) -> dict[str, Any]:
        attachment_id = self._new_id()
        path = f"{attachment_id}/{filename}"
        self.files[path] = data
        url = f"http://127.0.0.1:{self.port}/attachments/{path}"
        return {"id": attachment_id, "filename": filename, "size": len(data), "url": url, "proxy_url": url, "content_type": content_type}

    def _message(self, channel_id: str, author: dict[str, Any], content: str, attachments: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self._new_id(),
            "channel_id": channel_id,
            "author": author,
            "content": content,
            "timestamp": "2026-11-26T00:00:00+00:00",
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": attachments,
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
            "components": [],
        }

    def _interact(
        self, kind: int, data: dict[str, Any], user: dict[str, Any], channel: dict[str, Any], message: dict[str, Any] | None = None
    ) -> Interaction:
        def make() -> Any:
            interaction_id = self._new_id()
            payload: dict[str, Any] = {
                "id": interaction_id,
                "application_id": APP_ID,
                "type": kind,
                "data": data,
                "guild_id": GUILD_ID,
                "channel_id": channel["id"],
                "channel": channel,
                "member": _member(user, self.member_roles, self.member_permissions),
                "token": f"itoken-{interaction_id}",
                "version": 1,
                "app_permissions": ALL_PERMISSIONS,
                "locale": "en-US",
                "guild_locale": "en-US",
                "entitlements": [],
                "authorizing_integration_owners": {"0": GUILD_ID},
                "context": 0,
                "attachment_size_limit": self.upload_limit,
            }
            if message is not None:
                payload["message"] = message
            record = Interaction(interaction_id, payload["token"], payload)
            self.interactions[interaction_id] = record
            self.interactions[payload["token"]] = record
            return self._dispatch("INTERACTION_CREATE", payload)

        self.on_loop(make)
        return self.interactions[max((k for k in self.interactions if k.isdigit()), key=int)]

    async def _dispatch(self, event: str, data: dict[str, Any]) -> None:
        if not self._sockets:
            raise RuntimeError("no bot is connected to the fake gateway")
        for socket in self._sockets:
            await socket.send_str(json.dumps({"op": 0, "t": event, "s": next(self._sequence), "d": data}))

    # --- internals: the gateway ----------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        await socket.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None}))
        self._sockets.append(socket)
        try:
            async for frame in socket:
                if frame.type != WSMsgType.TEXT:
                    continue
                message = json.loads(frame.data)
                if message["op"] == 1:  # heartbeat
                    await socket.send_str(json.dumps({"op": 11, "d": None, "s": None, "t": None}))
                elif message["op"] == 2:  # identify
                    if message["d"]["token"] != TOKEN:
                        await socket.close(code=4004, message=b"Authentication failed.")
                        break
                    self.intents = message["d"].get("intents")
                    await self._ready(socket)
                    with self._cond:
                        self.identified += 1
                        self._cond.notify_all()
        finally:
            self._sockets.remove(socket)
        return socket

    async def _ready(self, socket: web.WebSocketResponse) -> None:
        ready = {
            "v": 10,
            "user": BOT_USER,
            "guilds": [{"id": GUILD_ID, "unavailable": True}],
            "session_id": "fake-session",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": APP_ID, "flags": 0},
            "private_channels": [],
            "relationships": [],
        }
        await socket.send_str(json.dumps({"op": 0, "t": "READY", "s": next(self._sequence), "d": ready}))
        guild = {
            "id": GUILD_ID,
            "name": "Test guild",
            "owner_id": ADA["id"],
            "channels": [GENERAL, AFTER_DARK],
            "roles": [
                {
                    "id": GUILD_ID,
                    "name": "@everyone",
                    "permissions": ALL_PERMISSIONS,
                    "position": 0,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                },
                {
                    "id": HELPERS_ROLE,
                    "name": "helpers",
                    "permissions": "0",
                    "position": 1,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": True,
                    "flags": 0,
                },
            ],
            "members": [_member(BOT_USER)],
            "member_count": 3,
            "features": [],
            "emojis": [],
            "stickers": [],
            "threads": [],
            "voice_states": [],
            "presences": [],
            "large": False,
            "unavailable": False,
            "premium_tier": 0,
            "filesize_limit": self.upload_limit,
        }
        await socket.send_str(json.dumps({"op": 0, "t": "GUILD_CREATE", "s": next(self._sequence), "d": guild}))

    async def _download(self, request: web.Request) -> web.Response:
        data = self.files.get(request.match_info["path"])
        return web.Response(body=data) if data is not None else web.Response(status=404)

    # --- internals: REST ---------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        parts = path.split("/")
        method = request.method
        with self._cond:
            self.calls.append(f"{method} {path}")
            self._cond.notify_all()
        webhook = parts[0] in ("webhooks", "interactions")
        if not webhook and request.headers.get("Authorization") != f"Bot {TOKEN}":
            return _error(401, 0, "401: Unauthorized", self.refused, path)
        try:
            payload, files = await _read_body(request)
            result = self._route(method, parts, payload, files, request.query)
        except _NotFound:
            return _error(404, 0, f"404: Not Found ({method} /{path} is not in the fake)", self.refused, path)
        except _ApiError as error:
            return _error(error.status, error.code, error.message, self.refused, path)
        if result is None:
            return web.Response(status=204)
        return _json_response(result)

    def _route(self, method: str, parts: list[str], payload: dict[str, Any], files: dict[str, tuple[str, bytes]], query: Any) -> Any:
        match (method, parts):
            case ("GET", ["users", "@me"]):
                return BOT_USER
            case ("GET", ["oauth2", "applications", "@me"]):
                return {
                    "id": APP_ID,
                    "name": "sdbot",
                    "icon": None,
                    "description": "",
                    "bot_public": True,
                    "bot_require_code_grant": False,
                    "verify_key": "0" * 64,
                    "flags": 0,
                    "owner": ADA,
                    "team": None,
                    "summary": "",
                    "rpc_origins": [],
                }
            case ("PUT", ["applications", _, "commands"]):
                return self._sync("global", payload)
            case ("PUT", ["applications", _, "guilds", guild, "commands"]):
                return self._sync(guild, payload)
            case ("POST", ["interactions", interaction_id, _, "callback"]):
                return self._callback(interaction_id, payload, files)
            case ("POST", ["webhooks", _, token]):
                return self._followup(token, payload, files)
            case ("GET", ["webhooks", _, token, "messages", message]):
                return self._webhook_message(token, message).api
            case ("PATCH", ["webhooks", _, token, "messages", message]):
                return self._edit(self._webhook_message(token, message), payload, files)
            case ("DELETE", ["webhooks", _, token, "messages", message]):
                self._delete(self._webhook_message(token, message))
                return None
            case ("POST", ["channels", channel, "messages"]):
                return self._create(channel, payload, files).api
            case ("PATCH", ["channels", _, "messages", message]):
                return self._edit(self._find(message), payload, files)
            case ("DELETE", ["channels", _, "messages", message]):
                self._delete(self._find(message))
                return None
        raise _NotFound

    def _sync(self, scope: str, commands: Any) -> list[dict[str, Any]]:
        defaults = {"type": 1, "description": "", "options": [], "default_member_permissions": None, "nsfw": False}
        registered = [
            {
                **defaults,
                **c,
                "id": self._new_id(),
                "application_id": APP_ID,
                "version": "1",
                **({"guild_id": scope} if scope != "global" else {}),
            }
            for c in commands
        ]
        self.commands[scope] = registered
        self.notify()
        return registered

    def _callback(self, interaction_id: str, body: dict[str, Any], files: dict[str, tuple[str, bytes]]) -> Any:
        record = self.interactions.get(interaction_id)
        if record is None:
            raise _ApiError(404, 10062, "Unknown interaction")
        if record.callbacks:
            raise _ApiError(400, 40060, "Interaction has already been acknowledged.")
        record.callbacks.append(body)
        kind = body["type"]
        response: dict[str, Any] = {"id": interaction_id, "type": record.payload["type"]}
        resource: dict[str, Any] = {"type": kind}
        if kind in (4, 5):  # a message now, or a "thinking…" one to edit later
            data = body.get("data") or {}
            if kind == 5:
                data = {**data, "flags": (data.get("flags") or 0) | LOADING}
            sent = self._create(record.payload["channel_id"], data, files, interaction=record)
            record.original = sent.id
            response.update(response_message_id=sent.id, response_message_loading=kind == 5, response_message_ephemeral=sent.ephemeral)
            resource["message"] = sent.api
        self.notify()
        return {"interaction": response, "resource": resource}

    def _followup(self, token: str, payload: dict[str, Any], files: dict[str, tuple[str, bytes]]) -> Any:
        record = self.interactions.get(token)
        if record is None:
            raise _ApiError(404, 10015, "Unknown Webhook")
        original = self._find(record.original) if record.original else None
        if original is not None and original.flags & LOADING:
            # The first followup after a deferred "thinking" response becomes that response (Discord's rule).
            return self._edit(original, {**payload, "flags": original.flags & ~LOADING}, files)
        return self._create(record.payload["channel_id"], payload, files, interaction=record).api

    def _webhook_message(self, token: str, message: str) -> Sent:
        record = self.interactions.get(token)
        if record is None:
            raise _ApiError(404, 10015, "Unknown Webhook")
        found = self._find(record.original if message == "@original" else message)
        if found is None:
            raise _ApiError(404, 10008, "Unknown Message")
        return found

    def _find(self, message_id: str | None) -> Sent | None:
        for message in self.sent:
            if message.id == message_id and not message.deleted:
                return message
        return None

    def _create(
        self, channel_id: str, payload: dict[str, Any], files: dict[str, tuple[str, bytes]], interaction: Interaction | None = None
    ) -> Sent:
        content = payload.get("content") or ""
        if len(content) > 2000:
            raise _ApiError(400, 50035, "Invalid Form Body: content must be 2000 or fewer in length.")
        self._check_files(files)
        api = self._message(channel_id, BOT_USER, content, self._stored_attachments(payload, files))
        api["components"] = payload.get("components") or []
        api["flags"] = payload.get("flags") or 0
        reference = (payload.get("message_reference") or {}).get("message_id")
        reference = str(reference) if reference is not None else None  # discord.py sends a number
        if reference:
            api["message_reference"] = {"message_id": reference, "channel_id": channel_id}
        if interaction is not None:
            api["interaction_metadata"] = {
                "id": interaction.id,
                "type": interaction.payload["type"],
                "user": interaction.payload["member"]["user"],
            }
            api["webhook_id"] = APP_ID
        api["guild_id"] = GUILD_ID
        sent = Sent(
            api["id"],
            channel_id,
            content,
            api["components"],
            {n: d for n, d in files.values()},
            api["flags"],
            interaction.id if interaction else None,
            reference,
            api=api,
        )
        with self._cond:
            self.sent.append(sent)
            self.messages[sent.id] = api
            self._cond.notify_all()
        return sent

    def _edit(self, message: Sent | None, payload: dict[str, Any], files: dict[str, tuple[str, bytes]]) -> Any:
        if message is None:
            raise _ApiError(404, 10008, "Unknown Message")
        self._check_files(files)
        with self._cond:
            if "content" in payload:
                message.content = payload["content"] or ""
                message.edits.append(message.content)
                message.api["content"] = message.content
            if "components" in payload:
                message.components = payload["components"] or []
                message.api["components"] = message.components
            if "flags" in payload:
                message.flags = payload["flags"] or 0
                message.api["flags"] = message.flags
            if "attachments" in payload or files:
                message.files = {n: d for n, d in files.values()}
                message.api["attachments"] = self._stored_attachments(payload, files)
            if files:
                message.file_edits.append(dict(message.files))
                message.file_times.append(time.monotonic())
            message.edit_times.append(time.monotonic())
            self._cond.notify_all()
        return message.api

    def _delete(self, message: Sent | None) -> None:
        if message is None:
            raise _ApiError(404, 10008, "Unknown Message")
        with self._cond:
            message.deleted = True
            self._cond.notify_all()

    def _check_files(self, files: dict[str, tuple[str, bytes]]) -> None:
        for name, data in files.values():
            if len(data) > self.upload_limit:
                raise _ApiError(413, 40005, f"Request entity too large: {name} is {len(data)} bytes")

    def _stored_attachments(self, payload: dict[str, Any], files: dict[str, tuple[str, bytes]]) -> list[dict[str, Any]]:
        # Discord names the type by the file's name (an .mp4 is video/mp4, and plays inline)
        return [self._attachment(name, data, mimetypes.guess_type(name)[0] or "application/octet-stream") for name, data in files.values()]


class _NotFound(Exception):
    pass


class _ApiError(Exception):
    def __init__(self, status: int, code: int, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _member(user: dict[str, Any], roles: dict[str, list[str]] | None = None, permissions: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "user": user,
        "roles": list((roles or {}).get(user["id"], [])),
        "joined_at": "2026-01-01T00:00:00+00:00",
        "deaf": False,
        "mute": False,
        "flags": 0,
        "permissions": (permissions or {}).get(user["id"], ALL_PERMISSIONS),
        "nick": None,
        "avatar": None,
    }


def _error(status: int, code: int, message: str, refused: list[tuple[str, int]], path: str) -> web.Response:
    refused.append((path, status))
    return _json_response({"code": code, "message": message}, status)


def _json_response(data: Any, status: int = 200) -> web.Response:
    # Exactly `application/json`: discord.py compares the header whole, and aiohttp's
    # content_type= would add "; charset=utf-8" (then discord.py reads the body as text).
    return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"})


async def _read_body(request: web.Request) -> tuple[Any, dict[str, tuple[str, bytes]]]:
    files: dict[str, tuple[str, bytes]] = {}
    if request.content_type.startswith("multipart/"):
        payload: Any = {}
        reader = await request.multipart()
        async for part in reader:
            if part.name == "payload_json":
                payload = json.loads(await part.text())
            elif part.filename is not None:
                files[part.name or part.filename] = (part.filename, bytes(await part.read()))
        return payload, files
    if request.can_read_body:
        text = await request.text()
        return (json.loads(text) if text else {}), files
    return {}, files
