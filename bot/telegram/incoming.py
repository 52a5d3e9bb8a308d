"""Telegram messages as Requests: which messages are meant for the bot, and the files they carry.

In a private chat every message counts (plain text is a prompt). In a group only commands
(`/imagine` or `/imagine@thisbot`; unknown commands without `@thisbot` may be another bot's and
are left alone) and replies to the bot's own messages count, as Telegram's privacy mode delivers
them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from telegram import Animation, Bot, Document, Message, PhotoSize, User, Video
from telegram.constants import ChatType

from commands.frame.parser import split_command
from commands.frame.types import Attachment
from commands.jobs.render import size_text

PLATFORM = "telegram"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")


class Refused(Exception):
    """A file we will not fetch; the message says why and what to send instead."""


@dataclass(frozen=True)
class Audience:
    bot_id: int
    bot_username: str


def is_private(message: Message) -> bool:
    return message.chat.type == ChatType.PRIVATE


def meant_for_us(message: Message, us: Audience, knows_command: Callable[[str], bool]) -> bool:
    if is_private(message):
        return True
    command = split_command(message.text or message.caption or "")
    if command.name is not None:
        if command.bot is not None:
            return command.bot.lower() == us.bot_username.lower()
        return knows_command(command.name)
    return from_us(message.reply_to_message, us)


def command_of(message: Message) -> str | None:
    """The command a message starts with (`place` for `/place@sdbot --nsfw blur`), or None."""
    return split_command(message.text or message.caption or "").name


def from_us(message: Message | None, us: Audience) -> bool:
    return message is not None and message.from_user is not None and message.from_user.id == us.bot_id


def user_name(user: User) -> str:
    return user.username or user.full_name


def _file_of(message: Message) -> tuple[PhotoSize | Document | Video | Animation, str, str | None] | None:
    """The one file a message carries that we might use: its largest photo size, a video or an
    animation (Telegram turns a GIF into a silent MP4: /video2video reads either), or a document."""
    if message.photo:
        return message.photo[-1], "photo.jpg", "image/jpeg"  # sizes come smallest first
    for clip in (message.animation, message.video):
        if clip is not None:
            return clip, clip.file_name or "video.mp4", clip.mime_type or "video/mp4"
    if message.document is not None:
        document = message.document
        return document, document.file_name or "file", document.mime_type
    return None


def has_image(message: Message | None) -> bool:
    if message is None:
        return False
    if message.photo or message.video is not None or message.animation is not None:
        return True
    document = message.document
    if document is None:
        return False
    name = (document.file_name or "").lower()
    return (document.mime_type or "").startswith("image/") or name.endswith(IMAGE_SUFFIXES)


async def download(bot: Bot, message: Message, max_bytes: int) -> tuple[Attachment, ...]:
    """The file in `message`, fetched through getFile; () when it has none."""
    found = _file_of(message)
    if found is None:
        return ()
    file, name, content_type = found
    if file.file_size and file.file_size > max_bytes:
        raise Refused(
            f"`{name}` is {size_text(file.file_size)}; I can fetch files up to {size_text(max_bytes)} "
            "from Telegram. Send a smaller image (a photo rather than a file is compressed for you)."
        )
    telegram_file = await bot.get_file(file.file_id)
    data = await telegram_file.download_as_bytearray()
    return (Attachment(name, bytes(data), content_type),)
