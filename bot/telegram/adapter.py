"""The Telegram chat: python-telegram-bot (v22) in front of the command service.

    chat = TelegramChat(service, settings)
    await chat.run()      # until cancelled; 2 when Telegram refuses the token

Handlers are small and flat: a message becomes a Request, a button press becomes a Request with
a Press, and every Reply goes back as a Telegram message. Results arrive through the delivery
loop (bot/loops.py); the status message of a job is edited while it waits and runs, and deleted
once its result is out.

An album (several pictures sent as one, a `media_group_id`) comes as one message per picture; they
are collected (bot/telegram/albums.py) and handled as one Request with all their files.

Flood control: PTB's AIORateLimiter keeps to Telegram's rates and repeats a request refused with
`retry_after` a few times; a result still refused is postponed by the delivery loop (never given
up for it), and a status edit is simply skipped until later.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from urllib.parse import urlparse

from telegram import Bot, BotCommand, InputMediaPhoto, Message, Update
from telegram.constants import ChatMemberStatus, ChatType, ParseMode
from telegram.error import BadRequest, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder, CallbackQueryHandler, ContextTypes, MessageHandler, filters

from bot.loops import DeliveryLoop, Postpone, StatusLoop, Unreachable, start_pause
from bot.telegram import albums, incoming, outgoing
from bot.telegram.incoming import PLATFORM, Audience, Refused
from bot.text import shorten
from commands import registry
from commands.frame.types import Attachment, Outgoing, Press, Reply, Request, StatusUpdate
from commands.service import CommandService
from config import Settings
from config.roles import TELEGRAM_CHAT_ADMIN

log = logging.getLogger(__name__)

PRIVATE_EDIT_SECONDS = 1.0  # least time between status edits in a private chat
RATE_LIMIT_RETRIES = 2  # repeats of a request refused with retry_after, inside PTB
CHAT_ROLE_SECONDS = 300.0  # how long whether someone administers a group is believed


class TelegramChat:
    def __init__(self, service: CommandService, settings: Settings):
        assert settings.telegram_token is not None
        self.service = service
        self.settings = settings
        self.limits = outgoing.Limits(max_document_bytes=settings.telegram_max_upload_bytes)
        self.application = self._build_application(settings.telegram_token.get_secret_value())
        self.deliveries = DeliveryLoop(
            service,
            PLATFORM,
            self._deliver,
            poll_seconds=settings.poll_seconds,
            after_delivered=self._remove_status,
            send_followup=self._send_followup,
        )
        self.statuses = StatusLoop(service, PLATFORM, self._edit_status, min_interval=self._edit_interval)
        self._pictured: set[str] = set()  # status messages turned into photos by a live preview
        self.us: Audience | None = None
        self.albums = albums.Albums(settings.telegram_album_seconds, self._on_messages)
        self._chat_admins: dict[tuple[int, str], tuple[float, bool]] = {}  # (chat, user) → (good until, admin)

    def _build_application(self, token: str) -> Application:  # type: ignore[type-arg]
        s = self.settings
        builder = (
            ApplicationBuilder()
            .token(token)
            .base_url(s.telegram_base_url)
            .base_file_url(s.resolved_telegram_base_file_url)
            .local_mode(s.telegram_local_mode)
            .rate_limiter(AIORateLimiter(max_retries=RATE_LIMIT_RETRIES))
            .concurrent_updates(True)  # one slow upload must not hold up everyone else
        )
        application = builder.build()
        application.add_handler(MessageHandler(filters.UpdateType.MESSAGE, self.on_message))
        application.add_handler(CallbackQueryHandler(self.on_button))
        application.add_error_handler(self.on_error)
        return application

    def wake(self) -> None:
        """A job ended: deliver now rather than at the next poll."""
        self.deliveries.wake()

    # --- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> int:
        app = self.application
        if not await self._connect():
            return 2
        loops: list[asyncio.Task[None]] = []
        try:
            await app.bot.set_my_commands([BotCommand(name, text) for name, text in registry.menu()])
            await app.start()
            await self._start_updates()
            loops = [asyncio.create_task(self.deliveries.run()), asyncio.create_task(self.statuses.run())]
            await asyncio.Event().wait()  # until cancelled
            return 0
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            if app.updater is not None and app.updater.running:
                await app.updater.stop()
            await self.albums.close()  # albums still being collected: handled now (no more updates come)
            if app.running:
                await app.stop()
            await app.shutdown()

    async def _connect(self) -> bool:
        """getMe, retried while Telegram can't be reached; False when the token is refused."""
        attempt = 0
        while True:
            try:
                await self.application.initialize()
                break
            except InvalidToken:
                log.error("Telegram refused SDBOT_TELEGRAM_TOKEN. Copy the token @BotFather gave you (123456:ABC...).")
                return False
            except NetworkError as error:
                pause = start_pause(attempt)
                log.warning("can't reach the Bot API at %s (%s); trying again in %ss", self.settings.telegram_base_url, error, pause)
                await asyncio.sleep(pause)
                attempt += 1
        bot = self.application.bot
        self.us = Audience(bot.id, bot.username)
        return True

    async def _start_updates(self) -> None:
        s = self.settings
        updater = self.application.updater
        assert updater is not None
        allowed = [Update.MESSAGE, Update.CALLBACK_QUERY]
        if s.telegram_webhook_url:
            secret = s.telegram_webhook_secret.get_secret_value() if s.telegram_webhook_secret else None
            await updater.start_webhook(
                listen=s.telegram_webhook_listen,
                port=s.telegram_webhook_port,
                url_path=urlparse(s.telegram_webhook_url).path.lstrip("/"),
                webhook_url=s.telegram_webhook_url,
                secret_token=secret,
                allowed_updates=allowed,
            )
            how = f"webhook on {s.telegram_webhook_listen}:{s.telegram_webhook_port}"
        else:
            await updater.start_polling(allowed_updates=allowed)
            how = "long polling"
        assert self.us is not None
        log.info("Telegram: @%s is up (%s)", self.us.bot_username, how)

    # --- incoming -------------------------------------------------------------------------------

    async def on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        if message is None or message.from_user is None or self.us is None:
            return
        if message.media_group_id is not None:  # a picture of an album: the whole album is one request
            self.albums.add(message)
            return
        await self._on_messages([message])

    async def _on_messages(self, messages: list[Message]) -> None:
        """One message, or an album's messages in message-id order, as one Request: the text is the
        caption (whichever message has it), the files are all of theirs in order, and the answers
        reply to the first message."""
        assert self.us is not None
        first = messages[0]
        lead = next((m for m in messages if m.text or m.caption), first)  # the one whose words count
        if lead.from_user is None or not incoming.meant_for_us(lead, self.us, self.service.knows):
            return
        user_id, chat_id = str(lead.from_user.id), str(first.chat.id)
        if not self._allowed(user_id, chat_id):
            await self._reply(first, Reply(self._denied_text(user_id), kind="error"))
            return
        bot, max_bytes = self.application.bot, self.settings.telegram_max_download_bytes
        replied = next((m.reply_to_message for m in (lead, *messages) if m.reply_to_message is not None), None)
        try:
            attachments: tuple[Attachment, ...] = ()
            for message in messages:
                attachments += await incoming.download(bot, message, max_bytes)
            reply_images = ()
            if incoming.has_image(replied) and not incoming.from_us(replied, self.us):
                assert replied is not None
                reply_images = await incoming.download(bot, replied, max_bytes)
        except Refused as refused:
            await self._reply(first, Reply(str(refused), kind="error"))
            return
        request = Request(
            platform=PLATFORM,
            user_id=user_id,
            chat_id=chat_id,
            user_name=incoming.user_name(lead.from_user),
            message_id=str(first.message_id),
            text=lead.text or lead.caption or "",
            attachments=albums.distinct_names(attachments) if len(messages) > 1 else attachments,
            reply_to=str(replied.message_id) if replied else None,
            reply_to_images=reply_images,
            private=incoming.is_private(lead),
            platform_roles=await self._chat_roles(lead, user_id),
            place_admin=incoming.command_of(lead) == "place" and await self._chat_admin(lead, user_id),
        )
        for reply in await self.service.handle(request):
            await self._reply(first, reply)

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        message, data, user_id = query.message, query.data or "", str(query.from_user.id)
        if message is None:  # a button on an inline message: none of ours
            await query.answer("This button doesn't work here.")
            return
        chat_id, message_id = str(message.chat.id), str(message.message_id)
        if not self._allowed(user_id, chat_id):
            await query.answer(shorten(self._denied_text(user_id), outgoing.MAX_ALERT), show_alert=True)
            return
        if data == outgoing.PNG_DATA:
            replies = [await self.service.originals(PLATFORM, chat_id, message_id)]
        elif data.startswith(outgoing.ACTION_PREFIX):
            press = Press(message_id, data.removeprefix(outgoing.ACTION_PREFIX))
            request = Request(
                platform=PLATFORM,
                user_id=user_id,
                chat_id=chat_id,
                user_name=incoming.user_name(query.from_user),
                message_id=message_id,
                press=press,
                private=message.chat.type == ChatType.PRIVATE,
                platform_roles=await self._chat_roles(message, user_id),
            )
            replies = await self.service.handle(request)
        else:
            await query.answer("That button is from an older version of me. Send the command again, please.")
            return
        errors = [reply for reply in replies if reply.kind == "error"]
        if errors:  # a pop-up only the presser sees (plain text: no markup there); long texts also go to the chat
            text = errors[0].text
            await query.answer(shorten(outgoing.plain(text), outgoing.MAX_ALERT), show_alert=True)
            if len(text) > outgoing.MAX_ALERT:
                await self._send(int(chat_id), errors[0], reply_to=message.message_id)
        else:
            await query.answer()
        for reply in replies:
            if reply.kind != "error":
                await self._send(int(chat_id), reply, reply_to=message.message_id)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("error while handling a Telegram update", exc_info=context.error)

    async def _chat_roles(self, message: Message, user_id: str) -> tuple[str, ...]:
        """("chat_admin",) when the person administers this group and SDBOT_ROLE_MAP gives chat
        admins a role; most bots map nothing, and ask nothing."""
        if f"{PLATFORM}:{TELEGRAM_CHAT_ADMIN}" not in self.settings.role_map:
            return ()
        return (TELEGRAM_CHAT_ADMIN,) if await self._chat_admin(message, user_id) else ()

    async def _chat_admin(self, message: Message, user_id: str) -> bool:
        """Whether the person owns or administers this group: asked of the Bot API (getChatMember)
        at most every CHAT_ROLE_SECONDS per person and group. Never in a private chat."""
        if message.chat.type == ChatType.PRIVATE:
            return False
        key, now = (message.chat.id, user_id), asyncio.get_running_loop().time()
        cached = self._chat_admins.get(key)
        if cached is None or cached[0] < now:
            try:
                member = await self.application.bot.get_chat_member(message.chat.id, int(user_id))
                admin = member.status in (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)
            except TelegramError as error:
                log.warning("could not read chat %s's member %s: %s", message.chat.id, user_id, error)
                admin = False
            cached = self._chat_admins[key] = (now + CHAT_ROLE_SECONDS, admin)
        return cached[1]

    def _allowed(self, user_id: str, chat_id: str) -> bool:
        s = self.settings
        if s.is_admin(PLATFORM, user_id):
            return True
        users, chats = s.telegram_allowed_users, s.telegram_allowed_chats
        return (not users or user_id in users) and (not chats or chat_id in chats)

    @staticmethod
    def _denied_text(user_id: str) -> str:
        return f"Sorry, this bot is private here. Ask its owner to allow you (your Telegram id is {user_id})."

    # --- outgoing -------------------------------------------------------------------------------

    async def _reply(self, message: Message, reply: Reply) -> None:
        await self._send(message.chat.id, reply, reply_to=message.message_id)

    async def _send(self, chat_id: int, reply: Reply, *, reply_to: int | None) -> None:
        """Send a direct reply and record it. A reply that can't be sent is logged: what it
        announced (a queued job) is in the database, and its result comes by the delivery loop."""
        try:
            sent = await outgoing.send_reply(self.application.bot, chat_id, reply, reply_to=reply_to, limits=self.limits)
        except TelegramError as error:
            log.warning("could not send a %s reply to chat %s: %s", reply.kind, chat_id, error)
            return
        await self.service.sent(PLATFORM, str(chat_id), str(sent.message_id), reply)
        if reply.kind == "status":
            self.statuses.showing(str(sent.message_id), reply.text)

    async def _deliver(self, item: Outgoing) -> str:
        reply_to = int(item.reply_to) if item.reply_to and item.reply_to.lstrip("-").isdigit() else None
        try:
            sent = await outgoing.send_reply(self.application.bot, int(item.chat_id), item.reply, reply_to=reply_to, limits=self.limits)
        except RetryAfter as error:
            raise Postpone(_seconds(error)) from error
        except BadRequest:
            raise  # this chat refuses it: counted against the delivery
        except (NetworkError, InvalidToken) as error:
            # Telegram unreachable (timeouts included) or the token revoked while running: not the
            # chat's fault, so nothing is counted and the result waits until it can go out.
            raise Unreachable(str(error)) from error
        return str(sent.message_id)

    async def _send_followup(self, item: Outgoing, followup: Reply, message_id: str) -> str:
        """A control map after its result, as a reply to it."""
        sent = await outgoing.send_reply(self.application.bot, int(item.chat_id), followup, reply_to=int(message_id), limits=self.limits)
        return str(sent.message_id)

    async def _remove_status(self, item: Outgoing, message_id: str) -> None:
        """The result is out: its status message goes (or says done, where deleting fails)."""
        if not item.status_message_id:
            return
        chat_id, status_id = int(item.chat_id), int(item.status_message_id)
        self._pictured.discard(item.status_message_id)
        try:
            await self.application.bot.delete_message(chat_id, status_id)
        except BadRequest:
            done = f"✅ Job {item.reply.job_id} is done."
            await _edit_text_or_caption(self.application.bot, done, {"chat_id": chat_id, "message_id": status_id})

    async def _edit_status(self, update: StatusUpdate) -> None:
        """The status's new text, and its live preview when there is a new one: the status (a text
        message) becomes a photo with the text as its caption (editMessageMedia adds media to a
        text message), and later previews replace the photo; text alone then edits the caption."""
        bot, html = self.application.bot, outgoing.to_html(update.text)
        where = {"chat_id": int(update.chat_id), "message_id": int(update.message_id)}
        try:
            if update.preview is not None:
                photo = InputMediaPhoto(update.preview, caption=html, parse_mode=ParseMode.HTML, filename="preview.jpg")
                await bot.edit_message_media(photo, **where)
                self._pictured.add(update.message_id)
            elif update.message_id in self._pictured:
                await bot.edit_message_caption(caption=html, parse_mode=ParseMode.HTML, **where)
            else:
                await _edit_text_or_caption(bot, html, where)
        except RetryAfter as error:
            raise Postpone(_seconds(error)) from error
        except BadRequest as error:
            if "not modified" not in str(error).lower():
                raise

    def _edit_interval(self, chat_id: str) -> float:
        return self.settings.telegram_group_edit_seconds if chat_id.startswith("-") else PRIVATE_EDIT_SECONDS


async def _edit_text_or_caption(bot: Bot, html: str, where: dict[str, int]) -> None:
    """Edit a message's text, or its caption where it became a photo (a status with a preview,
    which this process may not know of: it was shown before a restart)."""
    try:
        await bot.edit_message_text(html, parse_mode=ParseMode.HTML, **where)
    except BadRequest as error:
        if "no text in the message" not in str(error).lower():
            raise
        await bot.edit_message_caption(caption=html, parse_mode=ParseMode.HTML, **where)


def _seconds(error: RetryAfter) -> float:
    value = error._retry_after  # noqa: SLF001 - the public property warns while PTB moves to timedelta
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)
